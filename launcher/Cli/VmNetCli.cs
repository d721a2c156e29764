using System.CommandLine;
using VmNet.Backends;
using VmNet.Host;
using VmNet.Planning;
using VmNet.Sim;
using VmNet.Spec;
using VmNet.State;

namespace VmNet.Cli;

/// <summary>The <c>vmnet</c> command line: a thin layer over spec, plan and render.</summary>
public static class VmNetCli
{
    public static int Run(string[] args) => Run(args, Console.Out, Console.Error);

    public static int Run(string[] args, TextWriter stdout, TextWriter stderr)
    {
        if (args is ["--version"])
        {
            stdout.WriteLine(VersionLine(Seed.SeedImage.FindAgentQuietly()));
            return ExitCodes.Ok;
        }
        var root = Build(stdout, stderr);
        var parsed = root.Parse(args);
        if (parsed.Errors.Count == 0 && parsed.GetValue(QuietOption) && parsed.GetValue(VerboseOption))
        {
            stderr.WriteLine("vmnet: --quiet and --verbose exclude each other; give one of them");
            return ExitCodes.InvalidInput;
        }
        // --quiet: the commands that only report what they did say nothing on success (errors still go to stderr);
        // what a command is asked for (a listing, JSON, a unit on stdout) is still printed.
        if (parsed.Errors.Count == 0 && parsed.GetValue(QuietOption) && parsed.CommandResult.Command.Name is "rm" or "down" or "gc" or "apply" or "prepare" or "create"
            && !parsed.CommandResult.Children.OfType<System.CommandLine.Parsing.OptionResult>().Any(o => o.Option.Name == "--json"))
        {
            root = Build(TextWriter.Null, stderr);
            parsed = root.Parse(args);
        }
        if (parsed.Errors.Count > 0)
        {
            var hints = Suggestions(parsed, args).ToList();
            foreach (var e in parsed.Errors)
                if (hints.Count == 0 || e.Message != "Required command was not provided.") stderr.WriteLine($"vmnet: {e.Message}");
            foreach (var hint in hints) stderr.WriteLine($"vmnet: {hint}");
            var command = string.Join(' ', parsed.CommandResult.Command is RootCommand ? [] : CommandPath(parsed.CommandResult));
            stderr.WriteLine($"Run `vmnet {(command.Length > 0 ? command + " " : "")}--help` for usage.");
            return ExitCodes.InvalidInput;
        }
        try
        {
            // VmNet turns SIGINT and SIGTERM into a rollback itself (HostCommands.WithSignals); System.CommandLine's own
            // handling would end the process after a timeout, in the middle of that rollback.
            if (parsed.Action is System.CommandLine.Help.HelpAction)
            {
                // System.CommandLine's help, with the commands grouped and each command's examples.
                var help = new StringWriter();
                var code = parsed.Invoke(new InvocationConfiguration { Output = help, Error = stderr, EnableDefaultExceptionHandler = false });
                stdout.Write(CliDocs.WithGroupsAndExamples(help.ToString(), parsed.CommandResult.Command));
                return code;
            }
            return parsed.Invoke(new InvocationConfiguration { Output = stdout, Error = stderr, EnableDefaultExceptionHandler = false, ProcessTerminationTimeout = null });
        }
        catch (Exception e) when (e is VmNetException || Environment.GetEnvironmentVariable("VMNET_DEBUG") != "1")
        {
            var (message, code) = ErrorTranslator.Describe(e);
            stderr.WriteLine($"vmnet: {message}");
            return code;
        }
    }

    internal static readonly Option<string> HostRootOption = new("--host-root")
    {
        Description = "Root of the host's /sys, /proc and /dev (a simulated host for trials and tests) [env VMNET_HOST_ROOT]",
        DefaultValueFactory = _ => Environment.GetEnvironmentVariable("VMNET_HOST_ROOT") is { Length: > 0 } v ? v : "/",
        Recursive = true,
    };

    internal static readonly Option<bool> QuietOption = new("--quiet", "-q")
    {
        Description = "Say only the result and errors: up prints its summary alone, ls the names, rm, down, gc and host apply nothing on success",
        Recursive = true,
    };

    internal static readonly Option<bool> VerboseOption = new("--verbose", "-v")
    {
        Description = "Say more: up prints every step as it runs (the command or write it makes)",
        Recursive = true,
    };

    /// <summary>How much the command should say, from --quiet and --verbose.</summary>
    internal static Verbosity VerbosityOf(ParseResult r) =>
        r.GetValue(QuietOption) ? Verbosity.Quiet : r.GetValue(VerboseOption) ? Verbosity.Verbose : Verbosity.Normal;

    internal static readonly Option<string> StateDirOption = new("--state-dir")
    {
        Description = "Where leases and VM files live [env VMNET_STATE_DIR]",
        DefaultValueFactory = _ => Environment.GetEnvironmentVariable("VMNET_STATE_DIR") is { Length: > 0 } v ? v : StateDir.DefaultPath,
        Recursive = true,
    };

    /// <summary>The version line: vmnet's, the agent's it would put on a seed (or that none was found), the commit.</summary>
    public static string VersionLine(string? agent)
    {
        var informational = typeof(VmNetCli).Assembly
            .GetCustomAttributes(typeof(System.Reflection.AssemblyInformationalVersionAttribute), false)
            .OfType<System.Reflection.AssemblyInformationalVersionAttribute>().FirstOrDefault()?.InformationalVersion ?? "0.0.0";
        var plus = informational.IndexOf('+', StringComparison.Ordinal);
        var (version, commit) = plus < 0 ? (informational, "unknown commit") : (informational[..plus], informational[(plus + 1)..]);
        if (commit.Length > 12) commit = commit[..12];
        return $"vmnet {version} (agent {AgentVersion(agent)}, {commit})";
    }

    /// <summary>What `vmnet-agent --version` says (its number), or why there is none.</summary>
    private static string AgentVersion(string? agent)
    {
        if (agent is null) return "not found";
        try
        {
            using var process = System.Diagnostics.Process.Start(new System.Diagnostics.ProcessStartInfo(agent, ["--version"])
            { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false });
            if (process is null) return $"{agent} did not start";
            var line = process.StandardOutput.ReadLine() ?? "";
            if (!process.WaitForExit(2000)) { process.Kill(); return $"{agent} did not answer"; }
            return line.StartsWith("vmnet-agent ", StringComparison.Ordinal) && line.Length < 64 ? line["vmnet-agent ".Length..].Trim() : $"{agent} is no vmnet-agent";
        }
        catch (Exception e) when (e is System.ComponentModel.Win32Exception or IOException or InvalidOperationException)
        {
            return $"{agent} did not start";
        }
    }

    /// <summary>The command names from the root to <paramref name="result"/>'s command (without the root).</summary>
    private static IEnumerable<string> CommandPath(System.CommandLine.Parsing.CommandResult result)
    {
        var names = new List<string>();
        for (var r = result; r is not null && r.Command is not RootCommand; r = r.Parent as System.CommandLine.Parsing.CommandResult)
            names.Insert(0, r.Command.Name);
        return names;
    }

    /// <summary>"did you mean" for each token the parser could not place: the nearest subcommand or option of the command it came to.</summary>
    internal static IEnumerable<string> Suggestions(ParseResult parsed, IReadOnlyList<string> args)
    {
        var command = parsed.CommandResult.Command;
        var commands = command.Subcommands.Where(c => !c.Hidden).SelectMany(c => c.Aliases.Prepend(c.Name)).ToList();
        var options = command.Options.Concat(AncestorOptions(parsed.CommandResult)).Where(o => !o.Hidden)
            .SelectMany(o => o.Aliases.Prepend(o.Name)).Distinct().ToList();
        // An unknown option is not always left unmatched: the parser may take it as an argument's value.
        var unknownOptions = args.TakeWhile(a => a != "--").Where(a => a.StartsWith('-') && a.Length > 1)
            .Select(a => a.Split('=', 2)[0]).Where(a => !options.Contains(a) && !a.StartsWith("-?", StringComparison.Ordinal));
        foreach (var token in parsed.UnmatchedTokens.Where(t => !t.StartsWith('-')).Concat(unknownOptions).Distinct())
        {
            var pool = token.StartsWith('-') ? options : commands;
            var best = Nearest(token, pool);
            if (best.Count > 0) yield return $"`{Escape(token)}`: did you mean {string.Join(" or ", best.Select(b => $"`{b}`"))}?";
        }
    }

    /// <summary>Up to three names of <paramref name="pool"/> near <paramref name="token"/>: a few edits away, or starting with it.</summary>
    private static List<string> Nearest(string token, IEnumerable<string> pool) =>
        pool.Select(c => (Name: c, Distance: Distance(token, c)))
            .Where(c => c.Distance <= Math.Max(1, Math.Min(3, c.Name.TrimStart('-').Length / 3)) || (token.Length >= 3 && c.Name.StartsWith(token, StringComparison.Ordinal)))
            .OrderBy(c => c.Distance).ThenBy(c => c.Name, StringComparer.Ordinal).Select(c => c.Name).Take(3).ToList();

    private static IEnumerable<Option> AncestorOptions(System.CommandLine.Parsing.CommandResult result)
    {
        for (var r = result.Parent as System.CommandLine.Parsing.CommandResult; r is not null; r = r.Parent as System.CommandLine.Parsing.CommandResult)
            foreach (var o in r.Command.Options.Where(o => o.Recursive)) yield return o;
    }

    /// <summary>A token as typed, with control characters escaped (it goes to a terminal).</summary>
    private static string Escape(string token) =>
        token.Length > 64 ? Escape(token[..64]) + "..." : string.Concat(token.Select(c => char.IsControl(c) ? $"\\x{(int)c:x2}" : c.ToString()));

    /// <summary>Levenshtein distance (insertions, deletions, substitutions; an adjacent swap counts 1).</summary>
    internal static int Distance(string a, string b)
    {
        var d = new int[a.Length + 1, b.Length + 1];
        for (var i = 0; i <= a.Length; i++) d[i, 0] = i;
        for (var j = 0; j <= b.Length; j++) d[0, j] = j;
        for (var i = 1; i <= a.Length; i++)
            for (var j = 1; j <= b.Length; j++)
            {
                var cost = a[i - 1] == b[j - 1] ? 0 : 1;
                d[i, j] = Math.Min(Math.Min(d[i - 1, j] + 1, d[i, j - 1] + 1), d[i - 1, j - 1] + cost);
                if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) d[i, j] = Math.Min(d[i, j], d[i - 2, j - 2] + 1);
            }
        return d[a.Length, b.Length];
    }

    /// <summary><c>vmnet completion bash</c>: the bash completion script, generated from the commands.</summary>
    private static Command CompletionCommand(TextWriter stdout, RootCommand root)
    {
        var shell = new Argument<string>("SHELL") { Description = "The shell (bash)" };
        shell.AcceptOnlyFromAmong("bash");
        var cmd = new Command("completion", "Print the shell completion script (source it, or install it as /usr/share/bash-completion/completions/vmnet)") { shell };
        cmd.SetAction(_ => { stdout.Write(CliDocs.BashCompletion(root)); return ExitCodes.Ok; });
        return cmd;
    }

    /// <summary><c>vmnet man [--date YYYY-MM-DD]</c> (hidden): the man page vmnet(1) in roff, generated from the commands.</summary>
    private static Command ManCommand(TextWriter stdout, RootCommand root)
    {
        var date = new Option<string?>("--date") { Description = "The page's date (YYYY-MM-DD; default today, UTC)" };
        var cmd = new Command("man", "Print the man page vmnet(1) in roff") { date };
        cmd.Hidden = true;
        cmd.SetAction(r =>
        {
            var text = r.GetValue(date);
            DateOnly day;
            if (text is null) day = DateOnly.FromDateTime(DateTime.UtcNow);
            else if (!DateOnly.TryParseExact(text, "yyyy-MM-dd", System.Globalization.CultureInfo.InvariantCulture, System.Globalization.DateTimeStyles.None, out day))
                throw new VmNetException($"--date must be YYYY-MM-DD, got {Spec.MapReader.Quote(text)}", ExitCodes.InvalidInput);
            var version = VersionLine(null).Split(' ')[1];
            stdout.Write(CliDocs.ManPage(root, version, day));
            return ExitCodes.Ok;
        });
        return cmd;
    }

    /// <summary><c>vmnet help [COMMAND...]</c>: the same text as <c>vmnet [COMMAND...] --help</c>.</summary>
    private static Command HelpCommand(TextWriter stdout, TextWriter stderr)
    {
        var names = new Argument<string[]>("COMMAND") { Description = "The command to describe (e.g. `up`, `host apply`)", Arity = ArgumentArity.ZeroOrMore };
        var cmd = new Command("help", "Show help for vmnet or one of its commands") { names };
        cmd.SetAction(r =>
        {
            var path = r.GetValue(names) ?? [];
            Command at = r.RootCommandResult.Command;
            foreach (var name in path)
            {
                var next = at.Subcommands.FirstOrDefault(c => c.Name == name || c.Aliases.Contains(name));
                if (next is null)
                {
                    var near = Nearest(name, at.Subcommands.Where(c => !c.Hidden).Select(c => c.Name));
                    var prefix = string.Join(' ', path.TakeWhile(p => p != name).Prepend("vmnet"));
                    stderr.WriteLine($"vmnet: `{prefix}` has no command `{Escape(name)}`" + (near.Count > 0 ? $"; did you mean {string.Join(" or ", near.Select(n => $"`{n}`"))}?" : ""));
                    stderr.WriteLine($"Run `{prefix} --help` for its commands.");
                    return ExitCodes.InvalidInput;
                }
                at = next;
            }
            return Run([.. path, "--help"], stdout, stderr);
        });
        return cmd;
    }

    /// <summary>The command tree, writing nowhere (tests of the help and the docs walk it).</summary>
    internal static RootCommand BuildForDocs() => Build(TextWriter.Null, TextWriter.Null);

    private static RootCommand Build(TextWriter stdout, TextWriter stderr)
    {
        var root = new RootCommand("vmnet: VMs with SR-IOV VFs bonded active-backup in the guest, from one YAML spec.");
        root.Subcommands.Add(HelpCommand(stdout, stderr));
        root.Options.Add(HostRootOption);
        root.Options.Add(StateDirOption);
        root.Options.Add(QuietOption);
        root.Options.Add(VerboseOption);
        root.Subcommands.Add(UpCommand(stdout));
        root.Subcommands.Add(ValidateCommand(stdout));
        root.Subcommands.Add(SimCommand(stdout));
        root.Subcommands.Add(HostCommands.Rm(stdout));
        root.Subcommands.Add(HostCommands.Gc(stdout));
        root.Subcommands.Add(HostCommand(stdout));
        root.Subcommands.Add(HostViewCommands.Doctor(stdout));
        root.Subcommands.Add(LaunchCommands.Status(stdout, StateDirOption));
        root.Subcommands.Add(LaunchCommands.List(stdout, StateDirOption));
        root.Subcommands.Add(LaunchCommands.Down(stdout, StateDirOption));
        root.Subcommands.Add(LaunchCommands.ConsoleCommand(StateDirOption));
        root.Subcommands.Add(CompletionCommand(stdout, root));
        root.Subcommands.Add(ManCommand(stdout, root));
        var schema = new Command("spec-schema", "Print the spec's JSON Schema (templates/vm.schema.json), made from the validation itself") { Hidden = true };
        schema.SetAction(_ => { stdout.Write(SpecSchema.Generate(new Rendering.Templates().Source("vm.reference.yaml"))); return ExitCodes.Ok; });
        root.Subcommands.Add(schema);
        return root;
    }

    private static Command UpCommand(TextWriter stdout)
    {
        var spec = new Argument<string>("SPEC") { Description = "The VM's spec (vm.yaml)" };
        var dryRun = new Option<bool>("--dry-run") { Description = "Print the plan and change nothing" };
        var json = new Option<bool>("--json") { Description = "Print the result as JSON, the progress going to stderr (with --dry-run: the plan)" };
        var outDir = new Option<string?>("--out") { Description = "Also write the artifacts to this directory" };
        var templates = new Option<string?>("--templates") { Description = "Read templates from this directory (files there override the embedded ones)" };
        var backend = new Option<string?>("--backend") { Description = "libvirt or qemu (default: the spec's backend)" };
        backend.AcceptOnlyFromAmong("libvirt", "qemu");
        var connect = LaunchCommands.ConnectOption();
        var noWait = new Option<bool>("--no-wait") { Description = "Do not wait for the guest agent's network-ready report" };
        var waitTimeout = new Option<int>("--wait-timeout") { Description = "Seconds to wait for the guest agent", DefaultValueFactory = _ => 300 };
        var noStart = new Option<bool>("--no-start") { Description = "Only reserve, configure and bind the VFs (for a VM started elsewhere)" };
        var hostConfig = HostConfigOption();
        var cmd = new Command("up", "Reserve VFs, configure them, bind them to vfio-pci, and start the VM")
            { spec, dryRun, json, outDir, templates, backend, connect, noWait, waitTimeout, noStart, hostConfig };
        cmd.SetAction(async (r, ct) =>
        {
            var vm = SpecLoader.LoadFile(r.GetValue(spec)!, () => HostConfig.ForSpecs(r.GetValue(hostConfig))?.Named);
            var dry = r.GetValue(dryRun);
            var launch = new LaunchOptions
            {
                Backend = r.GetValue(backend) switch { "qemu" => Backend.Qemu, "libvirt" => Backend.Libvirt, _ => null },
                LibvirtUri = LibvirtBackend.ResolveUri(r.GetValue(connect)),
                Start = !r.GetValue(noStart),
                Wait = !r.GetValue(noWait),
                WaitTimeout = TimeSpan.FromSeconds(r.GetValue(waitTimeout)),
                // Looked for before any host change: a VMNET_AGENT naming no file is refused here.
                Agent = Seed.SeedImage.FindAgent(),
            };
            var options = new UpFlow.Options(launch, r.GetValue(templates), r.GetValue(outDir), dry, r.GetValue(json), VerbosityOf(r));
            var ops = HostCommands.Ops(r);
            if (dry) return await UpFlow.RunAsync(ops, vm, options, stdout, r.InvocationConfiguration.Error, ct);
            return await HostCommands.WithSignals(ct, c => UpFlow.RunAsync(ops, vm, options, stdout, r.InvocationConfiguration.Error, c), vm.Name);
        });
        return cmd;
    }

    /// <summary>--host-config: the host config whose named networks a spec may use (default: /etc/vmnet/host.yaml when it exists).</summary>
    internal static Option<string?> HostConfigOption() => new("--host-config")
    {
        Description = $"The host config whose named networks (network: NAME) the spec may use [default: {HostConfig.DefaultPath} when it exists; env VMNET_HOST_CONFIG]",
        DefaultValueFactory = _ => Environment.GetEnvironmentVariable("VMNET_HOST_CONFIG") is { Length: > 0 } v ? v : null,
    };

    private static Command ValidateCommand(TextWriter stdout)
    {
        var spec = new Argument<string>("SPEC") { Description = "The VM's spec (vm.yaml)" };
        var json = new Option<bool>("--json") { Description = "Print the result as JSON (on stdout, also when the spec is invalid: exit 2 then)" };
        var hostConfig = HostConfigOption();
        var cmd = new Command("validate", "Check a spec without looking at the host (only at the host config's named networks)") { spec, json, hostConfig };
        cmd.SetAction(r =>
        {
            var path = r.GetValue(spec)!;
            if (r.GetValue(json))
            {
                ValidateDocument document;
                try
                {
                    var loaded = SpecLoader.LoadFile(path, () => HostConfig.ForSpecs(r.GetValue(hostConfig))?.Named);
                    document = new ValidateDocument(path, true, loaded.Name, loaded.Networks.Count, loaded.Networks.Sum(n => n.Ports.Count), []);
                }
                catch (SpecException e)
                {
                    document = new ValidateDocument(path, false, null, null, null, e.Errors.Select(p => new SpecProblem(p.Path, p.Message, p.Line, p.Column)).ToList());
                }
                catch (VmNetException e) when (e.ExitCode == ExitCodes.InvalidInput)
                {
                    document = new ValidateDocument(path, false, null, null, null, [new SpecProblem(null, e.Message, null, null)]);
                }
                stdout.WriteLine(System.Text.Json.JsonSerializer.Serialize(document, OutputJson.Default.ValidateDocument));
                return document.Valid ? ExitCodes.Ok : ExitCodes.InvalidInput;
            }
            var vm = SpecLoader.LoadFile(path, () => HostConfig.ForSpecs(r.GetValue(hostConfig))?.Named);
            stdout.WriteLine($"{path}: valid ({vm.Name}: {vm.Networks.Count} network{(vm.Networks.Count == 1 ? "" : "s")}, {vm.Networks.Sum(n => n.Ports.Count)} VFs)");
            return ExitCodes.Ok;
        });
        return cmd;
    }

    private static Command HostCommand(TextWriter stdout)
    {
        var (json, free, summary) = HostViewCommands.ListOptions();
        var host = new Command("host", "The host's SR-IOV PFs and VFs (same as `vmnet host ls`), provisioning and boot preparation")
            { json, free, summary, HostViewCommands.Ls(stdout), HostViewCommands.Networks(stdout) };
        host.SetAction((r, ct) => HostViewCommands.List(r, stdout, r.GetValue(json), r.GetValue(free), r.GetValue(summary), ct));
        HostCommands.AddProvisioning(host, stdout);
        return host;
    }

    private static Command SimCommand(TextWriter stdout)
    {
        var dir = new Argument<string>("DIR") { Description = "Directory to write the simulated host's /sys, /proc and /dev into" };
        var shape = new Option<string>("--shape") { Description = "NIC model: connectx5 or igb", DefaultValueFactory = _ => "connectx5" };
        shape.AcceptOnlyFromAmong("connectx5", "igb");
        var pfs = new Option<int>("--pfs") { Description = "Number of ports (PFs)", DefaultValueFactory = _ => 2 };
        var vfs = new Option<int>("--vfs") { Description = "VFs to create on each PF (sriov_numvfs)", DefaultValueFactory = _ => 8 };
        var total = new Option<int?>("--total-vfs") { Description = "sriov_totalvfs (connectx5: the firmware's NUM_OF_VFS; default 16)" };
        var mtu = new Option<int>("--mtu") { Description = "The PFs' MTU", DefaultValueFactory = _ => 1500 };
        var example = new Option<bool>("--example") { Description = "Write the host shipped in examples/hosts/connectx5 (other options ignored)" };
        var nodes = new Option<int>("--numa-nodes") { Description = "NUMA nodes (1..8)", DefaultValueFactory = _ => 1 };
        var nicNode = new Option<int>("--nic-node") { Description = "The node the NIC sits on (its numa_node)", DefaultValueFactory = _ => 0 };
        var cpus = new Option<int>("--cpus-per-node") { Description = "Host CPUs on each node, numbered node by node", DefaultValueFactory = _ => 8 };
        var memory = new Option<int>("--memory-per-node") { Description = "Memory of each node in GiB", DefaultValueFactory = _ => 32 };
        var huge2m = new Option<int>("--hugepages-2m") { Description = "2 MiB hugepages reserved on each node (nr_hugepages)" };
        var huge1g = new Option<int>("--hugepages-1g") { Description = "1 GiB hugepages reserved on each node (nr_hugepages)" };
        var width = new Option<int?>("--link-width") { Description = "The PCIe width the NIC's slot trained at (default: the card's own, x16 for connectx5)" };
        var create = new Command("create", "Write a simulated host laid out like the kernel's sysfs")
        {
            dir, shape, pfs, vfs, total, mtu, nodes, nicNode, cpus, memory, huge2m, huge1g, width, example,
        };
        create.SetAction(r =>
        {
            if (r.GetValue(example))
            {
                EnsureEmpty(r.GetValue(dir)!);
                SimHost.CreateExample(r.GetValue(dir)!);
                stdout.WriteLine($"wrote the example host to {r.GetValue(dir)}");
                return ExitCodes.Ok;
            }
            var nic = r.GetValue(shape) == "igb" ? NicShape.Igb() : NicShape.ConnectX5(r.GetValue(total) ?? 16);
            var n = r.GetValue(vfs);
            if (n < 0 || n > nic.TotalVfs)
                throw new VmNetException($"--vfs must be 0..{nic.TotalVfs} for {nic.Model}, got {n}", ExitCodes.InvalidInput);
            var topology = new SimTopology(r.GetValue(nodes), r.GetValue(nicNode), r.GetValue(cpus), r.GetValue(memory), r.GetValue(huge2m), r.GetValue(huge1g), r.GetValue(width));
            if (topology.Problem is { } problem) throw new VmNetException(problem, ExitCodes.InvalidInput);
            var target = r.GetValue(dir)!;
            EnsureEmpty(target);
            SimHost.Create(target, nic, r.GetValue(pfs), n, r.GetValue(mtu), topology: topology);
            stdout.WriteLine($"wrote a simulated host to {target}: {r.GetValue(pfs)} x {nic.Model} ({nic.PfDriver}), {n} VFs each"
                + (topology.Nodes > 1 ? $", on node {topology.NicNode} of {topology.Nodes}" : ""));
            return ExitCodes.Ok;
        });
        return new Command("sim", "Simulated hosts for trials and tests") { create };
    }

    private static void EnsureEmpty(string target)
    {
        if (Directory.Exists(target) && Directory.EnumerateFileSystemEntries(target).Any())
            throw new VmNetException($"{target} is not empty; give a new directory", ExitCodes.InvalidInput);
    }
}
