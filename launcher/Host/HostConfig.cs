using VmNet.Spec;
using YamlDotNet.RepresentationModel;

namespace VmNet.Host;

/// <summary>One PF and the number of VFs it should have.</summary>
public sealed record PfConfig(string Port, int Vfs);

/// <summary>
/// The host config (<c>/etc/vmnet/host.yaml</c>): which PFs get how many VFs, and the networks the host defines by
/// name. Example:
/// <code>
/// pfs:
///   - port: enp3s0f0np0     # netdev name or PCI address
///     vfs: 8
/// networks:
///   storage: {ports: [enp3s0f0np0, enp3s0f1np1], vlan: 40, mtu: 9000}
/// </code>
/// </summary>
public sealed record HostConfig(IReadOnlyList<PfConfig> Pfs)
{
    public const string DefaultPath = "/etc/vmnet/host.yaml";

    /// <summary>The networks the host defines, by name.</summary>
    public IReadOnlyDictionary<string, HostNetwork> Networks { get; init; } = new Dictionary<string, HostNetwork>();

    /// <summary>Where it was read from (named in the messages of a spec that names one of its networks).</summary>
    public string Source { get; init; } = DefaultPath;

    /// <summary>Its networks as the spec loader takes them.</summary>
    public HostNetworks Named => new(Networks, Source);

    /// <summary>
    /// The host config for `up` and `validate`: <paramref name="path"/> when given (it must exist), else the default
    /// path when it exists, else none (no named networks).
    /// </summary>
    public static HostConfig? ForSpecs(string? path)
    {
        if (path is not null) return LoadFile(path);
        return File.Exists(DefaultPath) ? LoadFile(DefaultPath) : null;
    }

    public static HostConfig LoadFile(string path)
    {
        try
        {
            return Load(YamlInput.ReadFile(path, path), path) with { Source = path };
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new VmNetException($"cannot read the host config {path}: {e.Message}; write one (pfs: [{{port: PF, vfs: N}}]) or give --config", ExitCodes.InvalidInput);
        }
    }

    public static HostConfig Load(string text, string source = "host.yaml")
    {
        var problems = new Problems();
        var stream = YamlInput.Parse(text, source);
        if (stream.Documents.Count != 1 || stream.Documents[0].RootNode is not YamlMappingNode root)
            throw new SpecException(source, [new SpecError("(root)", "must be one mapping with a pfs: list")]);
        var r = new MapReader(root, "", problems);
        var pfs = new List<PfConfig>();
        var list = r.MapList("pfs");
        var networks = ReadNetworks(r, problems);
        if (list is null && networks.Count == 0) problems.Add("pfs", "is required: a list of {port: PF netdev or PCI address, vfs: N}", root);
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var m in list ?? [])
        {
            var port = m.String("port");
            if (port is null) problems.Add(m.Child("port"), "is required: the PF's netdev name or PCI address", m.Node);
            else if (SpecLoader.PortProblem(port) is { } problem) problems.Add(m.Child("port"), problem, m.Get("port"));
            else if (!seen.Add(port)) problems.Add(m.Child("port"), $"{MapReader.Quote(port)} is listed twice", m.Get("port"));
            var vfs = m.Int("vfs", 0, 4096, "VFs");
            if (vfs is null) problems.Add(m.Child("vfs"), "is required: how many VFs the PF should have (0 turns SR-IOV off)", m.Node);
            m.RejectUnknownKeys();
            if (port is not null && vfs is not null) pfs.Add(new PfConfig(port, vfs.Value));
        }
        r.RejectUnknownKeys();
        if (problems.Any) throw new SpecException(source, problems.Errors);
        return new HostConfig(pfs) { Networks = networks, Source = source };
    }

    private static Dictionary<string, HostNetwork> ReadNetworks(MapReader r, Problems problems)
    {
        var result = new Dictionary<string, HostNetwork>(StringComparer.Ordinal);
        var node = r.Get("networks");
        if (node is null) return result;
        if (node is not YamlMappingNode map)
        {
            problems.Add("networks", $"must be a mapping of network names to {{ports: [...], vlan: N, ...}}, got {MapReader.Describe(node)}", node);
            return result;
        }
        foreach (var (k, v) in map.Children)
        {
            var name = (k as YamlScalarNode)?.Value ?? "";
            var path = $"networks.{name}";
            if (!System.Text.RegularExpressions.Regex.IsMatch(name, "^[a-z][a-z0-9-]{0,31}$"))
            {
                problems.Add(path, $"a host network's name must be 1..32 lowercase letters, digits or '-', starting with a letter, got {MapReader.Quote(name)}", k);
                continue;
            }
            if (v is not YamlMappingNode m)
            {
                problems.Add(path, $"must be a mapping ({{ports: [...], vlan: N, ...}}), got {MapReader.Describe(v)}", v);
                continue;
            }
            var n = new MapReader(m, path, problems);
            var ports = n.StringList("ports");
            var ok = true;
            if (ports is null || ports.Count is 0 or > 8)
            {
                problems.Add(n.Child("ports"), "is required: 1 to 8 PFs by netdev name or PCI address, each a different PF", n.Get("ports") ?? m);
                ok = false;
            }
            else
            {
                for (var i = 0; i < ports.Count; i++)
                {
                    if (SpecLoader.PortProblem(ports[i]) is { } problem) { problems.Add($"{n.Child("ports")}[{i}]", problem, m); ok = false; }
                    else if (ports.Take(i).Contains(ports[i])) { problems.Add($"{n.Child("ports")}[{i}]", $"{MapReader.Quote(ports[i])} is listed twice", m); ok = false; }
                }
            }
            var vlan = n.Int("vlan", 1, 4094, null);
            var qos = n.Int("qos", 0, 7, null);
            var protocol = n.Choice("vlanProtocol", Protocols);
            if (vlan is null && (qos is not null || protocol is not null))
                problems.Add(n.Child("vlan"), "is needed with qos or vlanProtocol: the VLAN they belong to", m);
            var mtu = n.Int("mtu", 68, 9216, "bytes");
            var spoof = n.Bool("spoofCheck");
            var trust = n.Bool("trust");
            var linkState = n.Choice("linkState", LinkStates);
            var maxTx = n.Int("maxTxRate", 0, 1_000_000, "Mbit/s");
            var minTx = n.Int("minTxRate", 0, 1_000_000, "Mbit/s");
            if (maxTx is > 0 && minTx > maxTx) problems.Add(n.Child("minTxRate"), $"must not exceed maxTxRate ({maxTx} Mbit/s), got {minTx}", m);
            n.RejectUnknownKeys();
            if (ok)
                result[name] = new HostNetwork(name, ports!, vlan is { } id ? new VlanTag(id, qos ?? 0, protocol ?? VlanProtocol.Dot1Q) : null,
                    mtu, spoof, trust, linkState, maxTx, minTx);
        }
        return result;
    }

    private static readonly Dictionary<string, VlanProtocol> Protocols = new() { ["802.1Q"] = VlanProtocol.Dot1Q, ["802.1ad"] = VlanProtocol.Dot1Ad };
    private static readonly Dictionary<string, LinkState> LinkStates = new() { ["auto"] = LinkState.Auto, ["enable"] = LinkState.Enable, ["disable"] = LinkState.Disable };
}
