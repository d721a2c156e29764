using System.Globalization;
using System.Text;

namespace VmNet.Host;

/// <summary>
/// The kernel's CPU list format (Documentation/admin-guide/kernel-parameters.rst, "cpu lists"), as sysfs writes it
/// (<c>cpulist</c>, <c>online</c>) and the command line takes it (<c>isolcpus=</c>, <c>nohz_full=</c>): comma-separated
/// CPUs and ranges, a range optionally strided as <c>first-last:used/group</c> ("0-15:2/4" is 0,1,4,5,8,9,12,13).
/// </summary>
public static class CpuList
{
    /// <summary>The most CPUs a list may name (the kernel's NR_CPUS ceiling), so a hostile file cannot make us allocate.</summary>
    public const int MaxCpu = 8191;

    /// <summary>The CPUs of <paramref name="text"/>, sorted and distinct; null when it is not a CPU list. Empty text is no CPU.</summary>
    public static IReadOnlyList<int>? Parse(string? text)
    {
        if (text is null) return null;
        var set = new SortedSet<int>();
        var trimmed = text.Trim();
        if (trimmed.Length == 0) return [];
        foreach (var part in trimmed.Split(','))
        {
            var (range, stride) = part.IndexOf(':') is var c and >= 0 ? (part[..c], part[(c + 1)..]) : (part, null);
            int first, last;
            if (range.IndexOf('-') is var d and > 0)
            {
                if (!Num(range[..d], out first) || !Num(range[(d + 1)..], out last) || last < first) return null;
            }
            else if (Num(range, out first)) last = first;
            else return null;
            int used = 1, group = 1;
            if (stride is not null)
            {
                var slash = stride.IndexOf('/');
                if (slash <= 0 || !Num(stride[..slash], out used) || !Num(stride[(slash + 1)..], out group) || used == 0 || group == 0 || used > group) return null;
            }
            for (var cpu = first; cpu <= last; cpu++)
                if ((cpu - first) % group < used) set.Add(cpu);
        }
        return set.ToList();
    }

    private static bool Num(string s, out int n) =>
        int.TryParse(s, NumberStyles.None, CultureInfo.InvariantCulture, out n) && n <= MaxCpu;

    /// <summary>The shortest list the kernel would print for <paramref name="cpus"/> ("0-3,8,10-11").</summary>
    public static string Format(IEnumerable<int> cpus)
    {
        var sorted = cpus.Distinct().Order().ToList();
        var sb = new StringBuilder();
        for (var i = 0; i < sorted.Count;)
        {
            var j = i;
            while (j + 1 < sorted.Count && sorted[j + 1] == sorted[j] + 1) j++;
            if (sb.Length > 0) sb.Append(',');
            sb.Append(sorted[i].ToString(CultureInfo.InvariantCulture));
            if (j > i) sb.Append('-').Append(sorted[j].ToString(CultureInfo.InvariantCulture));
            i = j + 1;
        }
        return sb.ToString();
    }

    /// <summary>
    /// The CPUs a boot parameter isolates (<c>isolcpus=[flag,...,]LIST</c>, <c>nohz_full=LIST</c>) in
    /// <paramref name="cmdline"/>; the last occurrence wins, as with the kernel's early parameters. Empty when absent.
    /// </summary>
    public static IReadOnlyList<int> FromCmdline(string? cmdline, string parameter)
    {
        IReadOnlyList<int> result = [];
        foreach (var word in (cmdline ?? "").Split(' ', '\n', '\t'))
        {
            if (word == "--") break; // what follows is init's, not the kernel's
            if (!word.StartsWith(parameter + "=", StringComparison.Ordinal)) continue;
            var value = word[(parameter.Length + 1)..];
            // isolcpus's flags (nohz, domain, managed_irq) come before the list; the list starts at the first digit.
            var start = 0;
            foreach (var piece in value.Split(','))
            {
                if (piece.Length > 0 && char.IsAsciiDigit(piece[0])) break;
                start += piece.Length + 1;
            }
            result = start >= value.Length ? [] : Parse(value[start..]) ?? [];
        }
        return result;
    }
}
