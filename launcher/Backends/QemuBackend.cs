using System.ComponentModel;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;
using CliWrap;
using CliWrap.Buffered;
using VmNet.Host;
using VmNet.Io;
using VmNet.Planning;
using VmNet.Rendering;
using VmNet.State;

namespace VmNet.Backends;

/// <summary>What the QEMU backend keeps about a VM next to its files (libvirt keeps the same in the domain's metadata).</summary>
/// <param name="Pinning">The CPUs its threads are pinned to once started (placement), or null.</param>
public sealed record QemuVmRecord(int Version, string Name, IReadOnlyList<VfStatus> Vfs, IReadOnlyList<string> Argv, QemuPinning? Pinning = null);

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase, WriteIndented = true)]
[JsonSerializable(typeof(QemuVmRecord))]
internal sealed partial class QemuRecordJson : JsonSerializerContext;

/// <summary>
/// Runs <c>qemu-system-x86_64</c> directly from the rendered argv (never a shell string): daemonized, with its pid file,
/// QMP socket and serial log in the VM directory. Its record (qemu.json) is its definition: its leases are held by
/// it until <c>vmnet rm</c>, whether the process runs or not.
/// </summary>
public sealed class QemuBackend(StateDir state) : IBackend
{
    /// <summary>
    /// How long QEMU's first process may take to set the VM up (it exits, daemonized, once it did): locking and
    /// DMA-mapping every page of a large guest for VFIO takes tens of seconds on a real host, and a nested TCG host on a
    /// busy machine took over 60 s for 384 MiB.
    /// </summary>
    private static readonly TimeSpan StartTimeout = TimeSpan.FromSeconds(300);
    private static readonly TimeSpan QuitTimeout = TimeSpan.FromSeconds(5);

    /// <summary>How long `status` and `ls` wait for each VM's QMP answer before they call it unreachable: a hung QEMU
    /// costs each listing this much, not QMP's 20 s.</summary>
    public static readonly TimeSpan StatusReplyTimeout = TimeSpan.FromSeconds(5);

    public string Name => "qemu";

    public StateDir State { get; } = state;

    private VmPaths PathsOf(string vm) => VmPaths.For(State, vm);

    private string RecordPath(string vm) => PathsOf(vm).QemuRecord;

    public Task<bool> IsDefinedAsync(string vm, CancellationToken cancel) => Task.FromResult(File.Exists(RecordPath(vm)));

    public Task<SavedDefinition?> SaveDefinitionAsync(string vm, CancellationToken cancel) =>
        Task.FromResult(File.Exists(RecordPath(vm)) ? new SavedDefinition(ReadRecordText(vm), false) : null);

    private string ReadRecordText(string vm)
    {
        SafePath.Check(RecordPath(vm), "file");
        return File.ReadAllText(RecordPath(vm));
    }

    public Task RestoreDefinitionAsync(string vm, SavedDefinition saved, CancellationToken cancel)
    {
        AtomicFile.Write(RecordPath(vm), saved.Text);
        return Task.CompletedTask;
    }

    /// <summary>Writes the VM's record (its VFs and argv); a running VM keeps the record it runs by until it is restarted.</summary>
    public Task DefineAsync(LaunchPlan plan, CancellationToken cancel)
    {
        var vm = plan.Vm.Name;
        if (Running(vm) is not null && File.Exists(RecordPath(vm))) return Task.CompletedTask;
        var argv = plan.Artifacts.QemuArgs;
        if (argv.Count == 0 || !argv.Contains("-daemonize") || PidFileArgument(argv) != plan.Paths.PidFile)
            throw new VmNetException($"the rendered qemu.args for {vm} must run daemonized with -pidfile {plan.Paths.PidFile}; check the qemu.args template", ExitCodes.InvalidInput);
        var record = new QemuVmRecord(1, vm, VfStatus.Of(plan), argv, QemuPinning.Of(plan.Placement));
        Directory.CreateDirectory(plan.Paths.VmDir);
        // Replaced whole (a rename), never written through whatever the path held.
        AtomicFile.Write(RecordPath(vm), JsonSerializer.Serialize(record, QemuRecordJson.Default.QemuVmRecord), durable: false, mode: AtomicFile.Private);
        return Task.CompletedTask;
    }

    public Task UndefineAsync(string vm, CancellationToken cancel)
    {
        VmFiles.DeleteFile(RecordPath(vm));
        return Task.CompletedTask;
    }

    public async Task StartAsync(LaunchPlan plan, CancellationToken cancel)
    {
        var vm = plan.Vm.Name;
        var paths = plan.Paths;
        if (Running(vm) is not null) return;
        var record = ReadRecord(vm)
            ?? throw new VmNetException($"{vm} is not defined for the QEMU backend ({RecordPath(vm)} is missing); run `vmnet up` again", ExitCodes.Failure);
        var argv = record.Argv;

        VmFiles.DeleteFile(paths.PidFile);
        VmFiles.DeleteFile(paths.QmpSocket);
        // QEMU appends the guest's output to the serial log, following a link (as root): only a regular file stays.
        SafePath.RemoveUnlessRegularFile(paths.SerialLog);
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancel);
        timeout.CancelAfter(StartTimeout);
        BufferedCommandResult result;
        try
        {
            // With -daemonize, QEMU's first process exits once the VM is set up (or failed), with the daemon's stdio on /dev/null.
            result = await CliWrap.Cli.Wrap(argv[0]).WithArguments(argv.Skip(1)).WithValidation(CommandResultValidation.None)
                .ExecuteBufferedAsync(timeout.Token);
        }
        catch (Win32Exception e)
        {
            throw new VmNetException($"cannot start {vm}: {argv[0]} is not installed ({e.Message}); install qemu-system-x86 (scripts/install-deps.sh)", ExitCodes.Failure, e);
        }
        catch (OperationCanceledException) when (!cancel.IsCancellationRequested)
        {
            throw new VmNetException($"QEMU did not finish starting {vm} within {StartTimeout.TotalSeconds:0} s; see the serial log {paths.SerialLog}", ExitCodes.Failure);
        }
        if (result.ExitCode != 0)
        {
            var detail = string.Join("; ", result.StandardError.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
            throw new VmNetException($"QEMU could not start {vm} (exit {result.ExitCode}): {detail}", ExitCodes.Failure);
        }
        if (Running(vm) is not { } process)
            throw new VmNetException($"QEMU started {vm} but its process is gone; see the serial log {paths.SerialLog}", ExitCodes.Failure);
        // Started paused (-S, rendered for a placed VM): its threads are pinned before the guest runs a cycle.
        if (argv.Contains("-S"))
        {
            await using var qmp = await QmpClient.ConnectAsync(paths.QmpSocket, timeout.Token).ConfigureAwait(false);
            if (record.Pinning is { } pinning) await ThreadPinner.PinAndContinueAsync(qmp, process.Pid, pinning, timeout.Token).ConfigureAwait(false);
            else await qmp.ExecuteAsync("cont", timeout.Token).ConfigureAwait(false);
        }
    }

    public async Task<StopResult> StopAsync(string vm, TimeSpan graceful, CancellationToken cancel)
    {
        var paths = PathsOf(vm);
        var process = Running(vm);
        if (process is not { } p)
        {
            CleanRunFiles(paths);
            return StopResult.AlreadyStopped;
        }
        var result = StopResult.Forced;
        // A QEMU that does not answer must not make `--timeout 1` wait QMP's own 20 s: it gets what the caller gave.
        var reply = TimeSpan.FromSeconds(Math.Clamp(graceful.TotalSeconds, 1, QmpClient.ReplyTimeout.TotalSeconds));
        try
        {
            await using (var qmp = await QmpClient.ConnectAsync(paths.QmpSocket, cancel, reply))
                await qmp.SystemPowerdownAsync(cancel);
            if (await WaitForExit(p, graceful, cancel))
                result = StopResult.ShutDown;
            else
            {
                await using var qmp = await QmpClient.ConnectAsync(paths.QmpSocket, cancel, reply);
                await qmp.QuitAsync(cancel);
            }
        }
        catch (VmNetException) when (!p.IsAlive)
        {
            result = StopResult.ShutDown; // it went away while we talked to it
        }
        catch (VmNetException)
        {
            // QMP is unusable: fall through to the kill below
        }
        if (result == StopResult.Forced && !await WaitForExit(p, QuitTimeout, cancel) && p.IsAlive)
        {
            using var os = System.Diagnostics.Process.GetProcessById(p.Pid);
            os.Kill();
            await WaitForExit(p, QuitTimeout, cancel);
        }
        CleanRunFiles(paths);
        return result;
    }

    public async Task<StopResult> RemoveAsync(string vm, TimeSpan graceful, CancellationToken cancel)
    {
        var stopped = await StopAsync(vm, graceful, cancel);
        VmFiles.Delete(PathsOf(vm), [RecordPath(vm)]);
        return stopped;
    }

    public async Task<VmStatus?> StatusAsync(string vm, CancellationToken cancel, bool guest = true)
    {
        var record = ReadRecord(vm);
        if (record is null) return null;
        var paths = PathsOf(vm);
        var state = "shut off";
        if (Running(vm) is not null)
        {
            try
            {
                await using var qmp = await QmpClient.ConnectAsync(paths.QmpSocket, cancel, StatusReplyTimeout);
                state = (await qmp.QueryStatusAsync(cancel)).Status;
            }
            catch (VmNetException)
            {
                state = "running (QMP unreachable)";
            }
        }
        var running = state.StartsWith("running", StringComparison.Ordinal) || state == "paused";
        var (cpus, memory) = Shape(record.Argv);
        return new VmStatus(vm, Name, state, running, record.Vfs, paths.SerialLog, running && guest ? await GuestAgentChannel.RefreshAsync(paths, cancel) : null)
        { Cpus = cpus, MemoryMiB = memory };
    }

    /// <summary>vCPUs and memory (MiB) from the argv QEMU was started with (<c>-smp N</c>, <c>-m NM</c>).</summary>
    public static (int? Cpus, long? MemoryMiB) Shape(IReadOnlyList<string> argv)
    {
        string? After(string option) => argv.Select((a, i) => (a, i)).Where(x => x.a == option && x.i + 1 < argv.Count).Select(x => argv[x.i + 1]).FirstOrDefault();
        var cpus = int.TryParse(After("-smp")?.Split(',')[0], System.Globalization.CultureInfo.InvariantCulture, out var n) ? n : (int?)null;
        var m = After("-m")?.Split(',')[0];
        long? memory = m is not null && m.EndsWith('M') && long.TryParse(m[..^1], System.Globalization.CultureInfo.InvariantCulture, out var mib) ? mib
            : m is not null && m.EndsWith('G') && long.TryParse(m[..^1], System.Globalization.CultureInfo.InvariantCulture, out var gib) ? gib << 10 : null;
        return (cpus, memory);
    }

    public async Task<IReadOnlyList<VmStatus>> ListAsync(CancellationToken cancel)
    {
        var vms = Path.Join(State.Path, "vms");
        if (!Directory.Exists(vms)) return [];
        var list = new List<VmStatus>();
        foreach (var dir in Directory.EnumerateDirectories(vms).Order(StringComparer.Ordinal))
            if (await StatusAsync(Path.GetFileName(dir), cancel) is { } status)
                list.Add(status);
        return list;
    }

    /// <summary>The VM's QEMU process, when the pid file names a live QEMU running this VM.</summary>
    public HostProcess? Running(string vm)
    {
        string text;
        try
        {
            text = File.ReadAllText(PathsOf(vm).PidFile).Trim();
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            return null;
        }
        if (!int.TryParse(text, CultureInfo.InvariantCulture, out var pid) || HostProcess.Find(pid) is not { } process)
            return null;
        // A stale pid file may name a reused pid: it must be QEMU with this VM's name.
        var argv = process.CommandLine;
        var named = argv.Any(a => a.StartsWith($"guest={vm},", StringComparison.Ordinal) || a == $"guest={vm}");
        return named && argv.Count > 0 && argv[0].Contains("qemu", StringComparison.Ordinal) ? process : null;
    }

    private QemuVmRecord? ReadRecord(string vm)
    {
        var file = RecordPath(vm);
        if (!File.Exists(file)) return null;
        SafePath.Check(file, "file");
        try
        {
            return JsonSerializer.Deserialize(File.ReadAllBytes(file), QemuRecordJson.Default.QemuVmRecord);
        }
        catch (JsonException e)
        {
            throw new VmNetException($"{file} is corrupt ({e.Message}); stop the VM's QEMU by hand if it runs, then remove the file", ExitCodes.Failure);
        }
    }

    private static string? PidFileArgument(IReadOnlyList<string> argv)
    {
        var i = argv.ToList().IndexOf("-pidfile");
        return i >= 0 && i + 1 < argv.Count ? argv[i + 1] : null;
    }

    private static async Task<bool> WaitForExit(HostProcess process, TimeSpan timeout, CancellationToken cancel)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (process.IsAlive)
        {
            if (DateTime.UtcNow >= deadline) return false;
            await Task.Delay(100, cancel);
        }
        return true;
    }

    private static void CleanRunFiles(VmPaths paths)
    {
        VmFiles.DeleteFile(paths.PidFile);
        VmFiles.DeleteFile(paths.QmpSocket);
        VmFiles.DeleteFile(paths.AgentSocket);
    }
}
