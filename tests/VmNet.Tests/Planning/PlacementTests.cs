using VmNet.Execution;
using VmNet.Host;
using VmNet.Leases;
using VmNet.Planning;
using VmNet.Sim;
using VmNet.Spec;
using VmNet.State;
using VmNet.Tests.Support;

namespace VmNet.Tests.Planning;

/// <summary>
/// <c>placement:</c> planned on simulated hosts laid out like the kernel's: two NUMA nodes of 8 CPUs (0-7, 8-15), the
/// ConnectX-5 on node 1 unless a test moves a PF.
/// </summary>
public sealed class PlacementTests : IDisposable
{
    private readonly TempDir _dir = new();
    private readonly StateDir _state;
    private readonly CancellationToken _ct = TestContext.Current.CancellationToken;

    public PlacementTests() => _state = new StateDir(_dir["state"]);

    public void Dispose() => _dir.Dispose();

    private string Host(SimTopology? topology = null, string? cmdline = null)
    {
        var tree = SimHost.Create(_dir["host"], NicShape.ConnectX5(), pfs: 2, numVfs: 8, topology: topology ?? new SimTopology(Nodes: 2, NicNode: 1));
        if (cmdline is not null) tree.Write(Sysfs.ProcCmdline, cmdline + "\n");
        return _dir["host"];
    }

    private static VmSpec Spec(string placement, string name = "vm1", int cpus = 2, string memory = "2GiB") => SpecLoader.Load($"""
        name: {name}
        cpus: {cpus}
        memory: {memory}
        disk: {"{"}image: /img.qcow2{"}"}
        placement: {placement}
        networks:
          - name: storage
            ports: [enp3s0f0np0, enp3s0f1np1]
            address: 192.168.40.11/24
        """);

    private LaunchPlan Make(VmSpec spec, string host) =>
        Planner.Make(spec, new HostScanner(new HostRoot(host)), new LeaseStore(_state), _state);

    /// <summary>"13,14 +15": each vCPU's CPU, then the emulator threads'.</summary>
    private static string Pins(Placement p) => $"{string.Join(",", p.VcpuCpus)} +{p.EmulatorCpu}";

    private HostOps Ops(string host) => new(new SimulatedKernel(new HostRoot(host)), _state);

    [Fact]
    public void On_two_nodes_the_default_binds_memory_to_the_nics_node_and_floats_the_vcpus_over_its_cpus()
    {
        var plan = Make(Spec("{}"), Host());

        Assert.Equal((1, " +", 0L), (plan.Placement.Node, Pins(plan.Placement), plan.Placement.HugepageKiB));
        Assert.Equal([8, 9, 10, 11, 12, 13, 14, 15], plan.Placement.SharedCpus);
        Assert.Empty(plan.Placement.Warnings);
        Assert.Contains("<vcpu placement='static' cpuset='8-15'>2</vcpu>", plan.Artifacts.DomainXml);
        Assert.Contains("<memory mode='strict' nodeset='1'/>", plan.Artifacts.DomainXml);
        Assert.Contains("<cell id='0' cpus='0-1' memory='2048' unit='MiB'/>", plan.Artifacts.DomainXml);
        Assert.DoesNotContain("<cputune>", plan.Artifacts.DomainXml);
        var args = plan.Artifacts.QemuArgs.ToList();
        Assert.Equal("memory-backend-ram,id=mem0,size=2048M,host-nodes=1,policy=bind", args[args.IndexOf("-object") + 1]);
        Assert.Equal("node,nodeid=0,cpus=0-1,memdev=mem0", args[args.IndexOf("-numa") + 1]);
    }

    [Fact]
    public void On_one_node_nothing_is_rendered_for_the_default()
    {
        var plan = Make(Spec("{}"), Host(new SimTopology()));

        Assert.Equal((null, " +", 0, 0L), (plan.Placement.Node, Pins(plan.Placement), plan.Placement.SharedCpus.Count, plan.Placement.HugepageKiB));
        Assert.Contains("<vcpu placement='static'>2</vcpu>", plan.Artifacts.DomainXml);
        Assert.DoesNotContain("numatune", plan.Artifacts.DomainXml);
        Assert.DoesNotContain("-numa", plan.Artifacts.QemuArgs);
    }

    [Fact]
    public async Task Dedicated_vcpus_and_the_emulator_get_their_own_cpus_from_the_top_of_the_node_and_the_next_vm_the_ones_below()
    {
        var host = Host();
        var first = Make(Spec("{cpuPinning: dedicated}"), host);
        Assert.Equal("13,14 +15", Pins(first.Placement));
        Assert.Contains("<vcpupin vcpu='0' cpuset='13'/>", first.Artifacts.DomainXml);
        Assert.Contains("<vcpupin vcpu='1' cpuset='14'/>", first.Artifacts.DomainXml);
        Assert.Contains("<emulatorpin cpuset='15'/>", first.Artifacts.DomainXml);

        await Ops(host).UpAsync(Spec("{cpuPinning: dedicated}"), _ct);
        var second = Make(Spec("{cpuPinning: dedicated}", name: "vm2"), host);
        Assert.Equal("10,11 +12", Pins(second.Placement));
        // A shared VM floats over what no VM holds dedicated.
        var shared = Make(Spec("{}", name: "vm3"), host);
        Assert.Equal([8, 9, 10, 11, 12], shared.Placement.SharedCpus);
        // The VM planned again keeps its CPUs.
        Assert.Equal("13,14 +15", Pins(Make(Spec("{cpuPinning: dedicated}"), host).Placement));
    }

    [Fact]
    public async Task A_node_whose_cpus_are_all_dedicated_refuses_shared_vcpus_with_numa_nic_and_preferred_moves_them()
    {
        var host = Host(new SimTopology(Nodes: 2, NicNode: 1, CpusPerNode: 4));
        await Ops(host).UpAsync(Spec("{cpuPinning: dedicated}", name: "a", cpus: 3), _ct);

        var e = Assert.Throws<HostException>(() => Make(Spec("{}", name: "b"), host));
        Assert.Equal("placement.cpuPinning: shared: no CPU of NUMA node 1 is left for shared vCPUs (all of 4-7 are isolated or dedicated to VMs); "
            + "free some with `vmnet rm`, or set placement.numa: any", e.Message);

        var moved = Make(Spec("{numa: preferred}", name: "b"), host).Placement;
        Assert.Equal((0, "0-3"), (moved.Node, CpuList.Format(moved.SharedCpus)));
        Assert.StartsWith("placement.numa: preferred: the VM runs on node 0, not on its NIC's node 1: placement.cpuPinning: shared: no CPU", Assert.Single(moved.Warnings));
    }

    [Fact]
    public void Dedicated_pinning_takes_the_isolated_cpus_of_the_node_when_the_kernel_isolates_some()
    {
        var plan = Make(Spec("{cpuPinning: dedicated}"), Host(cmdline: "BOOT_IMAGE=/vmlinuz isolcpus=managed_irq,domain,4-5,10-12 nohz_full=10-12"));

        Assert.Equal("10,11 +12", Pins(plan.Placement));
    }

    [Fact]
    public async Task A_node_without_enough_free_cpus_is_refused_with_exit_3_naming_who_holds_them()
    {
        var host = Host(new SimTopology(Nodes: 2, NicNode: 1, CpusPerNode: 4));
        await Ops(host).UpAsync(Spec("{cpuPinning: dedicated}", name: "a"), _ct);

        var e = Assert.Throws<HostException>(() => Make(Spec("{cpuPinning: dedicated}", name: "b"), host));

        Assert.Equal(ExitCodes.HostCannotServe, e.ExitCode);
        Assert.Equal("placement.cpuPinning: dedicated needs 3 CPUs of NUMA node 1 (2 for the vCPUs, 1 for the emulator threads); "
            + "1 of its 4 CPUs 4-7 is free (leased: 5-7 by a); free some with `vmnet rm`, lower cpus, or set placement.cpuPinning: shared", e.Message);
    }

    [Fact]
    public void Hugepages_too_few_on_the_node_are_refused_with_the_command_that_reserves_them()
    {
        var host = Host(new SimTopology(Nodes: 2, NicNode: 1, Hugepages2M: 100));

        var e = Assert.Throws<HostException>(() => Make(Spec("{hugepages: 2MiB}"), host));

        Assert.Equal("placement.hugepages: 2MiB needs 1024 free 2MiB pages on NUMA node 1 for 2048MiB of guest memory; it has 100 free of 100; "
            + "reserve them: echo 1024 > /sys/devices/system/node/node1/hugepages/hugepages-2048kB/nr_hugepages", e.Message);
    }

    [Fact]
    public void Hugepages_of_the_nics_node_back_the_memory_from_the_mount_of_their_size()
    {
        var plan = Make(Spec("{hugepages: 1GiB}"), Host(new SimTopology(Nodes: 2, NicNode: 1, Hugepages1G: 2)));

        Assert.Equal((1, 1048576L, "/dev/hugepages1G"), (plan.Placement.Node, plan.Placement.HugepageKiB, plan.Placement.HugetlbfsMount));
        Assert.Contains("<page size='1048576' unit='KiB' nodeset='0'/>", plan.Artifacts.DomainXml);
        Assert.Contains("<allocation mode='immediate'/>", plan.Artifacts.DomainXml);
        var args = plan.Artifacts.QemuArgs.ToList();
        Assert.Equal("memory-backend-file,id=mem0,size=2048M,mem-path=/dev/hugepages1G,prealloc=on,host-nodes=1,policy=bind", args[args.IndexOf("-object") + 1]);
    }

    [Fact]
    public void One_gib_pages_without_a_mount_of_their_size_are_refused_with_the_mount_command()
    {
        var host = Host(new SimTopology(Nodes: 2, NicNode: 1, Hugepages1G: 2));
        File.WriteAllText(Path.Join(host, "proc/mounts"), "hugetlbfs /dev/hugepages hugetlbfs rw,relatime,pagesize=2M 0 0\n");

        var e = Assert.Throws<HostException>(() => Make(Spec("{hugepages: 1GiB}"), host));

        Assert.Equal("placement.hugepages: 1GiB: no hugetlbfs of 1GiB pages is mounted (/proc/mounts); mount one: "
            + "mkdir -p /dev/hugepages1G && mount -t hugetlbfs -o pagesize=1G hugetlbfs /dev/hugepages1G", e.Message);
    }

    [Fact]
    public void Ports_on_two_nodes_are_refused_with_numa_nic_and_placed_on_ports0s_node_with_a_warning_when_preferred()
    {
        var host = Host();
        File.WriteAllText(Path.Join(host, "sys/bus/pci/devices/0000:03:00.1/numa_node"), "0\n");

        var e = Assert.Throws<HostException>(() => Make(Spec("{numa: nic}"), host));
        Assert.Equal("placement.numa: nic: the VM's ports sit on different NUMA nodes (enp3s0f1np1 on node 0; enp3s0f0np0 on node 1); "
            + "give the VM ports of one node (`vmnet host` shows each PF's node), or set placement.numa: preferred or any", e.Message);

        var plan = Make(Spec("{numa: preferred}"), host);
        Assert.Equal(1, plan.Placement.Node);
        Assert.StartsWith("placement.numa: preferred: the VM's ports sit on different NUMA nodes", Assert.Single(plan.Placement.Warnings));
        Assert.Null(Make(Spec("{numa: any}"), host).Placement.Node);
    }

    [Fact]
    public void A_pf_whose_node_is_unknown_on_two_nodes_is_refused_with_numa_nic()
    {
        var host = Host();
        File.WriteAllText(Path.Join(host, "sys/bus/pci/devices/0000:03:00.0/numa_node"), "-1\n");

        var e = Assert.Throws<HostException>(() => Make(Spec("{}"), host));

        Assert.StartsWith("placement.numa: nic: the kernel does not say which NUMA node enp3s0f0np0 sits on (numa_node is -1", e.Message);
    }

    [Fact]
    public void Preferred_moves_to_the_other_node_with_a_warning_when_the_nics_node_lacks_hugepages()
    {
        var host = Host(new SimTopology(Nodes: 2, NicNode: 1, Hugepages2M: 1024));
        File.WriteAllText(Path.Join(host, "sys/devices/system/node/node1/hugepages/hugepages-2048kB/free_hugepages"), "10\n");

        var plan = Make(Spec("{numa: preferred, hugepages: 2MiB}"), host);

        Assert.Equal(0, plan.Placement.Node);
        Assert.StartsWith("placement.numa: preferred: the VM runs on node 0, not on its NIC's node 1: placement.hugepages: 2MiB needs 1024 free", Assert.Single(plan.Placement.Warnings));
    }

    [Fact]
    public async Task Rm_gives_the_cpus_back_with_the_vfs_and_gc_drops_the_cpus_of_a_vm_without_vfs()
    {
        var host = Host();
        var ops = Ops(host);
        await ops.UpAsync(Spec("{cpuPinning: dedicated}"), _ct);
        Assert.Equal([13, 14, 15], ops.Ledger.Cpus.OfVm("vm1").Select(c => c.Cpu));

        var done = await ops.RemoveAsync("vm1", _ct);
        Assert.Equal("CPUs 13-15: released (dedicated to vm1)", done[^1]);
        Assert.Empty(ops.Ledger.Cpus.All());

        // A crash between the release of the VFs and that of the CPUs leaves CPU leases whose VM holds nothing.
        await ops.UpAsync(Spec("{cpuPinning: dedicated}"), _ct);
        var cpus = ops.Ledger.Cpus.OfVm("vm1");
        await ops.RemoveAsync("vm1", _ct);
        ops.Ledger.Cpus.Restore("vm1", cpus);
        Assert.Equal("13,14 +15", Pins(Make(Spec("{cpuPinning: dedicated}", name: "vm2"), host).Placement)); // stale: free
        var (gc, problems) = await ops.GcAsync(_ct);
        Assert.Empty(problems);
        Assert.Equal("CPUs 13-15: released from vm1 (it holds no VF any more)", Assert.Single(gc));
        Assert.Equal("", Execution.HostSnapshot.Ledger(_state.Path));
    }

    [Fact]
    public async Task Doctor_names_dedicated_cpus_the_kernel_does_not_isolate_with_the_command_line_that_does()
    {
        string Doctor(string host)
        {
            var (o, e) = (new StringWriter(), new StringWriter());
            VmNet.Cli.VmNetCli.Run(["doctor", "--host-root", host, "--state-dir", _state.Path], o, e);
            return o.ToString();
        }
        var host = Host();
        await Ops(host).UpAsync(Spec("{cpuPinning: dedicated}"), _ct);

        Assert.Contains("warn  dedicated CPUs: CPUs 13-15 are dedicated to vm1 but not isolated: the host's own tasks and interrupts run there too\n"
            + "      fix: add isolcpus=managed_irq,domain,13-15 nohz_full=13-15 to the kernel command line and reboot (VMs then take isolated CPUs first)", Doctor(host));
        File.WriteAllText(Path.Join(host, "proc/cmdline"), "BOOT_IMAGE=/vmlinuz intel_iommu=on iommu=pt isolcpus=managed_irq,domain,12-15\n");
        Assert.Contains("ok    dedicated CPUs: CPUs 13-15 are dedicated to VMs and isolated from the host's scheduler (isolcpus)", Doctor(host));
    }

    /// <summary>
    /// A re-up that needs fewer CPUs keeps all it held until it is done: no other VM can take one of them meanwhile, and
    /// a rollback gives the VM exactly what it held (never a CPU another VM took in between).
    /// </summary>
    [Fact]
    public async Task A_failed_re_up_keeps_every_cpu_the_vm_held_until_the_end_and_gives_it_back_exactly()
    {
        var host = Host();
        await Ops(host).UpAsync(Spec("{cpuPinning: dedicated}"), _ct);
        var ledger = new LeaseLedger(_state);
        var before = ledger.Cpus.OfVm("vm1");
        Assert.Equal([13, 14, 15], before.Select(c => c.Cpu));

        // The claim of a plan with one vCPU (14 for it, 15 for the emulator): 13 stays the VM's while the change runs.
        ledger.Cpus.Claim("vm1", [new CpuLease(CpuLease.CurrentVersion, "vm1", 14, 1, 0), new CpuLease(CpuLease.CurrentVersion, "vm1", 15, 1, null)]);
        Assert.Equal([13, 14, 15], ledger.Cpus.OfVm("vm1").Select(c => c.Cpu));
        Assert.Equal("10,11 +12", Pins(Make(Spec("{cpuPinning: dedicated}", name: "vm2"), host).Placement));
        ledger.Cpus.Restore("vm1", before);

        var failing = new HostOps(new SimulatedKernel(new HostRoot(host)), _state, new ApplyHooks(FailAtStep: 1));
        await Assert.ThrowsAnyAsync<VmNetException>(() => failing.UpAsync(Spec("{cpuPinning: dedicated}", cpus: 1), _ct));
        Assert.Equal(before.Select(c => (c.Cpu, c.Vcpu)), ledger.Cpus.OfVm("vm1").Select(c => (c.Cpu, c.Vcpu)));

        // Committed, the re-up drops what it no longer needs.
        await Ops(host).UpAsync(Spec("{cpuPinning: dedicated}", cpus: 1), _ct);
        Assert.Equal([14, 15], ledger.Cpus.OfVm("vm1").Select(c => c.Cpu));
    }

    [Fact]
    public void A_corrupt_cpu_lease_is_refused_by_name_not_taken_as_free()
    {
        Directory.CreateDirectory(_state.CpusDir);
        File.WriteAllText(_state.CpuLeaseFile(15), "{\"version\": 1, \"vm\": null}");

        var e = Assert.Throws<VmNetException>(() => Make(Spec("{cpuPinning: dedicated}"), Host()));

        Assert.StartsWith($"the CPU lease {_state.CpuLeaseFile(15)} is corrupt", e.Message);
    }
}

/// <summary>Capacity (seed 003): a PF's guaranteed bandwidth (its VFs' min_tx_rate) against its link's speed.</summary>
public sealed class CapacityTests : IDisposable
{
    private readonly TempDir _dir = new();
    private readonly StateDir _state;
    private readonly CancellationToken _ct = TestContext.Current.CancellationToken;

    public CapacityTests()
    {
        SimHost.Create(_dir["host"], NicShape.ConnectX5(), pfs: 2, numVfs: 8);
        _state = new StateDir(_dir["state"]);
    }

    public void Dispose() => _dir.Dispose();

    private static VmSpec Spec(string name, int min) => SpecLoader.Load($"""
        name: {name}
        disk: {"{"}image: /img.qcow2{"}"}
        networks:
          - name: storage
            ports: [enp3s0f0np0, enp3s0f1np1]
            address: dhcp
            minTxRate: {min}
        """);

    [Fact]
    public async Task A_spec_whose_guarantee_would_oversubscribe_a_pf_is_refused_with_exit_3_naming_who_holds_the_rest()
    {
        var ops = new HostOps(new SimulatedKernel(new HostRoot(_dir["host"])), _state);
        await ops.UpAsync(Spec("a", 40000), _ct);
        await ops.UpAsync(Spec("b", 40000), _ct);

        var e = await Assert.ThrowsAsync<HostException>(() => ops.UpAsync(Spec("c", 30000), _ct));

        Assert.Equal(ExitCodes.HostCannotServe, e.ExitCode);
        Assert.Equal(string.Join("\n", new[] { "enp3s0f0np0", "enp3s0f1np1" }.Select(pf =>
            $"networks[0].minTxRate: 30000 Mbit/s guaranteed on {pf} would make 110000 of its 100000 Mbit/s link; 80000 of it guaranteed to a (40000), b (40000); "
            + "lower minTxRate, give the VM another port, or free a VM's VFs there (`vmnet host` shows each PF's guarantees)")), e.Message);
        Assert.Empty(ops.Ledger.Store.OfVm("c"));
        // What fits is taken, and a VM planned again does not count against itself.
        await ops.UpAsync(Spec("c", 20000), _ct);
        await ops.UpAsync(Spec("c", 20000), _ct);

        var (o, err) = (new StringWriter(), new StringWriter());
        Assert.Equal(0, VmNet.Cli.VmNetCli.Run(["host", "--host-root", _dir["host"], "--state-dir", _state.Path], o, err));
        Assert.Contains("  guaranteed 100000/100000 Mbit/s", o.ToString().Split('\n')[0]);
    }
}
