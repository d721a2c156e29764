using VmNet.Host;
using VmNet.Kernel;
using VmNet.Leases;

namespace VmNet.Execution;

/// <summary>Reads, sets and waits on one VF through an <see cref="IKernel"/>; shared by apply, rollback and restore.</summary>
public sealed class VfOps(IKernel kernel)
{
    public const int MacReadBackTries = 20;
    public const int MacReadBackDelayMs = 100;
    public const int BindWaitMs = 10_000;

    public IKernel Kernel { get; } = kernel;
    public HostRoot Root => Kernel.Root;
    public HostScanner Host { get; } = new(kernel.Root);

    public string? Driver(string pci) => Host.DriverOf(pci);

    public string? DriverOverride(string pci) => Host.DriverOverrideOf(pci);

    public string? NetDev(string pci) => Host.NetDevOf(pci);

    public bool PfUp(string pf) => Host.IsUp(pf);

    public Task<PfLink> ReadPfAsync(string pf, CancellationToken ct) => Kernel.ReadLinkAsync(pf, ct);

    public async Task<VfSettings> ReadSettingsAsync(string pf, int vf, CancellationToken ct) =>
        (await ReadPfAsync(pf, ct).ConfigureAwait(false)).Vf(vf)?.Settings
        ?? throw new VmNetException($"`ip -j link show dev {pf}` lists no VF {vf}; was sriov_numvfs changed? Check with `vmnet host`", ExitCodes.HostCannotServe);

    /// <summary>The VF's state as found: netlink settings through the PF, driver and driver_override from sysfs.</summary>
    public async Task<VfState> ReadStateAsync(string pf, int vf, string pci, CancellationToken ct) =>
        new(await ReadSettingsAsync(pf, vf, ct).ConfigureAwait(false), Driver(pci), DriverOverride(pci), NetDev(pci));

    public static async Task WaitAsync(Func<bool> done, int timeoutMs, Func<string> failure, CancellationToken ct)
    {
        var deadline = Environment.TickCount64 + timeoutMs;
        while (!done())
        {
            if (Environment.TickCount64 > deadline) throw new VmNetException(failure(), ExitCodes.Failure);
            await Task.Delay(20, ct).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Sets VF settings and reads them back: the MAC up to 20 times 100 ms apart (as sriov-cni does), every other
    /// setting once. igb answers EOPNOTSUPP to any link state: <c>state auto</c> then counts as done (the VF follows the
    /// port anyway), <c>enable</c>/<c>disable</c> fail saying so.
    /// </summary>
    public async Task SetAndVerifyAsync(string pf, int vf, string pci, VfSettings settings, CancellationToken ct)
    {
        try
        {
            await Kernel.SetVfAsync(pf, vf, settings, ct).ConfigureAwait(false);
        }
        catch (KernelException e) when (e.Errno == Errno.EOPNOTSUPP && settings == new VfSettings { LinkState = Spec.LinkState.Auto })
        {
            return;
        }
        catch (KernelException e)
        {
            throw Explain(e, pf, vf, pci, settings);
        }
        for (var attempt = 1; ; attempt++)
        {
            var got = await ReadSettingsAsync(pf, vf, ct).ConfigureAwait(false);
            var wrong = settings.Mismatches(got);
            if (wrong.Count == 0) return;
            var macOnly = settings.Unmet(got) is { Mac: not null } unmet && unmet == new VfSettings { Mac = unmet.Mac };
            if (!macOnly || attempt >= MacReadBackTries)
                throw new VmNetException(
                    $"VF {vf} of {pf} ({pci}) did not take `ip link set dev {pf} vf {vf} {settings}`: {string.Join("; ", wrong)} "
                    + $"(read back with `ip -j link show dev {pf}`); check `dmesg` for the driver's reason", ExitCodes.Failure);
            await Task.Delay(MacReadBackDelayMs, ct).ConfigureAwait(false);
        }
    }

    /// <summary>The kernel's refusal with what to do about it.</summary>
    public VmNetException Explain(KernelException e, string pf, int vf, string pci, VfSettings settings)
    {
        var what = settings.IpArguments() is [var first, ..] ? first : "";
        var hint = (e.Errno, what) switch
        {
            (Errno.EPERM, "mac") => PfUp(pf)
                ? $"the driver of {pf} refused an administratively set MAC for VF {vf}; on mlx5 set the admin MAC before binding to vfio-pci, and check the PF's firmware and `dmesg`"
                : $"{pf} is down, and a VF's MAC cannot be set through a down PF: bring it up: ip link set dev {pf} up",
            (Errno.EOPNOTSUPP, "state") => $"the driver of {pf} ({Driver(Root.LinkName(Sysfs.NetDeviceLink(pf)) ?? "") ?? "?"}) cannot force a VF's link state; use link-state auto in the spec (the VF follows the port)",
            (Errno.EOPNOTSUPP, _) or (Errno.EPROTONOSUPPORT, _) => $"the driver of {pf} does not support `{what}` on VFs; remove that setting from the spec",
            (Errno.ENODEV, _) => $"{pf} is gone; check `ip link` and the spec's ports",
            (Errno.EINVAL, _) => $"the driver of {pf} refused the value; check `dmesg` and the spec's {what}",
            (Errno.EPERM or Errno.EACCES, _) => "run vmnet as root",
            _ => "check `dmesg`",
        };
        return new VmNetException($"cannot configure VF {vf} of {pf} ({pci}): {e.Message}; {hint}",
            e.Errno == Errno.EPERM && what == "mac" && !PfUp(pf) ? ExitCodes.HostCannotServe : ExitCodes.Failure, e);
    }

    /// <summary>A sysfs write whose refusal says what to do.</summary>
    public async Task WriteAsync(string path, string value, string pci, CancellationToken ct)
    {
        try
        {
            await Kernel.WriteSysfsAsync(path, value, ct).ConfigureAwait(false);
        }
        catch (KernelException e)
        {
            var hint = e.Errno switch
            {
                Errno.EBUSY when path.EndsWith("sriov_numvfs", StringComparison.Ordinal) => "the kernel refuses to change a nonzero VF count while VFs exist: write 0 first, which needs every VF of that PF free (`vmnet rm` the VMs holding them)",
                Errno.ERANGE => "that is more VFs than the PF offers (sriov_totalvfs); on mlx5 the firmware caps it: mstconfig set SRIOV_EN=1 NUM_OF_VFS=N, then reboot",
                Errno.EACCES or Errno.EPERM => "run vmnet as root",
                Errno.ENODEV when path.EndsWith("/bind", StringComparison.Ordinal) => "the driver does not take that device (driver_override names another driver?)",
                Errno.ENODEV => $"the device {pci} is not bound to that driver; check `ls -l {Sysfs.DriverLink(pci)}`",
                Errno.ENOENT => "the file does not exist: is the device gone or the driver not loaded?",
                _ => "check `dmesg`",
            };
            throw new VmNetException($"{e.Message}; {hint}", e.Errno == Errno.EBUSY || e.Errno == Errno.ERANGE ? ExitCodes.HostCannotServe : ExitCodes.Failure, e);
        }
    }
}
