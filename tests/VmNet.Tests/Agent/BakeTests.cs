using System.Runtime.Versioning;
using System.Security.Cryptography;
using System.Text.RegularExpressions;
using CliWrap;
using CliWrap.Buffered;
using VmNet.Tests.Support;

namespace VmNet.Tests.Agent;

/// <summary>
/// images/agent-disk/bake.sh on small disk images laid out like Debian's cloud images (GPT, ext4 root on partition 1
/// made by mke2fs -d), read back with the real tools: qemu-img, debugfs, e2fsck. No guest boots.
/// </summary>
[SupportedOSPlatform("linux")]
public sealed partial class BakeTests : IDisposable
{
    private const long MiB = 1024 * 1024;
    private const string AgentText = "#!/bin/sh\necho 'a stand-in for vmnet-agent'\n";
    private const string MarkerText = "left alone by bake.sh\n";
    private const string UnitTarget = "/etc/systemd/system/vmnet-agent.service";
    private const string WantsLink = "/etc/systemd/system/multi-user.target.wants/vmnet-agent.service";
    private static readonly string UnitFile = Repo.File("images/agent-disk/vmnet-agent.service");

    // GPT partition types: Linux root (x86-64) as Debian's cloud images use, Linux filesystem, BIOS boot, EFI System.
    private const string RootX86_64 = "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709";
    private const string LinuxFs = "0FC63DAF-8483-4772-8E79-3D69D8477DE4";
    private const string BiosBoot = "21686148-6449-6E6F-744E-656564454649";
    private const string Efi = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";

    /// <summary>Every tool bake.sh and these specs run.</summary>
    private static readonly string[] Tools = ["bash", "qemu-img", "sfdisk", "jq", "blkid", "debugfs", "dumpe2fs", "e2fsck", "mke2fs", "cmp"];

    private readonly TempDir _dir = new();
    private readonly string _agent;

    public BakeTests()
    {
        _agent = _dir.Write("agent/vmnet-agent", AgentText);
        File.SetUnixFileMode(_agent, (UnixFileMode)0b111_101_101);
    }

    public void Dispose() => _dir.Dispose();

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static void NeedTools()
    {
        foreach (var tool in Tools) RequiredTool.Path(tool);
    }

    private static async Task<BufferedCommandResult> Run(string tool, params string[] args)
    {
        var r = await RequiredTool.Run(tool, args, TimeSpan.FromSeconds(60));
        Assert.True(r.ExitCode == 0, $"{tool} {string.Join(' ', args)} exited {r.ExitCode}:\n{r.StandardOutput}\n{r.StandardError}");
        return r;
    }

    private static async Task<BufferedCommandResult> Bake(params string[] args) =>
        await RequiredTool.Run("bash", [Repo.File("images/agent-disk/bake.sh"), .. args], TimeSpan.FromSeconds(120));

    /// <summary>A root file system's staging tree: the directories a Debian image has, and a marker file.</summary>
    private string Stage()
    {
        var stage = _dir["stage"];
        if (Directory.Exists(stage)) return stage;
        _dir.Write("stage/etc/marker", MarkerText);
        _dir.Write("stage/etc/hostname", "baked\n");
        Directory.CreateDirectory(_dir["stage/etc/systemd/system"]);
        Directory.CreateDirectory(_dir["stage/usr/local/sbin"]);
        return stage;
    }

    private sealed record Part(int Number, long StartMiB, long SizeMiB, string Type, string? Fs);

    /// <summary>A GPT disk of <paramref name="sizeMiB"/> with the partitions given, each file system made in place by
    /// mke2fs -d from the staging tree; converted to qcow2 unless <paramref name="qcow2"/> is false.</summary>
    private async Task<string> GptDisk(string name, long sizeMiB, Part[] parts, bool qcow2 = true)
    {
        var raw = _dir[name + ".raw"];
        await using (var f = File.Create(raw)) f.SetLength(sizeMiB * MiB);
        var script = "label: gpt\n" + string.Concat(parts.Select(p => $"{raw}{p.Number} : start={p.StartMiB * 2048}, size={p.SizeMiB * 2048}, type={p.Type}\n"));
        var sfdisk = await CliWrap.Cli.Wrap(RequiredTool.Path("sfdisk")).WithArguments(["-q", raw])
            .WithStandardInputPipe(PipeSource.FromString(script)).WithValidation(CommandResultValidation.None).ExecuteBufferedAsync(Ct);
        Assert.True(sfdisk.ExitCode == 0, $"sfdisk: {sfdisk.StandardError}");
        foreach (var p in parts.Where(p => p.Fs is not null))
            await Run("mke2fs", "-q", "-F", "-t", p.Fs!, "-E", $"offset={p.StartMiB * MiB}", "-d", Stage(), raw, $"{p.SizeMiB * 1024}k");
        return qcow2 ? await ToQcow2(raw, name) : raw;
    }

    private async Task<string> ToQcow2(string raw, string name)
    {
        var image = _dir[name + ".qcow2"];
        await Run("qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, image);
        File.Delete(raw);
        return image;
    }

    /// <summary>Debian's genericcloud layout, small: root (x86-64) on partition 1 after BIOS boot (14) and EFI (15).</summary>
    private Task<string> DebianLikeDisk(string name = "debian") => GptDisk(name, 48,
        [new(14, 1, 1, BiosBoot, null), new(15, 2, 4, Efi, null), new(1, 6, 40, RootX86_64, "ext4")]);

    private async Task<string> Raw(string qcow2)
    {
        var raw = qcow2 + ".back.raw";
        await Run("qemu-img", "convert", "-f", "qcow2", "-O", "raw", qcow2, raw);
        return raw;
    }

    private static string Fs(string raw, long offsetMiB) => $"{raw}?offset={offsetMiB * MiB}";

    private static async Task<string> Debugfs(string fs, string request) => (await Run("debugfs", "-R", request, fs)).StandardOutput;

    private static string Sha(string path) => Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(path)));

    [GeneratedRegex(@"^User: +0 +Group: +0 ", RegexOptions.Multiline)]
    private static partial Regex RootOwned();

    /// <summary>What bake.sh must leave in a root file system, read through rdump (contents, modes, the link) and stat (owners).</summary>
    private async Task AssertBaked(string fs, string name)
    {
        var back = _dir["back-" + name];
        Directory.CreateDirectory(back);
        await Run("debugfs", "-R", $"rdump /etc /usr/local/sbin {back}", fs);

        Assert.Equal(AgentText, File.ReadAllText(Path.Join(back, "sbin/vmnet-agent")));
        Assert.Equal((UnixFileMode)0b111_101_101, File.GetUnixFileMode(Path.Join(back, "sbin/vmnet-agent")));
        Assert.Equal(File.ReadAllBytes(UnitFile), File.ReadAllBytes(Path.Join(back, "etc/systemd/system/vmnet-agent.service")));
        Assert.Equal((UnixFileMode)0b110_100_100, File.GetUnixFileMode(Path.Join(back, "etc/systemd/system/vmnet-agent.service")));
        Assert.Equal(UnitTarget, new FileInfo(Path.Join(back, "etc/systemd/system/multi-user.target.wants/vmnet-agent.service")).LinkTarget);
        var modules = File.ReadAllLines(Path.Join(back, "etc/modules-load.d/vmnet.conf")).Where(l => l.Length > 0 && l[0] != '#');
        Assert.Equal(["qemu_fw_cfg"], modules);
        Assert.Equal(MarkerText, File.ReadAllText(Path.Join(back, "etc/marker")));
        foreach (var path in new[] { "/usr/local/sbin/vmnet-agent", UnitTarget, "/etc/modules-load.d/vmnet.conf", "/etc/modules-load.d", WantsLink })
            Assert.Matches(RootOwned(), await Debugfs(fs, $"stat {path}"));
        Assert.Equal((UnixFileMode)0b111_101_101, File.GetUnixFileMode(Path.Join(back, "etc/modules-load.d")));

        var fsck = await RequiredTool.Run("e2fsck", ["-fn", fs]);
        Assert.True(fsck.ExitCode == 0, $"e2fsck -fn: {fsck.StandardOutput}{fsck.StandardError}");
    }

    [Fact]
    public async Task A_debian_shaped_qcow2_gets_the_agent_the_unit_its_enablement_link_and_fw_cfg_loading_in_its_root_partition()
    {
        NeedTools();
        var image = await DebianLikeDisk();
        var before = Sha(image);
        var marker = await Debugfs(Fs(await Raw(image), 6), "stat /etc/marker");
        var output = _dir["out/baked.qcow2"];
        Directory.CreateDirectory(_dir["out"]);

        var r = await Bake(image, output, _agent);

        Assert.True(r.ExitCode == 0, $"bake.sh exited {r.ExitCode}:\n{r.StandardError}");
        Assert.Equal(output, r.StandardOutput.Trim());
        Assert.Contains("partition 1", r.StandardError);
        Assert.Equal(before, Sha(image));
        Assert.Equal(["baked.qcow2"], Directory.GetFileSystemEntries(_dir["out"]).Select(Path.GetFileName));
        Assert.Contains("\"format\": \"qcow2\"", (await Run("qemu-img", "info", "--output=json", output)).StandardOutput);
        var raw = await Raw(output);
        await AssertBaked(Fs(raw, 6), "p1");
        Assert.Equal(marker, await Debugfs(Fs(raw, 6), "stat /etc/marker"));
    }

    [Fact]
    public async Task Baking_a_baked_image_again_replaces_the_files_instead_of_failing()
    {
        NeedTools();
        var image = await DebianLikeDisk();
        Assert.Equal(0, (await Bake(image, _dir["once.qcow2"], _agent)).ExitCode);

        var r = await Bake(_dir["once.qcow2"], _dir["twice.qcow2"], _agent);

        Assert.True(r.ExitCode == 0, r.StandardError);
        await AssertBaked(Fs(await Raw(_dir["twice.qcow2"]), 6), "twice");
    }

    [Fact]
    public async Task A_whole_disk_ext4_raw_image_is_baked_in_place_of_a_partition()
    {
        NeedTools();
        var raw = _dir["whole.raw"];
        await Run("mke2fs", "-q", "-F", "-t", "ext4", "-d", Stage(), raw, "32M");
        var before = Sha(raw);

        var r = await Bake(raw, _dir["whole.qcow2"], _agent);

        Assert.True(r.ExitCode == 0, r.StandardError);
        Assert.Contains("the whole disk", r.StandardError);
        Assert.Equal(before, Sha(raw));
        await AssertBaked(await Raw(_dir["whole.qcow2"]), "whole");
    }

    [Fact]
    public async Task The_largest_linux_partition_is_the_root_unless_partition_says_which()
    {
        NeedTools();
        var image = await GptDisk("two", 48, [new(1, 1, 30, LinuxFs, "ext4"), new(2, 31, 12, LinuxFs, "ext4")]);

        Assert.Equal(0, (await Bake(image, _dir["largest.qcow2"], _agent)).ExitCode);
        var r = await Bake("--partition", "2", image, _dir["second.qcow2"], _agent);

        Assert.True(r.ExitCode == 0, r.StandardError);
        var largest = await Raw(_dir["largest.qcow2"]);
        await AssertBaked(Fs(largest, 1), "largest");
        Assert.Contains("File not found", (await RequiredTool.Run("debugfs", ["-R", "stat /usr/local/sbin/vmnet-agent", Fs(largest, 31)])).StandardError);
        await AssertBaked(Fs(await Raw(_dir["second.qcow2"]), 31), "second");
    }

    [Fact]
    public async Task A_missing_image_is_refused()
    {
        NeedTools();
        var r = await Bake(_dir["nope.qcow2"], _dir["out.qcow2"], _agent);

        Assert.Equal(2, r.ExitCode);
        Assert.Contains($"{_dir["nope.qcow2"]}: no such image", r.StandardError);
        Assert.False(File.Exists(_dir["out.qcow2"]));
    }

    [Fact]
    public async Task An_existing_output_is_refused_and_left_as_it_was()
    {
        NeedTools();
        var image = await DebianLikeDisk();
        var output = _dir.Write("out.qcow2", "keep me");

        var r = await Bake(image, output, _agent);

        Assert.Equal(2, r.ExitCode);
        Assert.Contains($"{output} exists: will not overwrite it", r.StandardError);
        Assert.Equal("keep me", File.ReadAllText(output));
    }

    [Fact]
    public async Task A_missing_agent_is_refused()
    {
        NeedTools();
        var r = await Bake(await DebianLikeDisk(), _dir["out.qcow2"], _dir["no-agent"]);

        Assert.Equal(2, r.ExitCode);
        Assert.Contains($"{_dir["no-agent"]}: no such agent binary", r.StandardError);
    }

    [Theory]
    [InlineData(null, "partition 1 holds no file system blkid knows")]
    [InlineData("ext2", "partition 1 holds ext2")]
    public async Task A_root_partition_without_ext4_is_refused(string? fs, string says)
    {
        NeedTools();
        var image = await GptDisk("noext4", 24, [new(1, 1, 20, RootX86_64, fs)]);
        Directory.CreateDirectory(_dir["out"]);

        var r = await Bake(image, _dir["out/x.qcow2"], _agent);

        Assert.Equal(2, r.ExitCode);
        Assert.Contains($"{image} has no ext4 root: {says} (only ext4 can be baked)", r.StandardError);
        Assert.Empty(Directory.GetFileSystemEntries(_dir["out"]));
    }

    [Fact]
    public async Task An_image_without_a_partition_table_or_a_file_system_is_refused()
    {
        NeedTools();
        var raw = _dir["empty.raw"];
        await using (var f = File.Create(raw)) f.SetLength(8 * MiB);

        var r = await Bake(raw, _dir["x.qcow2"], _agent);

        Assert.Equal(2, r.ExitCode);
        Assert.Contains("has no ext4 root: the whole disk holds no file system blkid knows", r.StandardError);
    }

    [Fact]
    public async Task A_partition_table_without_a_linux_partition_or_the_partition_asked_for_is_refused()
    {
        NeedTools();
        var image = await GptDisk("efi-only", 24, [new(1, 1, 20, Efi, null)]);

        var none = await Bake(image, _dir["x.qcow2"], _agent);
        var nine = await Bake("--partition", "9", image, _dir["x.qcow2"], _agent);

        Assert.Equal((2, 2), (none.ExitCode, nine.ExitCode));
        Assert.Contains("has a gpt partition table but no Linux partition: choose one with --partition N", none.StandardError);
        Assert.Contains("has no partition 9 (its gpt table has: 1)", nine.StandardError);
    }

    [Fact]
    public void The_unit_cloud_init_writes_is_the_baked_unit_byte_for_byte()
    {
        var (_, artifacts) = RendererTests.Render(File.ReadAllText(Repo.File("examples/vm.yaml")));
        var userData = new YamlDotNet.RepresentationModel.YamlStream();
        userData.Load(new StringReader(artifacts.UserData));
        var root = (YamlDotNet.RepresentationModel.YamlMappingNode)userData.Documents[0].RootNode;
        var unit = ((YamlDotNet.RepresentationModel.YamlSequenceNode)root["write_files"])
            .Cast<YamlDotNet.RepresentationModel.YamlMappingNode>()
            .Single(f => f["path"].ToString() == UnitTarget)["content"].ToString();

        Assert.Equal(File.ReadAllBytes(UnitFile), System.Text.Encoding.UTF8.GetBytes(unit));
    }

    [Fact]
    public async Task Systemd_analyze_verify_accepts_the_unit()
    {
        // A root holding the unit, a stand-in agent (ExecStart must be executable) and the host's own units (the
        // targets it is ordered against), so nothing of the host's /etc or /usr/local is looked at.
        RequiredTool.Path("systemd-analyze");
        var root = _dir["root"];
        Directory.CreateDirectory(Path.Join(root, "etc/systemd/system"));
        File.Copy(UnitFile, Path.Join(root, "etc/systemd/system/vmnet-agent.service"));
        Directory.CreateDirectory(Path.Join(root, "usr/local/sbin"));
        File.Copy(_agent, Path.Join(root, "usr/local/sbin/vmnet-agent"));
        Directory.CreateDirectory(Path.Join(root, "usr/lib/systemd"));
        await Run("cp", "-a", "/usr/lib/systemd/system", Path.Join(root, "usr/lib/systemd/"));

        var r = await RequiredTool.Run("systemd-analyze", ["verify", $"--root={root}", UnitTarget]);

        Assert.True(r.ExitCode == 0 && r.StandardError.Length == 0 && r.StandardOutput.Length == 0,
            $"systemd-analyze verify exited {r.ExitCode}:\n{r.StandardOutput}{r.StandardError}");
    }
}
