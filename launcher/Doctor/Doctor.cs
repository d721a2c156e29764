using System.Globalization;
using VmNet.Host;

namespace VmNet.Doctor;

/// <summary>One preflight check: what was looked at, whether it passed, and the fix when it did not.</summary>
public sealed record Check(string Name, CheckStatus Status, string Detail, string? Fix = null);

public enum CheckStatus { Ok, Warn, Fail, Skip }

/// <summary>Runs external tools for checks that sysfs cannot answer (mstconfig, devlink). Null output: tool missing.</summary>
public interface IToolRunner
{
    Task<(int ExitCode, string Output)?> Run(string tool, IReadOnlyList<string> args, CancellationToken ct);
}

/// <summary>
/// Preflight checks of a host for VmNet: IOMMU, vfio-pci, each SR-IOV PF (capability, VFs, link, MTU), mlx5
/// firmware limits and eswitch mode, memlock. Reads through a <see cref="HostRoot"/>; tools run only on a real host.
/// </summary>
/// <param name="dedicated">The CPUs leased to VMs for dedicated pinning (the ledger's), checked against isolcpus.</param>
public sealed class HostDoctor(HostRoot root, IToolRunner? tools, IReadOnlyList<Leases.CpuLease>? dedicated = null)
{
    public async Task<IReadOnlyList<Check>> Run(CancellationToken ct)
    {
        var checks = new List<Check> { Iommu(), Vfio() };
        var scanner = new HostScanner(root);
        var pfs = scanner.AllPfs();
        if (pfs.Count == 0)
            checks.Add(new Check("SR-IOV ports", CheckStatus.Fail, "no PCI function with SR-IOV capability (sriov_totalvfs) was found",
                "enable SR-IOV in the firmware setup and on the NIC (mlx5: mstconfig -d PCI set SRIOV_EN=1 NUM_OF_VFS=16, then reboot)"));
        foreach (var pf in pfs)
        {
            checks.AddRange(PfChecks(pf));
            if (pf.Link is { } link) checks.Add(PcieCheck(pf, link));
            if (pf.Driver == "mlx5_core") checks.AddRange(await Mlx5Checks(pf, ct));
        }
        var numa = scanner.Numa();
        checks.AddRange(NumaChecks(pfs, numa));
        if (dedicated is { Count: > 0 }) checks.Add(IsolationCheck(dedicated, numa));
        checks.Add(Memlock());
        return checks;
    }

    private Check Iommu()
    {
        var units = root.List(Sysfs.IommuClass).Order(StringComparer.Ordinal).ToList();
        var cmdline = root.Read(Sysfs.ProcCmdline) ?? "";
        var flags = cmdline.Split(' ', StringSplitOptions.RemoveEmptyEntries)
            .Where(a => a.StartsWith("intel_iommu=", StringComparison.Ordinal) || a.StartsWith("amd_iommu=", StringComparison.Ordinal) || a.StartsWith("iommu=", StringComparison.Ordinal))
            .ToList();
        var shown = flags.Count == 0 ? "no iommu flags on the kernel command line" : "cmdline " + string.Join(' ', flags);
        if (units.Count > 0)
            return new Check("IOMMU", CheckStatus.Ok, $"enabled ({string.Join(", ", units)}; {shown})");
        return new Check("IOMMU", CheckStatus.Fail, $"no IOMMU is active (/sys/class/iommu is empty; {shown})",
            "enable VT-d / AMD-Vi in the firmware setup, add `intel_iommu=on iommu=pt` (Intel) to GRUB_CMDLINE_LINUX in /etc/default/grub, run update-grub and reboot");
    }

    private Check Vfio()
    {
        if (root.Exists(Sysfs.DriverDir(VirtualFunction.VfioDriver)))
            return root.Exists(Sysfs.VfioContainer)
                ? new Check("vfio-pci", CheckStatus.Ok, "driver loaded, /dev/vfio/vfio present")
                : new Check("vfio-pci", CheckStatus.Fail, "driver loaded but /dev/vfio/vfio is missing", "load the vfio core: modprobe vfio");
        return new Check("vfio-pci", CheckStatus.Fail, "the vfio-pci driver is not loaded",
            "modprobe vfio-pci, and load it at boot: echo vfio-pci > /etc/modules-load.d/vfio-pci.conf");
    }

    private static IEnumerable<Check> PfChecks(PhysicalFunction pf)
    {
        var name = $"{pf.Name} ({pf.Pci}, {pf.Driver ?? "no driver"})";
        yield return pf.NumVfs > 0
            ? new Check(name, CheckStatus.Ok, $"SR-IOV: {pf.NumVfs} of {pf.TotalVfs} VFs enabled")
            : new Check(name, CheckStatus.Warn, $"SR-IOV capable ({pf.TotalVfs} VFs) but no VF enabled",
                $"create VFs: vmnet host apply, or echo N > {Sysfs.SriovNumVfs(pf.Pci)}");
        if (pf.Vfs.Where(v => v.GroupPeer is not null).ToList() is { Count: > 0 } shared)
        {
            var usable = pf.Vfs.Count - shared.Count;
            yield return new Check(name, usable == 0 ? CheckStatus.Fail : CheckStatus.Warn,
                $"{shared.Count} of {pf.Vfs.Count} VFs share their IOMMU group with a host device, so vfio cannot take them alone" +
                $" (vmnet up skips them): {string.Join("; ", shared.Select(v => $"vf {v.Index} ({v.Pci}): group {v.IommuGroup} with {v.GroupPeer}"))}",
                "put the NIC in a slot whose root port has ACS (lspci -vv shows ACSCap), or enable ACS in the firmware; the kernel then gives every VF a group of its own");
        }
        yield return pf.Up
            ? new Check(name, CheckStatus.Ok, $"link {pf.OperState}, MTU {pf.Mtu}")
            : new Check(name, CheckStatus.Fail, $"the PF is down (operstate {pf.OperState}): VF settings are refused and VFs have no link",
                $"ip link set dev {pf.Name} up (and make it persistent in the host's network configuration)");
    }

    /// <summary>
    /// Usable bandwidth of a PCIe link in Gbit/s: GT/s x lanes x line coding (8b/10b up to 5 GT/s, 128b/130b from 8 GT/s).
    /// </summary>
    public static double? PcieGbps(string? speed, int? width) =>
        PcieLink.Rate(speed) is { } rate && width is { } w ? Math.Round(rate * w * (rate <= 5 ? 0.8 : 128.0 / 130.0), 1) : null;

    private static Check PcieCheck(PhysicalFunction pf, PcieLink link)
    {
        var name = $"{pf.Name} ({pf.Pci}, PCIe)";
        string G(double? g) => g?.ToString("0.#", CultureInfo.InvariantCulture) ?? "?";
        var now = PcieGbps(link.Speed, link.Width);
        var max = PcieGbps(link.MaxSpeed, link.MaxWidth);
        return link.Degraded
            ? new Check(name, CheckStatus.Warn,
                $"the link trained at {link.Speed ?? "?"} x{link.Width} below the card's {link.MaxSpeed ?? "?"} x{link.MaxWidth}: about {G(now)} of {G(max)} Gbit/s, shared by every port and VF of the card",
                "put the card in a slot wired for its full width and generation (lspci -vv: LnkSta against LnkCap), and check the firmware setup's PCIe speed for that slot")
            : new Check(name, CheckStatus.Ok, $"link {link.Speed ?? "?"} x{link.Width} (the card's maximum): about {G(now)} Gbit/s");
    }

    /// <summary>
    /// The NUMA side of line rate: each PF's node known on a host of several nodes, and hugepages reserved on the nodes
    /// the NICs sit on (guest memory from hugepages of the NIC's node is what <c>placement.hugepages</c> asks for).
    /// </summary>
    private static IEnumerable<Check> NumaChecks(IReadOnlyList<PhysicalFunction> pfs, NumaTopology numa)
    {
        if (numa.Nodes.Count == 0) yield break;
        var multi = numa.Nodes.Count > 1;
        foreach (var pf in pfs.Where(p => multi && p.NumaNode < 0))
            yield return new Check($"{pf.Name} ({pf.Pci}, NUMA)", CheckStatus.Warn,
                $"the kernel does not say which of the {numa.Nodes.Count} NUMA nodes the PF sits on (numa_node is -1), so its VMs cannot be placed beside it",
                "enable the ACPI SRAT/proximity domains in the firmware setup (often \"NUMA\" or \"Sub-NUMA clustering\") so that PCI devices report their node");
        int NodeOf(PhysicalFunction p) => numa.NodeOf(p.NumaNode);
        foreach (var node in pfs.Select(NodeOf).Where(n => n >= 0).Distinct().Order())
        {
            var facts = numa.Node(node);
            var on = string.Join(", ", pfs.Where(p => NodeOf(p) == node).Select(p => p.Name));
            var name = $"NUMA node {node} ({on})";
            if (facts is null)
            {
                yield return new Check(name, CheckStatus.Warn, $"the PFs say node {node} but {Sysfs.NodeDir}/node{node} does not exist");
                continue;
            }
            var cpus = facts.Cpus.Count == 0 ? "no CPUs" : $"CPUs {CpuList.Format(facts.Cpus)}";
            var isolated = numa.IsolatedCpus.Intersect(facts.Cpus).ToList();
            var iso = isolated.Count > 0 ? $", isolcpus {CpuList.Format(isolated)}" : "";
            var reserved = facts.Hugepages.Where(h => h.Total > 0).ToList();
            // Hugepages are opt-in, so a node without them is ready for ordinary guests: the check says how to reserve them.
            var how = facts.Hugepages.Any(h => h.SizeKiB == 1048576)
                ? $"echo N > {Sysfs.NodeHugepages(node)}/hugepages-1048576kB/nr_hugepages, or hugepagesz=1G hugepages=N on the kernel command line"
                : $"echo N > {Sysfs.NodeHugepages(node)}/hugepages-2048kB/nr_hugepages";
            yield return new Check(name, CheckStatus.Ok, reserved.Count > 0
                ? $"{cpus}{iso}; hugepages {string.Join(", ", reserved.Select(h => $"{h.Size} {h.Free} free of {h.Total}"))}"
                : $"{cpus}{iso}; no hugepages reserved beside the NICs, so guest memory comes from ordinary pages (to reserve them: {how})");
        }
    }

    /// <summary>
    /// Dedicated pinning keeps other guests off a VM's CPUs; the kernel's isolcpus keeps the host's own tasks off them
    /// too. Dedicated CPUs outside isolcpus are named with the command line that isolates them.
    /// </summary>
    private static Check IsolationCheck(IReadOnlyList<Leases.CpuLease> dedicated, NumaTopology numa)
    {
        var cpus = dedicated.Select(c => c.Cpu).Distinct().Order().ToList();
        var shared = cpus.Except(numa.IsolatedCpus).ToList();
        var vms = string.Join(", ", dedicated.Where(c => shared.Contains(c.Cpu)).Select(c => c.Vm).Distinct().Order(StringComparer.Ordinal));
        return shared.Count == 0
            ? new Check("dedicated CPUs", CheckStatus.Ok, $"CPUs {CpuList.Format(cpus)} are dedicated to VMs and isolated from the host's scheduler (isolcpus)")
            : new Check("dedicated CPUs", CheckStatus.Warn,
                $"CPUs {CpuList.Format(shared)} are dedicated to {vms} but not isolated: the host's own tasks and interrupts run there too",
                $"add isolcpus=managed_irq,domain,{CpuList.Format(shared)} nohz_full={CpuList.Format(shared)} to the kernel command line and reboot (VMs then take isolated CPUs first)");
    }

    private async Task<IEnumerable<Check>> Mlx5Checks(PhysicalFunction pf, CancellationToken ct)
    {
        var name = $"{pf.Name} ({pf.Pci}, mlx5_core)";
        if (tools is null)
            return [new Check(name, CheckStatus.Skip, "firmware limits and eswitch mode are read with mstconfig and devlink on a real host only")];
        var checks = new List<Check>();
        var fw = await tools.Run("mstconfig", ["-d", pf.Pci, "query"], ct);
        if (fw is null)
            checks.Add(new Check(name, CheckStatus.Skip, "mstconfig is not installed: firmware limits not checked", "apt install mstflint"));
        else
        {
            var sriovEn = Field(fw.Value.Output, "SRIOV_EN");
            var numVfs = Field(fw.Value.Output, "NUM_OF_VFS");
            var enabled = sriovEn is not null && (sriovEn.StartsWith("True", StringComparison.OrdinalIgnoreCase) || sriovEn.StartsWith('1'));
            checks.Add(enabled
                ? new Check(name, CheckStatus.Ok, $"firmware: SRIOV_EN {sriovEn}, NUM_OF_VFS {numVfs}")
                : new Check(name, CheckStatus.Fail, $"firmware: SRIOV_EN {sriovEn ?? "unknown"}, NUM_OF_VFS {numVfs ?? "unknown"}",
                    $"mstconfig -d {pf.Pci} set SRIOV_EN=1 NUM_OF_VFS=16, then reboot (too many VFs can make some servers fail to boot)"));
        }
        var esw = await tools.Run("devlink", ["dev", "eswitch", "show", $"pci/{pf.Pci}"], ct);
        if (esw is { ExitCode: 0 } e)
        {
            checks.Add(e.Output.Contains("mode switchdev", StringComparison.Ordinal)
                ? new Check(name, CheckStatus.Warn, "eswitch mode switchdev: the VF data path goes through representors (seed 000 measured ~30 Gbps vs ~90 in legacy)",
                    $"devlink dev eswitch set pci/{pf.Pci} mode legacy (with no VF in use)")
                : new Check(name, CheckStatus.Ok, "eswitch mode legacy (the fast path)"));
        }
        return checks;
    }

    private Check Memlock()
    {
        var limits = root.Read(Sysfs.ProcSelfLimits);
        var line = limits?.Split('\n').FirstOrDefault(l => l.StartsWith("Max locked memory", StringComparison.Ordinal));
        if (line is null) return new Check("memlock", CheckStatus.Skip, $"{Sysfs.ProcSelfLimits} not readable");
        var parts = line["Max locked memory".Length..].Split(' ', StringSplitOptions.RemoveEmptyEntries);
        var soft = parts.Length > 0 ? parts[0] : "?";
        var unlimited = soft == "unlimited" || (long.TryParse(soft, NumberStyles.None, CultureInfo.InvariantCulture, out var bytes) && bytes >= 1L << 40);
        var root0 = Environment.UserName == "root";
        return unlimited || root0
            ? new Check("memlock", CheckStatus.Ok, $"locked-memory limit {soft}{(root0 ? " (root: CAP_IPC_LOCK; libvirt raises the limit for its guests)" : "")}")
            : new Check("memlock", CheckStatus.Warn, $"locked-memory limit {soft} bytes: VFIO pins all guest memory",
                "run vmnet as root, or raise the limit (LimitMEMLOCK=infinity in the unit, or memlock in /etc/security/limits.conf)");
    }

    private static string? Field(string output, string key) =>
        output.Split('\n').Select(l => l.Trim()).Where(l => l.StartsWith(key, StringComparison.Ordinal))
            .Select(l => l[key.Length..].Trim()).FirstOrDefault();
}
