using System.Globalization;
using System.Text;
using VmNet.Host;
using VmNet.Leases;

namespace VmNet.Apply;

/// <summary>
/// Makes the host as the host config says (VF counts per PF), and re-prepares leased VFs after a reboot. Both are
/// idempotent: run them as often as you like.
/// </summary>
public sealed class Provisioner(IKernel kernel, LeaseLedger ledger)
{
    private readonly VfOps _vf = new(kernel);

    /// <summary>
    /// Sets each PF's VF count: nothing when it already matches; otherwise 0 then N, and only while no VF of that PF is
    /// leased, on vfio-pci or up (the kernel answers EBUSY to a change between two nonzero counts anyway).
    /// </summary>
    public async Task<IReadOnlyList<string>> ApplyAsync(HostConfig config, CancellationToken ct)
    {
        using var _ = ledger.Lock(ct);
        var scanner = new HostScanner(kernel.Root);
        var report = new SortedDictionary<int, string>();
        var problems = new List<string>();
        var todo = new List<(int Index, PhysicalFunction Pf, int Vfs)>();
        for (var i = 0; i < config.Pfs.Count; i++)
        {
            var want = config.Pfs[i];
            var pf = scanner.FindPort(want.Port, withVfs: true);
            if (pf is null) { problems.Add($"pfs[{i}].port: no network device or PCI function \"{want.Port}\" on this host"); continue; }
            if (pf.TotalVfs == 0) { problems.Add($"pfs[{i}].port: {pf.Name} ({pf.Pci}) has no SR-IOV capability; enable SR-IOV in the firmware (mlx5: mstconfig set SRIOV_EN=1 NUM_OF_VFS=N, then reboot)"); continue; }
            if (want.Vfs > pf.TotalVfs) { problems.Add($"pfs[{i}].vfs: {want.Vfs} exceeds sriov_totalvfs {pf.TotalVfs} of {pf.Name}; lower it, or raise the firmware's limit (mlx5: mstconfig set NUM_OF_VFS={want.Vfs}, then reboot)"); continue; }
            if (pf.NumVfs == want.Vfs) { report[i] = $"{pf.Name}: {pf.NumVfs} VFs already"; continue; }
            var holders = pf.Vfs.Select(v => (v, lease: ledger.Store.Find(v.Pci)))
                .Where(x => x.lease is not null || x.v.Driver == Host.VirtualFunction.VfioDriver || x.v.NetDevUp)
                .Select(x => x.lease is { } l ? $"VF {x.v.Index} ({x.v.Pci}) leased by {l.Vm}"
                    : x.v.NetDevUp ? $"VF {x.v.Index} ({x.v.Pci}) is up as {x.v.NetDev}" : $"VF {x.v.Index} ({x.v.Pci}) is on vfio-pci")
                .ToList();
            if (holders.Count > 0)
            {
                problems.Add($"pfs[{i}]: cannot change {pf.Name} from {pf.NumVfs} to {want.Vfs} VFs while its VFs are in use: {string.Join("; ", holders)}; "
                    + "free them (`vmnet rm VM`, `ip link set dev VF down`) and rerun");
                continue;
            }
            todo.Add((i, pf, want.Vfs));
        }
        if (problems.Count > 0) throw new HostException(string.Join("\n", problems));
        foreach (var (i, pf, n) in todo)
        {
            var path = $"/sys/bus/pci/devices/{pf.Pci}/sriov_numvfs";
            if (pf.NumVfs != 0) await _vf.WriteAsync(path, "0", pf.Pci, ct).ConfigureAwait(false);
            if (n != 0) await _vf.WriteAsync(path, n.ToString(CultureInfo.InvariantCulture), pf.Pci, ct).ConfigureAwait(false);
            report[i] = $"{pf.Name}: {pf.NumVfs} -> {n} VFs";
        }
        return report.Values.ToList();
    }

    /// <summary>
    /// After a reboot: gives every leased VF whose owner still stands its settings again (MAC, VLAN, ... as applied)
    /// and binds it to vfio-pci. Leases of gone owners are left to <c>vmnet gc</c>.
    /// </summary>
    public async Task<IReadOnlyList<string>> PrepareLeasesAsync(CancellationToken ct)
    {
        using var _ = ledger.Lock(ct);
        var report = new List<string>();
        foreach (var lease in ledger.Store.All().ToList())
        {
            if (Liveness.Gone(lease.Owner) is { } why) { report.Add($"{lease.Pci}: skipped ({lease.Vm}'s owner is gone: {why}; `vmnet gc` restores it)"); continue; }
            if (lease.Original is null || lease.Applied is null) { report.Add($"{lease.Pci}: skipped (never configured)"); continue; }
            if (kernel.Root.LinkName($"/sys/bus/pci/devices/{lease.PfPci}/virtfn{lease.Vf}") != lease.Pci)
                throw new HostException($"VF {lease.Vf} of {lease.Pf} ({lease.Pci}), leased by {lease.Vm}, does not exist: run `vmnet host apply` first (the boot unit does)");
            var pci = lease.Pci;
            if (_vf.Driver(pci) is { } d && d != Host.VirtualFunction.VfioDriver)
                await _vf.WriteAsync($"/sys/bus/pci/drivers/{d}/unbind", pci, pci, ct).ConfigureAwait(false);
            foreach (var settings in lease.Applied)
                await _vf.SetAndVerifyAsync(lease.Pf, lease.Vf, pci, settings, ct).ConfigureAwait(false);
            if (_vf.Driver(pci) != Host.VirtualFunction.VfioDriver)
            {
                await _vf.WriteAsync($"/sys/bus/pci/devices/{pci}/driver_override", Host.VirtualFunction.VfioDriver, pci, ct).ConfigureAwait(false);
                await _vf.WriteAsync("/sys/bus/pci/drivers_probe", pci, pci, ct).ConfigureAwait(false);
                await _vf.WaitAsync(() => _vf.Driver(pci) == Host.VirtualFunction.VfioDriver, VfOps.BindWaitMs,
                    () => $"{pci} did not bind to vfio-pci; modprobe vfio-pci and check `dmesg`", ct).ConfigureAwait(false);
            }
            if (kernel.Root.LinkName($"/sys/bus/pci/devices/{pci}/iommu_group") is { } group)
                await _vf.WaitAsync(() => kernel.Root.Exists($"/dev/vfio/{group}"), VfOps.BindWaitMs,
                    () => $"/dev/vfio/{group} did not appear for {pci}; check that vfio_iommu_type1 is loaded", ct).ConfigureAwait(false);
            report.Add($"{pci}: prepared for {lease.Vm} (VF {lease.Vf} of {lease.Pf}, MAC {lease.Mac})");
        }
        return report;
    }

    /// <summary>
    /// A systemd unit that runs <c>vmnet host apply</c> then <c>vmnet host prepare</c> once at boot, after the PFs'
    /// devices exist and the network is configured (a VF's MAC cannot be set through a down PF), before libvirt starts
    /// guests.
    /// </summary>
    public static string BootUnit(string vmnet, string configPath, string stateDir, IEnumerable<string> pfNames)
    {
        var devices = string.Join(' ', pfNames.Select(n => $"sys-subsystem-net-devices-{n}.device"));
        var args = $"--state-dir {stateDir}";
        var sb = new StringBuilder();
        sb.Append("# Written by `vmnet host boot-unit`. Creates the VFs of ").Append(configPath)
          .Append(" and re-prepares leased VFs at boot.\n");
        sb.Append("[Unit]\n");
        sb.Append("Description=VmNet: SR-IOV VFs and leased VFs ready for guests\n");
        sb.Append("Wants=network-pre.target").Append(devices.Length > 0 ? " " + devices : "").Append('\n');
        sb.Append("After=systemd-udev-settle.service systemd-modules-load.service network-pre.target network.target").Append(devices.Length > 0 ? " " + devices : "").Append('\n');
        sb.Append("Before=libvirtd.service virtqemud.service libvirt-guests.service\n");
        sb.Append('\n');
        sb.Append("[Service]\n");
        sb.Append("Type=oneshot\n");
        sb.Append("RemainAfterExit=yes\n");
        sb.Append("ExecStart=").Append(vmnet).Append(' ').Append(args).Append(" host apply --config ").Append(configPath).Append('\n');
        sb.Append("ExecStart=").Append(vmnet).Append(' ').Append(args).Append(" host prepare\n");
        sb.Append('\n');
        sb.Append("[Install]\n");
        sb.Append("WantedBy=multi-user.target\n");
        return sb.ToString();
    }
}
