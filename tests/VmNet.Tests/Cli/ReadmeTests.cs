using CliWrap;
using CliWrap.Buffered;
using VmNet.Tests.Support;

namespace VmNet.Tests.Cli;

/// <summary>
/// The README's shell blocks run as written: each block after the first is one bash script (set -e), with
/// `dotnet run --project launcher --` standing for the built vmnet and out/ for a temporary directory. A block
/// containing `images/lab/demo.sh` (the "Try it without hardware" demo, minutes in the emulated lab) is skipped here:
/// VmNet.Tests.Boots.Lab.LabDemoTests runs it, in the serialized "Lab" collection.
/// </summary>
public class ReadmeTests
{
    private const string Prefix = "dotnet run --project launcher -- ";

    /// <summary>The README's ```sh blocks, in order, each as one text.</summary>
    public static List<string> ShellBlocks()
    {
        var blocks = new List<string>();
        List<string>? current = null;
        foreach (var line in File.ReadAllLines(Repo.File("README.md")))
        {
            if (line.StartsWith("```", StringComparison.Ordinal))
            {
                if (current is not null) { blocks.Add(string.Join('\n', current)); current = null; }
                else if (line == "```sh") current = [];
                continue;
            }
            current?.Add(line);
        }
        return blocks;
    }

    public static TheoryData<int> Blocks() => new(Enumerable.Range(1, ShellBlocks().Count - 1)
        .Where(i => !ShellBlocks()[i].Contains(LabDemoTests.Command, StringComparison.Ordinal)));

    [Fact]
    public void The_readme_opens_with_the_dry_run_and_the_test_command()
    {
        Assert.Equal(
            "scripts/install-deps.sh && dotnet run --project launcher -- up examples/vm.yaml --dry-run --host-root examples/hosts/connectx5\nscripts/test.sh",
            ShellBlocks()[0]);
        Assert.Contains("scripts/test.sh", File.ReadAllText(Repo.File(".ci/run")));
    }

    [Theory]
    [MemberData(nameof(Blocks))]
    public async Task A_readme_shell_block_runs_as_written(int block)
    {
        using var tmp = new TempDir();
        var script = ShellBlocks()[block]
            .Replace(Prefix, $"dotnet {typeof(VmNet.Cli.VmNetCli).Assembly.Location} ", StringComparison.Ordinal)
            .Replace(" out/", $" {tmp.Path}/out/", StringComparison.Ordinal);
        Assert.Contains("dotnet ", script);

        var result = await CliWrap.Cli.Wrap("bash").WithArguments(["-euo", "pipefail", "-c", script])
            .WithWorkingDirectory(Repo.Root)
            .WithEnvironmentVariables(e => e.Set("VMNET_STATE_DIR", tmp["state"]))
            .WithValidation(CommandResultValidation.None)
            .ExecuteBufferedAsync(TestContext.Current.CancellationToken);

        Assert.True(result.ExitCode == 0, $"README block {block} exited {result.ExitCode}:\n{script}\n{result.StandardOutput}\n{result.StandardError}");
        Assert.NotEmpty(result.StandardOutput);
    }

    /// <summary>The output the README shows after "$ vmnet ..." lines is what that command prints (up to "...").</summary>
    [Theory]
    [InlineData("vmnet host --host-root examples/hosts/connectx5")]
    [InlineData("vmnet host --summary --host-root examples/hosts/connectx5")]
    [InlineData("vmnet doctor --host-root examples/hosts/connectx5")]
    public void The_output_shown_in_the_readme_is_what_the_command_prints(string command)
    {
        var lines = File.ReadAllLines(Repo.File("README.md"));
        var at = Array.IndexOf(lines, "$ " + command);
        Assert.True(at >= 0, $"README shows no `$ {command}`");
        var shown = lines.Skip(at + 1).TakeWhile(l => !l.StartsWith("$ ", StringComparison.Ordinal) && l != "```" && l != "  ...").ToList();
        using var state = new TempDir();
        var (o, e) = (new StringWriter(), new StringWriter());

        VmNet.Cli.VmNetCli.Run([.. command.Split(' ').Skip(1).Select(a => a.StartsWith("examples/", StringComparison.Ordinal) ? Repo.File(a) : a), "--state-dir", state.Path], o, e);

        Assert.Equal(shown, o.ToString().Split('\n').Take(shown.Count));
    }
}
