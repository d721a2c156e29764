using System.Text.Json;
using VmNet.Cli;
using VmNet.Host;
using VmNet.Leases;
using VmNet.Spec;
using VmNet.State;
using VmNet.Tests.Support;

namespace VmNet.Tests.Spec;

/// <summary>
/// Networks the host defines by name (host.yaml <c>networks:</c>) and specs that use them (<c>network: NAME</c>): the
/// host's values fill what the spec leaves out; a spec may narrow them, never widen them.
/// </summary>
public sealed class HostNetworkTests
{
    private const string HostYaml = """
        pfs:
          - {port: enp3s0f0np0, vfs: 8}
          - {port: enp3s0f1np1, vfs: 8}
        networks:
          storage: {ports: [enp3s0f0np0, enp3s0f1np1], vlan: 40, qos: 3, mtu: 9000, trust: false, spoofCheck: true, maxTxRate: 10000, minTxRate: 1000}
          public: {ports: [enp3s0f1np1, enp3s0f0np0]}
        """;

    private static HostConfig Host() => HostConfig.Load(HostYaml, "/etc/vmnet/host.yaml");

    private static string Spec(string network) => $"""
        name: vm1
        disk: {"{"}image: /img.qcow2{"}"}
        networks:
          - {network}
        """;

    [Fact]
    public void The_host_config_reads_its_networks_and_what_each_fixes()
    {
        var host = Host();

        var storage = host.Networks["storage"];
        Assert.Equal(["enp3s0f0np0", "enp3s0f1np1"], storage.Ports);
        Assert.Equal(new VlanTag(40, 3), storage.Vlan);
        Assert.Equal((9000, false, true, 10000, 1000), (storage.Mtu, storage.Trust, storage.SpoofCheck, storage.MaxTxRate, storage.MinTxRate));
        Assert.Equal("vlan 40 qos 3, mtu 9000, spoofchk on, trust off, max_tx_rate 10000, min_tx_rate 1000", storage.Describe());
        var open = host.Networks["public"];
        Assert.Equal((null, null, null), (open.Vlan, open.Mtu, open.Trust));
    }

    [Theory]
    [InlineData("networks:\n  Storage: {ports: [enp1s0]}\n", "networks.Storage: a host network's name must be 1..32 lowercase letters")]
    [InlineData("networks:\n  storage: {vlan: 40}\n", "networks.storage.ports: is required: 1 to 8 PFs")]
    [InlineData("networks:\n  storage: {ports: [enp1s0], qos: 3}\n", "networks.storage.vlan: is needed with qos or vlanProtocol")]
    [InlineData("networks:\n  storage: {ports: [enp1s0], vlam: 4}\n", "networks.storage.vlam: unknown key; did you mean \"vlan\"?")]
    [InlineData("networks:\n  storage: {ports: [\"en p1\"]}\n", "networks.storage.ports[0]: ")]
    public void A_bad_host_network_is_refused_naming_its_field(string yaml, string message)
    {
        var e = Assert.Throws<SpecException>(() => HostConfig.Load(yaml));

        Assert.Contains(e.Errors, x => x.ToString().StartsWith(message, StringComparison.Ordinal));
    }

    [Fact]
    public void A_spec_naming_a_host_network_gets_its_ports_and_settings()
    {
        var n = SpecLoader.Load(Spec("{name: storage, network: storage, address: 192.168.40.11/24}"), host: Host().Named).Networks[0];

        Assert.Equal("storage", n.HostNetwork);
        Assert.Equal(["enp3s0f0np0", "enp3s0f1np1"], n.Ports);
        Assert.Equal(new VlanTag(40, 3), n.Vlan);
        Assert.Equal((9000, false, true), (n.Mtu, n.Trust, n.SpoofCheck));
        Assert.Equal(new TxRates(10000, 1000), n.Rates);
        Assert.Equal("enp3s0f0np0", n.Bond.Primary); // the bond's default primary is the host network's first port
    }

    [Fact]
    public void A_spec_may_narrow_what_the_host_fixes_and_set_what_it_leaves_open()
    {
        var n = SpecLoader.Load(Spec("{name: storage, network: storage, address: 192.168.40.11/24, mtu: 1500, maxTxRate: 5000, minTxRate: 500, vlan: 40}"), host: Host().Named).Networks[0];
        Assert.Equal((1500, new TxRates(5000, 500)), (n.Mtu, n.Rates));

        var open = SpecLoader.Load(Spec("{name: pub, network: public, address: dhcp, vlan: 10, trust: true}"), host: Host().Named).Networks[0];
        Assert.Equal((new VlanTag(10), true, "enp3s0f1np1"), (open.Vlan, open.Trust, open.Ports[0]));
    }

    [Fact]
    public void A_spec_that_widens_a_host_network_is_refused_naming_each_field()
    {
        var e = Assert.Throws<SpecException>(() => SpecLoader.Load(Spec(
            "{name: storage, network: storage, address: 192.168.40.11/24, vlan: 41, qos: 0, trust: true, spoofCheck: false, mtu: 9216, maxTxRate: 0, minTxRate: 2000, ports: [enp3s0f1np1, enp3s0f0np0]}"),
            host: Host().Named));

        Assert.Equal(ExitCodes.InvalidInput, e.ExitCode);
        var errors = e.Errors.Select(x => x.ToString()).ToList();
        string[] expected =
        [
            "networks[0].ports: host network storage fixes its ports [enp3s0f0np0, enp3s0f1np1] (/etc/vmnet/host.yaml); leave ports out",
            "networks[0].vlan: 41 differs from host network storage, which fixes it (vlan 40 qos 3 in /etc/vmnet/host.yaml); leave vlan out",
            "networks[0].qos: 0 differs from host network storage, which fixes it (vlan 40 qos 3 in /etc/vmnet/host.yaml); leave qos out",
            "networks[0].mtu: 9216 widens host network storage (mtu 9000 in /etc/vmnet/host.yaml); leave mtu out, or narrow it",
            "networks[0].spoofCheck: false widens host network storage (spoofCheck true in /etc/vmnet/host.yaml); leave spoofCheck out, or narrow it",
            "networks[0].trust: true widens host network storage (trust false in /etc/vmnet/host.yaml); leave trust out, or narrow it",
            "networks[0].maxTxRate: 0 widens host network storage (maxTxRate 10000 in /etc/vmnet/host.yaml); leave maxTxRate out, or narrow it",
            "networks[0].minTxRate: 2000 widens host network storage (minTxRate 1000 in /etc/vmnet/host.yaml); leave minTxRate out, or narrow it",
        ];
        foreach (var want in expected) Assert.Contains(errors, x => x.StartsWith(want, StringComparison.Ordinal));
        Assert.Equal(expected.Length, errors.Count);
    }

    [Fact]
    public void A_spec_repeating_the_hosts_values_is_accepted_and_the_merged_rates_are_checked_together()
    {
        var same = SpecLoader.Load(Spec("{name: storage, network: storage, address: dhcp, qos: 3, vlan: 40, trust: false, mtu: 9000}"), host: Host().Named).Networks[0];
        Assert.Equal(new VlanTag(40, 3), same.Vlan);

        // The host guarantees 1000 Mbit/s; a spec that narrows the limit below it contradicts itself once merged.
        var e = Assert.Throws<SpecException>(() => SpecLoader.Load(Spec("{name: storage, network: storage, address: dhcp, maxTxRate: 500}"), host: Host().Named));
        Assert.StartsWith("networks[0].maxTxRate: minTxRate 1000 must not exceed maxTxRate 500 Mbit/s (with host network storage's rates from /etc/vmnet/host.yaml)",
            Assert.Single(e.Errors).ToString());
    }

    [Fact]
    public void A_spec_that_names_no_host_network_does_not_read_the_host_config()
    {
        var read = false;
        var spec = SpecLoader.Load(Spec("{name: storage, ports: [enp1s0], address: dhcp}"), "vm.yaml", () => { read = true; throw new InvalidOperationException("read"); });

        Assert.False(read);
        Assert.Null(spec.Networks[0].HostNetwork);
    }

    [Fact]
    public void A_spec_naming_a_network_the_host_does_not_define_is_refused_with_those_it_does()
    {
        var e = Assert.Throws<SpecException>(() => SpecLoader.Load(Spec("{name: storage, network: san, address: dhcp}"), host: Host().Named));
        Assert.StartsWith("networks[0].network: no host network \"san\" in /etc/vmnet/host.yaml (it defines public, storage; `vmnet host networks` lists them)",
            Assert.Single(e.Errors).ToString());

        var none = Assert.Throws<SpecException>(() => SpecLoader.Load(Spec("{name: storage, network: san, address: dhcp}")));
        Assert.Contains("(it defines none;", Assert.Single(none.Errors).ToString());
    }

    private static (int Code, string Out, string Err) Vmnet(params string[] args)
    {
        var (o, e) = (new StringWriter(), new StringWriter());
        var code = VmNetCli.Run(args, o, e);
        return (code, o.ToString(), e.ToString());
    }

    /// <summary>Through the CLI on the simulated ConnectX-5 and libvirt's test driver: up, host networks, status, rm.</summary>
    [Fact]
    public async Task A_host_network_goes_through_up_status_host_networks_and_rm()
    {
        using var dir = new TempDir();
        VmNet.Sim.SimHost.Create(dir["host"], VmNet.Sim.NicShape.ConnectX5(), pfs: 2, numVfs: 8, mtu: 9000);
        var config = dir["host.yaml"];
        File.WriteAllText(config, HostYaml);
        var image = dir["base.qcow2"];
        await CliWrap.Cli.Wrap(RequiredTool.Path("qemu-img")).WithArguments(["create", "-q", "-f", "qcow2", image, "64M"]).ExecuteAsync(TestContext.Current.CancellationToken);
        var spec = dir["vm.yaml"];
        var name = $"hn-{Guid.NewGuid():N}"[..12];
        File.WriteAllText(spec, Spec("{name: storage, network: storage, address: 192.168.40.11/24}").Replace("vm1", name).Replace("/img.qcow2", image));
        string[] common = ["--host-root", dir["host"], "--state-dir", dir["state"]];

        Assert.Equal(2, Vmnet(["up", spec, "--dry-run", .. common]).Code); // without the host config the network is unknown
        // libvirt's test driver keeps test:///default's domains while a connection to it is open.
        using var keep = VmNet.Libvirt.LibvirtConnection.Open("test:///default");
        var (code, output, error) = Vmnet(["up", spec, "--host-config", config, "--connect", "test:///default", .. common]);
        Assert.True(code == 0, output + error);

        var lease = Assert.Single(new LeaseStore(new StateDir(dir["state"])).OfVm(name), l => l.Port == 0);
        Assert.Equal(("storage", new VlanTag(40, 3), new TxRates(10000, 1000)), (lease.HostNetwork, lease.Applied.Vlan, lease.Applied.Rates));
        var networks = Vmnet(["host", "networks", "--config", config, .. common]).Out.Split('\n');
        Assert.Contains(networks, l => l.StartsWith("  storage  enp3s0f0np0,enp3s0f1np1  vlan 40 qos 3, mtu 9000,", StringComparison.Ordinal) && l.EndsWith($"  {name}", StringComparison.Ordinal));
        Assert.Contains(networks, l => l.StartsWith("  public   enp3s0f1np1,enp3s0f0np0  vlan: the spec's", StringComparison.Ordinal) && l.EndsWith("  -", StringComparison.Ordinal));
        var (scode, status, serr) = Vmnet(["status", name, "--connect", "test:///default", .. common]);
        Assert.True(scode == 0, serr);
        Assert.Contains("storage: host network storage (its ports and what the host fixes of its VFs come from the host config)", status);
        using (var doc = JsonDocument.Parse(Vmnet(["status", name, "--json", "--connect", "test:///default", .. common]).Out))
            Assert.All(doc.RootElement.GetProperty("vfs").EnumerateArray(), v => Assert.Equal("storage", v.GetProperty("hostNetwork").GetString()));

        var rm = Vmnet(["rm", name, "--force", "--connect", "test:///default", .. common]);
        Assert.True(rm.Code == 0, rm.Out + rm.Err);
        using var after = JsonDocument.Parse(Vmnet(["host", "networks", "--json", "--config", config, .. common]).Out);
        Assert.All(after.RootElement.GetProperty("networks").EnumerateArray(), n => Assert.Equal(0, n.GetProperty("vms").GetArrayLength()));
    }
}
