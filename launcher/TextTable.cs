namespace VmNet;

/// <summary>Columns padded to their widest cell, indented two spaces: the tables of plan, status and host output.</summary>
internal static class TextTable
{
    public static void Print(TextWriter o, IReadOnlyList<string> header, IReadOnlyList<string[]> rows)
    {
        var widths = header.Select((h, i) => Math.Max(h.Length, rows.Count == 0 ? 0 : rows.Max(r => r[i].Length))).ToArray();
        void Line(IEnumerable<string> cells) => o.WriteLine(("  " + string.Join("  ", cells.Select((c, i) => c.PadRight(widths[i])))).TrimEnd());
        Line(header);
        foreach (var row in rows) Line(row);
    }
}
