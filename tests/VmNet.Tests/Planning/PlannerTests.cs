using System.Text.Json;
using VmNet.Host;
using VmNet.Leases;
using VmNet.Planning;
using VmNet.Sim;
using VmNet.Spec;
using VmNet.State;
using VmNet.Tests.Support;

namespace VmNet.Tests.Planning;

public sealed class PlannerTests : IDisposable
{
    private readonly TempDir _dir = new();
    private readonly NicShape _cx5 = NicShape.ConnectX5();
    private readonly SysfsTree _tree;
    private readonly StateDir _state;

    public PlannerTests()
    {
        _tree = SimHost.Create(_dir["host"], _cx5, pfs: 2, numVfs: 4, mtu: 1500);
        _state = new StateDir(_dir["state"]);
    }

    public void Dispose() => _dir.Dispose();

    private static VmSpec Spec(string name = "vm1", string extra = "") => SpecLoader.Load($"""
        name: {name}
        disk: {"{"}image: /img.qcow2{"}"}
        networks:
          - name: storage
            vlan: 40
            ports: [enp3s0f0np0, enp3s0f1np1]
            address: 192.168.40.11/24
          - name: public
            vlan: 10
            ports: [enp3s0f0np0, enp3s0f1np1]
            address: 203.0.113.5/24
        {extra}
        """);

    private LaunchPlan Make(VmSpec spec) =>
        Planner.Make(spec, new HostScanner(new HostRoot(_dir["host"])), new LeaseStore(_state), _state);

    internal static void Lease(StateDir state, Lease lease) => new LeaseLedger(state).Write(lease);

    [Fact]
    public void Each_network_gets_one_vf_from_each_of_its_ports_lowest_first()
    {
        var plan = Make(Spec());

        Assert.Equal(
            [("storage", 0, "0000:03:00.2"), ("storage", 1, "0000:03:02.2"), ("public", 0, "0000:03:00.3"), ("public", 1, "0000:03:02.3")],
            plan.Vfs.Select(a => (a.Network.Name, a.Port, a.Vf.Pci)));
        Assert.Equal(["enp3s0f0np0", "enp3s0f1np1", "enp3s0f0np0", "enp3s0f1np1"], plan.Vfs.Select(a => a.Pf.Name));
        Assert.Equal(["storage0", "storage1", "public0", "public1"], plan.Vfs.Select(a => a.GuestName));
    }

    [Fact]
    public void Vfs_that_are_leased_on_vfio_pci_up_or_unbound_are_never_chosen()
    {
        Lease(_state, TestLeases.Of("other", "n", 0, "enp3s0f0np0", "0000:03:00.0", 0, "0000:03:00.2", "02:00:00:00:00:01", null));
        _tree.Unbind("0000:03:00.3");
        _tree.Bind("0000:03:00.3", VirtualFunction.VfioDriver);
        _tree.SetUp("0000:03:00.4", "enp3s0f0v2", up: true);
        _tree.Unbind("0000:03:02.2");

        var storageOnly = SpecLoader.Load("name: vm1\ndisk: {image: /i}\nnetworks:\n  - name: storage\n    ports: [enp3s0f0np0, enp3s0f1np1]\n    address: dhcp\n");

        var plan = Make(storageOnly);

        Assert.Equal(["0000:03:00.5", "0000:03:02.3"], plan.Vfs.Select(a => a.Vf.Pci));
        Assert.Contains("networks[1].ports[0]: no free VF on enp3s0f0np0", Assert.Throws<HostException>(() => Make(Spec())).Message);
    }

    [Fact]
    public void No_free_vf_is_a_host_error_naming_the_port_and_the_way_out()
    {
        foreach (var i in Enumerable.Range(0, 4))
            Lease(_state, TestLeases.Of("other", "n", 0, "enp3s0f1np1", "0000:03:00.1", i, _cx5.VfPci(1, i), $"02:00:00:00:01:0{i}", null));

        var e = Assert.Throws<HostException>(() => Make(Spec()));

        Assert.Equal(ExitCodes.HostCannotServe, e.ExitCode);
        Assert.Contains("networks[0].ports[1]: no free VF on enp3s0f1np1: all 4 VFs are leased, bound to vfio-pci or up; free one with `vmnet rm` / `vmnet gc`, or raise sriov_numvfs (at most 16) with `vmnet host apply`", e.Message);
        Assert.Contains("networks[1].ports[1]: no free VF on enp3s0f1np1", e.Message);
    }

    [Fact]
    public void A_vm_that_already_holds_leases_gets_the_same_vfs_and_macs_again()
    {
        var first = Make(Spec());
        foreach (var a in first.Vfs)
            Lease(_state, TestLeases.Of("vm1", a.Network.Name, a.Port, a.Pf.Name, a.Pf.Pci, a.Vf.Index, a.Vf.Pci, a.Mac, a.Network.Vlan?.Id));
        foreach (var a in first.Vfs)
        {
            _tree.Unbind(a.Vf.Pci);
            _tree.Bind(a.Vf.Pci, VirtualFunction.VfioDriver);
        }

        var again = Make(Spec());

        Assert.Equal(first.Vfs.Select(a => (a.Vf.Pci, a.Mac)), again.Vfs.Select(a => (a.Vf.Pci, a.Mac)));
        Assert.All(again.Vfs, a => Assert.True(a.AlreadyLeased));
        Assert.DoesNotContain(again.Steps, s => s is UnbindVf or OverrideDriver or ProbeVf);
    }

    [Fact]
    public void Another_vm_gets_other_vfs_and_other_macs()
    {
        var first = Make(Spec("vm1"));
        foreach (var a in first.Vfs)
            Lease(_state, TestLeases.Of("vm1", a.Network.Name, a.Port, a.Pf.Name, a.Pf.Pci, a.Vf.Index, a.Vf.Pci, a.Mac, a.Network.Vlan?.Id));

        var second = Make(Spec("vm2"));

        Assert.Empty(first.Vfs.Select(a => a.Vf.Pci).Intersect(second.Vfs.Select(a => a.Vf.Pci)));
        Assert.Empty(first.Vfs.Select(a => a.Mac).Intersect(second.Vfs.Select(a => a.Mac)));
    }

    [Fact]
    public void Generated_macs_are_stable_locally_administered_unicast_and_distinct()
    {
        var a = Make(Spec()).Vfs.Select(v => v.Mac).ToList();
        var b = Make(Spec()).Vfs.Select(v => v.Mac).ToList();

        Assert.Equal(a, b);
        Assert.Equal(4, a.Distinct().Count());
        Assert.All(a, m => Assert.Equal(2, Convert.ToByte(m[..2], 16) & 3));
        Assert.NotEqual(a, Make(Spec("vm2")).Vfs.Select(v => v.Mac));
    }

    [Fact]
    public void A_generated_mac_that_another_vm_uses_is_skipped()
    {
        var wanted = Mac.Generate("vm1", "storage", 0, _ => false);
        Directory.CreateDirectory(Path.GetDirectoryName(_state.MacFile(wanted))!);
        File.WriteAllText(_state.MacFile(wanted), "someone-else");

        var mac = Make(Spec()).Vfs[0].Mac;

        Assert.NotEqual(wanted, mac);
        Assert.Equal(Mac.Generate("vm1", "storage", 0, m => m == wanted), mac);
    }

    [Fact]
    public void Ports_may_be_named_by_pci_address_but_not_twice_as_the_same_pf()
    {
        var plan = Make(SpecLoader.Load("name: vm1\ndisk: {image: /i}\nnetworks:\n  - name: s\n    ports: ['0000:03:00.0', enp3s0f1np1]\n    address: dhcp\n"));
        Assert.Equal("enp3s0f0np0", plan.Vfs[0].Pf.Name);

        var e = Assert.Throws<VmNetException>(() => Make(SpecLoader.Load("name: vm1\ndisk: {image: /i}\nnetworks:\n  - name: s\n    ports: ['0000:03:00.0', enp3s0f0np0]\n    address: dhcp\n")));
        Assert.Equal(ExitCodes.InvalidInput, e.ExitCode);
        Assert.Contains("networks[0].ports[1]: \"enp3s0f0np0\" is the same PF (0000:03:00.0) as networks[0].ports[0]", e.Message);
    }

    [Fact]
    public void A_missing_port_sriov_off_and_a_too_large_mtu_are_all_reported_at_once()
    {
        using var dir = new TempDir();
        var tree = SimHost.Create(dir.Path, NicShape.Igb(), pfs: 2, numVfs: 2);
        tree.Write($"{SysfsTree.DevicePath("0000:02:00.0")}/sriov_numvfs", "0\n");
        var spec = SpecLoader.Load("name: vm1\ndisk: {image: /i}\nnetworks:\n  - name: s\n    mtu: 9000\n    ports: [enp1s0, enp2s0, enp7s0]\n    address: dhcp\n");

        var e = Assert.Throws<HostException>(() => Planner.Make(spec, new HostScanner(new HostRoot(dir.Path)), new LeaseStore(_state), _state));

        Assert.Equal(
            [
                "networks[0].mtu: 9000 exceeds the MTU 1500 of enp1s0; raise it (`ip link set dev enp1s0 mtu 9000`) or lower networks[0].mtu",
                "networks[0].ports[1]: SR-IOV is not enabled on enp2s0 (sriov_numvfs is 0 of 7); create VFs with `vmnet host apply` or `echo N > /sys/class/net/enp2s0/device/sriov_numvfs`",
                "networks[0].ports[2]: no network device or PCI function \"enp7s0\" on this host; list the SR-IOV ports with `vmnet host`",
            ],
            e.Message.Split('\n'));
    }

    [Fact]
    public void The_host_steps_follow_the_order_that_works_on_real_nics()
    {
        var plan = Make(Spec(extra: ""));
        var steps = plan.Steps.OfType<VfStep>().Where(s => s.Vf.Pci == "0000:03:00.2").Select(s => s.Describe()).ToList();

        Assert.Equal(
            [
                "# record VF 0 of enp3s0f0np0 (0000:03:00.2): MAC, VLAN, qos, proto, spoofchk, trust, link-state, rates, driver",
                "echo 0000:03:00.2 > /sys/bus/pci/drivers/mlx5_core/unbind",
                "ip link set dev enp3s0f0np0 vf 0 vlan 40 qos 0 proto 802.1Q",
                "ip link set dev enp3s0f0np0 vf 0 trust off",
                $"ip link set dev enp3s0f0np0 vf 0 mac {plan.Vfs[0].Mac}",
                "ip link set dev enp3s0f0np0 vf 0 spoofchk on",
                "ip link set dev enp3s0f0np0 vf 0 state auto",
                "echo vfio-pci > /sys/bus/pci/devices/0000:03:00.2/driver_override",
                "echo 0000:03:00.2 > /sys/bus/pci/drivers_probe",
                $"# wait up to 10 s for /dev/vfio/{plan.Vfs[0].Vf.IommuGroup}",
            ],
            steps);
    }

    [Fact]
    public void Rates_and_an_untagged_network_are_set_as_asked()
    {
        var spec = SpecLoader.Load("name: vm1\ndisk: {image: /i}\nnetworks:\n  - name: s\n    ports: [enp3s0f0np0]\n    address: dhcp\n    maxTxRate: 10000\n    trust: true\n    spoofCheck: false\n");

        var lines = Make(spec).Steps.Select(s => s.Describe()).ToList();

        Assert.Contains("ip link set dev enp3s0f0np0 vf 0 vlan 0", lines);
        Assert.Contains("ip link set dev enp3s0f0np0 vf 0 max_tx_rate 10000 min_tx_rate 0", lines);
        Assert.Contains("ip link set dev enp3s0f0np0 vf 0 trust on", lines);
        Assert.Contains("ip link set dev enp3s0f0np0 vf 0 spoofchk off", lines);
    }

    [Fact]
    public void Planning_reads_the_host_but_never_changes_it()
    {
        var before = HostScannerTests.Snapshot(_dir["host"]);

        Make(Spec());

        Assert.Equal(before, HostScannerTests.Snapshot(_dir["host"]));
        Assert.False(Directory.Exists(_state.Path));
    }

    [Fact]
    public void Leased_vfs_are_skipped_through_the_pf_index_without_reading_the_host()
    {
        for (var i = 0; i < 3; i++)
            Lease(_state, TestLeases.Of("other", "n", 0, "enp3s0f0np0", "0000:03:00.0", i, _cx5.VfPci(0, i), $"02:00:00:00:02:0{i}", null));
        var host = new CountingHost(new HostScanner(new HostRoot(_dir["host"])));
        var spec = SpecLoader.Load("name: vm1\ndisk: {image: /i}\nnetworks:\n  - name: s\n    ports: [enp3s0f0np0]\n    address: dhcp\n");

        var plan = Planner.Make(spec, host, new LeaseStore(_state), _state);

        Assert.Equal("0000:03:00.5", plan.Vfs[0].Vf.Pci);
        Assert.Equal([3], host.VfsLookedAt);
    }

    private sealed class CountingHost(IHostFacts inner) : IHostFacts
    {
        public List<int> VfsLookedAt { get; } = [];
        public PhysicalFunction? FindPort(string port) => inner.FindPort(port);
        public string? VfPci(PhysicalFunction pf, int index) { VfsLookedAt.Add(index); return inner.VfPci(pf, index); }
        public VirtualFunction ReadVf(int index, string pci) => inner.ReadVf(index, pci);
        public NumaTopology Numa() => inner.Numa();
    }
}
