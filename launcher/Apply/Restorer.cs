using VmNet.Host;
using VmNet.Leases;

namespace VmNet.Apply;

/// <summary>
/// Gives a leased VF back as it was found, in the restore order of ANCHORS.md (Incus, sriov-cni): unbind ->
/// original driver_override -> VLAN -> spoofchk before MAC -> MAC -> trust -> rates, link state -> probe -> wait up
/// to 10 s for the netdev. Only settings that differ are written, so it is idempotent and can resume after a crash at
/// any point. A zero MAC the driver refuses is retried as 02:00:00:00:00:00 (libvirt's rule).
/// </summary>
public sealed class Restorer(IKernel kernel, LeaseLedger ledger)
{
    public const string ZeroMacFallback = "02:00:00:00:00:00";
    private readonly VfOps _vf = new(kernel);

    /// <summary>Restores the VF of <paramref name="lease"/> (if anything was changed) and drops the lease.</summary>
    public async Task<string> RestoreAndReleaseAsync(Lease lease, CancellationToken ct)
    {
        var what = await RestoreAsync(lease, ct).ConfigureAwait(false);
        ledger.Release(lease);
        return what;
    }

    public async Task<string> RestoreAsync(Lease lease, CancellationToken ct)
    {
        var pci = lease.Pci;
        var o = lease.Original;
        if (o is null) return $"{pci}: nothing was changed";
        if (kernel.Root.LinkName($"/sys/bus/pci/devices/{lease.PfPci}/virtfn{lease.Vf}") != pci)
            return $"{pci}: the VF no longer exists (sriov_numvfs changed); nothing to restore";
        var pf = PfName(lease);

        // 1. unbind whatever holds it now (vfio-pci, or its own driver while its settings change).
        if (_vf.Driver(pci) is { } now)
            await _vf.WriteAsync($"/sys/bus/pci/drivers/{now}/unbind", pci, pci, ct).ConfigureAwait(false);
        // 2. the original driver_override.
        if (_vf.DriverOverride(pci) != o.DriverOverride)
            await _vf.WriteAsync($"{VfOps.Dev(pci)}/driver_override", o.DriverOverride ?? "", pci, ct).ConfigureAwait(false);

        var cur = await _vf.ReadLinkAsync(pf, lease.Vf, ct).ConfigureAwait(false);
        async Task Set(params string[] settings) => await _vf.SetAndVerifyAsync(pf, lease.Vf, pci, settings, ct).ConfigureAwait(false);
        // 3. VLAN, qos, protocol.
        if (cur.Vlan != o.Vlan || cur.Qos != o.Qos || (o.Vlan != 0 && cur.Proto != o.Proto))
            await Set([.. VfOps.VlanArgs(o.Vlan, o.Qos, o.Proto)]).ConfigureAwait(false);
        // 4. spoof checking before the MAC.
        if (o.SpoofChk is { } s && cur.SpoofChk != s) await Set("spoofchk", VfOps.OnOff(s)).ConfigureAwait(false);
        // 5. the MAC.
        if (!string.Equals(cur.Mac, o.Mac, StringComparison.OrdinalIgnoreCase))
        {
            try
            {
                await Set("mac", o.Mac).ConfigureAwait(false);
            }
            catch (VmNetException e) when (o.Mac == VfLinkInfo.ZeroMac && e.InnerException is KernelException { Errno: Errno.EINVAL })
            {
                await Set("mac", ZeroMacFallback).ConfigureAwait(false);
            }
        }
        // 6. trust.
        if (o.Trust is { } t && cur.Trust != t) await Set("trust", VfOps.OnOff(t)).ConfigureAwait(false);
        // rates and link state.
        if (cur.MaxTxRate != o.MaxTxRate || cur.MinTxRate != o.MinTxRate)
            await Set("max_tx_rate", IpLinkJson.Num(o.MaxTxRate), "min_tx_rate", IpLinkJson.Num(o.MinTxRate)).ConfigureAwait(false);
        if (cur.LinkState != o.LinkState) await Set("state", o.LinkState).ConfigureAwait(false);

        // 7. probe: the original driver (or none), then wait for its netdev.
        if (o.Driver is { } driver)
        {
            await _vf.WriteAsync("/sys/bus/pci/drivers_probe", pci, pci, ct).ConfigureAwait(false);
            await _vf.WaitAsync(() => _vf.Driver(pci) == driver, VfOps.BindWaitMs,
                () => $"{pci} did not rebind to {driver} within {VfOps.BindWaitMs / 1000} s; check `dmesg`, then run `vmnet gc` again", ct).ConfigureAwait(false);
            if (o.NetDev is not null)
                await _vf.WaitAsync(() => _vf.NetDev(pci) is not null, VfOps.BindWaitMs,
                    () => $"{pci} is bound to {driver} but has no netdev after {VfOps.BindWaitMs / 1000} s; check `dmesg`", ct).ConfigureAwait(false);
        }
        return $"{pci}: restored (VF {lease.Vf} of {pf}: MAC {o.Mac}, {(o.Vlan == 0 ? "untagged" : $"vlan {o.Vlan}")}, driver {o.Driver ?? "none"})";
    }

    private string PfName(Lease lease) =>
        kernel.Root.List($"/sys/bus/pci/devices/{lease.PfPci}/net").Order(StringComparer.Ordinal).FirstOrDefault()
        ?? throw new VmNetException($"the PF {lease.PfPci} of VF {lease.Pci} has no network device (is its driver loaded?); cannot restore the VF's settings", ExitCodes.HostCannotServe);
}
