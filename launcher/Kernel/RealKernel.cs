using System.Text;
using VmNet.Host;

namespace VmNet.Kernel;

/// <summary>The kernel of this machine: sysfs writes to /sys and rtnetlink from the process (needs root).</summary>
public sealed class RealKernel : IKernel, IDisposable
{
    private readonly Netlink.NetlinkSocket _netlink = new();

    public HostRoot Root => HostRoot.System;

    public Task WriteSysfsAsync(string hostPath, string value, CancellationToken ct)
    {
        var op = $"echo {value} > {hostPath}";
        try
        {
            // sysfs takes a value in one write(2); the errno of that write is the kernel's answer.
            using var handle = File.OpenHandle(hostPath, FileMode.Open, FileAccess.Write, FileShare.ReadWrite);
            RandomAccess.Write(handle, Encoding.ASCII.GetBytes(value.EndsWith('\n') ? value : value + "\n"), 0);
        }
        catch (UnauthorizedAccessException e)
        {
            throw new KernelException(op, Errno.EACCES, $"{KernelErrors.Text(Errno.EACCES)} ({e.Message}); run vmnet as root");
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            throw new KernelException(op, Errno.ENOENT);
        }
        catch (IOException e)
        {
            // On Linux .NET puts the raw errno into HResult for I/O errors it has no special exception for.
            // EEXIST is the one errno .NET turns into a Windows HRESULT (ERROR_FILE_EXISTS).
            var errno = e.HResult == unchecked((int)0x80070050) ? Errno.EEXIST
                : Enum.IsDefined((Errno)e.HResult) ? (Errno)e.HResult : Errno.EIO;
            throw new KernelException(op, errno, errno == Errno.EIO ? e.Message : null);
        }
        return Task.CompletedTask;
    }

    /// <summary>One RTM_NEWLINK, as `ip link set dev PF vf N ...` sends it, from the process (no `ip` to spawn).</summary>
    public Task SetVfAsync(string pf, int vf, VfSettings settings, CancellationToken ct)
    {
        ct.ThrowIfCancellationRequested();
        var op = $"ip link set dev {pf} vf {vf.ToString(System.Globalization.CultureInfo.InvariantCulture)} {settings}";
        // The PF by index, as iproute2 names it (if_nametoindex): the same bytes as its request.
        if (Root.ReadInt(Sysfs.NetIfIndex(pf)) is not { } ifindex) throw Refusal(op, pf, (int)Errno.ENODEV);
        var result = _netlink.Request(VfNetlink.SetMessage(ifindex, vf, settings));
        if (result < 0) throw Refusal(op, pf, -result);
        return Task.CompletedTask;
    }

    /// <summary>RTM_GETLINK with RTEXT_FILTER_VF, what `ip link show dev PF` reads.</summary>
    public Task<PfLink> ReadLinkAsync(string pf, CancellationToken ct)
    {
        ct.ThrowIfCancellationRequested();
        var (type, body, error) = _netlink.Get(VfNetlink.GetMessage(pf));
        if (error < 0) throw Refusal($"ip link show dev {pf}", pf, -error);
        if (type != VfNetlink.RTM_NEWLINK) throw new KernelException($"ip link show dev {pf}", Errno.EIO, $"the kernel answered with netlink message type {type}");
        return Task.FromResult(VfNetlink.ParseLink(body));
    }

    public void Dispose() => _netlink.Dispose();

    private static KernelException Refusal(string op, string pf, int errno)
    {
        var e = Enum.IsDefined((Errno)errno) ? (Errno)errno : Errno.EIO;
        return e == Errno.ENODEV
            ? new KernelException(op, e, $"Cannot find device \"{pf}\"")
            : new KernelException(op, e, "RTNETLINK answers: " + Netlink.NetlinkSocket.Text(errno));
    }
}
