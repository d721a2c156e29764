using VmNet.Backends;
using VmNet.Io;
using VmNet.Leases;
using VmNet.Planning;
using VmNet.Spec;
using VmNet.State;

namespace VmNet.Execution;

/// <summary>
/// Runs the backend's steps of a <see cref="LaunchPlan"/>: the seed and the overlay, define, start and the wait for the
/// guest agent. What a step makes anew is undone on rollback, and what it replaces is put back (a VM that existed
/// before gets its definition and seed back, and keeps its disk); a VM that fails to come up leaves its serial log in
/// the state dir.
/// </summary>
public sealed class LaunchStepRunner(LaunchPlan plan, IBackend backend, LeaseLedger ledger, IProgressSink? progress = null) : IStepRunner
{
    public bool Runs(Step step) => step is WriteSeed or CreateOverlay or DefineVm or StartVm or HandOverToProcess or WaitForAgent;

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
                        if (KeepSerialLog(paths, ledger.State, vm) is { } kept)
                        {
                            reverter.Note($"its serial log is kept at {kept}");
                            reverter.Replace(paths.SerialLog, kept);
                        }
                        VmFiles.DeleteRunFiles(paths, [paths.QemuRecord]);
                        return Task.CompletedTask;
                    });
                else if (reverter is not null)
                {
                    // A VM that was up before: its seed and fw_cfg config go back as they were if this up is undone.
                    var backups = new[] { w.Seed, w.AgentConfig, paths.Launched }.Where(File.Exists).Select(f => (File: f, Backup: f + ".prev")).ToList();
                    foreach (var (file, backup) in backups) File.Copy(file, backup, overwrite: true);
                    var hadRecord = File.Exists(paths.Launched);
                    reverter.Add(w.Describe(), () =>
                    {
                        foreach (var (file, backup) in backups) File.Move(backup, file, overwrite: true);
                        if (!hadRecord) VmFiles.DeleteFile(paths.Launched);
                        return Task.CompletedTask;
                    });
                    reverter.OnCommit(() => { foreach (var (_, backup) in backups) File.Delete(backup); });
                }
                VmFiles.WriteSeed(paths, plan.Artifacts, w.Agent);
                VmFiles.WriteLaunchRecord(paths, plan.Vm);
                break;
            case CreateOverlay o:
                if (!File.Exists(o.Disk))
                    reverter?.Add(o.Describe(), () => { VmFiles.DeleteFile(o.Disk); return Task.CompletedTask; });
                await VmFiles.EnsureOverlayAsync(o.BaseImage, o.Disk, o.SizeMiB, ct).ConfigureAwait(false);
                break;
            case DefineVm d:
            {
                // Critical: while a definition naming VFs may stand, its VFs and leases must not be given back.
                var saved = await backend.SaveDefinitionAsync(vm, ct).ConfigureAwait(false);
                reverter?.Add(d.Describe(), () => saved is null
                    ? backend.UndefineAsync(vm, CancellationToken.None)
                    : backend.RestoreDefinitionAsync(vm, saved, CancellationToken.None), critical: true);
                await backend.DefineAsync(plan, ct).ConfigureAwait(false);
                break;
            }
            case StartVm s:
            {
                // Critical: a VM that may still run holds its VFs; nothing before this is undone then.
                if (await backend.StatusAsync(vm, ct, guest: false).ConfigureAwait(false) is not { Running: true })
                    reverter?.Add(s.Describe(), async () => await backend.StopAsync(vm, TimeSpan.Zero, CancellationToken.None).ConfigureAwait(false), critical: true);
                await backend.StartAsync(plan, ct).ConfigureAwait(false);
                var clock = System.Diagnostics.Stopwatch.StartNew();
                while (await backend.StatusAsync(vm, ct, guest: false).ConfigureAwait(false) is not { Running: true })
                {
                    if (clock.Elapsed >= s.Timeout)
                        throw new VmNetException($"start: {vm} running did not happen within {s.Timeout.TotalSeconds:0.#} s; see the serial log {paths.SerialLog}", ExitCodes.Failure);
                    await Task.Delay(500, ct).ConfigureAwait(false);
                }
                break;
            }
            case HandOverToProcess:
            {
                var process = (backend as QemuBackend)?.Running(vm)
                    ?? throw new VmNetException($"{vm}'s QEMU process is gone right after its start; see the serial log {paths.SerialLog}", ExitCodes.Failure);
                var owner = new ProcessOwner(process.Pid, (long)process.StartTicks);
                var before = plan.Vfs.Select(a => (a.Vf.Pci, ledger.Store.Find(a.Vf.Pci)?.Owner)).ToList();
                reverter?.Add(step.Describe(), () =>
                {
                    using (ledger.Lock(CancellationToken.None))
                        foreach (var (pci, was) in before)
                            if (was is not null) ledger.SetOwner(pci, was);
                    return Task.CompletedTask;
                });
                using (ledger.Lock(ct))
                    foreach (var a in plan.Vfs) ledger.SetOwner(a.Vf.Pci, owner);
                break;
            }
            case WaitForAgent w when w.Skipped is not null:
                break;
            case WaitForAgent w:
            {
                GuestStatus guest;
                try
                {
                    guest = await GuestAgentChannel.WaitForReadyAsync(paths, w.Timeout, ct, e => progress?.Heard(e)).ConfigureAwait(false);
                }
                catch (GuestAgentTimeoutException e)
                {
                    // After the commit too: the VM stays up with its VFs (a slow guest is no reason to tear it down).
                    throw new VmNetException($"{e.Message}\n{StillRuns()}\n{NextCommands()}", ExitCodes.Failure, e);
                }
                catch (OperationCanceledException e) when (ct.IsCancellationRequested)
                {
                    // After the commit: nothing is rolled back, and the user should know it.
                    throw new VmNetException($"interrupted while waiting for the guest agent\n{StillRuns()}\n{NextCommands()}", ExitCodes.Failure, e);
                }
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

    /// <summary>What a VM left running after the wait holds: its backend and every VF.</summary>
    private string StillRuns()
    {
        var where = plan.Backend == Backend.Libvirt ? $"libvirt, {plan.RunsOn}" : plan.RunsOn;
        return $"{plan.Vm.Name} still runs ({where}) and holds its {plan.Vfs.Count} VFs: " +
            string.Join(", ", plan.Vfs.Select(a => $"{a.Pf.Name} vf {a.Vf.Index} ({a.Vf.Pci})"));
    }

    /// <summary>What to type next about a VM whose guest did not report.</summary>
    private string NextCommands()
    {
        var vm = plan.Vm.Name;
        var connect = plan.ConnectArgument;
        return $"next: `vmnet status {vm}{connect}` (the agent's report once it comes), `vmnet console {vm}{connect}` (the guest's console; " +
            $"its log is {plan.Paths.SerialLog}), `vmnet rm --force {vm}{connect}` (stop it and give its VFs back)";
    }

    /// <summary>
    /// A VM that failed to come up is removed with its directory; its serial log (what the guest said) is kept in the
    /// state dir's logs/ for the user to read. Null when there is none.
    /// </summary>
    private static string? KeepSerialLog(VmPaths paths, StateDir state, string vm)
    {
        try
        {
            if (SafePath.Stat(paths.SerialLog) is not { Kind: "file" } || new FileInfo(paths.SerialLog).Length == 0) return null;
            var kept = state.KeptSerialLog(vm);
            Directory.CreateDirectory(Path.GetDirectoryName(kept)!);
            // Copying over a link would write through it: whatever is there goes first.
            if (SafePath.Stat(kept) is { Kind: "directory" }) Directory.Delete(kept, recursive: true); else File.Delete(kept);
            File.Copy(paths.SerialLog, kept);
            return kept;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }
}
