using VmNet.Host;
using VmNet.Kernel;
using VmNet.Leases;
using VmNet.Planning;

namespace VmNet.Execution;

/// <summary>
/// Gives a leased VF back as it was found: reads its state now, plans the steps that differ (<see cref="VfSteps.Restore"/>)
/// and runs them through the executor without rollback (a restore resumes where it stopped when run again). A zero MAC
/// the driver refuses is given back as 02:00:00:00:00:00 (libvirt's rule).
/// </summary>
public sealed class Restorer(IKernel kernel, LeaseLedger ledger)
{
    private readonly HostStepRunner _runner = new(kernel);

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
        var vf = _runner.Vf;
        if (vf.Host.VfPciOf(lease.PfPci, lease.Vf) != pci)
            return $"{pci}: the VF no longer exists (sriov_numvfs changed); nothing to restore";
        var pf = vf.Host.NetDevOf(lease.PfPci)
            ?? throw new VmNetException($"the PF {lease.PfPci} of VF {pci} has no network device (is its driver loaded?); cannot restore the VF's settings", ExitCodes.HostCannotServe);
        var now = await vf.ReadStateAsync(pf, lease.Vf, pci, ct).ConfigureAwait(false);
        var steps = VfSteps.Restore(new VfRef(pf, lease.PfPci, lease.Vf, pci), now, o);
        await new Executor([_runner]).RunWithoutUndoAsync(steps, ct).ConfigureAwait(false);
        return $"{pci}: restored (VF {lease.Vf} of {pf}: MAC {o.Settings.Mac}, {o.Settings.Vlan ?? Spec.VlanTag.Untagged}, driver {o.Driver ?? "none"})";
    }
}
