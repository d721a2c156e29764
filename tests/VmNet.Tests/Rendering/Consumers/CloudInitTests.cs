using System.Text.RegularExpressions;
using YamlDotNet.RepresentationModel;

namespace VmNet.Tests.Rendering.Consumers;

// The NoCloud seed against cloud-init itself: the schema check of user-data, and network-config rendered offline by
// cloud-init's own renderers (eni for ifupdown guests, netplan for netplan guests), then read back. Three classes so
// xunit runs them in parallel: each cloud-init run costs ~0.5-1 s of Python start-up.

/// <summary>user-data through <c>cloud-init schema</c>.</summary>
public sealed class CloudInitUserDataTests
{
    [Theory]
    [MemberData(nameof(ConsumerCorpus.All), MemberType = typeof(ConsumerCorpus))]
    public async Task Cloud_init_accepts_the_user_data_schema(string name)
    {
        using var vm = ConsumerCorpus.Render(name);
        var file = vm.Write("user-data", vm.Artifacts.UserData);

        var result = await Tools.Run("cloud-init", ["schema", "--config-file", file]);

        Assert.True(result.ExitCode == 0, Tools.Describe(result));
        Assert.Contains("Valid cloud-config", result.StandardOutput);
    }

    [Fact]
    public async Task Cloud_init_refuses_user_data_with_a_wrongly_typed_key()
    {
        using var vm = ConsumerCorpus.Render(ConsumerCorpus.Example);
        var file = vm.Write("user-data", vm.Artifacts.UserData.Replace("ssh_pwauth: false", "ssh_pwauth: [no]"));

        var result = await Tools.Run("cloud-init", ["schema", "--config-file", file]);

        Assert.True(result.ExitCode != 0, Tools.Describe(result));
    }
}

/// <summary>network-config through cloud-init's eni renderer (ifupdown guests), read back as interfaces(5) and udev rules.</summary>
public sealed class CloudInitEniTests
{
    [Theory]
    [MemberData(nameof(ConsumerCorpus.All), MemberType = typeof(ConsumerCorpus))]
    public async Task Cloud_init_renders_each_bond_for_ifupdown_with_its_members_monitor_primary_address_routes_and_mtu(string name)
    {
        using var vm = ConsumerCorpus.Render(name);
        var (result, outDir) = await CloudInit.NetConvert(vm, "eni");
        var arp = vm.Spec.Networks.Any(n => n.Bond.ArpInterval > 0);
        if (arp && result.ExitCode != 0)
        {
            // cloud-init 22.4 maps v2 bond keys through a table that knows only "arp-ip-target", so netplan's own key
            // "arp-ip-targets" (which the netplan renderer passes through and netplan requires) crashes every
            // non-netplan renderer (LP: #1906187). Writing the singular would break netplan guests, so the template keeps
            // netplan's key; this pins the exact failure, and goes red once cloud-init learns the key.
            Assert.Contains("KeyError: 'arp-ip-targets'", result.StandardError);
            return;
        }
        Assert.True(result.ExitCode == 0, Tools.Describe(result));

        var stanzas = CloudInit.ParseEni(File.ReadAllText(Path.Join(outDir, "etc", "network", "interfaces.d", "50-cloud-init")));
        var renames = CloudInit.UdevRename().Matches(File.ReadAllText(Path.Join(outDir, "etc", "udev", "rules.d", "70-persistent-net.rules")))
            .ToDictionary(m => m.Groups["mac"].Value, m => m.Groups["name"].Value, StringComparer.OrdinalIgnoreCase);

        for (var i = 0; i < vm.Spec.Networks.Count; i++)
        {
            var n = vm.Spec.Networks[i];
            var members = vm.Members(i);
            var family = n.Address.IsIPv6 ? "inet6" : "inet";
            var bond = stanzas[n.Name];
            Assert.Equal(n.Address.Dhcp ? $"{family} dhcp" : $"{family} static", bond.Method);
            AssertBond(bond, n, vm.PrimaryOf(n));
            Assert.Equal(n.Mtu?.ToString(), bond.One("mtu"));
            if (!n.Address.Dhcp) Assert.Equal(n.Address.ToString(), bond.One("address"));
            if (n.Gateway is { } gw)
            {
                // cloud-init 22.4's eni renderer drops the route metric; and it reads "::/0" as "prefix unset" and writes
                // the subnet's prefix (::/64) instead of a default route. Pinned here so a fix (template or cloud-init)
                // shows up; netplan guests get the real default route (see the netplan test).
                Assert.Contains(n.Address.IsIPv6
                    ? $"route add -A inet6 ::/{n.Address.Cidr!.Split('/')[1]} gw {gw} || true"
                    : $"route add default gw {gw} || true", bond.All("post-up"));
            }
            Assert.Equal(n.Dns.Count > 0 ? string.Join(' ', n.Dns) : null, bond.One("dns-nameservers"));
            foreach (var m in members)
            {
                var member = stanzas[m.GuestName];
                Assert.Equal("inet manual", member.Method);
                Assert.Equal(n.Name, member.One("bond-master"));
                AssertBond(member, n, vm.PrimaryOf(n));
                Assert.Equal(m.GuestName, renames[m.Mac]);
            }
        }
        Assert.Equal(vm.Plan.Vfs.Count, renames.Count);
    }

    private static void AssertBond(CloudInit.EniStanza s, global::VmNet.Spec.NetworkSpec n, string primary)
    {
        Assert.Equal("active-backup", s.One("bond-mode"));
        Assert.Equal("active", s.One("bond-fail-over-mac"));
        Assert.Equal(primary, s.One("bond-primary"));
        if (n.Bond.ArpInterval > 0)
        {
            Assert.Null(s.One("bond-miimon"));
            Assert.Equal(n.Bond.ArpInterval.ToString(), s.One("bond-arp-interval"));
            Assert.Equal(string.Join(' ', n.Bond.ArpTargets), s.One("bond-arp-ip-target"));
        }
        else
        {
            Assert.Equal("100", s.One("bond-miimon"));
        }
    }
}

/// <summary>network-config through cloud-init's netplan renderer, read back as YAML.</summary>
public sealed class CloudInitNetplanTests
{
    [Theory]
    [MemberData(nameof(ConsumerCorpus.All), MemberType = typeof(ConsumerCorpus))]
    public async Task Cloud_init_renders_each_bond_for_netplan_with_members_matched_by_mac_and_renamed(string name)
    {
        using var vm = ConsumerCorpus.Render(name);
        var (result, outDir) = await CloudInit.NetConvert(vm, "netplan");
        Assert.True(result.ExitCode == 0, Tools.Describe(result));

        var yaml = new YamlStream();
        yaml.Load(new StringReader(File.ReadAllText(Path.Join(outDir, "etc", "netplan", "50-cloud-init.yaml"))));
        var network = CloudInit.Map(CloudInit.Map(yaml.Documents[0].RootNode)["network"]);
        Assert.Equal("2", CloudInit.Scalar(network["version"]));
        var ethernets = CloudInit.Map(network["ethernets"]);
        var bonds = CloudInit.Map(network["bonds"]);
        Assert.Equal(vm.Spec.Networks.Select(n => n.Name).Order(), bonds.Keys.Order());

        for (var i = 0; i < vm.Spec.Networks.Count; i++)
        {
            var n = vm.Spec.Networks[i];
            var members = vm.Members(i);
            var bond = CloudInit.Map(bonds[n.Name]);
            Assert.Equal(members.Select(m => m.GuestName), CloudInit.List(bond["interfaces"]));
            var p = CloudInit.Map(bond["parameters"]);
            Assert.Equal("active-backup", CloudInit.Scalar(p["mode"]));
            Assert.Equal("active", CloudInit.Scalar(p["fail-over-mac-policy"]));
            Assert.Equal(vm.PrimaryOf(n), CloudInit.Scalar(p["primary"]));
            if (n.Bond.ArpInterval > 0)
            {
                Assert.False(p.ContainsKey("mii-monitor-interval"));
                Assert.Equal(n.Bond.ArpInterval.ToString(), CloudInit.Scalar(p["arp-interval"]));
                Assert.Equal(n.Bond.ArpTargets, CloudInit.List(p["arp-ip-targets"]));
            }
            else
            {
                Assert.Equal("100", CloudInit.Scalar(p["mii-monitor-interval"]));
            }
            Assert.Equal(n.Mtu?.ToString(), bond.TryGetValue("mtu", out var mtu) ? CloudInit.Scalar(mtu) : null);
            if (n.Address.Dhcp)
                Assert.Equal("true", CloudInit.Scalar(bond["dhcp4"]));
            else
                Assert.Equal([n.Address.ToString()], CloudInit.List(bond["addresses"]));
            if (n.Gateway is { } gw)
            {
                var route = CloudInit.Map(Assert.Single(((YamlSequenceNode)bond["routes"]).Children));
                Assert.Equal(n.Address.IsIPv6 ? "::/0" : "0.0.0.0/0", CloudInit.Scalar(route["to"]));
                Assert.Equal(gw, CloudInit.Scalar(route["via"]));
            }
            else
            {
                Assert.False(bond.ContainsKey("routes"));
            }
            if (n.Dns.Count > 0) Assert.Equal(n.Dns, CloudInit.List(CloudInit.Map(bond["nameservers"])["addresses"]));
            foreach (var m in members)
            {
                var e = CloudInit.Map(ethernets[m.GuestName]);
                Assert.Equal(m.Mac, CloudInit.Scalar(CloudInit.Map(e["match"])["macaddress"]), ignoreCase: true);
                Assert.Equal(m.GuestName, CloudInit.Scalar(e["set-name"]));
                Assert.Equal(n.Mtu?.ToString(), e.TryGetValue("mtu", out var em) ? CloudInit.Scalar(em) : null);
            }
        }
        Assert.Equal(vm.Plan.Vfs.Select(v => v.GuestName).Order(), ethernets.Keys.Order());
    }
}

internal static partial class CloudInit
{
    internal static async Task<(CliWrap.Buffered.BufferedCommandResult, string)> NetConvert(RenderedVm vm, string output)
    {
        var file = vm.Write("network-config", vm.Artifacts.NetworkConfig);
        var outDir = Path.Join(vm.Dir, "out", output);
        var result = await Tools.Run("cloud-init",
            ["devel", "net-convert", "-p", file, "-k", "yaml", "-D", "debian", "-O", output, "-d", outDir]);
        return (result, outDir);
    }

    internal sealed record EniStanza(string Method, List<(string Key, string Value)> Options)
    {
        public string? One(string key) => Options.Where(o => o.Key == key).Select(o => o.Value).SingleOrDefault();
        public IEnumerable<string> All(string key) => Options.Where(o => o.Key == key).Select(o => o.Value);
    }

    /// <summary>ifupdown's interfaces(5): "iface NAME FAMILY METHOD" then indented "option value" lines.</summary>
    internal static Dictionary<string, EniStanza> ParseEni(string text)
    {
        var stanzas = new Dictionary<string, EniStanza>();
        EniStanza? current = null;
        foreach (var raw in text.Split('\n'))
        {
            if (raw.TrimStart().StartsWith('#') || raw.Trim().Length == 0) continue;
            if (raw.StartsWith("iface ", StringComparison.Ordinal))
            {
                var f = raw.Split(' ', StringSplitOptions.RemoveEmptyEntries);
                stanzas.Add(f[1], current = new EniStanza($"{f[2]} {f[3]}", []));
            }
            else if (char.IsWhiteSpace(raw[0]) && current is not null)
            {
                var line = raw.Trim();
                var space = line.IndexOf(' ');
                current.Options.Add(space < 0 ? (line, "") : (line[..space], line[(space + 1)..]));
            }
            else
            {
                current = null; // auto, source, ...
            }
        }
        return stanzas;
    }

    [GeneratedRegex(@"ATTR\{address\}==""(?<mac>[0-9a-fA-F:]+)"", NAME=""(?<name>[^""]+)""")]
    internal static partial Regex UdevRename();

    internal static Dictionary<string, YamlNode> Map(YamlNode node) =>
        ((YamlMappingNode)node).Children.ToDictionary(kv => ((YamlScalarNode)kv.Key).Value!, kv => kv.Value);

    internal static string? Scalar(YamlNode node) => ((YamlScalarNode)node).Value;

    internal static List<string> List(YamlNode node) => ((YamlSequenceNode)node).Children.Select(c => Scalar(c) ?? "").ToList();
}
