using CliWrap;
using CliWrap.Buffered;
using VmNet.Tests.Support;

namespace VmNet.Tests.Consumers;

/// <summary>Runs an external consumer with a timeout and returns what it said; never throws on a non-zero exit.</summary>
internal static class Tools
{
    public static async Task<BufferedCommandResult> Run(string tool, IEnumerable<string> args, TimeSpan? timeout = null)
    {
        var path = RequiredTool.Path(tool);
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(TestContext.Current.CancellationToken);
        cts.CancelAfter(timeout ?? TimeSpan.FromSeconds(20));
        return await CliWrap.Cli.Wrap(path).WithArguments(args)
            .WithValidation(CommandResultValidation.None)
            .ExecuteBufferedAsync(cts.Token);
    }

    public static string Describe(BufferedCommandResult r) =>
        $"exit {r.ExitCode}\nstdout:\n{r.StandardOutput}\nstderr:\n{r.StandardError}";
}
