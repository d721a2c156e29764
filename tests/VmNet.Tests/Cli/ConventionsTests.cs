using System.Text.RegularExpressions;
using VmNet.Cli;

namespace VmNet.Tests.Cli;

/// <summary>
/// The command line's conventions (issue 14): `vmnet help [COMMAND]`, did-you-mean for commands and options, the
/// version line with the agent's version, and one `--timeout` default for `down` and `rm`.
/// </summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public class ConventionsTests
{
    private static (int Code, string Out, string Err) Run(params string[] args)
    {
        var (o, e) = (new StringWriter(), new StringWriter());
        var code = VmNetCli.Run(args, o, e);
        return (code, o.ToString(), e.ToString());
    }

    [Theory]
    [InlineData("up")]
    [InlineData("rm")]
    [InlineData("host", "apply")]
    public void Help_of_a_command_is_its_help_option(params string[] command)
    {
        var help = Run(["help", .. command]);
        var option = Run([.. command, "--help"]);

        Assert.Equal((0, ""), (help.Code, help.Err));
        Assert.Equal(option, help);
        Assert.Contains($" {string.Join(' ', command)} ", help.Out.Split('\n').SkipWhile(l => l != "Usage:").ElementAt(1));
    }

    [Fact]
    public void Help_alone_is_the_whole_tools_help_and_lists_help_among_the_commands()
    {
        var help = Run("help");
        Assert.Equal(Run("--help"), help);
        Assert.Matches(@"(?m)^  help <COMMAND> +Show help for vmnet or one of its commands$", help.Out);
        Assert.Equal((2, "", "vmnet: `vmnet` has no command `stauts`; did you mean `status`?\nRun `vmnet --help` for its commands.\n"), Run("help", "stauts"));
        Assert.Equal((2, "", "vmnet: `vmnet host` has no command `nosuch`\nRun `vmnet host --help` for its commands.\n"), Run("help", "host", "nosuch"));
    }

    [Theory]
    [InlineData(new[] { "stauts", "vm1" }, "`stauts`: did you mean `status`?", "vmnet --help")]
    [InlineData(new[] { "hepl" }, "`hepl`: did you mean `help`?", "vmnet --help")]
    [InlineData(new[] { "host", "aply" }, "`aply`: did you mean `apply`?", "vmnet host --help")]
    [InlineData(new[] { "up", "--dryrun", "vm.yaml" }, "`--dryrun`: did you mean `--dry-run`?", "vmnet up --help")]
    [InlineData(new[] { "ls", "--jsn" }, "`--jsn`: did you mean `--json`?", "vmnet ls --help")]
    [InlineData(new[] { "status", "vm1", "--conect", "test:///default" }, "`--conect`: did you mean `--connect`?", "vmnet status --help")]
    [InlineData(new[] { "gc", "--stat-dir", "/tmp/x" }, "`--stat-dir`: did you mean `--state-dir`?", "vmnet gc --help")]
    public void A_mistyped_command_or_option_gets_the_nearest_name_and_exit_2(string[] args, string hint, string usage)
    {
        var (code, output, error) = Run(args);

        Assert.Equal((2, ""), (code, output));
        Assert.Contains($"vmnet: {hint}\n", error);
        Assert.EndsWith($"Run `{usage}` for usage.\n", error);
        Assert.DoesNotContain("Required command was not provided", error);
        Assert.DoesNotContain("   at ", error);
    }

    [Fact]
    public void A_token_near_no_name_gets_no_guess()
    {
        var (code, _, error) = Run("zzzzzzzz");
        Assert.Equal(2, code);
        Assert.DoesNotContain("did you mean", error);
        Assert.Contains("Unrecognized command or argument 'zzzzzzzz'", error);
    }

    [Fact]
    public void A_typed_control_character_is_escaped_in_the_hint()
    {
        var (_, _, error) = Run("stat\u001bus", "vm1");
        Assert.Contains("`stat\\x1bus`: did you mean `status`?", error);
        Assert.DoesNotContain("\u001b", error.Split('\n').Single(l => l.Contains("did you mean")));
    }

    [Theory]
    [InlineData("status", "status", 0)]
    [InlineData("stauts", "status", 1)]
    [InlineData("sttaus", "status", 1)]
    [InlineData("--dryrun", "--dry-run", 1)]
    [InlineData("", "up", 2)]
    [InlineData("abc", "xyz", 3)]
    public void The_distance_counts_edits_and_swaps(string a, string b, int distance) =>
        Assert.Equal(distance, VmNetCli.Distance(a, b));

    [Fact]
    public void The_version_names_vmnet_the_agent_it_would_ship_and_the_commit()
    {
        using var dir = new TempDir();
        var agent = dir.Write("vmnet-agent", "#!/bin/sh\n[ \"$1\" = --version ] && echo 'vmnet-agent 0.1.0'\n");
        File.SetUnixFileMode(agent, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        var notAgent = dir.Write("other", "#!/bin/sh\necho hello\n");
        File.SetUnixFileMode(notAgent, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);

        Assert.Matches(@"^vmnet \d+\.\d+\.\d+ \(agent 0\.1\.0, [0-9a-f]{7,12}\)$", VmNetCli.VersionLine(agent));
        Assert.Matches(@"^vmnet \d+\.\d+\.\d+ \(agent not found, [0-9a-f]{7,12}\)$", VmNetCli.VersionLine(null));
        Assert.EndsWith($"(agent {notAgent} is no vmnet-agent, ", VmNetCli.VersionLine(notAgent)[..(VmNetCli.VersionLine(notAgent).LastIndexOf(", ", StringComparison.Ordinal) + 2)]);
        Assert.Contains($"(agent {dir["missing"]} did not start, ", VmNetCli.VersionLine(dir["missing"]));

        var (code, output, error) = Run("--version");
        Assert.Equal((0, ""), (code, error));
        Assert.Matches(@"^vmnet \d+\.\d+\.\d+ \(agent .+, [0-9a-f]{7,12}\)\n$", output);
    }

    [Fact]
    public void Down_and_rm_wait_the_same_time_for_a_guest_to_power_off()
    {
        foreach (var command in new[] { "down", "rm" })
        {
            var help = Run(command, "--help").Out;
            var line = help.Split('\n').Single(l => l.TrimStart().StartsWith("--timeout", StringComparison.Ordinal));
            Assert.EndsWith($"[default: {LaunchCommands.StopTimeoutSeconds}]", line.TrimEnd());
        }
        Assert.Contains("-f, --force", Run("rm", "--help").Out);
        Assert.Contains("a running one only with --force", Run("rm", "--help").Out);
    }

    /// <summary>The top-level help lists every visible command once, in its group; a command in no group would be missing.</summary>
    [Fact]
    public void The_top_level_help_groups_every_command()
    {
        var help = Run("--help").Out;

        var groups = Regex.Matches(help, @"(?m)^(VMs|The host|Trials|The shell):$").Select(m => m.Groups[1].Value).ToList();
        Assert.Equal(["VMs", "The host", "Trials", "The shell"], groups);
        var listed = Regex.Matches(help, @"(?m)^  ([a-z]+)(?: <[A-Za-z]+>)? {2,}").Select(m => m.Groups[1].Value).ToList();
        var visible = CliDocs.Walk(RootForDocs()).Where(c => !c.Path.Contains(' ')).Select(c => c.Path).ToList();
        Assert.Equal(visible.Order(), listed.Intersect(visible).Order());
        Assert.Equal(visible.Order(), CliDocs.Groups.SelectMany(g => g.Commands).Order());
        Assert.DoesNotContain("Commands:", help);
    }

    /// <summary>Every visible command has examples in its help and the man page, and each example line is a command
    /// line vmnet parses without an error (so an example cannot name an option that is gone).</summary>
    [Fact]
    public void Every_command_has_examples_and_every_example_parses()
    {
        var root = RootForDocs();
        foreach (var (path, _) in CliDocs.Walk(root).Where(c => c.Path is not ("sim" or "host ls")))
        {
            Assert.True(CliDocs.Examples.ContainsKey(path), $"`vmnet {path}` has no examples");
            var help = Run([.. path.Split(' '), "--help"]).Out;
            Assert.Contains("Examples:\n", help);
            foreach (var (_, line) in CliDocs.Examples[path]) Assert.Contains($"    {line}\n", help);
        }
        var man = Run("man", "--date", "2026-01-01").Out;
        foreach (var (path, examples) in CliDocs.Examples)
            foreach (var (_, line) in examples)
            {
                Assert.Contains(line.Replace("-", "\\-"), man);
                foreach (var command in line.Split(["&&", "|"], StringSplitOptions.TrimEntries).Where(c => c.StartsWith("vmnet ", StringComparison.Ordinal)))
                {
                    var words = command["vmnet ".Length..].Split(' ', StringSplitOptions.RemoveEmptyEntries);
                    var parsed = root.Parse(words);
                    Assert.True(parsed.Errors.Count == 0, $"the example `{command}` of `vmnet {path}` does not parse: {string.Join("; ", parsed.Errors.Select(e => e.Message))}");
                }
            }
    }

    /// <summary>The command tree as `vmnet` builds it (through the completion command's generator, which walks the same tree).</summary>
    private static System.CommandLine.RootCommand RootForDocs() => VmNetCli.BuildForDocs();
}
