using System.Buffers.Binary;
using System.Runtime.Versioning;
using System.Text;
using CliWrap;
using VmNet.Seed;
using VmNet.Tests.Support;

namespace VmNet.Tests.Seed;

[SupportedOSPlatform("linux")]
public sealed class IsoImageWriterTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("vmnet-iso-").FullName;

    private static readonly IsoFile[] SeedFiles =
    [
        new("user-data", Encoding.UTF8.GetBytes(UserData())),
        new("meta-data", "instance-id: vmnet-test-01\nlocal-hostname: vm01\n"u8.ToArray()),
        new("network-config", Encoding.UTF8.GetBytes(
            "version: 2\nethernets:\n  eth0:\n    match:\n      macaddress: \"52:54:00:12:34:56\"\n    addresses: [10.0.0.2/24]\n    routes:\n      - to: default\n        via: 10.0.0.1\n")),
        new("vendor-data", []),
        new("vmnet/agent.json", "{\"port\": 7070}\n"u8.ToArray()),
    ];

    // > 2048 bytes, so it spans several logical blocks.
    private static string UserData()
    {
        var sb = new StringBuilder("#cloud-config\nusers:\n  - name: vmnet\n    ssh_authorized_keys:\n");
        for (var i = 0; i < 26; i++)
            sb.Append($"      - ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI{new string((char)('A' + i), 43)} key{i}@vmnet\n");
        sb.Append("write_files:\n  - path: /etc/vmnet/ready\n    content: |\n      ready\n");
        return sb.ToString();
    }

    public void Dispose()
    {
        // xorriso may extract read-only directories; make everything writable before deleting.
        foreach (var entry in Directory.EnumerateFileSystemEntries(_dir, "*", SearchOption.AllDirectories).Prepend(_dir))
            File.SetUnixFileMode(entry, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        Directory.Delete(_dir, recursive: true);
    }

    private string WriteSeed(string name = "seed.iso")
    {
        var path = Path.Combine(_dir, name);
        IsoImageWriter.WriteFile(path, "cidata", SeedFiles);
        return path;
    }

    [Fact]
    public void The_seed_files_are_larger_than_a_block_and_empty_where_the_specs_need_it()
    {
        Assert.Contains(SeedFiles, f => f.Content.Length > 2048);
        Assert.Contains(SeedFiles, f => f.Content.Length == 0);
    }

    [Fact]
    public async Task The_files_read_back_with_xorriso_equal_the_ones_written()
    {
        var image = WriteSeed();
        var target = Path.Combine(_dir, "extracted");
        var result = await RequiredTool.Run("xorriso", ["-osirrox", "on", "-indev", image, "-extract", "/", target]);
        Assert.True(result.ExitCode == 0, result.StandardError);

        var extracted = Directory.EnumerateFiles(target, "*", SearchOption.AllDirectories)
            .Select(f => Path.GetRelativePath(target, f).Replace('\\', '/')).Order(StringComparer.Ordinal);
        Assert.Equal(SeedFiles.Select(f => f.Name).Order(StringComparer.Ordinal), extracted);
        foreach (var file in SeedFiles)
            Assert.Equal(file.Content, File.ReadAllBytes(Path.Combine(target, file.Name)));
    }

    [Theory]
    [InlineData("-J", "/user-data", "user-data")]
    [InlineData("-J", "/vmnet/agent.json", "vmnet/agent.json")]
    [InlineData("-J", "/vendor-data", "vendor-data")]
    [InlineData(null, "/USER_DAT.;1", "user-data")]
    [InlineData(null, "/NETWORK_.;1", "network-config")]
    [InlineData(null, "/VMNET/AGENT.JSO;1", "vmnet/agent.json")]
    public async Task The_files_read_back_with_isoinfo_equal_the_ones_written(string? joliet, string isoPath, string name)
    {
        var image = WriteSeed();
        var isoinfo = RequiredTool.Path("isoinfo");
        using var stdout = new MemoryStream();
        var stderr = new StringBuilder();
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        await CliWrap.Cli.Wrap(isoinfo)
            .WithArguments(joliet is null ? ["-i", image, "-x", isoPath] : [joliet, "-i", image, "-x", isoPath])
            .WithStandardOutputPipe(PipeTarget.ToStream(stdout))
            .WithStandardErrorPipe(PipeTarget.ToStringBuilder(stderr))
            .ExecuteAsync(cts.Token);
        Assert.Equal(SeedFiles.Single(f => f.Name == name).Content, stdout.ToArray());
    }

    [Fact]
    public async Task Isoinfo_reports_the_volume_id_cidata_and_joliet()
    {
        var image = WriteSeed();
        var result = await RequiredTool.Run("isoinfo", ["-d", "-i", image]);
        Assert.True(result.ExitCode == 0, result.StandardError);
        Assert.Contains("Volume id: cidata\n", result.StandardOutput);
        Assert.Contains("Logical block size is: 2048", result.StandardOutput);
        Assert.Contains("Joliet with UCS level 3 found", result.StandardOutput);
        Assert.Equal(new FileInfo(image).Length / 2048, long.Parse(result.StandardOutput.Split('\n').Single(l => l.StartsWith("Volume size is: ", StringComparison.Ordinal))["Volume size is: ".Length..], System.Globalization.CultureInfo.InvariantCulture));

        var listing = await RequiredTool.Run("isoinfo", ["-l", "-i", image]);
        Assert.Contains("USER_DAT.;1", listing.StandardOutput);
        Assert.Contains("META_DAT.;1", listing.StandardOutput);
        Assert.Contains("NETWORK_.;1", listing.StandardOutput);
    }

    [Fact]
    public void Both_endian_fields_path_tables_and_directory_records_agree()
    {
        // The external readers each use one byte order and mostly ignore path tables; this checks the rest.
        using var stream = new MemoryStream();
        IsoImageWriter.Write(stream, "cidata", SeedFiles);
        AssertStructurallyConsistent(stream.ToArray());
    }

    private static void AssertStructurallyConsistent(byte[] image)
    {
        uint Both32(int at) { Assert.Equal(BinaryPrimitives.ReadUInt32LittleEndian(image.AsSpan(at)), BinaryPrimitives.ReadUInt32BigEndian(image.AsSpan(at + 4))); return BinaryPrimitives.ReadUInt32LittleEndian(image.AsSpan(at)); }
        ushort Both16(int at) { Assert.Equal(BinaryPrimitives.ReadUInt16LittleEndian(image.AsSpan(at)), BinaryPrimitives.ReadUInt16BigEndian(image.AsSpan(at + 2))); return BinaryPrimitives.ReadUInt16LittleEndian(image.AsSpan(at)); }

        Assert.Equal(0, image.Length % 2048);
        Assert.Equal([(byte)1, (byte)2, (byte)255], new[] { image[16 * 2048], image[17 * 2048], image[18 * 2048] });
        foreach (var vd in new[] { 16 * 2048, 17 * 2048 })
        {
            Assert.Equal((uint)(image.Length / 2048), Both32(vd + 80));   // volume space size
            Assert.Equal(1, Both16(vd + 120));
            Assert.Equal(1, Both16(vd + 124));
            Assert.Equal(2048, Both16(vd + 128));
            var tableSize = (int)Both32(vd + 132);
            int lTable = (int)BinaryPrimitives.ReadUInt32LittleEndian(image.AsSpan(vd + 140)) * 2048, mTable = (int)BinaryPrimitives.ReadUInt32BigEndian(image.AsSpan(vd + 148)) * 2048;
            // The root directory record in the descriptor equals the root's own "." record.
            Assert.Equal(image.AsSpan(vd + 156, 34).ToArray(), image.AsSpan((int)Both32(vd + 156 + 2) * 2048, 34).ToArray());

            var directories = new List<uint>();
            for (var at = 0; at < tableSize;)
            {
                int len = image[lTable + at];
                Assert.Equal(len, image[mTable + at]);
                var lba = BinaryPrimitives.ReadUInt32LittleEndian(image.AsSpan(lTable + at + 2));
                Assert.Equal(lba, BinaryPrimitives.ReadUInt32BigEndian(image.AsSpan(mTable + at + 2)));
                Assert.Equal(BinaryPrimitives.ReadUInt16LittleEndian(image.AsSpan(lTable + at + 6)), BinaryPrimitives.ReadUInt16BigEndian(image.AsSpan(mTable + at + 6)));
                Assert.Equal(image.AsSpan(lTable + at + 8, len).ToArray(), image.AsSpan(mTable + at + 8, len).ToArray());
                directories.Add(lba);
                at += 8 + len + len % 2;
            }
            foreach (var lba in directories)
            {
                var start = (int)lba * 2048;
                Assert.Equal(lba, Both32(start + 2));                      // "." points at its own extent
                var size = (int)Both32(start + 10);
                for (var at = start; at < start + size;)
                {
                    if (image[at] == 0) { at = (at / 2048 + 1) * 2048; continue; }   // rest of the sector is padding
                    Assert.True(at % 2048 + image[at] <= 2048, "directory record crosses a sector boundary");
                    var extent = Both32(at + 2);
                    var length = Both32(at + 10);
                    Both16(at + 28);
                    var isDotOrDotDot = image[at + 32] == 1 && image[at + 33] <= 1;
                    if ((image[at + 25] & 2) != 0 && !isDotOrDotDot) Assert.Contains(extent, directories);   // subdirectories are in the path table
                    Assert.True(extent * 2048L + length <= image.Length, "extent beyond the volume");
                    at += image[at];
                }
            }
        }
    }

    [Fact]
    public async Task Blkid_reports_the_label_cidata_and_type_iso9660()
    {
        var image = WriteSeed();
        var label = await RequiredTool.Run("blkid", ["-c", "/dev/null", "-o", "value", "-s", "LABEL", image]);
        Assert.True(label.ExitCode == 0, label.StandardError);
        Assert.Equal("cidata", label.StandardOutput.Trim());
        var type = await RequiredTool.Run("blkid", ["-c", "/dev/null", "-o", "value", "-s", "TYPE", image]);
        Assert.Equal("iso9660", type.StandardOutput.Trim());
    }

    [Fact]
    public void The_same_input_gives_the_same_bytes()
    {
        byte[] Image(IEnumerable<IsoFile> files)
        {
            using var stream = new MemoryStream();
            IsoImageWriter.Write(stream, "cidata", files.ToList());
            return stream.ToArray();
        }
        var first = Image(SeedFiles);
        Assert.Equal(first, Image(SeedFiles));
        Assert.Equal(first, Image(SeedFiles.Reverse()));
        Assert.Equal(first, File.ReadAllBytes(WriteSeed()));
        Assert.Equal(0, first.Length % 2048);
    }

    [Fact]
    public void The_recording_time_is_a_parameter()
    {
        using var a = new MemoryStream();
        using var b = new MemoryStream();
        IsoImageWriter.Write(a, "cidata", SeedFiles);
        IsoImageWriter.Write(b, "cidata", SeedFiles, new DateTimeOffset(2024, 5, 6, 7, 8, 9, TimeSpan.Zero));
        Assert.NotEqual(a.ToArray(), b.ToArray());
        Assert.Equal("2024050607080900"u8.ToArray(), b.ToArray().AsSpan(16 * 2048 + 813, 16).ToArray());   // PVD creation date (8.4.26)
        Assert.Equal("2000010100000000"u8.ToArray(), a.ToArray().AsSpan(16 * 2048 + 813, 16).ToArray());
    }

    [Fact]
    public void The_written_image_is_readable_only_by_its_owner_and_replaces_the_old_one_atomically()
    {
        var path = Path.Combine(_dir, "seed.iso");
        File.WriteAllText(path, "old");
        File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.OtherRead);
        WriteSeed();
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(path));
        Assert.Equal(["seed.iso"], Directory.GetFileSystemEntries(_dir).Select(Path.GetFileName));
        Assert.Equal(0, new FileInfo(path).Length % 2048);
    }

    [Theory]
    [InlineData("user data")]
    [InlineData("user-data!")]
    [InlineData("ünicode")]
    [InlineData("..")]
    [InlineData(".")]
    [InlineData("a/b/c")]
    [InlineData("/user-data")]
    [InlineData("dir/")]
    [InlineData("")]
    [InlineData("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")] // 65 characters
    public void Invalid_file_names_are_refused_with_a_message_naming_them(string name)
    {
        var ex = Assert.Throws<ArgumentException>(() => IsoImageWriter.Write(Stream.Null, "cidata", [new IsoFile(name, [])]));
        Assert.Contains($"'{name}'", ex.Message);
        Assert.Equal("files", ex.ParamName);
    }

    [Theory]
    [InlineData("user-data", "user-data", "'user-data'")]
    [InlineData("vmnet/agent", "vmnet/agent", "'vmnet/agent'")]
    [InlineData("vmnet", "vmnet/agent", "'vmnet'")]
    [InlineData("vmnet/agent", "vmnet", "'vmnet'")]
    public void Duplicate_names_are_refused_with_a_message_naming_them(string first, string second, string named)
    {
        var ex = Assert.Throws<ArgumentException>(() => IsoImageWriter.Write(Stream.Null, "cidata", [new IsoFile(first, [1]), new IsoFile(second, [2])]));
        Assert.Contains("Duplicate", ex.Message);
        Assert.Contains(named, ex.Message);
        Assert.Equal("files", ex.ParamName);
    }

    [Theory]
    [InlineData("")]
    [InlineData("ci data")]
    [InlineData("ci.data")]
    [InlineData("cidata/")]
    [InlineData("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")] // 33 characters
    public void Invalid_volume_ids_are_refused_with_a_message_naming_them(string volumeId)
    {
        var ex = Assert.Throws<ArgumentException>(() => IsoImageWriter.Write(Stream.Null, volumeId, SeedFiles));
        Assert.Contains($"'{volumeId}'", ex.Message);
        Assert.Equal("volumeId", ex.ParamName);
    }

    [Fact]
    public async Task Names_that_collide_in_8_3_form_get_distinct_primary_names_and_big_directories_span_blocks()
    {
        // 150 Joliet records of ~70 bytes need several 2048-byte sectors (records never cross a sector, 6.8.1.1).
        var files = Enumerable.Range(0, 150).Select(i => new IsoFile($"network-config-{i}", Encoding.ASCII.GetBytes($"file {i}\n"))).ToList();
        var path = Path.Combine(_dir, "many.iso");
        IsoImageWriter.WriteFile(path, "cidata", files);

        var listing = (await RequiredTool.Run("isoinfo", ["-l", "-i", path])).StandardOutput;
        var names = listing.Split('\n').Where(l => l.Contains(";1", StringComparison.Ordinal)).Select(l => l.Trim().Split(' ')[^1]).ToList();
        Assert.Equal(150, names.Count);
        Assert.Equal(150, names.Distinct().Count());
        Assert.All(names, n => Assert.Matches("^[A-Z0-9_]{1,8}\\.[A-Z0-9_]{0,3};1$", n));

        AssertStructurallyConsistent(File.ReadAllBytes(path));
        var target = Path.Combine(_dir, "many");
        var result = await RequiredTool.Run("xorriso", ["-osirrox", "on", "-indev", path, "-extract", "/", target]);
        Assert.True(result.ExitCode == 0, result.StandardError);
        foreach (var file in files)
            Assert.Equal(file.Content, File.ReadAllBytes(Path.Combine(target, file.Name)));
    }
}
