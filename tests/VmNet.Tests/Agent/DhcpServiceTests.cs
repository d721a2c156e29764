using System.Net;
using VmNet.Contract;
using VmNet.GuestAgent.Bonds;
using VmNet.GuestAgent.Dhcp;

namespace VmNet.Tests.Agent;

/// <summary>
/// What the agent does with a lease on the (fake) kernel: the address with the lease's lifetime, the router at metric
/// 1024, the remembered lease; what it leaves to another client or agent; the bond's ARP monitor held back while
/// it has no address; resolv.conf from the leases.
/// </summary>
public sealed class DhcpServiceTests
{
    private static NetworkConfig Lan(int arpInterval = 0) => new()
    {
        Name = "lan", Miimon = arpInterval > 0 ? 0 : 100, ArpInterval = arpInterval, ArpTargets = arpInterval > 0 ? ["192.168.40.2"] : [],
        Primary = "lan0", Dhcp = true,
        Members = [new() { Name = "lan0", Mac = "02:00:00:00:40:11" }, new() { Name = "lan1", Mac = "02:00:00:00:40:12" }],
    };

    private readonly FakeDhcpClock _clock = new();
    private readonly List<string> _changes = [];
    private readonly List<string> _log = [];
    private int _leaseChanges;

    private (FakeKernel Kernel, FakeDhcpWire Wire, DhcpService Service) Built(NetworkConfig network, Action<FakeKernel>? setUp = null)
    {
        var kernel = new FakeKernel().WithNic("eth0", "02:00:00:00:40:11").WithNic("eth1", "02:00:00:00:40:12");
        new BondConfigurator(kernel, kernel, _ => { }).Apply(network);
        setUp?.Invoke(kernel);
        var wire = new FakeDhcpWire(_clock);
        var service = new DhcpService(kernel, kernel, network, DhcpIdentity.For(network, "vm1"), _clock, () => wire, _changes.Add, _log.Add,
            () => _leaseChanges++);
        return (kernel, wire, service);
    }

    /// <summary>Runs the service until <paramref name="messages"/> messages were sent, then stops it.</summary>
    private static void RunUntil(FakeDhcpWire wire, DhcpService service, int messages, Func<DhcpMessage, IEnumerable<DhcpMessage>> server)
    {
        using var stop = new CancellationTokenSource();
        wire.Answer = m =>
        {
            if (wire.Sent.Count >= messages) { stop.Cancel(); return []; }
            return server(m);
        };
        service.Start(stop.Token);
        Assert.True(stop.Token.WaitHandle.WaitOne(TimeSpan.FromSeconds(10)), "the service sent fewer messages than expected");
        service.Join(TimeSpan.FromSeconds(10));
    }

    [Fact]
    public void A_lease_sets_the_address_with_its_lifetime_the_router_at_metric_1024_and_is_remembered()
    {
        var (kernel, wire, service) = Built(Lan());

        RunUntil(wire, service, 3, DhcpClientTests.Willing);           // discover, request, then the renewal at T1

        Assert.Contains("address lan 192.168.40.50/24 valid 600s", kernel.Log);
        Assert.Contains("route lan 192.168.40.2 metric 1024", kernel.Log);
        Assert.Equal(["lan 192.168.40.2 1024"], kernel.Routes);
        Assert.Equal($"192.168.40.50/24 {Environment.ProcessId}", kernel.Read("run/vmnet-agent/dhcp-lan.lease"));
        Assert.Equal(["lan address 192.168.40.50/24 (DHCP from 192.168.40.2)", "lan default route via 192.168.40.2 (DHCP)"], _changes);
        Assert.Equal("192.168.40.50/24", service.Address);
        Assert.True(service.Bound.WaitOne(0));
        Assert.Equal(1, _leaseChanges);
        Assert.Equal(IPAddress.Parse("192.168.40.50"), wire.Sent[2].Message.ClientAddress);   // the renewal
    }

    [Fact]
    public void A_lease_that_ends_takes_its_address_and_route_away_and_the_client_starts_over()
    {
        var (kernel, wire, service) = Built(Lan());
        var answered = 0;

        // Two answers (offer, ack), then silence: RENEWING, REBINDING, expiry, then DISCOVER again.
        RunUntil(wire, service, 9, m => answered++ < 2 ? DhcpClientTests.Willing(m) : []);

        Assert.Contains("address del lan 192.168.40.50/24", kernel.Log);
        Assert.Contains("route del lan 192.168.40.2 metric 1024", kernel.Log);
        Assert.Empty(kernel.Routes);
        Assert.Empty(kernel.Addresses("lan"));
        Assert.Null(kernel.Read("run/vmnet-agent/dhcp-lan.lease"));
        Assert.Null(service.Address);
        Assert.Contains("lan address 192.168.40.50/24 removed (the lease ended)", _changes);
        Assert.Equal(DhcpMessageType.Discover, wire.Sent[^1].Message.Type);
    }

    [Fact]
    public void A_restarted_agent_asks_for_the_remembered_address_first()
    {
        var (_, wire, service) = Built(Lan(), k =>
        {
            k.WithDynamicAddress("lan", "192.168.40.50/24");
            k.AddDefaultRoute("lan", IPAddress.Parse("192.168.40.2"), DhcpService.RouteMetric);
            k.Save("run/vmnet-agent/dhcp-lan.lease", "192.168.40.50/24 999999\n");     // a pid that is not running
        });

        RunUntil(wire, service, 2, DhcpClientTests.Willing);

        Assert.Equal(DhcpMessageType.Request, wire.Sent[0].Message.Type);
        Assert.Equal(IPAddress.Parse("192.168.40.50"), new IPAddress(wire.Sent[0].Message.Option(DhcpMessage.OptRequestedIp)!));
        Assert.Empty(_changes);                                          // same address: its lifetime is renewed, nothing else
    }

    [Fact]
    public void An_address_another_dhcp_client_set_is_left_to_it()
    {
        var (_, wire, service) = Built(Lan(), k => k.WithDynamicAddress("lan", "10.9.8.7/16"));
        using var stop = new CancellationTokenSource();

        service.Start(stop.Token);
        var bound = service.Bound.WaitOne(TimeSpan.FromSeconds(5));
        stop.Cancel();
        service.Join(TimeSpan.FromSeconds(5));

        Assert.True(bound);
        Assert.Equal("another DHCP client", service.LeftTo);
        Assert.Equal("10.9.8.7/16", service.Address);
        Assert.Empty(wire.Sent);
        Assert.Contains("network `lan`: 10.9.8.7/16 was set by another DHCP client; leaving DHCP to it", _log);
    }

    [Fact]
    public void A_link_systemd_networkd_manages_is_left_to_it_and_its_address_is_followed_when_it_comes()
    {
        var kernel = new FakeKernel().WithNic("eth0", "02:00:00:00:40:11").WithNic("eth1", "02:00:00:00:40:12");
        new BondConfigurator(kernel, kernel, _ => { }).Apply(Lan());
        kernel.Save($"run/systemd/netif/links/{kernel.Read("sys/class/net/lan/ifindex")}",
            "# This is private data. Do not parse.\nADMIN_STATE=configuring\nOPER_STATE=carrier\nNETWORK_FILE=/run/systemd/network/10-netplan-lan.network\n");
        var wire = new FakeDhcpWire(_clock);
        var service = new DhcpService(kernel, kernel, Lan(), DhcpIdentity.For(Lan(), "vm1"), new SystemDhcpClock(), () => wire, _changes.Add,
            _log.Add, () => _leaseChanges++);
        using var stop = new CancellationTokenSource();

        service.Start(stop.Token);
        var early = service.Bound.WaitOne(TimeSpan.FromMilliseconds(300));
        kernel.WithDynamicAddress("lan", "192.168.40.77/24");
        var bound = service.Bound.WaitOne(TimeSpan.FromSeconds(5));
        stop.Cancel();
        service.Join(TimeSpan.FromSeconds(5));

        Assert.Equal((false, true), (early, bound));
        Assert.Equal("systemd-networkd", service.LeftTo);
        Assert.Equal("192.168.40.77/24", service.Address);
        Assert.Equal(1, _leaseChanges);
        Assert.Empty(wire.Sent);
        Assert.Contains("network `lan`: systemd-networkd manages the link; leaving DHCP to it", _log);
    }

    [Fact]
    public void A_lease_held_by_a_running_agent_is_left_to_it()
    {
        var (_, wire, service) = Built(Lan(), k =>
        {
            k.WithDynamicAddress("lan", "192.168.40.50/24");
            k.Save("run/vmnet-agent/dhcp-lan.lease", "192.168.40.50/24 4242\n");
            k.Save("proc/4242/comm", "vmnet-agent\n");
        });

        service.Start(TestContext.Current.CancellationToken);

        Assert.Equal("vmnet-agent (pid 4242)", service.LeftTo);
        Assert.Equal("192.168.40.50/24", service.Address);
        Assert.Empty(wire.Sent);
    }

    [Fact]
    public void An_arp_monitored_bond_uses_miimon_until_it_has_an_address_then_switches_to_arp()
    {
        var kernel = new FakeKernel().WithNic("eth0", "02:00:00:00:40:11").WithNic("eth1", "02:00:00:00:40:12");
        var configurator = new BondConfigurator(kernel, kernel, _ => { });

        configurator.Apply(Lan(arpInterval: 200), holdArp: true);
        var held = (kernel.Read("sys/class/net/lan/bonding/miimon"), kernel.Read("sys/class/net/lan/bonding/arp_interval"), kernel.Read("sys/class/net/lan/bonding/arp_ip_target"));
        configurator.Apply(Lan(arpInterval: 200));

        Assert.Equal(("100", "0", ""), held);
        Assert.Equal("0", kernel.Read("sys/class/net/lan/bonding/miimon"));
        Assert.Equal("200", kernel.Read("sys/class/net/lan/bonding/arp_interval"));
        Assert.Equal("192.168.40.2", kernel.Read("sys/class/net/lan/bonding/arp_ip_target"));
    }

    [Fact]
    public void Resolv_conf_lists_the_configs_servers_then_the_leases_with_their_domain_as_search()
    {
        var kernel = new FakeKernel();
        var config = new AgentConfig { Version = 1, Networks = [Lan() with { Dns = ["192.168.41.1"] }] };
        var lease = new DhcpLease(IPAddress.Parse("192.168.40.50"), 24, IPAddress.Parse("192.168.40.2"), new byte[6], [],
            [IPAddress.Parse("192.168.40.3"), IPAddress.Parse("192.168.41.1")], "lab.example", TimeSpan.FromHours(1), TimeSpan.FromMinutes(30),
            TimeSpan.FromMinutes(52), DateTimeOffset.UnixEpoch);
        var bad = lease with { Domain = "evil\nnameserver 6.6.6.6" };

        new BondConfigurator(kernel, kernel, _ => { }).ApplyDns(config, [lease, bad]);

        Assert.Equal("# written by vmnet-agent\nsearch lab.example\nnameserver 192.168.41.1\nnameserver 192.168.40.3", kernel.Read("etc/resolv.conf"));
    }
}
