using VmNet.Host;
using VmNet.Kernel;
using VmNet.Leases;

namespace VmNet.Planning;

/// <summary>
/// The host steps of one VF, written once for every command that changes VFs: <c>up</c> and <c>host prepare</c>
/// (<see cref="Configure"/>), <c>rm</c> and <c>gc</c> (<see cref="Restore"/>).
/// </summary>
public static class VfSteps
{
    public const int VfioWaitMs = 10_000;

    /// <summary>
    /// Record, unbind, the settings field by field in <see cref="VfSettings.ApplyOrder"/> (VLAN, trust, MAC, spoof
    /// checking, rates, link state), then vfio-pci through driver_override and a probe (never <c>new_id</c>, which grabs
    /// every device with that ID), then the wait for its VFIO group: the order that works on mlx5, igb and ice.
    /// </summary>
    public static IEnumerable<VfStep> Configure(VfRef vf, VirtualFunction found, VfSettings want)
    {
        yield return new RecordVf(vf);
        var onVfio = found.Driver == VirtualFunction.VfioDriver;
        if (found.Driver is { } driver && !onVfio)
            yield return new UnbindVf(vf, driver);
        foreach (var one in want.Split(VfSettings.ApplyOrder))
            yield return new SetVf(vf, one);
        if (!onVfio)
        {
            yield return new OverrideDriver(vf, VirtualFunction.VfioDriver);
            yield return new ProbeVf(vf, VirtualFunction.VfioDriver);
        }
        if (found.IommuGroup is { } group)
            yield return new WaitForVfio(vf, group, VfioWaitMs);
    }

    /// <summary>
    /// Gives a VF back as <paramref name="original"/> says, from its state <paramref name="now"/>, in the restore order of
    /// ANCHORS.md (Incus, sriov-cni): unbind, the original driver_override, the settings that differ in
    /// <see cref="VfSettings.RestoreOrder"/>, then a probe of the original driver and the wait for its netdev. Only what
    /// differs is changed, so it is idempotent and resumes after a crash at any point.
    /// </summary>
    public static IEnumerable<VfStep> Restore(VfRef vf, VfState now, VfState original)
    {
        if (now.Driver is { } driver)
            yield return new UnbindVf(vf, driver);
        if (now.DriverOverride != original.DriverOverride)
            yield return new OverrideDriver(vf, original.DriverOverride, Phase.Configure);
        foreach (var one in original.Settings.Unmet(now.Settings).Split(VfSettings.RestoreOrder))
            yield return new SetVf(vf, one);
        if (original.Driver is { } back)
            yield return new ProbeVf(vf, back, WaitForNetdev: original.NetDev is not null, In: Phase.Configure);
    }
}
