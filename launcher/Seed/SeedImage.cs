using System.Text;
using VmNet.Rendering;

namespace VmNet.Seed;

/// <summary>The NoCloud seed: an ISO 9660 + Joliet image labelled <c>cidata</c> holding the rendered seed files.</summary>
public static class SeedImage
{
    /// <summary>The volume label cloud-init's NoCloud datasource looks for.</summary>
    public const string VolumeLabel = "cidata";

    /// <summary>Where the guest agent goes on the seed; user-data installs it from there.</summary>
    public const string AgentFile = "vmnet/vmnet-agent";

    /// <summary>
    /// The guest agent binary to ship (a self-contained NativeAOT publish of guest-agent/): <c>VMNET_AGENT</c>, else
    /// <c>vmnet-agent</c> next to vmnet (as scripts/publish.sh lays them out), <c>/usr/lib/vmnet/vmnet-agent</c> or
    /// <c>/usr/local/lib/vmnet/vmnet-agent</c>; null when there is none. A <c>VMNET_AGENT</c> naming a missing file is
    /// an error, not a quiet fallback.
    /// </summary>
    public static string? FindAgent()
    {
        if (Environment.GetEnvironmentVariable("VMNET_AGENT") is { Length: > 0 } set)
            return File.Exists(set) ? set : throw new VmNetException(
                $"VMNET_AGENT names {set}, which does not exist; point it at a vmnet-agent binary (scripts/publish.sh builds one) or unset it",
                ExitCodes.InvalidInput);
        return new[] { NextToVmnet(), PackageBeside(), "/usr/lib/vmnet/vmnet-agent", "/usr/local/lib/vmnet/vmnet-agent" }
            .FirstOrDefault(p => p is not null && File.Exists(p));
    }

    /// <summary>The package's layout relative to the running vmnet: <c>BIN/../lib/vmnet/vmnet-agent</c> (so a package unpacked under another root finds its own agent).</summary>
    private static string? PackageBeside()
    {
        var exe = Environment.ProcessPath;
        return exe is not null && Path.GetFileName(exe) == "vmnet" ? Path.GetFullPath(Path.Join(Path.GetDirectoryName(exe), "..", "lib", "vmnet", "vmnet-agent")) : null;
    }

    /// <summary><see cref="FindAgent"/> without refusing a VMNET_AGENT that names no file (for `--version`).</summary>
    public static string? FindAgentQuietly()
    {
        try { return FindAgent(); }
        catch (VmNetException) { return null; }
    }

    /// <summary>vmnet-agent beside the running vmnet executable (not beside a host such as dotnet or a test runner).</summary>
    private static string? NextToVmnet()
    {
        var exe = Environment.ProcessPath;
        return exe is not null && Path.GetFileName(exe) == "vmnet" ? Path.Join(Path.GetDirectoryName(exe), "vmnet-agent") : null;
    }

    /// <summary>
    /// Writes the seed to <paramref name="path"/> atomically, readable by root only (0600): user-data may carry keys.
    /// With <paramref name="agent"/>, the guest agent binary goes on it too (<see cref="AgentFile"/>).
    /// </summary>
    public static void Write(string path, Artifacts artifacts, string? agent = null)
    {
        var files = artifacts.SeedFiles.Select(f => new IsoFile(f.Name, Encoding.UTF8.GetBytes(f.Content))).ToList();
        if (agent is not null) files.Add(new IsoFile(AgentFile, File.ReadAllBytes(agent)));
        try
        {
            IsoImageWriter.WriteFile(path, VolumeLabel, files);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new VmNetException($"cannot write the seed image {path}: {e.Message}; check that its directory is writable (run as root)", ExitCodes.Failure, e);
        }
    }
}
