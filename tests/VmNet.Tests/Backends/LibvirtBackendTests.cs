using VmNet.Backends;
using VmNet.Libvirt;
using VmNet.Rendering;

namespace VmNet.Tests.Backends;

// Against libvirt's test driver with a private host (test:///FILE holding <node/>): no daemon, no hardware, and each
// test has its own host. The backend holds one connection, which keeps that host for the test.
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed class LibvirtBackendTests : IDisposable
{
    private readonly TestVm _vm = new(name: "lvm1");
    private readonly LibvirtBackend _backend;

    public LibvirtBackendTests()
    {
        _backend = new LibvirtBackend("test://" + _vm.Dir.Write("node.xml", "<node/>"), _vm.State);
    }

    public void Dispose()
    {
        _backend.Dispose();
        _vm.Dispose();
    }

    private static CancellationToken Cancel => TestContext.Current.CancellationToken;

    private async Task Up()
    {
        await _vm.CreateBaseImage();
        await TestVm.PrepareAsync(_vm.Plan, _vm.Artifacts, null, Cancel);
        await TestVm.DefineAndStartAsync(_backend, _vm.Plan, _vm.Artifacts, Cancel);
    }

    /// <summary>The persistent definition, read back from libvirt through the backend's connection (its private host).</summary>
    private static string XmlOf(LibvirtBackend backend, string name)
    {
        using var domain = backend.Connection.TryLookupDomain(name);
        return Assert.IsType<LibvirtDomain>(domain).GetXml(inactive: true);
    }

    [Fact]
    public async Task Up_defines_a_validated_domain_with_the_vfs_and_starts_it()
    {
        await Up();

        var status = await _backend.StatusAsync("lvm1", Cancel);

        Assert.NotNull(status);
        Assert.Equal("running", status.State);
        Assert.True(status.Running);
        Assert.Equal("libvirt", status.Backend);
        Assert.Equal(_vm.Plan.Paths.SerialLog, status.SerialLog);
        Assert.Equal(
            _vm.Plan.Vfs.Select(a => new VfStatus("storage", a.GuestName, a.PortName, a.Pf.Name, a.Pf.Pci, a.Vf.Index, a.Vf.Pci, a.Mac, 40)),
            status.Vfs);
        Assert.Equal(["enp3s0f0np0", "enp3s0f1np1"], status.Vfs.Select(v => v.Pf));
    }

    [Fact]
    public async Task The_domain_read_back_from_libvirt_carries_the_unmanaged_hostdevs_and_the_vmnet_metadata()
    {
        await Up();

        var xml = XmlOf(_backend, "lvm1");

        foreach (var a in _vm.Plan.Vfs)
            Assert.Contains($"<address domain='0x{a.Vf.Pci[..4]}' bus='0x{a.Vf.Pci[5..7]}' slot='0x{a.Vf.Pci[8..10]}' function='0x{a.Vf.Pci[11..]}'/>", xml);
        Assert.Equal(2, System.Text.RegularExpressions.Regex.Count(xml, "<hostdev mode='subsystem' type='pci' managed='no'>"));
        Assert.DoesNotContain("<interface", xml);
        Assert.Matches("<vmnet:network [^>]*vlan=[\"']40[\"']", xml); // only in VmNet's metadata
        Assert.Contains($"xmlns:vmnet=\"{Renderer.XmlNamespace}\"", xml);
        Assert.Contains($"<source file='{_vm.Plan.Paths.Seed}'/>", xml);
        Assert.Contains($"<source file='{_vm.Plan.Paths.Disk}'/>", xml);
    }

    [Fact]
    public async Task Down_stops_the_domain_and_keeps_it_defined_and_its_files()
    {
        await Up();

        var first = await _backend.StopAsync("lvm1", TimeSpan.FromSeconds(5), Cancel);
        var second = await _backend.StopAsync("lvm1", TimeSpan.FromSeconds(5), Cancel);

        Assert.Equal(StopResult.ShutDown, first);   // the test driver powers off at once
        Assert.Equal(StopResult.AlreadyStopped, second);
        Assert.Equal("shut off", (await _backend.StatusAsync("lvm1", Cancel))?.State);
        Assert.True(File.Exists(_vm.Plan.Paths.Disk));
        Assert.True(File.Exists(_vm.Plan.Paths.Seed));

        await TestVm.DefineAndStartAsync(_backend, _vm.Plan, _vm.Artifacts, Cancel); // start again: same definition, same VFs
        Assert.Equal("running", (await _backend.StatusAsync("lvm1", Cancel))?.State);
    }

    [Fact]
    public async Task Rm_undefines_the_domain_and_deletes_its_files_and_is_idempotent()
    {
        await Up();

        await _backend.RemoveAsync("lvm1", TimeSpan.FromSeconds(5), Cancel);
        await _backend.RemoveAsync("lvm1", TimeSpan.FromSeconds(5), Cancel);

        Assert.Null(await _backend.StatusAsync("lvm1", Cancel));
        Assert.False(Directory.Exists(_vm.Plan.Paths.VmDir));
        Assert.True(File.Exists(_vm.BaseImage));
        Assert.False(await _backend.IsDefinedAsync("lvm1", Cancel));
        Assert.Equal(StopResult.AlreadyStopped, await _backend.StopAsync("lvm1", TimeSpan.FromSeconds(1), Cancel));
    }

    [Fact]
    public async Task Ls_lists_only_vmnet_domains()
    {
        await Up();
        using var foreign = _backend.Connection.DefineDomain("<domain type='test'><name>other</name><memory>131072</memory><os><type>hvm</type></os></domain>");

        var all = await _backend.ListAsync(Cancel);

        Assert.Equal(["lvm1"], all.Select(s => s.Name));
        var error = await Assert.ThrowsAsync<VmNetException>(() => _backend.StopAsync("other", TimeSpan.FromSeconds(1), Cancel));
        Assert.Equal("the libvirt domain other was not made by VmNet (it has no vmnet metadata); manage it with virsh", error.Message);
        Assert.Null(await _backend.StatusAsync("other", Cancel));
    }

    [Fact]
    public async Task Autostart_follows_the_spec()
    {
        using var vm = new TestVm(name: "auto1");
        var spec = vm.Plan.Vm with { Autostart = true };
        var plan = vm.Plan with { Vm = spec };
        await vm.CreateBaseImage();
        using var backend = new LibvirtBackend("test://" + vm.Dir.Write("node.xml", "<node/>"), vm.State);

        await TestVm.PrepareAsync(plan, vm.Artifacts, null, Cancel);
        await TestVm.DefineAndStartAsync(backend, plan, vm.Artifacts, Cancel);

        using var domain = backend.Connection.TryLookupDomain("auto1");
        Assert.True(domain?.Autostart);
        Assert.Contains("<hostdev mode='subsystem' type='pci' managed='no'>", XmlOf(backend, "auto1"));
    }

    [Fact]
    public async Task A_domain_xml_that_libvirt_refuses_is_reported_with_where_to_look()
    {
        await _vm.CreateBaseImage();
        var bad = _vm.Artifacts with { DomainXml = _vm.Artifacts.DomainXml.Replace("<devices>", "<bogus/><devices>") };

        var error = await Assert.ThrowsAsync<VmNetException>(() => TestVm.DefineAndStartAsync(_backend, _vm.Plan, bad, Cancel));

        Assert.StartsWith("Cannot define the domain: ", error.Message);
        Assert.Contains("Element domain has extra content: bogus", error.Message);
        Assert.EndsWith("check the template or rerun with --dry-run --out DIR to inspect it)", error.Message);
    }

    [Fact]
    public async Task An_unreachable_libvirt_is_reported_with_what_to_do()
    {
        using var backend = new LibvirtBackend("qemu+unix:///system?socket=/nonexistent/sock", _vm.State);

        var error = await Assert.ThrowsAnyAsync<VmNetException>(() => backend.StatusAsync("x", Cancel));

        Assert.Contains("Is libvirtd running?", error.Message);
        Assert.IsType<LibvirtException>(error);
    }

    [Fact]
    public void The_uri_comes_from_the_option_then_vmnet_connect_then_libvirts_own_settings_then_the_default()
    {
        using var dir = new TempDir();
        var conf = dir.Write("libvirt.conf", "# uri_default = \"qemu:///commented\"\n#\nuri_default = \"qemu+ssh://root@h/system\"\n");
        Dictionary<string, string> all = new() { ["VMNET_CONNECT"] = "test:///vmnet", ["LIBVIRT_DEFAULT_URI"] = "qemu:///session" };
        string? Env(string name) => all.GetValueOrDefault(name);

        Assert.Equal("test:///default", LibvirtBackend.ResolveUri("test:///default", Env, conf));
        Assert.Equal("test:///vmnet", LibvirtBackend.ResolveUri(null, Env, conf));
        all.Remove("VMNET_CONNECT");
        Assert.Equal("qemu:///session", LibvirtBackend.ResolveUri("", Env, conf));
        all.Remove("LIBVIRT_DEFAULT_URI");
        Assert.Equal("qemu+ssh://root@h/system", LibvirtBackend.ResolveUri(null, Env, conf));
        Assert.Equal("qemu:///system", LibvirtBackend.ResolveUri(null, Env, dir["missing.conf"]));
        Assert.Equal("qemu:///system", LibvirtBackend.ResolveUri(null, Env, dir.Write("empty.conf", "#uri_default = \"qemu:///x\"\n")));
        Assert.Null(LibvirtBackend.UriDefault("uri_default = \"\"\n"));
        Assert.Equal("qemu:///x", LibvirtBackend.UriDefault("  uri_default=\"qemu:///x\"  # a comment\n"));
        // The process's own lookup: the option wins over everything.
        Assert.Equal("test:///default", LibvirtBackend.ResolveUri("test:///default"));
    }
}
