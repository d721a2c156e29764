using System.Globalization;
using System.Xml.Linq;
using VmNet.Libvirt;
using VmNet.Rendering;

namespace VmNet.Tests.Rendering.Consumers;

/// <summary>
/// The rendered libvirt domain XML against its real consumers: libvirt's RNG schema (virt-xml-validate) and libvirt's
/// own parser (the test driver through our binding, with schema validation), read back as libvirt stores it.
/// </summary>
public sealed class DomainXmlTests : IDisposable
{
    private readonly string _nodeDir = Directory.CreateTempSubdirectory("vmnet-consumers-libvirt-").FullName;

    public void Dispose() => Directory.Delete(_nodeDir, recursive: true);

    /// <summary>A private, empty test-driver host (test:///default is shared per process).</summary>
    private LibvirtConnection OpenPrivateHost()
    {
        var node = Path.Join(_nodeDir, "node.xml");
        if (!File.Exists(node)) File.WriteAllText(node, "<node/>");
        return LibvirtConnection.Open("test://" + node);
    }

    [Theory]
    [MemberData(nameof(ConsumerCorpus.All), MemberType = typeof(ConsumerCorpus))]
    public async Task Virt_xml_validate_accepts_the_rendered_domain(string name)
    {
        using var vm = ConsumerCorpus.Render(name);
        var file = vm.Write("domain.xml", vm.Artifacts.DomainXml);

        var result = await Tools.Run("virt-xml-validate", [file, "domain"]);

        Assert.True(result.ExitCode == 0, Tools.Describe(result));
    }

    /// <summary>libvirt keeps the placement as rendered: each vCPU's pin, the emulator's, strict memory on node 1, the guest's cell, and the hugepages.</summary>
    [Fact]
    public void Libvirt_keeps_the_pinned_cpus_the_numa_binding_and_the_hugepages_of_a_placed_vm()
    {
        using var vm = ConsumerCorpus.Render("numa-dedicated");
        using var connection = OpenPrivateHost();

        using var domain = connection.DefineDomain(vm.Artifacts.DomainXml, validate: true);
        var xml = XElement.Parse(domain.GetXml(inactive: true));

        var p = vm.Plan.Placement;
        Assert.Equal([(0, "11"), (1, "12"), (2, "13"), (3, "14")], ((int, string)[])[.. p.VcpuCpus.Select((c, i) => (i, c.ToString(CultureInfo.InvariantCulture)))]);
        Assert.Equal(p.VcpuCpus.Select((c, i) => (i.ToString(CultureInfo.InvariantCulture), c.ToString(CultureInfo.InvariantCulture))),
            xml.Element("cputune")!.Elements("vcpupin").Select(e => ((string)e.Attribute("vcpu")!, (string)e.Attribute("cpuset")!)));
        Assert.Equal("15", (string?)xml.Element("cputune")!.Element("emulatorpin")!.Attribute("cpuset"));
        var memory = xml.Element("numatune")!.Element("memory")!;
        Assert.Equal(("strict", "1"), ((string?)memory.Attribute("mode"), (string?)memory.Attribute("nodeset")));
        Assert.Equal("1", (string?)xml.Element("numatune")!.Element("memnode")!.Attribute("nodeset"));
        var cell = xml.Element("cpu")!.Element("numa")!.Element("cell")!;
        Assert.Equal(("0-3", "2097152"), ((string?)cell.Attribute("cpus"), (string?)cell.Attribute("memory")));
        var page = xml.Element("memoryBacking")!.Element("hugepages")!.Element("page")!;
        Assert.Equal(("2048", "KiB"), ((string?)page.Attribute("size"), (string?)page.Attribute("unit")));
        Assert.Equal("immediate", (string?)xml.Element("memoryBacking")!.Element("allocation")!.Attribute("mode"));
        Assert.NotNull(xml.Element("memoryBacking")!.Element("locked"));
    }

    [Fact]
    public async Task Virt_xml_validate_refuses_a_domain_with_an_unknown_element()
    {
        using var vm = ConsumerCorpus.Render(ConsumerCorpus.Example);
        var file = vm.Write("domain.xml", vm.Artifacts.DomainXml.Replace("<memballoon model='none'/>", "<balloon/>"));

        var result = await Tools.Run("virt-xml-validate", [file, "domain"]);

        Assert.True(result.ExitCode != 0, Tools.Describe(result));
    }

    [Theory]
    [MemberData(nameof(ConsumerCorpus.All), MemberType = typeof(ConsumerCorpus))]
    public void Libvirt_defines_the_domain_with_validation_and_keeps_every_vf_its_mac_vlan_and_address(string name)
    {
        using var vm = ConsumerCorpus.Render(name);
        using var connection = OpenPrivateHost();

        using var domain = connection.DefineDomain(vm.Artifacts.DomainXml, validate: true);
        var xml = XElement.Parse(domain.GetXml(inactive: true));

        Assert.Equal(vm.Spec.Name, domain.Name);
        Assert.Equal(vm.Spec.Accel == VmNet.Spec.Accel.Kvm ? "kvm" : "qemu", (string?)xml.Attribute("type"));
        Assert.NotNull(xml.Element("memoryBacking")?.Element("locked"));
        Assert.NotNull(xml.Element("features")?.Element("acpi"));
        Assert.Empty(xml.Element("devices")!.Elements("interface"));
        var hostdevs = xml.Element("devices")!.Elements("hostdev").ToList();
        Assert.All(hostdevs, h => Assert.Equal(("pci", "no"), ((string?)h.Attribute("type"), (string?)h.Attribute("managed"))));
        Assert.Equal(vm.Plan.Vfs.Select(v => $"ua-{v.GuestName}"), hostdevs.Select(h => (string?)h.Element("alias")?.Attribute("name")));
        foreach (var (vf, h) in vm.Plan.Vfs.Zip(hostdevs))
        {
            // libvirt reads the address back with type='pci' added; nothing else: MAC and VLAN stay VmNet's.
            var address = h.Element("source")!.Element("address")!;
            var pci = vf.Vf.Pci; // dddd:bb:ss.f
            Assert.Equal(Hex(pci[..4]), Hex((string)address.Attribute("domain")!));
            Assert.Equal(Hex(pci[5..7]), Hex((string)address.Attribute("bus")!));
            Assert.Equal(Hex(pci[8..10]), Hex((string)address.Attribute("slot")!));
            Assert.Equal(Hex(pci[11..]), Hex((string)address.Attribute("function")!));
            Assert.Null(h.Element("mac"));
            Assert.Null(h.Element("vlan"));
        }
    }

    [Theory]
    [MemberData(nameof(ConsumerCorpus.All), MemberType = typeof(ConsumerCorpus))]
    public void Libvirt_keeps_the_vmnet_metadata_naming_each_network_and_its_vfs(string name)
    {
        using var vm = ConsumerCorpus.Render(name);
        using var connection = OpenPrivateHost();

        using var domain = connection.DefineDomain(vm.Artifacts.DomainXml, validate: true);
        var metadata = domain.GetMetadata(Renderer.XmlNamespace);

        Assert.NotNull(metadata);
        var root = XElement.Parse(metadata);
        XNamespace ns = root.Name.Namespace; // libvirt returns the element with its namespace prefix dropped
        Assert.Equal("vm", root.Name.LocalName);
        Assert.Equal("libvirt", (string?)root.Attribute("backend"));
        var networks = root.Elements(ns + "network").ToList();
        Assert.Equal(vm.Spec.Networks.Select(n => n.Name), networks.Select(n => (string?)n.Attribute("name")));
        for (var i = 0; i < networks.Count; i++)
        {
            var spec = vm.Spec.Networks[i];
            Assert.Equal(spec.Vlan?.Id.ToString(CultureInfo.InvariantCulture), (string?)networks[i].Attribute("vlan"));
            Assert.Equal(spec.Address.ToString(), (string?)networks[i].Attribute("address"));
            var vfs = networks[i].Elements(ns + "vf").ToList();
            var planned = vm.Members(i);
            Assert.Equal(planned.Select(v => v.GuestName), vfs.Select(v => (string?)v.Attribute("member")));
            Assert.Equal(planned.Select(v => v.Vf.Pci), vfs.Select(v => (string?)v.Attribute("pci")));
            Assert.Equal(planned.Select(v => v.Mac), vfs.Select(v => (string?)v.Attribute("mac")));
            Assert.Equal(planned.Select(v => v.Pf.Pci), vfs.Select(v => (string?)v.Attribute("pf-pci")));
            Assert.Equal(planned.Select(v => v.Vf.Index.ToString(CultureInfo.InvariantCulture)), vfs.Select(v => (string?)v.Attribute("vf")));
        }
    }

    [Fact]
    public void Libvirt_refuses_the_domain_when_a_vfs_pci_address_is_out_of_range()
    {
        using var vm = ConsumerCorpus.Render(ConsumerCorpus.Example);
        using var connection = OpenPrivateHost();
        var pci = vm.Plan.Vfs[0].Vf.Pci;
        var address = $"function='0x{pci[11..]}'/>";
        var broken = vm.Artifacts.DomainXml.Replace(address, "function='0x9'/>");
        Assert.NotEqual(vm.Artifacts.DomainXml, broken);

        // Without schema validation it is libvirt's own parser (virDomainDefParse) that refuses it, not the RNG schema.
        var parser = Assert.Throws<LibvirtException>(() => connection.DefineDomain(broken, validate: false));
        var schema = Assert.Throws<LibvirtException>(() => connection.DefineDomain(broken, validate: true));

        Assert.Contains("Invalid PCI address function=0x9, must be <= 7", parser.Message);
        Assert.Contains("failed to validate", schema.Message);
        Assert.Null(connection.TryLookupDomain(vm.Spec.Name));
    }

    private static int Hex(string s) => Convert.ToInt32(s.StartsWith("0x", StringComparison.Ordinal) ? s[2..] : s, 16);
}
