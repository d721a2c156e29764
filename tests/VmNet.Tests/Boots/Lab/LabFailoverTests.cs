using System.Globalization;
using VmNet.Tests.Support;

namespace VmNet.Tests.Boots.Lab;

/// <summary>
/// Boots the lab host once and sets up its VFs as VmNet would hand them out: 2 VFs per PF, VF 0 of each PF with an
/// admin MAC and VLAN 40, spoofchk on, trust off, set while no driver is bound (sriov_drivers_autoprobe 0), then bound
/// to igbvf through driver_override.
/// </summary>
public sealed class LabFixture : IAsyncLifetime
{
    public static readonly string[] Pfs = ["0000:01:00.0", "0000:02:00.0"];
    public static readonly string[] VfMacs = ["02:00:00:00:40:01", "02:00:00:00:40:02"];
    private LabHost? _lab;
    private string? _problem;
    private Exception? _error;

    public TimeSpan BootToShell { get; private set; }
    public List<double> NumVfsSeconds { get; } = [];
    public string? AgentPath { get; private set; }

    public LabHost Lab
    {
        get
        {
            if (_problem is not null) GuestImage.MissingOrFail(_problem);
            if (_error is not null) throw new InvalidOperationException("the lab host did not come up", _error);
            return _lab!;
        }
    }

    public async ValueTask InitializeAsync()
    {
        var (agent, agentProblem) = await Task.Run(LabHost.Agent);
        var (_, imageProblem) = agentProblem is null ? await Task.Run(LabHost.Image) : (null, null);
        _problem = agentProblem ?? imageProblem;
        if (_problem is not null) return;
        // The lab host sees this machine's files through 9p under an overlay: give it a copy of the agent staged before
        // it boots, which no concurrent rebuild of the test guest can replace or hide while the lab runs.
        if (!File.Exists(agent)) throw new InvalidOperationException($"the guest agent was not published at {agent}");
        var staged = Directory.CreateTempSubdirectory("vmnet-lab-agent-").FullName;
        AgentPath = Path.Combine(staged, "vmnet-agent");
        File.Copy(agent!, AgentPath); // keeps the mode on Unix
        try
        {
            _lab = await LabHost.Start();
            await _lab.Must("true", TimeSpan.FromSeconds(180));
            BootToShell = _lab.Clock.Elapsed - _lab.QemuStarted;
            for (var i = 0; i < Pfs.Length; i++)
            {
                var dev = $"/sys/bus/pci/devices/{Pfs[i]}";
                var vf0 = i == 0 ? "0000:01:10.0" : "0000:02:10.0";
                var output = await _lab.Must(string.Join("\n",
                    $"pf=$(ls {dev}/net); ip link set dev $pf up",
                    $"echo 0 > {dev}/sriov_drivers_autoprobe",
                    "t0=$(date +%s%N)",
                    $"echo 2 > {dev}/sriov_numvfs",
                    "echo \"numvfs_ns $(( $(date +%s%N) - t0 ))\"",
                    $"ip link set dev $pf vf 0 mac {VfMacs[i]} vlan {LabHost.Vlan} spoofchk on trust off",
                    $"ip link set dev $pf vf 1 mac 02:00:00:00:41:0{i + 1} vlan 41 spoofchk on trust off",
                    $"echo igbvf > /sys/bus/pci/devices/{vf0}/driver_override",
                    $"echo {vf0} > /sys/bus/pci/drivers_probe",
                    $"for t in $(seq 100); do ls /sys/bus/pci/devices/{vf0}/net >/dev/null 2>&1 && break; sleep 0.1; done",
                    $"ls /sys/bus/pci/devices/{vf0}/net"), TimeSpan.FromSeconds(120));
                var ns = output.Split('\n').First(l => l.StartsWith("numvfs_ns ", StringComparison.Ordinal))[10..];
                NumVfsSeconds.Add(long.Parse(ns, CultureInfo.InvariantCulture) / 1e9);
            }
        }
        catch (Exception e) { _error = e; }
    }

    public async ValueTask DisposeAsync()
    {
        if (_lab is not null) await _lab.DisposeAsync();
        if (AgentPath is not null) try { Directory.Delete(Path.GetDirectoryName(AgentPath)!, true); } catch (IOException) { }
    }
}

/// <summary>
/// Issue 5's claim on a real kernel and emulated SR-IOV hardware: a cable pulled beyond the VF (QMP set_link on the
/// PF's emulated cable) leaves the VF with carrier, so only ARP monitoring fails the bond over; a PF taken down on the
/// host does reach the VF, and miimon sees that. The guest agent runs inside the lab host (no nested VM) and bonds
/// VF 0 of each PF (igbvf netdevs, found by MAC) with fail_over_mac=active.
/// </summary>
[Trait(Tier.Name, Tier.Boot)]
[Collection(SlowFirst.LabFailover)]
public sealed class LabFailoverTests(LabFixture fixture, ITestOutputHelper output) : IClassFixture<LabFixture>
{
    private LabHost Lab => fixture.Lab;
    private static readonly TimeSpan PingEvery = TimeSpan.FromMilliseconds(50);

    private static GuestNetwork Network(int miimon, int arpInterval) => new("lab", LabHost.PeerIp, LabHost.GuestIp, 24,
        [("lab0", LabFixture.VfMacs[0]), ("lab1", LabFixture.VfMacs[1])], Miimon: miimon, ArpInterval: arpInterval, Gateway: false);

    /// <summary>Runs the agent in the lab host with one bond over VF 0 of each PF; returns once it reported network-ready.</summary>
    private async Task<int> StartBond(GuestNetwork network)
    {
        var config = "{\"version\":1,\"hostname\":\"vmnet-lab\",\"reportPort\":\"org.vmnet.agent.0\",\"networks\":[" + network.ConfigJson() + "]}";
        var from = Lab.Reports.Count;
        await Lab.Must($"cat > /run/agent.json <<'EOF'\n{config}\nEOF\n" +
                       $"{fixture.AgentPath} --config /run/agent.json > /run/agent.log 2>&1 & echo $! > /run/agent.pid");
        var ready = await Lab.Reports.WaitFor(l => l.Contains("\"event\":\"network-ready\""), TimeSpan.FromSeconds(90), from);
        if (ready is null)
        {
            var (log, _) = await Lab.Shell("cat /run/agent.log; cat /proc/net/bonding/lab");
            Assert.Fail($"no network-ready report within 90 s. Agent log:\n{log}");
        }
        output.WriteLine(ready.Value.Line);
        // After a previous test's PF down/up lab0 may need a moment to regain carrier: the primary takes over then.
        var (active, exit) = await Lab.Shell("for t in $(seq 200); do grep -q 'Currently Active Slave: lab0' /proc/net/bonding/lab && break; sleep 0.1; done; grep 'Currently Active Slave: lab0' /proc/net/bonding/lab || cat /proc/net/bonding/lab /run/agent.log");
        Assert.True(exit == 0, $"lab0 (the primary) is not the active member 20 s after network-ready:\n{active}");
        Lab.Peer.ForgetGuest();
        Assert.True(await Lab.Peer.Reaches(TimeSpan.FromSeconds(20)), $"the peer (VLAN {LabHost.Vlan}, tagged) gets no echo reply from {LabHost.GuestIp} through the bond; frames seen: {Lab.Peer.FramesReceived}");
        return Lab.Reports.Count;
    }

    private async Task StopBond()
    {
        await Lab.Shell("kill $(cat /run/agent.pid) 2>/dev/null; sleep 0.3; echo -lab > /sys/class/net/bonding_masters 2>/dev/null; true");
    }

    private async Task<(string Line, TimeSpan At)?> Report(string eventName, string field, string value, int from, TimeSpan timeout)
    {
        var found = await Lab.Reports.WaitFor(l => l.Contains($"\"event\":\"{eventName}\"") && l.Contains($"\"{field}\":\"{value}\""), timeout, from);
        return found is null ? null : (found.Value.Line, found.Value.At);
    }

    /// <summary>
    /// Pings from the peer every <see cref="PingEvery"/>, breaks the link with <paramref name="fault"/> after a second,
    /// waits for the lab1 active-changed report (up to <paramref name="reportTimeout"/>), then
    /// <paramref name="settle"/> more; returns the report (null if none), the pings sent and when the fault and the end came.
    /// </summary>
    private async Task<((string Line, TimeSpan At)? Changed, List<(ushort Seq, TimeSpan Sent)> Sent, TimeSpan Fault, TimeSpan End)> WhilePinging(
        int from, ushort firstSeq, Func<Task> fault, TimeSpan reportTimeout, TimeSpan settle)
    {
        using var stop = new CancellationTokenSource();
        var pinging = Lab.Peer.PingUntil(PingEvery, stop.Token, firstSeq);
        await Task.Delay(1000, TestContext.Current.CancellationToken);
        var at = Lab.Clock.Elapsed;
        await fault();
        var changed = await Report("active-changed", "active", "lab1", from, reportTimeout);
        await Task.Delay(settle, TestContext.Current.CancellationToken);
        var end = Lab.Clock.Elapsed;
        await stop.CancelAsync();
        return (changed, await pinging, at, end);
    }

    private static string Figures(string what, (int Sent, int Lost, TimeSpan Gap) o) =>
        $"{what}: {o.Lost} of {o.Sent} pings lost (every {PingEvery.TotalMilliseconds} ms), " +
        (o.Lost == o.Sent ? "no reply at all" : $"longest time without a reply {o.Gap.TotalMilliseconds:F0} ms");

    [Fact]
    public async Task The_vfs_carry_the_admin_mac_and_vlan_set_before_igbvf_bound()
    {
        var links = await Lab.Must("ip -d link show; ip -br link");
        output.WriteLine($"lab host: QEMU start to shell {fixture.BootToShell.TotalSeconds:F1} s; sriov_numvfs=2: {string.Join(", ", fixture.NumVfsSeconds.Select(s => $"{s:F2} s"))}");
        output.WriteLine(links);

        foreach (var (mac, i) in LabFixture.VfMacs.Select((m, i) => (m, i)))
        {
            Assert.Contains($"vf 0     link/ether {mac} brd ff:ff:ff:ff:ff:ff, vlan {LabHost.Vlan}, spoof checking on, link-state auto, trust off", links);
            var pci = i == 0 ? "0000:01:10.0" : "0000:02:10.0";
            Assert.Equal(mac, (await Lab.Must($"cat /sys/bus/pci/devices/{pci}/net/*/address")).Trim());
        }
    }

    [Fact]
    public async Task A_vf_with_an_admin_mac_and_trust_off_cannot_change_its_own_mac()
    {
        var vf = (await Lab.Must("ls /sys/bus/pci/devices/0000:01:10.0/net")).Trim();

        var (change, exit) = await Lab.Shell($"ip link set dev {vf} address 02:00:00:00:40:99");
        var address = (await Lab.Must($"cat /sys/class/net/{vf}/address")).Trim();
        var (log, _) = await Lab.Shell("dmesg | grep -i 'override administratively set MAC' | tail -2");
        output.WriteLine($"ip link set dev {vf} address 02:00:00:00:40:99 -> exit {exit}: {change.Trim()}\n{log.Trim()}");

        Assert.NotEqual(0, exit);
        Assert.Equal(LabFixture.VfMacs[0], address);
    }

    [Fact]
    public async Task Arp_monitoring_fails_over_when_the_cable_beyond_the_vf_is_pulled()
    {
        var from = await StartBond(Network(miimon: 0, arpInterval: 100));
        try
        {
            var (changed, sent, pulled, end) = await WhilePinging(from, 1000, () => Lab.Cable(0, connected: false),
                TimeSpan.FromSeconds(15), TimeSpan.FromSeconds(3));
            var (bonding, _) = await Lab.Shell("cat /proc/net/bonding/lab");
            output.WriteLine(bonding);

            Assert.True(changed is not null, $"ARP monitoring did not fail over within 15 s of the cable pull:\n{bonding}");
            var outage = Failover.Outage(Lab.Peer, sent, pulled, end);
            var tail = Failover.Outage(Lab.Peer, sent, end - TimeSpan.FromSeconds(1), end);
            output.WriteLine($"cable pulled -> active-changed report {(changed!.Value.At - pulled).TotalMilliseconds:F0} ms");
            output.WriteLine(Figures("ARP monitor (arp_interval 100), cable pull", outage));
            Assert.Contains("Currently Active Slave: lab1", bonding);
            Assert.True(tail.Lost <= 2, $"traffic did not continue on lab1: {tail.Lost} of {tail.Sent} pings lost in the last second");
            Assert.True(outage.Gap < TimeSpan.FromSeconds(3), Figures("gap over 3 s (30 arp intervals)", outage));
        }
        finally
        {
            await Lab.Cable(0, connected: true);
            await StopBond();
        }
    }

    [Fact]
    public async Task Miimon_does_not_see_the_cable_beyond_the_vf_the_vf_keeps_carrier()
    {
        var from = await StartBond(Network(miimon: 100, arpInterval: 0));
        try
        {
            var (changed, sent, pulled, end) = await WhilePinging(from, 2000, () => Lab.Cable(0, connected: false),
                TimeSpan.FromSeconds(4), TimeSpan.Zero);
            var (state, _) = await Lab.Shell("cat /sys/class/net/lab0/carrier /sys/class/net/lab0/operstate; cat /proc/net/bonding/lab");
            output.WriteLine(state);

            var outage = Failover.Outage(Lab.Peer, sent, pulled + TimeSpan.FromMilliseconds(200), end);
            output.WriteLine(Figures("miimon 100, cable pull (no failover: the documented blind spot)", outage));
            Assert.Null(changed);
            Assert.StartsWith("1\nup\n", state.ReplaceLineEndings("\n"));
            Assert.Contains("Currently Active Slave: lab0", state);
            Assert.True(outage.Lost >= outage.Sent * 9 / 10, $"expected the pings to die with the cable: {outage.Lost} of {outage.Sent} lost");
        }
        finally
        {
            await Lab.Cable(0, connected: true);
            await StopBond();
        }
    }

    [Fact]
    public async Task Miimon_fails_over_when_the_pf_goes_down_on_the_host()
    {
        var from = await StartBond(Network(miimon: 100, arpInterval: 0));
        var pf0 = (await Lab.Must($"ls /sys/bus/pci/devices/{LabFixture.Pfs[0]}/net")).Trim();
        try
        {
            var (changed, sent, down, end) = await WhilePinging(from, 3000, () => Lab.Must($"ip link set dev {pf0} down"),
                TimeSpan.FromSeconds(15), TimeSpan.FromSeconds(3));
            var linkDown = await Report("link-changed", "member", "lab0", from, TimeSpan.Zero);
            var (bonding, _) = await Lab.Shell("cat /proc/net/bonding/lab");
            output.WriteLine(bonding);

            Assert.True(changed is not null, $"miimon did not fail over within 15 s of `ip link set {pf0} down`:\n{bonding}");
            var outage = Failover.Outage(Lab.Peer, sent, down, end);
            var tail = Failover.Outage(Lab.Peer, sent, end - TimeSpan.FromSeconds(1), end);
            output.WriteLine($"PF down -> lab0 link-changed report {(linkDown is null ? "none" : $"{(linkDown.Value.At - down).TotalMilliseconds:F0} ms")}, -> active-changed report {(changed!.Value.At - down).TotalMilliseconds:F0} ms");
            output.WriteLine(Figures($"miimon 100, ip link set {pf0} down", outage));
            Assert.Contains("Currently Active Slave: lab1", bonding);
            Assert.True(tail.Lost <= 2, $"traffic did not continue on lab1: {tail.Lost} of {tail.Sent} pings lost in the last second");
            Assert.True(outage.Gap < TimeSpan.FromSeconds(5), Figures("gap over 5 s", outage));
        }
        finally
        {
            await Lab.Shell($"ip link set dev {pf0} up; for t in $(seq 200); do [ \"$(cat /sys/class/net/{pf0}/carrier 2>/dev/null)\" = 1 ] && break; sleep 0.1; done");
            await StopBond();
        }
    }
}
