using VmNet.Contract;
using VmNet.GuestAgent.Bonds;

namespace VmNet.Tests.Agent;

public sealed class BondConfiguratorTests
{
    private static NetworkConfig Storage(int miimon = 100, int arpInterval = 0, params string[] arpTargets) => new()
    {
        Name = "storage", Miimon = miimon, ArpInterval = arpInterval, ArpTargets = arpTargets, Primary = "storage0",
        FailOverMac = "active", NumGratArp = 3, Mtu = 9000,
        Members = [new() { Name = "storage0", Mac = "02:00:00:00:40:11" }, new() { Name = "storage1", Mac = "02:00:00:00:40:12" }],
        Addresses = ["192.168.40.11/24", "fd00:40::11/64"], Gateway = "192.168.40.1", Dns = ["192.168.40.1"],
    };

    private static FakeKernel TwoNics(bool up = false) =>
        new FakeKernel().WithNic("eth0", "02:00:00:00:40:11", up).WithNic("eth1", "02:00:00:00:40:12", up);

    [Fact]
    public void A_new_bond_is_built_in_the_order_the_kernel_needs()
    {
        var kernel = TwoNics();

        new BondConfigurator(kernel, kernel, _ => { }).Apply(Storage());

        Assert.Equal([
            "rename eth0 storage0",
            "rename eth1 storage1",
            "write sys/class/net/bonding_masters +storage",
            "write sys/class/net/storage/bonding/mode active-backup",
            "write sys/class/net/storage/bonding/fail_over_mac active",
            "write sys/class/net/storage/bonding/miimon 100",
            "write sys/class/net/storage/bonding/num_grat_arp 3",
            "write sys/class/net/storage/bonding/slaves +storage0",
            "write sys/class/net/storage/bonding/slaves +storage1",
            "write sys/class/net/storage/bonding/primary storage0",
            "write sys/class/net/storage/mtu 9000",
            "up storage",
            "address storage 192.168.40.11/24",
            "address storage fd00:40::11/64",
            "route storage 192.168.40.1",
        ], kernel.Log);
    }

    [Fact]
    public void A_second_run_changes_nothing()
    {
        var kernel = TwoNics();
        new BondConfigurator(kernel, kernel, _ => { }).Apply(Storage());
        kernel.Log.Clear();

        var second = new BondConfigurator(kernel, kernel, _ => { });
        second.Apply(Storage());

        Assert.Empty(second.Changes);
        Assert.DoesNotContain(kernel.Log, l => l.StartsWith("write") || l.StartsWith("rename") || l.StartsWith("up") || l.StartsWith("down"));
    }

    [Fact]
    public void Members_that_are_up_are_taken_down_before_they_are_renamed()
    {
        var kernel = TwoNics(up: true);

        new BondConfigurator(kernel, kernel, _ => { }).Apply(Storage());

        Assert.Equal(["down eth0", "rename eth0 storage0", "down eth1", "rename eth1 storage1"], kernel.Log.Take(4));
    }

    [Fact]
    public void Arp_monitoring_sets_its_targets_before_the_interval_and_no_miimon()
    {
        var kernel = TwoNics();

        new BondConfigurator(kernel, kernel, _ => { }).Apply(Storage(miimon: 0, arpInterval: 100, "192.168.40.1"));

        var target = kernel.Log.IndexOf("write sys/class/net/storage/bonding/arp_ip_target +192.168.40.1");
        var interval = kernel.Log.IndexOf("write sys/class/net/storage/bonding/arp_interval 100");
        Assert.InRange(target, 0, interval);
        Assert.True(interval < kernel.Log.IndexOf("write sys/class/net/storage/bonding/slaves +storage0"));
        Assert.DoesNotContain(kernel.Log, l => l.Contains("/miimon"));
    }

    [Fact]
    public void Switching_an_existing_bond_from_arp_to_mii_monitoring_removes_the_targets()
    {
        var kernel = TwoNics();
        new BondConfigurator(kernel, kernel, _ => { }).Apply(Storage(miimon: 0, arpInterval: 100, "192.168.40.1"));
        kernel.Log.Clear();

        new BondConfigurator(kernel, kernel, _ => { }).Apply(Storage());

        Assert.Equal([
            "write sys/class/net/storage/bonding/arp_interval 0",
            "write sys/class/net/storage/bonding/arp_ip_target -192.168.40.1",
            "write sys/class/net/storage/bonding/miimon 100",
        ], kernel.Log.Where(l => l.StartsWith("write")));
    }

    [Fact]
    public void A_bond_left_with_the_wrong_fail_over_mac_is_emptied_before_it_is_fixed()
    {
        var kernel = TwoNics();
        new BondConfigurator(kernel, kernel, _ => { }).Apply(Storage() with { FailOverMac = "none" });
        kernel.Log.Clear();

        new BondConfigurator(kernel, kernel, _ => { }).Apply(Storage());

        Assert.Equal([
            "write sys/class/net/storage/bonding/slaves -storage0",
            "write sys/class/net/storage/bonding/slaves -storage1",
            "down storage",
            "write sys/class/net/storage/bonding/fail_over_mac active",
        ], kernel.Log.Take(4));
        Assert.Contains("write sys/class/net/storage/bonding/slaves +storage1", kernel.Log);
    }

    [Fact]
    public void A_member_mac_that_no_link_has_is_an_error_that_names_the_member()
    {
        var kernel = new FakeKernel().WithNic("eth0", "02:00:00:00:40:11");

        var e = Assert.Throws<BondException>(() => new BondConfigurator(kernel, kernel, _ => { }).Apply(Storage()));

        Assert.Equal("network `storage`: no link has MAC 02:00:00:00:40:12 (member `storage1`); check the VF's admin MAC and that its driver is loaded", e.Message);
    }

    [Fact]
    public void Hostname_and_resolv_conf_are_written_only_when_they_differ()
    {
        var kernel = TwoNics();
        var config = new AgentConfig { Version = 1, Hostname = "ceph-osd-1", Networks = [Storage()] };
        var first = new BondConfigurator(kernel, kernel, _ => { });
        first.ApplyHostname(config.Hostname);
        first.ApplyDns(config);

        var second = new BondConfigurator(kernel, kernel, _ => { });
        second.ApplyHostname(config.Hostname);
        second.ApplyDns(config);

        Assert.Equal(["hostname set to `ceph-osd-1`", "resolv.conf lists 192.168.40.1"], first.Changes);
        Assert.Empty(second.Changes);
        Assert.Equal("# written by vmnet-agent\nnameserver 192.168.40.1", kernel.Read("etc/resolv.conf"));
    }
}
