using VmNet.Backends;
using VmNet.Leases;
using VmNet.Planning;
using VmNet.State;

namespace VmNet.Execution;

/// <summary>
/// Runs the backend's steps of a <see cref="LaunchPlan"/>: the seed and the overlay, define, start and the wait for the
/// guest agent. What a step makes anew is undone on rollback (a VM that existed
/// before keeps its definition, disk and seed); a VM that fails to come up leaves its serial log in the state dir.
/// </summary>
public sealed class LaunchStepRunner(LaunchPlan plan, IBackend backend, LeaseLedger ledger, IProgressSink? progress = null) : IStepRunner
{
    public bool Runs(Step step) => step is WriteSeed or CreateOverlay or DefineVm or StartVm or WaitForAgent;

    public async Task RunAsync(Step step, Reverter? reverter, CancellationToken ct)
    {
        var vm = plan.Vm.Name;
        var paths = plan.Paths;
        switch (step)
        {
            case WriteSeed w:
                if (!File.Exists(w.Seed))
                    reverter?.Add(w.Describe(), () =>
                    {
                        if (KeepSerialLog(paths, ledger.State, vm) is { } kept) reverter.Note($"its serial log is kept at {kept}");
                        VmFiles.DeleteRunFiles(paths, [paths.QemuRecord]);
                        return Task.CompletedTask;
                    });
                VmFiles.WriteSeed(paths, plan.Artifacts, w.Agent);
                break;
            case CreateOverlay o:
                if (!File.Exists(o.Disk))
                    reverter?.Add(o.Describe(), () => { VmFiles.DeleteFile(o.Disk); return Task.CompletedTask; });
                await VmFiles.EnsureOverlayAsync(o.BaseImage, o.Disk, o.SizeMiB, ct).ConfigureAwait(false);
                break;
            case DefineVm d:
                if (!await backend.IsDefinedAsync(vm, ct).ConfigureAwait(false))
                    reverter?.Add(d.Describe(), () => backend.UndefineAsync(vm, CancellationToken.None));
                await backend.DefineAsync(plan, ct).ConfigureAwait(false);
                break;
            case StartVm s:
            {
                if (await backend.StatusAsync(vm, ct).ConfigureAwait(false) is not { Running: true })
                    reverter?.Add(s.Describe(), async () => await backend.StopAsync(vm, TimeSpan.Zero, CancellationToken.None).ConfigureAwait(false));
                await backend.StartAsync(plan, ct).ConfigureAwait(false);
                var clock = System.Diagnostics.Stopwatch.StartNew();
                while (await backend.StatusAsync(vm, ct).ConfigureAwait(false) is not { Running: true })
                {
                    if (clock.Elapsed >= s.Timeout)
                        throw new VmNetException($"start: {vm} running did not happen within {s.Timeout.TotalSeconds:0.#} s; see the serial log {paths.SerialLog}", ExitCodes.Failure);
                    await Task.Delay(500, ct).ConfigureAwait(false);
                }
                break;
            }
            case WaitForAgent w when w.Skipped is not null:
                break;
            case WaitForAgent w:
            {
                var guest = await GuestAgentChannel.WaitForReadyAsync(paths, w.Timeout, ct).ConfigureAwait(false);
                // The agent reports after 15 s even when a bond has no active member yet (e.g. ARP monitoring that has
                // not seen a reply): the VM runs, but that network carries no traffic until a member takes over.
                foreach (var n in guest.Networks.Where(n => n.Active is null))
                    progress?.Note($"warning: {n.Name} has no active member yet ({string.Join(", ", n.Members.Select(m => $"{m.Name} {m.Link}"))}); " +
                        $"`vmnet status {vm}` shows when one takes over");
                break;
            }
            default:
                throw new InvalidOperationException($"the launch step runner does not run {step.GetType().Name}");
        }
    }

    /// <summary>
    /// A VM that failed to come up is removed with its directory; its serial log (what the guest said) is kept in the
    /// state dir's logs/ for the user to read. Null when there is none.
    /// </summary>
    private static string? KeepSerialLog(VmPaths paths, StateDir state, string vm)
    {
        try
        {
            if (!File.Exists(paths.SerialLog) || new FileInfo(paths.SerialLog).Length == 0) return null;
            var kept = state.KeptSerialLog(vm);
            Directory.CreateDirectory(Path.GetDirectoryName(kept)!);
            File.Copy(paths.SerialLog, kept, overwrite: true);
            return kept;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }
}
