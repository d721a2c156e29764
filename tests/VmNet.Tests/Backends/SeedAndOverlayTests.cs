using System.Security.Cryptography;
using VmNet.Backends;
using VmNet.Tests.Support;

namespace VmNet.Tests.Backends;

[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed class SeedAndOverlayTests : IDisposable
{
    private readonly TestVm _vm = new();

    public void Dispose() => _vm.Dispose();

    private static CancellationToken Cancel => TestContext.Current.CancellationToken;

    [Fact]
    public async Task The_seed_image_holds_exactly_the_rendered_files_under_the_label_cidata_readable_by_root_only()
    {
        RequiredTool.Path("xorriso");
        await _vm.CreateBaseImage();

        await TestVm.PrepareAsync(_vm.Plan, _vm.Artifacts, null, Cancel);

        var seed = _vm.Plan.Paths.Seed;
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(seed));
        var label = await RequiredTool.Run("xorriso", ["-indev", seed, "-pvd_info"]);
        Assert.Contains("Volume Id    : cidata", label.StandardOutput);
        var extracted = _vm.Dir["extracted"];
        var extract = await RequiredTool.Run("xorriso", ["-osirrox", "on", "-indev", seed, "-extract", "/", extracted]);
        Assert.True(extract.ExitCode == 0, extract.StandardError);
        var onImage = Directory.EnumerateFiles(extracted, "*", SearchOption.AllDirectories)
            .Select(f => Path.GetRelativePath(extracted, f)).Order(StringComparer.Ordinal).ToList();
        Assert.Equal(_vm.Artifacts.SeedFiles.Select(f => f.Name).Order(StringComparer.Ordinal), onImage);
        foreach (var (name, content) in _vm.Artifacts.SeedFiles)
            Assert.Equal(content, File.ReadAllText(Path.Join(extracted, name)));
    }

    [Fact]
    public async Task The_guest_agent_binary_rides_on_the_seed_where_user_data_installs_it_from()
    {
        RequiredTool.Path("xorriso");
        var agent = _vm.Dir.Write("agent-bin", new string('x', 5000) + "agent");
        var seed = _vm.Dir["seed.iso"];

        VmNet.Seed.SeedImage.Write(seed, _vm.Artifacts, agent);

        var extracted = _vm.Dir["extracted"];
        var extract = await RequiredTool.Run("xorriso", ["-osirrox", "on", "-indev", seed, "-extract", "/", extracted]);
        Assert.True(extract.ExitCode == 0, extract.StandardError);
        Assert.Equal(File.ReadAllBytes(agent), File.ReadAllBytes(Path.Join(extracted, VmNet.Seed.SeedImage.AgentFile)));
        Assert.Contains("install -m 0755 \"$d/vmnet/vmnet-agent\" /usr/local/sbin/vmnet-agent", _vm.Artifacts.UserData);
    }

    [Fact]
    public async Task The_overlay_sits_on_the_base_image_and_the_base_is_never_written()
    {
        await _vm.CreateBaseImage();
        var baseHash = SHA256.HashData(File.ReadAllBytes(_vm.BaseImage));
        var baseTime = File.GetLastWriteTimeUtc(_vm.BaseImage);

        await TestVm.PrepareAsync(_vm.Plan, _vm.Artifacts, null, Cancel);
        var info = await QemuImg.InfoAsync(_vm.Plan.Paths.Disk, Cancel);

        Assert.Equal("qcow2", info.Format);
        Assert.Equal(_vm.BaseImage, info.BackingFile);
        Assert.Equal("qcow2", info.BackingFormat);
        Assert.Equal(64L * 1024 * 1024, info.VirtualSize);
        Assert.Equal(baseHash, SHA256.HashData(File.ReadAllBytes(_vm.BaseImage)));
        Assert.Equal(baseTime, File.GetLastWriteTimeUtc(_vm.BaseImage));
        Assert.False(File.Exists(_vm.Plan.Paths.Disk + ".tmp"));
    }

    [Fact]
    public async Task The_overlay_is_grown_to_disk_size_and_kept_on_the_next_prepare()
    {
        using var vm = new TestVm(diskSize: "2GiB");
        await vm.CreateBaseImage();

        await TestVm.PrepareAsync(vm.Plan, vm.Artifacts, null, Cancel);
        File.AppendAllText(vm.Plan.Paths.Disk, ""); // touch
        var first = File.GetLastWriteTimeUtc(vm.Plan.Paths.Disk);
        await TestVm.PrepareAsync(vm.Plan, vm.Artifacts, null, Cancel);

        Assert.Equal(2048L * 1024 * 1024, (await QemuImg.InfoAsync(vm.Plan.Paths.Disk, Cancel)).VirtualSize);
        Assert.Equal(first, File.GetLastWriteTimeUtc(vm.Plan.Paths.Disk));
    }

    [Fact]
    public async Task A_missing_base_image_is_reported_with_what_to_do()
    {
        var error = await Assert.ThrowsAsync<VmNetException>(() => TestVm.PrepareAsync(_vm.Plan, _vm.Artifacts, null, Cancel));

        Assert.Equal($"disk.image: the base image {_vm.BaseImage} does not exist; download a qcow2 cloud image there or set disk.image in the spec to one", error.Message);
        Assert.Equal(ExitCodes.InvalidInput, error.ExitCode);
        Assert.False(File.Exists(_vm.Plan.Paths.Disk));
    }

    [Fact]
    public async Task A_raw_base_image_is_refused_with_the_convert_command()
    {
        File.WriteAllBytes(_vm.BaseImage, new byte[1024 * 1024]);

        var error = await Assert.ThrowsAsync<VmNetException>(() => VmFiles.EnsureOverlayAsync(_vm.BaseImage, _vm.Plan.Paths.Disk, null, Cancel));

        Assert.Contains("is raw, not qcow2; convert it with `qemu-img convert -O qcow2", error.Message);
    }

    [Fact]
    public async Task A_base_image_whose_backing_chain_leaves_its_directory_or_probes_a_format_is_refused()
    {
        RequiredTool.Path("qemu-img");
        var images = _vm.Dir["images"];
        Directory.CreateDirectory(images);
        var secret = _vm.Dir.Write("secret", "host-only\n");
        async Task Img(params string[] args) => Assert.Equal(0, (await RequiredTool.Run("qemu-img", args)).ExitCode);

        // A qcow2 base over a host file outside the image directory, with the format named: the guest would read it.
        var outside = Path.Join(images, "outside.qcow2");
        await Img("create", "-q", "-f", "qcow2", "-b", secret, "-F", "raw", outside);
        var e = await Assert.ThrowsAsync<VmNetException>(() => VmFiles.CheckBaseImageAsync(outside, Cancel));
        Assert.Equal((ExitCodes.InvalidInput, $"disk.image: the base image {outside} reads through {outside}, whose backing file \"{secret}\" lies outside {images}/; flatten it first (`qemu-img convert -O qcow2 {outside} FLAT.qcow2`) and use that"), (e.ExitCode, e.Message));

        // Inside the directory but with the format left for qemu to probe.
        var rawInside = Path.Join(images, "disk.raw");
        File.WriteAllBytes(rawInside, new byte[1 << 20]);
        var probed = Path.Join(images, "probed.qcow2");
        // qemu-img 10 writes no such image any more; an older one did: the same image without its backing-format header
        // extension (magic 0xE2792ACA, renamed to an unknown one, which QEMU skips).
        await Img("create", "-q", "-f", "qcow2", "-b", "disk.raw", "-F", "raw", probed);
        var bytes = await File.ReadAllBytesAsync(probed, Cancel);
        var at = bytes.AsSpan(0, 4096).IndexOf(new byte[] { 0xE2, 0x79, 0x2A, 0xCA });
        Assert.True(at > 0, "no backing-format extension in the qcow2 header");
        bytes[at] = 0x12;
        await File.WriteAllBytesAsync(probed, bytes, Cancel);
        e = await Assert.ThrowsAsync<VmNetException>(() => VmFiles.CheckBaseImageAsync(probed, Cancel));
        Assert.Contains("whose backing file \"disk.raw\" has no format named (qemu-img would probe it)", e.Message);

        // A symlink in the directory pointing out of it counts as outside; a chain of two inside with formats is fine.
        File.CreateSymbolicLink(Path.Join(images, "link.raw"), secret);
        var linked = Path.Join(images, "linked.qcow2");
        await Img("create", "-q", "-f", "qcow2", "-b", "link.raw", "-F", "raw", linked);
        Assert.Contains("lies outside", (await Assert.ThrowsAsync<VmNetException>(() => VmFiles.CheckBaseImageAsync(linked, Cancel))).Message);
        var lower = Path.Join(images, "lower.qcow2");
        await Img("create", "-q", "-f", "qcow2", "-b", "disk.raw", "-F", "raw", lower);
        var upper = Path.Join(images, "upper.qcow2");
        await Img("create", "-q", "-f", "qcow2", "-b", "lower.qcow2", "-F", "qcow2", upper);
        Assert.Equal("qcow2", (await VmFiles.CheckBaseImageAsync(upper, Cancel)).Format);
    }
}
