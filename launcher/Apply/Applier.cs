using System.Globalization;
using VmNet.Host;
using VmNet.Leases;
using VmNet.Planning;

namespace VmNet.Apply;

/// <summary>
/// Test hooks, read from the environment by the CLI. TEST ONLY, never for production use:
/// <c>VMNET_TEST_FAIL_AT_STEP=k</c> fails just before plan step k (1-based) as if the kernel had refused it;
/// <c>VMNET_TEST_PAUSE_AT_STEP=k</c> prints "vmnet: test hook: paused at step k" to stderr before step k and sleeps
/// until killed (the crash tests kill -9 it there).
/// </summary>
public sealed record ApplyHooks(int? FailAtStep = null, int? PauseAtStep = null)
{
    public static ApplyHooks FromEnvironment() => new(Int("VMNET_TEST_FAIL_AT_STEP"), Int("VMNET_TEST_PAUSE_AT_STEP"));

    private static int? Int(string name) =>
        int.TryParse(Environment.GetEnvironmentVariable(name), NumberStyles.None, CultureInfo.InvariantCulture, out var k) ? k : null;
}

/// <summary>An apply failed and rolling back could not undo everything: the leases must stay for <c>vmnet gc</c>.</summary>
public sealed class RollbackIncompleteException(string message, Exception inner) : VmNetException(message, ExitCodes.Failure, inner);

/// <summary>Undo actions, run in reverse unless <see cref="Success"/> was called.</summary>
public sealed class Reverter
{
    private readonly List<(string What, Func<Task> Undo)> _undos = [];
    public bool Succeeded { get; private set; }

    public void Add(string what, Func<Task> undo) => _undos.Add((what, undo));
    public void Success() => Succeeded = true;

    /// <summary>Runs every undo, newest first, continuing past failures; returns what could not be undone.</summary>
    public async Task<IReadOnlyList<string>> RevertAsync()
    {
        var failures = new List<string>();
        if (Succeeded) return failures;
        for (var i = _undos.Count - 1; i >= 0; i--)
        {
            try
            {
                await _undos[i].Undo().ConfigureAwait(false);
            }
            catch (Exception e) when (e is VmNetException or KernelException or IOException)
            {
                failures.Add($"{_undos[i].What}: {e.Message}");
            }
        }
        _undos.Clear();
        return failures;
    }
}

/// <summary>
/// Applies a plan's host steps in order through an <see cref="IKernel"/>. <see cref="RecordState"/> stores the VF's
/// state in its lease before the first write; every step registers its undo, and a failure anywhere reverts what was
/// done, newest first (each undo is registered before its step runs, and puts back the value found, so it is harmless
/// when the step itself was refused). Every <c>ip link set</c> is read back and verified; binding waits for the driver and
/// <c>/dev/vfio/GROUP</c>.
/// </summary>
public sealed class Applier(IKernel kernel, LeaseLedger ledger, ApplyHooks? hooks = null, TextWriter? stderr = null)
{
    private readonly VfOps _vf = new(kernel);
    private readonly ApplyHooks _hooks = hooks ?? new ApplyHooks();

    public async Task ApplyAsync(Plan plan, CancellationToken ct)
    {
        Preflight(plan);
        var reverter = new Reverter();
        var before = new Dictionary<string, VfOriginal>(StringComparer.Ordinal);
        try
        {
            for (var k = 1; k <= plan.Steps.Count; k++)
            {
                ct.ThrowIfCancellationRequested();
                var step = plan.Steps[k - 1];
                if (_hooks.PauseAtStep == k)
                {
                    stderr?.WriteLine($"vmnet: test hook: paused at step {k}: {step.Describe()}");
                    stderr?.Flush();
                    await Task.Delay(Timeout.Infinite, ct).ConfigureAwait(false);
                }
                if (_hooks.FailAtStep == k)
                    throw new VmNetException($"test hook VMNET_TEST_FAIL_AT_STEP: failing at step {k} ({step.Describe()})");
                await RunAsync(step, before, reverter, ct).ConfigureAwait(false);
            }
            reverter.Success();
        }
        catch (Exception e) when (e is VmNetException or KernelException or OperationCanceledException)
        {
            var failures = await reverter.RevertAsync().ConfigureAwait(false);
            if (failures.Count > 0)
                throw new RollbackIncompleteException($"{e.Message}\nrolling back left {failures.Count} change(s) in place:\n  "
                    + string.Join("\n  ", failures) + "\nthe leases stay; `vmnet gc` restores those VFs once this vmnet has exited",
                    e);
            throw;
        }
    }

    /// <summary>Checks that need no change: IOMMU on, vfio-pci loaded, PFs up, whole IOMMU groups safe to hand over.</summary>
    public void Preflight(Plan plan)
    {
        var root = kernel.Root;
        var problems = new List<string>();
        foreach (var a in plan.Vfs)
        {
            if (!_vf.PfUp(a.Pf.Name))
                problems.Add($"{a.Pf.Name} is down; VmNet does not bring PFs up itself: bring it up: ip link set dev {a.Pf.Name} up");
            var group = root.LinkName($"{VfOps.Dev(a.Vf.Pci)}/iommu_group");
            if (group is null)
            {
                problems.Add($"VF {a.Vf.Pci} has no IOMMU group: the IOMMU is off. Add intel_iommu=on iommu=pt (AMD: amd_iommu=on iommu=pt) to the kernel command line, enable VT-d/AMD-Vi in the firmware, and reboot");
                continue;
            }
            foreach (var other in root.List($"/sys/kernel/iommu_groups/{group}/devices").Order(StringComparer.Ordinal))
            {
                if (other == a.Vf.Pci) continue;
                var driver = root.LinkName($"{VfOps.Dev(other)}/driver");
                var cls = root.Read($"{VfOps.Dev(other)}/class") ?? "";
                if (driver is null or VirtualFunction.VfioDriver or "pcieport" || cls.StartsWith("0x0604", StringComparison.Ordinal)) continue;
                problems.Add($"VF {a.Vf.Pci} shares IOMMU group {group} with {other} (driver {driver}), which vfio would take from the host too; pick another VF, or put the device in its own group (ACS)");
            }
        }
        if (!root.Exists($"/sys/bus/pci/drivers/{VirtualFunction.VfioDriver}") && plan.Steps.Any(s => s is SysfsWrite))
            problems.Add("the vfio-pci driver is not loaded: modprobe vfio-pci (and list it in /etc/modules-load.d/vfio-pci.conf)");
        if (problems.Count > 0) throw new HostException(string.Join("\n", problems.Distinct()));
    }

    private async Task RunAsync(HostStep step, Dictionary<string, VfOriginal> before, Reverter reverter, CancellationToken ct)
    {
        switch (step)
        {
            case RecordState r:
            {
                var now = await _vf.RecordAsync(r.Pf, r.Vf, r.Pci, ct).ConfigureAwait(false);
                before[r.Pci] = now;
                var lease = ledger.Store.Find(r.Pci)
                    ?? throw new VmNetException($"VF {r.Pci} has no lease; claim before applying. This is a bug in vmnet; report it");
                if (lease.Original is null) ledger.Write(lease with { Original = now });
                break;
            }
            case SysfsWrite w:
                await WriteAsync(w, before[w.Pci], reverter, ct).ConfigureAwait(false);
                break;
            case IpLinkVf ip:
            {
                // The undo is registered first: a setting the kernel took but the read-back found wrong is undone too.
                var undo = UndoSettings(ip.Settings, before[ip.Pci]);
                if (undo.Count > 0)
                    reverter.Add(ip.Describe(), () => _vf.SetAndVerifyAsync(ip.Pf, ip.Vf, ip.Pci, undo, CancellationToken.None));
                await _vf.SetAndVerifyAsync(ip.Pf, ip.Vf, ip.Pci, ip.Settings, ct).ConfigureAwait(false);
                break;
            }
            case WaitForPath p:
                await _vf.WaitAsync(() => kernel.Root.Exists(p.Path), p.TimeoutMs,
                    () => $"{p.Path} did not appear within {p.TimeoutMs / 1000} s after binding {p.Pci} to vfio-pci; check `dmesg` and that vfio-pci and vfio_iommu_type1 are loaded", ct).ConfigureAwait(false);
                break;
            default:
                throw new InvalidOperationException($"unknown host step {step.GetType().Name}");
        }
    }

    private async Task WriteAsync(SysfsWrite w, VfOriginal was, Reverter reverter, CancellationToken ct)
    {
        var pci = w.Pci;
        var path = w.Path;
        if (path.EndsWith("/unbind", StringComparison.Ordinal))
        {
            var driver = path.Split('/')[^2];
            reverter.Add(w.Describe(), async () =>
            {
                if (_vf.Driver(pci) is null)
                    await _vf.WriteAsync($"/sys/bus/pci/drivers/{driver}/bind", pci, pci, CancellationToken.None).ConfigureAwait(false);
                if (was.NetDev is not null)
                    await _vf.WaitAsync(() => _vf.NetDev(pci) is not null, VfOps.BindWaitMs, () => $"{pci} has no netdev after rebinding {driver}", CancellationToken.None).ConfigureAwait(false);
            });
            await _vf.WriteAsync(path, w.Value, pci, ct).ConfigureAwait(false);
        }
        else if (path.EndsWith("/driver_override", StringComparison.Ordinal))
        {
            reverter.Add(w.Describe(), () => _vf.WriteAsync(path, was.DriverOverride ?? "", pci, CancellationToken.None));
            await _vf.WriteAsync(path, w.Value, pci, ct).ConfigureAwait(false);
        }
        else if (path == "/sys/bus/pci/drivers_probe")
        {
            var want = _vf.DriverOverride(pci) ?? VirtualFunction.VfioDriver;
            reverter.Add(w.Describe(), async () =>
            {
                if (_vf.Driver(pci) is { } now && now != was.Driver)
                    await _vf.WriteAsync($"/sys/bus/pci/drivers/{now}/unbind", pci, pci, CancellationToken.None).ConfigureAwait(false);
            });
            await _vf.WriteAsync(path, w.Value, pci, ct).ConfigureAwait(false);
            await _vf.WaitAsync(() => _vf.Driver(pci) == want, VfOps.BindWaitMs,
                () => $"{pci} did not bind to {want} within {VfOps.BindWaitMs / 1000} s (it is bound to {_vf.Driver(pci) ?? "nothing"}); is the module loaded (modprobe {want})? check `dmesg`", ct).ConfigureAwait(false);
        }
        else
        {
            throw new InvalidOperationException($"vmnet has no undo for a write to {path}");
        }
    }

    /// <summary>The <c>ip link set</c> arguments that put back what <paramref name="settings"/> changed.</summary>
    public static IReadOnlyList<string> UndoSettings(IReadOnlyList<string> settings, VfOriginal was)
    {
        var undo = new List<string>();
        for (var i = 0; i < settings.Count; i += 2)
        {
            switch (settings[i])
            {
                case "vlan": undo.AddRange(VfOps.VlanArgs(was.Vlan, was.Qos, was.Proto)); break;
                case "mac": undo.AddRange(["mac", was.Mac]); break;
                case "trust" when was.Trust is { } t: undo.AddRange(["trust", VfOps.OnOff(t)]); break;
                case "spoofchk" when was.SpoofChk is { } s: undo.AddRange(["spoofchk", VfOps.OnOff(s)]); break;
                case "state": undo.AddRange(["state", was.LinkState]); break;
                case "max_tx_rate": undo.AddRange(["max_tx_rate", IpLinkJson.Num(was.MaxTxRate)]); break;
                case "min_tx_rate": undo.AddRange(["min_tx_rate", IpLinkJson.Num(was.MinTxRate)]); break;
            }
        }
        return undo;
    }
}
