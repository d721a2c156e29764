using System.Buffers.Binary;
using System.Text;

namespace VmNet.Seed;

/// <summary>A file to put into an ISO image. <see cref="Name"/> is either "name" (root directory) or "dir/name".</summary>
public sealed record IsoFile(string Name, byte[] Content);

/// <summary>
/// Writes small ISO 9660 (ECMA-119) images with a Joliet supplementary volume descriptor, as used for cloud-init NoCloud seeds.
/// The primary tree carries upper-case 8.3 names (level 1); the Joliet tree carries the names as given (e.g. "user-data").
/// Supports the root directory plus one level of subdirectories ("vmnet/agent"). No Rock Ridge, no El Torito.
/// The output is a pure function of the arguments: all timestamps are <c>recordedAt</c> (default <see cref="DefaultRecordingTime"/>).
/// </summary>
public static class IsoImageWriter
{
    private const int BlockSize = 2048;              // ECMA-119 6.1.2: logical sector size; we use it as logical block size
    private const int FirstDescriptorLba = 16;       // ECMA-119 6.2.1: sectors 0-15 are the System Area
    private const int MaxNameLength = 64;            // Joliet limit for file identifiers, in UCS-2 characters

    /// <summary>Fixed timestamp used when the caller does not supply one, so images are reproducible.</summary>
    public static readonly DateTimeOffset DefaultRecordingTime = new(2000, 1, 1, 0, 0, 0, TimeSpan.Zero);

    /// <summary>Writes the image atomically: a 0600 (or <paramref name="mode"/>) temp file next to <paramref name="path"/>, fsync, rename.</summary>
    public static void WriteFile(string path, string volumeId, IReadOnlyList<IsoFile> files,
        UnixFileMode mode = UnixFileMode.UserRead | UnixFileMode.UserWrite, DateTimeOffset? recordedAt = null)
    {
        var full = Path.GetFullPath(path);
        var dir = Path.GetDirectoryName(full)!;
        var temp = Path.Combine(dir, $".{Path.GetFileName(full)}.{Guid.NewGuid():N}.tmp");
        var options = new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write, Share = FileShare.None };
        if (!OperatingSystem.IsWindows()) options.UnixCreateMode = mode;
        try
        {
            using (var stream = new FileStream(temp, options))
            {
                // The create mode is filtered by the umask; set it explicitly before any content is written.
                if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(stream.SafeFileHandle, mode);
                Write(stream, volumeId, files, recordedAt);
                stream.Flush(flushToDisk: true);
            }
            File.Move(temp, full, overwrite: true);
        }
        catch
        {
            File.Delete(temp);
            throw;
        }
    }

    /// <summary>Writes the image to <paramref name="output"/>.</summary>
    public static void Write(Stream output, string volumeId, IReadOnlyList<IsoFile> files, DateTimeOffset? recordedAt = null)
    {
        ArgumentNullException.ThrowIfNull(output);
        ArgumentNullException.ThrowIfNull(files);
        ValidateVolumeId(volumeId);
        var time = (recordedAt ?? DefaultRecordingTime).ToUniversalTime();
        if (time.Year is < 1900 or > 2155) throw new ArgumentOutOfRangeException(nameof(recordedAt), time, "Recording time must be in the years 1900-2155 (ECMA-119 9.1.5).");

        var root = BuildTree(files);
        var dirs = new List<Node> { root };
        dirs.AddRange(Ordered(root, joliet: true).Where(c => c.IsDirectory));   // sorted, so input order does not matter

        // Layout: descriptors (16: primary, 17: Joliet, 18: terminator), then L and M path tables for each tree,
        // then all directory extents, then file data (shared by both trees).
        uint lba = FirstDescriptorLba + 3;
        uint pSize = PathTableSize(dirs, joliet: false), jSize = PathTableSize(dirs, joliet: true);
        uint pBlocks = Blocks(pSize), jBlocks = Blocks(jSize);
        uint lTableP = lba, mTableP = lTableP + pBlocks, lTableJ = mTableP + pBlocks, mTableJ = lTableJ + jBlocks;
        lba = mTableJ + jBlocks;
        foreach (var d in dirs) { d.Size = DirectorySize(d, joliet: false); d.Lba = lba; lba += Blocks(d.Size); }
        foreach (var d in dirs) { d.JolietSize = DirectorySize(d, joliet: true); d.JolietLba = lba; lba += Blocks(d.JolietSize); }
        var dataStart = lba;
        var dataFiles = dirs.SelectMany(d => Ordered(d, joliet: true).Where(c => !c.IsDirectory)).ToList();
        foreach (var f in dataFiles)
        {
            f.Size = f.JolietSize = (uint)f.Content!.Length;
            f.Lba = f.JolietLba = f.Size == 0 ? 0 : lba;   // empty files own no blocks
            lba += Blocks(f.Size);
        }
        uint volumeBlocks = lba;

        var meta = new byte[(int)dataStart * BlockSize];   // system area, descriptors, path tables, directories
        WriteVolumeDescriptor(Block(meta, FirstDescriptorLba), joliet: false, volumeId, volumeBlocks, pSize, lTableP, mTableP, root, time);
        WriteVolumeDescriptor(Block(meta, FirstDescriptorLba + 1), joliet: true, volumeId, volumeBlocks, jSize, lTableJ, mTableJ, root, time);
        // ECMA-119 8.3: Volume Descriptor Set Terminator.
        var terminator = Block(meta, FirstDescriptorLba + 2);
        terminator[0] = 255;
        "CD001"u8.CopyTo(terminator[1..]);
        terminator[6] = 1;
        WritePathTables(meta, lTableP, mTableP, root, joliet: false);
        WritePathTables(meta, lTableJ, mTableJ, root, joliet: true);
        foreach (var d in dirs)
        {
            WriteDirectory(meta.AsSpan((int)d.Lba * BlockSize, (int)d.Size), d, joliet: false, time);
            WriteDirectory(meta.AsSpan((int)d.JolietLba * BlockSize, (int)d.JolietSize), d, joliet: true, time);
        }
        output.Write(meta);
        var padding = new byte[BlockSize];
        foreach (var f in dataFiles.Where(f => f.Size > 0))
        {
            output.Write(f.Content);
            output.Write(padding, 0, (int)(Blocks(f.Size) * BlockSize - f.Size));
        }
    }

    private sealed class Node
    {
        public Node(string name, byte[]? content, Node? parent) => (Name, Content, Parent) = (name, content, parent ?? this);

        public Node Parent { get; }                          // the root is its own parent (6.8.2.2)
        public string Name { get; }                          // Joliet name, as given
        public string PrimaryName { get; set; } = "";        // ISO 9660 name: "NAME.EXT" for files (";1" added on write), "NAME" for dirs
        public byte[]? Content { get; }                      // null for directories
        public List<Node> Children { get; } = [];
        public bool IsDirectory => Content is null;
        public uint Lba, Size, JolietLba, JolietSize;
    }

    private static Node BuildTree(IReadOnlyList<IsoFile> files)
    {
        var root = new Node("", null, null);
        foreach (var file in files)
        {
            ArgumentNullException.ThrowIfNull(file);
            ArgumentNullException.ThrowIfNull(file.Content, nameof(IsoFile.Content));
            var parts = file.Name?.Split('/') ?? throw new ArgumentException("File name must not be null.", nameof(files));
            if (parts.Length > 2) throw new ArgumentException($"File name '{file.Name}' is nested too deeply: at most one directory level ('dir/name') is supported.", nameof(files));
            foreach (var part in parts) ValidateName(part, file.Name);
            var parent = root;
            if (parts.Length == 2)
            {
                parent = root.Children.FirstOrDefault(c => c.Name == parts[0]);
                if (parent is null) root.Children.Add(parent = new Node(parts[0], null, root));
                else if (!parent.IsDirectory) throw new ArgumentException($"Duplicate name '{parts[0]}': used both as a file and as a directory.", nameof(files));
            }
            if (parent.Children.Any(c => c.Name == parts[^1])) throw new ArgumentException($"Duplicate file name '{file.Name}'.", nameof(files));
            parent.Children.Add(new Node(parts[^1], file.Content, parent));
        }
        AssignPrimaryNames(root);
        return root;
    }

    private static void ValidateName(string name, string fullName)
    {
        if (name.Length is 0 or > MaxNameLength || name is "." or ".." || !name.All(c => char.IsAsciiLetterOrDigit(c) || c is '.' or '_' or '-'))
            throw new ArgumentException($"Invalid file name '{fullName}': each path component must be 1-{MaxNameLength} characters of [A-Za-z0-9._-] and not '.' or '..'.", "files");
    }

    private static void ValidateVolumeId(string volumeId)
    {
        // ECMA-119 8.4.6 allows 32 d-characters; like genisoimage we record the id as given (lower case included),
        // which is what blkid reports as LABEL and what cloud-init looks for ("cidata").
        if (string.IsNullOrEmpty(volumeId) || volumeId.Length > 32 || !volumeId.All(c => char.IsAsciiLetterOrDigit(c) || c is '_' or '-'))
            throw new ArgumentException($"Invalid volume id '{volumeId}': must be 1-32 characters of [A-Za-z0-9_-].", nameof(volumeId));
    }

    /// <summary>ECMA-119 7.5.1 / 7.6.1: level-1 identifiers, 8 d-characters name + 3 d-characters extension; directories have no extension.</summary>
    private static void AssignPrimaryNames(Node dir)
    {
        var used = new HashSet<string>(StringComparer.Ordinal);
        foreach (var child in dir.Children.OrderBy(c => c.Name, StringComparer.Ordinal))
        {
            var upper = child.Name.ToUpperInvariant();
            var dot = child.IsDirectory ? -1 : upper.LastIndexOf('.');
            var stem = DCharacters(dot < 0 ? upper : upper[..dot]);
            var ext = dot < 0 ? "" : DCharacters(upper[(dot + 1)..]);
            ext = ext[..Math.Min(3, ext.Length)];
            for (var attempt = 0; ; attempt++)
            {
                var suffix = attempt == 0 ? "" : attempt.ToString(System.Globalization.CultureInfo.InvariantCulture);
                var name = stem[..Math.Min(stem.Length, 8 - suffix.Length)] + suffix;
                var candidate = child.IsDirectory ? name : $"{name}.{ext}";
                if (candidate is "." || !used.Add(candidate)) continue;  // a file name needs a stem or an extension (7.5.1)
                child.PrimaryName = candidate;
                break;
            }
            if (child.IsDirectory) AssignPrimaryNames(child);
        }
        static string DCharacters(string s) => string.Concat(s.Select(c => char.IsAsciiLetterUpper(c) || char.IsAsciiDigit(c) ? c : '_'));
    }

    /// <summary>Children in recorded order (ECMA-119 9.3: by identifier; name and extension compared separately, space-padded).</summary>
    private static IEnumerable<Node> Ordered(Node dir, bool joliet) => joliet
        ? dir.Children.OrderBy(c => c.Name, StringComparer.Ordinal)
        : dir.Children.OrderBy(c => c.PrimaryName.Split('.')[0], StringComparer.Ordinal).ThenBy(c => c.IsDirectory ? "" : c.PrimaryName.Split('.')[1], StringComparer.Ordinal);

    private static byte[] Identifier(Node node, bool joliet) => joliet
        ? Encoding.BigEndianUnicode.GetBytes(node.Name)                        // Joliet: UCS-2 BE, no ";1" (as genisoimage)
        : Encoding.ASCII.GetBytes(node.IsDirectory ? node.PrimaryName : node.PrimaryName + ";1");

    private static uint Blocks(uint bytes) => (bytes + BlockSize - 1) / BlockSize;
    private static Span<byte> Block(byte[] image, uint lba) => image.AsSpan((int)lba * BlockSize, BlockSize);
    private static int RecordLength(int idLength) => 33 + idLength + (idLength % 2 == 0 ? 1 : 0);   // 9.1.12: pad to even length

    /// <summary>ECMA-119 6.8.1.1: a directory record never spans a logical sector; the extent is whole sectors.</summary>
    private static uint DirectorySize(Node dir, bool joliet)
    {
        var lengths = new[] { RecordLength(1), RecordLength(1) }.Concat(Ordered(dir, joliet).Select(c => RecordLength(Identifier(c, joliet).Length)));
        int offset = 0;
        foreach (var length in lengths)
        {
            if (offset % BlockSize + length > BlockSize) offset += BlockSize - offset % BlockSize;
            offset += length;
        }
        return Blocks((uint)offset) * BlockSize;
    }

    private static void WriteDirectory(Span<byte> extent, Node dir, bool joliet, DateTimeOffset time)
    {
        int offset = 0;
        void Add(ReadOnlySpan<byte> id, uint lba, uint size, bool isDir, Span<byte> ext)
        {
            var length = RecordLength(id.Length);
            if (offset % BlockSize + length > BlockSize) offset += BlockSize - offset % BlockSize;
            WriteDirectoryRecord(ext.Slice(offset, length), id, lba, size, isDir, time);
            offset += length;
        }
        var (lba, size) = joliet ? (dir.JolietLba, dir.JolietSize) : (dir.Lba, dir.Size);
        Add([0], lba, size, true, extent);                                         // 6.8.2.2: "." record
        var up = dir.Parent;                                                       // ".." record; the root's parent is itself
        Add([1], joliet ? up.JolietLba : up.Lba, joliet ? up.JolietSize : up.Size, true, extent);
        foreach (var child in Ordered(dir, joliet))
            Add(Identifier(child, joliet), joliet ? child.JolietLba : child.Lba, joliet ? child.JolietSize : child.Size, child.IsDirectory, extent);
    }

    /// <summary>ECMA-119 9.1: Directory Record.</summary>
    private static void WriteDirectoryRecord(Span<byte> r, ReadOnlySpan<byte> id, uint lba, uint size, bool isDir, DateTimeOffset t)
    {
        r[0] = (byte)r.Length;                       // 9.1.1 length of directory record
        BothEndian32(r[2..], lba);                   // 9.1.3 location of extent
        BothEndian32(r[10..], size);                 // 9.1.4 data length
        r[18] = (byte)(t.Year - 1900);               // 9.1.5 recording date and time (UTC, offset 0)
        r[19] = (byte)t.Month; r[20] = (byte)t.Day; r[21] = (byte)t.Hour; r[22] = (byte)t.Minute; r[23] = (byte)t.Second;
        r[25] = isDir ? (byte)0x02 : (byte)0x00;     // 9.1.6 file flags: directory bit
        BothEndian16(r[28..], 1);                    // 9.1.9 volume sequence number
        r[32] = (byte)id.Length;                     // 9.1.10 length of file identifier
        id.CopyTo(r[33..]);                          // 9.1.11 file identifier
    }

    /// <summary>ECMA-119 9.4: 8 bytes + identifier, padded to even length; the root's identifier is one 0x00 byte.</summary>
    private static uint PathTableSize(List<Node> dirs, bool joliet) =>
        (uint)dirs.Sum(d => d == d.Parent ? 8 + 2 : 8 + Identifier(d, joliet).Length + Identifier(d, joliet).Length % 2);

    /// <summary>ECMA-119 9.4 / 6.9.1: type L (little-endian) and type M (big-endian) path tables, ordered by level, parent number, identifier.</summary>
    private static void WritePathTables(byte[] image, uint lTable, uint mTable, Node root, bool joliet)
    {
        var ordered = new List<Node> { root };
        ordered.AddRange(Ordered(root, joliet).Where(c => c.IsDirectory));   // level 2, parent is directory number 1
        int offset = 0;
        foreach (var d in ordered)
        {
            var id = d == root ? [0] : Identifier(d, joliet);
            var (lba, parent) = (joliet ? d.JolietLba : d.Lba, (ushort)1);
            Span<byte> l = image.AsSpan((int)lTable * BlockSize + offset), m = image.AsSpan((int)mTable * BlockSize + offset);
            l[0] = m[0] = (byte)id.Length;                                  // 9.4.1 length of directory identifier
            BinaryPrimitives.WriteUInt32LittleEndian(l[2..], lba);          // 9.4.3 location of extent
            BinaryPrimitives.WriteUInt32BigEndian(m[2..], lba);
            BinaryPrimitives.WriteUInt16LittleEndian(l[6..], parent);       // 9.4.4 parent directory number
            BinaryPrimitives.WriteUInt16BigEndian(m[6..], parent);
            id.CopyTo(l[8..]); id.CopyTo(m[8..]);                            // 9.4.5 directory identifier (+ 9.4.6 padding)
            offset += 8 + id.Length + id.Length % 2;
        }
    }

    /// <summary>ECMA-119 8.4 (Primary) and 8.5 (Supplementary, used for Joliet) Volume Descriptor.</summary>
    private static void WriteVolumeDescriptor(Span<byte> d, bool joliet, string volumeId, uint volumeBlocks, uint pathTableSize,
        uint lTable, uint mTable, Node root, DateTimeOffset time)
    {
        d[0] = joliet ? (byte)2 : (byte)1;                       // 8.4.1 / 8.5.1 volume descriptor type
        "CD001"u8.CopyTo(d[1..]);                                // 8.4.2 standard identifier
        d[6] = 1;                                                // 8.4.3 version
        Text(d.Slice(8, 32), "", joliet);                        // 8.4.5 system identifier
        Text(d.Slice(40, 32), volumeId, joliet);                 // 8.4.6 volume identifier (Joliet: first 16 characters)
        BothEndian32(d[80..], volumeBlocks);                     // 8.4.8 volume space size
        if (joliet) "%/E"u8.CopyTo(d[88..]);                     // 8.5.6 escape sequences: Joliet UCS-2 level 3
        BothEndian16(d[120..], 1);                               // 8.4.10 volume set size
        BothEndian16(d[124..], 1);                               // 8.4.11 volume sequence number
        BothEndian16(d[128..], BlockSize);                       // 8.4.12 logical block size
        BothEndian32(d[132..], pathTableSize);                   // 8.4.13 path table size
        BinaryPrimitives.WriteUInt32LittleEndian(d[140..], lTable);   // 8.4.14 location of type L path table
        BinaryPrimitives.WriteUInt32BigEndian(d[148..], mTable);      // 8.4.16 location of type M path table
        WriteDirectoryRecord(d.Slice(156, 34), [0],               // 8.4.18 directory record for root directory
            joliet ? root.JolietLba : root.Lba, joliet ? root.JolietSize : root.Size, true, time);
        Text(d.Slice(190, 128), "", joliet);                     // 8.4.19 volume set identifier
        Text(d.Slice(318, 128), "", joliet);                     // 8.4.20 publisher identifier
        Text(d.Slice(446, 128), "", joliet);                     // 8.4.21 data preparer identifier
        Text(d.Slice(574, 128), "VMNET", joliet);                // 8.4.22 application identifier
        Text(d.Slice(702, 37), "", joliet);                      // 8.4.23 copyright file identifier
        Text(d.Slice(739, 37), "", joliet);                      // 8.4.24 abstract file identifier
        Text(d.Slice(776, 37), "", joliet);                      // 8.4.25 bibliographic file identifier
        VolumeDate(d[813..], time);                              // 8.4.26 volume creation date and time
        VolumeDate(d[830..], time);                              // 8.4.27 volume modification date and time
        "0000000000000000"u8.CopyTo(d[847..]);                   // 8.4.28 expiration: not specified (8.4.26.1)
        "0000000000000000"u8.CopyTo(d[864..]);                   // 8.4.29 effective: not specified
        d[881] = 1;                                              // 8.4.30 file structure version
    }

    /// <summary>Space-padded text field: a-/d-characters in the primary descriptor, UCS-2 BE in the Joliet one.</summary>
    private static void Text(Span<byte> field, string value, bool joliet)
    {
        if (!joliet) { field.Fill((byte)' '); Encoding.ASCII.GetBytes(value.AsSpan(0, Math.Min(value.Length, field.Length)), field); return; }
        for (var i = 0; i + 1 < field.Length; i += 2) { field[i] = 0; field[i + 1] = (byte)' '; }
        var chars = value.AsSpan(0, Math.Min(value.Length, field.Length / 2));
        Encoding.BigEndianUnicode.GetBytes(chars, field);
    }

    /// <summary>ECMA-119 8.4.26.1: "YYYYMMDDHHMMSScc" digits plus a GMT offset byte (0, as times are UTC).</summary>
    private static void VolumeDate(Span<byte> field, DateTimeOffset t) =>
        Encoding.ASCII.GetBytes(t.ToString("yyyyMMddHHmmss00", System.Globalization.CultureInfo.InvariantCulture), field);

    private static void BothEndian16(Span<byte> field, ushort value)   // ECMA-119 7.2.3
    {
        BinaryPrimitives.WriteUInt16LittleEndian(field, value);
        BinaryPrimitives.WriteUInt16BigEndian(field[2..], value);
    }

    private static void BothEndian32(Span<byte> field, uint value)     // ECMA-119 7.3.3
    {
        BinaryPrimitives.WriteUInt32LittleEndian(field, value);
        BinaryPrimitives.WriteUInt32BigEndian(field[4..], value);
    }
}
