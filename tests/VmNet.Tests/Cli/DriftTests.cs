using System.Text.Json;
using VmNet.Host;
using VmNet.Leases;
using VmNet.Planning;
using VmNet.Sim;
using VmNet.Spec;
using VmNet.State;
using VmNet.Tests.Host;
using VmNet.Tests.Support;

namespace VmNet.Tests.Cli;

/// <summary>
/// Issue 14, drift: `vmnet up` of a running VM whose spec changed says what differs, changes the VFs' settings live,
/// and refuses what needs a restart before any change, naming each field and the commands that restart it; `status`
/// shows the VLAN the NIC really holds. Through the CLI, on libvirt's test:///default and a simulated host.
/// </summary>
public sealed class DriftTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    private (int Code, string Out, string Err) Vmnet(params string[] args)
    {
        var (o, e) = (new StringWriter(), new StringWriter());
        var code = VmNet.Cli.VmNetCli.Run([.. args, "--host-root", _dir["host"], "--state-dir", _dir["state"], "--connect", "test:///default"], o, e);
        return (code, o.ToString(), e.ToString());
    }

    private string Spec(string name, int vlan = 40, int cpus = 8) => _dir.Write("vm.yaml", File.ReadAllText(Repo.File("examples/vm.yaml"))
        .Replace("name: ceph-osd-1", "name: " + name).Replace("vlan: 40", $"vlan: {vlan}").Replace("cpus: 8", $"cpus: {cpus}")
        .Replace("/var/lib/vmnet/images/debian-13-genericcloud-amd64.qcow2", _dir["base.qcow2"]));

    /// <summary>The VLAN the simulated NIC holds for VF <paramref name="vf"/> of enp3s0f0np0.</summary>
    private int? VlanOnTheNic(int vf) =>
        new SimulatedKernel(new HostRoot(_dir["host"])).ReadLinkAsync("enp3s0f0np0", CancellationToken.None).GetAwaiter().GetResult().Vf(vf)!.Settings.Vlan!.Id;

    private string HostAndLedger() => HostScannerTests.Snapshot(_dir["host/sys"]) + HostSnapshot.Ledger(_dir["state"])
        + string.Join("\n", new[] { "enp3s0f0np0", "enp3s0f1np1" }.Select(pf =>
            IpLinkJson.Render(0, new SimulatedKernel(new HostRoot(_dir["host"])).ReadLinkAsync(pf, CancellationToken.None).GetAwaiter().GetResult())));

    [Fact]
    public async Task A_running_vm_takes_a_vlan_change_live_and_refuses_a_cpu_change_naming_both_and_the_restart()
    {
        SimHost.CreateExample(_dir["host"]);
        await CliWrap.Cli.Wrap(RequiredTool.Path("qemu-img")).WithArguments(["create", "-q", "-f", "qcow2", _dir["base.qcow2"], "64M"])
            .ExecuteAsync(TestContext.Current.CancellationToken);
        var name = "drift-" + Guid.NewGuid().ToString("n")[..8];
        using var keepAlive = VmNet.Libvirt.LibvirtConnection.Open("test:///default");
        try
        {
            var up = Vmnet("up", Spec(name));
            Assert.True(up.Code == 0, up.Out + up.Err);
            Assert.DoesNotContain("it was running", up.Out);
            var storage0 = new LeaseStore(new StateDir(_dir["state"])).OfVm(name).Single(l => l is { Network: "storage", Port: 0 });
            Assert.Equal(40, VlanOnTheNic(storage0.Vf));

            // Unchanged: nothing to change, and no wait for a guest that reported when it booted.
            var same = Vmnet("up", Spec(name));
            Assert.True(same.Code == 0, same.Out + same.Err);
            Assert.Contains("  it was running, as the spec says: nothing to change\n", same.Out);

            // VLAN 40 -> 41: changed live on the NIC, said so, and status shows what the NIC holds.
            var live = Vmnet("up", Spec(name, vlan: 41));
            Assert.True(live.Code == 0, live.Out + live.Err);
            Assert.Contains("  it was running; changed live: networks[0].vlan: 40 -> 41\n", live.Out);
            Assert.Equal(41, VlanOnTheNic(storage0.Vf));
            var status = Vmnet("status", name);
            Assert.Matches($@"storage\s+storage0\s+enp3s0f0np0\s+vf {storage0.Vf}\s+{storage0.Pci}\s+02:00:00:00:40:11\s+vlan 41\n", status.Out);
            var json = JsonDocument.Parse(Vmnet("status", name, "--json").Out).RootElement;
            Assert.All(json.GetProperty("vfs").EnumerateArray().Where(v => v.GetProperty("network").GetString() == "storage"),
                v => Assert.Equal(41, v.GetProperty("vlan").GetInt32()));

            // cpus 8 -> 4 with VLAN 41 -> 42: refused before any change, naming both and what to type.
            var before = HostAndLedger();
            var refused = Vmnet("up", Spec(name, vlan: 42, cpus: 4));
            Assert.Equal(1, refused.Code);
            Assert.Contains($"vmnet: {name} is running, and 1 change of the spec needs a restart: cpus: 8 -> 4 "
                + "(and these could change live: networks[0].vlan: 41 -> 42); restart it with the new spec: "
                + $"`vmnet down {name} --connect test:///default`, then this `vmnet up` again (its VFs stay leased in between)\n", refused.Err);
            Assert.DoesNotContain("   at ", refused.Err);
            Assert.Equal(before, HostAndLedger());
            Assert.Equal(41, VlanOnTheNic(storage0.Vf));

            // The dry run says the same, as a table and as a problem; exit 0.
            var dry = Vmnet("up", Spec(name, vlan: 42, cpus: 4), "--dry-run");
            Assert.True(dry.Code == 0, dry.Out + dry.Err);
            Assert.Contains($"{name} is running; the spec differs from what it was launched with:", dry.Out);
            Assert.Matches(@"cpus\s+8\s+4\s+needs a restart", dry.Out);
            Assert.Matches(@"networks\[0\]\.vlan\s+41\s+42\s+changes live", dry.Out);
            Assert.Contains("`vmnet up` would stop before the first change (1 problem):", dry.Out);
            var plan = JsonDocument.Parse(Vmnet("up", Spec(name, vlan: 42, cpus: 4), "--dry-run", "--json").Out).RootElement;
            Assert.True(plan.GetProperty("running").GetBoolean());
            Assert.Equal(["cpus:False", "networks[0].vlan:True"],
                plan.GetProperty("changes").EnumerateArray().Select(c => $"{c.GetProperty("field").GetString()}:{c.GetProperty("live").GetBoolean()}"));

            // Restarted as the message says, it runs with 4 vCPUs and VLAN 42.
            Assert.Equal(0, Vmnet("down", name).Code);
            var restarted = Vmnet("up", Spec(name, vlan: 42, cpus: 4));
            Assert.True(restarted.Code == 0, restarted.Out + restarted.Err);
            Assert.DoesNotContain("it was running", restarted.Out);
            Assert.Equal(4, JsonDocument.Parse(Vmnet("status", name, "--json").Out).RootElement.GetProperty("cpus").GetInt32());
            Assert.Equal(42, VlanOnTheNic(storage0.Vf));
        }
        finally
        {
            Vmnet("rm", name, "--force", "--timeout", "0");
        }
    }

    /// <summary>The comparison itself: each field by its spec path, live or not, a network added as one change.</summary>
    [Fact]
    public void Drift_names_each_changed_field_and_which_ones_change_live()
    {
        var spec = SpecLoader.LoadFile(Repo.File("examples/vm.yaml"));
        var record = LaunchRecord.Of(spec);
        var changed = spec with
        {
            Cpus = 4,
            Networks = [spec.Networks[0] with { Vlan = new VlanTag(41, Qos: 3), Trust = true, Mtu = null }, spec.Networks[1],
                spec.Networks[1] with { Name = "household" }],
        };

        Assert.Empty(Drift.Compare(record, spec));
        Assert.Equal(
            [
                new SpecChange("cpus", "8", "4", Live: false),
                new SpecChange("networks[0].mtu", "9000", "(none)", Live: false),
                new SpecChange("networks[0].vlan", "40", "41", Live: true),
                new SpecChange("networks[0].qos", "0", "3", Live: true),
                new SpecChange("networks[0].trust", "false", "true", Live: true),
                new SpecChange("networks[2]", "(none)", "network household", Live: false),
            ],
            Drift.Compare(record, changed));
        Assert.Equal([new SpecChange("networks[1]", "network public", "(none)", Live: false)],
            Drift.Compare(record, spec with { Networks = [spec.Networks[0]] }));
    }

    /// <summary>What drift compares covers the whole spec: every key of templates/vm.reference.yaml (which documents
    /// every key) is a field of <see cref="SpecFields.Flatten"/>, and nothing else is.</summary>
    [Fact]
    public void The_compared_fields_are_exactly_the_keys_of_the_reference_spec()
    {
        var yaml = new YamlDotNet.RepresentationModel.YamlStream();
        yaml.Load(new StringReader(File.ReadAllText(Repo.File("templates/vm.reference.yaml"))));
        var keys = new List<string>();
        void Walk(YamlDotNet.RepresentationModel.YamlNode node, string path)
        {
            switch (node)
            {
                case YamlDotNet.RepresentationModel.YamlMappingNode map:
                    foreach (var (k, v) in map.Children) Walk(v, path.Length == 0 ? k.ToString() : $"{path}.{k}");
                    break;
                case YamlDotNet.RepresentationModel.YamlSequenceNode { } seq when path == "networks":
                    for (var i = 0; i < seq.Children.Count; i++) Walk(seq.Children[i], $"networks[{i}]");
                    break;
                default:
                    keys.Add(path);
                    break;
            }
        }
        Walk(yaml.Documents[0].RootNode, "");

        var flattened = SpecFields.Flatten(SpecLoader.LoadFile(Repo.File("templates/vm.reference.yaml"))).Keys;

        Assert.True(keys.Count > 35, $"the reference lists only {keys.Count} keys");
        Assert.Equal(keys.Order(StringComparer.Ordinal), flattened.Order(StringComparer.Ordinal));
    }
}
