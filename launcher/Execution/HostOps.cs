using VmNet.Backends;
using VmNet.Host;
using VmNet.Kernel;
using VmNet.Leases;
using VmNet.Planning;
using VmNet.Rendering;
using VmNet.Spec;
using VmNet.State;

namespace VmNet.Execution;

/// <summary>The result of <see cref="HostOps.UpAsync(VmSpec, LaunchOptions, Templates, IBackend?, IProgressSink?, CancellationToken)"/>: the plan applied, and the orphans reclaimed on the way.</summary>
public sealed record UpResult(LaunchPlan Plan, IReadOnlyList<string> Reclaimed);

/// <summary>
/// <c>vmnet up</c>, <c>rm</c> and <c>gc</c> over one host and one state dir, shared by the CLI and the tests. The real
/// host and a simulated one differ only in the <see cref="IKernel"/>.
/// </summary>
public sealed class HostOps(IKernel kernel, StateDir state, ApplyHooks? hooks = null, TextWriter? stderr = null)
{
    public IKernel Kernel { get; } = kernel;
    public LeaseLedger Ledger { get; } = new(state);

    /// <summary>The host side only (<c>--no-start</c>): reserve, configure, bind.</summary>
    public Task<UpResult> UpAsync(VmSpec spec, CancellationToken ct) =>
        UpAsync(spec, new LaunchOptions { Start = false }, new Templates(), null, null, ct);

    /// <summary>
    /// The plan <c>vmnet up</c> would apply now, and the problems it would stop at before the first change: the same
    /// planner and checks as <see cref="UpAsync(VmSpec, LaunchOptions, Templates, IBackend?, IProgressSink?, CancellationToken)"/>,
    /// without the lock, the claim or any change (<c>--dry-run</c>).
    /// </summary>
    public async Task<(LaunchPlan Plan, IReadOnlyList<PreflightProblem> Problems)> PlanAsync(VmSpec spec, LaunchOptions options, Templates templates, CancellationToken ct)
    {
        var plan = Planner.Make(spec, new HostScanner(Kernel.Root), Ledger.Store, Ledger.State, options, templates);
        return (plan, await Preflight.CheckAsync(plan, Kernel.Root, ct).ConfigureAwait(false));
    }

    /// <summary>
    /// Plans, checks and claims under the ledger lock (reclaiming orphaned VFs of the spec's ports when nothing is free),
    /// then applies every step outside it with one reverter, whose first undo gives the claimed leases back. A failure
    /// rolls the host and the backend back; a VM that was already up keeps what it had. <paramref name="beforeFirstChange"/>
    /// runs once the plan has passed its checks, before the claim (e.g. to write <c>--out</c>): what it throws changes nothing.
    /// </summary>
    public async Task<UpResult> UpAsync(VmSpec spec, LaunchOptions options, Templates templates, IBackend? backend, IProgressSink? progress, CancellationToken ct,
        Action<LaunchPlan>? beforeFirstChange = null)
    {
        progress?.Enter(Phase.Reserve);
        var host = new HostScanner(Kernel.Root);
        LaunchPlan plan;
        IReadOnlyList<(Lease Now, Lease? Before)> claimed;
        var reclaimed = new List<string>();
        using (Ledger.Lock(ct))
        {
            try
            {
                plan = Planner.Make(spec, host, Ledger.Store, Ledger.State, options, templates);
            }
            catch (HostException e) when (e.Message.Contains("no free VF", StringComparison.Ordinal))
            {
                reclaimed.AddRange(await ReclaimOrphansOfPortsAsync(spec, host, ct).ConfigureAwait(false));
                if (reclaimed.Count == 0) throw;
                plan = Planner.Make(spec, host, Ledger.Store, Ledger.State, options, templates);
            }
            Preflight.ThrowIfAny(await Preflight.CheckAsync(plan, Kernel.Root, ct).ConfigureAwait(false));
            beforeFirstChange?.Invoke(plan);
            claimed = Ledger.Claim(spec.Name, plan.Leases, Liveness.StartingSelf());
        }
        progress?.Planned(plan);
        foreach (var line in reclaimed) progress?.Note($"reclaimed an orphan: {line}");

        var reverter = new Reverter();
        var isNew = claimed.All(c => c.Before is null);
        reverter.Add("give the leases back", () =>
        {
            // After an incomplete rollback the leases stay, so that `vmnet gc` restores those VFs once this vmnet exits.
            if (reverter.Failures.Count > 0) return Task.CompletedTask;
            using (Ledger.Lock(CancellationToken.None)) Ledger.Unclaim(claimed);
            if (isNew && options.Start) reverter.Note($"{spec.Name}'s VFs were given back as they were found");
            return Task.CompletedTask;
        });
        var runners = new List<IStepRunner> { new HostStepRunner(Kernel, Ledger), new LeaseStepRunner(Ledger, plan.Vfs.Select(a => a.Vf.Pci).ToList()) };
        if (options.Start)
            runners.Add(new LaunchStepRunner(plan, backend ?? throw new ArgumentNullException(nameof(backend), "a start needs a backend"), Ledger, progress));
        await new Executor(runners, hooks, stderr, progress).RunAsync(plan.Steps, reverter, ct).ConfigureAwait(false);
        return new UpResult(plan, reclaimed);
    }

    /// <summary>Restores and releases every VF of <paramref name="vm"/>; a VM without leases is fine (idempotent).</summary>
    public async Task<IReadOnlyList<string>> RemoveAsync(string vm, CancellationToken ct)
    {
        using var _ = Ledger.Lock(ct);
        var done = new List<string>();
        var restorer = new Restorer(Kernel, Ledger);
        foreach (var lease in Ledger.Store.OfVm(vm))
        {
            if (lease.Owner is StartingOwner o && Liveness.Gone(o) is null && !Liveness.IsSelf(o))
                throw new VmNetException($"VM {vm} is being started by vmnet pid {o.Pid} right now; wait for it to finish (or stop it), then rerun `vmnet rm {vm}`");
            done.Add(await restorer.RestoreAndReleaseAsync(lease, ct).ConfigureAwait(false));
        }
        return done;
    }

    /// <summary>Restores and releases every lease whose owner is gone.</summary>
    public async Task<IReadOnlyList<string>> GcAsync(CancellationToken ct)
    {
        using var _ = Ledger.Lock(ct);
        var done = new List<string>();
        var restorer = new Restorer(Kernel, Ledger);
        foreach (var lease in Ledger.Store.All().ToList())
        {
            if (Liveness.Gone(lease.Owner) is not { } why) continue;
            var what = await restorer.RestoreAndReleaseAsync(lease, ct).ConfigureAwait(false);
            done.Add($"{what}; released from {lease.Vm} ({why})");
        }
        Ledger.RebuildPfIndexes();
        return done;
    }

    /// <summary>Orphans among the VFs of the spec's ports only: O(VFs considered), like planning.</summary>
    private async Task<IReadOnlyList<string>> ReclaimOrphansOfPortsAsync(VmSpec spec, HostScanner host, CancellationToken ct)
    {
        var done = new List<string>();
        var restorer = new Restorer(Kernel, Ledger);
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var port in spec.Networks.SelectMany(n => n.Ports))
        {
            if (host.FindPort(port) is not { } pf || !seen.Add(pf.Pci)) continue;
            for (var i = 0; i < pf.NumVfs; i++)
            {
                if (host.VfPci(pf, i) is not { } pci || Ledger.Store.Find(pci) is not { } lease) continue;
                if (lease.Vm == spec.Name || Liveness.Gone(lease.Owner) is not { } why) continue;
                var what = await restorer.RestoreAndReleaseAsync(lease, ct).ConfigureAwait(false);
                done.Add($"{what}; reclaimed from {lease.Vm} ({why})");
            }
        }
        return done;
    }
}
