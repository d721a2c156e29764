using System.Xml.Linq;
using VmNet.Host;
using VmNet.Leases;
using VmNet.Planning;
using VmNet.Rendering;
using VmNet.Sim;
using VmNet.Spec;
using VmNet.State;
using VmNet.Tests.Support;

namespace VmNet.Tests.Rendering;

public class RendererTests
{
    /// <summary>Renders a spec from tests/VmNet.Tests/VmYaml/render on the host its name suggests (igb or ConnectX-5).</summary>
    internal static (LaunchPlan Plan, Artifacts Artifacts) Render(string specText, string hostShape = "connectx5", Templates? templates = null, string stateDir = "/var/lib/vmnet")
    {
        using var dir = new TempDir();
        if (hostShape == "igb") SimHost.Create(dir["host"], NicShape.Igb(), pfs: 2, numVfs: 7, mtu: 1500);
        else SimHost.CreateExample(dir["host"]);
        var state = new StateDir(stateDir);
        var plan = Planner.Make(SpecLoader.Load(specText), new HostScanner(new HostRoot(dir["host"])), new EmptyLeases(), state, new LaunchOptions(), templates ?? new Templates());
        return (plan, plan.Artifacts);
    }

    /// <summary>A ledger that holds no lease: planning reads only the host.</summary>
    internal sealed class EmptyLeases : ILeaseView
    {
        public bool IsLeased(string pci) => false;
        public IReadOnlyList<Lease> OfVm(string vm) => [];
        public string? MacOwner(string mac) => null;
        public IReadOnlySet<int> LeasedVfIndices(string pfPci) => new HashSet<int>();
        public IReadOnlyList<CpuLease> CpuLeases() => [];
        public Lease? Find(string pci) => null;
    }

    public static TheoryData<string> RenderSpecs() => new("example", "igb-dhcp", "arp-ipv6-qemu");

    /// <summary>Renders tests/VmNet.Tests/VmYaml/render/<paramref name="name"/>.yaml on the host its name suggests.</summary>
    internal static (LaunchPlan Plan, Artifacts Artifacts) RenderSpec(string name) =>
        Render(File.ReadAllText(Repo.File($"tests/VmNet.Tests/VmYaml/render/{name}.yaml")), name.StartsWith("example", StringComparison.Ordinal) ? "connectx5" : "igb");

    [Fact]
    public void The_render_specs_are_every_file_in_specs_render() =>
        Assert.Equal(RenderSpecs().Select(r => (string)r.Data).Order(),
            Directory.GetFiles(Repo.File("tests/VmNet.Tests/VmYaml/render"), "*.yaml").Select(Path.GetFileNameWithoutExtension).Order());

    [Theory]
    [MemberData(nameof(RenderSpecs))]
    public void Every_artifact_equals_its_approved_file(string name)
    {
        var (_, a) = RenderSpec(name);

        Golden.Verify($"{name}/domain.xml", a.DomainXml);
        Golden.Verify($"{name}/qemu.args", string.Join('\n', a.QemuArgs) + "\n");
        Golden.Verify($"{name}/user-data", a.UserData);
        Golden.Verify($"{name}/meta-data", a.MetaData);
        Golden.Verify($"{name}/network-config", a.NetworkConfig);
        Golden.Verify($"{name}/agent.json", a.AgentConfig);
    }

    [Fact]
    public void The_domain_passes_each_vf_through_unmanaged_and_leaves_its_mac_and_vlan_to_vmnet()
    {
        var (plan, a) = Render(File.ReadAllText(Repo.File("examples/vm.yaml")));
        var xml = XDocument.Parse(a.DomainXml);

        // One owner for every VF setting: no <interface type='hostdev'> (libvirt would set MAC and VLAN, with qos 0, at
        // each start and put back what it saved at each stop), and managed='no' (no rebind to the host driver at stop).
        Assert.Empty(xml.Descendants("interface"));
        var hostdevs = xml.Descendants("hostdev").ToList();
        Assert.Equal(plan.Vfs.Count, hostdevs.Count);
        foreach (var (vf, i) in plan.Vfs.Zip(hostdevs))
        {
            Assert.Equal(("subsystem", "pci", "no"), ((string?)i.Attribute("mode"), (string?)i.Attribute("type"), (string?)i.Attribute("managed")));
            Assert.Equal("vfio", (string?)i.Element("driver")?.Attribute("name"));
            Assert.Null(i.Element("mac"));
            Assert.Null(i.Element("vlan"));
            Assert.Equal($"ua-{vf.GuestName}", (string?)i.Element("alias")?.Attribute("name"));
            var address = i.Element("source")!.Element("address")!;
            Assert.Equal(vf.Vf.Pci, $"{((string)address.Attribute("domain")!)[2..]}:{((string)address.Attribute("bus")!)[2..]}:{((string)address.Attribute("slot")!)[2..]}.{((string)address.Attribute("function")!)[2..]}");
        }
        Assert.NotNull(xml.Root!.Element("features")!.Element("acpi"));
        Assert.NotNull(xml.Root!.Element("memoryBacking")!.Element("locked"));
        Assert.Equal("pty", (string?)xml.Descendants("serial").Single().Attribute("type"));
        Assert.Equal(plan.Paths.SerialLog, (string?)xml.Descendants("serial").Single().Element("log")?.Attribute("file"));
        XNamespace ns = Renderer.XmlNamespace;
        Assert.Equal(["storage", "public"], xml.Descendants(ns + "network").Select(n => (string)n.Attribute("name")!));
        Assert.Equal(plan.Vfs.Select(v => v.Vf.Pci), xml.Descendants(ns + "vf").Select(v => (string)v.Attribute("pci")!));
    }

    [Fact]
    public void Qemu_gets_one_vfio_device_per_vf_and_commas_in_paths_are_doubled()
    {
        var (plan, a) = Render(File.ReadAllText(Repo.File("tests/VmNet.Tests/VmYaml/render/arp-ipv6-qemu.yaml")), "igb");

        var devices = a.QemuArgs.Zip(a.QemuArgs.Skip(1)).Where(p => p.First == "-device" && p.Second.StartsWith("vfio-pci,", StringComparison.Ordinal)).Select(p => p.Second);
        Assert.Equal(plan.Vfs.Select(v => $"vfio-pci,host={v.Vf.Pci},id={v.GuestName}"), devices);
        Assert.Contains("-overcommit", a.QemuArgs);
        Assert.Contains("mem-lock=on", a.QemuArgs);
        Assert.DoesNotContain(a.QemuArgs, x => x.Contains('\n'));

        // A comma is doubled where QEMU parses options (-drive file=...), and kept where it takes the whole argument
        // as a file name (-kernel, -initrd, -pidfile) or a command line (-append).
        var (_, comma) = Render(File.ReadAllText(Repo.File("tests/VmNet.Tests/VmYaml/render/arp-ipv6-qemu.yaml")), "igb", stateDir: "/var/lib/vm,net");
        string After(string option) => comma.QemuArgs[comma.QemuArgs.ToList().IndexOf(option) + 1];
        Assert.Equal("/srv/images/vmlinuz,2", After("-kernel"));
        Assert.Equal("/var/lib/vm,net/vms/edge-2/qemu.pid", After("-pidfile"));
        Assert.Equal("console=ttyS0 note=<a&b>,c", After("-append"));
        Assert.StartsWith("file=/var/lib/vm,,net/vms/edge-2/disk.qcow2,if=virtio", After("-drive"));
    }

    [Fact]
    public void The_instance_id_changes_when_the_guest_network_changes()
    {
        var spec = File.ReadAllText(Repo.File("examples/vm.yaml"));
        var one = Render(spec).Artifacts.MetaData;
        var two = Render(spec.Replace("203.0.113.5/24", "203.0.113.6/24")).Artifacts.MetaData;

        Assert.NotEqual(one, two);
        Assert.Equal(one, Render(spec).Artifacts.MetaData);
    }

    /// <summary>
    /// Values that pass validation but carry characters with meaning in XML, YAML or QEMU's option syntax come out
    /// escaped: they can never add an element, a key or an argument.
    /// </summary>
    [Fact]
    public void Odd_but_valid_values_are_escaped_in_every_artifact()
    {
        var (_, a) = Render(File.ReadAllText(Repo.File("tests/VmNet.Tests/VmYaml/render/arp-ipv6-qemu.yaml")), "igb", stateDir: "/srv/vm,net");

        Assert.Contains("file=/srv/vm,,net/vms/edge-2/disk.qcow2,if=virtio,format=qcow2,discard=unmap", a.QemuArgs);
        Assert.Contains("socket,id=qmp,path=/srv/vm,,net/vms/edge-2/qmp.sock,server=on,wait=off", a.QemuArgs);
        Assert.Contains("-kernel\n/srv/images/vmlinuz,2\n-initrd\n/srv/images/initrd.gz\n-append\nconsole=ttyS0 note=<a&b>,c\n", string.Join('\n', a.QemuArgs));
        Assert.Contains("<kernel>/srv/images/vmlinuz,2</kernel>", a.DomainXml);
        Assert.Contains("<cmdline>console=ttyS0 note=&lt;a&amp;b&gt;,c</cmdline>", a.DomainXml);
        Assert.Contains("      - \"ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTY= it's \\\"quoted\\\" & <odd>\"", a.UserData);
        var userData = new YamlDotNet.RepresentationModel.YamlStream();
        userData.Load(new StringReader(a.UserData));
        var keys = (YamlDotNet.RepresentationModel.YamlSequenceNode)((YamlDotNet.RepresentationModel.YamlMappingNode)((YamlDotNet.RepresentationModel.YamlSequenceNode)((YamlDotNet.RepresentationModel.YamlMappingNode)userData.Documents[0].RootNode)["users"])[0])["ssh_authorized_keys"];
        Assert.Equal("ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTY= it's \"quoted\" & <odd>", keys[1].ToString());
    }

    [Theory]
    [InlineData("a'/><evil/>", "a&apos;/&gt;&lt;evil/&gt;")]
    [InlineData("x&y\"z", "x&amp;y&quot;z")]
    public void The_xml_filter_escapes_markup(string value, string escaped) => Assert.Equal(escaped, Filters.Xml(value));

    [Theory]
    [InlineData("a\nb")]
    [InlineData("a\u0001")]
    public void Control_characters_are_refused_rather_than_written_to_xml_or_argv(string value)
    {
        Assert.Throws<TemplateValueException>(() => Filters.Xml(value));
        Assert.Throws<TemplateValueException>(() => Filters.Qemu(value));
    }

    [Theory]
    [InlineData("key: value\nother: 1", "\"key: value\\nother: 1\"")]
    [InlineData("\"quoted\" \\ back", "\"\\\"quoted\\\" \\\\ back\"")]
    public void The_yaml_filter_writes_one_double_quoted_scalar(string value, string quoted)
    {
        Assert.Equal(quoted, Filters.Quoted(value));
        var stream = new YamlDotNet.RepresentationModel.YamlStream();
        stream.Load(new StringReader("k: " + quoted));
        Assert.Equal(value, ((YamlDotNet.RepresentationModel.YamlMappingNode)stream.Documents[0].RootNode)["k"].ToString());
    }

    [Fact]
    public void A_template_directory_overrides_the_embedded_template_of_the_same_name()
    {
        using var dir = new TempDir();
        dir.Write(Templates.MetaData, "instance-id: {{ vm.instance_id | yaml }}\ncustom: true\n");

        var (_, a) = Render(File.ReadAllText(Repo.File("examples/vm.yaml")), templates: new Templates(dir.Path));

        Assert.EndsWith("custom: true\n", a.MetaData);
        Assert.StartsWith("#cloud-config", a.UserData);
    }

    [Fact]
    public void A_template_that_does_not_parse_is_reported_with_its_name()
    {
        using var dir = new TempDir();
        dir.Write(Templates.MetaData, "{{ if }}");

        var e = Assert.Throws<VmNetException>(() => Render(File.ReadAllText(Repo.File("examples/vm.yaml")), templates: new Templates(dir.Path)));

        Assert.Contains("template meta-data.sbn in " + dir.Path + " does not parse", e.Message);
    }
}
