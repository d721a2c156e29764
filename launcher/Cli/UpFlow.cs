using System.Diagnostics;
using System.Globalization;
using VmNet.Backends;
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
    public sealed record Options(LaunchOptions Launch, string? TemplatesDir, string? OutDir, bool DryRun, bool Json);

    public static async Task<int> RunAsync(HostOps ops, VmSpec vm, Options options, TextWriter stdout, TextWriter stderr, CancellationToken ct)
    {
        var templates = new Templates(options.TemplatesDir);
        if (options.DryRun)
        {
            var dry = await ops.PlanAsync(vm, options.Launch, templates, ct);
            if (options.OutDir is { } dir) ArtifactWriter.Write(dir, dry.Plan.Artifacts);
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
        if (options.Json)
            throw new VmNetException("--json prints the plan of --dry-run; `vmnet up` itself prints progress (use `vmnet status NAME --json` after it)", ExitCodes.InvalidInput);

        var progress = new UpProgress(stdout);
        progress.Planning(vm);
        using var backends = new BackendSet(options.Launch.LibvirtUri, ops.Ledger.State);
        var backend = options.Launch.Start ? backends.For(vm, options.Launch.Backend) : null;
        var result = await ops.UpAsync(vm, options.Launch, templates, backend, progress, ct,
            beforeFirstChange: p => { if (options.OutDir is { } outDir) ArtifactWriter.Write(outDir, p.Artifacts); });
        var plan = result.Plan;
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

/// <summary>
/// Progress for <c>vmnet up</c>: one line per phase as the executor enters it ("[3/7] bind: ..."), notes under it,
/// and a one-line summary at the end. The phases, in order, are <see cref="Phases.All"/>.
/// </summary>
public sealed class UpProgress(TextWriter output) : IProgressSink
{
    private readonly Stopwatch _clock = Stopwatch.StartNew();
    private LaunchPlan? _plan;
    private VmSpec? _spec;
    private int _next;

    /// <summary>The spec, for the reserve phase's line (printed before the plan exists).</summary>
    public void Planning(VmSpec spec) => _spec = spec;

    public void Planned(LaunchPlan plan) => _plan = plan;

    public void Enter(Phase phase)
    {
        for (; _next <= (int)phase; _next++)
        {
            var p = (Phase)_next;
            output.WriteLine($"[{_next + 1}/{Phases.All.Count}] {Phases.Name(p)}: {Detail(p)}");
        }
    }

    public void Note(string line) => output.WriteLine($"      {line}");

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

    /// <summary>The last line of <c>up</c>: what runs, where, with which VFs, and how long it took.</summary>
    public void Summary(LaunchPlan plan)
    {
        var networks = plan.Vm.Networks.Count;
        var where = plan.Backend == Backend.Libvirt ? plan.Options.LibvirtUri : "qemu-system-x86_64";
        output.WriteLine(FormattableString.Invariant(
            $"{plan.Vm.Name} is up ({SpecNames.Of(plan.Backend)}, {where}): {networks} network{(networks == 1 ? "" : "s")} over {plan.Vfs.Count} VFs in {_clock.Elapsed.TotalSeconds:0.0} s; serial log {plan.Paths.SerialLog}"));
    }
}
