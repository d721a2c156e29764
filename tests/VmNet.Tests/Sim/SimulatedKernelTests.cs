using VmNet.Host;
using VmNet.Kernel;
using VmNet.Sim;
using VmNet.Spec;
using VmNet.Tests.Support;

namespace VmNet.Tests.Sim;

public sealed class SimulatedKernelTests : IDisposable
{
    private readonly TempDir _dir = new();
    private readonly CancellationToken _ct = TestContext.Current.CancellationToken;

    public void Dispose() => _dir.Dispose();

    private (SimulatedKernel Kernel, HostScanner Scanner) Host(NicShape shape, int numVfs = 2)
    {
        SimHost.Create(_dir.Path, shape, pfs: 2, numVfs: numVfs);
        var root = new HostRoot(_dir.Path);
        return (new SimulatedKernel(root), new HostScanner(root));
    }

    private static async Task<Errno> Refusal(Func<Task> act) => (await Assert.ThrowsAsync<KernelException>(act)).Errno;

    [Fact]
    public async Task Writing_sriov_numvfs_zero_then_n_removes_and_creates_vfs_bound_to_the_vf_driver()
    {
        var (k, scan) = Host(NicShape.Igb());
        var numvfs = "/sys/class/net/enp1s0/device/sriov_numvfs";

        await k.WriteSysfsAsync(numvfs, "0", _ct);
        Assert.Empty(scan.FindPort("enp1s0", withVfs: true)!.Vfs);
        Assert.False(Directory.Exists(Path.Join(_dir.Path, "sys/bus/pci/devices/0000:01:10.0")));

        await k.WriteSysfsAsync(numvfs, "7", _ct);
        var pf = scan.FindPort("enp1s0", withVfs: true)!;
        Assert.Equal(7, pf.NumVfs);
        Assert.All(pf.Vfs, v => Assert.Equal("igbvf", v.Driver));
        Assert.Equal("0000:01:10.2", pf.Vfs[1].Pci);
        Assert.Equal(7, pf.Vfs.Select(v => v.IommuGroup).Distinct().Count());
    }

    [Fact]
    public async Task Numvfs_refusals_are_the_kernels_ebusy_erange_and_the_same_count_is_a_no_op()
    {
        var (k, _) = Host(NicShape.ConnectX5(totalVfs: 8), numVfs: 2);
        var numvfs = "/sys/bus/pci/devices/0000:03:00.0/sriov_numvfs";

        Assert.Equal(Errno.EBUSY, await Refusal(() => k.WriteSysfsAsync(numvfs, "3", _ct)));
        await k.WriteSysfsAsync(numvfs, "2", _ct);
        await k.WriteSysfsAsync(numvfs, "0", _ct);
        Assert.Equal(Errno.ERANGE, await Refusal(() => k.WriteSysfsAsync(numvfs, "9", _ct)));
        var e = await Assert.ThrowsAsync<KernelException>(() => k.WriteSysfsAsync(numvfs, "9", _ct));
        Assert.EndsWith("Numerical result out of range", e.Message);
    }

    [Fact]
    public async Task Driver_override_unbind_and_probe_move_the_vf_to_vfio_pci_and_back()
    {
        var (k, scan) = Host(NicShape.ConnectX5());
        const string vf = "0000:03:00.2";
        var group = scan.ReadVf(0, vf).IommuGroup;

        await k.WriteSysfsAsync($"/sys/bus/pci/devices/{vf}/driver_override", "vfio-pci", _ct);
        await k.WriteSysfsAsync("/sys/bus/pci/drivers/mlx5_core/unbind", vf, _ct);
        Assert.Null(scan.ReadVf(0, vf).Driver);
        Assert.False(Directory.Exists(Path.Join(_dir.Path, "sys/class/net/enp3s0f0v0")));
        await k.WriteSysfsAsync("/sys/bus/pci/drivers_probe", vf, _ct);
        Assert.Equal("vfio-pci", scan.ReadVf(0, vf).Driver);
        Assert.True(File.Exists(Path.Join(_dir.Path, $"dev/vfio/{group}")));

        await k.WriteSysfsAsync("/sys/bus/pci/drivers/vfio-pci/unbind", vf, _ct);
        await k.WriteSysfsAsync($"/sys/bus/pci/devices/{vf}/driver_override", "", _ct);
        await k.WriteSysfsAsync("/sys/bus/pci/drivers_probe", vf, _ct);
        var back = scan.ReadVf(0, vf);
        Assert.Equal(("mlx5_core", "enp3s0f0v0", (string?)null), (back.Driver, back.NetDev, back.DriverOverride));
        Assert.False(File.Exists(Path.Join(_dir.Path, $"dev/vfio/{group}")));
    }

    [Fact]
    public async Task Wrong_binds_and_unbinds_are_refused_as_the_kernel_does()
    {
        var (k, _) = Host(NicShape.ConnectX5());
        const string vf = "0000:03:00.2";

        Assert.Equal(Errno.ENODEV, await Refusal(() => k.WriteSysfsAsync("/sys/bus/pci/drivers/vfio-pci/unbind", vf, _ct)));
        Assert.Equal(Errno.EBUSY, await Refusal(() => k.WriteSysfsAsync("/sys/bus/pci/drivers/mlx5_core/bind", vf, _ct)));
        await k.WriteSysfsAsync("/sys/bus/pci/drivers/mlx5_core/unbind", vf, _ct);
        Assert.Equal(Errno.ENODEV, await Refusal(() => k.WriteSysfsAsync("/sys/bus/pci/drivers/vfio-pci/bind", vf, _ct)));
        Assert.Equal(Errno.EEXIST, await Refusal(() => k.WriteSysfsAsync("/sys/bus/pci/drivers/vfio-pci/new_id", "15b3 1018", _ct)));
        Assert.Equal(Errno.ENOENT, await Refusal(() => k.WriteSysfsAsync("/sys/bus/pci/devices/0000:09:00.0/driver_override", "x", _ct)));
        await k.WriteSysfsAsync("/sys/bus/pci/drivers/mlx5_core/bind", vf, _ct);
    }

    [Fact]
    public async Task Vf_settings_are_kept_and_read_back_per_vf()
    {
        var (k, _) = Host(NicShape.ConnectX5());

        await k.SetVfAsync("enp3s0f0np0", 1, new VfSettings { Vlan = new VlanTag(40, 3, VlanProtocol.Dot1Ad) }, _ct);
        await k.SetVfAsync("enp3s0f0np0", 1, new VfSettings { Mac = "02:00:00:00:40:11", Trust = true, LinkState = LinkState.Disable, Rates = new TxRates(1000, 100) }, _ct);
        var link = await k.ReadLinkAsync("enp3s0f0np0", _ct);

        Assert.Equal(new VfLink(0, VfSettings.Fresh), link.Vf(0));
        Assert.Equal(new VfLink(1, new VfSettings
        {
            Mac = "02:00:00:00:40:11", Vlan = new VlanTag(40, 3, VlanProtocol.Dot1Ad), Rates = new TxRates(1000, 100),
            SpoofCheck = true, Trust = true, LinkState = LinkState.Disable,
        }), link.Vf(1));
        // Printed as iproute2 6.1 prints it (the form snapshots compare), and read back the same.
        var json = IpLinkJson.Render(4, link);
        Assert.Contains("\"vlan_list\":[{\"vlan\":40,\"qos\":3,\"protocol\":\"802.1ad\"}]", json);
        Assert.Contains("\"vf\":0,\"link_type\":\"ether\",\"address\":\"00:00:00:00:00:00\",\"broadcast\":\"ff:ff:ff:ff:ff:ff\",\"vlan_list\":[{}]", json);
        Assert.Equal(link.Vfs, IpLinkJson.Parse(json).Vfs);
    }

    [Fact]
    public async Task Netlink_refusals_follow_the_driver_igb_has_no_link_state_and_no_qinq()
    {
        var (k, _) = Host(NicShape.Igb());

        Assert.Equal(Errno.EOPNOTSUPP, await Refusal(() => k.SetVfAsync("enp1s0", 0, new VfSettings { LinkState = LinkState.Enable }, _ct)));
        Assert.Equal(Errno.EPROTONOSUPPORT, await Refusal(() => k.SetVfAsync("enp1s0", 0, new VfSettings { Vlan = new VlanTag(40, 0, VlanProtocol.Dot1Ad) }, _ct)));
        Assert.Equal(Errno.EINVAL, await Refusal(() => k.SetVfAsync("enp1s0", 0, new VfSettings { Vlan = new VlanTag(5000) }, _ct)));
        Assert.Equal(Errno.EINVAL, await Refusal(() => k.SetVfAsync("enp1s0", 0, new VfSettings { Mac = "01:00:5e:00:00:01" }, _ct)));
        Assert.Equal(Errno.EINVAL, await Refusal(() => k.SetVfAsync("enp1s0", 7, new VfSettings { Trust = true }, _ct)));
        Assert.Equal(Errno.ENODEV, await Refusal(() => k.SetVfAsync("nope0", 0, new VfSettings { Trust = true }, _ct)));
        new SysfsTree(_dir.Path).SetUp("0000:01:00.0", "enp1s0", up: false);
        var e = await Assert.ThrowsAsync<KernelException>(() => k.SetVfAsync("enp1s0", 0, new VfSettings { Mac = "02:00:00:00:00:01" }, _ct));
        Assert.Equal((Errno.EPERM, "ip link set dev enp1s0 vf 0 mac 02:00:00:00:00:01: RTNETLINK answers: Operation not permitted"), (e.Errno, e.Message));
    }
}
