using System.Diagnostics;
using VmNet.Host;
using VmNet.Sim;
using VmNet.Tests.Cli;
using VmNet.Tests.Execution;
using VmNet.Tests.Support;

namespace VmNet.Tests.Sim;

/// <summary>
/// Issue 13, item 18: the simulator serves any tree laid out like the kernel's, not only the ones it generated. A copy
/// of tests/Fixtures/igb-lab (the lab kernel's own sysfs: PFs behind root ports 00:02.0 and 00:03.0, where the
/// simulator's generated trees use 00:01.N) goes through `vmnet host apply`, `up --no-start` and `rm` from the
/// command line; every device is found through /sys/bus/pci/devices/BDF, as on a real host.
/// </summary>
public sealed class CapturedTreeTests : IDisposable
{
    private readonly TempDir _dir = new();
    private const string Pf0Dir = "sys/devices/pci0000:00/0000:00:02.0/0000:01:00.0";

    public CapturedTreeTests()
    {
        Directory.CreateDirectory(_dir["host"]);
        // cp -a keeps the capture's relative links (and their cycles) as links.
        using var cp = Process.Start(new ProcessStartInfo("cp", ["-a", Repo.File("tests/Fixtures/igb-lab") + "/.", _dir["host"]]))!;
        cp.WaitForExit();
        Assert.Equal(0, cp.ExitCode);
    }

    public void Dispose() => _dir.Dispose();

    private (int Code, string Out, string Err) Vmnet(params string[] args) => HostCliTests.OnSimHost(_dir, args);

    /// <summary>
    /// The host as <see cref="HostSnapshot"/> sees it, but of each VF's netdev only its name: the driver recreates the
    /// netdev's directory when it binds again (the capture's has every attribute of the real kernel, the simulator's
    /// the ones vmnet reads), and igbvf picks a random MAC for a VF without an admin MAC.
    /// </summary>
    private string Snapshot() =>
        HostSnapshot.Of(_dir["host"], skip: p => System.Text.RegularExpressions.Regex.IsMatch(p, @":10\.\d/net/[^/]+/|^sys/class/net/enp[12]s16"));

    private string Link(string path) => new FileInfo(_dir[Path.Join("host", path)]).LinkTarget ?? "(no link)";

    [Fact]
    public void Up_binds_a_vf_of_the_real_kernels_tree_and_rm_gives_it_back_as_found()
    {
        var start = Snapshot();
        var spec = _dir.Write("vm.yaml", "name: cap\ndisk: {image: /i.qcow2}\nnetworks:\n  - name: s\n    vlan: 40\n    ports: [enp1s0, enp2s0]\n    address: dhcp\n");

        var up = Vmnet("up", spec, "--out", _dir["out"], "--no-start");

        Assert.True(up.Code == 0, $"vmnet up exited {up.Code}:\n{up.Out}\n{up.Err}");
        // PF0's VF 1 is on vfio-pci already (another user's, in the capture): VF 0 is the free one.
        Assert.Contains("[3/7] bind: 2 VFs on vfio-pci: 0000:01:10.0, 0000:02:10.0\n", up.Out);
        Assert.Equal("../../../../bus/pci/drivers/vfio-pci", Link("sys/devices/pci0000:00/0000:00:02.0/0000:01:10.0/driver"));
        Assert.Equal("../../../../bus/pci/drivers/vfio-pci", Link("sys/devices/pci0000:00/0000:00:03.0/0000:02:10.0/driver"));
        Assert.False(Directory.Exists(_dir["host/sys/devices/pci0000:00/0000:00:01.1"]), "the simulator made up a root port the tree does not have");

        var rm = Vmnet("rm", "cap");
        Assert.True(rm.Code == 0, $"vmnet rm exited {rm.Code}:\n{rm.Out}\n{rm.Err}");
        Assert.Equal(start, Snapshot());
    }

    [Fact]
    public async Task Host_apply_creates_vfs_beside_the_pf_where_the_kernel_would()
    {
        var config = _dir.Write("host.yaml", "pfs:\n  - port: enp1s0\n    vfs: 3\n");

        // The capture's PF0 VF 1 is on vfio-pci (bound by hand): give it back to igbvf as a user would, through the
        // (simulated) kernel's own files.
        var kernel = new SimulatedKernel(new HostRoot(_dir["host"]));
        foreach (var (file, value) in new[] { ("/sys/bus/pci/devices/0000:01:10.2/driver_override", ""), ("/sys/bus/pci/drivers/vfio-pci/unbind", "0000:01:10.2"), ("/sys/bus/pci/drivers_probe", "0000:01:10.2") })
            await kernel.WriteSysfsAsync(file, value, TestContext.Current.CancellationToken);
        Assert.Equal("../../../../bus/pci/drivers/igbvf", Link("sys/devices/pci0000:00/0000:00:02.0/0000:01:10.2/driver"));

        var apply = Vmnet("host", "apply", "--config", config);
        Assert.True(apply.Code == 0, $"vmnet host apply exited {apply.Code}:\n{apply.Out}\n{apply.Err}");
        Assert.Contains("2 -> 3 VFs", apply.Out);
        // VF 2 at routing ID 0x100 + offset 128 + stride 2 x 2 = 01:10.4, beside the PF under root port 00:02.0.
        Assert.Equal("../../../devices/pci0000:00/0000:00:02.0/0000:01:10.4", Link("sys/bus/pci/devices/0000:01:10.4"));
        Assert.Equal("../0000:01:10.4", Link($"{Pf0Dir}/virtfn2"));
        Assert.Equal("../../../../bus/pci/drivers/igbvf", Link("sys/devices/pci0000:00/0000:00:02.0/0000:01:10.4/driver"));
        Assert.Equal("-1", File.ReadAllText(_dir["host/sys/devices/pci0000:00/0000:00:02.0/0000:01:10.4/numa_node"]).Trim());
        var host = Vmnet("host");
        Assert.Equal(0, host.Code);
        Assert.Contains("0000:01:10.4", host.Out);
    }
}
