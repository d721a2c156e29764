using CliWrap;
using CliWrap.Buffered;
using VmNet.Tests.Support;

namespace VmNet.Tests;

/// <summary>Every vmnet command the README shows runs and succeeds (paths under out/ go to a temp directory).</summary>
public class ReadmeSpecs
{
    private const string Prefix = "dotnet run --project launcher -- ";

    public static TheoryData<string> Commands()
    {
        var lines = File.ReadAllLines(Repo.File("README.md"));
        var data = new TheoryData<string>();
        var inShell = false;
        foreach (var line in lines)
        {
            if (line.StartsWith("```", StringComparison.Ordinal)) { inShell = line == "```sh"; continue; }
            if (!inShell) continue;
            var at = line.IndexOf(Prefix, StringComparison.Ordinal);
            if (at >= 0) data.Add(line[(at + Prefix.Length)..]);
        }
        return data;
    }

    [Fact]
    public void The_readme_opens_with_the_dry_run_and_the_test_command()
    {
        var block = File.ReadAllText(Repo.File("README.md")).Split("```")[1];

        Assert.Equal(
            ["sh", "scripts/install-deps.sh && dotnet run --project launcher -- up examples/vm.yaml --dry-run --host-root examples/hosts/connectx5", "scripts/test.sh"],
            block.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.Contains("scripts/test.sh", File.ReadAllText(Repo.File(".ci/run")));
    }

    [Theory]
    [MemberData(nameof(Commands))]
    public async Task A_readme_command_succeeds(string command)
    {
        using var tmp = new TempDir();
        var args = command.Split(' ', StringSplitOptions.RemoveEmptyEntries)
            .Select(a => a.StartsWith("out/", StringComparison.Ordinal) ? tmp[a] : a);

        var result = await CliWrap.Cli.Wrap("dotnet").WithArguments([typeof(VmNet.Cli.VmNetCli).Assembly.Location, .. args])
            .WithWorkingDirectory(Repo.Root)
            .WithEnvironmentVariables(e => e.Set("VMNET_STATE_DIR", tmp["state"]))
            .WithValidation(CommandResultValidation.None)
            .ExecuteBufferedAsync(TestContext.Current.CancellationToken);

        Assert.True(result.ExitCode == 0, $"`vmnet {command}` exited {result.ExitCode}: {result.StandardError}");
        Assert.NotEmpty(result.StandardOutput);
    }
}
