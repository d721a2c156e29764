using VmNet.Host;
using VmNet.Kernel;
using VmNet.Tests.Support;

namespace VmNet.Tests.Kernel;

/// <summary>The real kernel's answers, through calls that change nothing (refused writes, loopback reads).</summary>
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
    public async Task Iproute2_json_is_read_by_the_same_parser_and_its_refusals_map_to_errno()
    {
        RequiredTool.Path("ip");
        var lo = IpLinkJson.Parse(await _kernel.ShowLinkJsonAsync("lo", _ct));
        Assert.Equal(("lo", true), (lo.Name, lo.Up));
        Assert.Empty(lo.Vfs);

        var e = await Assert.ThrowsAsync<KernelException>(() => _kernel.SetVfAsync("lo", 0, new VfSettings { Trust = true }, _ct));
        Assert.Equal(Errno.EOPNOTSUPP, e.Errno);
        var gone = await Assert.ThrowsAsync<KernelException>(() => _kernel.ShowLinkJsonAsync("vmnet-no-such0", _ct));
        Assert.Equal(Errno.ENODEV, gone.Errno);
    }
}
