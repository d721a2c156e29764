using CliWrap.Buffered;
using VmNet.Tests.Support;

namespace VmNet.Tests.Rendering.Consumers;

/// <summary>Runs an external consumer with a timeout and returns what it said; never throws on a non-zero exit.</summary>
internal static class Tools
{
    public static Task<BufferedCommandResult> Run(string tool, IEnumerable<string> args, TimeSpan? timeout = null) =>
        RequiredTool.Run(tool, args, timeout ?? TimeSpan.FromSeconds(20));

    public static string Describe(BufferedCommandResult r) =>
        $"exit {r.ExitCode}\nstdout:\n{r.StandardOutput}\nstderr:\n{r.StandardError}";
}
