using System.Globalization;
using System.Runtime.InteropServices;
using System.Text.Json;
using VmNet.Host;

namespace VmNet.Backends;

/// <summary>
/// The CPUs a QEMU process's threads may run on, as <c>backend: qemu</c> pins them (libvirt does the same from
/// &lt;cputune&gt;): vCPU N on <see cref="VcpuCpus"/>[N] when dedicated, else on <see cref="Shared"/>; every other thread
/// (the main loop, I/O, RCU, workers) on <see cref="Emulator"/>.
/// </summary>
public sealed record QemuPinning(IReadOnlyList<int> VcpuCpus, IReadOnlyList<int> Shared, IReadOnlyList<int> Emulator)
{
    public static QemuPinning? Of(Planning.Placement p) =>
        p.Dedicated ? new QemuPinning(p.VcpuCpus, [], [p.EmulatorCpu!.Value])
        : p.SharedCpus.Count > 0 ? new QemuPinning([], p.SharedCpus, p.SharedCpus)
        : null;

    public IReadOnlyList<int> ForVcpu(int index) => VcpuCpus.Count > 0 ? [VcpuCpus[index]] : Shared;
}

/// <summary>
/// Pins a paused QEMU's threads (started with <c>-S</c>): the vCPU threads by QMP's <c>query-cpus-fast</c> thread
/// ids, every other thread of <c>/proc/PID/task</c> to the emulator's CPUs, each with <c>sched_setaffinity</c>; then
/// the guest runs (<c>cont</c>), so no vCPU ever ran elsewhere. Threads QEMU makes later inherit the main thread's.
/// </summary>
public static partial class ThreadPinner
{
    [LibraryImport("libc", SetLastError = true)]
    private static unsafe partial int sched_setaffinity(int pid, nuint cpusetsize, byte* mask);

    public static async Task PinAndContinueAsync(QmpClient qmp, int pid, QemuPinning pinning, CancellationToken ct)
    {
        var vcpus = new Dictionary<int, int>(); // thread id -> vCPU index
        foreach (var cpu in (await qmp.ExecuteAsync("query-cpus-fast", ct).ConfigureAwait(false)).EnumerateArray())
            vcpus[cpu.GetProperty("thread-id").GetInt32()] = cpu.GetProperty("cpu-index").GetInt32();
        if (vcpus.Count == 0) throw new QmpException($"QEMU (pid {pid}) named no vCPU thread in query-cpus-fast");
        var threads = Threads(pid);
        foreach (var tid in vcpus.Keys.Where(t => !threads.Contains(t)))
            throw new VmNetException($"QEMU's vCPU thread {tid} is not a thread of pid {pid} (/proc/{pid}/task); cannot pin it", ExitCodes.Failure);
        foreach (var tid in threads)
            Set(tid, vcpus.TryGetValue(tid, out var index) ? pinning.ForVcpu(index) : pinning.Emulator, mayBeGone: !vcpus.ContainsKey(tid));
        await qmp.ExecuteAsync("cont", ct).ConfigureAwait(false);
    }

    /// <summary>The thread ids of <paramref name="pid"/>.</summary>
    public static IReadOnlyList<int> Threads(int pid) =>
        [.. Directory.EnumerateDirectories($"/proc/{pid.ToString(CultureInfo.InvariantCulture)}/task")
            .Select(d => int.Parse(Path.GetFileName(d), CultureInfo.InvariantCulture)).Order()];

    /// <summary>The CPUs a thread may run on, from <c>/proc/PID/task/TID/status</c> (Cpus_allowed_list).</summary>
    public static IReadOnlyList<int>? Allowed(int pid, int tid)
    {
        try
        {
            var line = File.ReadLines($"/proc/{pid}/task/{tid}/status").FirstOrDefault(l => l.StartsWith("Cpus_allowed_list:", StringComparison.Ordinal));
            return line is null ? null : CpuList.Parse(line["Cpus_allowed_list:".Length..].Trim());
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    private const int Esrch = 3;

    /// <param name="mayBeGone">A worker thread may exit between the listing and the call (ESRCH): nothing to pin then.</param>
    private static unsafe void Set(int tid, IReadOnlyList<int> cpus, bool mayBeGone)
    {
        var bytes = new byte[(cpus.Max() / 64 + 1) * 8];
        foreach (var c in cpus) bytes[c / 8] |= (byte)(1 << (c % 8));
        fixed (byte* mask = bytes)
        {
            if (sched_setaffinity(tid, (nuint)bytes.Length, mask) != 0)
            {
                var errno = Marshal.GetLastPInvokeError();
                if (errno == Esrch && mayBeGone) return;
                throw new VmNetException($"cannot pin QEMU thread {tid} to CPUs {CpuList.Format(cpus)}: {Marshal.GetPInvokeErrorMessage(errno)} (errno {errno}); "
                    + "are those CPUs online and in vmnet's cpuset?", ExitCodes.Failure);
            }
        }
    }
}
