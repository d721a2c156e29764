using System.Text.Json;
using System.Text.RegularExpressions;
using VmNet.Tests.Support;

namespace VmNet.Tests.Boots.Guest;

public sealed class DhcpGuest : GuestFixture
{
    /// <summary>udhcpd hands out 192.168.50.15 only, for 30 s (T1 15 s), with a router, a DNS server and a domain.</summary>
    public static readonly GuestNetwork Lan = new("lan", "192.168.50.1", "192.168.50.15", 24,
        [("lan0", "02:00:00:00:50:11"), ("lan1", "02:00:00:00:50:12")],
        Dhcp: new DhcpServer("192.168.50.2", "192.168.50.15", "192.168.50.15", 30, "192.168.50.2", "192.168.50.3", "lab.example"));

    protected override GuestNetwork[] Networks => [Lan];
}

/// <summary>
/// `address: dhcp` on a real kernel: the agent's own DHCP client gets the bond's address from busybox's udhcpd (on
/// the network's hub beside the two NICs and the peer), sets it with the lease's lifetime, the router as a default
/// route and the DNS server and domain in resolv.conf; renews it at T1, also after a failover (the bond's MAC follows
/// the active member, the client's identity stays member 0's MAC); a restarted agent gets the same address back.
/// </summary>
[Trait(Tier.Name, Tier.Boot)]
[Collection("Guest")]
[TestMethodOrderer(typeof(StepOrderer))]
public sealed class DhcpGuestTests(DhcpGuest fixture, ITestOutputHelper output) : IClassFixture<DhcpGuest>
{
    private QemuGuest Guest => fixture.Guest;
    private const string Leased = "192.168.50.15/24";

    private string Diagnostics => $"serial (tail):\n{QemuGuest.Tail(Guest.SerialLog, 30)}\nudhcpd:\n{Guest.DhcpServers[0].Log}";

    [Fact, Step(1)]
    public async Task The_bond_gets_its_address_router_and_dns_from_the_dhcp_server_and_reports_it()
    {
        var settings = await Guest.Must("ip addr show dev lan; ip route; cat /etc/resolv.conf /run/vmnet-agent/dhcp-lan.lease", output);
        output.WriteLine($"boot to network-ready: {fixture.BootToReady.TotalSeconds:F1} s\n{fixture.ReadyReport}");

        Assert.Matches(@"inet 192\.168\.50\.15/24 brd 192\.168\.50\.255 scope global dynamic lan\s+valid_lft \d+sec", settings);
        Assert.InRange(int.Parse(Regex.Match(settings, @"valid_lft (\d+)sec").Groups[1].Value), 1, 30);
        Assert.Matches(@"default via 192\.168\.50\.2 dev lan\s+metric 1024", settings);        // busybox's ip does not print the proto
        Assert.Contains("search lab.example\nnameserver 192.168.50.3", settings.ReplaceLineEndings("\n"));
        Assert.Contains($"{Leased} ", settings);                                          // the remembered lease
        using var report = JsonDocument.Parse(fixture.ReadyReport!);
        Assert.Equal([Leased], report.RootElement.GetProperty("networks")[0].GetProperty("addresses").EnumerateArray().Select(a => a.GetString()));
        Assert.Contains($"network `lan`: DHCP: {Leased} leased from 192.168.50.2 (lease 30 s, router 192.168.50.2, DNS 192.168.50.3)", Guest.SerialLog);
    }

    [Fact, Step(2)]
    public async Task The_peer_reaches_the_leased_address_and_a_second_agent_leaves_the_lease_to_the_running_one()
    {
        Assert.True(await Guest.Peers[0].Reaches(TimeSpan.FromSeconds(15)), $"the peer gets no echo reply from {DhcpGuest.Lan.GuestIp}\n{Diagnostics}");
        const string state = "ip -o addr show dev lan | sed 's/valid_lft.*//'; ip route; cat /etc/resolv.conf";
        var before = (await Guest.Shell(state)).Output;

        var (run, exit) = await Guest.Shell("/sbin/vmnet-agent --once");
        var after = (await Guest.Shell(state)).Output;

        output.WriteLine(run);
        Assert.Equal(0, exit);
        Assert.Contains("network `lan`: the running vmnet-agent (pid ", run);
        Assert.Contains("vmnet-agent: 0 change(s)", run);
        Assert.Equal(before, after);
    }

    [Fact, Step(3)]
    public async Task After_a_failover_the_lease_is_renewed_and_a_restarted_agent_gets_the_same_address_back()
    {
        var peer = Guest.Peers[0];
        var from = Guest.Reports.Count;
        await Guest.SetLink(QemuGuest.NicId(0, 0), false);
        try
        {
            await Guest.WaitForReport("active-changed", TimeSpan.FromSeconds(10), from, l => l.Contains("\"active\":\"lan1\""));
            Assert.Equal("02:00:00:00:50:12", (await Guest.Shell("cat /sys/class/net/lan/address")).Output.Trim());  // lan1's MAC now

            // T1 comes within 15 s: the renewal goes out from lan1's MAC, the client still names itself by lan0's.
            var serial = Guest.SerialLog.Length;
            var renewed = await WaitForSerial($"DHCP: {Leased} renewed with 192.168.50.2", serial, TimeSpan.FromSeconds(25));
            Assert.True(renewed, $"no renewal within 25 s of the failover\n{Diagnostics}");

            // The agent stops (SIGTERM) and starts again: it asks for the remembered address (INIT-REBOOT) and gets it.
            serial = Guest.SerialLog.Length;
            from = Guest.Reports.Count;
            await Guest.Must("kill $(pidof vmnet-agent); sleep 0.5; /sbin/vmnet-agent > /dev/ttyS0 2>&1 & sleep 0.2", output);
            var ready = await Guest.WaitForReport("network-ready", TimeSpan.FromSeconds(60), from);
            output.WriteLine(Guest.SerialLog[serial..]);
            output.WriteLine(ready);

            Assert.Contains($"network `lan`: DHCP: {Leased} confirmed by 192.168.50.2", Guest.SerialLog[serial..]);
            Assert.Contains($"\"addresses\":[\"{Leased}\"]", ready);
            peer.ForgetGuest();
            Assert.True(await peer.Reaches(TimeSpan.FromSeconds(15)), $"the peer does not reach the guest on lan1 after the restart\n{Diagnostics}");
            Assert.Equal("020000005012", peer.GuestMac);
        }
        finally
        {
            await Guest.SetLink(QemuGuest.NicId(0, 0), true);
        }
    }

    private async Task<bool> WaitForSerial(string text, int from, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (DateTime.UtcNow < deadline)
        {
            if (Guest.SerialLog.IndexOf(text, from, StringComparison.Ordinal) >= 0) return true;
            await Task.Delay(250, TestContext.Current.CancellationToken);
        }
        return false;
    }
}
