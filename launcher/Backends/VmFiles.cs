using VmNet.Planning;
using VmNet.Rendering;
using VmNet.Seed;

namespace VmNet.Backends;

/// <summary>The per-VM files both backends need before a start: the VM directory, the NoCloud seed and the disk overlay.</summary>
public static class VmFiles
{
    // Traversable but not listable by others: libvirt's QEMU runs as libvirt-qemu and must reach the files libvirt
    // relabels for it; the seed itself stays 0600 until then.
    private const UnixFileMode DirMode = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute
        | UnixFileMode.GroupExecute | UnixFileMode.OtherExecute;

    /// <summary>
    /// Creates the VM directory, writes the seed (always: it follows the rendered plan) and creates the overlay when it
    /// does not exist yet. An existing overlay is the VM's disk and is kept, if it sits on the same base image.
    /// With <paramref name="agent"/> (a vmnet-agent binary, <see cref="SeedImage.FindAgent"/>), the agent goes on the seed.
    /// </summary>
    public static async Task PrepareAsync(Plan plan, Artifacts artifacts, string? agent, CancellationToken cancel)
    {
        var paths = plan.Paths;
        if (OperatingSystem.IsWindows()) Directory.CreateDirectory(paths.VmDir); else Directory.CreateDirectory(paths.VmDir, DirMode);
        SeedImage.Write(paths.Seed, artifacts, agent);
        // The agent's config through QEMU fw_cfg too (opt/vmnet/agent.json), for guests without cloud-init. QEMU reads
        // it as its own user (libvirt-qemu), and it holds no secret: addresses and MACs.
        Leases.AtomicFile.Write(paths.AgentConfig, artifacts.AgentConfig);
        if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(paths.AgentConfig, (UnixFileMode)0b110_100_100);
        await EnsureOverlayAsync(plan.Vm.Disk.Image, paths.Disk, plan.Vm.Disk.SizeMiB, cancel);
    }

    /// <summary>Creates <paramref name="overlay"/> over <paramref name="baseImage"/> (and grows it to <paramref name="sizeMiB"/>) unless it exists.</summary>
    public static async Task EnsureOverlayAsync(string baseImage, string overlay, long? sizeMiB, CancellationToken cancel)
    {
        if (!File.Exists(baseImage))
            throw new VmNetException(
                $"the base image {baseImage} does not exist; download a qcow2 cloud image there or set disk.image in the spec to one",
                ExitCodes.InvalidInput);
        var baseInfo = await QemuImg.InfoAsync(baseImage, cancel);
        if (baseInfo.Format != "qcow2")
            throw new VmNetException(
                $"the base image {baseImage} is {baseInfo.Format}, not qcow2; convert it with `qemu-img convert -O qcow2 {baseImage} IMAGE.qcow2`",
                ExitCodes.InvalidInput);

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

    /// <summary>Deletes <paramref name="file"/> if it exists; a missing directory is no error either.</summary>
    public static void DeleteFile(string file)
    {
        try
        {
            File.Delete(file);
        }
        catch (DirectoryNotFoundException) { }
    }

    /// <summary>Deletes the files <see cref="PrepareAsync"/> and a run made, then the VM directory if nothing else is left in it.</summary>
    public static void Delete(VmPaths paths, IEnumerable<string> extra)
    {
        foreach (var file in new[] { paths.Disk, paths.Seed, paths.SerialLog, paths.QmpSocket, paths.AgentSocket, paths.PidFile, paths.AgentConfig, paths.ConsoleSocket, GuestAgentChannel.ReportFile(paths) }.Concat(extra))
            DeleteFile(file);
        try
        {
            if (Directory.Exists(paths.VmDir) && !Directory.EnumerateFileSystemEntries(paths.VmDir).Any())
                Directory.Delete(paths.VmDir);
        }
        catch (IOException) { } // someone else's file appeared (e.g. the ledger's): leave the directory
    }
}
