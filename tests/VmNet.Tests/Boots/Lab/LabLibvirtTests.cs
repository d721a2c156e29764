using System.Globalization;
using System.Text.RegularExpressions;
using VmNet.Tests.Support;

namespace VmNet.Tests.Boots.Lab;

/// <summary>
/// The default backend for real (issue 12): libvirtd runs in the lab host (Debian's monolithic libvirtd and virtlogd,
/// images/lab/libvirtd.sh), and `vmnet up` without a backend defines and starts a libvirt domain of the test guest
/// over one igb VF of each PF, passed through as &lt;hostdev managed='no'&gt;. The lab host keeps its state on a disk
/// (images/lab/persist.sh: /etc/vmnet, /etc/libvirt, /var/lib/vmnet, /var/lib/libvirt), so it can be restarted.
/// </summary>
public sealed class LabLibvirtFixture : IAsyncLifetime
{
    /// <summary>The PFs of the one-node lab host (LabVmNetFixture's two-node one has them behind a pxb-pcie).</summary>
    public const string Pf0 = "0000:01:00.0";
    public const string Pf1 = "0000:02:00.0";
    public const string Vm = "lv";
    public const int Qos = 3;
    private string? _problem;
    private Exception? _error;
    private LabHost? _lab;

    public string Publish { get; private set; } = "";
    public string Disk { get; private set; } = "";
    public string Guest { get; private set; } = "";
    public string Setup { get; private set; } = "";
    public (string Output, int Exit, double Seconds) Up { get; private set; }
    /// <summary>Both PFs' whole `ip -d link show` and every VF's driver before the VM: what gc must give back.</summary>
    public string AsFound { get; private set; } = "";
    public string Diagnostics { get; private set; } = "";

    public LabHost Lab
    {
        get
        {
            if (_problem is not null) GuestImage.MissingOrFail(_problem);
            if (_error is not null) throw new InvalidOperationException("the lab host, libvirtd or vmnet up in it did not come up", _error);
            return _lab!;
        }
    }

    /// <summary>
    /// Both PFs as the kernel shows them (`ip -d link show`, without the interface index, which counts every netdev the
    /// host ever had) and each VF's PCI address and driver.
    /// </summary>
    public const string PfState =
        "for pf in /sys/bus/pci/devices/" + Pf0 + " /sys/bus/pci/devices/" + Pf1 + "; do ip -d link show dev $(ls $pf/net) | sed 's/^[0-9]*: //'; " +
        "for vf in $pf/virtfn*; do echo \"$(basename $(readlink $vf)) $(basename $(readlink $vf/driver 2>/dev/null) 2>/dev/null)\"; done; done";

    public async ValueTask InitializeAsync()
    {
        var (guest, guestProblem) = await Task.Run(GuestImage.TryGet);
        var (_, imageProblem) = guestProblem is null ? await Task.Run(LabHost.Image) : (null, null);
        _problem = guestProblem ?? imageProblem ?? (RequiredTool.Find("mkfs.ext4") is null ? RequiredTool.MissingMessage("mkfs.ext4") : null);
        if (_problem is not null) return;
        Guest = guest!;
        try
        {
            var published = await Task.Run(LabVmNetFixture.PublishVmnet);
            Publish = Directory.CreateTempSubdirectory("vmnet-lablv-publish-").FullName;
            foreach (var f in new[] { "vmnet", "vmnet-agent" }) File.Copy(Path.Combine(published, f), Path.Combine(Publish, f));
            // The lab host's disk: blank, persist.sh formats it at the first boot.
            Disk = Path.Combine(Publish, "lab-disk.raw");
            using (var disk = File.Create(Disk)) disk.SetLength(512L << 20);

            _lab = await Boot();
            await _lab.Must("cat > /etc/vmnet/host.yaml <<'EOF'\npfs:\n  - {port: \"" + Pf0 + "\", vfs: 2}\n  - {port: \"" + Pf1 + "\", vfs: 2}\nEOF");
            // The boot unit's ExecStart lines are what the restarted host runs (step 5).
            Setup = await _lab.Must($"vmnet host boot-unit --config /etc/vmnet/host.yaml --vmnet {Publish}/vmnet -o /etc/vmnet/vmnet-host.service && " +
                "vmnet host apply --config /etc/vmnet/host.yaml && vmnet doctor", TimeSpan.FromSeconds(120));
            AsFound = await _lab.Must(PfState);
            Setup += await _lab.Must(Repo.File("images/lab/libvirtd.sh"), TimeSpan.FromSeconds(330));
            await _lab.Must("qemu-img create -q -f qcow2 /var/lib/vmnet/empty.qcow2 16M");
            await _lab.Must(
                $"cat > /etc/vmnet/{Vm}.yaml <<'EOF'\nname: {Vm}\ncpus: 1\nmemory: {LabHost.GuestMemory}\naccel: tcg\nautostart: true\n" +
                $"disk: {{image: /var/lib/vmnet/empty.qcow2}}\n" +
                $"boot: {{kernel: {Guest}/kernel, initrd: {Guest}/initrd, cmdline: \"{LabHost.GuestCmdline}\"}}\n" +
                $"networks:\n  - name: lab\n    ports: [\"{Pf0}\", \"{Pf1}\"]\n    vlan: {LabHost.Vlan}\n    qos: {Qos}\n" +
                $"    address: {LabHost.GuestIp}/24\n    bond: {{miimon: 100}}\nEOF");
            // Not waited for: the host restart (step 2) follows at once, and the guest's first boot is the one libvirtd
            // autostarts after it (a nested boot costs minutes of a core; each one this lab awaits proves something).
            var up = await _lab.Shell($"s=$(date +%s%N); vmnet up /etc/vmnet/{Vm}.yaml --no-wait; echo \"== $? $(( ($(date +%s%N) - s) / 1000000 ))\"", TimeSpan.FromSeconds(300));
            var m = Regex.Match(up.Output, @"^== (\d+) (\d+)$", RegexOptions.Multiline);
            Up = m.Success ? (up.Output[..m.Index], int.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture), int.Parse(m.Groups[2].Value, CultureInfo.InvariantCulture) / 1000.0) : (up.Output, -1, 0);
            if (Up.Exit != 0) Diagnostics = await DiagnosticsNow();
        }
        catch (Exception e) { _error = e; }
    }

    /// <summary>The lab host's state for a failure message: libvirt's logs, the VM's serial log, the load.</summary>
    public async Task<string> DiagnosticsNow() => (await _lab!.Shell(
        $"for f in /var/log/libvirt/libvirtd.log /var/log/libvirt/qemu/{Vm}.log /var/lib/vmnet/vms/{Vm}/serial.log; do [ -f $f ] && {{ echo \"== $f\"; tail -40 $f; }}; done; " +
        "cat /proc/loadavg; dmesg | tail -20")).Output;

    /// <summary>
    /// Boots the lab host over its disk and brings it to where a real host's boot gets before VmNet's boot unit: the
    /// persistent file systems mounted, the PFs up (the host's network configuration), vmnet on the PATH.
    /// </summary>
    private async Task<LabHost> Boot()
    {
        var lab = await LabHost.Start(Disk);
        try
        {
            await lab.Must("true", TimeSpan.FromSeconds(180));
            await lab.Must($"export PATH={Publish}:$PATH; cd /run");
            await lab.Must(Repo.File("images/lab/persist.sh"), TimeSpan.FromSeconds(60));
            await lab.Must($"for pf in {Pf0} {Pf1}; do ip link set dev $(ls /sys/bus/pci/devices/$pf/net) up; done");
            return lab;
        }
        catch { await lab.DisposeAsync(); throw; }
    }

    /// <summary>
    /// A host restart, as a power loss would do it: the disk synced, the lab host powered off (QEMU and its guest with
    /// it), then booted again over the same disk (/run and the VFs are gone).
    /// </summary>
    public async Task<LabHost> Restart()
    {
        var lab = Lab;
        await lab.PowerOff();
        await lab.DisposeAsync();
        _lab = null;
        _lab = await Boot();
        return _lab;
    }

    public async ValueTask DisposeAsync()
    {
        if (_lab is not null) await _lab.DisposeAsync();
        if (Publish.Length > 0) try { Directory.Delete(Publish, true); } catch (IOException) { }
    }
}

/// <summary>
/// Issue 12 on real kernels: the libvirt domain vmnet defines stays virsh's. Every spec field of each VF (MAC, VLAN
/// 40 with qos 3, spoof checking, trust, link state, the vfio-pci binding) is read back from the PF after each of
/// `vmnet up --no-wait`, a restart of the host (the boot unit's lines, then libvirtd, which autostarts the domain: the
/// guest's first boot), a failover, `virsh shutdown` and `virsh start`, `virsh reboot` (the guest reset in the same
/// QEMU) and `virsh destroy` + `start`; `vmnet rm` after all that, and `vmnet gc` once a domain was destroyed and
/// undefined behind vmnet's back, give the VFs back exactly as found. The steps share one lab host and one VM. Two
/// boots are awaited, each to the agent's report over libvirt's channel and the peer's pings: after the host restart
/// (no vmnet command typed) and after `virsh shutdown` + `virsh start`. Each nested boot costs minutes of one of the
/// CI's two cores, so `vmnet up` does not wait for the boot the restart cuts short, and the domain is paused after
/// the last start, whose boot nothing needs.
/// </summary>
[Trait(Tier.Name, Tier.Boot)]
[Collection(SlowFirst.LabLibvirt)]
[TestMethodOrderer(typeof(StepOrderer))]
public sealed class LabLibvirtTests(LabLibvirtFixture fixture, ITestOutputHelper output) : IClassFixture<LabLibvirtFixture>
{
    private const string Vm = LabLibvirtFixture.Vm;
    private const string Virsh = "virsh -q -c qemu:///system";
    private LabHost Lab => fixture.Lab;

    /// <summary>The VM's two VFs as `vmnet status` names them: (member, PF netdev, VF index, PCI address, MAC).</summary>
    private async Task<List<(string Member, string Pf, string Vf, string Pci, string Mac)>> Vfs()
    {
        var status = await Lab.Must($"vmnet status {Vm}");
        var vfs = Regex.Matches(status, @"^  lab +(lab[01]) +(\S+) +vf (\d+) +(\S+) +([0-9a-f:]{17}) +vlan 40", RegexOptions.Multiline)
            .Select(m => (m.Groups[1].Value, m.Groups[2].Value, m.Groups[3].Value, m.Groups[4].Value, m.Groups[5].Value)).ToList();
        Assert.True(vfs.Count == 2, $"vmnet status {Vm} does not name two VFs on VLAN 40:\n{status}");
        return vfs;
    }

    /// <summary>
    /// Reads both VFs back from their PFs: each must carry every setting of the spec and be bound to vfio-pci.
    /// Returns what it read.
    /// </summary>
    private async Task<string> AssertVfsAsPlanned(string when)
    {
        var state = await Lab.Must(LabLibvirtFixture.PfState);
        foreach (var (member, pf, vf, pci, mac) in await Vfs())
        {
            Assert.True(state.Contains($"vf {vf}     link/ether {mac} brd ff:ff:ff:ff:ff:ff, vlan {LabHost.Vlan}, qos {LabLibvirtFixture.Qos}, spoof checking on, link-state auto, trust off", StringComparison.Ordinal),
                $"{when}: {member}'s VF ({pf} vf {vf}) is not as planned (MAC {mac}, vlan {LabHost.Vlan}, qos {LabLibvirtFixture.Qos}, spoof checking on, link-state auto, trust off):\n{state}");
            Assert.True(state.Contains($"{pci} vfio-pci", StringComparison.Ordinal), $"{when}: {member}'s VF {pci} is not bound to vfio-pci:\n{state}");
        }
        return state;
    }

    private async Task<string> DomState() => (await Lab.Must($"{Virsh} domstate {Vm}")).Trim();

    private async Task WaitForState(string state, TimeSpan timeout)
    {
        var deadline = Lab.Clock.Elapsed + timeout;
        var now = "";
        while (Lab.Clock.Elapsed < deadline)
        {
            if ((now = await DomState()) == state) return;
            await Task.Delay(500, TestContext.Current.CancellationToken);
        }
        Assert.Fail($"the domain is '{now}', not '{state}', {timeout.TotalSeconds:F0} s later\n{await fixture.DiagnosticsNow()}");
    }

    /// <summary>The lab host's clock (UTC), to tell an agent report sent after it from an older one.</summary>
    /// <summary>How long a nested boot (TCG inside TCG) may take to the agent's report: 3 to 5 minutes on a quiet
    /// machine, 9 to 10 in a CI run beside another nested guest.</summary>
    private static readonly TimeSpan NestedBoot = TimeSpan.FromSeconds(900);

    /// <summary>How long `virsh start` may take: QEMU started under TCG with two VFs on vfio-pci. Seconds on a quiet
    /// machine; a CI run beside another nested guest took over 60.</summary>
    private static readonly TimeSpan VirshStart = TimeSpan.FromSeconds(300);

    private async Task<DateTimeOffset> LabNow() =>
        DateTimeOffset.FromUnixTimeSeconds(long.Parse((await Lab.Must("date +%s")).Trim(), CultureInfo.InvariantCulture));

    /// <summary>Polls `vmnet status` (every 10 s) until the guest's agent reported, at or after <paramref name="since"/>, its bond up with lab0 active.</summary>
    private async Task<string> WaitForGuest(DateTimeOffset since, TimeSpan timeout)
    {
        var deadline = Lab.Clock.Elapsed + timeout;
        var status = "";
        while (Lab.Clock.Elapsed < deadline)
        {
            status = (await Lab.Shell($"vmnet status {Vm}")).Output;
            var report = Regex.Match(status, @"agent report of (\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ)");
            if (report.Success && DateTimeOffset.Parse(report.Groups[1].Value, CultureInfo.InvariantCulture) >= since.AddSeconds(-1)
                && status.Contains($"lab: active lab0; lab0 up, lab1 up; {LabHost.GuestIp}/24", StringComparison.Ordinal))
                return status;
            // Every 10 s: each `vmnet status` costs the lab host a process, a libvirt call and the agent's socket,
            // CPU the nested guest's boot needs under TCG.
            await Task.Delay(10_000, TestContext.Current.CancellationToken);
        }
        Assert.Fail($"no network-ready report of the guest since {since:u} within {timeout.TotalSeconds:F0} s:\n{status}\n{await fixture.DiagnosticsNow()}");
        return status;
    }

    private async Task AssertPeerReachesGuest(string when)
    {
        Lab.Peer.ForgetGuest();
        Assert.True(await Lab.Peer.Reaches(TimeSpan.FromSeconds(60)),
            $"{when}: the peer (VLAN {LabHost.Vlan}) gets no echo reply from {LabHost.GuestIp}; frames seen: {Lab.Peer.FramesReceived}");
    }

    /// <summary>How many lines of the VM's serial log contain <paramref name="text"/>.</summary>
    private async Task<int> SerialCount(string text) =>
        int.Parse((await Lab.Must($"grep -a -c '{text}' /var/lib/vmnet/vms/{Vm}/serial.log || true")).Trim(), CultureInfo.InvariantCulture);

    [Fact, Step(1)]
    public async Task Up_with_the_default_backend_starts_a_libvirt_domain_over_two_vfs_that_vmnet_alone_configures()
    {
        var lab = Lab;
        output.WriteLine($"{fixture.Setup}\n== vmnet up --no-wait: exit {fixture.Up.Exit} after {fixture.Up.Seconds:F1} s\n{fixture.Up.Output}\n{fixture.Diagnostics}");
        Assert.True(fixture.Up.Exit == 0, $"vmnet up {Vm} exited {fixture.Up.Exit}:\n{fixture.Up.Output}\n{fixture.Diagnostics}");
        Assert.Contains($"{Vm} is up (libvirt, qemu:///system): 1 network over 2 VFs", fixture.Up.Output);
        Assert.Contains("autostart on", fixture.Up.Output);

        var xml = await lab.Must($"{Virsh} dumpxml {Vm}");
        var hostdevMgr = await lab.Shell("ls -A /run/libvirt/hostdevmgr 2>/dev/null");
        var state = await AssertVfsAsPlanned("after vmnet up");
        output.WriteLine($"{state}\nlibvirt's saved VF state (/run/libvirt/hostdevmgr): '{hostdevMgr.Output.Trim()}'");
        // Plain PCI hostdevs: libvirt leaves MAC, VLAN and the driver binding alone, and saves nothing of the VF.
        Assert.Equal(2, Regex.Matches(xml, "<hostdev mode='subsystem' type='pci' managed='no'>").Count);
        Assert.DoesNotContain("<interface type='hostdev'", xml);
        Assert.Equal("", hostdevMgr.Output.Trim());
        Assert.Equal("enable", (await lab.Must($"{Virsh} dominfo {Vm} | sed -n 's/^Autostart: *//p'")).Trim());
        Assert.Equal("running", await DomState());
    }

    [Fact, Step(2)]
    public async Task After_a_host_restart_the_boot_units_lines_prepare_the_vfs_and_libvirtd_autostarts_the_guest()
    {
        // Every report of the guest until now came before this: none came at all (its boot is not awaited).
        var since = await LabNow();
        var lab = await fixture.Restart();
        var unit = await lab.Must("cat /etc/vmnet/vmnet-host.service");
        var lines = Regex.Matches(unit, @"^ExecStart=(.+)$", RegexOptions.Multiline).Select(m => m.Groups[1].Value).ToList();
        Assert.Equal(2, lines.Count);
        var before = await lab.Must($"ls /sys/bus/pci/devices/{LabLibvirtFixture.Pf0}/ | grep -c virtfn || true");
        // What systemd would run at boot, in order, before libvirtd (Before=libvirtd.service).
        var prepared = await lab.Must(string.Join(" && ", lines), TimeSpan.FromSeconds(120));
        var ready = await lab.Must(Repo.File("images/lab/libvirtd.sh"), TimeSpan.FromSeconds(330));
        output.WriteLine($"VFs of PF0 after the restart, before the boot unit: {before.Trim()}\n{unit}\n{prepared}\n{ready}");
        Assert.Equal("0", before.Trim());
        Assert.Contains($"prepared for {Vm}", prepared);

        await WaitForState("running", TimeSpan.FromSeconds(60));
        await AssertVfsAsPlanned("after the host restart, with the domain autostarted");
        // The agent's network-ready report over libvirt's channel socket, read by `vmnet status`; no vmnet command
        // started anything.
        output.WriteLine(await WaitForGuest(since, NestedBoot));
        await AssertPeerReachesGuest("after the host restart");
    }

    [Fact, Step(3)]
    public async Task The_peer_reaches_the_guest_and_the_bond_fails_over_when_the_active_pf_goes_down()
    {
        var status = await WaitForGuest(DateTimeOffset.UnixEpoch, TimeSpan.FromSeconds(60));
        output.WriteLine(status);
        await AssertPeerReachesGuest("before the failover");

        var pf0 = (await Lab.Must($"ls /sys/bus/pci/devices/{LabLibvirtFixture.Pf0}/net")).Trim();
        using var stop = new CancellationTokenSource();
        var pinging = Lab.Peer.PingUntil(TimeSpan.FromMilliseconds(100), stop.Token, 5000);
        try
        {
            await Task.Delay(2000, TestContext.Current.CancellationToken);
            var broken = Lab.Clock.Elapsed;
            await Lab.Must($"ip link set dev {pf0} down");
            var deadline = Lab.Clock.Elapsed + TimeSpan.FromSeconds(30);
            while (!(status = (await Lab.Shell($"vmnet status {Vm}")).Output).Contains("lab: active lab1;", StringComparison.Ordinal) && Lab.Clock.Elapsed < deadline)
                await Task.Delay(300, TestContext.Current.CancellationToken);
            var moved = Lab.Clock.Elapsed - broken;
            await Task.Delay(4000, TestContext.Current.CancellationToken);
            var end = Lab.Clock.Elapsed;
            await stop.CancelAsync();
            var sent = await pinging;
            var outage = Guest.Failover.Outage(Lab.Peer, sent, broken, end);
            var tail = Guest.Failover.Outage(Lab.Peer, sent, end - TimeSpan.FromSeconds(2), end);
            output.WriteLine($"{status}\nip link set {pf0} down -> vmnet status shows lab1 active: {moved.TotalSeconds:F1} s; {outage.Lost} of {outage.Sent} pings lost, longest gap {outage.Gap.TotalMilliseconds:F0} ms");
            Assert.Contains("lab: active lab1;", status);
            Assert.True(tail.Lost <= 2, $"traffic did not continue on lab1: {tail.Lost} of {tail.Sent} pings lost in the last 2 s");
        }
        finally
        {
            await stop.CancelAsync();
            await Lab.Shell($"ip link set dev {pf0} up");
        }
        await WaitForGuest(DateTimeOffset.UnixEpoch, TimeSpan.FromSeconds(60));
    }

    [Fact, Step(4)]
    public async Task Virsh_shutdown_keeps_the_vfs_with_the_vm_and_after_virsh_start_the_guest_bonds_again_on_them()
    {
        await Lab.Must($"{Virsh} shutdown {Vm}");
        await WaitForState("shut off", TimeSpan.FromSeconds(120));
        var status = await Lab.Must($"vmnet status {Vm}");
        var gc = await Lab.Must("vmnet gc");
        var off = await AssertVfsAsPlanned("after virsh shutdown (and vmnet gc)");
        output.WriteLine($"{status}\n-- vmnet gc:\n{gc}\n{off}");
        Assert.Contains($"{Vm}: shut off (libvirt)", status);
        Assert.Equal(2, (await Vfs()).Count);

        var since = await LabNow();
        await Lab.Must($"{Virsh} start {Vm}", VirshStart);
        Assert.Equal("running", await DomState());
        output.WriteLine(await AssertVfsAsPlanned("right after virsh start"));
        output.WriteLine(await WaitForGuest(since, NestedBoot));
        await AssertPeerReachesGuest("after virsh shutdown and virsh start");
        await AssertVfsAsPlanned("once the guest bonded again");
    }

    [Fact, Step(5)]
    public async Task Virsh_reboot_resets_the_guest_in_the_same_qemu_and_the_vfs_stay_as_planned()
    {
        var pid = (await Lab.Must($"cat /run/libvirt/qemu/{Vm}.pid")).Trim();
        var powerOffs = await SerialCount("vmnet-init: power button");
        // The test guest's acpid powers it off on the ACPI power button; libvirt then resets it in the same QEMU (its
        // "fake reboot") instead of stopping it. The boot that follows is an ordinary boot of the guest (steps 2 and 4
        // wait for one); the next step destroys the domain during it.
        await Lab.Must($"{Virsh} reboot {Vm}");
        var deadline = Lab.Clock.Elapsed + TimeSpan.FromSeconds(180);
        while (await SerialCount("vmnet-init: power button") == powerOffs && Lab.Clock.Elapsed < deadline)
            await Task.Delay(1000, TestContext.Current.CancellationToken);
        Assert.True(await SerialCount("vmnet-init: power button") > powerOffs, $"the guest did not act on virsh reboot within 180 s\n{await fixture.DiagnosticsNow()}");
        await Task.Delay(3000, TestContext.Current.CancellationToken);
        Assert.Equal("running", await DomState());
        Assert.Equal(pid, (await Lab.Must($"cat /run/libvirt/qemu/{Vm}.pid")).Trim());
        output.WriteLine(await AssertVfsAsPlanned("after virsh reboot (the guest reset in the same QEMU)"));
    }

    [Fact, Step(6)]
    public async Task Virsh_destroy_and_start_keep_every_vf_setting()
    {
        await Lab.Must($"{Virsh} destroy {Vm}", TimeSpan.FromSeconds(120));
        Assert.Equal("shut off", await DomState());
        await AssertVfsAsPlanned("after virsh destroy");
        await Lab.Must($"{Virsh} start {Vm}", VirshStart);
        Assert.Equal("running", await DomState());
        output.WriteLine(await AssertVfsAsPlanned("right after virsh destroy and virsh start"));
        // Its boot is not awaited (steps 2 and 4 await one): paused, it takes no CPU the other test thread's guests need.
        await Lab.Must($"{Virsh} suspend {Vm}");
        Assert.Equal("paused", await DomState());
    }

    /// <summary>Both PFs now against before vmnet up: whole `ip -d link show` and drivers, VF MACs the VF driver chose masked.</summary>
    private void AssertAsFound(string state) =>
        // A VF found without an admin MAC gets it cleared again; its driver (igbvf) then picks a random one of its own,
        // which the PF shows.
        Assert.Equal(LabVmNetFixture.WithoutVfDriverMacs(fixture.AsFound, fixture.AsFound), LabVmNetFixture.WithoutVfDriverMacs(state, fixture.AsFound));

    [Fact, Step(7)]
    public async Task After_the_lifecycle_rm_gives_every_vf_back_exactly_as_found()
    {
        // The domain is paused (step 6): the power button goes unanswered and rm stops it hard after 10 s.
        var rm = await Lab.Must($"vmnet rm --force {Vm} --timeout 10", TimeSpan.FromSeconds(180));
        var host = await Lab.Must("vmnet host");
        var state = await Lab.Must(LabLibvirtFixture.PfState);
        var defined = await Lab.Shell($"{Virsh} dominfo {Vm}");
        output.WriteLine($"{rm}\n-- vmnet host:\n{host}\n-- as found:\n{fixture.AsFound}\n-- now:\n{state}");

        Assert.Matches($@"{Vm}: (shut down and|did not power off within 10 s and was stopped hard;) removed from libvirt", rm);
        Assert.NotEqual(0, defined.Exit);
        Assert.Equal(4, Regex.Matches(host, @"igbvf .*free").Count);
        AssertAsFound(state);
    }

    [Fact, Step(8)]
    public async Task When_the_domain_is_undefined_behind_vmnets_back_gc_gives_every_vf_back_exactly_as_found()
    {
        // Defined and started (not waited for), then destroyed and undefined with virsh alone: vmnet is not asked.
        var up = await Lab.Must($"vmnet up --no-wait /etc/vmnet/{Vm}.yaml", TimeSpan.FromSeconds(180));
        var held = await AssertVfsAsPlanned("after vmnet up --no-wait");
        await Lab.Must($"{Virsh} destroy {Vm} && {Virsh} undefine {Vm}", TimeSpan.FromSeconds(120));
        var gc = await Lab.Shell("vmnet gc", TimeSpan.FromSeconds(120));
        var host = await Lab.Must("vmnet host");
        var state = await Lab.Must(LabLibvirtFixture.PfState);
        output.WriteLine($"{up}\n{held}\n-- vmnet gc: exit {gc.Exit}\n{gc.Output}\n-- vmnet host:\n{host}\n-- now:\n{state}");

        Assert.True(gc.Exit == 0, $"vmnet gc failed:\n{gc.Output}");
        Assert.Contains("no longer defined", gc.Output);
        Assert.DoesNotMatch($@"\b{Vm}\b", host);
        Assert.Equal(4, Regex.Matches(host, @"igbvf .*free").Count);
        AssertAsFound(state);
    }
}
