using System.Text;
using CliWrap;
using CliWrap.Buffered;

using VmNet.Host;

namespace VmNet.Kernel;

/// <summary>The kernel of this machine: sysfs writes to /sys and iproute2's <c>ip</c> (needs root).</summary>
public sealed class RealKernel : IKernel
{
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

    public async Task SetVfAsync(string pf, int vf, VfSettings settings, CancellationToken ct)
    {
        string[] args = ["link", "set", "dev", pf, "vf", vf.ToString(System.Globalization.CultureInfo.InvariantCulture), .. settings.IpArguments()];
        var r = await Ip(args, ct).ConfigureAwait(false);
        if (r.ExitCode != 0)
            throw new KernelException("ip " + string.Join(' ', args), KernelErrors.FromText(r.StandardError), r.StandardError.Trim());
    }

    public async Task<string> ShowLinkJsonAsync(string pf, CancellationToken ct)
    {
        string[] args = ["-j", "link", "show", "dev", pf];
        var r = await Ip(args, ct).ConfigureAwait(false);
        if (r.ExitCode != 0)
            throw new KernelException("ip " + string.Join(' ', args), KernelErrors.FromText(r.StandardError), r.StandardError.Trim());
        return r.StandardOutput;
    }

    private static async Task<BufferedCommandResult> Ip(string[] args, CancellationToken ct)
    {
        try
        {
            return await CliWrap.Cli.Wrap("ip").WithArguments(args).WithValidation(CommandResultValidation.None)
                .ExecuteBufferedAsync(ct).ConfigureAwait(false);
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            throw new VmNetException($"cannot run `ip` ({e.Message}): install iproute2 (apt-get install iproute2)", ExitCodes.HostCannotServe, e);
        }
    }
}
