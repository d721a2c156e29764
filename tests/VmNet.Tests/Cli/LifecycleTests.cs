using System.Xml.Linq;
using VmNet.Host;
using VmNet.Leases;
using VmNet.Sim;
using VmNet.State;
using VmNet.Tests.Support;

namespace VmNet.Tests.Cli;

/// <summary>
/// The whole lifecycle in one process against libvirt's test:///default (one in-memory host per process) and a
/// simulated host: every step of up for real but the hardware, then status, down and rm, checking libvirt's own
/// view of the domain and the host tree after each step.
/// </summary>
public sealed class LifecycleTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    private (int Code, string Out, string Err) Vmnet(params string[] args)
    {
        var (o, e) = (new StringWriter(), new StringWriter());
        // gc takes no --connect: a lease names the libvirt connection of its own domain.
        string[] connect = args[0] == "gc" ? [] : ["--connect", "test:///default"];
        var code = VmNet.Cli.VmNetCli.Run([.. args, "--host-root", _dir["host"], "--state-dir", _dir["state"], .. connect], o, e);
        return (code, o.ToString(), e.ToString());
    }

    [Fact]
    public async Task Up_status_down_and_rm_through_libvirts_test_driver_leave_the_host_as_found()
    {
        SimHost.CreateExample(_dir["host"]);
        var start = HostState();
        await CliWrap.Cli.Wrap(RequiredTool.Path("qemu-img")).WithArguments(["create", "-q", "-f", "qcow2", _dir["base.qcow2"], "64M"])
            .ExecuteAsync(TestContext.Current.CancellationToken);
        var name = "life-" + Guid.NewGuid().ToString("n")[..8];
        var spec = _dir.Write("vm.yaml", File.ReadAllText(Repo.File("examples/vm.yaml"))
            .Replace("name: ceph-osd-1", "name: " + name).Replace("/var/lib/vmnet/images/debian-13-genericcloud-amd64.qcow2", _dir["base.qcow2"]));

        // test:///default keeps its in-memory host only while a connection is open: hold one for the whole lifecycle.
        using var keepAlive = VmNet.Libvirt.LibvirtConnection.Open("test:///default");

        var up = Vmnet("up", spec);

        Assert.True(up.Code == 0, up.Out + up.Err);
        Assert.Contains("[5/7] define: libvirt domain " + name + " at test:///default", up.Out);
        Assert.Contains("[6/7] start: " + name + " running", up.Out);
        using (var libvirt = VmNet.Libvirt.LibvirtConnection.Open("test:///default"))
        using (var domain = libvirt.TryLookupDomain(name))
        {
            Assert.NotNull(domain);
            Assert.True(domain.IsActive);
            var xml = XDocument.Parse(domain.GetXml());
            var hostdevs = xml.Descendants("hostdev").ToList();
            Assert.Equal(4, hostdevs.Count);
            Assert.All(hostdevs, h => Assert.Equal("no", (string?)h.Attribute("managed")));
        }
        var bound = new HostScanner(new HostRoot(_dir["host"])).FindPort("enp3s0f0np0", withVfs: true)!;
        Assert.Equal(["vfio-pci", "vfio-pci", "vfio-pci"], bound.Vfs.Take(3).Select(v => v.Driver));
        Assert.True(File.Exists(_dir[$"state/vms/{name}/seed.iso"]));
        Assert.Equal(4, new LeaseStore(new StateDir(_dir["state"])).OfVm(name).Count);

        var status = Vmnet("status", name);
        Assert.Equal(0, status.Code);
        Assert.StartsWith($"{name}: running (libvirt)", status.Out);
        Assert.Contains("storage  storage0   enp3s0f0np0  vf 1  0000:03:00.3  02:00:00:00:40:11  vlan 40", status.Out);

        // rm refuses a running VM without --force, and changes nothing.
        var before = (HostState(), Directory.GetFiles(_dir["state"], "*", SearchOption.AllDirectories).Order().ToList());
        var refused = Vmnet("rm", name);
        Assert.Equal(1, refused.Code);
        Assert.Equal("", refused.Out);
        Assert.Equal($"vmnet: {name} is running (libvirt); nothing was changed. Stop it first with `vmnet down {name}`, " +
            $"or stop and remove it at once with `vmnet rm --force {name}`\n", refused.Err);
        var after = (HostState(), Directory.GetFiles(_dir["state"], "*", SearchOption.AllDirectories).Order().ToList());
        Assert.Equal(before.Item1, after.Item1);
        Assert.Equal(string.Join('\n', before.Item2), string.Join('\n', after.Item2));
        using (var libvirt = VmNet.Libvirt.LibvirtConnection.Open("test:///default"))
        using (var domain = libvirt.TryLookupDomain(name))
            Assert.True(domain!.IsActive);

        var down = Vmnet("down", name);
        Assert.Equal(0, down.Code);
        using (var libvirt = VmNet.Libvirt.LibvirtConnection.Open("test:///default"))
        using (var domain = libvirt.TryLookupDomain(name))
            Assert.False(domain!.IsActive);
        Assert.Equal(4, new LeaseStore(new StateDir(_dir["state"])).OfVm(name).Count);

        var rm = Vmnet("rm", name);
        Assert.True(rm.Code == 0, rm.Out + rm.Err);
        Assert.Contains($"{name}: was not running; removed from libvirt", rm.Out);
        Assert.Contains($"{name}: deleted {_dir[$"state/vms/{name}"]} (disk overlay, seed, serial log)\n{name}: 4 VFs restored and released\n", rm.Out);
        using (var libvirt = VmNet.Libvirt.LibvirtConnection.Open("test:///default"))
            Assert.Null(libvirt.TryLookupDomain(name));
        Assert.Equal(start, HostState());
        Assert.False(Directory.Exists(_dir[$"state/vms/{name}"]));
        Assert.Equal(0, Vmnet("rm", name).Code);
    }

    /// <summary>examples/vm.yaml as VM <paramref name="name"/> on the QEMU backend under TCG, 128 MiB, over an empty base image.</summary>
    private async Task<string> QemuSpec(string name)
    {
        await CliWrap.Cli.Wrap(RequiredTool.Path("qemu-img")).WithArguments(["create", "-q", "-f", "qcow2", _dir["base.qcow2"], "64M"])
            .ExecuteAsync(TestContext.Current.CancellationToken);
        return _dir.Write("vm.yaml", "backend: qemu\naccel: tcg\n" + File.ReadAllText(Repo.File("examples/vm.yaml"))
            .Replace("ceph-osd-1", name).Replace("memory: 16GiB", "memory: 128MiB")
            .Replace("/var/lib/vmnet/images/debian-13-genericcloud-amd64.qcow2", _dir["base.qcow2"]));
    }

    /// <summary>
    /// QEMU refuses to start (the simulated host's VFs are no real PCI devices, so vfio-pci cannot open them): up
    /// removes what it made and gives the new VM's VFs back as they were found, with a message and exit code 1.
    /// </summary>
    [Fact]
    public async Task When_the_vm_cannot_start_up_gives_its_vfs_back_and_says_why()
    {
        RequiredTool.Path("qemu-system-x86_64");
        SimHost.CreateExample(_dir["host"]);
        var start = HostState();
        var spec = await QemuSpec("nostart");

        var up = Vmnet("up", spec);

        Assert.True(up.Code == 1, up.Out + up.Err);
        Assert.Contains("[5/7] define: qemu-system-x86_64 for nostart", up.Out);
        Assert.Contains("nostart's VFs were given back as they were found", up.Err);
        Assert.DoesNotContain("   at ", up.Err);
        Assert.Equal(start, HostState());
        Assert.Empty(new LeaseStore(new StateDir(_dir["state"])).OfVm("nostart"));
        Assert.False(Directory.Exists(_dir["state/vms/nostart"]));
    }

    /// <summary>
    /// The QEMU backend's leases follow its process: QEMU killed with kill -9 leaves its VFs to `vmnet gc`, which
    /// gives them back as they were found; after `vmnet down` the VM keeps them (the definition holds them). QEMU runs
    /// here from the rendered argv without its vfio-pci devices (no VFIO on this machine), through --templates.
    /// </summary>
    [Fact]
    public async Task A_killed_qemu_leaves_its_vfs_to_gc_and_a_vm_that_is_down_keeps_them()
    {
        RequiredTool.Path("qemu-system-x86_64");
        SimHost.CreateExample(_dir["host"]);
        var start = HostState();
        var spec = await QemuSpec("q1");
        var args = new VmNet.Rendering.Templates().Source(VmNet.Rendering.Templates.QemuArgs);
        var noVfio = System.Text.RegularExpressions.Regex.Replace(args, @"\{\{~ for m in vfs ~\}\}\n-device\nvfio-pci[^\n]*\n\{\{~ end ~\}\}\n", "");
        Assert.NotEqual(args, noVfio);
        _dir.Write("templates/qemu.args.sbn", noVfio);
        var leases = new LeaseStore(new StateDir(_dir["state"]));
        try
        {
            var up = Vmnet("up", spec, "--templates", _dir["templates"]);
            Assert.True(up.Code == 0, up.Out + up.Err);
            var qemu = new VmNet.Backends.QemuBackend(new StateDir(_dir["state"])).Running("q1")!.Value;
            Assert.All(leases.OfVm("q1"), l => Assert.Equal(new ProcessOwner(qemu.Pid, (long)qemu.StartTicks), l.Owner));
            var first = Vmnet("gc");
            Assert.True(first.Code == 0 && first.Out.Trim() == "no orphaned leases", first.Out + first.Err);

            // down: the definition holds the VFs, gc leaves them.
            Assert.Equal(0, Vmnet("down", "q1", "--timeout", "0").Code);
            Assert.All(leases.OfVm("q1"), l => Assert.IsType<DefinitionOwner>(l.Owner));
            Assert.Equal("no orphaned leases", Vmnet("gc").Out.Trim());

            // up again, then QEMU dies: gc gives every VF back as it was found.
            Assert.Equal(0, Vmnet("up", spec, "--templates", _dir["templates"]).Code);
            var again = new VmNet.Backends.QemuBackend(new StateDir(_dir["state"])).Running("q1")!.Value;
            System.Diagnostics.Process.GetProcessById(again.Pid).Kill();
            for (var i = 0; i < 50 && again.IsAlive; i++) await Task.Delay(100, TestContext.Current.CancellationToken);
            var gc = Vmnet("gc");
            Assert.Contains("4 orphaned VFs restored and released", gc.Out);
            Assert.Contains($"process {again.Pid} is gone", gc.Out);
            Assert.Empty(leases.OfVm("q1"));
            Assert.Equal(start, HostState());
        }
        finally
        {
            if (new VmNet.Backends.QemuBackend(new StateDir(_dir["state"])).Running("q1") is { } left)
                System.Diagnostics.Process.GetProcessById(left.Pid).Kill();
            Vmnet("rm", "q1", "--force", "--timeout", "0");
        }
    }

    private string HostState()
    {
        var kernel = new VmNet.Sim.SimulatedKernel(new HostRoot(_dir["host"]));
        var netlink = string.Join("\n", new[] { "enp3s0f0np0", "enp3s0f1np1" }
            .Select(pf => IpLinkJson.Render(0, kernel.ReadLinkAsync(pf, CancellationToken.None).GetAwaiter().GetResult())));
        return HostScannerTests.Snapshot(_dir["host/sys"]) + HostScannerTests.Snapshot(_dir["host/dev"]) + netlink;
    }
}
