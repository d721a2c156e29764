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

    private static async Task WaitUntil(Func<bool> done, string what)
    {
        for (var i = 0; i < 100 && !done(); i++) await Task.Delay(100, Cancel);
        Assert.True(done(), what + " did not happen within 10 s");
    }

    /// <summary>
    /// Runs the built `vmnet console NAME` under script(1), which gives it a terminal as a user has, and leaves with
    /// Ctrl+]; returns what the terminal showed.
    /// </summary>
    private static async Task<string> ConsoleThroughATerminal(string name, string uri, string stateDir)
    {
        var vmnet = Path.Join(AppContext.BaseDirectory, "vmnet");
        var command = $"{vmnet} console {name} --connect '{uri}' --state-dir {stateDir}";
        // Ctrl+] every second from the fourth on: what is typed before virsh puts the terminal in raw mode is flushed.
        var input = CliWrap.PipeSource.Create(async (stream, ct) =>
        {
            await Task.Delay(4000, ct);
            for (var i = 0; i < 20; i++)
            {
                await stream.WriteAsync(new byte[] { 0x1d }, ct);
                await stream.FlushAsync(ct);
                await Task.Delay(1000, ct);
            }
        });
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        var result = await CliWrap.Buffered.BufferedCommandExtensions.ExecuteBufferedAsync(
            CliWrap.Cli.Wrap(RequiredTool.Path("script")).WithArguments(["-qec", command, "/dev/null"])
                .WithStandardInputPipe(input).WithValidation(CliWrap.CommandResultValidation.None), timeout.Token);
        return result.StandardOutput + result.StandardError;
    }

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

            // The console is a pty libvirt logs to the VM's serial log (virtlogd), and `vmnet console` attaches to it.
            await WaitUntil(() => File.Exists(vm.Plan.Paths.SerialLog), "the serial log written through the console's <log>");
            var console = await ConsoleThroughATerminal(name, uri, vm.State.Path);
            Assert.Contains($"Connected to domain '{name}'", console);

            // No guest OS answers the ACPI button: after the grace period the domain is destroyed.
            var stopped = await backend.StopAsync(name, TimeSpan.FromSeconds(2), Cancel);

            Assert.Equal(StopResult.Forced, stopped);
            Assert.Equal("shut off", (await backend.StatusAsync(name, Cancel))?.State);

            // `virsh suspend`, then rm: the qemu driver refuses to shut down a paused domain (OPERATION_INVALID), which
            // once read as "not running" and undefined a domain whose QEMU still ran. A paused domain is destroyed at once.
            using (var connection = LibvirtConnection.Open(uri))
            using (var domain = connection.TryLookupDomain(name))
                domain!.Start();
            await Virsh(uri, "suspend", name);
            Assert.Equal("paused", (await backend.StatusAsync(name, Cancel))?.State);
            var clock = System.Diagnostics.Stopwatch.StartNew();
            var removed = await backend.RemoveAsync(name, TimeSpan.FromSeconds(120), Cancel);
            Assert.Equal(StopResult.Forced, removed);
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(60), $"a paused domain waited {clock.Elapsed} for a shutdown that cannot come");
            using (var connection = LibvirtConnection.Open(uri))
                Assert.Null(connection.TryLookupDomain(name));
        }
        finally
        {
            await backend.RemoveAsync(name, TimeSpan.FromSeconds(2), Cancel);
        }
        Assert.Null(await backend.StatusAsync(name, Cancel));
        Assert.False(Directory.Exists(vm.Plan.Paths.VmDir));
    }

    private static async Task Virsh(string uri, params string[] args)
    {
        var result = await CliWrap.Buffered.BufferedCommandExtensions.ExecuteBufferedAsync(
            CliWrap.Cli.Wrap(RequiredTool.Path("virsh")).WithArguments(["-c", uri, .. args])
                .WithValidation(CliWrap.CommandResultValidation.None), Cancel);
        Assert.True(result.ExitCode == 0, $"virsh {string.Join(' ', args)}: {result.StandardError}");
    }
}
