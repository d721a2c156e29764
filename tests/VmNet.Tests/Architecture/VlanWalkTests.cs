using System.Xml.Linq;
using VmNet.Execution;
using VmNet.Host;
using VmNet.Kernel;
using VmNet.Planning;
using VmNet.Sim;
using VmNet.Spec;
using VmNet.State;
using VmNet.Tests.Support;

namespace VmNet.Tests.Architecture;

/// <summary>
/// One field, <c>networks[].vlan</c> (with its qos and protocol), from the YAML to the VF and to domain.xml: it is
/// parsed once into a <see cref="VlanTag"/>, and that same object travels through the plan, its step and the lease;
/// iproute2's words are made once, at the kernel boundary, and the simulator applies the typed value.
/// </summary>
public sealed class VlanWalkTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    [Fact]
    public async Task The_vlan_is_parsed_once_and_the_same_typed_value_reaches_the_vf_the_lease_and_the_domain()
    {
        SimHost.Create(_dir["host"], NicShape.ConnectX5(), pfs: 2, numVfs: 2);
        var spec = SpecLoader.Load("""
            name: walk
            disk: {image: /img.qcow2}
            networks:
              - name: storage
                vlan: 40
                qos: 3
                vlanProtocol: 802.1ad
                ports: [enp3s0f0np0, enp3s0f1np1]
                address: 192.168.40.11/24
            """);
        // 1. The spec: one typed value.
        var tag = spec.Networks[0].Vlan;
        Assert.Equal(new VlanTag(40, 3, VlanProtocol.Dot1Ad), tag);

        // 2. The plan: each claim's settings and the step that sets the VLAN hold that very object.
        var ops = new HostOps(new SimulatedKernel(new HostRoot(_dir["host"])), new StateDir(_dir["state"]));
        var up = await ops.UpAsync(spec, TestContext.Current.CancellationToken);
        var plan = up.Plan;
        Assert.All(plan.Vfs, a => Assert.Same(tag, a.Settings.Vlan));
        var setVlan = plan.Steps.OfType<SetVf>().Where(s => s.Settings.Vlan is not null).ToList();
        Assert.Equal(2, setVlan.Count);
        Assert.All(setVlan, s => Assert.Same(tag, s.Settings.Vlan));

        // 3. The kernel boundary: the words an operator types, made in one place.
        Assert.Equal(["vlan", "40", "qos", "3", "proto", "802.1ad"], setVlan[0].Settings.IpArguments());
        Assert.Equal($"ip link set dev enp3s0f0np0 vf {plan.Vfs[0].Vf.Index} vlan 40 qos 3 proto 802.1ad", setVlan[0].Describe());

        // 4. The VF as its PF holds it, read back through iproute2's JSON, and the lease.
        foreach (var a in plan.Vfs)
        {
            var link = (await ops.Kernel.ReadLinkAsync(a.Pf.Name, TestContext.Current.CancellationToken)).Vf(a.Vf.Index)!;
            Assert.Equal(tag, link.Settings.Vlan);
            Assert.Equal(tag, ops.Ledger.Store.Find(a.Vf.Pci)!.Applied.Vlan); // a file: an equal value comes back
        }

        // 5. The domain: only VmNet's metadata names the VLAN; the VFs pass through unmanaged, so libvirt never sets
        //    (and resets) a VLAN of its own at start and stop: the VF keeps the one VmNet set.
        var xml = XDocument.Parse(plan.Artifacts.DomainXml);
        Assert.Empty(xml.Descendants("vlan"));
        Assert.Equal(2, xml.Descendants("hostdev").Count(h => (string?)h.Attribute("managed") == "no"));
        Assert.Equal("40", (string?)xml.Descendants().Single(e => e.Name.LocalName == "network").Attribute("vlan"));

        await ops.RemoveAsync("walk", TestContext.Current.CancellationToken);
    }
}
