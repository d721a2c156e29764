using System.Globalization;

namespace VmNet.Host;

/// <summary>A process seen through <c>/proc</c>: its pid plus its start time, so a reused pid is never mistaken for it.</summary>
public readonly record struct HostProcess(int Pid, ulong StartTicks)
{
    /// <summary>The live (not zombie) process <paramref name="pid"/>, or null.</summary>
    public static HostProcess? Find(int pid)
    {
        if (pid <= 0) return null;
        string stat;
        try
        {
            stat = File.ReadAllText(Sysfs.ProcStat(pid));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
        // "pid (comm) S ppid ...": comm may hold spaces and parentheses, so split after the last ')'. Field 3 is the
        // state, field 22 the start time in clock ticks after boot (proc(5)).
        var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
        if (fields.Length < 20 || fields[0] is "Z" or "X") return null;
        return ulong.TryParse(fields[19], NumberStyles.None, CultureInfo.InvariantCulture, out var ticks) ? new HostProcess(pid, ticks) : null;
    }

    /// <summary>Whether this very process still runs.</summary>
    public bool IsAlive => Find(Pid) is { } now && now.StartTicks == StartTicks;

    /// <summary>The process's argv, or empty when it is gone.</summary>
    public IReadOnlyList<string> CommandLine
    {
        get
        {
            try
            {
                return File.ReadAllText(Sysfs.ProcCmdlineOf(Pid)).Split('\0', StringSplitOptions.RemoveEmptyEntries);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                return [];
            }
        }
    }

    /// <summary>"PID:STARTTICKS", the form <see cref="TryParse"/> reads.</summary>
    public override string ToString() => $"{Pid.ToString(CultureInfo.InvariantCulture)}:{StartTicks.ToString(CultureInfo.InvariantCulture)}";

    public static bool TryParse(string text, out HostProcess process)
    {
        process = default;
        var parts = text.Split(':');
        if (parts.Length != 2 || !int.TryParse(parts[0], CultureInfo.InvariantCulture, out var pid)
            || !ulong.TryParse(parts[1], CultureInfo.InvariantCulture, out var ticks)) return false;
        process = new HostProcess(pid, ticks);
        return true;
    }
}
