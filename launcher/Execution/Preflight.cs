using VmNet.Backends;
using VmNet.Host;
using VmNet.Planning;

namespace VmNet.Execution;

/// <summary>A reason the plan would fail, found before the first change, with the exit code it earns.</summary>
public sealed record PreflightProblem(string Message, int ExitCode);

/// <summary>
/// The checks that need no change, run before the first one (and by <c>--dry-run</c>, which reports them): IOMMU on,
/// vfio-pci loaded, the PFs up, whole IOMMU groups safe to hand over, and the base image a qcow2 file.
/// </summary>
public static class Preflight
{
    public static async Task<IReadOnlyList<PreflightProblem>> CheckAsync(LaunchPlan plan, HostRoot root, CancellationToken ct)
    {
        var problems = new List<PreflightProblem>();
        void Host(string message) => problems.Add(new PreflightProblem(message, ExitCodes.HostCannotServe));
        if (RestartNeeded(plan) is { } restart) problems.Add(restart);
        var host = new HostScanner(root);
        foreach (var a in plan.Vfs)
        {
            if (!host.IsUp(a.Pf.Name))
                Host($"{a.Pf.Name} is down; VmNet does not bring PFs up itself: bring it up: ip link set dev {a.Pf.Name} up");
            if (host.IommuGroupOf(a.Vf.Pci) is not { } group)
            {
                Host($"VF {a.Vf.Pci} has no IOMMU group: the IOMMU is off. Add intel_iommu=on iommu=pt (AMD: amd_iommu=on iommu=pt) to the kernel command line, enable VT-d/AMD-Vi in the firmware, and reboot");
                continue;
            }
            foreach (var (other, driver) in host.GroupPeers(a.Vf.Pci, group))
                Host($"VF {a.Vf.Pci} shares IOMMU group {group} with {other} (driver {driver}), which vfio would take from the host too; pick another VF, or put the device in its own group (ACS)");
        }
        if (!root.Exists(Sysfs.DriverDir(VirtualFunction.VfioDriver)) && plan.Steps.Any(s => s is ProbeVf))
            Host("the vfio-pci driver is not loaded: modprobe vfio-pci (and list it in /etc/modules-load.d/vfio-pci.conf)");
        if (plan.Steps.OfType<CreateOverlay>().FirstOrDefault() is { } overlay && !File.Exists(overlay.Disk))
        {
            try
            {
                await VmFiles.CheckBaseImageAsync(overlay.BaseImage, ct).ConfigureAwait(false);
            }
            catch (VmNetException e)
            {
                problems.Add(new PreflightProblem(e.Message, e.ExitCode));
            }
        }
        return problems.DistinctBy(p => p.Message).ToList();
    }

    /// <summary>
    /// A VM that runs is changed only live (its VFs' VLAN, QoS, spoof checking, trust, link state and rates): a change
    /// of what the guest was booted with is refused, naming each, with what would change live, and the commands that
    /// restart it with the new spec (<c>down</c> keeps its VFs leased; the next <c>up</c> boots it as the spec says).
    /// </summary>
    public static PreflightProblem? RestartNeeded(LaunchPlan plan)
    {
        var restart = plan.NeedRestart.ToList();
        if (restart.Count == 0) return null;
        var vm = plan.Vm.Name;
        var live = plan.Drift.Where(c => c.Live).ToList();
        var message = $"{vm} is running, and {restart.Count} change{(restart.Count == 1 ? "" : "s")} of the spec need{(restart.Count == 1 ? "s" : "")} a restart: "
            + string.Join("; ", restart) + (live.Count > 0 ? $" (and these could change live: {string.Join("; ", live)})" : "")
            + $"; restart it with the new spec: `vmnet down {vm}{plan.ConnectArgument}`, then this `vmnet up` again (its VFs stay leased in between)";
        return new PreflightProblem(message, ExitCodes.Failure);
    }

    /// <summary>Throws the problems found, all at once: exit 2 when every one is the spec's, else 3 (the host cannot serve).</summary>
    public static void ThrowIfAny(IReadOnlyList<PreflightProblem> problems)
    {
        if (problems.Count == 0) return;
        var code = problems.All(p => p.ExitCode == ExitCodes.InvalidInput) ? ExitCodes.InvalidInput
            : problems.Any(p => p.ExitCode == ExitCodes.HostCannotServe) ? ExitCodes.HostCannotServe : problems[0].ExitCode;
        var message = string.Join("\n", problems.Select(p => p.Message));
        throw code == ExitCodes.HostCannotServe ? new HostException(message) : new VmNetException(message, code);
    }
}
