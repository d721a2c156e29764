using VmNet.Host;
using VmNet.Leases;

namespace VmNet.Apply;

/// <summary>Reads, sets and waits on one VF through an <see cref="IKernel"/>; shared by apply, rollback and restore.</summary>
public sealed class VfOps(IKernel kernel)
{
    public const int MacReadBackTries = 20;
    public const int MacReadBackDelayMs = 100;
    public const int BindWaitMs = 10_000;

    public IKernel Kernel { get; } = kernel;
    public HostRoot Root => Kernel.Root;

    public static string Dev(string pci) => $"/sys/bus/pci/devices/{pci}";

    public string? Driver(string pci) => Root.LinkName($"{Dev(pci)}/driver");

    public string? DriverOverride(string pci) =>
        Root.Read($"{Dev(pci)}/driver_override") is { Length: > 0 } o && o != "(null)" ? o : null;

    public string? NetDev(string pci) => Root.List($"{Dev(pci)}/net").Order(StringComparer.Ordinal).FirstOrDefault();

    public async Task<VfLinkInfo> ReadLinkAsync(string pf, int vf, CancellationToken ct)
    {
        var info = IpLinkJson.Parse(await Kernel.ShowLinkJsonAsync(pf, ct).ConfigureAwait(false));
        return info.Vf(vf) ?? throw new VmNetException($"`ip -j link show dev {pf}` lists no VF {vf}; was sriov_numvfs changed? Check with `vmnet host`", ExitCodes.HostCannotServe);
    }

    /// <summary>The VF's state as found: netlink settings through the PF, driver and driver_override from sysfs.</summary>
    public async Task<VfOriginal> RecordAsync(string pf, int vf, string pci, CancellationToken ct)
    {
        var l = await ReadLinkAsync(pf, vf, ct).ConfigureAwait(false);
        return new VfOriginal(l.Mac, l.Vlan, l.Qos, l.Proto, l.SpoofChk, l.Trust, l.LinkState, l.MaxTxRate, l.MinTxRate,
            Driver(pci), DriverOverride(pci), NetDev(pci));
    }

    public static IReadOnlyList<string> VlanArgs(int vlan, int qos, string proto) =>
        vlan == 0 ? ["vlan", "0"] : ["vlan", IpLinkJson.Num(vlan), "qos", IpLinkJson.Num(qos), "proto", proto];

    public static string OnOff(bool b) => b ? "on" : "off";

    public async Task WaitAsync(Func<bool> done, int timeoutMs, Func<string> failure, CancellationToken ct)
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
    /// setting once. igb answers EOPNOTSUPP to any <c>state</c>: <c>state auto</c> then counts as done (the VF follows the
    /// port anyway), <c>enable</c>/<c>disable</c> fail saying so.
    /// </summary>
    public async Task SetAndVerifyAsync(string pf, int vf, string pci, IReadOnlyList<string> settings, CancellationToken ct)
    {
        try
        {
            await Kernel.SetVfAsync(pf, vf, settings, ct).ConfigureAwait(false);
        }
        catch (KernelException e) when (e.Errno == Errno.EOPNOTSUPP && settings is ["state", "auto"])
        {
            return;
        }
        catch (KernelException e)
        {
            throw Explain(e, pf, vf, pci, settings);
        }
        var want = Expected(settings);
        for (var attempt = 1; ; attempt++)
        {
            var got = await ReadLinkAsync(pf, vf, ct).ConfigureAwait(false);
            var wrong = Differences(want, got);
            if (wrong.Count == 0) return;
            var macOnly = wrong.All(w => w.StartsWith("mac", StringComparison.Ordinal));
            if (!macOnly || attempt >= MacReadBackTries)
                throw new VmNetException(
                    $"VF {vf} of {pf} ({pci}) did not take `ip link set dev {pf} vf {vf} {string.Join(' ', settings)}`: {string.Join("; ", wrong)} "
                    + $"(read back with `ip -j link show dev {pf}`); check `dmesg` for the driver's reason", ExitCodes.Failure);
            await Task.Delay(MacReadBackDelayMs, ct).ConfigureAwait(false);
        }
    }

    private static Dictionary<string, string> Expected(IReadOnlyList<string> settings)
    {
        var d = new Dictionary<string, string>(StringComparer.Ordinal);
        for (var i = 0; i + 1 < settings.Count; i += 2) d[settings[i]] = settings[i + 1];
        if (d.TryGetValue("vlan", out var v) && v == "0") { d["qos"] = "0"; d.Remove("proto"); }
        return d;
    }

    private static List<string> Differences(Dictionary<string, string> want, VfLinkInfo got)
    {
        var wrong = new List<string>();
        void Check(string key, string actual)
        {
            if (want.TryGetValue(key, out var w) && !string.Equals(w, actual, StringComparison.OrdinalIgnoreCase))
                wrong.Add($"{key} is {actual}, not {w}");
        }
        Check("mac", got.Mac);
        Check("vlan", IpLinkJson.Num(got.Vlan));
        Check("qos", IpLinkJson.Num(got.Qos));
        Check("proto", got.Proto);
        if (got.SpoofChk is { } s) Check("spoofchk", OnOff(s));
        if (got.Trust is { } t) Check("trust", OnOff(t));
        Check("state", got.LinkState);
        Check("max_tx_rate", IpLinkJson.Num(got.MaxTxRate));
        Check("min_tx_rate", IpLinkJson.Num(got.MinTxRate));
        return wrong;
    }

    /// <summary>The kernel's refusal with what to do about it.</summary>
    public VmNetException Explain(KernelException e, string pf, int vf, string pci, IReadOnlyList<string> settings)
    {
        var what = settings.Count > 0 ? settings[0] : "";
        var hint = (e.Errno, what) switch
        {
            (Errno.EPERM, "mac") => PfUp(pf)
                ? $"the driver of {pf} refused an administratively set MAC for VF {vf}; on mlx5 set the admin MAC before binding to vfio-pci, and check the PF's firmware and `dmesg`"
                : $"{pf} is down, and a VF's MAC cannot be set through a down PF: bring it up: ip link set dev {pf} up",
            (Errno.EOPNOTSUPP, "state") => $"the driver of {pf} ({Driver(PfPci(pf) ?? "") ?? "?"}) cannot force a VF's link state; use link-state auto in the spec (the VF follows the port)",
            (Errno.EOPNOTSUPP, _) or (Errno.EPROTONOSUPPORT, _) => $"the driver of {pf} does not support `{what}` on VFs; remove that setting from the spec",
            (Errno.ENODEV, _) => $"{pf} is gone; check `ip link` and the spec's ports",
            (Errno.EINVAL, _) => $"the driver of {pf} refused the value; check `dmesg` and the spec's {what}",
            (Errno.EPERM or Errno.EACCES, _) => "run vmnet as root",
            _ => "check `dmesg`",
        };
        return new VmNetException($"cannot configure VF {vf} of {pf} ({pci}): {e.Message}; {hint}",
            e.Errno == Errno.EPERM && what == "mac" && !PfUp(pf) ? ExitCodes.HostCannotServe : ExitCodes.Failure, e);
    }

    public string? PfPci(string pf) => Root.LinkName($"/sys/class/net/{pf}/device");

    public bool PfUp(string pf) =>
        Root.Read($"/sys/class/net/{pf}/flags") is { } f && f.StartsWith("0x", StringComparison.Ordinal)
        && int.TryParse(f.AsSpan(2), System.Globalization.NumberStyles.HexNumber, null, out var v) && (v & 1) != 0;

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
                Errno.ENODEV => $"the device {pci} is not bound to that driver; check `ls -l /sys/bus/pci/devices/{pci}/driver`",
                Errno.ENOENT => "the file does not exist: is the device gone or the driver not loaded?",
                _ => "check `dmesg`",
            };
            throw new VmNetException($"{e.Message}; {hint}", e.Errno == Errno.EBUSY || e.Errno == Errno.ERANGE ? ExitCodes.HostCannotServe : ExitCodes.Failure, e);
        }
    }
}
