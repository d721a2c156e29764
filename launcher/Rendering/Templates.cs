using Scriban;

namespace VmNet.Rendering;

/// <summary>
/// The Scriban templates: embedded in the binary, or read from a directory (<c>--templates DIR</c>) where a file of
/// the same name overrides the embedded one. The agent's config is not among them (see <see cref="AgentConfigBuilder"/>).
/// </summary>
public sealed class Templates(string? directory = null)
{
    public const string Domain = "domain.xml.sbn";
    public const string QemuArgs = "qemu.args.sbn";
    public const string UserData = "user-data.sbn";
    public const string MetaData = "meta-data.sbn";
    public const string NetworkConfig = "network-config.sbn";
    public static readonly IReadOnlyList<string> All = [Domain, QemuArgs, UserData, MetaData, NetworkConfig];

    private readonly Dictionary<string, Template> _parsed = new(StringComparer.Ordinal);

    public string? Directory { get; } = directory;

    public string Source(string name)
    {
        if (Directory is not null)
        {
            var path = Path.Join(Directory, name);
            if (File.Exists(path)) return File.ReadAllText(path);
        }
        using var stream = typeof(Templates).Assembly.GetManifestResourceStream("templates/" + name)
            ?? throw new VmNetException($"the template {name} is not embedded in this build");
        using var reader = new StreamReader(stream);
        return reader.ReadToEnd();
    }

    public Template Get(string name)
    {
        if (_parsed.TryGetValue(name, out var cached)) return cached;
        var template = Template.Parse(Source(name), name);
        if (template.HasErrors)
            throw new VmNetException($"template {name}{(Directory is null ? "" : " in " + Directory)} does not parse: "
                + string.Join("; ", template.Messages.Select(m => m.ToString())), ExitCodes.InvalidInput);
        return _parsed[name] = template;
    }
}
