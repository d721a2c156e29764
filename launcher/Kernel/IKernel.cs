using VmNet.Host;
using VmNet.Spec;

namespace VmNet.Kernel;

/// <summary>
/// The kernel boundary: everything <c>vmnet</c> changes on a host goes through here. Two implementations share all
/// code above it: <see cref="RealKernel"/> (sysfs writes and rtnetlink on "/") and the simulator (<c>Sim/</c>: the
/// kernel's reactions applied to a host tree in a directory).
/// </summary>
public interface IKernel
{
    /// <summary>Where reads of /sys, /proc and /dev go (the same root the writes change).</summary>
    HostRoot Root { get; }

    /// <summary>Writes <paramref name="value"/> to a sysfs file in one write; a refusal throws <see cref="KernelException"/> with the real errno.</summary>
    Task WriteSysfsAsync(string hostPath, string value, CancellationToken ct);

    /// <summary>
    /// Sets the VF settings that are not null in <paramref name="settings"/> through the PF (<c>ip link set dev PF vf N
    /// ...</c>, one RTM_SETLINK); a refusal throws <see cref="KernelException"/>.
    /// </summary>
    Task SetVfAsync(string pf, int vf, VfSettings settings, CancellationToken ct);

    /// <summary>The PF with every VF's settings, as <c>ip link show dev PF</c> shows them (RTM_GETLINK with RTEXT_FILTER_VF).</summary>
    Task<PfLink> ReadLinkAsync(string pf, CancellationToken ct);
}

/// <summary>The errno values the kernel answers VmNet's writes with.</summary>
public enum Errno
{
    EPERM = 1,
    ENOENT = 2,
    EIO = 5,
    EACCES = 13,
    EBUSY = 16,
    EEXIST = 17,
    ENODEV = 19,
    EINVAL = 22,
    ERANGE = 34,
    EPROTONOSUPPORT = 93,
    EOPNOTSUPP = 95,
}

/// <summary>A refusal by the kernel: the operation, the errno and the kernel's own words for it.</summary>
public sealed class KernelException(string operation, Errno errno, string? detail = null)
    : VmNetException($"{operation}: {detail ?? KernelErrors.Text(errno)}")
{
    public string Operation { get; } = operation;
    public Errno Errno { get; } = errno;
}

public static class KernelErrors
{
    /// <summary>strerror(3) of glibc, as the shell and iproute2 print it.</summary>
    public static string Text(Errno e) => e switch
    {
        Errno.EPERM => "Operation not permitted",
        Errno.ENOENT => "No such file or directory",
        Errno.EIO => "Input/output error",
        Errno.EACCES => "Permission denied",
        Errno.EBUSY => "Device or resource busy",
        Errno.EEXIST => "File exists",
        Errno.ENODEV => "No such device",
        Errno.EINVAL => "Invalid argument",
        Errno.ERANGE => "Numerical result out of range",
        Errno.EPROTONOSUPPORT => "Protocol not supported",
        Errno.EOPNOTSUPP => "Operation not supported",
        _ => $"errno {(int)e}",
    };

    /// <summary>The errno behind iproute2's "RTNETLINK answers: TEXT", or EIO when the words are unknown.</summary>
    public static Errno FromText(string stderr)
    {
        foreach (var e in Enum.GetValues<Errno>())
            if (stderr.Contains(Text(e), StringComparison.Ordinal)) return e;
        if (stderr.Contains("Cannot find device", StringComparison.Ordinal) || stderr.Contains("does not exist", StringComparison.Ordinal))
            return Errno.ENODEV;
        return Errno.EIO;
    }
}
