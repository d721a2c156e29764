using System.Net.Sockets;
using System.Text;
using System.Text.RegularExpressions;
using VmNet.Contract;
using VmNet.Sim;
using VmNet.State;
using VmNet.Tests.Support;

namespace VmNet.Tests.Cli;

/// <summary>
/// What `vmnet up` shows while it runs (issue 14): each phase with the seconds since up began, the guest agent's
/// events as they arrive, a live line on a terminal, the summary with addresses and how to reach the guest, and on a
/// timeout what still runs and what to type next. A real QEMU runs the VM (TCG, no guest OS, without its vfio-pci
/// devices: no VFIO here) on a simulated host; a fake agent plays the guest's end of the report port, at the path
/// vmnet reads (QEMU's own listener is moved aside by a template override).
/// </summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed class ProgressTests : IDisposable
{
    private readonly TempDir _dir = new();

    /// <summary>The state dir under the temporary dir; one test moves it to a path with a comma.</summary>
    private string _state = "state";

    public void Dispose()
    {
        foreach (var name in new[] { "p1", "p2", "h1" })
            if (new VmNet.Backends.QemuBackend(new StateDir(_dir[_state])).Running(name) is { } left)
            {
                using var os = System.Diagnostics.Process.GetProcessById(left.Pid);
                os.Kill();
            }
        _dir.Dispose();
    }

    private static CancellationToken Cancel => TestContext.Current.CancellationToken;

    /// <summary>examples/vm.yaml as <paramref name="name"/> on the QEMU backend (TCG, 128 MiB, an empty base image), and
    /// the templates that start its QEMU without VFs and with the agent's port listening beside the path vmnet reads.</summary>
    private async Task<(string Spec, string Templates)> Setup(string name)
    {
        RequiredTool.Path("qemu-system-x86_64");
        if (!Directory.Exists(_dir["host"])) SimHost.CreateExample(_dir["host"]);
        await CliWrap.Cli.Wrap(RequiredTool.Path("qemu-img")).WithArguments(["create", "-q", "-f", "qcow2", _dir["base.qcow2"], "64M"]).ExecuteAsync(Cancel);
        var spec = _dir.Write($"{name}.yaml", "backend: qemu\naccel: tcg\n" + File.ReadAllText(Repo.File("examples/vm.yaml"))
            .Replace("ceph-osd-1", name).Replace("memory: 16GiB", "memory: 128MiB").Replace("cpus: 8", "cpus: 1")
            .Replace("/var/lib/vmnet/images/debian-13-genericcloud-amd64.qcow2", _dir["base.qcow2"]));
        var args = new VmNet.Rendering.Templates().Source(VmNet.Rendering.Templates.QemuArgs);
        var changed = Regex.Replace(args, @"\{\{~ for m in vfs ~\}\}\n-device\nvfio-pci[^\n]*\n\{\{~ end ~\}\}\n", "")
            .Replace("path={{ paths.agent_socket | qemu }},", "path={{ paths.agent_socket | qemu }}.qemu,");
        Assert.DoesNotContain("vfio-pci", changed);
        Assert.Contains("path={{ paths.agent_socket | qemu }}.qemu,", changed);
        return (spec, Path.GetDirectoryName(_dir.Write("templates/qemu.args.sbn", changed))!);
    }

    /// <summary>The guest's end of the report port: once QEMU runs (its pid file), listens where vmnet connects and
    /// sends each line after its delay; then holds the connection until vmnet closes it.</summary>
    private Task FakeAgent(string vm, params (int DelayMs, AgentEvent Event)[] lines)
    {
        var paths = VmPaths.For(new StateDir(_dir[_state]), vm);
        return Task.Run(async () =>
        {
            while (!File.Exists(paths.PidFile)) await Task.Delay(50, Cancel);
            using var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            listener.Bind(new UnixDomainSocketEndPoint(paths.AgentSocket));
            listener.Listen();
            using var client = await listener.AcceptAsync(Cancel);
            using var stream = new NetworkStream(client);
            try
            {
                foreach (var (delay, e) in lines)
                {
                    await Task.Delay(delay, Cancel);
                    await stream.WriteAsync(Encoding.UTF8.GetBytes(e.ToLine() + "\n"), Cancel);
                }
                var buffer = new byte[256];
                while (await stream.ReadAsync(buffer, Cancel) > 0) { }
            }
            catch (IOException) { } // vmnet closed its end (the test's asserts say whether it should have)
        }, Cancel);
    }

    private static readonly (int, AgentEvent)[] BringUp =
    [
        (300, new StartedEvent(8100, "0.1.0", 2)),
        (200, new LinkChangedEvent(8200, "storage", "storage0", "up")),
        (0, new LinkChangedEvent(8210, "storage", "storage1", "up")),
        (0, new ActiveChangedEvent(8300, "storage", "storage0", null)),
        (0, new AddressesChangedEvent(8310, "storage", ["192.168.40.11/24"])),
        // A pause longer than the live line's second, so a terminal sees it rewritten.
        (2500, new LinkChangedEvent(9000, "public", "public0", "up")),
        (0, new ActiveChangedEvent(9100, "public", "public0", null)),
        (0, new NetworkReadyEvent(9500, 6, [
            new NetworkState("storage", "storage0", [new("storage0", "02:00:00:00:40:11", "up"), new("storage1", "02:00:00:00:40:12", "up")], ["192.168.40.11/24"], 9000),
            new NetworkState("public", "public0", [new("public0", "02:00:00:00:10:01", "up"), new("public1", "02:00:00:00:10:02", "down")], ["203.0.113.5/24"], 1500)])),
    ];

    /// <summary>
    /// The built vmnet on the simulated host (it finds the built vmnet-agent beside it, so up waits for the agent):
    /// piped, or on a terminal that script(1) gives it, whose output is what the terminal received.
    /// </summary>
    private async Task<(int Code, string Out, string Err)> Vmnet(bool terminal, params string[] args)
    {
        var vmnet = Path.Join(AppContext.BaseDirectory, "vmnet");
        string[] all = [.. args, "--host-root", _dir["host"], "--state-dir", _dir[_state]];
        var command = terminal
            ? CliWrap.Cli.Wrap(RequiredTool.Path("script")).WithArguments(["-qec", string.Join(' ', all.Prepend(vmnet).Select(a => $"'{a}'")), "/dev/null"])
                .WithEnvironmentVariables(e => e.Set("TERM", "xterm").Set("COLUMNS", "200"))
            : CliWrap.Cli.Wrap(vmnet).WithArguments(all);
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(120));
        var result = await CliWrap.Buffered.BufferedCommandExtensions.ExecuteBufferedAsync(command.WithValidation(CliWrap.CommandResultValidation.None), timeout.Token);
        return (result.ExitCode, result.StandardOutput, result.StandardError);
    }

    /// <summary>`vmnet up` of <paramref name="vm"/> (see <see cref="Setup"/>) while a fake agent sends <paramref name="lines"/>.</summary>
    private async Task<(int Code, string Out, string Err)> UpWithAgent(string vm, bool terminal, int waitTimeout, params (int DelayMs, AgentEvent Event)[] lines) =>
        await UpWithAgent(vm, terminal, waitTimeout, "", lines);

    private async Task<(int Code, string Out, string Err)> UpWithAgent(string vm, bool terminal, int waitTimeout, string specTail, params (int DelayMs, AgentEvent Event)[] lines)
    {
        var (spec, templates) = await Setup(vm);
        File.AppendAllText(spec, specTail);
        var agent = FakeAgent(vm, lines);
        var up = await Vmnet(terminal, "up", spec, "--templates", templates, "--wait-timeout", waitTimeout.ToString(System.Globalization.CultureInfo.InvariantCulture));
        await agent;
        return up;
    }

    /// <summary>The lines of up's output after the phases, without their time stamps.</summary>
    private static List<string> Unstamped(string output) =>
        output.Split('\n').Select(l => Regex.Replace(l, @"^ *\d+\.\ds ", "")).ToList();

    [Fact]
    public async Task Piped_up_prints_each_phase_with_its_time_the_agents_events_and_a_summary_with_addresses()
    {
        var up = await UpWithAgent("p1", terminal: false, waitTimeout: 60, BringUp);

        Assert.True(up.Code == 0, up.Out + up.Err);
        Assert.DoesNotContain("\u001b", up.Out);
        Assert.DoesNotContain("\r", up.Out);
        var stamps = Regex.Matches(up.Out, @"^ *(\d+\.\d)s \[(\d)/7\]", RegexOptions.Multiline).Select(m => double.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture)).ToList();
        Assert.Equal(7, stamps.Count);
        Assert.Equal(stamps.Order(), stamps); // time goes forward
        var lines = Unstamped(up.Out);
        var wait = lines.FindIndex(l => l.StartsWith("[7/7] wait for guest: the agent's network-ready report on ", StringComparison.Ordinal));
        Assert.True(wait > 0, up.Out);
        var paths = VmPaths.For(new StateDir(_dir["state"]), "p1");
        Assert.Equal([
            "      agent: agent started (vmnet-agent 0.1.0, 2 networks)",
            "      agent: storage: storage0 link up",
            "      agent: storage: storage1 link up",
            "      agent: storage: active member storage0",
            "      agent: storage: 192.168.40.11/24",
            "      agent: public: public0 link up",
            "      agent: public: active member public0",
            "      agent: network ready (2 bonds, 6 changes)",
        ], lines[(wait + 1)..(wait + 9)]);
        Assert.Matches(@"^p1 is up \(qemu, qemu-system-x86_64\): 2 networks over 4 VFs in \d+\.\d s; serial log " + Regex.Escape(paths.SerialLog) + "$", lines[wait + 9]);
        Assert.Equal([
            "  storage  192.168.40.11/24; bond active on storage0",
            "  public   203.0.113.5/24; bond active on public0",
            "  reach it: ssh debian@192.168.40.11 (console: vmnet console p1)",
            "",
        ], lines[(wait + 10)..]);
    }

    [Fact]
    public async Task On_a_terminal_the_wait_keeps_a_live_line_rewritten_in_place_and_cleared_at_the_end()
    {
        // script(1) gives vmnet a terminal, as a user has; its output is what the terminal received.
        var result = await UpWithAgent("p2", terminal: true, waitTimeout: 60, BringUp);
        var screen = result.Out.Replace("\r\n", "\n");

        Assert.True(result.Code == 0, screen + result.Err);
        // The live line: drawn, then rewritten in place (\r and erase-line) at least once a second through the 2.5 s
        // pause, naming what is awaited and what was heard last.
        var live = Regex.Matches(screen, "\r\u001b\\[K( *\\d+\\.\\ds       waiting for the guest agent: (\\d+) s of 60 s; [^\r\n]*)").ToList();
        Assert.True(live.Count >= 3, screen);
        Assert.Contains(live, m => m.Groups[1].Value.EndsWith("the agent not heard yet (the guest is booting)", StringComparison.Ordinal));
        Assert.Contains(live, m => Regex.IsMatch(m.Groups[1].Value, "last heard [1-9]\\d* s ago: storage: 192.168.40.11/24$"));
        // The summary comes after the live line was cleared for good.
        var summary = screen.IndexOf("p2 is up (qemu", StringComparison.Ordinal);
        Assert.True(summary > 0, screen);
        Assert.DoesNotContain("waiting for the guest agent", screen[summary..]);
        Assert.EndsWith("\u001b[K", screen[..summary]);
        var plain = Regex.Replace(screen, "\r\u001b\\[K[^\r\n]*(?=\r)", "").Replace("\r\u001b[K", "");
        Assert.Contains("      agent: network ready (2 bonds, 6 changes)\n", plain);
        Assert.Contains("  reach it: ssh debian@192.168.40.11 (console: vmnet console p2)\n", plain);
    }

    [Fact]
    public async Task On_a_timeout_up_says_what_still_runs_what_it_holds_and_what_to_type_next()
    {
        var up = await UpWithAgent("p1", terminal: false, waitTimeout: 3, (100, new StartedEvent(8100, "0.1.0", 2)));

        Assert.Equal(1, up.Code);
        Assert.Contains("      agent: agent started (vmnet-agent 0.1.0, 2 networks)\n", up.Out);
        Assert.DoesNotContain("is up", up.Out);
        var paths = VmPaths.For(new StateDir(_dir["state"]), "p1");
        var status = HostCliTests.OnSimHost(_dir, ["status", "p1"]);
        var vfs = Regex.Matches(status.Out, @"(enp3s0f[01]np[01]) +vf (\d+) +(\S+)").Select(m => $"{m.Groups[1].Value} vf {m.Groups[2].Value} ({m.Groups[3].Value})").ToList();
        Assert.Equal(4, vfs.Count);
        Assert.Equal(
            "vmnet: the guest agent did not report its network ready within 3 s (last heard: agent started (vmnet-agent 0.1.0, 2 networks)); " +
            $"see the serial log {paths.SerialLog}\n" +
            $"p1 still runs (qemu-system-x86_64) and holds its 4 VFs: {string.Join(", ", vfs)}\n" +
            $"next: `vmnet status p1` (the agent's report once it comes), `vmnet console p1` (the guest's console; its log is {paths.SerialLog}), " +
            "`vmnet rm --force p1` (stop it and give its VFs back)\n", up.Err);
        Assert.StartsWith("p1: running (qemu)", status.Out);

        var rm = HostCliTests.OnSimHost(_dir, ["rm", "--force", "p1", "--timeout", "0"]);
        Assert.True(rm.Code == 0, rm.Out + rm.Err);
        Assert.Contains("p1: 4 VFs restored and released", rm.Out);
    }

    [Fact]
    public void The_summary_names_a_dhcp_network_without_a_lease_and_reaches_the_guest_by_console_when_no_address_is_known()
    {
        using var vm = new Backends.TestVm(name: "s1");
        var output = new StringWriter { NewLine = "\n" };
        var progress = new VmNet.Cli.UpProgress(output, clock: () => TimeSpan.FromSeconds(1.5));
        var plan = vm.Plan with { Vm = vm.Plan.Vm with { Networks = [vm.Plan.Vm.Networks[0] with { Address = VmNet.Spec.GuestAddress.DhcpAddress }] } };

        progress.Summary(plan);

        Assert.Equal(
            $"s1 is up (libvirt, qemu:///system): 1 network over 2 VFs in 1.5 s; serial log {plan.Paths.SerialLog}\n" +
            "  storage  dhcp (no lease reported yet)\n" +
            "  reach it: vmnet console s1\n", output.ToString());
    }

    /// <summary>--quiet: no phase, note or event lines, a warning still, then the summary; --verbose: each step as it
    /// runs, under its phase.</summary>
    [Fact]
    public void Quiet_prints_the_summary_and_warnings_alone_and_verbose_adds_every_step()
    {
        using var vm = new Backends.TestVm(name: "v1");
        string Run(VmNet.Cli.Verbosity verbosity)
        {
            var output = new StringWriter { NewLine = "\n" };
            var progress = new VmNet.Cli.UpProgress(output, clock: () => TimeSpan.FromSeconds(1)) { Verbosity = verbosity };
            progress.Planning(vm.Plan.Vm);
            progress.Enter(VmNet.Planning.Phase.Reserve);
            progress.Planned(vm.Plan);
            var executor = (VmNet.Execution.IProgressSink)progress;
            foreach (var step in vm.Plan.Steps.Where(s => s.Phase != VmNet.Planning.Phase.WaitForGuest))
            {
                progress.Enter(step.Phase);
                executor.Running(step);
            }
            progress.Heard(new LinkChangedEvent(1, "storage", "storage0", "up"));
            progress.Note("reclaimed an orphan: VF 3");
            progress.Note("warning: storage has no active member yet");
            progress.Summary(vm.Plan);
            return output.ToString();
        }

        var quiet = Run(VmNet.Cli.Verbosity.Quiet).Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal("              warning: storage has no active member yet", quiet[0]);
        Assert.StartsWith("v1 is up (libvirt", quiet[1]);
        Assert.All(quiet[2..], l => Assert.StartsWith("  ", l));
        var normal = Run(VmNet.Cli.Verbosity.Normal);
        Assert.DoesNotContain("step: ", normal);
        Assert.Contains("agent: storage: storage0 link up", normal);
        var verbose = Run(VmNet.Cli.Verbosity.Verbose);
        var steps = vm.Plan.Steps.Where(s => s.Phase != VmNet.Planning.Phase.WaitForGuest).ToList();
        Assert.Equal(steps.Select(s => "step: " + s.Describe()),
            verbose.Split('\n').Where(l => l.Contains("step: ", StringComparison.Ordinal)).Select(l => l[l.IndexOf("step: ", StringComparison.Ordinal)..]));
        Assert.True(verbose.IndexOf("[2/7] configure", StringComparison.Ordinal) < verbose.IndexOf("step: " + steps.First(s => s.Phase == VmNet.Planning.Phase.Configure).Describe(), StringComparison.Ordinal));
    }

    /// <summary>A guest that sends events without end gets MaxEventLines lines, one more saying the rest are not shown,
    /// and network-ready still.</summary>
    [Fact]
    public void The_agents_events_are_printed_up_to_the_bound_and_network_ready_always()
    {
        var output = new StringWriter { NewLine = "\n" };
        var progress = new VmNet.Cli.UpProgress(output, clock: () => TimeSpan.FromSeconds(2));

        for (var i = 0; i < VmNet.Cli.UpProgress.MaxEventLines + 50; i++)
            progress.Heard(new LinkChangedEvent(i, "storage", "storage0", i % 2 == 0 ? "up" : "down"));
        progress.Heard(new NetworkReadyEvent(9000, 2, []));

        var lines = output.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(VmNet.Cli.UpProgress.MaxEventLines + 2, lines.Length);
        Assert.Equal("   2.0s       agent: storage: storage0 link up", lines[0]);
        Assert.Equal("   2.0s       agent: storage: storage0 link up (the agent's further events are not shown)", lines[^2]);
        Assert.Equal("   2.0s       agent: network ready (0 bonds, 2 changes)", lines[^1]);
    }

    /// <summary>
    /// Issue 13, items 7 and 11, on a real QEMU: every path QEMU takes (its state dir, the kernel, the initrd) holds a
    /// comma, and the kernel's command line too; QEMU must read each literally (it starts, and the guest kernel prints
    /// the command line it was given). Then QEMU hangs (SIGSTOP: its sockets still accept, nothing answers):
    /// `status` and `ls` say QMP is unreachable within seconds, and `rm --force --timeout 1` stops it and gives every
    /// VF back without waiting QMP's 20 s.
    /// </summary>
    [Fact]
    public async Task Paths_with_commas_reach_qemu_literally_and_a_hung_qemu_hangs_neither_status_ls_nor_rm()
    {
        var (images, problem) = Boots.Guest.GuestImage.TryGet();
        if (images is null) { Unavailable.Here(problem!); return; }
        _state = "st,ate";
        SimHost.CreateExample(_dir["host"]);
        var before = Execution.HostSnapshot.Of(_dir["host"]);
        Directory.CreateDirectory(_dir["boot,1"]);
        File.Copy(Path.Join(images, "kernel"), _dir["boot,1/vmlinuz,a"]);
        File.Copy(Path.Join(images, "initrd"), _dir["boot,1/initrd,b"]);
        var boot = $"boot:\n  kernel: '{_dir["boot,1/vmlinuz,a"]}'\n  initrd: '{_dir["boot,1/initrd,b"]}'\n  cmdline: 'console=ttyS0 panic=-1 vmnet.test=a,b,,c'\n";

        var up = await UpWithAgent("h1", terminal: false, waitTimeout: 60, boot, BringUp);
        Assert.True(up.Code == 0, up.Out + up.Err);
        var paths = VmPaths.For(new StateDir(_dir[_state]), "h1");
        Assert.Contains(",", paths.PidFile);
        var qemu = new VmNet.Backends.QemuBackend(new StateDir(_dir[_state])).Running("h1");
        Assert.NotNull(qemu);
        var argv = qemu.Value.CommandLine;
        Assert.Equal(_dir["boot,1/vmlinuz,a"], argv[argv.ToList().IndexOf("-kernel") + 1]);
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (!(File.Exists(paths.SerialLog) && File.ReadAllText(paths.SerialLog).Contains("Command line: console=ttyS0 panic=-1 vmnet.test=a,b,,c", StringComparison.Ordinal)))
        {
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(90), "the guest kernel never printed its command line:\n" + (File.Exists(paths.SerialLog) ? File.ReadAllText(paths.SerialLog) : "(no serial log)"));
            await Task.Delay(200, Cancel);
        }

        Assert.Equal(0, Signal("STOP", qemu.Value.Pid));
        foreach (var args in new[] { new[] { "status", "h1" }, ["ls"] })
        {
            clock.Restart();
            var r = await Vmnet(false, args);
            Assert.True(r.Code == 0, r.Out + r.Err);
            Assert.Contains("running (QMP unreachable)", r.Out);
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(15), $"vmnet {string.Join(' ', args)} took {clock.Elapsed} on a hung QEMU");
        }
        clock.Restart();
        var rm = await Vmnet(false, "rm", "--force", "h1", "--timeout", "1");
        Assert.True(rm.Code == 0, rm.Out + rm.Err);
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(15), $"rm --timeout 1 took {clock.Elapsed} on a hung QEMU");
        Assert.Contains("h1: 4 VFs restored and released", rm.Out);
        Assert.False(qemu.Value.IsAlive);
        Assert.Equal(before, Execution.HostSnapshot.Of(_dir["host"]));
    }

    private static int Signal(string signal, int pid)
    {
        using var kill = System.Diagnostics.Process.Start("kill", [$"-{signal}", pid.ToString(System.Globalization.CultureInfo.InvariantCulture)])!;
        kill.WaitForExit();
        return kill.ExitCode;
    }
}
