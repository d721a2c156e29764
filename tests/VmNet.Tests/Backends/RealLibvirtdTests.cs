using System.Text.RegularExpressions;
using VmNet.Backends;
using VmNet.Leases;
using VmNet.Libvirt;
using VmNet.Planning;
using VmNet.Rendering;

namespace VmNet.Tests.Backends;

// Against a real libvirtd (qemu driver) started by LibvirtdFixture. This host has no VFIO and no usable KVM: the domain
// that starts is rendered with accel tcg and without its hostdevs.
[Collection("Libvirtd")]
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed class RealLibvirtdTests(LibvirtdFixture libvirtd)
{
    private static CancellationToken Cancel => TestContext.Current.CancellationToken;

    private static string UniqueName(string prefix) => $"{prefix}-{Guid.NewGuid():N}"[..(prefix.Length + 9)];

    [Fact]
    public async Task A_vmnet_domain_with_its_unmanaged_hostdevs_is_defined_read_back_and_undefined()
    {
        var uri = libvirtd.Uri;
        var name = UniqueName("vmnet-def");
        using var vm = new TestVm(name: name, accel: "tcg");
        using var connection = LibvirtConnection.Open(uri);
        using var backend = new LibvirtBackend(uri, vm.State);

        using (var domain = connection.DefineDomain(vm.Artifacts.DomainXml, validate: true))
        {
            try
            {
                var xml = domain.GetXml(inactive: true);
                Assert.Equal(2, Regex.Count(xml, "<hostdev mode='subsystem' type='pci' managed='no'>"));
                Assert.DoesNotContain("<interface", xml);
                Assert.Contains("<serial type='pty'>", xml);
                Assert.Contains("<acpi/>", xml);
                Assert.Contains($"<vmnet:vm xmlns:vmnet=\"{Renderer.XmlNamespace}\"", xml);
                var status = await backend.StatusAsync(name, Cancel);
                Assert.Equal("shut off", status?.State);
                Assert.Equal(vm.Plan.Vfs.Select(a => (a.Pf.Name, a.Mac, (int?)40)), status!.Vfs.Select(v => (v.Pf, v.Mac, v.Vlan)));
                Assert.Contains(name, (await backend.ListAsync(Cancel)).Select(s => s.Name));
                // The lease owner the plan hands the VFs to: this domain, by the UUID the plan renders.
                var owner = Assert.IsType<LibvirtDomainOwner>(Assert.Single(vm.Plan.Steps.OfType<HandOverLeases>()).Owner);
                Assert.Equal(domain.Uuid, owner.Domain);
                Assert.Null(Liveness.Gone(owner with { Uri = uri }));
            }
            finally
            {
                domain.Undefine();
            }
        }

        Assert.Null(connection.TryLookupDomain(name));
        var gone = Assert.IsType<LibvirtDomainOwner>(vm.Plan.Steps.OfType<HandOverLeases>().Single().Owner) with { Uri = uri };
        Assert.Equal($"its domain {gone.Domain:D} is no longer defined on {uri}", Liveness.Gone(gone));
    }

    [Fact]
    public async Task A_tcg_domain_rendered_by_the_templates_without_hostdevs_boots_and_stops()
    {
        var uri = libvirtd.Uri;
        var name = UniqueName("vmnet-tcg");
        using var vm = new TestVm(name: name, accel: "tcg", memory: "128MiB");
        await vm.CreateBaseImage();
        // Left out: the hostdevs (no VFIO here) and <locked/> memory (it makes libvirt raise QEMU's memlock
        // limit, which this container may not do: it lacks CAP_SYS_RESOURCE). Everything else is the rendered domain.
        var xml = Regex.Replace(vm.DomainXmlWithoutHostdevs(), @"\s*<memoryBacking>.*?</memoryBacking>", "", RegexOptions.Singleline);
        var artifacts = vm.Artifacts with { DomainXml = xml };
        using var backend = new LibvirtBackend(uri, vm.State);
        try
        {
            await TestVm.PrepareAsync(vm.Plan, artifacts, null, Cancel);
            await TestVm.DefineAndStartAsync(backend, vm.Plan, artifacts, Cancel);

            var running = await backend.StatusAsync(name, Cancel);
            Assert.Equal("running", running?.State);
            Assert.Contains(name, (await backend.ListAsync(Cancel)).Select(s => s.Name));
            using (var connection = LibvirtConnection.Open(uri))
            using (var domain = connection.TryLookupDomain(name))
            {
                var live = domain!.GetXml();
                Assert.Contains($"<source file='{vm.Plan.Paths.Seed}'", live);
                Assert.Contains("<acpi/>", live);
            }

            // No guest OS answers the ACPI button: after the grace period the domain is destroyed.
            var stopped = await backend.StopAsync(name, TimeSpan.FromSeconds(2), Cancel);

            Assert.Equal(StopResult.Forced, stopped);
            Assert.Equal("shut off", (await backend.StatusAsync(name, Cancel))?.State);
        }
        finally
        {
            await backend.RemoveAsync(name, TimeSpan.FromSeconds(2), Cancel);
        }
        Assert.Null(await backend.StatusAsync(name, Cancel));
        Assert.False(Directory.Exists(vm.Plan.Paths.VmDir));
    }
}
