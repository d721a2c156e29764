using System.Globalization;
using System.Text;
using VmNet.Host;
using VmNet.Kernel;
using VmNet.Leases;
using VmNet.Planning;

namespace VmNet.Execution;

/// <summary>What <c>vmnet host apply</c> did to one PF of the host config: its VF count before and after.</summary>
public sealed record PfVfCount(string Pf, string PfPci, int Before, int After)
{
    public bool Changed => Before != After;

    public override string ToString() => Changed ? $"{Pf}: {Before} -> {After} VFs" : $"{Pf}: {After} VFs already";
}

/// <summary>
/// Makes the host as the host config says (VF counts per PF), and re-prepares leased VFs after a reboot. Both plan
/// their steps and run them through the <see cref="Executor"/>, as <c>up</c> does, so a failure rolls back; both are
/// idempotent: run them as often as you like.
/// </summary>
public sealed class Provisioner(IKernel kernel, LeaseLedger ledger, ApplyHooks? hooks = null)
{
    /// <summary>
    /// The steps that give each PF its VF count: none when it already matches; otherwise 0 then N, and only while no
    /// VF of that PF is leased, on vfio-pci or up (the kernel answers EBUSY to a change between two nonzero counts anyway).
    /// Returns the steps and, per PF of the config, its VF count before and after.
    /// </summary>
    public (IReadOnlyList<Step> Steps, IReadOnlyList<PfVfCount> Report) Plan(HostConfig config)
    {
        var scanner = new HostScanner(kernel.Root);
        var report = new SortedDictionary<int, PfVfCount>();
        var problems = new List<string>();
        var steps = new List<Step>();
        for (var i = 0; i < config.Pfs.Count; i++)
        {
            var want = config.Pfs[i];
            var pf = scanner.FindPort(want.Port, withVfs: true);
            if (pf is null) { problems.Add($"pfs[{i}].port: no network device or PCI function \"{want.Port}\" on this host"); continue; }
            if (pf.TotalVfs == 0) { problems.Add($"pfs[{i}].port: {pf.Name} ({pf.Pci}) has no SR-IOV capability; enable SR-IOV in the firmware (mlx5: mstconfig set SRIOV_EN=1 NUM_OF_VFS=N, then reboot)"); continue; }
            if (want.Vfs > pf.TotalVfs) { problems.Add($"pfs[{i}].vfs: {want.Vfs} exceeds sriov_totalvfs {pf.TotalVfs} of {pf.Name}; lower it, or raise the firmware's limit (mlx5: mstconfig set NUM_OF_VFS={want.Vfs}, then reboot)"); continue; }
            if (pf.NumVfs == want.Vfs) { report[i] = new PfVfCount(pf.Name, pf.Pci, pf.NumVfs, want.Vfs); continue; }
            var holders = pf.Vfs.Select(v => (v, lease: ledger.Store.Find(v.Pci)))
                .Where(x => x.lease is not null || x.v.Driver == VirtualFunction.VfioDriver || x.v.NetDevUp)
                .Select(x => x.lease is { } l ? $"VF {x.v.Index} ({x.v.Pci}) leased by {l.Vm}"
                    : x.v.NetDevUp ? $"VF {x.v.Index} ({x.v.Pci}) is up as {x.v.NetDev}" : $"VF {x.v.Index} ({x.v.Pci}) is on vfio-pci")
                .ToList();
            if (holders.Count > 0)
            {
                problems.Add($"pfs[{i}]: cannot change {pf.Name} from {pf.NumVfs} to {want.Vfs} VFs while its VFs are in use: {string.Join("; ", holders)}; "
                    + "free them (`vmnet rm VM`, `ip link set dev VF down`) and rerun");
                continue;
            }
            if (pf.NumVfs != 0) steps.Add(new SetNumVfs(pf.Name, pf.Pci, 0));
            if (want.Vfs != 0) steps.Add(new SetNumVfs(pf.Name, pf.Pci, want.Vfs));
            report[i] = new PfVfCount(pf.Name, pf.Pci, pf.NumVfs, want.Vfs);
        }
        if (problems.Count > 0) throw new HostException(string.Join("\n", problems));
        return (steps, report.Values.ToList());
    }

    /// <summary>Plans and applies the host config under the ledger lock; a failure puts every PF's VF count back.</summary>
    public async Task<IReadOnlyList<PfVfCount>> ApplyAsync(HostConfig config, CancellationToken ct)
    {
        using var _ = ledger.Lock(ct);
        var (steps, report) = Plan(config);
        await new Executor([new HostStepRunner(kernel)], hooks, incompleteHint: "check the PFs' VF counts with `vmnet host` and run `vmnet host apply` again")
            .RunAsync(steps, new Reverter(), ct).ConfigureAwait(false);
        return report;
    }

    /// <summary>
    /// After a reboot: gives every leased VF whose owner still stands its settings again (as the lease records them)
    /// and binds it to vfio-pci, with the same steps <c>up</c> plans (<see cref="VfSteps.Configure"/>), one VM at a
    /// time: a VM whose VFs cannot be prepared is rolled back and named, and the others are still prepared. Leases of
    /// gone owners are left to <c>vmnet gc</c>.
    /// </summary>
    public async Task<PrepareReport> PrepareLeasesAsync(CancellationToken ct)
    {
        using var _ = ledger.Lock(ct);
        var done = new List<PreparedVf>();
        var skipped = new List<PrepareSkip>();
        var failed = new List<PrepareFailure>();
        var scanner = new HostScanner(kernel.Root);
        foreach (var vm in ledger.Store.All().GroupBy(l => l.Vm, StringComparer.Ordinal).ToList())
        {
            var steps = new List<Step>();
            var prepared = new List<PreparedVf>();
            foreach (var lease in vm)
            {
                if (Liveness.Gone(lease.Owner) is { } why) { skipped.Add(new(lease.Vm, lease.Pci, $"{lease.Vm}'s owner is gone: {why}; `vmnet gc` restores it")); continue; }
                if (lease.Original is null) { skipped.Add(new(lease.Vm, lease.Pci, "never configured")); continue; }
                if (scanner.VfPciOf(lease.PfPci, lease.Vf) != lease.Pci)
                    throw new HostException($"VF {lease.Vf} of {lease.Pf} ({lease.Pci}), leased by {lease.Vm}, does not exist: run `vmnet host apply` first (the boot unit does)");
                var pf = scanner.NetDevOf(lease.PfPci) ?? lease.Pf;
                steps.AddRange(VfSteps.Configure(new VfRef(pf, lease.PfPci, lease.Vf, lease.Pci), scanner.ReadVf(lease.Vf, lease.Pci), lease.Applied));
                prepared.Add(new(lease.Vm, lease.Pci, pf, lease.PfPci, lease.Vf, lease.Mac));
            }
            try
            {
                await new Executor([new HostStepRunner(kernel, ledger)], hooks, incompleteHint: "their leases stay with the VM; run `vmnet host prepare` again, or `vmnet rm` the VM")
                    .RunAsync(steps, new Reverter(), ct).ConfigureAwait(false);
                done.AddRange(prepared);
            }
            catch (VmNetException e) when (e is not RollbackIncompleteException)
            {
                failed.Add(new(vm.Key, $"{e.Message} (its VFs were put back as they were before this prepare)"));
            }
        }
        return new PrepareReport(done, skipped, failed);
    }

    /// <summary>
    /// A systemd unit that runs <c>vmnet host apply</c> then <c>vmnet host prepare</c> once at boot, after the PFs'
    /// devices exist and the network is configured (a VF's MAC cannot be set through a down PF), before libvirt starts
    /// guests.
    /// </summary>
    public static string BootUnit(string vmnet, string configPath, string stateDir, IEnumerable<string> pfNames, bool documented = false)
    {
        foreach (var (what, value) in new[] { ("--vmnet", vmnet), ("--config", configPath), ("--state-dir", stateDir) })
        {
            if (value.Any(char.IsControl))
                throw new VmNetException($"{what} must not contain control characters (a newline would end the unit's line), got {Spec.MapReader.Quote(value)}", ExitCodes.InvalidInput);
        }
        if (vmnet.IndexOfAny(['"', '\\']) >= 0)
            throw new VmNetException($"--vmnet: systemd refuses a quote or backslash in the path of the program a unit runs, got {Spec.MapReader.Quote(vmnet)}; install vmnet elsewhere", ExitCodes.InvalidInput);
        var devices = string.Join(' ', pfNames.Select(n => $"sys-subsystem-net-devices-{UnitNameEscape(n)}.device"));
        var (exe, config) = (ExecWord(vmnet, program: true), ExecWord(configPath));
        var args = $"--state-dir {ExecWord(stateDir)}";
        var sb = new StringBuilder();
        sb.Append("# Written by `vmnet host boot-unit`. Creates the VFs of the host config (--config below) and re-prepares\n");
        sb.Append("# leased VFs at boot.\n");
        sb.Append("[Unit]\n");
        sb.Append("Description=VmNet: SR-IOV VFs and leased VFs ready for guests\n");
        if (documented) sb.Append("Documentation=man:vmnet(1)\n");
        sb.Append("Wants=network-pre.target").Append(devices.Length > 0 ? " " + devices : "").Append('\n');
        sb.Append("After=systemd-udev-settle.service systemd-modules-load.service network-pre.target network.target").Append(devices.Length > 0 ? " " + devices : "").Append('\n');
        sb.Append("Before=libvirtd.service virtqemud.service libvirt-guests.service\n");
        sb.Append('\n');
        sb.Append("[Service]\n");
        sb.Append("Type=oneshot\n");
        sb.Append("RemainAfterExit=yes\n");
        sb.Append("ExecStart=").Append(exe).Append(' ').Append(args).Append(" host apply --config ").Append(config).Append('\n');
        sb.Append("ExecStart=").Append(exe).Append(' ').Append(args).Append(" host prepare\n");
        sb.Append('\n');
        sb.Append("[Install]\n");
        sb.Append("WantedBy=multi-user.target\n");
        return sb.ToString();
    }

    /// <summary>
    /// One word of an ExecStart line as systemd splits it (systemd.service, "Command lines"): as it is when it holds
    /// only characters systemd takes literally, else in double quotes with backslash and quote escaped; <c>%</c>
    /// doubled (no specifier expands) and, in an argument, <c>$</c> too (no variable expands; systemd expands none in
    /// the program's path, and refuses a quote or backslash there: <see cref="BootUnit"/> refuses those first).
    /// </summary>
    public static string ExecWord(string word, bool program = false)
    {
        var literal = word.Replace("%", "%%", StringComparison.Ordinal);
        if (!program) literal = literal.Replace("$", "$$", StringComparison.Ordinal);
        if (literal.Length > 0 && literal.All(c => char.IsAsciiLetterOrDigit(c) || "/._-+:=@,%$".Contains(c))) return literal;
        return "\"" + literal.Replace("\\", "\\\\", StringComparison.Ordinal).Replace("\"", "\\\"", StringComparison.Ordinal) + "\"";
    }

    /// <summary>A netdev name in a device unit's name, as systemd-escape writes it: every byte but [A-Za-z0-9:_.] (and a leading '.') as \xNN.</summary>
    public static string UnitNameEscape(string name)
    {
        var sb = new StringBuilder();
        var bytes = Encoding.UTF8.GetBytes(name);
        for (var i = 0; i < bytes.Length; i++)
        {
            var c = (char)bytes[i];
            if (bytes[i] < 0x80 && (char.IsAsciiLetterOrDigit(c) || c is ':' or '_' || (c == '.' && i > 0))) sb.Append(c);
            else sb.Append(System.Globalization.CultureInfo.InvariantCulture, $"\\x{bytes[i]:x2}");
        }
        return sb.ToString();
    }

}

/// <summary>A leased VF that <c>vmnet host prepare</c> gave its settings and vfio-pci again.</summary>
public sealed record PreparedVf(string Vm, string Pci, string Pf, string PfPci, int Vf, string Mac);

/// <summary>A leased VF that <c>vmnet host prepare</c> left alone, and why.</summary>
public sealed record PrepareSkip(string Vm, string Pci, string Reason);

/// <summary>A VM whose VFs could not be prepared (each put back as it was before the prepare), and why.</summary>
public sealed record PrepareFailure(string Vm, string Reason);

/// <summary>What <c>vmnet host prepare</c> did: <see cref="Failed"/> non-empty is exit 1.</summary>
public sealed record PrepareReport(IReadOnlyList<PreparedVf> Prepared, IReadOnlyList<PrepareSkip> Skipped, IReadOnlyList<PrepareFailure> Failed)
{
    /// <summary>The report as text, one line per VF (and per failed VM), then a count.</summary>
    public IEnumerable<string> Lines() =>
        Skipped.Select(s => $"{s.Pci}: skipped ({s.Reason})")
            .Concat(Prepared.Select(p => $"{p.Pci}: prepared for {p.Vm} (VF {p.Vf} of {p.Pf}, MAC {p.Mac})"))
            .Concat(Failed.Select(f => $"FAILED {f.Vm}: {f.Reason}"))
            .Append($"{Prepared.Count + Skipped.Count} leased VFs looked at, {Prepared.Count} prepared" + (Failed.Count > 0 ? $"; {Failed.Count} VMs failed" : ""));
}
