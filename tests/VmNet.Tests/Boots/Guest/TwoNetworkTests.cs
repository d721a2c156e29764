using VmNet.State;

namespace VmNet.Tests.Boots.Guest;

public sealed class TwoBondGuest : GuestFixture
{
    public static readonly GuestNetwork Storage = new("storage", "192.168.40.1", "192.168.40.11", 24,
        [("storage0", "02:00:00:00:40:11"), ("storage1", "02:00:00:00:40:12")], Miimon: 100);

    /// <summary>ARP monitoring instead of MII: the bond probes the peer every 100 ms.</summary>
    public static readonly GuestNetwork Public = new("public", "192.168.50.1", "192.168.50.11", 24,
        [("public0", "02:00:00:00:50:11"), ("public1", "02:00:00:00:50:12")], Miimon: 0, ArpInterval: 100, Gateway: false);

    protected override GuestNetwork[] Networks => [Storage, Public];

    /// <summary>
    /// The config comes from the launcher itself: this spec, planned on a simulated igb host and rendered by the
    /// launcher's AgentConfigBuilder, with the launcher's defaults (miimon 100, up-delay 200, three gratuitous ARPs).
    /// </summary>
    protected override string Config => Rendered.Value;

    public static readonly Lazy<string> Rendered = new(() => RenderedAgentConfig($"""
        name: vmnet-test
        disk: {"{"}image: /unused.qcow2{"}"}
        networks:
          - name: storage
            ports: [enp1s0, enp2s0]
            address: {Storage.GuestIp}/{Storage.Prefix}
            gateway: {Storage.PeerIp}
            dns: [{Storage.PeerIp}]
            macs: [{Storage.Members[0].Mac}, {Storage.Members[1].Mac}]
          - name: public
            ports: [enp1s0, enp2s0]
            address: {Public.GuestIp}/{Public.Prefix}
            dns: [{Public.PeerIp}]
            macs: [{Public.Members[0].Mac}, {Public.Members[1].Mac}]
            bond: {"{"}arpInterval: 100, arpTargets: [{Public.PeerIp}]{"}"}
        """));

    internal static string RenderedAgentConfig(string spec)
    {
        using var dir = new Support.TempDir();
        VmNet.Sim.SimHost.Create(dir["host"], VmNet.Sim.NicShape.Igb(), pfs: 2, numVfs: 7);
        var state = new VmNet.State.StateDir(dir["state"]);
        var plan = VmNet.Planning.Planner.Make(VmNet.Spec.SpecLoader.Load(spec),
            new VmNet.Host.HostScanner(new VmNet.Host.HostRoot(dir["host"])), new VmNet.Leases.LeaseStore(state), state);
        return plan.Artifacts.AgentConfig;
    }
}

/// <summary>Two networks in one guest: two bonds on two QEMU hubs, one with MII and one with ARP monitoring.</summary>
[Trait(Tier.Name, Tier.Boot)]
[Collection("Guest")]
public sealed class TwoNetworkTests(TwoBondGuest fixture, ITestOutputHelper output) : IClassFixture<TwoBondGuest>
{
    private QemuGuest Guest => fixture.Guest;

    [Fact]
    public async Task Two_networks_become_two_bonds_each_with_only_its_own_members()
    {
        var (slaves, _) = await Guest.Shell("cat /sys/class/net/storage/bonding/slaves /sys/class/net/public/bonding/slaves /sys/class/net/bonding_masters");

        Assert.Equal("storage0 storage1\npublic0 public1\nstorage public\n", slaves.ReplaceLineEndings("\n"));
        output.WriteLine($"boot to network-ready with two bonds: {fixture.BootToReady.TotalSeconds:F1} s");
        output.WriteLine(fixture.ReadyReport ?? "");
    }

    [Fact]
    public async Task The_bonds_carry_the_settings_the_launcher_rendered()
    {
        var (sysfs, _) = await Guest.Shell("cd /sys/class/net/storage/bonding && cat mode miimon updelay fail_over_mac primary num_grat_arp");

        Assert.Contains("\"upDelay\": 200", TwoBondGuest.Rendered.Value);
        Assert.Equal("active-backup 1\n100\n200\nactive 1\nstorage0\n3\n", sysfs.ReplaceLineEndings("\n"));
    }

    [Fact]
    public async Task The_arp_monitored_bond_polls_its_target_instead_of_mii()
    {
        // The primary is active once ARP probes through it succeed; another test in this class pulls its cable and the
        // bond takes it back (primary_reselect always) a few probes after the link returns: wait for that, bounded.
        var (bonding, _) = await Guest.Shell(
            "for t in $(seq 100); do grep -q 'Currently Active Slave: public0' /proc/net/bonding/public && break; sleep 0.1; done; cat /proc/net/bonding/public");

        output.WriteLine(bonding);
        Assert.Contains("Bonding Mode: fault-tolerance (active-backup) (fail_over_mac active)", bonding);
        Assert.Contains("MII Polling Interval (ms): 0", bonding);
        Assert.Contains("ARP Polling Interval (ms): 100", bonding);
        Assert.Contains("ARP IP target/s (n.n.n.n form): 192.168.50.1", bonding);
        Assert.Contains("Currently Active Slave: public0", bonding);
    }

    [Fact]
    public async Task Each_peer_reaches_its_own_network_and_sees_no_frame_from_the_other()
    {
        Assert.True(await Guest.Peers[0].Reaches(TimeSpan.FromSeconds(15)), "storage peer gets no reply");
        Assert.True(await Guest.Peers[1].Reaches(TimeSpan.FromSeconds(15)), "public peer gets no reply");

        string[] storageMacs = ["020000004011", "020000004012"], publicMacs = ["020000005011", "020000005012"];
        output.WriteLine($"storage hub sources: {string.Join(" ", Guest.Peers[0].SourceMacs)}; public hub sources: {string.Join(" ", Guest.Peers[1].SourceMacs)}");
        Assert.Empty(Guest.Peers[0].SourceMacs.Intersect(publicMacs));
        Assert.Empty(Guest.Peers[1].SourceMacs.Intersect(storageMacs));
        Assert.Contains(Guest.Peers[0].SourceMacs, storageMacs.Contains);
        Assert.Contains(Guest.Peers[1].SourceMacs, publicMacs.Contains);
    }

    [Fact]
    public async Task Arp_monitoring_fails_over_when_the_active_member_loses_its_link_and_the_other_bond_stays_put()
    {
        const int arpInterval = 100;
        var interval = TimeSpan.FromMilliseconds(20);
        var peer = Guest.Peers[1];
        Assert.True(await peer.Reaches(TimeSpan.FromSeconds(15)), "the public peer does not reach the guest before the failover");
        using var stop = new CancellationTokenSource();
        var pinging = peer.PingUntil(interval, stop.Token);
        await Task.Delay(1000, TestContext.Current.CancellationToken);

        var from = Guest.Reports.Count;
        var off = Guest.Clock.Elapsed;
        await Guest.SetLink(QemuGuest.NicId(1, 0), false);
        var moved = await Guest.WaitForReport("active-changed", TimeSpan.FromSeconds(10), from, l => l.Contains("\"active\":\"public1\""));
        var movedAt = Guest.Reports.Snapshot().First(r => r.Line == moved).At;
        await Task.Delay(2000, TestContext.Current.CancellationToken);
        var on = Guest.Clock.Elapsed;
        await Guest.SetLink(QemuGuest.NicId(1, 0), true);
        await Task.Delay(3000, TestContext.Current.CancellationToken);
        await stop.CancelAsync();
        var sent = await pinging;
        await Task.Delay(300, TestContext.Current.CancellationToken);

        var failover = Failover.Outage(peer, sent, off, on);
        var after = Guest.Reports.Snapshot().Skip(from).ToList();
        output.WriteLine($"ARP monitor {arpInterval} ms, ping every {interval.TotalMilliseconds} ms, {sent.Count} sent");
        output.WriteLine($"failover: set_link off -> active-changed report {(movedAt - off).TotalMilliseconds:F0} ms; longest reply gap {failover.Gap.TotalMilliseconds:F0} ms; lost {failover.Lost} of {failover.Sent}");
        foreach (var r in after) output.WriteLine($"{(r.At - off).TotalMilliseconds,8:F0} ms {r.Line}");

        // The ARP monitor declares a member down after missing about two intervals of traffic, then switches at the
        // next tick: allow four intervals, two ping intervals and 600 ms for TCG.
        var bound = TimeSpan.FromMilliseconds(4 * arpInterval + 600) + 2 * interval;
        Assert.True(failover.Gap <= bound, $"failover gap {failover.Gap.TotalMilliseconds:F0} ms exceeds {bound.TotalMilliseconds:F0} ms");
        Assert.DoesNotContain(after, r => r.Line.Contains("\"network\":\"storage\""));
        var (storageActive, _) = await Guest.Shell("cat /sys/class/net/storage/bonding/active_slave");
        Assert.Equal("storage0", storageActive.Trim());
    }
}
