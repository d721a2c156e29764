using System.Buffers.Binary;
using System.Text;

namespace VmNet.GuestAgent.Config;

/// <summary>
/// Reads one file from the NoCloud seed (an ISO 9660 volume labelled <c>cidata</c>) straight from the block device,
/// without mounting it: the agent needs no isofs module, no mount point and no root file system that can be written.
/// It follows the Joliet tree (names as written, e.g. <c>vmnet/agent.json</c>) and falls back to the primary tree
/// (upper-case names, <c>;1</c> versions) for images without Joliet.
/// </summary>
public static class SeedVolume
{
    public const string Label = "cidata";
    private const int Sector = 2048;

    /// <summary>The largest file or directory read (the agent's config is a few KiB): a larger size, or one whose
    /// sector count would overflow, is no seed's.</summary>
    public const uint MaxSize = 1 << 20;

    /// <summary>Block devices that may hold the seed: CD-ROMs first (QEMU attaches it as one), then virtio disks.</summary>
    public static IEnumerable<string> Candidates(string root)
    {
        var block = Path.Join(root, "sys/class/block");
        if (!Directory.Exists(block)) yield break;
        var names = Directory.GetFileSystemEntries(block).Select(Path.GetFileName).OfType<string>().ToList();
        foreach (var n in names.Where(n => n.StartsWith("sr", StringComparison.Ordinal)).Order(StringComparer.Ordinal)) yield return Path.Join(root, "dev", n);
        foreach (var n in names.Where(n => n.StartsWith("vd", StringComparison.Ordinal) && !n.Any(char.IsDigit)).Order(StringComparer.Ordinal)) yield return Path.Join(root, "dev", n);
    }

    /// <summary>The file at <paramref name="path"/> (e.g. "vmnet/agent.json") of the first cidata volume among the candidates.</summary>
    public static (string Content, string Source)? Find(string root, string path)
    {
        foreach (var device in Candidates(root))
        {
            try
            {
                using var stream = new FileStream(device, FileMode.Open, FileAccess.Read, FileShare.ReadWrite, 1, FileOptions.None);
                if (Read(stream, path) is { } content) return (content, $"{device} ({Label}):{path}");
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException) { } // empty drive, no permission
            catch (Exception e) when (e is ArgumentException or NotSupportedException or InvalidOperationException)
            {
                // A device whose bytes are no seed's (Read refuses what it recognises as such; this is the net under it):
                // the agent goes on with the next candidate rather than leave the guest without a network.
            }
        }
        return null;
    }

    /// <summary>The file at <paramref name="path"/> of an ISO 9660 volume labelled cidata, or null (not ISO 9660, another label, no such file).</summary>
    public static string? Read(Stream iso, string path)
    {
        byte[]? primary = null, joliet = null;
        for (var lba = 16; lba < 32; lba++)
        {
            var d = Block(iso, lba, 1);
            if (d is null || !d.AsSpan(1, 5).SequenceEqual("CD001"u8)) return null;
            if (d[0] == 255) break;
            if (d[0] == 1) primary = d;
            // Joliet: a supplementary descriptor whose escape sequence names UCS-2 level 1, 2 or 3 (%/@, %/C, %/E).
            if (d[0] == 2 && d[88] == '%' && d[89] == '/' && d[90] is (byte)'@' or (byte)'C' or (byte)'E') joliet = d;
        }
        if (primary is null) return null;
        var label = Encoding.ASCII.GetString(primary, 40, 32).Trim();
        if (!label.Equals(Label, StringComparison.OrdinalIgnoreCase)) return null;
        var useJoliet = joliet is not null;
        var (extent, size) = Extent((joliet ?? primary).AsSpan(156));
        var parts = path.Split('/', StringSplitOptions.RemoveEmptyEntries);
        for (var i = 0; i < parts.Length; i++)
        {
            var entry = Lookup(iso, extent, size, parts[i], useJoliet, last: i == parts.Length - 1);
            if (entry is null) return null;
            (extent, size) = entry.Value;
        }
        if (size > MaxSize) return null;
        var data = Block(iso, extent, Sectors(size));
        return data is null ? null : Encoding.UTF8.GetString(data, 0, (int)size);
    }

    private static (uint Extent, uint Size) Extent(ReadOnlySpan<byte> record) =>
        (BinaryPrimitives.ReadUInt32LittleEndian(record[2..]), BinaryPrimitives.ReadUInt32LittleEndian(record[10..]));

    private static (uint, uint)? Lookup(Stream iso, uint extent, uint size, string name, bool joliet, bool last)
    {
        if (size > MaxSize) return null; // a seed's directories are tiny; refuse what is not one
        var dir = Block(iso, extent, Sectors(size));
        if (dir is null) return null;
        for (var offset = 0; offset < size;)
        {
            var length = dir[offset];
            if (length == 0) { offset = (offset / Sector + 1) * Sector; continue; } // records never span sectors
            if (offset + length > dir.Length || length < 34) return null;
            var record = dir.AsSpan(offset, length);
            var isDir = (record[25] & 2) != 0;
            var id = record.Slice(33, Math.Min(record[32], length - 33));
            var text = joliet ? Encoding.BigEndianUnicode.GetString(id) : Encoding.ASCII.GetString(id);
            if (!joliet) text = text.Split(';')[0].TrimEnd('.');
            if (isDir != !last) { offset += length; continue; }
            if (joliet ? text == name : text.Equals(name, StringComparison.OrdinalIgnoreCase)) return Extent(record);
            offset += length;
        }
        return null;
    }

    /// <summary>Sectors holding <paramref name="size"/> bytes (at most <see cref="MaxSize"/>: no overflow).</summary>
    private static int Sectors(uint size) => (int)((size + (long)Sector - 1) / Sector);

    private static byte[]? Block(Stream iso, long lba, int count)
    {
        var buffer = new byte[count * Sector];
        try
        {
            iso.Seek(lba * Sector, SeekOrigin.Begin);
            iso.ReadExactly(buffer);
            return buffer;
        }
        // Past the end of the device (a block device reads short; a stream of known length refuses the seek).
        catch (Exception e) when (e is EndOfStreamException or IOException or ArgumentOutOfRangeException) { return null; }
    }
}
