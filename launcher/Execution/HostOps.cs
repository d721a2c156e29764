using VmNet.Backends;
using VmNet.Host;
using VmNet.Kernel;
using VmNet.Leases;
using VmNet.Planning;
using VmNet.Rendering;
using VmNet.Spec;
using VmNet.State;

namespace VmNet.Execution;

/// <summary>What <c>--dry-run</c> shows: the plan, what <c>up</c> would stop at before its first change, and the orphans it would reclaim first.</summary>
public sealed record DryRun(LaunchPlan Plan, IReadOnlyList<PreflightProblem> Problems, IReadOnlyList<string> Reclaims);

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
    public async Task<DryRun> PlanAsync(VmSpec spec, LaunchOptions options, Templates templates, CancellationToken ct, IBackend? backend = null)
    {
        var host = new HostScanner(Kernel.Root);
        LaunchPlan plan;
        IReadOnlyList<Lease> orphans = [];
        RunningVm? running;
        try
        {
            running = await RunningAsync(spec, options, backend, ct).ConfigureAwait(false);
        }
        catch (VmNetException)
        {
            running = null; // the backend cannot be asked: the dry run plans as for a VM that does not run
        }
        try
        {
            plan = Planner.Make(spec, host, Ledger.Store, Ledger.State, options, templates, running);
        }
        catch (HostException e) when (e.Message.Contains("no free VF", StringComparison.Ordinal))
        {
            // As `up` would: the orphans of the spec's ports count as free, and the plan says it reclaims them first.
            orphans = OrphansOfPorts(spec, host).ToList();
            if (orphans.Count == 0) throw;
            plan = Planner.Make(spec, host, new LeasesWithout(Ledger.Store, orphans), Ledger.State, options, templates, running);
        }
        var reclaims = orphans.Select(l => $"VF {l.Vf} of {l.Pf} ({l.Pci}), leased by {l.Vm}, whose owner is gone: {Liveness.Gone(l.Owner)}").ToList();
        return new DryRun(plan, await Preflight.CheckAsync(plan, Kernel.Root, ct).ConfigureAwait(false), reclaims);
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
        if (options.Start && backend is null) throw new ArgumentNullException(nameof(backend), "a start needs a backend");
        progress?.Enter(Phase.Reserve);
        var host = new HostScanner(Kernel.Root);
        LaunchPlan plan;
        IReadOnlyList<(Lease Now, Lease? Before)> claimed;
        IReadOnlyList<CpuLease> cpusBefore;
        var reverter = new Reverter();
        var reclaimed = new List<string>();
        using (Ledger.Lock(ct))
        {
            if (Ledger.BusyWith(spec.Name) is { } busy)
                throw new VmNetException($"{spec.Name} is being changed by vmnet pid {busy.Pid} right now; wait for it to finish (or stop it), then rerun `vmnet up`");
            var running = await RunningAsync(spec, options, backend, ct).ConfigureAwait(false);
            try
            {
                plan = Planner.Make(spec, host, Ledger.Store, Ledger.State, options, templates, running);
            }
            catch (HostException e) when (e.Message.Contains("no free VF", StringComparison.Ordinal))
            {
                reclaimed.AddRange(await ReclaimOrphansOfPortsAsync(spec, host, ct).ConfigureAwait(false));
                if (reclaimed.Count == 0) throw;
                plan = Planner.Make(spec, host, Ledger.Store, Ledger.State, options, templates, running);
            }
            Preflight.ThrowIfAny(await Preflight.CheckAsync(plan, Kernel.Root, ct).ConfigureAwait(false));
            beforeFirstChange?.Invoke(plan);
            progress?.Planned(plan);
            foreach (var line in reclaimed) progress?.Note($"reclaimed an orphan: {line}");
            foreach (var w in plan.Placement.Warnings) progress?.Note($"warning: {w}");
            // The claim is the first change; its undo, registered at once, is the last to run.
            claimed = Ledger.Claim(spec.Name, plan.Leases, Liveness.StartingSelf());
            // The CPU leases are held by the VM's VF leases, so they come after them, under the same lock.
            cpusBefore = Ledger.Cpus.Claim(spec.Name, plan.CpuLeases);
        }

        var isNew = claimed.All(c => c.Before is null);
        reverter.Add("give the leases back", () =>
        {
            using (Ledger.Lock(CancellationToken.None))
            {
                // After a rollback that left changes, the VFs the VM held before go back to it as they were, and the new
                // ones stay with this vmnet, so that `vmnet gc` restores them once it has exited.
                var clean = reverter.Failures.Count == 0;
                // A new VM whose rollback left changes keeps its CPUs with the VFs that stay leased (`vmnet gc` frees both).
                if (clean || !isNew) Ledger.Cpus.Restore(spec.Name, cpusBefore);
                Ledger.Unclaim(claimed, releaseNew: clean);
                if (clean && isNew && options.Start) reverter.Note($"{spec.Name}'s VFs were given back as they were found");
            }
            return Task.CompletedTask;
        });
        reverter.OnCommit(() =>
        {
            using (Ledger.Lock(CancellationToken.None))
            {
                foreach (var (now, _) in claimed) Ledger.Finish(now.Pci);
                Ledger.Cpus.Restore(spec.Name, plan.CpuLeases); // the CPUs the VM held and no longer needs
            }
        });
        var runners = new List<IStepRunner> { new HostStepRunner(Kernel, Ledger), new LeaseStepRunner(Ledger, plan.Vfs.Select(a => a.Vf.Pci).ToList()) };
        if (options.Start) runners.Add(new LaunchStepRunner(plan, backend!, Ledger, progress));
        await new Executor(runners, hooks, stderr, progress).RunAsync(plan.Steps, reverter, ct).ConfigureAwait(false);
        return new UpResult(plan, reclaimed);
    }

    /// <summary>
    /// The facts of a VM that runs now, for the planner: only a VM that holds VFs is asked about (a new one costs no
    /// call to the backend), and only with a start (<c>--no-start</c> changes the host side alone).
    /// </summary>
    private async Task<RunningVm?> RunningAsync(VmSpec spec, LaunchOptions options, IBackend? backend, CancellationToken ct)
    {
        if (backend is null || !options.Start || Ledger.Store.OfVm(spec.Name).Count == 0) return null;
        if (await backend.StatusAsync(spec.Name, ct, guest: false).ConfigureAwait(false) is not { Running: true }) return null;
        return new RunningVm(VmFiles.ReadLaunchRecord(VmPaths.For(Ledger.State, spec.Name)));
    }

    /// <summary>Restores and releases every VF of <paramref name="vm"/>; a VM without leases is fine (idempotent).</summary>
    public async Task<IReadOnlyList<string>> RemoveAsync(string vm, CancellationToken ct)
    {
        using var _ = Ledger.Lock(ct);
        var done = new List<string>();
        var restorer = new Restorer(Kernel, Ledger);
        foreach (var lease in Ledger.Store.OfVm(vm))
        {
            if (Ledger.BusyWith(vm) is { } o)
                throw new VmNetException($"VM {vm} is being started by vmnet pid {o.Pid} right now; wait for it to finish (or stop it), then rerun `vmnet rm {vm}`");
            done.Add(await restorer.RestoreAndReleaseAsync(lease, ct).ConfigureAwait(false));
        }
        if (Ledger.Cpus.OfVm(vm) is { Count: > 0 } cpus)
        {
            Ledger.Cpus.Release(vm);
            done.Add($"CPUs {Host.CpuList.Format(cpus.Select(c => c.Cpu))}: released (dedicated to {vm})");
        }
        return done;
    }

    /// <summary>
    /// Restores and releases every lease whose owner is gone. The PF indexes are rebuilt first (a corrupt index is
    /// what `gc` repairs), and a corrupt lease file is skipped and named in <c>Problems</c>: the other VFs are served.
    /// </summary>
    public async Task<(IReadOnlyList<string> Done, IReadOnlyList<string> Problems)> GcAsync(CancellationToken ct)
    {
        using var _ = Ledger.Lock(ct);
        Ledger.RebuildPfIndexes();
        var done = new List<string>();
        var problems = new List<string>();
        var restorer = new Restorer(Kernel, Ledger);
        foreach (var (_, lease, problem) in Ledger.Store.Scan().ToList())
        {
            if (problem is not null) problems.Add(problem);
            if (lease is null || Liveness.Gone(lease.Owner) is not { } why) continue;
            var what = await restorer.RestoreAndReleaseAsync(lease, ct).ConfigureAwait(false);
            done.Add($"{what}; released from {lease.Vm} ({why})");
        }
        try
        {
            foreach (var vm in Ledger.Cpus.DropStale().GroupBy(c => c.Vm))
                done.Add($"CPUs {Host.CpuList.Format(vm.Select(c => c.Cpu))}: released from {vm.Key} (it holds no VF any more)");
        }
        catch (VmNetException e)
        {
            problems.Add(e.Message);
        }
        return (done, problems); // each release kept the PF index rebuilt above
    }

    /// <summary>
    /// <c>vmnet gc --reset PCI</c>: the repair for a VF whose lease file is corrupt (or was removed by hand while the
    /// VF stayed on vfio-pci), where what it was before is lost. The VF is given the settings the kernel creates it
    /// with (<see cref="VfSettings.Fresh"/>) and its PF's VF driver (that of a sibling VF on a host driver, else the
    /// driver the PF's driver is known to create), and the lease file goes. Refused for a VF whose lease is readable
    /// (<c>vmnet rm</c> or <c>gc</c> give it back as it was found) and for one a process holds open through vfio.
    /// </summary>
    public async Task<string> ResetVfAsync(string pci, CancellationToken ct)
    {
        if (!SpecLoader.IsPciAddress(pci))
            throw new VmNetException($"--reset must be a VF's PCI address like 0000:03:00.2, got {Spec.MapReader.Quote(pci)}", ExitCodes.InvalidInput);
        using var _ = Ledger.Lock(ct);
        var host = new HostScanner(Kernel.Root);
        var (pf, vf) = host.AllPfs().SelectMany(p => p.Vfs.Select(v => (Pf: p, Vf: v))).FirstOrDefault(x => x.Vf.Pci == pci);
        if (pf is null || vf is null)
            throw new VmNetException($"--reset: {pci} is no VF of this host's SR-IOV ports (`vmnet host` lists them)", ExitCodes.HostCannotServe);
        string? problem = null;
        try
        {
            if (Ledger.Store.Find(pci) is { } lease)
                throw new VmNetException($"--reset: VF {pci} is leased by {lease.Vm} and its lease is readable: `vmnet rm {lease.Vm}` (or `vmnet gc` once its owner is gone) gives it back as it was found", ExitCodes.InvalidInput);
        }
        catch (VmNetException e) when (e.Message.StartsWith("the lease file ", StringComparison.Ordinal))
        {
            problem = "corrupt lease";
        }
        if (vf.IommuGroup is { } group && OpenedBy(Kernel.Root.Map($"/dev/vfio/{group}")) is { } pid)
            throw new VmNetException($"--reset: VF {pci} is in use: process {pid} holds its VFIO group /dev/vfio/{group} open (a VM runs on it); stop that VM first", ExitCodes.HostCannotServe);
        var sibling = pf.Vfs.Select(v => v.Driver).FirstOrDefault(d => d is not null && d != VirtualFunction.VfioDriver);
        var driver = sibling ?? (pf.Driver is { } d && VfDriverOf.TryGetValue(d, out var known) ? known : null);
        var original = new VfState(VfSettings.Fresh, driver, null, null);
        var pfDev = host.NetDevOf(pf.Pci)
            ?? throw new VmNetException($"--reset: the PF {pf.Pci} of VF {pci} has no network device (is its driver loaded?)", ExitCodes.HostCannotServe);
        var runner = new HostStepRunner(Kernel);
        var now = await runner.Vf.ReadStateAsync(pfDev, vf.Index, pci, ct).ConfigureAwait(false);
        await new Executor([runner]).RunWithoutUndoAsync(VfSteps.Restore(new VfRef(pfDev, pf.Pci, vf.Index, pci), now, original), ct).ConfigureAwait(false);
        File.Delete(Ledger.State.LeaseFile(pci));
        Ledger.RebuildPfIndexes();
        return $"{pci}: reset to the kernel's defaults (VF {vf.Index} of {pfDev}: no MAC, untagged, spoof checking on, trust off, " +
            $"driver {driver ?? "none: bind it with `echo " + pci + " > /sys/bus/pci/drivers_probe`"})" + (problem is null ? "" : $"; its {problem} removed");
    }

    /// <summary>The VF driver each PF driver creates its VFs with, for a PF none of whose VFs is on a host driver now.</summary>
    private static readonly Dictionary<string, string> VfDriverOf = new(StringComparer.Ordinal)
    {
        ["mlx5_core"] = "mlx5_core", ["igb"] = "igbvf", ["ixgbe"] = "ixgbevf", ["i40e"] = "iavf", ["ice"] = "iavf", ["bnxt_en"] = "bnxt_en",
    };

    /// <summary>A live process that has <paramref name="device"/> open (from /proc/PID/fd), or null.</summary>
    private static int? OpenedBy(string device)
    {
        foreach (var dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), out var pid)) continue;
            try
            {
                foreach (var fd in Directory.EnumerateFileSystemEntries(Path.Join(dir, "fd")))
                    if (new FileInfo(fd).LinkTarget == device) return pid;
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException) { } // gone, or not ours to see
        }
        return null;
    }

    /// <summary>The leases of other VMs on the spec's ports whose owner is gone: O(VFs considered), like planning.</summary>
    private IEnumerable<Lease> OrphansOfPorts(VmSpec spec, HostScanner host)
    {
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var port in spec.Networks.SelectMany(n => n.Ports))
        {
            if (host.FindPort(port) is not { } pf || !seen.Add(pf.Pci)) continue;
            for (var i = 0; i < pf.NumVfs; i++)
            {
                if (host.VfPci(pf, i) is not { } pci || Ledger.Store.Find(pci) is not { } lease) continue;
                if (lease.Vm != spec.Name && Liveness.Gone(lease.Owner) is not null) yield return lease;
            }
        }
    }

    private async Task<IReadOnlyList<string>> ReclaimOrphansOfPortsAsync(VmSpec spec, HostScanner host, CancellationToken ct)
    {
        var done = new List<string>();
        var restorer = new Restorer(Kernel, Ledger);
        foreach (var lease in OrphansOfPorts(spec, host).ToList())
        {
            var why = Liveness.Gone(lease.Owner);
            var what = await restorer.RestoreAndReleaseAsync(lease, ct).ConfigureAwait(false);
            done.Add($"{what}; reclaimed from {lease.Vm} ({why})");
        }
        return done;
    }
}
