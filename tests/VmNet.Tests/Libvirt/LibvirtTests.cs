using VmNet.Libvirt;

namespace VmNet.Tests.Libvirt;

// libvirt's test driver needs no daemon. test:///default is ONE shared in-memory host per process for as long as any
// connection to it is open (it starts with a running domain "test"), so tests that change domains would collide.
// test:///<file> builds a private host from a node XML at every open; each test uses that, so tests run in parallel.
public sealed class LibvirtTests : IDisposable
{
    private const string VmNetNs = "https://vmnet.dev/xmlns/vmnet/1";

    private readonly string _dir = Directory.CreateTempSubdirectory("vmnet-libvirt-").FullName;

    /// <summary>A test driver URI that opens a fresh, empty, private host each time.</summary>
    private string TestUri
    {
        get
        {
            var node = Path.Combine(_dir, "node.xml");
            if (!File.Exists(node))
                File.WriteAllText(node, "<node/>");
            return "test://" + node;
        }
    }

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static string DomainXml(string name = "vm1", string mac = "02:00:00:00:40:11", int vlan = 40, string extra = "") => $"""
        <domain type='test'>
          <name>{name}</name>
          <metadata>
            <vmnet:vm xmlns:vmnet='{VmNetNs}'><vmnet:spec>bonded</vmnet:spec></vmnet:vm>
          </metadata>
          <memory unit='MiB'>128</memory>
          <vcpu>1</vcpu>
          <memoryBacking><locked/></memoryBacking>
          <os><type arch='x86_64'>hvm</type></os>
          <features><acpi/></features>
          {extra}
          <devices>
            <interface type='hostdev' managed='yes'>
              <mac address='{mac}'/>
              <vlan><tag id='{vlan}'/></vlan>
              <source><address type='pci' domain='0x0000' bus='0x03' slot='0x00' function='0x2'/></source>
            </interface>
          </devices>
        </domain>
        """;

    [Fact]
    public void I_can_open_the_test_driver_and_read_its_uri_and_version()
    {
        using var connection = LibvirtConnection.Open("test:///default");

        Assert.Equal("test:///default", connection.Uri);
        Assert.True(connection.LibVersion >= new Version(1, 2, 12), $"libvirt {connection.LibVersion}");
    }

    [Fact]
    public void I_can_define_a_domain_and_read_it_back()
    {
        using var connection = LibvirtConnection.Open(TestUri);

        using var domain = connection.DefineDomain(DomainXml());
        var xml = domain.GetXml(inactive: true);

        Assert.Equal("vm1", domain.Name);
        Assert.NotEqual(Guid.Empty, domain.Uuid);
        Assert.Contains("<interface type='hostdev' managed='yes'>", xml);
        Assert.Contains("<mac address='02:00:00:00:40:11'/>", xml);
        Assert.Contains("<tag id='40'/>", xml);
        Assert.Contains("<address type='pci' domain='0x0000' bus='0x03' slot='0x00' function='0x2'/>", xml);
        Assert.Contains("<locked/>", xml);
        Assert.Contains("<acpi/>", xml);
    }

    [Fact]
    public void I_can_read_the_metadata_back_by_its_namespace()
    {
        using var connection = LibvirtConnection.Open(TestUri);
        using var domain = connection.DefineDomain(DomainXml());

        var metadata = domain.GetMetadata(VmNetNs);

        Assert.NotNull(metadata);
        Assert.Contains("<spec>bonded</spec>", metadata); // libvirt drops the namespace prefix
        Assert.Null(domain.GetMetadata("https://example.com/not-there"));
    }

    [Fact]
    public void I_can_start_destroy_and_undefine_a_domain()
    {
        using var connection = LibvirtConnection.Open(TestUri);
        using var domain = connection.DefineDomain(DomainXml());
        Assert.Equal(DomainState.Shutoff, domain.State);
        Assert.False(domain.IsActive);

        domain.SetAutostart(true);
        domain.Start();
        Assert.Equal(DomainState.Running, domain.State);
        Assert.True(domain.IsActive);
        Assert.Contains("<spec>bonded</spec>", domain.GetMetadata(VmNetNs));

        domain.Destroy();
        Assert.Equal(DomainState.Shutoff, domain.State);

        domain.Undefine();
        Assert.Null(connection.TryLookupDomain("vm1"));
    }

    [Fact]
    public void I_can_shut_down_a_running_domain()
    {
        using var connection = LibvirtConnection.Open(TestUri);
        using var domain = connection.DefineDomain(DomainXml());
        domain.Start();

        domain.Shutdown();

        Assert.Equal(DomainState.Shutoff, domain.State); // the test driver shuts down at once
    }

    [Fact]
    public void I_can_look_up_a_domain_by_name_or_uuid_and_list_all_domains()
    {
        using var connection = LibvirtConnection.Open(TestUri);
        using var defined = connection.DefineDomain(DomainXml());

        using var byName = connection.TryLookupDomain("vm1");
        using var byUuid = connection.TryLookupDomain(defined.Uuid);
        using var running = connection.DefineDomain(DomainXml("vm2", mac: "02:00:00:00:40:12"));
        running.Start();
        var all = connection.ListDomains();

        Assert.Equal(defined.Uuid, byName?.Uuid);
        Assert.Equal("vm1", byUuid?.Name);
        Assert.Equal(["vm1:False", "vm2:True"], all.Select(d => $"{d.Name}:{d.IsActive}").Order());
        foreach (var domain in all)
            domain.Dispose();
    }

    [Fact]
    public void Looking_up_a_missing_domain_returns_null()
    {
        using var connection = LibvirtConnection.Open(TestUri);

        Assert.Null(connection.TryLookupDomain("nope"));
        Assert.Null(connection.TryLookupDomain(Guid.NewGuid()));
    }

    [Fact]
    public void A_vlan_tag_above_4095_is_refused()
    {
        using var connection = LibvirtConnection.Open(TestUri);

        var error = Assert.Throws<LibvirtException>(() => connection.DefineDomain(DomainXml(vlan: 5000), validate: false));

        Assert.Equal(LibvirtErrorCode.XmlError, error.Code);
        Assert.Equal("Cannot define the domain: XML error: vlan tag id 5000 too large (maximum 4095)", error.Message);
    }

    [Fact]
    public void A_multicast_mac_is_refused()
    {
        using var connection = LibvirtConnection.Open(TestUri);

        var error = Assert.Throws<LibvirtException>(() => connection.DefineDomain(DomainXml(mac: "01:00:00:00:40:11"), validate: false));

        Assert.Equal(LibvirtErrorCode.XmlError, error.Code);
        Assert.Contains("expected unicast mac address, found multicast '01:00:00:00:40:11'", error.Message);
    }

    [Fact]
    public void Validation_refuses_an_element_the_schema_does_not_know()
    {
        using var connection = LibvirtConnection.Open(TestUri);
        var xml = DomainXml(extra: "<bogus/>");

        var error = Assert.Throws<LibvirtException>(() => connection.DefineDomain(xml));

        Assert.Equal(LibvirtErrorCode.XmlInvalidSchema, error.Code);
        Assert.Contains("Element domain has extra content: bogus", error.Message);
        Assert.DoesNotContain('\n', error.Message);
        using var unvalidated = connection.DefineDomain(xml, validate: false); // without validation libvirt drops it
        Assert.DoesNotContain("bogus", unvalidated.GetXml());
    }

    [Fact]
    public void Malformed_xml_is_refused_on_one_line()
    {
        using var connection = LibvirtConnection.Open(TestUri);

        var error = Assert.Throws<LibvirtException>(() => connection.DefineDomain("<domain", validate: false));

        Assert.Equal(LibvirtErrorCode.XmlDetail, error.Code);
        Assert.StartsWith("Cannot define the domain: ", error.Message);
        Assert.DoesNotContain('\n', error.Message);
    }

    [Fact]
    public void Validation_also_refuses_a_vlan_tag_above_4095()
    {
        using var connection = LibvirtConnection.Open(TestUri);

        var error = Assert.Throws<LibvirtException>(() => connection.DefineDomain(DomainXml(vlan: 5000)));

        Assert.Equal(LibvirtErrorCode.XmlInvalidSchema, error.Code);
    }

    [Fact]
    public void Destroying_a_stopped_domain_is_an_invalid_operation()
    {
        using var connection = LibvirtConnection.Open(TestUri);
        using var domain = connection.DefineDomain(DomainXml());

        var error = Assert.Throws<LibvirtException>(domain.Destroy);

        Assert.Equal(LibvirtErrorCode.OperationInvalid, error.Code);
        Assert.StartsWith("Cannot destroy domain 'vm1': ", error.Message);
    }

    [Fact]
    public void Opening_a_bogus_uri_throws_a_libvirt_exception_naming_the_uri()
    {
        var error = Assert.Throws<LibvirtException>(() => LibvirtConnection.Open("bogus:///x"));

        Assert.Contains("'bogus:///x'", error.Message);
        Assert.Contains("systemctl start libvirtd", error.Message);
        Assert.DoesNotContain('\n', error.Message);
    }

    [Fact]
    public void Connections_to_test_default_share_one_host()
    {
        var name = $"shared-{Guid.NewGuid():N}";
        using var first = LibvirtConnection.Open("test:///default");
        using var second = LibvirtConnection.Open("test:///default");

        using var defined = first.DefineDomain(DomainXml(name));
        using var seen = second.TryLookupDomain(name);
        defined.Undefine();

        Assert.NotNull(seen);
    }

    [Fact]
    public void Each_file_backed_test_connection_is_its_own_host_even_in_parallel()
    {
        var uri = TestUri;
        Parallel.For(0, 16, i =>
        {
            using var connection = LibvirtConnection.Open(uri);
            using var domain = connection.DefineDomain(DomainXml(mac: $"02:00:00:00:40:{i:x2}"));
            domain.Start();
            var all = connection.ListDomains();
            Assert.Equal(["vm1"], all.Select(d => d.Name));
            foreach (var d in all)
                d.Dispose();
            Assert.Contains($"02:00:00:00:40:{i:x2}", domain.GetXml());
            var error = Assert.Throws<LibvirtException>(() => connection.DefineDomain(DomainXml(vlan: 5000), validate: false));
            Assert.Equal(LibvirtErrorCode.XmlError, error.Code); // the last error is per thread
            domain.Destroy();
        });
    }
}
