using VmNet.Execution;
using VmNet.Host;
using VmNet.Kernel;
using VmNet.Leases;
using VmNet.Planning;
using VmNet.Rendering;
using VmNet.Sim;
using VmNet.Spec;
using VmNet.State;
using VmNet.Tests.Support;

namespace VmNet.Tests.Execution;

public sealed class ApplyTests : IDisposable
{
    private readonly TempDir _dir = new();
    private readonly CancellationToken _ct = TestContext.Current.CancellationToken;

    public void Dispose() => _dir.Dispose();

    public static TheoryData<string> Shapes => ["connectx5", "igb"];

    private static NicShape ShapeOf(string name) => name == "igb" ? NicShape.Igb() : NicShape.ConnectX5();

    /// <summary>A host with two ports of the shape, and a spec using both ports with every setting the shape takes.</summary>
    private (HostOps Ops, VmSpec Spec, SysfsTree Tree) Setup(string shape, int numVfs = 3, string vm = "vm1", ApplyHooks? hooks = null)
    {
        var nic = ShapeOf(shape);
        var tree = SimHost.Create(_dir["host"], nic, pfs: 2, numVfs: numVfs);
        var rates = shape == "igb" ? "maxTxRate: 1000" : "maxTxRate: 1000\n    minTxRate: 100";
        var link = shape == "igb" ? "auto" : "disable";
        var spec = SpecLoader.Load($"""
            name: {vm}
            disk: {"{"}image: /img.qcow2{"}"}
            networks:
              - name: storage
                vlan: 40
                qos: 2
                trust: true
                linkState: {link}
                {rates}
                ports: [{nic.PfName(0)}, {nic.PfName(1)}]
                address: 192.168.40.11/24
            """);
        return (new HostOps(new SimulatedKernel(new HostRoot(_dir["host"])), new StateDir(_dir["state"]), hooks), spec, tree);
    }

    [Theory]
    [MemberData(nameof(Shapes))]
    public async Task Apply_configures_and_binds_every_vf_then_rm_gives_host_and_netlink_back_exactly(string shape)
    {
        var (ops, spec, _) = Setup(shape);
        var start = HostSnapshot.Of(_dir["host"]);

        var up = await ops.UpAsync(spec, _ct);

        var scan = new HostScanner(new HostRoot(_dir["host"]));
        foreach (var a in up.Plan.Vfs)
        {
            var vf = scan.ReadVf(a.Vf.Index, a.Vf.Pci);
            Assert.Equal("vfio-pci", vf.Driver);
            Assert.True(File.Exists(_dir[$"host/dev/vfio/{vf.IommuGroup}"]));
            var link = (await ops.Kernel.ReadLinkAsync(a.Pf.Name, _ct)).Vf(a.Vf.Index)!;
            Assert.Equal((a.Mac, new VlanTag(40, 2), true, true), (link.Settings.Mac, link.Settings.Vlan, link.Settings.SpoofCheck, link.Settings.Trust));
            var lease = ops.Ledger.Store.Find(a.Vf.Pci)!;
            Assert.IsType<DefinitionOwner>(lease.Owner);
            Assert.Equal(a.Settings, lease.Applied);
            Assert.Equal(ShapeOf(shape).VfDriver, lease.Original!.Driver);
        }
        Assert.NotEqual(start, HostSnapshot.Of(_dir["host"]));

        await ops.RemoveAsync(spec.Name, _ct);

        Assert.Equal(start, HostSnapshot.Of(_dir["host"]));
        Assert.Equal("", HostSnapshot.Ledger(_dir["state"]));
        Assert.Empty(await ops.RemoveAsync(spec.Name, _ct));
    }

    [Theory]
    [MemberData(nameof(Shapes))]
    public async Task A_failure_at_any_step_rolls_host_netlink_and_ledger_back_to_the_start(string shape)
    {
        var (probe, spec, _) = Setup(shape);
        var steps = (await probe.UpAsync(spec, _ct)).Plan.Steps.Count;
        await probe.RemoveAsync(spec.Name, _ct);
        var start = HostSnapshot.Of(_dir["host"]);
        var ledger = HostSnapshot.Ledger(_dir["state"]);
        Assert.True(steps >= 18, $"only {steps} steps");

        for (var k = 1; k <= steps; k++)
        {
            var ops = new HostOps(probe.Kernel, probe.Ledger.State, new ApplyHooks(FailAtStep: k));
            var e = await Assert.ThrowsAsync<VmNetException>(() => ops.UpAsync(spec, _ct));
            Assert.Contains($"failing at step {k}", e.Message);
            Assert.True(start == HostSnapshot.Of(_dir["host"]), $"host differs after a failure at step {k}");
            Assert.Equal(ledger, HostSnapshot.Ledger(_dir["state"]));
        }
    }

    [Fact]
    public async Task Upping_the_same_vm_again_keeps_its_vfs_and_the_state_first_found()
    {
        var (ops, spec, _) = Setup("connectx5");
        var start = HostSnapshot.Of(_dir["host"]);
        var first = await ops.UpAsync(spec, _ct);

        var again = await ops.UpAsync(spec, _ct);

        Assert.Equal(first.Plan.Vfs.Select(a => a.Vf.Pci), again.Plan.Vfs.Select(a => a.Vf.Pci));
        Assert.All(again.Plan.Vfs, a => Assert.Equal("00:00:00:00:00:00", ops.Ledger.Store.Find(a.Vf.Pci)!.Original!.Settings.Mac));
        await ops.RemoveAsync(spec.Name, _ct);
        Assert.Equal(start, HostSnapshot.Of(_dir["host"]));
    }

    [Fact]
    public async Task A_corrupt_lease_file_is_reported_not_reset()
    {
        var (ops, spec, _) = Setup("connectx5");
        await ops.UpAsync(spec, _ct);
        var file = ops.Ledger.State.LeaseFile("0000:03:00.2");
        File.WriteAllText(file, File.ReadAllText(file)[..40]);

        // gc serves the rest of the host and names the file it skipped; rm of the VM that holds it still refuses.
        var (done, problems) = await ops.GcAsync(_ct);
        Assert.Empty(done);
        Assert.Contains($"the lease file {file} is corrupt", Assert.Single(problems));
        await Assert.ThrowsAsync<VmNetException>(() => ops.RemoveAsync(spec.Name, _ct));
        Assert.Equal(40, File.ReadAllText(file).Length);
    }

    [Fact]
    public async Task A_lease_with_a_null_where_its_type_has_none_is_corrupt_and_gc_serves_the_other_vfs()
    {
        var (ops, spec, _) = Setup("connectx5");
        var up = await ops.UpAsync(spec, _ct);
        var (held, orphan) = (up.Plan.Vfs[0].Vf.Pci, up.Plan.Vfs[1].Vf.Pci);
        var file = ops.Ledger.State.LeaseFile(held);
        File.WriteAllText(file, System.Text.RegularExpressions.Regex.Replace(File.ReadAllText(file), "\"mac\": \"[0-9a-f:]+\"", "\"mac\": null", default, TimeSpan.FromSeconds(1)));
        ops.Ledger.SetOwner(orphan, new StartingOwner(Pid: int.MaxValue - 1, StartTime: 1, Expires: DateTimeOffset.UtcNow.AddMinutes(5)));
        // A corrupt PF index too: what gc repairs first.
        File.WriteAllText(ops.Ledger.State.PfIndexFile(up.Plan.Vfs[1].Pf.Pci), "x\n");

        var e = Assert.Throws<VmNetException>(() => ops.Ledger.Store.Find(held));
        Assert.Contains($"the lease file {file} is corrupt", e.Message);
        var (done, problems) = await ops.GcAsync(_ct);
        Assert.Contains($"released from {spec.Name}", Assert.Single(done));
        Assert.Contains($"the lease file {file} is corrupt", Assert.Single(problems));
        Assert.Null(ops.Ledger.Store.Find(orphan));
    }

    /// <summary>
    /// Puts an ahci controller (0000:00:1f.0, created on the first call) into IOMMU groups <paramref name="groups"/>, as a
    /// platform without ACS would.
    /// </summary>
    internal static void ShareGroup(SysfsTree tree, params int[] groups)
    {
        const string ahci = "0000:00:1f.0";
        if (!File.Exists(Path.Join(tree.Root, Sysfs.Device(ahci), "vendor")))
        {
            tree.Device(ahci, "0x8086", "0x2922", 99);
            tree.Bind(ahci, "ahci");
        }
        foreach (var group in groups)
            tree.Link($"{Sysfs.IommuGroupDevices(group)}/{ahci}", $"../../../..{SysfsTree.DevicePath(ahci)}");
    }

    [Fact]
    public async Task A_down_pf_missing_vfio_pci_and_a_shared_iommu_group_are_refused_before_any_change_with_the_fix()
    {
        var (ops, spec, tree) = Setup("igb");
        var plan = (await ops.PlanAsync(spec, new LaunchOptions { Start = false }, new Templates(), _ct)).Plan;
        tree.SetUp("0000:01:00.0", "enp1s0", up: false);
        tree.Remove("/sys/bus/pci/drivers/vfio-pci");
        // The group became shared after planning (a VF the VM already holds, say): the preflight still catches it.
        ShareGroup(tree, plan.Vfs[0].Vf.IommuGroup!.Value);
        var start = HostSnapshot.Of(_dir["host"]);

        var problems = await Preflight.CheckAsync(plan, new HostRoot(_dir["host"]), _ct);
        var e = await Assert.ThrowsAsync<HostException>(() => ops.UpAsync(spec, _ct));

        Assert.Contains($"shares IOMMU group {plan.Vfs[0].Vf.IommuGroup} with 0000:00:1f.0 (driver ahci)", string.Join("\n", problems.Select(p => p.Message)));
        Assert.Contains("enp1s0 is down; VmNet does not bring PFs up itself: bring it up: ip link set dev enp1s0 up", e.Message);
        Assert.Contains("the vfio-pci driver is not loaded: modprobe vfio-pci", e.Message);
        Assert.Equal(start, HostSnapshot.Of(_dir["host"]));
        Assert.Equal("", HostSnapshot.Ledger(_dir["state"]));
    }

    [Fact]
    public async Task The_planner_skips_a_vf_that_shares_its_iommu_group_and_names_the_group_when_none_is_left()
    {
        var (ops, spec, tree) = Setup("igb", numVfs: 2);
        ShareGroup(tree, 21); // VF 0 of PF0

        var plan = (await ops.PlanAsync(spec, new LaunchOptions { Start = false }, new Templates(), _ct)).Plan;
        Assert.Equal("0000:01:10.2", plan.Vfs[0].Vf.Pci);

        ShareGroup(tree, 22); // VF 1 of PF0
        var start = HostSnapshot.Of(_dir["host"]);
        var e = await Assert.ThrowsAnyAsync<VmNetException>(() => ops.UpAsync(spec, _ct));

        Assert.Equal(ExitCodes.HostCannotServe, e.ExitCode);
        Assert.Contains("networks[0].ports[0]: no free VF on enp1s0: vf 0 shares IOMMU group 21 with 0000:00:1f.0 (driver ahci), vf 1 shares IOMMU group 22 with 0000:00:1f.0 (driver ahci)", e.Message);
        Assert.Equal(start, HostSnapshot.Of(_dir["host"]));
        Assert.Equal("", HostSnapshot.Ledger(_dir["state"]));
    }

    [Fact]
    public async Task Igb_cannot_force_a_link_state_and_says_so_then_rolls_back()
    {
        var (ops, _, _) = Setup("igb");
        var start = HostSnapshot.Of(_dir["host"]);
        var spec = SpecLoader.Load("name: vm1\ndisk: {image: /i}\nnetworks:\n  - name: s\n    linkState: enable\n    ports: [enp1s0, enp2s0]\n    address: dhcp\n");

        var e = await Assert.ThrowsAsync<VmNetException>(() => ops.UpAsync(spec, _ct));

        Assert.Contains("cannot force a VF's link state; use link-state auto", e.Message);
        Assert.Equal(start, HostSnapshot.Of(_dir["host"]));
    }

    [Fact]
    public async Task Gc_restores_and_releases_leases_of_a_dead_owner_and_keeps_live_ones()
    {
        var (ops, spec, _) = Setup("connectx5");
        var start = HostSnapshot.Of(_dir["host"]);
        var up = await ops.UpAsync(spec, _ct);
        var dead = new StartingOwner(Pid: int.MaxValue - 1, StartTime: 1, Expires: DateTimeOffset.UtcNow.AddMinutes(5));
        ops.Ledger.SetOwner(up.Plan.Vfs[0].Vf.Pci, dead);

        var (done, problems) = await ops.GcAsync(_ct);

        Assert.Single(done);
        Assert.Empty(problems);
        Assert.Null(ops.Ledger.Store.Find(up.Plan.Vfs[0].Vf.Pci));
        Assert.NotNull(ops.Ledger.Store.Find(up.Plan.Vfs[1].Vf.Pci));
        await ops.RemoveAsync(spec.Name, _ct);
        Assert.Equal(start, HostSnapshot.Of(_dir["host"]));
    }
}
