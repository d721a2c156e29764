using VmNet.Planning;

namespace VmNet.Execution;

/// <summary>Runs one kind of step (host changes through the kernel, or the backend's).</summary>
public interface IStepRunner
{
    bool Runs(Step step);

    /// <summary>Makes the change, registering its undo with <paramref name="reverter"/> first (none when null: a restore).</summary>
    Task RunAsync(Step step, Reverter? reverter, CancellationToken ct);
}

/// <summary>What the executor tells whoever watches: the phase it enters, and notes under it.</summary>
public interface IProgressSink
{
    /// <summary>The plan is made: what the phases will do.</summary>
    void Planned(LaunchPlan plan);

    void Enter(Phase phase);

    void Note(string line);

    /// <summary>An event of the guest agent while the launch waits for it (checked and made safe).</summary>
    void Heard(VmNet.Contract.AgentEvent e) { }

    /// <summary>A step is about to run (<c>--verbose</c> prints it).</summary>
    void Running(Step step) { }
}

/// <summary>
/// Applies steps in order through their runners, with one reverter: a failure at a transactional step (or Ctrl+C) runs
/// every undo registered so far, newest first. Steps after the last transactional one (the wait for the guest) run
/// after the reverter has been committed: a guest slow to report keeps its VM. The test hooks
/// (<see cref="ApplyHooks"/>) count the steps given here, from 1.
/// </summary>
public sealed class Executor(IReadOnlyList<IStepRunner> runners, ApplyHooks? hooks = null, TextWriter? stderr = null, IProgressSink? progress = null,
    string incompleteHint = Executor.LeasesStayHint)
{
    /// <summary>What to do after a rollback that left changes, when leases are involved.</summary>
    public const string LeasesStayHint = "the leases stay; `vmnet gc` restores those VFs once this vmnet has exited";

    private readonly ApplyHooks _hooks = hooks ?? new ApplyHooks();

    public async Task RunAsync(IReadOnlyList<Step> steps, Reverter reverter, CancellationToken ct)
    {
        try
        {
            for (var k = 1; k <= steps.Count; k++)
            {
                ct.ThrowIfCancellationRequested();
                var step = steps[k - 1];
                progress?.Enter(step.Phase);
                if (!step.Transactional) reverter.Success();
                if (_hooks.PauseAtStep == k)
                {
                    stderr?.WriteLine($"vmnet: test hook: paused at step {k}: {step.Describe()}");
                    stderr?.Flush();
                    await Task.Delay(Timeout.Infinite, ct).ConfigureAwait(false);
                }
                if (_hooks.FailAtStep == k)
                    throw new VmNetException($"test hook VMNET_TEST_FAIL_AT_STEP: failing at step {k} ({step.Describe()})");
                var runner = runners.FirstOrDefault(r => r.Runs(step))
                    ?? throw new InvalidOperationException($"no runner for the step {step.GetType().Name}");
                progress?.Running(step);
                await runner.RunAsync(step, reverter, ct).ConfigureAwait(false);
            }
            reverter.Success();
        }
        catch (Exception e) when (!reverter.Succeeded)
        {
            // Any failure, a bug's too, rolls back: the host is never left half-changed by an exception.
            var failures = await reverter.RevertAsync().ConfigureAwait(false);
            var reason = reverter.Rewrite(e is OperationCanceledException ? "interrupted" : e.Message);
            if (failures.Count > 0)
                throw new RollbackIncompleteException($"{reason}\nrolling back left {failures.Count} change(s) in place:\n  "
                    + string.Join("\n  ", failures) + "\n" + incompleteHint, e);
            if (reverter.Notes.Count > 0 && e is not OperationCanceledException)
                throw new VmNetException($"{reason}; {string.Join("; ", reverter.Notes)}", (e as VmNetException)?.ExitCode ?? ExitCodes.Failure, e);
            throw;
        }
    }

    /// <summary>Runs steps without rollback (a restore, which is idempotent and resumes where it stopped).</summary>
    public async Task RunWithoutUndoAsync(IEnumerable<Step> steps, CancellationToken ct)
    {
        foreach (var step in steps)
        {
            ct.ThrowIfCancellationRequested();
            var runner = runners.FirstOrDefault(r => r.Runs(step))
                ?? throw new InvalidOperationException($"no runner for the step {step.GetType().Name}");
            await runner.RunAsync(step, null, ct).ConfigureAwait(false);
        }
    }
}
