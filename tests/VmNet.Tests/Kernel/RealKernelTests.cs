using VmNet.Host;
using VmNet.Kernel;
using VmNet.Spec;
using VmNet.Tests.Support;

namespace VmNet.Tests.Kernel;

/// <summary>
/// The real kernel's answers, through calls that change nothing (refused writes, loopback reads). VfNetlinkTests
/// hold the VF messages to iproute2's; the lab proves them on real VFs.
/// </summary>
public sealed class RealKernelTests
{
    private readonly RealKernel _kernel = new();
    private readonly CancellationToken _ct = TestContext.Current.CancellationToken;

    [Fact]
    public async Task A_refused_write_carries_the_kernels_errno_not_an_io_error()
    {
        var e = await Assert.ThrowsAsync<KernelException>(() => _kernel.WriteSysfsAsync("/proc/self/oom_score_adj", "not-a-number", _ct));
        Assert.Equal(Errno.EINVAL, e.Errno);
        Assert.Equal("echo not-a-number > /proc/self/oom_score_adj: Invalid argument", e.Message);

        var missing = await Assert.ThrowsAsync<KernelException>(() => _kernel.WriteSysfsAsync("/sys/bus/pci/devices/0000:ff:1f.7/driver_override", "vfio-pci", _ct));
        Assert.Equal(Errno.ENOENT, missing.Errno);
    }

    [Fact]
    public async Task A_link_read_over_netlink_equals_iproute2s_and_refusals_carry_the_errno()
    {
        var ip = await RequiredTool.Run("ip", ["-j", "link", "show", "dev", "lo"]);
        Assert.Equal(0, ip.ExitCode);
        var lo = await _kernel.ReadLinkAsync("lo", _ct);
        var expected = IpLinkJson.Parse(ip.StandardOutput);
        Assert.Equal((expected.Name, expected.Up, expected.Mtu, expected.Mac), (lo.Name, lo.Up, lo.Mtu, lo.Mac));
        Assert.Equal(("lo", 65536), (lo.Name, lo.Mtu));
        Assert.Empty(lo.Vfs);

        var e = await Assert.ThrowsAsync<KernelException>(() => _kernel.SetVfAsync("lo", 0, new VfSettings { Trust = true }, _ct));
        Assert.Equal(Errno.EOPNOTSUPP, e.Errno);
        Assert.Equal("ip link set dev lo vf 0 trust on: RTNETLINK answers: Operation not supported", e.Message);
        var gone = await Assert.ThrowsAsync<KernelException>(() => _kernel.ReadLinkAsync("vmnet-no-such0", _ct));
        Assert.Equal(Errno.ENODEV, gone.Errno);
        var unset = await Assert.ThrowsAsync<KernelException>(() => _kernel.SetVfAsync("vmnet-no-such0", 0, new VfSettings { Trust = true }, _ct));
        Assert.Equal((Errno.ENODEV, "ip link set dev vmnet-no-such0 vf 0 trust on: Cannot find device \"vmnet-no-such0\""), (unset.Errno, unset.Message));
    }
}
