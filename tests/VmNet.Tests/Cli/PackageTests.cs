using System.Text.RegularExpressions;
using CliWrap;
using CliWrap.Buffered;

namespace VmNet.Tests.Cli;

/// <summary>
/// Builds the Debian package once (scripts/package.sh, from the NativeAOT binaries of scripts/publish.sh) and unpacks
/// it into a throwaway root with <c>dpkg -x</c>, where the installed files are run.
/// </summary>
public sealed class PackageFixture : IAsyncLifetime
{
    private readonly TempDir _dir = new();
    public string Deb { get; private set; } = "";
    public string Root => _dir["root"];
    public string Build { get; private set; } = "";
    public string? Problem { get; private set; }

    public async ValueTask InitializeAsync()
    {
        foreach (var tool in new[] { "dpkg-deb", "dpkg", "lintian", "man", "objdump" })
            if (RequiredTool.Find(tool) is null) { Problem = RequiredTool.MissingMessage(tool); return; }
        var (output, exit, error) = await Task.Run(() => Repo.RunScript("scripts/package.sh", [_dir["out"]], TimeSpan.FromMinutes(15)));
        Build = output + error;
        if (exit != 0) throw new InvalidOperationException($"scripts/package.sh exited {exit}:\n{Build}");
        Deb = output.Trim().Split('\n')[^1];
        await CliWrap.Cli.Wrap("dpkg").WithArguments(["-x", Deb, Root]).ExecuteBufferedAsync();
    }

    public ValueTask DisposeAsync()
    {
        _dir.Dispose();
        return ValueTask.CompletedTask;
    }
}

/// <summary>
/// Issue 14: VmNet installs as a Debian package. Its file list, modes and control fields; lintian with no error or
/// warning (and no override); and the installed files at work:
/// `vmnet --version` finding the packaged agent, `vmnet doctor --help`, the man page through `man -l`, the bash
/// completion sourced into bash (`complete -p`, a subcommand, a VM's name). The fast tier: the NativeAOT publish it
/// needs is cached (.cache/publish) and shared with the lab, which publishes the same binaries.
/// </summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed class PackageTests(PackageFixture fixture, ITestOutputHelper output) : IClassFixture<PackageFixture>
{
    private string Deb
    {
        get
        {
            if (fixture.Problem is { } problem) Unavailable.Here(problem);
            return fixture.Deb;
        }
    }

    private static async Task<(int Exit, string Out, string Err)> Run(string program, IEnumerable<string> args, IReadOnlyDictionary<string, string?>? env = null)
    {
        var r = await CliWrap.Cli.Wrap(program).WithArguments(args).WithValidation(CommandResultValidation.None)
            .WithEnvironmentVariables(env ?? new Dictionary<string, string?>()).ExecuteBufferedAsync(TestContext.Current.CancellationToken);
        return (r.ExitCode, r.StandardOutput, r.StandardError);
    }

    private static string Version() =>
        Regex.Match(File.ReadAllText(Repo.File("Directory.Build.props")), "<Version>(.+?)</Version>").Groups[1].Value;

    [Fact]
    public async Task The_package_holds_the_tool_the_agent_the_unit_the_config_completion_man_page_and_reference()
    {
        var deb = Deb;
        output.WriteLine(fixture.Build);
        Assert.Equal($"vmnet_{Version()}_amd64.deb", Path.GetFileName(deb));
        var (_, list, _) = await Run("dpkg-deb", ["-c", deb]);
        output.WriteLine(list);
        var files = Regex.Matches(list, @"^(\S+) root/root +\d+ \S+ \S+ \./(\S+)$", RegexOptions.Multiline)
            .Where(m => m.Groups[1].Value.StartsWith('-')).ToDictionary(m => "/" + m.Groups[2].Value, m => m.Groups[1].Value);
        Assert.Equal(new Dictionary<string, string>
        {
            ["/etc/vmnet/host.yaml"] = "-rw-r--r--",
            ["/lib/systemd/system/vmnet-host.service"] = "-rw-r--r--",
            ["/usr/bin/vmnet"] = "-rwxr-xr-x",
            ["/usr/lib/vmnet/vmnet-agent"] = "-rwxr-xr-x",
            ["/usr/share/bash-completion/completions/vmnet"] = "-rw-r--r--",
            ["/usr/share/doc/vmnet/changelog.gz"] = "-rw-r--r--",
            ["/usr/share/doc/vmnet/copyright"] = "-rw-r--r--",
            ["/usr/share/doc/vmnet/examples/vm.yaml"] = "-rw-r--r--",
            ["/usr/share/man/man1/vmnet.1.gz"] = "-rw-r--r--",
            ["/usr/share/vmnet/vm.reference.yaml"] = "-rw-r--r--",
            ["/usr/share/vmnet/vm.schema.json"] = "-rw-r--r--",
            ["/usr/share/vmnet/vmnet-output.schema.json"] = "-rw-r--r--",
        }, files);
        Assert.DoesNotContain(" ./usr/local", list);

        var (_, control, _) = await Run("dpkg-deb", ["-f", deb]);
        output.WriteLine(control);
        Assert.Contains("Package: vmnet\n", control);
        Assert.Contains($"Version: {Version()}\n", control);
        Assert.Contains("Architecture: amd64\n", control);
        Assert.Contains("Section: admin\n", control);
        Assert.Matches(@"(?m)^Depends: libc6 \(>= 2\.\d+\), libvirt0, iproute2, kmod, qemu-utils$", control);
        Assert.Matches(@"(?m)^Installed-Size: \d+$", control);
        var (_, conffiles, _) = await Run("dpkg-deb", ["-I", deb, "conffiles"]);
        Assert.Equal("/etc/vmnet/host.yaml\n", conffiles);

        // The unit runs the packaged vmnet on the packaged config, before libvirt.
        var unit = File.ReadAllText(Path.Join(fixture.Root, "lib/systemd/system/vmnet-host.service"));
        Assert.Contains("ExecStart=/usr/bin/vmnet --state-dir /var/lib/vmnet host apply --config /etc/vmnet/host.yaml\n", unit);
        Assert.Contains("ExecStart=/usr/bin/vmnet --state-dir /var/lib/vmnet host prepare\n", unit);
        Assert.Contains("Before=libvirtd.service virtqemud.service libvirt-guests.service\n", unit);
        Assert.Contains("Documentation=man:vmnet(1)\n", unit);
        Assert.DoesNotContain("sys-subsystem-net-devices", unit); // generic: it names no PF of the machine that built it
        Assert.Equal(File.ReadAllText(Repo.File("templates/vm.reference.yaml")), File.ReadAllText(Path.Join(fixture.Root, "usr/share/vmnet/vm.reference.yaml")));
    }

    [Fact]
    public void The_readmes_install_section_names_the_script_and_the_package_it_builds()
    {
        var readme = File.ReadAllText(Repo.File("README.md"));
        Assert.Contains($"$ scripts/package.sh\nout/package/vmnet_{Version()}_amd64.deb\n$ sudo apt install ./out/package/vmnet_{Version()}_amd64.deb\n", readme);
        Assert.Contains("(default DIR: out/package)", File.ReadAllText(Repo.File("scripts/package.sh")));
    }

    [Fact]
    public async Task Lintian_finds_no_error_and_no_warning()
    {
        var deb = Deb;
        var (exit, text, error) = await Run("lintian", ["--fail-on", "error,warning", "--display-info", "--show-overrides", deb]);
        output.WriteLine($"lintian: exit {exit}\n{text}{error}");
        Assert.DoesNotMatch(@"(?m)^[EWO]: ", text);
        Assert.True(exit == 0, $"lintian exited {exit}:\n{text}{error}");
    }

    [Fact]
    public async Task The_installed_vmnet_names_its_version_and_the_packaged_agent_and_runs_a_commands_help()
    {
        _ = Deb;
        var vmnet = Path.Join(fixture.Root, "usr/bin/vmnet");
        var (exit, version, error) = await Run(vmnet, ["--version"]);
        Assert.True(exit == 0, error);
        Assert.Matches($@"^vmnet {Regex.Escape(Version())} \(agent {Regex.Escape(Version())}, [0-9a-f]{{7,12}}\)\n$", version);

        var help = await Run(vmnet, ["doctor", "--help"]);
        Assert.Equal((0, ""), (help.Exit, help.Err));
        Assert.Contains("Usage:\n  vmnet doctor [options]", help.Out);
        Assert.Equal(help, await Run(vmnet, ["help", "doctor"]));
    }

    [Fact]
    public async Task The_man_page_reads_with_man_and_groff_has_nothing_to_warn_about()
    {
        _ = Deb;
        var page = Path.Join(fixture.Root, "usr/share/man/man1/vmnet.1.gz");
        var env = new Dictionary<string, string?> { ["MANPAGER"] = "cat", ["PAGER"] = "cat", ["MANWIDTH"] = "100", ["LC_ALL"] = "C" };
        var (exit, text, error) = await Run("man", ["--warnings", "-l", page], env);
        output.WriteLine(text);
        Assert.True(exit == 0, error);
        Assert.Equal("", error);
        Assert.StartsWith("VMNET(1)", text.TrimStart());
        foreach (var section in new[] { "NAME", "SYNOPSIS", "DESCRIPTION", "COMMANDS", "ENVIRONMENT", "FILES", "EXIT STATUS", "EXAMPLES", "SEE ALSO" })
            Assert.Matches($"(?m)^{section}$", text);
        // Every command of --help, with its options.
        foreach (var command in new[] { "vmnet up SPEC", "vmnet rm NAME", "vmnet host apply", "vmnet host boot-unit", "vmnet completion SHELL", "vmnet help [COMMAND]" })
            Assert.Matches($"(?m)^   {Regex.Escape(command)}$", text);
        Assert.Contains("--dry-run", text);
        Assert.Contains("-f, --force", text);
        Assert.DoesNotContain("vmnet man", text);
    }

    [Fact]
    public async Task Bash_completion_from_the_installed_file_completes_commands_options_and_vm_names()
    {
        _ = Deb;
        using var dir = new TempDir();
        // A libvirt test driver host holding one VmNet domain (it carries vmnet's metadata) and one other.
        var node = dir.Write("node.xml",
            "<node>\n" +
            $"  <domain type='test'><name>ceph-osd-1</name><memory>1048576</memory><os><type>hvm</type></os><metadata><vmnet:vm xmlns:vmnet='{VmNet.Rendering.Renderer.XmlNamespace}'/></metadata></domain>\n" +
            "  <domain type='test'><name>not-ours</name><memory>1048576</memory><os><type>hvm</type></os></domain>\n" +
            "</node>\n");
        var completion = Path.Join(fixture.Root, "usr/share/bash-completion/completions/vmnet");
        string Complete(string line) =>
            $"COMP_WORDS=({line}); COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 )); COMPREPLY=(); _vmnet; echo \"[{line.Replace("'", "", StringComparison.Ordinal).Replace(dir.Path, "DIR", StringComparison.Ordinal)}] ${{COMPREPLY[*]}}\"";
        var script = string.Join("\n",
            $"source '{completion}'",
            "complete -p vmnet",
            Complete("vmnet st"),
            Complete("vmnet host a"),
            Complete("vmnet up --dry"),
            Complete("vmnet up --backend ''"),
            Complete("vmnet help ''"),
            Complete($"vmnet --state-dir '{dir["state"]}' rm --connect 'test://{node}' ''"));
        var env = new Dictionary<string, string?> { ["PATH"] = $"{Path.Join(fixture.Root, "usr/bin")}:/usr/bin:/bin" };
        var (exit, text, error) = await Run("bash", ["--norc", "--noprofile", "-c", script], env);
        output.WriteLine(text + error);

        Assert.True(exit == 0, error);
        Assert.Contains("complete -F _vmnet vmnet\n", text);
        Assert.Contains("[vmnet st] status\n", text);
        Assert.Contains("[vmnet host a] apply\n", text);
        Assert.Contains("[vmnet up --dry] --dry-run\n", text);
        Assert.Contains("[vmnet up --backend ] libvirt qemu\n", text);
        Assert.Contains("[vmnet help ] help up validate sim rm gc host doctor status ls down console completion\n", text);
        Assert.Contains("[vmnet --state-dir DIR/state rm --connect test://DIR/node.xml ] ceph-osd-1\n", text);
        Assert.DoesNotContain("not-ours", text);
    }
}
