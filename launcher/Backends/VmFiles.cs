using System.Text.Json;
using VmNet.Io;
using VmNet.Planning;
using VmNet.Rendering;
using VmNet.Seed;
using VmNet.Spec;
using VmNet.State;

namespace VmNet.Backends;

/// <summary>The per-VM files both backends need before a start: the VM directory, the NoCloud seed and the disk overlay.</summary>
public static class VmFiles
{
    // The seed itself stays 0600 until libvirt relabels it.
    private const UnixFileMode DirMode = StateDir.VmDirMode;

    /// <summary>
    /// Creates the VM directory and writes the seed (always: it follows the rendered plan), with the agent binary
    /// <paramref name="agent"/> on it when not null (<see cref="SeedImage.FindAgent"/>), and the agent's config for
    /// QEMU's fw_cfg.
    /// </summary>
    public static void WriteSeed(VmPaths paths, Artifacts artifacts, string? agent)
    {
        if (OperatingSystem.IsWindows()) Directory.CreateDirectory(paths.VmDir); else Directory.CreateDirectory(paths.VmDir, DirMode);
        SeedImage.Write(paths.Seed, artifacts, agent);
        // The agent's config through QEMU fw_cfg too (opt/vmnet/agent.json), for guests without cloud-init. QEMU reads
        // it as its own user (libvirt-qemu), and it holds no secret: addresses and MACs.
        AtomicFile.Write(paths.AgentConfig, artifacts.AgentConfig);
        if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(paths.AgentConfig, (UnixFileMode)0b110_100_100);
    }

    /// <summary>Records the spec <paramref name="spec"/> the seed was written for (what a later <c>up</c> compares against).</summary>
    public static void WriteLaunchRecord(VmPaths paths, VmSpec spec) =>
        AtomicFile.Write(paths.Launched, JsonSerializer.Serialize(LaunchRecord.Of(spec), LaunchRecordJson.Default.LaunchRecord), mode: AtomicFile.Private);

    /// <summary>
    /// The spec the VM was last launched with, or null when there is no record, or none vmnet can trust: not its own
    /// regular file (a planted link reads as none), larger than a spec can be, or not a record of this version.
    /// </summary>
    public static LaunchRecord? ReadLaunchRecord(VmPaths paths)
    {
        try
        {
            if (SafePath.Problem(paths.Launched, "file") is not null || new FileInfo(paths.Launched).Length > 1 << 20) return null;
            var record = JsonSerializer.Deserialize(File.ReadAllText(paths.Launched), LaunchRecordJson.Default.LaunchRecord);
            return record is { Version: LaunchRecord.CurrentVersion, Spec: not null } ? record : null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or JsonException or NotSupportedException)
        {
            return null;
        }
    }

    /// <summary>Creates <paramref name="overlay"/> over <paramref name="baseImage"/> (and grows it to <paramref name="sizeMiB"/>) unless it exists.</summary>
    public static async Task EnsureOverlayAsync(string baseImage, string overlay, long? sizeMiB, CancellationToken cancel)
    {
        var baseInfo = await CheckBaseImageAsync(baseImage, cancel);

        if (File.Exists(overlay))
        {
            var existing = await QemuImg.InfoAsync(overlay, cancel);
            if (existing.BackingFile != baseImage)
                throw new VmNetException(
                    $"the disk {overlay} already exists over {existing.BackingFile ?? "no base image"}, not {baseImage}; " +
                    $"run `vmnet rm` first to start from the new base, or restore disk.image in the spec", ExitCodes.InvalidInput);
            return;
        }

        if (sizeMiB is { } size && size * 1024 * 1024 < baseInfo.VirtualSize)
            throw new VmNetException(
                $"disk.size {size} MiB is smaller than the base image {baseImage} ({baseInfo.VirtualSize / (1024 * 1024)} MiB); raise disk.size or leave it out",
                ExitCodes.InvalidInput);

        var temp = overlay + ".tmp";
        File.Delete(temp);
        try
        {
            await QemuImg.CreateOverlayAsync(baseImage, temp, cancel);
            if (sizeMiB is { } grow && grow * 1024 * 1024 > baseInfo.VirtualSize)
                await QemuImg.ResizeAsync(temp, grow, cancel);
            if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(temp, UnixFileMode.UserRead | UnixFileMode.UserWrite);
            File.Move(temp, overlay);
        }
        catch
        {
            File.Delete(temp);
            throw;
        }
    }

    /// <summary>The base image's description, after checking that it exists and is qcow2 (exit 2 naming disk.image otherwise).</summary>
    public static async Task<DiskImageInfo> CheckBaseImageAsync(string baseImage, CancellationToken cancel)
    {
        if (!File.Exists(baseImage))
            throw new VmNetException(
                $"disk.image: the base image {baseImage} does not exist; download a qcow2 cloud image there or set disk.image in the spec to one",
                ExitCodes.InvalidInput);
        var baseInfo = await QemuImg.InfoAsync(baseImage, cancel);
        if (baseInfo.Format != "qcow2")
            throw new VmNetException(
                $"disk.image: the base image {baseImage} is {baseInfo.Format}, not qcow2; convert it with `qemu-img convert -O qcow2 {baseImage} IMAGE.qcow2`",
                ExitCodes.InvalidInput);
        await CheckBackingChainAsync(baseImage, baseInfo, cancel);
        return baseInfo;
    }

    /// <summary>
    /// The base image's own backing chain, which the guest reads through: each backing file must lie in the base
    /// image's directory (or below it) and name its format (a probed format lets a raw file pass as an image). A
    /// qcow2 whose backing file is /etc/shadow would otherwise hand the host's file to the guest. At most 16 deep.
    /// </summary>
    private static async Task CheckBackingChainAsync(string baseImage, DiskImageInfo info, CancellationToken cancel)
    {
        var root = Path.GetDirectoryName(Path.GetFullPath(baseImage))! + Path.DirectorySeparatorChar;
        var (image, current) = (Path.GetFullPath(baseImage), info);
        for (var depth = 0; current.BackingFile is { } backing; depth++)
        {
            var full = Path.GetFullPath(Path.IsPathRooted(backing) ? backing : Path.Join(Path.GetDirectoryName(image), backing));
            var resolved = File.Exists(full) ? new FileInfo(full).ResolveLinkTarget(returnFinalTarget: true)?.FullName ?? full : full;
            string Refuse(string why) => $"disk.image: the base image {baseImage} reads through {image}, whose backing file {Spec.MapReader.Quote(backing)} {why}; " +
                $"flatten it first (`qemu-img convert -O qcow2 {baseImage} FLAT.qcow2`) and use that";
            if (depth >= 16) throw new VmNetException(Refuse("is more than 16 images deep"), ExitCodes.InvalidInput);
            if (!resolved.StartsWith(root, StringComparison.Ordinal))
                throw new VmNetException(Refuse($"lies outside {root}"), ExitCodes.InvalidInput);
            if (string.IsNullOrEmpty(current.BackingFormat))
                throw new VmNetException(Refuse("has no format named (qemu-img would probe it)"), ExitCodes.InvalidInput);
            if (!File.Exists(resolved)) throw new VmNetException(Refuse("does not exist"), ExitCodes.InvalidInput);
            (image, current) = (resolved, await QemuImg.InfoAsync(resolved, cancel));
            if (current.Format is not ("qcow2" or "raw"))
                throw new VmNetException(Refuse($"is {current.Format}"), ExitCodes.InvalidInput);
        }
    }


    /// <summary>Deletes <paramref name="file"/> if it exists; a missing directory is no error either.</summary>
    public static void DeleteFile(string file)
    {
        try
        {
            File.Delete(file);
        }
        catch (DirectoryNotFoundException) { }
    }

    /// <summary>Deletes the files a start and a run made (the disk too, and <paramref name="extra"/>), then the VM directory if nothing else is left in it.</summary>
    public static void Delete(VmPaths paths, IEnumerable<string> extra) => DeleteRunFiles(paths, [paths.Disk, .. extra]);

    /// <summary>Deletes the seed, the agent's config and what a run left (log, sockets, pid file, report), then the VM directory if empty. The disk stays.</summary>
    public static void DeleteRunFiles(VmPaths paths, IEnumerable<string> extra)
    {
        foreach (var file in new[] { paths.Seed, paths.SerialLog, paths.QmpSocket, paths.AgentSocket, paths.PidFile, paths.AgentConfig, paths.ConsoleSocket, paths.GuestReport, paths.Launched }.Concat(extra))
            DeleteFile(file);
        try
        {
            if (Directory.Exists(paths.VmDir) && !Directory.EnumerateFileSystemEntries(paths.VmDir).Any())
                Directory.Delete(paths.VmDir);
        }
        catch (IOException) { } // someone else's file appeared (e.g. the ledger's): leave the directory
    }
}
