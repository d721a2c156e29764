using CliWrap;
using CliWrap.Buffered;

namespace VmNet.Tests.Support;

/// <summary>
/// Locates external tools the tests need. A missing tool fails the test when CI=true (CI must never skip silently)
/// and otherwise skips it loudly, with a message that says how to install it.
/// </summary>
public static class RequiredTool
{
    private static readonly string[] ExtraDirectories = ["/usr/sbin", "/sbin"];

    /// <summary>Full path of <paramref name="name"/> from PATH, /usr/sbin or /sbin; fails (CI=true) or skips the test if missing.</summary>
    public static string Path(string name)
    {
        if (Find(name) is { } path) return path;
        Unavailable.Here(MissingMessage(name));
        return ""; // unreachable
    }

    /// <summary>Full path of an executable <paramref name="name"/> on PATH, /usr/sbin or /sbin, or null.</summary>
    public static string? Find(string name)
    {
        var directories = (Environment.GetEnvironmentVariable("PATH") ?? "")
            .Split(System.IO.Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries)
            .Concat(ExtraDirectories);
        const UnixFileMode anyExecute = UnixFileMode.UserExecute | UnixFileMode.GroupExecute | UnixFileMode.OtherExecute;
        return directories.Select(d => System.IO.Path.Combine(d, name))
            .FirstOrDefault(c => File.Exists(c) && (OperatingSystem.IsWindows() || (File.GetUnixFileMode(c) & anyExecute) != 0));
    }

    public static string MissingMessage(string name) => $"{name} missing: run scripts/install-deps.sh";

    /// <summary>Runs <paramref name="name"/> (located with <see cref="Path"/>) with a timeout; returns the buffered result without checking the exit code.</summary>
    public static async Task<BufferedCommandResult> Run(string name, IEnumerable<string> arguments, TimeSpan? timeout = null)
    {
        using var cts = new CancellationTokenSource(timeout ?? TimeSpan.FromSeconds(30));
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cts.Token, TestContext.Current.CancellationToken);
        return await CliWrap.Cli.Wrap(Path(name))
            .WithArguments(arguments)
            .WithValidation(CommandResultValidation.None)
            .ExecuteBufferedAsync(linked.Token);
    }
}
