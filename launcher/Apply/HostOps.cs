using VmNet.Host;
using VmNet.Host.Sim;
using VmNet.Leases;
using VmNet.Planning;
using VmNet.Spec;

namespace VmNet.Apply;

/// <summary>The result of <see cref="HostOps.UpAsync"/>: the plan that was applied.</summary>
public sealed record UpResult(Plan Plan, IReadOnlyList<string> Reclaimed);

/// <summary>
/// <c>vmnet up</c> (apply part), <c>vmnet rm</c> and <c>vmnet gc</c> over one host and one state dir, shared by the CLI
/// and the tests. The real host and a simulated one differ only in the <see cref="IKernel"/>.
/// </summary>
public sealed class HostOps(IKernel kernel, StateDir state, ApplyHooks? hooks = null, TextWriter? stderr = null)
{
    public IKernel Kernel { get; } = kernel;
    public LeaseLedger Ledger { get; } = new(state);

    /// <summary>The kernel for a host root: the real one for "/", the simulator for any other directory.</summary>
    public static IKernel KernelFor(HostRoot root) => root.IsRealHost ? new RealKernel() : new SimulatedKernel(root);

    /// <summary>
    /// Plans and claims under the ledger lock (reclaiming orphaned VFs of the spec's ports when nothing is free), then
    /// applies outside it. A failure rolls the host back and gives the claimed leases back. A backend's define/start
    /// step goes after this returns, then the owner moves from the time lease to the domain.
    /// </summary>
    public async Task<UpResult> UpAsync(VmSpec spec, CancellationToken ct)
    {
        var host = new HostScanner(Kernel.Root);
        Plan plan;
        IReadOnlyList<(Lease Now, Lease? Before)> claimed;
        var reclaimed = new List<string>();
        using (Ledger.Lock(ct))
        {
            try
            {
                plan = Planner.Make(spec, host, Ledger.Store, Ledger.State);
            }
            catch (HostException e) when (e.Message.Contains("no free VF", StringComparison.Ordinal))
            {
                reclaimed.AddRange(await ReclaimOrphansOfPortsAsync(spec, host, ct).ConfigureAwait(false));
                if (reclaimed.Count == 0) throw;
                plan = Planner.Make(spec, host, Ledger.Store, Ledger.State);
            }
            claimed = Ledger.Claim(plan, Liveness.StartingSelf());
        }

        try
        {
            await new Applier(Kernel, Ledger, hooks, stderr).ApplyAsync(plan, ct).ConfigureAwait(false);
        }
        catch (Exception e) when (e is VmNetException or KernelException or OperationCanceledException)
        {
            // Rolled back: give the leases back unless rolling back left changes (then gc restores them after we exit).
            if (e is not RollbackIncompleteException)
            {
                using (Ledger.Lock(CancellationToken.None)) Ledger.Unclaim(claimed);
            }
            throw;
        }

        using (Ledger.Lock(ct))
        {
            foreach (var (now, _) in claimed) Ledger.SetOwner(now.Pci, new LeaseOwner(LeaseOwner.Defined));
        }
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
            if (lease.Owner is { Kind: LeaseOwner.Starting } o && Liveness.Gone(o) is null && o.Pid != Environment.ProcessId)
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
