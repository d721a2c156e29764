using VmNet.Host;
using VmNet.Kernel;
using VmNet.Leases;
using VmNet.Planning;

namespace VmNet.Execution;

/// <summary>
/// Runs host steps through an <see cref="IKernel"/>: each registers its undo with the reverter before it changes
/// anything, and the undo puts back the value found (so it is harmless when the change itself was refused). Every
/// <c>ip link set</c> is read back; binding waits for the driver and for <c>/dev/vfio/GROUP</c>.
/// <see cref="RecordVf"/> keeps the VF's state for the undos and, with a ledger, in the VF's lease (only the first time:
/// the lease keeps the VF as it was before VmNet ever touched it).
/// </summary>
public sealed class HostStepRunner(IKernel kernel, LeaseLedger? ledger = null) : IStepRunner
{
    /// <summary>libvirt's rule: a zero MAC the driver refuses is given back as this one.</summary>
    public const string ZeroMacFallback = "02:00:00:00:00:00";

    private readonly VfOps _vf = new(kernel);
    private readonly Dictionary<string, VfState> _found = new(StringComparer.Ordinal);

    public VfOps Vf => _vf;

    public bool Runs(Step step) => step is VfStep or SetNumVfs;

    public async Task RunAsync(Step step, Reverter? reverter, CancellationToken ct)
    {
        switch (step)
        {
            case RecordVf r:
                await RecordAsync(r.Vf, ct).ConfigureAwait(false);
                break;
            case UnbindVf u:
            {
                var pci = u.Vf.Pci;
                var had = Found(pci)?.NetDev is not null;
                reverter?.Add(u.Describe(), async () =>
                {
                    if (_vf.Driver(pci) is null)
                        await _vf.WriteAsync(Sysfs.Bind(u.Driver), pci, pci, CancellationToken.None).ConfigureAwait(false);
                    if (had)
                        await VfOps.WaitAsync(() => _vf.NetDev(pci) is not null, VfOps.BindWaitMs, () => $"{pci} has no netdev after rebinding {u.Driver}", CancellationToken.None).ConfigureAwait(false);
                });
                await _vf.WriteAsync(Sysfs.Unbind(u.Driver), pci, pci, ct).ConfigureAwait(false);
                break;
            }
            case SetVf s:
            {
                // The undo is registered first: a setting the kernel took but the read-back found wrong is undone too.
                if (reverter is not null && Found(s.Vf.Pci) is { } was && was.Settings.For(s.Settings) is { IsEmpty: false } undo)
                    reverter.Add(s.Describe(), () => SetAsync(s with { Settings = undo }, CancellationToken.None));
                await SetAsync(s, ct).ConfigureAwait(false);
                break;
            }
            case OverrideDriver o:
            {
                var pci = o.Vf.Pci;
                var was = _vf.DriverOverride(pci);
                reverter?.Add(o.Describe(), () => _vf.WriteAsync(Sysfs.DriverOverride(pci), was ?? "", pci, CancellationToken.None));
                await _vf.WriteAsync(Sysfs.DriverOverride(pci), o.Driver ?? "", pci, ct).ConfigureAwait(false);
                break;
            }
            case ProbeVf p:
            {
                var pci = p.Vf.Pci;
                var was = _vf.Driver(pci);
                reverter?.Add(p.Describe(), async () =>
                {
                    if (_vf.Driver(pci) is { } now && now != was)
                        await _vf.WriteAsync(Sysfs.Unbind(now), pci, pci, CancellationToken.None).ConfigureAwait(false);
                });
                await _vf.WriteAsync(Sysfs.DriversProbe, pci, pci, ct).ConfigureAwait(false);
                await VfOps.WaitAsync(() => _vf.Driver(pci) == p.Driver, VfOps.BindWaitMs,
                    () => $"{pci} did not bind to {p.Driver} within {VfOps.BindWaitMs / 1000} s (it is bound to {_vf.Driver(pci) ?? "nothing"}); is the module loaded (modprobe {p.Driver})? check `dmesg`", ct).ConfigureAwait(false);
                if (p.WaitForNetdev)
                    await VfOps.WaitAsync(() => _vf.NetDev(pci) is not null, VfOps.BindWaitMs,
                        () => $"{pci} is bound to {p.Driver} but has no netdev after {VfOps.BindWaitMs / 1000} s; check `dmesg`", ct).ConfigureAwait(false);
                break;
            }
            case WaitForVfio w:
                await VfOps.WaitAsync(() => _vf.Root.Exists(w.Path), w.TimeoutMs,
                    () => $"{w.Path} did not appear within {w.TimeoutMs / 1000} s after binding {w.Vf.Pci} to vfio-pci; check `dmesg` and that vfio-pci and vfio_iommu_type1 are loaded", ct).ConfigureAwait(false);
                break;
            case SetNumVfs n:
            {
                var path = Sysfs.SriovNumVfs(n.PfPci);
                var was = _vf.Root.ReadInt(path) ?? 0;
                reverter?.Add(n.Describe(), async () =>
                {
                    var now = _vf.Root.ReadInt(path) ?? 0;
                    if (now == was) return;
                    if (now != 0) await _vf.WriteAsync(path, "0", n.PfPci, CancellationToken.None).ConfigureAwait(false);
                    if (was != 0) await _vf.WriteAsync(path, was.ToString(System.Globalization.CultureInfo.InvariantCulture), n.PfPci, CancellationToken.None).ConfigureAwait(false);
                });
                await _vf.WriteAsync(path, n.Count.ToString(System.Globalization.CultureInfo.InvariantCulture), n.PfPci, ct).ConfigureAwait(false);
                break;
            }
            default:
                throw new InvalidOperationException($"the host step runner does not run {step.GetType().Name}");
        }
    }

    /// <summary>Reads the VF's state and keeps it (and in its lease, the first time).</summary>
    public async Task<VfState> RecordAsync(VfRef vf, CancellationToken ct)
    {
        var now = await _vf.ReadStateAsync(vf.Pf, vf.Index, vf.Pci, ct).ConfigureAwait(false);
        _found[vf.Pci] = now;
        if (ledger is not null)
        {
            var lease = ledger.Store.Find(vf.Pci)
                ?? throw new VmNetException($"VF {vf.Pci} has no lease; claim before applying. This is a bug in vmnet; report it");
            if (lease.Original is null) ledger.Write(lease with { Original = now });
        }
        return now;
    }

    private VfState? Found(string pci) => _found.GetValueOrDefault(pci);

    private async Task SetAsync(SetVf s, CancellationToken ct)
    {
        try
        {
            await _vf.SetAndVerifyAsync(s.Vf.Pf, s.Vf.Index, s.Vf.Pci, s.Settings, ct).ConfigureAwait(false);
        }
        catch (VmNetException e) when (s.Settings.Mac == VfSettings.ZeroMac && e.InnerException is KernelException { Errno: Errno.EINVAL })
        {
            await _vf.SetAndVerifyAsync(s.Vf.Pf, s.Vf.Index, s.Vf.Pci, s.Settings with { Mac = ZeroMacFallback }, ct).ConfigureAwait(false);
        }
    }
}
