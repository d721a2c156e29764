using System.Globalization;
using System.Text;
using Scriban;
using Scriban.Runtime;
using VmNet.Spec;
using VmNet.State;

namespace VmNet.Rendering;

/// <summary>Everything a VM needs, rendered from one plan.</summary>
public sealed record Artifacts(
    string DomainXml,
    IReadOnlyList<string> QemuArgs,
    string UserData,
    string MetaData,
    string NetworkConfig,
    string AgentConfig)
{
    /// <summary>The files of the NoCloud seed (volume label cidata), by their name on the seed.</summary>
    public IReadOnlyList<(string Name, string Content)> SeedFiles =>
        [("meta-data", MetaData), ("user-data", UserData), ("network-config", NetworkConfig), ("vmnet/agent.json", AgentConfig)];
}

/// <summary>One VF of the VM as the templates see it: the guest's member name, its MAC and where it comes from.</summary>
public sealed record RenderedVf(int NetworkIndex, string Name, string Mac, string Pci, string Port, string Pf, string PfPci, int Vf);

/// <summary>What the templates are rendered from: the spec's values, the VFs the plan chose, the VM's files.</summary>
public sealed record RenderInput(VmSpec Vm, IReadOnlyList<RenderedVf> Vfs, VmPaths Paths)
{
    /// <summary>Where the VM runs on the host (none: nothing is rendered for it).</summary>
    public RenderedPlacement Placement { get; init; } = RenderedPlacement.None;
}

/// <summary>
/// The placement as the templates need it: the host node memory is bound to (null: none), each vCPU's dedicated CPU
/// and the emulator's (empty: not pinned), the CPUs shared vCPUs float over (empty: any), the hugepage size (0: none)
/// and the hugetlbfs mount.
/// </summary>
public sealed record RenderedPlacement(int? Node, IReadOnlyList<int> VcpuCpus, int? EmulatorCpu, IReadOnlyList<int> SharedCpus, long HugepageKiB, string? MemPath)
{
    public static readonly RenderedPlacement None = new(null, [], null, [], 0, null);
}

/// <summary>Renders the templates from a flat model (snake_case names) made of a <see cref="RenderInput"/>; the agent's
/// config is no template: <see cref="AgentConfigBuilder"/> makes it as the contract's record.</summary>
public static class Renderer
{
    public const string XmlNamespace = "https://vmnet.dev/xmlns/vmnet/1";
    public const string AgentPort = "org.vmnet.agent.0";

    /// <summary>The fw_cfg entry carrying the agent's config, for guests without cloud-init.</summary>
    public const string AgentFwCfg = "opt/vmnet/agent.json";

    public static Artifacts Render(RenderInput input, Templates templates)
    {
        var model = Model(input);
        var networkConfig = Run(templates, Templates.NetworkConfig, model);
        var agent = AgentConfigBuilder.Json(AgentConfigBuilder.Build(input));
        model.SetValue("agent_json", agent, true);
        var userData = Run(templates, Templates.UserData, model);
        // The instance-id follows the guest configuration, so cloud-init applies a changed network on the next boot.
        var id = Convert.ToHexStringLower(Sha256.Hash(networkConfig + "\0" + userData + "\0" + agent))[..12];
        ((ScriptObject)model["vm"]!).SetValue("instance_id", $"vmnet-{input.Vm.Name}-{id}", true);
        var metaData = Run(templates, Templates.MetaData, model);
        var domain = Run(templates, Templates.Domain, model);
        var argv = Run(templates, Templates.QemuArgs, model)
            .Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => l.TrimEnd('\r')).ToList();
        CheckParses(templates, Templates.Domain, domain, xml: true);
        CheckParses(templates, Templates.UserData, userData, xml: false);
        CheckParses(templates, Templates.MetaData, metaData, xml: false);
        CheckParses(templates, Templates.NetworkConfig, networkConfig, xml: false);
        return new Artifacts(domain, argv, userData, metaData, networkConfig, agent);
    }

    /// <summary>
    /// What a template rendered must at least parse as its consumer's syntax (XML for libvirt, YAML for cloud-init)
    /// before the plan exists: an override in --templates that renders something broken is refused here, before the
    /// first host change, not by libvirt or in the guest after the VFs were unbound. The consumers' schemas are
    /// checked by the tests.
    /// </summary>
    private static void CheckParses(Templates templates, string name, string text, bool xml)
    {
        string? problem = null;
        try
        {
            if (xml)
            {
                using var reader = System.Xml.XmlReader.Create(new StringReader(text), new System.Xml.XmlReaderSettings { DtdProcessing = System.Xml.DtdProcessing.Prohibit, XmlResolver = null });
                while (reader.Read()) { }
            }
            else
            {
                var parser = new YamlDotNet.Core.Parser(new StringReader(text));
                while (parser.MoveNext()) { }
            }
        }
        catch (System.Xml.XmlException e) { problem = e.Message; }
        catch (YamlDotNet.Core.YamlException e) { problem = $"{e.Message} (line {e.Start.Line}, column {e.Start.Column})"; }
        if (problem is not null)
            throw new VmNetException($"template {name}{(templates.Directory is null ? "" : " in " + templates.Directory)} rendered no valid {(xml ? "XML" : "YAML")}: {problem}; " +
                "fix the template, or remove it from the directory to use the embedded one", ExitCodes.InvalidInput);
    }

    private static string Run(Templates templates, string name, ScriptObject model)
    {
        var context = new TemplateContext(new LazyBuiltins()) { StrictVariables = true, LoopLimit = 10_000, MemberRenamer = m => m.Name };
        var globals = new ScriptObject();
        Filters.Register(globals);
        context.PushGlobal(globals);
        context.PushGlobal(model);
        try
        {
            return templates.Get(name).Render(context);
        }
        catch (Scriban.Syntax.ScriptRuntimeException e) when (e.InnerException is TemplateValueException inner)
        {
            throw inner;
        }
        catch (Scriban.Syntax.ScriptRuntimeException e)
        {
            throw new VmNetException($"template {name} failed: {e.OriginalMessage} at {e.Span}", ExitCodes.InvalidInput);
        }
    }

    /// <summary>The flat model the templates see; names in snake_case.</summary>
    public static ScriptObject Model(RenderInput input)
    {
        var vm = input.Vm;
        var paths = input.Paths;
        var members = new Dictionary<int, ScriptArray>();
        var vfs = new ScriptArray();
        foreach (var a in input.Vfs)
        {
            var pci = a.Pci;
            var network = vm.Networks[a.NetworkIndex];
            var m = Obj(
                ("name", a.Name), ("mac", a.Mac), ("pci", pci), ("port", a.Port), ("pf", a.Pf),
                ("pf_pci", a.PfPci), ("vf", a.Vf), ("network", network.Name), ("vlan", network.Vlan?.Id),
                ("mtu", network.Mtu), ("domain", pci[..4]), ("bus", pci[5..7]), ("slot", pci[8..10]), ("function", pci[11..]));
            vfs.Add(m);
            if (!members.TryGetValue(a.NetworkIndex, out var list)) members[a.NetworkIndex] = list = [];
            list.Add(m);
        }

        var networks = new ScriptArray();
        for (var i = 0; i < vm.Networks.Count; i++)
        {
            var n = vm.Networks[i];
            var b = n.Bond;
            networks.Add(Obj(
                ("name", n.Name), ("vlan", n.Vlan?.Id), ("dhcp", n.Address.Dhcp), ("address", n.Address.ToString()),
                ("gateway", n.Gateway), ("default_route", n.Address.IsIPv6 || n.Gateway?.Contains(':') == true ? "::/0" : "0.0.0.0/0"),
                ("route_metric", 100 + i), ("dns", Array(n.Dns)), ("mtu", n.Mtu),
                ("members", members.GetValueOrDefault(i) ?? []),
                ("bond", Obj(
                    ("mode", BondSpec.Mode), ("fail_over_mac", BondSpec.FailOverMac), ("miimon", b.Miimon),
                    ("arp_interval", b.ArpInterval), ("arp_targets", Array(b.ArpTargets)),
                    ("primary", AgentConfigBuilder.Primary(n)),
                    ("primary_reselect", SpecNames.Of(b.PrimaryReselect)), ("up_delay", b.UpDelay),
                    ("down_delay", b.DownDelay), ("gratuitous_arp", b.GratuitousArp)))));
        }

        return Obj(
            ("vm", Obj(
                ("name", vm.Name), ("uuid", Uuid(vm.Name)), ("cpus", vm.Cpus), ("memory_mib", vm.MemoryMiB),
                ("hostname", vm.Guest.Hostname), ("user", vm.Guest.User), ("ssh_keys", Array(vm.Guest.SshAuthorizedKeys)),
                ("accel", SpecNames.Of(vm.Accel)), ("domain_type", vm.Accel == Accel.Kvm ? "kvm" : "qemu"),
                ("backend", SpecNames.Of(vm.Backend)), ("tcg_cache_mib", TcgCacheMiB), ("version", Version), ("xmlns", XmlNamespace), ("instance_id", ""))),
            ("paths", Obj(
                ("disk", paths.Disk), ("base_image", vm.Disk.Image), ("seed", paths.Seed),
                ("serial_log", paths.SerialLog), ("qmp_socket", paths.QmpSocket),
                ("agent_socket", paths.AgentSocket), ("pid_file", paths.PidFile), ("vm_dir", paths.VmDir),
                ("agent_config", paths.AgentConfig), ("console_socket", paths.ConsoleSocket))),
            ("boot", vm.Boot is { } boot ? Obj(("kernel", boot.Kernel), ("initrd", boot.Initrd), ("cmdline", boot.Cmdline)) : null),
            ("agent", Obj(("port", AgentPort), ("fw_cfg", AgentFwCfg))),
            ("placement", PlacementModel(input.Placement, vm.Cpus)),
            ("networks", networks),
            ("vfs", vfs),
            ("agent_json", ""));
    }

    /// <summary>
    /// The placement as the templates see it: <c>numa</c> (a node is bound), <c>node</c>, <c>vcpu_pins</c> (vcpu, cpu),
    /// <c>emulator_cpu</c>, <c>cpuset</c> (the CPUs shared vCPUs float over, "" for any), <c>guest_cpus</c> (0-N),
    /// <c>hugepage_kib</c> and <c>mem_path</c>.
    /// </summary>
    private static ScriptObject PlacementModel(RenderedPlacement p, int cpus)
    {
        var pins = new ScriptArray();
        for (var i = 0; i < p.VcpuCpus.Count; i++) pins.Add(Obj(("vcpu", i), ("cpu", p.VcpuCpus[i])));
        return Obj(
            ("numa", p.Node is not null), ("node", p.Node ?? 0), ("pinned", p.VcpuCpus.Count > 0), ("vcpu_pins", pins),
            ("emulator_cpu", p.EmulatorCpu ?? 0), ("cpuset", p.SharedCpus.Count > 0 ? Host.CpuList.Format(p.SharedCpus) : ""),
            ("guest_cpus", cpus == 1 ? "0" : $"0-{cpus - 1}"), ("hugepage_kib", p.HugepageKiB), ("mem_path", p.MemPath ?? ""));
    }

    /// <summary>
    /// QEMU's TCG translation cache, in MiB. Its default (1 GiB) is locked with the guest's memory when VFIO pins it
    /// (mem-lock), which costs a nested lab host a gigabyte per guest and about 2 s per start.
    /// </summary>
    public const int TcgCacheMiB = 256;

    public static string Version =>
        typeof(Renderer).Assembly.GetName().Version is { } v ? $"{v.Major}.{v.Minor}.{v.Build}" : "0.0.0";

    /// <summary>A stable UUID for the VM's name, so the domain keeps its identity across re-definitions.</summary>
    public static string Uuid(string name)
    {
        var h = Sha256.Hash("vmnet-uuid/v1\0" + name);
        h[6] = (byte)((h[6] & 0x0F) | 0x80); // version 8 (custom)
        h[8] = (byte)((h[8] & 0x3F) | 0x80); // RFC 4122 variant
        var x = Convert.ToHexStringLower(h.AsSpan(0, 16));
        return $"{x[..8]}-{x[8..12]}-{x[12..16]}-{x[16..20]}-{x[20..32]}";
    }

    private static ScriptObject Obj(params (string Key, object? Value)[] members)
    {
        var o = new ScriptObject();
        foreach (var (k, v) in members) o.SetValue(k, v, false);
        return o;
    }

    private static ScriptArray Array(IEnumerable<string> items)
    {
        var a = new ScriptArray();
        foreach (var i in items) a.Add(i);
        return a;
    }

    internal static string Num(int n) => n.ToString(CultureInfo.InvariantCulture);
}
