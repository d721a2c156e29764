using System.Text.Json;
using System.Text.Json.Nodes;
using CliWrap;
using CliWrap.Buffered;
using VmNet.Spec;
using VmNet.Tests.Support;
using YamlDotNet.RepresentationModel;

namespace VmNet.Tests.Spec;

/// <summary>
/// Issue 14: the spec's JSON Schema (templates/vm.schema.json) is made from the validation itself, named by the
/// reference file for editors, and agrees with `vmnet validate`: every spec the loader takes, the schema takes, and a
/// value of the kinds the schema can state (type, range, choice, pattern, unknown key, missing key, list length) is
/// refused by both. Checked with python3-jsonschema (Draft 2020-12), on the spec converted to JSON as YAML 1.2's core
/// schema reads it (YamlDotNet, as vmnet and editors' YAML language servers do; PyYAML's YAML 1.1 would read a MAC as
/// a base-60 number).
/// </summary>
public sealed class SpecSchemaTests
{
    private static readonly string Schema = Repo.File("templates/vm.schema.json");

    [Fact]
    public void The_committed_schema_is_the_one_the_validation_makes()
    {
        var made = SpecSchema.Generate(File.ReadAllText(Repo.File("templates/vm.reference.yaml")));

        Assert.True(made == File.ReadAllText(Schema),
            "templates/vm.schema.json is stale: regenerate it with `dotnet run --project launcher -- spec-schema > templates/vm.schema.json`");
        var (o, e) = (new StringWriter(), new StringWriter());
        Assert.Equal(0, VmNet.Cli.VmNetCli.Run(["spec-schema"], o, e));
        Assert.Equal(made, o.ToString());
    }

    [Fact]
    public void The_reference_names_the_schema_for_editors_and_its_comments_describe_the_fields()
    {
        var reference = File.ReadAllText(Repo.File("templates/vm.reference.yaml"));
        Assert.StartsWith("# yaml-language-server: $schema=vm.schema.json\n", reference);
        var schema = JsonNode.Parse(File.ReadAllText(Schema))!;
        var miimon = schema["properties"]!["networks"]!["items"]!["properties"]!["bond"]!["properties"]!["miimon"]!;
        Assert.StartsWith("Link check every N ms.", (string)miimon["description"]!);
        Assert.Equal(0, (int)miimon["minimum"]!);
        var image = (string)schema["properties"]!["disk"]!["properties"]!["image"]!["description"]!;
        Assert.EndsWith("never writes the base.", image); // a comment continued on the next line
    }

    /// <summary>A spec as JSON, each plain scalar as YAML 1.2's core schema reads it.</summary>
    private static JsonNode? ToJson(YamlNode node) => node switch
    {
        YamlMappingNode m => new JsonObject(m.Children.Select(kv => KeyValuePair.Create(((YamlScalarNode)kv.Key).Value!, ToJson(kv.Value)))),
        YamlSequenceNode s => new JsonArray(s.Children.Select(ToJson).ToArray()),
        YamlScalarNode { Style: YamlDotNet.Core.ScalarStyle.Plain } p => p.Value switch
        {
            null or "" or "~" or "null" => null,
            "true" => JsonValue.Create(true),
            "false" => JsonValue.Create(false),
            var v when long.TryParse(v, System.Globalization.NumberStyles.AllowLeadingSign, System.Globalization.CultureInfo.InvariantCulture, out var n)
                && System.Text.RegularExpressions.Regex.IsMatch(v, @"^[-+]?[0-9]+$") => JsonValue.Create(n),
            var v => JsonValue.Create(v),
        },
        YamlScalarNode q => JsonValue.Create(q.Value ?? ""),
        _ => throw new InvalidOperationException("an alias"),
    };

    private const string Validator = """
        import json, sys, jsonschema
        schema = json.load(open(sys.argv[1]))
        validator = jsonschema.Draft202012Validator(schema)
        for line in sys.stdin:
            errors = list(validator.iter_errors(json.loads(line)))
            print("ok" if not errors else "refused: " + "; ".join("/".join(str(p) for p in e.absolute_path) + " " + e.message for e in errors)[:300])
        """;

    /// <summary>The schema's verdict on each spec, one line each ("ok" or "refused: ...").</summary>
    private static async Task<List<string>> SchemaVerdicts(IReadOnlyList<string> specs)
    {
        var lines = specs.Select(text =>
        {
            var yaml = new YamlStream();
            yaml.Load(new StringReader(text));
            return ToJson(yaml.Documents[0].RootNode)!.ToJsonString();
        });
        var result = await CliWrap.Cli.Wrap(RequiredTool.Path("python3")).WithArguments(["-c", Validator, Schema])
            .WithStandardInputPipe(PipeSource.FromString(string.Join("\n", lines) + "\n"))
            .ExecuteBufferedAsync(TestContext.Current.CancellationToken);
        return result.StandardOutput.Split('\n', StringSplitOptions.RemoveEmptyEntries).ToList();
    }

    private static string? LoaderVerdict(string text)
    {
        try { SpecLoader.Load(text); return null; }
        catch (SpecException e) { return string.Join("; ", e.Errors); }
    }

    [Fact]
    public async Task Every_spec_the_loader_takes_the_schema_takes_and_what_the_schema_can_state_both_refuse()
    {
        var example = File.ReadAllText(Repo.File("examples/vm.yaml"));
        string[] accepted =
        [
            example,
            File.ReadAllText(Repo.File("examples/demo.yaml")),
            File.ReadAllText(Repo.File("templates/vm.reference.yaml")),
            "name: m\ndisk: {image: /i.qcow2}\nnetworks: [{name: s, ports: [p0], address: dhcp}]\n",
            example.Replace("memory: 16GiB", "memory: 128MiB").Replace("cpus: 8", "cpus: 512"),
        ];
        string[] refused =
        [
            example.Replace("cpus: 8", "cpus: 0"),
            example.Replace("cpus: 8", "cpus: 513"),
            example.Replace("cpus: 8", "cpus: eight"),
            example.Replace("memory: 16GiB", "memory: 16GB"),
            example.Replace("name: ceph-osd-1", "name: Ceph"),
            example.Replace("name: ceph-osd-1", "nmae: ceph-osd-1"),
            example.Replace("    vlan: 40", "    vlan: 4095"),
            example.Replace("    vlan: 40", "    vlan: 40\n    vlanProtocol: 802.1x"),
            example.Replace("    mtu: 9000", "    mtu: 67"),
            example.Replace("    mtu: 9000", "    mtu: 9000\n    trust: yes"),
            example.Replace("    mtu: 9000", "    mtu: 9000\n    bond: {miimon: -1}"),
            example.Replace("    mtu: 9000", "    mtu: 9000\n    bond: {mode: 802.3ad}"),
            example.Replace("    mtu: 9000", "    mtu: 9000\n    colour: blue"),
            example.Replace("    address: 203.0.113.5/24\n", ""),
            example.Replace("    ports: [enp3s0f0np0, enp3s0f1np1]\n    address: 192.168.40.11/24", "    ports: []\n    address: 192.168.40.11/24"),
            example.Replace("  user: debian", "  user: Debian"),
            example.Replace("  hostname: ceph-osd-1", "  hostname: \"ceph\\tosd\""),
            "name: m\ndisk: {image: /i.qcow2}\nnetworks: []\n",
            "name: m\nnetworks: [{name: s, ports: [p0], address: dhcp}]\n",
        ];
        foreach (var text in accepted) Assert.True(LoaderVerdict(text) is null, $"the loader refuses an accepted case: {LoaderVerdict(text)}\n{text}");
        foreach (var text in refused) Assert.True(LoaderVerdict(text) is not null, $"the loader takes a refused case:\n{text}");

        var verdicts = await SchemaVerdicts([.. accepted, .. refused]);

        Assert.Equal(accepted.Length + refused.Length, verdicts.Count);
        for (var i = 0; i < accepted.Length; i++) Assert.True(verdicts[i] == "ok", $"the schema refuses what the loader takes: {verdicts[i]}\n{accepted[i]}");
        for (var i = 0; i < refused.Length; i++)
            Assert.True(verdicts[accepted.Length + i] != "ok", $"the schema takes what the loader refuses ({LoaderVerdict(refused[i])}):\n{refused[i]}");
    }
}
