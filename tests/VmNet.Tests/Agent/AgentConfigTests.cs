using VmNet.GuestAgent.Config;
using VmNet.GuestAgent.Host;

namespace VmNet.Tests.Agent;

public sealed class AgentConfigTests
{
    private static string Sample => File.ReadAllText(Path.Combine(GuestImage.RepoRoot, "guest-agent/agent.sample.json"));

    [Fact]
    public void The_sample_config_parses_to_the_contract()
    {
        var config = ConfigLoader.Parse(Sample, "agent.sample.json");

        Assert.Equal(1, config.Version);
        Assert.Equal("ceph-osd-1", config.Hostname);
        Assert.Equal("org.vmnet.agent.0", config.ReportPort);
        var n = Assert.Single(config.Networks);
        Assert.Equal(("storage", "active-backup", 100, 0, "storage0", "active", 3, 9000), (n.Name, n.Mode, n.Miimon, n.ArpInterval, n.Primary, n.FailOverMac, n.NumGratArp, n.Mtu));
        Assert.Equal(["storage0", "storage1"], n.Members.Select(m => m.Name));
        Assert.Equal(["02:00:00:00:40:11", "02:00:00:00:40:12"], n.Members.Select(m => m.Mac));
        Assert.Equal(["192.168.40.11/24"], n.Addresses);
        Assert.Equal("192.168.40.1", n.Gateway);
        Assert.Equal(["192.168.40.1"], n.Dns);
        Assert.False(n.Dhcp);
    }

    /// <summary>The agent is agent.json's consumer: every config the launcher writes for the corpus (DHCP, IPv6, ARP
    /// monitoring, QinQ, ...) must load, with each network's addresses as planned.</summary>
    [Theory]
    [MemberData(nameof(ConsumerCorpus.All), MemberType = typeof(ConsumerCorpus))]
    public void Every_config_the_launcher_renders_loads_in_the_agent(string name)
    {
        using var vm = ConsumerCorpus.Render(name);

        LoadsAsWritten(vm.Plan, vm.Artifacts, $"consumers/{name}");
    }

    /// <summary>The same for the specs of the approved files (tests/VmNet.Tests/VmYaml/render).</summary>
    [Theory]
    [MemberData(nameof(RendererTests.RenderSpecs), MemberType = typeof(RendererTests))]
    public void Every_config_of_the_render_specs_loads_in_the_agent(string name)
    {
        var (plan, artifacts) = RendererTests.RenderSpec(name);

        LoadsAsWritten(plan, artifacts, $"render/{name}");
    }

    /// <summary>The agent's ConfigLoader (parse, then its own validation) takes the launcher's agent.json, the copy in
    /// user-data is the same text, and what the agent holds is all the launcher built: written again, it is the same JSON.</summary>
    private static void LoadsAsWritten(VmNet.Planning.LaunchPlan plan, VmNet.Rendering.Artifacts artifacts, string name)
    {
        var config = ConfigLoader.Parse(artifacts.AgentConfig, $"{name}/agent.json");

        Assert.Equal(plan.Vm.Networks.Select(n => (n.Name, n.Address.Dhcp)), config.Networks.Select(n => (n.Name!, n.Dhcp)));
        foreach (var (planned, loaded) in plan.Vm.Networks.Zip(config.Networks))
            Assert.Equal(planned.Address.Dhcp ? [] : [planned.Address.ToString()], loaded.Addresses);
        Assert.Equal(plan.Vfs.Select(v => (v.GuestName, v.Mac)), config.Networks.SelectMany(n => n.Members).Select(m => (m.Name!, m.Mac!)));
        Assert.Equal(artifacts.AgentConfig, VmNet.Rendering.AgentConfigBuilder.Json(config));
        var userData = new YamlDotNet.RepresentationModel.YamlStream();
        userData.Load(new StringReader(artifacts.UserData));
        var files = (YamlDotNet.RepresentationModel.YamlSequenceNode)((YamlDotNet.RepresentationModel.YamlMappingNode)userData.Documents[0].RootNode)["write_files"];
        var etc = files.Cast<YamlDotNet.RepresentationModel.YamlMappingNode>().Single(f => f["path"].ToString() == "/etc/vmnet/agent.json");
        Assert.Equal(artifacts.AgentConfig, etc["content"].ToString());
    }

    [Fact]
    public void Comments_and_absent_optional_fields_are_accepted()
    {
        const string json = """
            { "version": 1, // the launcher may annotate
              "networks": [ { "name": "b0", "miimon": 100, "members": [ {"name": "m0", "mac": "02:00:00:00:00:01"} ], "mtu": null } ] }
            """;

        var config = ConfigLoader.Parse(json, "test");

        Assert.Null(config.ReportPort);
        Assert.Null(config.Networks[0].Mtu);
        Assert.Null(config.Networks[0].Gateway);
    }

    [Fact]
    public void Every_problem_is_listed_with_its_field_path()
    {
        const string json = """
            { "version": 2, "networks": [ {
                "name": "a-name-longer-than-15", "mode": "balance-rr", "miimon": 0, "arpInterval": 0,
                "primary": "nope", "failOverMac": "always", "upDelay": 50,
                "members": [ {"name": "m0", "mac": "zz"}, {"name": "m1", "mac": "02:00:00:00:00:01"}, {"name": "m2", "mac": "02:00:00:00:00:01"} ],
                "dhcp": true, "addresses": ["10.0.0.1"], "gateway": "x", "dns": ["1.1.1.1"] } ] }
            """;

        var e = Assert.Throws<ConfigException>(() => ConfigLoader.Parse(json, "agent.json"));

        Assert.Equal("""
            config `agent.json` has 11 problem(s):
              field `version` must be 1, got `2`
              field `networks[0].name` must be an interface name of 1 to 15 characters without `/`, `:` or spaces, got `a-name-longer-than-15`
              field `networks[0].mode` must be `active-backup` (balance and LACP modes do not work over VFs), got `balance-rr`
              field `networks[0].miimon` must be greater than 0 (e.g. 100) unless arpInterval is set; a bond without a monitor never fails over, got `0`
              field `networks[0].failOverMac` must be `none`, `active` or `follow`, got `always`
              field `networks[0].members[0].mac` must be a MAC address like 02:00:00:00:40:11, got `zz`
              field `networks[0].members[2].mac` must be unique: one VF per member, got `02:00:00:00:00:01`
              field `networks[0].primary` must name one of the members, got `nope`
              field `networks[0].gateway` must be empty when dhcp is true: the DHCP server gives the router, got `x`
              field `networks[0].addresses[0]` must be an address with a prefix length, like 192.168.40.11/24 or fd00::11/64, got `10.0.0.1`
              field `networks[0].gateway` must be an IP address, got `x`
            """.ReplaceLineEndings("\n").TrimEnd(), e.Message);
    }

    [Fact]
    public void Arp_monitoring_needs_an_ipv4_target_and_no_miimon()
    {
        const string json = """
            { "version": 1, "networks": [ { "name": "b0", "miimon": 100, "arpInterval": 200, "arpTargets": ["fd00::1"],
                "members": [ {"name": "m0", "mac": "02:00:00:00:00:01"} ] } ] }
            """;

        var e = Assert.Throws<ConfigException>(() => ConfigLoader.Parse(json, "x"));

        Assert.Contains("field `networks[0].miimon` must be 0 when arpInterval is set (the kernel runs one monitor), got `100`", e.Message);
        Assert.Contains("field `networks[0].arpTargets[0]` must be an IPv4 address, got `fd00::1`", e.Message);
    }

    [Fact]
    public void An_unknown_field_is_refused_with_its_path()
    {
        var e = Assert.Throws<ConfigException>(() => ConfigLoader.Parse("""{"version":1,"networks":[{"name":"b0","miimonn":100}]}""", "x"));

        Assert.Contains("miimonn", e.Message);
    }

    [Fact]
    public void The_first_existing_source_wins_etc_before_fw_cfg()
    {
        var root = Directory.CreateTempSubdirectory("vmnet-agent-config-").FullName;
        try
        {
            var fwcfg = Path.Combine(root, "sys/firmware/qemu_fw_cfg/by_name/opt/vmnet/agent.json");
            Directory.CreateDirectory(fwcfg);
            File.WriteAllText(Path.Combine(fwcfg, "raw"), """{"version":1,"hostname":"from-fw-cfg"}""");
            var host = new HostFiles(root);
            Assert.Equal("from-fw-cfg", ConfigLoader.Load(host, null)!.Value.Config.Hostname);

            Directory.CreateDirectory(Path.Combine(root, "etc/vmnet"));
            File.WriteAllText(Path.Combine(root, "etc/vmnet/agent.json"), """{"version":1,"hostname":"from-etc"}""");
            var loaded = ConfigLoader.Load(host, null)!.Value;

            Assert.Equal(("from-etc", "/etc/vmnet/agent.json"), (loaded.Config.Hostname, loaded.Source));
        }
        finally { Directory.Delete(root, true); }
    }
}
