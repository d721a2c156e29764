using System.Globalization;

namespace VmNet.Execution;

/// <summary>
/// Test hooks, read from the environment by the CLI. TEST ONLY, never for production use:
/// <c>VMNET_TEST_FAIL_AT_STEP=k</c> fails just before plan step k (1-based) as if the kernel had refused it;
/// <c>VMNET_TEST_PAUSE_AT_STEP=k</c> prints "vmnet: test hook: paused at step k" to stderr before step k and sleeps
/// until killed (the crash tests kill -9 it there).
/// </summary>
public sealed record ApplyHooks(int? FailAtStep = null, int? PauseAtStep = null)
{
    public static ApplyHooks FromEnvironment() => new(Int("VMNET_TEST_FAIL_AT_STEP"), Int("VMNET_TEST_PAUSE_AT_STEP"));

    private static int? Int(string name) =>
        int.TryParse(Environment.GetEnvironmentVariable(name), NumberStyles.None, CultureInfo.InvariantCulture, out var k) ? k : null;
}

/// <summary>A change failed and rolling back could not undo everything: the leases must stay for <c>vmnet gc</c>.</summary>
public sealed class RollbackIncompleteException(string message, Exception inner) : VmNetException(message, ExitCodes.Failure, inner);

/// <summary>
/// Undo actions, registered as changes are made (each before its change, and harmless when the change itself was
/// refused) and run newest first unless <see cref="Success"/> was called. An undo may add a note to the failure's
/// message (what was given back, where a log is kept). A <c>critical</c> undo (stopping a VM, putting its definition
/// back) stops the rollback when it fails: what comes before it (the leases, the VFs) must not be given back while a
/// VM may still hold them. Commit actions run at <see cref="Success"/> (dropping the backups undos would have used).
/// </summary>
public sealed class Reverter
{
    private readonly List<(string What, Func<Task> Undo, bool Critical)> _undos = [];
    private readonly List<Action> _commits = [];
    private readonly List<string> _notes = [];
    private readonly List<string> _failures = [];
    private readonly List<(string From, string To)> _replacements = [];

    public bool Succeeded { get; private set; }

    /// <summary>True when a critical undo failed and the rollback stopped there.</summary>
    public bool Stopped { get; private set; }

    /// <summary>Undos that failed so far in this rollback: later undos that must only run after a clean rollback look here.</summary>
    public IReadOnlyList<string> Failures => _failures;

    public IReadOnlyList<string> Notes => _notes;

    public void Add(string what, Func<Task> undo, bool critical = false) => _undos.Add((what, undo, critical));

    public void OnCommit(Action commit) => _commits.Add(commit);

    public void Note(string note) => _notes.Add(note);

    /// <summary>Asks that <paramref name="from"/> read <paramref name="to"/> in the failure's message (a log moved away by an undo).</summary>
    public void Replace(string from, string to) => _replacements.Add((from, to));

    public string Rewrite(string message) => _replacements.Aggregate(message, (m, r) => m.Replace(r.From, r.To, StringComparison.Ordinal));

    public void Success()
    {
        if (Succeeded) return;
        Succeeded = true;
        foreach (var commit in _commits)
        {
            try { commit(); }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException) { } // a backup left behind harms nothing
        }
    }

    /// <summary>Runs every undo, newest first, continuing past failures (but not past a critical one); returns what could not be undone.</summary>
    public async Task<IReadOnlyList<string>> RevertAsync()
    {
        if (Succeeded) return [];
        for (var i = _undos.Count - 1; i >= 0; i--)
        {
            try
            {
                await _undos[i].Undo().ConfigureAwait(false);
            }
            catch (Exception e) // every undo runs, whatever the one before it threw
            {
                _failures.Add($"{_undos[i].What}: {e.Message}");
                if (_undos[i].Critical)
                {
                    Stopped = true;
                    _failures.AddRange(_undos.Take(i).Reverse().Select(u => $"{u.What}: not undone, since the step above could not be"));
                    break;
                }
            }
        }
        _undos.Clear();
        return _failures;
    }
}
