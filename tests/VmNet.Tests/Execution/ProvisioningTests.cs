using VmNet.Execution;
using VmNet.Host;
using VmNet.Kernel;
using VmNet.Leases;
using VmNet.Sim;
using VmNet.Spec;
using VmNet.State;
using VmNet.Tests.Support;

namespace VmNet.Tests.Execution;

public sealed class ProvisioningTests : IDisposable
{
    private readonly TempDir _dir = new();
    private readonly CancellationToken _ct = TestContext.Current.CancellationToken;
    private readonly HostOps _ops;
    private readonly Provisioner _prov;
    private readonly HostScanner _scan;

    public ProvisioningTests()
    {
        SimHost.Create(_dir["host"], NicShape.Igb(), pfs: 2, numVfs: 2);
        _ops = new HostOps(new SimulatedKernel(new HostRoot(_dir["host"])), new StateDir(_dir["state"]));
        _prov = new Provisioner(_ops.Kernel, _ops.Ledger);
        _scan = new HostScanner(new HostRoot(_dir["host"]));
    }

    public void Dispose() => _dir.Dispose();

    private static HostConfig Config(int a, int b) => HostConfig.Load($"pfs:\n  - port: enp1s0\n    vfs: {a}\n  - port: '0000:02:00.0'\n    vfs: {b}\n");

    private static readonly VmSpec Vm = SpecLoader.Load("name: vm1\ndisk: {image: /i}\nnetworks:\n  - name: s\n    vlan: 40\n    ports: [enp1s0, enp2s0]\n    address: dhcp\n");

    [Fact]
    public async Task Host_apply_sets_vf_counts_zero_then_n_and_is_idempotent()
    {
        Assert.Equal(["enp1s0: 2 -> 7 VFs", "enp2s0: 2 VFs already"], (await _prov.ApplyAsync(Config(7, 2), _ct)).Select(c => c.ToString()));
        Assert.Equal(["enp1s0: 7 VFs already", "enp2s0: 2 VFs already"], (await _prov.ApplyAsync(Config(7, 2), _ct)).Select(c => c.ToString()));
        Assert.Equal(7, _scan.FindPort("enp1s0", withVfs: true)!.Vfs.Count(v => v.Driver == "igbvf"));
        await _prov.ApplyAsync(Config(0, 2), _ct);
        Assert.Equal(0, _scan.FindPort("enp1s0")!.NumVfs);
    }

    [Fact]
    public async Task Host_apply_refuses_to_touch_a_pf_whose_vfs_are_leased_and_names_them()
    {
        await _ops.UpAsync(Vm, _ct);

        var e = await Assert.ThrowsAsync<HostException>(() => _prov.ApplyAsync(Config(4, 2), _ct));

        Assert.Contains("pfs[0]: cannot change enp1s0 from 2 to 4 VFs while its VFs are in use: VF 0 (0000:01:10.0) leased by vm1", e.Message);
        Assert.Equal(2, _scan.FindPort("enp1s0")!.NumVfs);
    }

    [Fact]
    public async Task A_bad_host_config_is_reported_with_field_paths_and_too_many_vfs_with_the_limit()
    {
        var e = Assert.Throws<SpecException>(() => HostConfig.Load("pfs:\n  - port: enp1s0\n  - vfs: 2\n    prot: x\n"));
        Assert.Equal(["pfs[0].vfs", "pfs[1].port", "pfs[1].prot"], e.Errors.Select(x => x.Path));

        var h = await Assert.ThrowsAsync<HostException>(() => _prov.ApplyAsync(Config(8, 2), _ct));
        Assert.Contains("pfs[0].vfs: 8 exceeds sriov_totalvfs 7 of enp1s0", h.Message);
    }

    [Fact]
    public async Task Prepare_after_a_reboot_gives_leased_vfs_their_settings_and_vfio_pci_again()
    {
        var up = await _ops.UpAsync(Vm, _ct);
        // A reboot: the VFs are gone with their netlink settings; the boot unit's `host apply` creates them again.
        foreach (var pf in new[] { "0000:01:00.0", "0000:02:00.0" })
            await _ops.Kernel.WriteSysfsAsync($"/sys/bus/pci/devices/{pf}/sriov_numvfs", "0", _ct);
        await _prov.ApplyAsync(Config(2, 2), _ct);
        Assert.All(up.Plan.Vfs, a => Assert.Equal("igbvf", _scan.ReadVf(a.Vf.Index, a.Vf.Pci).Driver));

        var done = await _prov.PrepareLeasesAsync(_ct);

        Assert.Equal((2, 0, 0), (done.Prepared.Count, done.Skipped.Count, done.Failed.Count));
        foreach (var a in up.Plan.Vfs)
        {
            Assert.Equal("vfio-pci", _scan.ReadVf(a.Vf.Index, a.Vf.Pci).Driver);
            var link = (await _ops.Kernel.ReadLinkAsync(a.Pf.Name, _ct)).Vf(a.Vf.Index)!;
            Assert.Equal((a.Mac, new VlanTag(40)), (link.Settings.Mac, link.Settings.Vlan));
        }
        Assert.Equal(done.Lines(), (await _prov.PrepareLeasesAsync(_ct)).Lines());
        Assert.Equal("2 leased VFs looked at, 2 prepared", done.Lines().Last());
    }

    /// <summary>The boot unit gives a VF of a host network (host.yaml networks:) what the host fixed, from its lease.</summary>
    [Fact]
    public async Task Prepare_after_a_reboot_gives_a_host_networks_vfs_the_hosts_settings()
    {
        var host = HostConfig.Load("networks:\n  storage: {ports: [enp1s0, enp2s0], vlan: 41, qos: 2, trust: false}\n", "host.yaml");
        var vm = SpecLoader.Load("name: vm2\ndisk: {image: /i}\nnetworks:\n  - {name: s, network: storage, address: dhcp}\n", host: host.Named);
        var up = await _ops.UpAsync(vm, _ct);
        foreach (var pf in new[] { "0000:01:00.0", "0000:02:00.0" })
            await _ops.Kernel.WriteSysfsAsync($"/sys/bus/pci/devices/{pf}/sriov_numvfs", "0", _ct);
        await _prov.ApplyAsync(Config(2, 2), _ct);

        var done = await _prov.PrepareLeasesAsync(_ct);

        Assert.Equal(2, done.Prepared.Count);
        foreach (var a in up.Plan.Vfs)
        {
            var link = (await _ops.Kernel.ReadLinkAsync(a.Pf.Name, _ct)).Vf(a.Vf.Index)!;
            Assert.Equal((new VlanTag(41, 2), false), (link.Settings.Vlan, link.Settings.Trust));
            Assert.Equal("storage", _ops.Ledger.Store.Find(a.Vf.Pci)!.HostNetwork);
        }
    }

    /// <summary>A VM whose VFs cannot be prepared is named, its VFs put back as they were before the prepare (still on
    /// the host driver, without the lease's settings), and the other VMs are still prepared.</summary>
    [Fact]
    public async Task Prepare_names_a_vm_it_could_not_prepare_and_puts_its_vfs_back()
    {
        SimHost.Create(_dir["host2"], NicShape.Igb(), pfs: 2, numVfs: 2);
        var ops = new HostOps(new SimulatedKernel(new HostRoot(_dir["host2"])), new StateDir(_dir["state2"]));
        await ops.UpAsync(Vm, _ct);
        await ops.UpAsync(SpecLoader.Load("name: vm2\ndisk: {image: /i}\nnetworks:\n  - name: s\n    vlan: 41\n    ports: [enp1s0, enp2s0]\n    address: dhcp\n"), _ct);
        foreach (var pf in new[] { "0000:01:00.0", "0000:02:00.0" })
            await ops.Kernel.WriteSysfsAsync($"/sys/bus/pci/devices/{pf}/sriov_numvfs", "0", _ct);
        await new Provisioner(ops.Kernel, ops.Ledger).ApplyAsync(Config(2, 2), _ct);
        var before = HostSnapshot.Of(_dir["host2"]);

        // Each VM's prepare is its own run of the executor: the hook fails the second step of each.
        var report = await new Provisioner(ops.Kernel, ops.Ledger, new ApplyHooks(FailAtStep: 2)).PrepareLeasesAsync(_ct);

        Assert.Equal(["vm1", "vm2"], report.Failed.Select(f => f.Vm).Order(StringComparer.Ordinal));
        Assert.All(report.Failed, f => Assert.Contains("its VFs were put back as they were before this prepare", f.Reason));
        Assert.Empty(report.Prepared);
        Assert.Equal(before, HostSnapshot.Of(_dir["host2"]));
        Assert.StartsWith("FAILED vm", report.Lines().First());
        Assert.Equal(4, (await new Provisioner(ops.Kernel, ops.Ledger).PrepareLeasesAsync(_ct)).Prepared.Count);
    }

    [Fact]
    public async Task The_boot_unit_runs_apply_then_prepare_once_before_libvirt_and_systemd_accepts_it()
    {
        var vmnet = Path.Join(AppContext.BaseDirectory, "vmnet");
        var unit = Provisioner.BootUnit(vmnet, "/etc/vmnet/host.yaml", "/var/lib/vmnet", ["enp1s0", "enp2s0"]);

        Assert.Contains("Type=oneshot\n", unit);
        Assert.Contains("Before=libvirtd.service", unit);
        Assert.Contains("sys-subsystem-net-devices-enp1s0.device", unit);
        Assert.Contains($"ExecStart={vmnet} --state-dir /var/lib/vmnet host apply --config /etc/vmnet/host.yaml\nExecStart={vmnet} --state-dir /var/lib/vmnet host prepare\n", unit);

        var file = _dir.Write("vmnet-host.service", unit);
        var r = await RequiredTool.Run("systemd-analyze", ["verify", file]);
        Assert.True(r.ExitCode == 0, r.StandardError);
    }
}
