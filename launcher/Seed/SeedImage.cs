using System.Text;
using VmNet.Rendering;

namespace VmNet.Seed;

/// <summary>The NoCloud seed: an ISO 9660 + Joliet image labelled <c>cidata</c> holding the rendered seed files.</summary>
public static class SeedImage
{
    /// <summary>The volume label cloud-init's NoCloud datasource looks for.</summary>
    public const string VolumeLabel = "cidata";

    /// <summary>
    /// Writes the seed to <paramref name="path"/> atomically, readable by root only (0600): user-data may carry keys.
    /// </summary>
    public static void Write(string path, Artifacts artifacts)
    {
        var files = artifacts.SeedFiles.Select(f => new IsoFile(f.Name, Encoding.UTF8.GetBytes(f.Content))).ToList();
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
