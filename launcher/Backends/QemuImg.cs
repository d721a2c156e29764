using System.ComponentModel;
using System.Text.Json;
using System.Text.Json.Serialization;
using CliWrap;
using CliWrap.Buffered;

namespace VmNet.Backends;

/// <summary>What <c>qemu-img info --output=json</c> says about an image (the fields VmNet reads).</summary>
public sealed record DiskImageInfo(
    [property: JsonPropertyName("format")] string Format,
    [property: JsonPropertyName("virtual-size")] long VirtualSize,
    [property: JsonPropertyName("backing-filename")] string? BackingFile,
    [property: JsonPropertyName("backing-filename-format")] string? BackingFormat);

[JsonSerializable(typeof(DiskImageInfo))]
internal sealed partial class QemuImgJson : JsonSerializerContext;

/// <summary><c>qemu-img</c>, run with an argv list (never a shell string).</summary>
public static class QemuImg
{
    /// <summary>The program; a bare name is looked up on PATH.</summary>
    public static string Program { get; set; } = "qemu-img";

    /// <summary>Reads an image's format, size and backing file (with <c>-U</c>, so a running VM's disk can be read too).</summary>
    public static async Task<DiskImageInfo> InfoAsync(string image, CancellationToken cancel)
    {
        var result = await RunAsync(["info", "-U", "--output=json", image], $"read the disk image {image}", cancel);
        return JsonSerializer.Deserialize(result, QemuImgJson.Default.DiskImageInfo)
            ?? throw new VmNetException($"qemu-img info {image} printed no image description", ExitCodes.Failure);
    }

    /// <summary>Creates a qcow2 overlay whose backing file is <paramref name="baseImage"/> (qcow2); the base is never written.</summary>
    public static Task CreateOverlayAsync(string baseImage, string overlay, CancellationToken cancel) =>
        RunAsync(["create", "-q", "-f", "qcow2", "-b", baseImage, "-F", "qcow2", overlay], $"create the overlay {overlay}", cancel);

    /// <summary>Grows <paramref name="image"/> to <paramref name="sizeMiB"/> MiB.</summary>
    public static Task ResizeAsync(string image, long sizeMiB, CancellationToken cancel) =>
        RunAsync(["resize", "-q", "-f", "qcow2", image, $"{sizeMiB}M"], $"resize {image} to {sizeMiB} MiB", cancel);

    private static async Task<string> RunAsync(IReadOnlyList<string> arguments, string what, CancellationToken cancel)
    {
        BufferedCommandResult result;
        try
        {
            result = await CliWrap.Cli.Wrap(Program).WithArguments(arguments).WithValidation(CommandResultValidation.None)
                .ExecuteBufferedAsync(cancel);
        }
        catch (Win32Exception e)
        {
            throw new VmNetException($"cannot {what}: {Program} is not installed ({e.Message}); install qemu-utils (scripts/install-deps.sh)", ExitCodes.Failure, e);
        }
        if (result.ExitCode != 0)
        {
            var detail = string.Join("; ", result.StandardError.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
            throw new VmNetException($"cannot {what}: qemu-img {arguments[0]} exited with {result.ExitCode}: {detail}", ExitCodes.Failure);
        }
        return result.StandardOutput;
    }
}
