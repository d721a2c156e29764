using System.Text.Json;

namespace VmNet.Tests.Boots.Guest;

public sealed class OneBondGuest : GuestFixture
{
    public static readonly GuestNetwork Storage = new("storage", "192.168.40.1", "192.168.40.11", 24,
        [("storage0", "02:00:00:00:40:11"), ("storage1", "02:00:00:00:40:12")], Miimon: 100, Mtu: 9000, Ipv6: "fd00:40::11/64");

    protected override GuestNetwork[] Networks => [Storage];
}

/// <summary>A real kernel under QEMU TCG: two e1000e NICs stand in for two VFs on one QEMU hub with a peer;
/// the agent builds the bond from the config it reads over fw_cfg.</summary>
[Trait(Tier.Name, Tier.Boot)]
[Collection("Guest")]
public sealed class GuestBondTests(OneBondGuest fixture, ITestOutputHelper output) : IClassFixture<OneBondGuest>
{
    private QemuGuest Guest => fixture.Guest;

    [Fact]
    public async Task The_agent_builds_an_active_backup_bond_with_miimon_fail_over_mac_active_and_the_primary()
    {
        var (bonding, exit) = await Guest.Shell("cat /proc/net/bonding/storage");

        Assert.Equal(0, exit);
        output.WriteLine(bonding);
        Assert.Contains("Bonding Mode: fault-tolerance (active-backup) (fail_over_mac active)", bonding);
        Assert.Contains("MII Polling Interval (ms): 100", bonding);
        Assert.Contains("Primary Slave: storage0", bonding);
        Assert.Contains("Slave Interface: storage0", bonding);
        Assert.Contains("Slave Interface: storage1", bonding);
        Assert.Contains("Permanent HW addr: 02:00:00:00:40:11", bonding);
        Assert.Contains("Permanent HW addr: 02:00:00:00:40:12", bonding);
        var (settings, _) = await Guest.Shell("cat /sys/class/net/storage/mtu /sys/class/net/storage/bonding/num_grat_arp /proc/sys/kernel/hostname; ip addr show dev storage; ip route; cat /etc/resolv.conf");
        output.WriteLine(settings);
        Assert.StartsWith("9000\n3\nvmnet-test\n", settings.ReplaceLineEndings("\n"));
        Assert.Contains("inet 192.168.40.11/24", settings);
        Assert.Contains("inet6 fd00:40::11/64", settings);
        Assert.Contains("default via 192.168.40.1 dev storage", settings);
        Assert.Contains("nameserver 192.168.40.1", settings);
    }

    [Fact]
    public async Task The_peer_reaches_the_guest_address_through_the_bond()
    {
        var peer = Guest.Peers[0];

        var reached = await peer.Reaches(TimeSpan.FromSeconds(15));

        Assert.True(reached, $"no echo reply from 192.168.40.11 within 15 s; guest MAC seen: {peer.GuestMac ?? "none"}, frames received: {peer.FramesReceived}");
        Assert.Equal("020000004011", peer.GuestMac); // fail_over_mac=active: the bond speaks with the active member's own MAC
    }

    [Fact]
    public void The_host_reads_network_ready_from_the_virtio_serial_port()
    {
        _ = Guest; // skips when QEMU is missing
        output.WriteLine($"boot to network-ready (host clock, from QEMU start): {fixture.BootToReady.TotalSeconds:F1} s");
        output.WriteLine(fixture.ReadyReport ?? "(none)");
        using var report = JsonDocument.Parse(fixture.ReadyReport!);
        var network = report.RootElement.GetProperty("networks")[0];

        Assert.Equal("storage", network.GetProperty("name").GetString());
        Assert.Equal("storage0", network.GetProperty("active").GetString());
        Assert.Equal(["storage0", "storage1"], network.GetProperty("members").EnumerateArray().Select(m => m.GetProperty("name").GetString()));
        Assert.Equal(["02:00:00:00:40:11", "02:00:00:00:40:12"], network.GetProperty("members").EnumerateArray().Select(m => m.GetProperty("mac").GetString()));
        Assert.Equal(["192.168.40.11/24", "fd00:40::11/64"], network.GetProperty("addresses").EnumerateArray().Select(a => a.GetString()));
        Assert.True(report.RootElement.GetProperty("changes").GetInt32() > 0);
    }

    [Fact]
    public async Task The_agent_answers_the_hosts_state_query_with_every_bond_as_it_is_now()
    {
        var from = Guest.Reports.Count;
        await Guest.SendToAgent("not json");
        await Guest.SendToAgent(VmNet.Backends.GuestAgentChannel.StateQuery);
        var state = await Guest.WaitForReport("state", TimeSpan.FromSeconds(30), from);
        output.WriteLine(state);

        using var report = JsonDocument.Parse(state);
        var network = report.RootElement.GetProperty("networks")[0];
        Assert.Equal("storage", network.GetProperty("name").GetString());
        Assert.Equal((await Guest.Shell("cat /sys/class/net/storage/bonding/active_slave")).Output.Trim(), network.GetProperty("active").GetString());
        Assert.Equal(["up", "up"], network.GetProperty("members").EnumerateArray().Select(m => m.GetProperty("link").GetString()));
        Assert.DoesNotContain("vmnet-agent: report {\"event\":\"state\"", Guest.SerialLog); // answers stay off the console
    }

    [Fact]
    public async Task A_second_run_of_the_agent_changes_nothing()
    {
        const string state = "ip -o link; ip -o addr; ip route; cat /proc/net/bonding/storage /etc/resolv.conf /proc/sys/kernel/hostname";
        var (before, _) = await Guest.Shell(state);

        var (run, exit) = await Guest.Shell("/sbin/vmnet-agent --once");
        var (after, _) = await Guest.Shell(state);

        output.WriteLine(run);
        Assert.Equal(0, exit);
        Assert.Contains("vmnet-agent: 0 change(s)", run);
        Assert.Equal(before, after);
    }

    [Fact]
    public async Task Failover_moves_to_the_other_member_within_a_bound_from_miimon_and_fails_back_once()
    {
        const int miimon = 100;
        var interval = TimeSpan.FromMilliseconds(20);
        var peer = Guest.Peers[0];
        Assert.True(await peer.Reaches(TimeSpan.FromSeconds(15)), "the peer does not reach the guest before the failover");
        var (activeBefore, _) = await Guest.Shell("cat /sys/class/net/storage/bonding/active_slave");
        Assert.Equal("storage0", activeBefore.Trim());
        using var stop = new CancellationTokenSource();
        var pinging = peer.PingUntil(interval, stop.Token);
        await Task.Delay(1000, TestContext.Current.CancellationToken);

        // Cable out of the active member.
        var from = Guest.Reports.Count;
        var off = Guest.Clock.Elapsed;
        await Guest.SetLink(QemuGuest.NicId(0, 0), false);
        var moved = await Guest.WaitForReport("active-changed", TimeSpan.FromSeconds(10), from, l => l.Contains("\"active\":\"storage1\""));
        var movedAt = Guest.Reports.Snapshot().First(r => r.Line == moved).At;
        await Task.Delay(2000, TestContext.Current.CancellationToken);

        // Cable back in: primary_reselect=always (the kernel default) makes storage0 active again, once.
        var fromOn = Guest.Reports.Count;
        var on = Guest.Clock.Elapsed;
        await Guest.SetLink(QemuGuest.NicId(0, 0), true);
        var back = await Guest.WaitForReport("active-changed", TimeSpan.FromSeconds(10), fromOn, l => l.Contains("\"active\":\"storage0\""));
        var backAt = Guest.Reports.Snapshot().First(r => r.Line == back).At;
        await Task.Delay(3000, TestContext.Current.CancellationToken);
        await stop.CancelAsync();
        var sent = await pinging;
        await Task.Delay(300, TestContext.Current.CancellationToken);

        var failover = Failover.Outage(peer, sent, off, on);
        var failback = Failover.Outage(peer, sent, on, Guest.Clock.Elapsed - TimeSpan.FromMilliseconds(300));
        var changesAfterOn = Guest.Reports.Snapshot().Skip(fromOn).Count(r => r.Line.Contains("\"event\":\"active-changed\""));
        var reports = string.Join("\n", Guest.Reports.Snapshot().Skip(from).Select(r => $"{(r.At - off).TotalMilliseconds,8:F0} ms {r.Line}"));
        output.WriteLine($"ping every {interval.TotalMilliseconds} ms, {sent.Count} sent");
        output.WriteLine($"failover: set_link off -> active-changed report {(movedAt - off).TotalMilliseconds:F0} ms; longest reply gap {failover.Gap.TotalMilliseconds:F0} ms; lost {failover.Lost} of {failover.Sent}");
        output.WriteLine($"failback: set_link on -> active-changed report {(backAt - on).TotalMilliseconds:F0} ms; longest reply gap {failback.Gap.TotalMilliseconds:F0} ms; lost {failback.Lost} of {failback.Sent}");
        output.WriteLine($"guest MAC changes seen by the peer (gratuitous ARPs): {peer.GuestMacChanges}; active changes after link on: {changesAfterOn}");
        output.WriteLine(reports);

        // Bound: the MII monitor sees the carrier loss within one miimon period and switches at once (updelay 0);
        // the gratuitous ARPs then move the peer. Allow two periods, two ping intervals and 600 ms for TCG.
        var bound = TimeSpan.FromMilliseconds(2 * miimon + 600) + 2 * interval;
        Assert.True(failover.Gap <= bound, $"failover gap {failover.Gap.TotalMilliseconds:F0} ms exceeds {bound.TotalMilliseconds:F0} ms");
        Assert.True(failover.Lost <= (int)(bound / interval), $"{failover.Lost} pings lost in the failover");
        Assert.True(failback.Gap <= bound, $"failback gap {failback.Gap.TotalMilliseconds:F0} ms exceeds {bound.TotalMilliseconds:F0} ms");
        Assert.Equal(1, changesAfterOn); // back to the primary once, no flapping
        Assert.Contains(Guest.Reports.Snapshot().Skip(from), r => r.Line.Contains("\"event\":\"link-changed\"") && r.Line.Contains("\"member\":\"storage0\",\"link\":\"down\""));
    }
}
