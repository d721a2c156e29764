using VmNet.Spec;
using YamlDotNet.RepresentationModel;

namespace VmNet.Host;

/// <summary>One PF and the number of VFs it should have.</summary>
public sealed record PfConfig(string Port, int Vfs);

/// <summary>
/// The host config (<c>/etc/vmnet/host.yaml</c>): which PFs get how many VFs. Example:
/// <code>
/// pfs:
///   - port: enp3s0f0np0     # netdev name or PCI address
///     vfs: 8
/// </code>
/// </summary>
public sealed record HostConfig(IReadOnlyList<PfConfig> Pfs)
{
    public const string DefaultPath = "/etc/vmnet/host.yaml";

    public static HostConfig LoadFile(string path)
    {
        try
        {
            return Load(YamlInput.ReadFile(path, path), path);
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
        if (list is null) problems.Add("pfs", "is required: a list of {port: PF netdev or PCI address, vfs: N}", root);
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
        return new HostConfig(pfs);
    }
}
