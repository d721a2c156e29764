using System.Diagnostics;
using System.Globalization;
using VmNet.Backends;
using VmNet.Contract;
using VmNet.Execution;
using VmNet.Planning;
using VmNet.Rendering;
using VmNet.Spec;

namespace VmNet.Cli;

/// <summary>
/// <c>vmnet up SPEC</c>: one plan for the whole launch (<see cref="Planner"/>), applied by the executor through
/// <see cref="HostOps"/> with one rollback; <c>--dry-run</c> is the same planner and checks, stopping before the first
/// change.
/// </summary>
internal static class UpFlow
{
    public sealed record Options(LaunchOptions Launch, string? TemplatesDir, string? OutDir, bool DryRun, bool Json, Verbosity Verbosity = Verbosity.Normal);

    public static async Task<int> RunAsync(HostOps ops, VmSpec vm, Options options, TextWriter stdout, TextWriter stderr, CancellationToken ct)
    {
        if (options.TemplatesDir is { } dir && !Directory.Exists(dir))
            throw new VmNetException($"--templates: {dir} is not a directory; give a directory holding template overrides ({string.Join(", ", Templates.All)})", ExitCodes.InvalidInput);
        var templates = new Templates(options.TemplatesDir);
        if (options.DryRun)
        {
            using var dryBackends = new BackendSet(options.Launch.LibvirtUri, ops.Ledger.State);
            var dry = await ops.PlanAsync(vm, options.Launch, templates, ct, options.Launch.Start ? dryBackends.For(vm, options.Launch.Backend) : null);
            if (options.OutDir is { } outDir) ArtifactWriter.Write(outDir, dry.Plan.Artifacts);
            if (options.Json)
                stdout.WriteLine(System.Text.Json.JsonSerializer.Serialize(PlanDocument.From(dry), PlanJson.Default.PlanDocument));
            else
            {
                // One write for the whole plan, not one per line (the console flushes every line).
                var text = new StringWriter { NewLine = stdout.NewLine };
                PlanPrinter.Print(text, dry, options.OutDir);
                stdout.Write(text.ToString());
            }
            return ExitCodes.Ok;
        }
        // With --json, stdout carries the result alone and the progress goes to stderr.
        var lines = options.Json ? stderr : stdout;
        using var progress = new UpProgress(lines, live: UpProgress.IsTerminal(lines)) { Verbosity = options.Verbosity };
        progress.Planning(vm);
        using var backends = new BackendSet(options.Launch.LibvirtUri, ops.Ledger.State);
        var backend = options.Launch.Start ? backends.For(vm, options.Launch.Backend) : null;
        var result = await ops.UpAsync(vm, options.Launch, templates, backend, progress, ct,
            beforeFirstChange: p => { if (options.OutDir is { } outDir) ArtifactWriter.Write(outDir, p.Artifacts); });
        var plan = result.Plan;
        if (options.Json)
        {
            progress.Dispose();
            stdout.WriteLine(System.Text.Json.JsonSerializer.Serialize(progress.Document(plan), OutputJson.Default.UpDocument));
            return ExitCodes.Ok;
        }
        if (!options.Launch.Start)
        {
            stdout.WriteLine($"{vm.Name}: the host side is ready ({plan.Vfs.Count} VFs leased, configured and on vfio-pci); not started (--no-start); "
                + $"give the VFs back with `vmnet rm {vm.Name}`");
            return ExitCodes.Ok;
        }
        progress.Summary(plan);
        return ExitCodes.Ok;
    }
}

/// <summary>How much a command says: <c>--quiet</c> only its result and errors, <c>--verbose</c> also every step.</summary>
public enum Verbosity { Quiet, Normal, Verbose }

/// <summary>
/// Progress for <c>vmnet up</c>: one line per phase as the executor enters it, led by the seconds since <c>up</c>
/// began (<c>  0.4s [3/7] bind: ...</c>), notes under it, the guest agent's events as they arrive during the wait
/// (<c> 41.2s       agent: storage: storage0 link up</c>), and a summary with the VM's addresses and how to reach it.
/// On a terminal (<c>live</c>) the wait also keeps a last line that is rewritten in place every second (what is
/// awaited, for how long, what was heard last) and cleared before any other line; piped, only plain lines.
/// The phases, in order, are <see cref="Phases.All"/>.
/// </summary>
public sealed class UpProgress : IProgressSink, IDisposable
{
    private const string Indent = "      ";
    private readonly TextWriter _output;
    private readonly bool _live;
    private readonly Func<TimeSpan> _clock;
    private readonly Lock _gate = new();
    private LaunchPlan? _plan;
    private VmSpec? _spec;
    private int _next;
    private Timer? _ticker;
    private bool _shown; // the live line is on the terminal now
    private (TimeSpan Start, TimeSpan Timeout)? _wait;
    private (TimeSpan At, string What)? _heard;
    private NetworkReadyEvent? _ready;

    /// <param name="output">Where the lines go.</param>
    /// <param name="live">A terminal: keep a live line during the wait.</param>
    /// <param name="clock">Time since <c>up</c> began (tests pass a fixed one).</param>
    public UpProgress(TextWriter output, bool live = false, Func<TimeSpan>? clock = null)
    {
        _output = output;
        _live = live;
        if (clock is null)
        {
            var watch = Stopwatch.StartNew();
            clock = () => watch.Elapsed;
        }
        _clock = clock;
    }

    /// <summary>Whether <paramref name="stdout"/> is this process's terminal (and not one that cannot move the cursor).</summary>
    public static bool IsTerminal(TextWriter output) =>
        (ReferenceEquals(output, Console.Out) ? !Console.IsOutputRedirected : ReferenceEquals(output, Console.Error) && !Console.IsErrorRedirected)
        && Environment.GetEnvironmentVariable("TERM") is not ("dumb" or "");

    /// <summary>The spec, for the reserve phase's line (printed before the plan exists).</summary>
    public void Planning(VmSpec spec) => _spec = spec;

    public void Planned(LaunchPlan plan) => _plan = plan;

    /// <summary><c>--quiet</c>: no progress lines, only the summary; <c>--verbose</c>: also each step as it runs.</summary>
    public Verbosity Verbosity { get; init; } = Verbosity.Normal;

    public void Running(Step step)
    {
        if (Verbosity == Verbosity.Verbose) Line($"{Stamp()} {Indent}step: {step.Describe()}");
    }

    public void Enter(Phase phase)
    {
        for (; _next <= (int)phase; _next++)
        {
            var p = (Phase)_next;
            if (Verbosity != Verbosity.Quiet) Line($"{Stamp()} [{_next + 1}/{Phases.All.Count}] {Phases.Name(p)}: {Detail(p)}");
            if (p == Phase.WaitForGuest && _plan?.Steps.OfType<WaitForAgent>().FirstOrDefault() is { Skipped: null } w)
                StartWaiting(w.Timeout);
        }
    }

    public void Note(string line)
    {
        // Warnings are shown even with --quiet; the rest of the notes are progress.
        if (Verbosity != Verbosity.Quiet || line.StartsWith("warning:", StringComparison.Ordinal)) Line($"{Blank} {Indent}{line}");
    }

    /// <summary>How many of the agent's events are printed as lines (a bring-up takes a few per bond); a guest that sends
    /// more does not get to flood the terminal: the rest only update the live line.</summary>
    public const int MaxEventLines = 200;

    private int _eventLines;

    public void Heard(AgentEvent e)
    {
        var what = GuestAgentChannel.Describe(e);
        string? shown;
        lock (_gate)
        {
            _heard = (_clock(), what);
            if (e is NetworkReadyEvent ready) _ready = ready;
            // network-ready always; the others up to the bound, and the first one past it says that more go unshown.
            var n = e is NetworkReadyEvent ? 0 : ++_eventLines;
            shown = n <= MaxEventLines ? what : n == MaxEventLines + 1 ? $"{what} (the agent's further events are not shown)" : null;
        }
        if (shown is not null && Verbosity != Verbosity.Quiet) Line($"{Stamp()} {Indent}agent: {shown}");
        if (e is NetworkReadyEvent) StopWaiting();
    }

    private string Stamp() => FormattableString.Invariant($"{_clock().TotalSeconds,6:0.0}s");

    private static readonly string Blank = new(' ', 7);

    /// <summary>One plain line; on a terminal, the live line is cleared before it and drawn again after it.</summary>
    private void Line(string line)
    {
        lock (_gate)
        {
            if (_shown) _output.Write("\r\u001b[K");
            _output.WriteLine(line);
            _shown = false;
            if (_ticker is not null) DrawLive();
        }
    }

    private void StartWaiting(TimeSpan timeout)
    {
        lock (_gate)
        {
            _wait = (_clock(), timeout);
            if (!_live || Verbosity == Verbosity.Quiet) return;
            DrawLive();
            _ticker = new Timer(_ => { lock (_gate) if (_ticker is not null) DrawLive(); }, null, TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(1));
        }
    }

    private void StopWaiting()
    {
        lock (_gate)
        {
            _ticker?.Dispose();
            _ticker = null;
            if (_shown) _output.Write("\r\u001b[K");
            _shown = false;
            _output.Flush();
        }
    }

    /// <summary>What the live line says now (also for tests): what is awaited, how long so far, what was heard last.</summary>
    public string LiveText()
    {
        var now = _clock();
        var (start, timeout) = _wait ?? (now, TimeSpan.Zero);
        var heard = _heard is { } h
            ? FormattableString.Invariant($"last heard {(now - h.At).TotalSeconds:0} s ago: {h.What}")
            : "the agent not heard yet (the guest is booting)";
        return FormattableString.Invariant($"{Stamp()} {Indent}waiting for the guest agent: {(now - start).TotalSeconds:0} s of {timeout.TotalSeconds:0} s; {heard}");
    }

    private void DrawLive()
    {
        var text = LiveText();
        // Wider than the terminal, the line would wrap and \r would rewrite only its last row.
        var width = 0;
        try { width = Console.WindowWidth; } catch (IOException) { } catch (PlatformNotSupportedException) { }
        if (width > 8 && text.Length >= width) text = text[..(width - 4)] + "...";
        _output.Write("\r\u001b[K" + text);
        _output.Flush();
        _shown = true;
    }

    /// <summary>Stops the live line (a failed or interrupted up), leaving the terminal at the start of a clean line.</summary>
    public void Dispose() => StopWaiting();

    private string Detail(Phase phase)
    {
        if (phase == Phase.Reserve)
        {
            var n = _spec?.Networks.Count ?? _plan?.Vm.Networks.Count ?? 0;
            return $"one VF per port for {n} network{(n == 1 ? "" : "s")}, under the ledger lock";
        }
        var plan = _plan ?? throw new InvalidOperationException("the plan is not made yet");
        var vm = plan.Vm.Name;
        var paths = plan.Paths;
        return phase switch
        {
            Phase.Configure => string.Join(", ", plan.Vfs.Select(a =>
                $"{a.GuestName}={a.Pf.Name} vf {a.Vf.Index} ({a.Vf.Pci}) mac {a.Mac}{(a.Network.Vlan is { IsTagged: true } v ? $" {v}" : "")}")),
            Phase.Bind => $"{plan.Vfs.Count} VFs on vfio-pci: {string.Join(", ", plan.Vfs.Select(a => a.Vf.Pci))}",
            Phase.Seed => $"{paths.Seed} (label cidata) and disk {paths.Disk} over {plan.Vm.Disk.Image}",
            Phase.Define => plan.Backend == Backend.Libvirt
                ? $"libvirt domain {vm} at {plan.Options.LibvirtUri}{(plan.Vm.Autostart ? ", autostart on" : "")}"
                : $"qemu-system-x86_64 for {vm}, pid file {paths.PidFile}, QMP {paths.QmpSocket}",
            Phase.Start => $"{vm} running",
            _ => plan.Steps.OfType<WaitForAgent>().FirstOrDefault() is { } w
                ? w.Skipped is { } why ? $"skipped: {why}"
                    : $"the agent's network-ready report on {w.AgentSocket} (up to {w.Timeout.TotalSeconds.ToString("0", CultureInfo.InvariantCulture)} s; serial log {paths.SerialLog})"
                : "",
        };
    }

    /// <summary>
    /// The end of <c>up</c>: what runs, where, with which VFs, and how long it took; then each network's addresses (as
    /// the agent reported them, else as the spec gives them) and the command that reaches the guest.
    /// </summary>
    public void Summary(LaunchPlan plan)
    {
        StopWaiting();
        var networks = plan.Vm.Networks.Count;
        var lines = new List<string>
        {
            FormattableString.Invariant(
                $"{plan.Vm.Name} is up ({SpecNames.Of(plan.Backend)}, {plan.RunsOn}): {networks} network{(networks == 1 ? "" : "s")} over {plan.Vfs.Count} VFs in {_clock().TotalSeconds:0.0} s; serial log {plan.Paths.SerialLog}"),
        };
        if (plan.Running is { } running)
        {
            var live = plan.Drift.Where(c => c.Live).ToList();
            lines.Add(live.Count > 0 ? $"  it was running; changed live: {string.Join("; ", live)}"
                : running.Record is null ? "  it was running (launched without a launch record, so what it was booted with could not be compared; restart it to be sure it runs as the spec says)"
                : "  it was running, as the spec says: nothing to change");
        }
        var width = plan.Vm.Networks.Max(n => n.Name.Length);
        var networksReached = Networks(plan);
        foreach (var (network, reached) in plan.Vm.Networks.Zip(networksReached))
        {
            var shown = reached.Addresses.Count > 0 ? string.Join(", ", reached.Addresses)
                : network.Address.Dhcp ? "dhcp (no lease reported yet)" : "";
            var bond = !reached.Reported ? "" : reached.Active is { } active ? $"; bond active on {active}" : "; bond has no active member yet";
            lines.Add($"  {network.Name.PadRight(width)}  {shown}{bond}");
        }
        var console = ConsoleCommand(plan);
        lines.Add(Ssh(plan, networksReached) is { } ssh ? $"  reach it: {ssh} (console: {console})" : $"  reach it: {console}");
        lock (_gate)
            foreach (var line in lines) _output.WriteLine(line);
    }

    /// <summary>Each network's addresses (as the agent reported them, else as the spec gives them) and active member.</summary>
    public IReadOnlyList<UpNetwork> Networks(LaunchPlan plan) => plan.Vm.Networks.Select(network =>
    {
        var reported = _ready?.Networks.FirstOrDefault(n => n.Name == network.Name);
        IReadOnlyList<string> addresses = reported is { Addresses.Count: > 0 } ? reported.Addresses
            : network.Address.Dhcp ? [] : [network.Address.Cidr!];
        return new UpNetwork(network.Name, addresses, reported?.Active, reported is not null);
    }).ToList();

    /// <summary>The ssh command that reaches the guest at the first address of <paramref name="networks"/>, or null when it has none yet.</summary>
    private static string? Ssh(LaunchPlan plan, IReadOnlyList<UpNetwork> networks) =>
        networks.SelectMany(n => n.Addresses).Select(a => a.Split('/')[0]).FirstOrDefault() is { } reach
            ? $"ssh {plan.Vm.Guest.User}@{(reach.Contains(':') ? $"[{reach}]" : reach)}"
            : null;

    private static string ConsoleCommand(LaunchPlan plan) => $"vmnet console {plan.Vm.Name}{plan.ConnectArgument}";

    /// <summary>The result of <c>up --json</c>.</summary>
    public UpDocument Document(LaunchPlan plan)
    {
        var networks = Networks(plan);
        return new(plan.Vm.Name, SpecNames.Of(plan.Backend), plan.RunsOn, plan.Options.Start, plan.Running is not null,
            Math.Round(_clock().TotalSeconds, 1), VfStatus.Of(plan), networks, plan.Drift, plan.Paths.SerialLog, Ssh(plan, networks), ConsoleCommand(plan));
    }
}
