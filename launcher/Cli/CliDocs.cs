using System.CommandLine;
using System.CommandLine.Completions;
using System.Globalization;
using System.Text;

namespace VmNet.Cli;

/// <summary>
/// The man page vmnet(1) and the bash completion script, both generated from the command tree itself (the same
/// commands, options and descriptions as <c>--help</c>), so neither can fall behind the tool.
/// </summary>
internal static class CliDocs
{
    /// <summary>Every visible command below <paramref name="root"/>, depth first, with its path of names ("host apply").</summary>
    public static IEnumerable<(string Path, Command Command)> Walk(Command root, string path = "")
    {
        foreach (var c in root.Subcommands.Where(c => !c.Hidden))
        {
            var here = path.Length == 0 ? c.Name : $"{path} {c.Name}";
            yield return (here, c);
            foreach (var below in Walk(c, here)) yield return below;
        }
    }

    /// <summary>The options a command takes: its own and its ancestors' recursive ones, without hidden ones.</summary>
    private static IEnumerable<Option> OptionsOf(Command command, IEnumerable<Command> ancestors) =>
        command.Options.Concat(ancestors.SelectMany(a => a.Options.Where(o => o.Recursive))).Where(o => !o.Hidden).DistinctBy(o => o.Name);

    private static bool IsFlag(Option o) => o.ValueType == typeof(bool) || o.Arity.MaximumNumberOfValues == 0;

    /// <summary>What a value of an option or argument is, for completion: a VM's name, a file, a directory, one of fixed words, or free text.</summary>
    private static string Kind(string name, Symbol symbol) => name switch
    {
        "NAME" => "vm",
        "SPEC" or "--config" or "--output" or "--vmnet" => "file",
        "DIR" or "--state-dir" or "--host-root" or "--out" or "--templates" => "dir",
        "COMMAND" => "command",
        _ => Words(symbol).Count > 0 ? "words" : "text",
    };

    private static List<string> Words(Symbol symbol)
    {
        var context = CompletionContext.Empty;
        var items = symbol switch
        {
            Option o => o.GetCompletions(context),
            Argument a => a.GetCompletions(context),
            _ => [],
        };
        return items.Select(i => i.Label).Where(l => l.Length > 0 && l.All(ch => char.IsAsciiLetterOrDigit(ch) || ch is '-' or '_' or '.')).ToList();
    }

    // ---- help: groups and examples ----

    /// <summary>The commands of <c>vmnet --help</c>, in groups: the VMs, the host, trials, the shell.</summary>
    public static readonly IReadOnlyList<(string Group, IReadOnlyList<string> Commands)> Groups =
    [
        ("VMs", ["up", "status", "ls", "console", "down", "rm", "validate"]),
        ("The host", ["host", "doctor", "gc"]),
        ("Trials", ["sim"]),
        ("The shell", ["help", "completion"]),
    ];

    /// <summary>Examples for each command's help and the man page, by command path: what it does, then the line.</summary>
    public static readonly IReadOnlyDictionary<string, IReadOnlyList<(string What, string Line)>> Examples =
        new Dictionary<string, IReadOnlyList<(string, string)>>(StringComparer.Ordinal)
        {
            [""] =
            [
                ("Try it on the simulated host shipped with vmnet, changing nothing", "vmnet up examples/vm.yaml --dry-run --host-root examples/hosts/connectx5"),
                ("Give each PF of the host config its VFs, then check the host", "vmnet host apply && vmnet doctor"),
                ("Start a VM and wait for its guest agent's network-ready report", "vmnet up vm.yaml"),
                ("Its state, its VFs and the bonds as the guest reports them", "vmnet status ceph-osd-1"),
                ("Stop it, then remove it and give every VF back as it was found", "vmnet down ceph-osd-1 && vmnet rm ceph-osd-1"),
            ],
            ["up"] =
            [
                ("What up would do, changing nothing", "vmnet up vm.yaml --dry-run"),
                ("Start it and wait for the guest (up to 10 minutes)", "vmnet up vm.yaml --wait-timeout 600"),
                ("The result as JSON for a script (the progress goes to stderr)", "vmnet up vm.yaml --json --quiet"),
                ("Change a running VM's VLAN live: edit vlan in vm.yaml, then", "vmnet up vm.yaml"),
                ("With the named networks of another host config (network: NAME in the spec)", "vmnet up vm.yaml --host-config lab.yaml"),
            ],
            ["status"] = [("A VM's state, its VFs as the NIC holds them, the bonds as the guest reports them", "vmnet status ceph-osd-1"), ("The same as JSON", "vmnet status ceph-osd-1 --json")],
            ["ls"] = [("Every VmNet VM with its CPUs, memory and networks", "vmnet ls"), ("The names only", "vmnet ls -q")],
            ["console"] = [("Attach to the serial console (detach with Ctrl+])", "vmnet console ceph-osd-1")],
            ["down"] = [("Stop it (its VFs stay leased; `vmnet up` starts it again)", "vmnet down ceph-osd-1"), ("Give the guest 10 s, then stop it hard", "vmnet down ceph-osd-1 --timeout 10")],
            ["rm"] =
            [
                ("Remove a stopped VM: its domain, its files and disk overlay; every VF given back as it was found", "vmnet rm ceph-osd-1"),
                ("Stop and remove a running one at once", "vmnet rm --force ceph-osd-1"),
            ],
            ["validate"] =
            [
                ("Check a spec, naming each problem with its line", "vmnet validate vm.yaml"), ("For an editor or a script", "vmnet validate vm.yaml --json"),
                ("A spec that uses the named networks of a host config", "vmnet validate vm.yaml --host-config lab.yaml"),
            ],
            ["host"] = [("Every PF and VF, and who holds it", "vmnet host"), ("One line per PF", "vmnet host --summary"), ("The free VFs only", "vmnet host --free")],
            ["host apply"] = [("Give each PF of /etc/vmnet/host.yaml its VFs", "vmnet host apply"), ("Another config, the result as JSON", "vmnet host apply --config lab.yaml --json")],
            ["host networks"] = [("The networks /etc/vmnet/host.yaml defines by name, and the VMs on each", "vmnet host networks"), ("Another config, as JSON", "vmnet host networks --config lab.yaml --json")],
            ["host prepare"] = [("After a reboot, give every leased VF its settings and vfio-pci again", "vmnet host prepare")],
            ["host boot-unit"] = [("Install the unit that does both at boot", "vmnet host boot-unit && systemctl daemon-reload && systemctl enable vmnet-host.service")],
            ["doctor"] = [("Is this host ready for VmNet (IOMMU, vfio-pci, SR-IOV, libvirt)?", "vmnet doctor")],
            ["gc"] = [("Give back the VFs of VMs that are gone (a crashed vmnet, an undefined domain)", "vmnet gc")],
            ["sim create"] =
            [
                ("A simulated dual-port ConnectX-5 host with 8 VFs a port", "vmnet sim create /tmp/host && vmnet host --host-root /tmp/host"),
                ("Two NUMA nodes, the NIC on node 1 in a x8 slot, 4 GiB of 1 GiB hugepages a node", "vmnet sim create /tmp/numa --numa-nodes 2 --nic-node 1 --link-width 8 --hugepages-1g 4"),
            ],
            ["completion"] = [("Completion in this shell", "source <(vmnet completion bash)")],
            ["help"] = [("Help for one command", "vmnet help host apply")],
        };

    /// <summary>
    /// <c>--help</c> as System.CommandLine writes it (<paramref name="help"/>), with the top level's "Commands:" section
    /// split into <see cref="Groups"/> and the command's <see cref="Examples"/> at the end.
    /// </summary>
    public static string WithGroupsAndExamples(string help, Command command)
    {
        var path = new List<string>();
        for (var c = command; c is not RootCommand; c = c.Parents.OfType<Command>().First()) path.Insert(0, c.Name);
        var lines = help.Replace("\r\n", "\n", StringComparison.Ordinal).TrimEnd('\n').Split('\n').ToList();
        if (command is RootCommand && lines.IndexOf("Commands:") is var at and >= 0)
        {
            var end = lines.FindIndex(at + 1, l => l.Length == 0);
            if (end < 0) end = lines.Count;
            // Each row starts with two spaces and the command's name; a wrapped description continues deeper.
            var rows = new Dictionary<string, List<string>>(StringComparer.Ordinal);
            List<string>? current = null;
            foreach (var line in lines[(at + 1)..end])
            {
                if (line.Length > 2 && line[2] != ' ') rows[line[2..].Split(' ')[0]] = current = [line];
                else current?.Add(line);
            }
            var grouped = new List<string>();
            foreach (var (group, names) in Groups)
            {
                var members = names.Where(rows.ContainsKey).ToList();
                if (members.Count == 0) continue;
                if (grouped.Count > 0) grouped.Add("");
                grouped.Add($"{group}:");
                foreach (var name in members) { grouped.AddRange(rows[name]); rows.Remove(name); }
            }
            if (rows.Count > 0)
            {
                grouped.Add("");
                grouped.Add("Other:");
                grouped.AddRange(rows.Values.SelectMany(r => r));
            }
            lines = [.. lines[..at], .. grouped, .. lines[end..]];
        }
        if (Examples.TryGetValue(string.Join(' ', path), out var examples))
        {
            lines.Add("");
            lines.Add("Examples:");
            foreach (var (what, line) in examples)
            {
                lines.Add($"  {what}:");
                lines.Add($"    {line}");
            }
        }
        return string.Join('\n', lines) + "\n\n";
    }

    // ---- bash completion ----

    /// <summary>The bash completion script: `source` it, or install it as /usr/share/bash-completion/completions/vmnet.</summary>
    public static string BashCompletion(RootCommand root)
    {
        var commands = new List<(string Path, Command Command, List<Command> Ancestors)> { ("", root, []) };
        void Add(Command parent, string path, List<Command> ancestors)
        {
            foreach (var c in parent.Subcommands.Where(c => !c.Hidden))
            {
                var here = path.Length == 0 ? c.Name : $"{path} {c.Name}";
                var chain = ancestors.Append(parent).ToList();
                commands.Add((here, c, chain));
                Add(c, here, chain);
            }
        }
        Add(root, "", []);

        var valueOptions = commands.SelectMany(c => OptionsOf(c.Command, c.Ancestors)).Where(o => !IsFlag(o)).DistinctBy(o => o.Name).ToList();
        var sb = new StringBuilder();
        sb.Append("# bash completion for vmnet                                  -*- shell-script -*-\n");
        sb.Append("# Generated by `vmnet completion bash` from vmnet's own commands; source it, or install it as\n");
        sb.Append("# /usr/share/bash-completion/completions/vmnet.\n\n");
        sb.Append("_vmnet_vms()\n{\n");
        sb.Append("    # The VMs of the state dir and libvirt URI named on the line (else vmnet's defaults).\n");
        sb.Append("    local i args=()\n");
        sb.Append("    for (( i=1; i < ${#COMP_WORDS[@]} - 1; i++ )); do\n");
        sb.Append("        case ${COMP_WORDS[i]} in\n");
        sb.Append("            --state-dir|--connect|-c|--host-root) args+=(\"${COMP_WORDS[i]}\" \"${COMP_WORDS[i+1]}\") ;;\n");
        sb.Append("        esac\n    done\n");
        sb.Append("    vmnet ls -q \"${args[@]}\" 2>/dev/null\n}\n\n");
        sb.Append("_vmnet()\n{\n");
        sb.Append("    local cur=${COMP_WORDS[COMP_CWORD]} prev=\"\" path=\"\" i w\n");
        sb.Append("    (( COMP_CWORD > 0 )) && prev=${COMP_WORDS[COMP_CWORD-1]}\n");
        sb.Append("    for (( i=1; i < COMP_CWORD; i++ )); do\n");
        sb.Append("        w=${COMP_WORDS[i]}\n");
        sb.Append("        case \"$path/$w\" in\n");
        foreach (var (path, _, _) in commands.Skip(1))
        {
            var parent = path.Contains(' ') ? "/" + path[..path.LastIndexOf(' ')].Replace(' ', '/') : "";
            sb.Append(CultureInfo.InvariantCulture, $"            \"{parent}/{path.Split(' ')[^1]}\") path=\"$path/$w\" ;;\n");
        }
        sb.Append("        esac\n    done\n");
        sb.Append("    case $prev in\n");
        foreach (var group in valueOptions.GroupBy(o => Kind(o.Name, o)))
        {
            foreach (var o in group)
            {
                var names = string.Join('|', o.Aliases.Prepend(o.Name).Distinct());
                var reply = group.Key switch
                {
                    "file" => "COMPREPLY=( $(compgen -f -- \"$cur\") )",
                    "dir" => "COMPREPLY=( $(compgen -d -- \"$cur\") )",
                    "words" => $"COMPREPLY=( $(compgen -W \"{string.Join(' ', Words(o))}\" -- \"$cur\") )",
                    _ => "COMPREPLY=()",
                };
                sb.Append(CultureInfo.InvariantCulture, $"        {names}) {reply}; return ;;\n");
            }
        }
        sb.Append("    esac\n");
        sb.Append("    local commands=\"\" options=\"\" arg=\"\"\n");
        sb.Append("    case $path in\n");
        foreach (var (path, command, ancestors) in commands)
        {
            var subs = string.Join(' ', command.Subcommands.Where(c => !c.Hidden).Select(c => c.Name));
            var opts = string.Join(' ', OptionsOf(command, ancestors).SelectMany(o => o.Aliases.Prepend(o.Name).Distinct()).Where(n => n.StartsWith("--", StringComparison.Ordinal) || n.Length == 2)
                .Where(n => n != "-?").Append("--help").Distinct());
            if (command is RootCommand) opts += " --version";
            var argument = command.Arguments.FirstOrDefault(a => !a.Hidden);
            var kind = argument is null ? "" : Kind(argument.Name, argument);
            sb.Append(CultureInfo.InvariantCulture, $"        \"{(path.Length == 0 ? "" : "/" + path.Replace(' ', '/'))}\") commands=\"{subs}\"; options=\"{opts}\"; arg=\"{kind}\" ;;\n");
        }
        sb.Append("    esac\n");
        sb.Append("    if [[ $cur == -* ]]; then COMPREPLY=( $(compgen -W \"$options\" -- \"$cur\") ); return; fi\n");
        sb.Append("    case $arg in\n");
        sb.Append("        vm) COMPREPLY=( $(compgen -W \"$(_vmnet_vms)\" -- \"$cur\") ) ;;\n");
        sb.Append("        file) COMPREPLY=( $(compgen -f -- \"$cur\") ) ;;\n");
        sb.Append("        dir) COMPREPLY=( $(compgen -d -- \"$cur\") ) ;;\n");
        sb.Append("        command) COMPREPLY=( $(compgen -W \"" + string.Join(' ', root.Subcommands.Where(c => !c.Hidden).Select(c => c.Name)) + "\" -- \"$cur\") ) ;;\n");
        sb.Append("        *) COMPREPLY=( $(compgen -W \"$commands\" -- \"$cur\") ) ;;\n");
        sb.Append("    esac\n");
        sb.Append("}\n\n");
        sb.Append("complete -F _vmnet vmnet\n");
        return sb.ToString();
    }

    // ---- man page ----

    /// <summary>Text for a roff line: backslashes and hyphens escaped, a leading dot or quote made literal.</summary>
    public static string Roff(string text)
    {
        var escaped = text.Replace("\\", "\\e", StringComparison.Ordinal).Replace("-", "\\-", StringComparison.Ordinal);
        return escaped.StartsWith('.') || escaped.StartsWith('\'') ? "\\&" + escaped : escaped;
    }

    /// <summary>vmnet(1): every command with its usage, description and options, then environment, files, exit status, examples.</summary>
    public static string ManPage(RootCommand root, string version, DateOnly date)
    {
        var sb = new StringBuilder();
        sb.Append(CultureInfo.InvariantCulture, $".TH VMNET 1 {date:yyyy-MM-dd} \"vmnet {Roff(version)}\" \"User Commands\"\n");
        sb.Append(".SH NAME\n");
        sb.Append("vmnet \\- VMs with SR\\-IOV virtual functions bonded active\\-backup in the guest, from one YAML spec\n");
        sb.Append(".SH SYNOPSIS\n");
        sb.Append(".B vmnet\n.RI [ OPTIONS ] \" COMMAND \" [ ARGUMENTS ]\n");
        sb.Append(".br\n.B vmnet help\n.RI [ COMMAND ]\n");
        sb.Append(".SH DESCRIPTION\n");
        sb.Append(Roff("vmnet gives a VM one SR-IOV virtual function (VF) on each port of a NIC for each of its networks, isolated by a VLAN the NIC enforces, "
            + "and bonds them active-backup inside the guest, so that a port or an upstream switch can fail without taking the VM offline. "
            + "`vmnet up vm.yaml` reserves the VFs under a lock, configures them through their PF (MAC, VLAN, spoof checking, trust, rates), "
            + "binds them to vfio-pci and starts the VM as an ordinary libvirt domain (or a QEMU process); its guest agent builds the bonds. "
            + "Every host change is recorded before it is made, rolled back when a later step fails, and undone by `vmnet rm`.")).Append('\n');
        sb.Append(".PP\n").Append(Roff("Options of the whole tool (they apply to every command):")).Append('\n');
        foreach (var o in root.Options.Where(o => !o.Hidden && o.Recursive)) Option(sb, o);
        sb.Append(".SH COMMANDS\n");
        foreach (var (path, command) in Walk(root))
        {
            var args = string.Concat(command.Arguments.Where(a => !a.Hidden).Select(a => a.Arity.MinimumNumberOfValues == 0 ? $" [{a.Name}]" : $" {a.Name}"));
            sb.Append(CultureInfo.InvariantCulture, $".SS \"vmnet {Roff(path)}{Roff(args)}\"\n");
            if (command.Description is { Length: > 0 } d) sb.Append(Roff(d)).Append('\n');
            foreach (var o in command.Options.Where(o => !o.Hidden && !o.Recursive && o.Name != "--help" && o.Name != "--version")) Option(sb, o);
            foreach (var (what, line) in Examples.GetValueOrDefault(path) ?? [])
                sb.Append(".PP\n").Append(Roff(what + ":")).Append("\n.RS 4\n.EX\n").Append(Roff(line)).Append("\n.EE\n.RE\n");
        }
        sb.Append(".SH ENVIRONMENT\n");
        foreach (var (name, what) in new[]
        {
            ("VMNET_STATE_DIR", "The state directory (leases, VM files), as --state-dir; default /var/lib/vmnet."),
            ("VMNET_HOST_ROOT", "The root of /sys, /proc and /dev, as --host-root (a simulated host for trials)."),
            ("VMNET_CONNECT", "The libvirt URI, as --connect."),
            ("LIBVIRT_DEFAULT_URI", "The libvirt URI when neither --connect nor VMNET_CONNECT names one; then uri_default in libvirt.conf; then qemu:///system."),
            ("VMNET_AGENT", "The vmnet-agent binary put on each VM's seed (default: beside vmnet, then /usr/lib/vmnet/vmnet-agent)."),
        })
            sb.Append(".TP\n.B ").Append(Roff(name)).Append('\n').Append(Roff(what)).Append('\n');
        sb.Append(".SH FILES\n");
        foreach (var (name, what) in new[]
        {
            ("/etc/vmnet/host.yaml", "The host config: how many VFs each PF gets (vmnet host apply)."),
            ("/var/lib/vmnet", "Leases (one file per VF), the ledger's lock, each VM's directory (disk overlay, seed, serial log)."),
            ("/usr/lib/vmnet/vmnet-agent", "The guest agent vmnet puts on each VM's seed."),
            ("/lib/systemd/system/vmnet-host.service", "Runs vmnet host apply and vmnet host prepare at boot, before libvirtd (enable it with systemctl)."),
            ("/usr/share/vmnet/vm.reference.yaml", "Every field of a VM spec, with its default."),
            ("/usr/share/vmnet/vm.schema.json", "The JSON Schema of a VM spec, for editors (made from the validation: vmnet spec-schema)."),
            ("/usr/share/vmnet/vmnet-output.schema.json", "The JSON Schema of every --json output."),
        })
            sb.Append(".TP\n.I ").Append(Roff(name)).Append('\n').Append(Roff(what)).Append('\n');
        sb.Append(".SH EXIT STATUS\n");
        foreach (var (code, what) in new[]
        {
            (ExitCodes.Ok, "Success."),
            (ExitCodes.Failure, "The command failed; the host was rolled back to where it was (the message says what happened and what to do)."),
            (ExitCodes.InvalidInput, "Bad input: a spec, option or name was refused (the message names the field); nothing was changed."),
            (ExitCodes.HostCannotServe, "The host cannot serve the request (no free VF, IOMMU off, a PF missing); nothing was changed."),
        })
            sb.Append(".TP\n.B ").Append(code.ToString(CultureInfo.InvariantCulture)).Append('\n').Append(Roff(what)).Append('\n');
        sb.Append(".SH EXAMPLES\n");
        foreach (var (what, line) in Examples[""])
            sb.Append(".PP\n").Append(Roff(what + ":")).Append("\n.PP\n.RS 4\n.EX\n").Append(Roff(line)).Append("\n.EE\n.RE\n");
        sb.Append(".SH SEE ALSO\n");
        sb.Append(".BR virsh (1),\n.BR ip\\-link (8),\n.BR systemctl (1)\n");
        return sb.ToString();
    }

    private static void Option(StringBuilder sb, Option o)
    {
        var names = string.Join(", ", o.Aliases.Where(a => a != "-?" && a != "/?" && a != "/h").Prepend(o.Name).Distinct().OrderBy(n => n.StartsWith("--", StringComparison.Ordinal)));
        var value = IsFlag(o) ? "" : " " + o.Name.TrimStart('-').ToUpperInvariant().Replace('-', '_');
        sb.Append(value.Length > 0 ? $".TP\n.BI \"{Roff(names)} \" {Roff(value.Trim())}\n" : $".TP\n.B {Roff(names)}\n");
        sb.Append(Roff(o.Description ?? "")).Append('\n');
    }
}
