using System.Globalization;
using System.Text.RegularExpressions;

namespace VmNet.Tests.Support;

/// <summary>
/// Reads strace's full dumps of the data a process sent or received (<c>-e write=FD</c>, <c>-e read=FD</c>): the
/// lines <c> | 00000  48 00 00 00 ...  H... |</c> after each system call's line.
/// </summary>
public static partial class StraceDump
{
    /// <summary>The bytes dumped after the last system call line that starts with <paramref name="call"/> and contains <paramref name="marker"/>.</summary>
    public static byte[] Last(IReadOnlyList<string> lines, string call, string marker)
    {
        var at = -1;
        for (var i = lines.Count - 1; i >= 0 && at < 0; i--)
            if (lines[i].StartsWith(call + "(", StringComparison.Ordinal) && lines[i].Contains(marker, StringComparison.Ordinal)) at = i;
        Assert.True(at >= 0, $"strace shows no {call} with {marker}:\n" + string.Join('\n', lines));
        var bytes = new List<byte>();
        foreach (var line in lines.Skip(at + 1).TakeWhile(l => l.StartsWith(" |", StringComparison.Ordinal) || l.StartsWith(" *", StringComparison.Ordinal)))
            if (DumpLine().Match(line) is { Success: true } m)
                bytes.AddRange(m.Groups[1].Value.Split(' ', StringSplitOptions.RemoveEmptyEntries)
                    .Select(h => byte.Parse(h, NumberStyles.HexNumber, CultureInfo.InvariantCulture)));
        return [.. bytes];
    }

    // " | 00000  48 00 00 00 10 00 05 00  e5 8c 0f 6b 00 00 00 00  H..........k.... |"
    [GeneratedRegex(@"^ \| [0-9a-f]{5}  ((?:[0-9a-f]{2} {1,2}){1,16})")]
    private static partial Regex DumpLine();
}
