using System.Globalization;
using VmNet.Host;
using VmNet.Leases;
using VmNet.Spec;

namespace VmNet.Planning;

/// <summary>
/// Where the VM runs, as planned: its NUMA node (null: no node is rendered), each vCPU's dedicated host CPU and the
/// emulator threads' CPU (empty: not pinned), the CPUs shared vCPUs float over (empty: any), and its hugepages (the
/// page size and the hugetlbfs mount QEMU maps them from).
/// </summary>
public sealed record Placement(
    int? Node,
    IReadOnlyList<int> VcpuCpus,
    int? EmulatorCpu,
    IReadOnlyList<int> SharedCpus,
    long HugepageKiB,
    string? HugetlbfsMount,
    IReadOnlyList<string> Warnings)
{
    public static readonly Placement None = new(null, [], null, [], 0, null, []);

    public bool Dedicated => VcpuCpus.Count > 0;

    /// <summary>The CPU leases dedicated pinning takes: one per vCPU and one for the emulator threads.</summary>
    public IReadOnlyList<CpuLease> Leases(string vm) =>
        Dedicated
            ? [.. VcpuCpus.Select((cpu, i) => new CpuLease(CpuLease.CurrentVersion, vm, cpu, Node ?? 0, i)),
                new CpuLease(CpuLease.CurrentVersion, vm, EmulatorCpu!.Value, Node ?? 0, null)]
            : [];

    /// <summary>As the plan prints it: "node 1, vCPUs on 12,13, emulator on 14, 2MiB hugepages", or null for no placement.</summary>
    public string? Describe()
    {
        var parts = new List<string>();
        if (Node is { } n) parts.Add($"node {n.ToString(CultureInfo.InvariantCulture)} (memory strict)");
        if (Dedicated) parts.Add($"vCPUs pinned to {string.Join(",", VcpuCpus)}, emulator threads to {EmulatorCpu}");
        else if (SharedCpus.Count > 0) parts.Add($"vCPUs float over CPUs {CpuList.Format(SharedCpus)}");
        if (HugepageKiB > 0) parts.Add($"{new HugepagePool(HugepageKiB, 0, 0).Size} hugepages from {HugetlbfsMount}, preallocated");
        return parts.Count == 0 ? null : string.Join("; ", parts);
    }
}

/// <summary>
/// Plans <c>placement:</c> from the spec, the VFs chosen, the host's NUMA facts and the CPU leases; pure, like the
/// rest of the planner. A refusal is a <see cref="HostException"/> (exit 3) naming what is missing and the fix.
/// </summary>
public static class PlacementPlanner
{
    /// <param name="hugepagesInUse">The VM runs already on hugepages of the size asked for: its own pages are not free, and need not be.</param>
    public static Placement Plan(VmSpec spec, IReadOnlyList<VfClaim> vfs, NumaTopology numa, ILeaseView leases, bool hugepagesInUse)
    {
        var p = spec.Placement;
        var held = CpuLedger.HeldOf(leases.CpuLeases(), leases);
        var own = held.Where(l => l.Vm == spec.Name).ToList();
        var others = held.Where(l => l.Vm != spec.Name).ToList();
        if (numa.Nodes.Count == 0)
        {
            if (p.Dedicated || p.HugepageKiB > 0)
                throw new HostException($"placement: the host's CPUs and memory cannot be read ({Sysfs.NodeDir}, {Sysfs.CpuOnline}); dedicated CPUs and hugepages need them");
            return Placement.None;
        }
        var multi = numa.Nodes.Count > 1;
        var dedicatedElsewhere = others.Select(l => l.Cpu).ToHashSet();
        if (p.Numa == NumaPolicy.Any)
        {
            if (dedicatedElsewhere.Count == 0) return Placement.None;
            var anyCpu = numa.Nodes.SelectMany(n => n.Cpus).Except(numa.IsolatedCpus).Where(c => !dedicatedElsewhere.Contains(c)).Order().ToList();
            if (anyCpu.Count == 0)
                throw new HostException("placement.numa: any: no CPU of the host is left for shared vCPUs (all are isolated or dedicated to VMs); free some with `vmnet rm`");
            return Placement.None with { SharedCpus = anyCpu };
        }

        var warnings = new List<string>();
        var byNode = vfs.GroupBy(v => numa.NodeOf(v.Pf.NumaNode)).OrderBy(g => g.Key).ToList();
        string Names(IEnumerable<VfClaim> claims) => string.Join(", ", claims.Select(c => c.Pf.Name).Distinct());
        string? split = byNode.FirstOrDefault(g => g.Key < 0) is { } unknown
            ? $"the kernel does not say which NUMA node {Names(unknown)} sits on (numa_node is -1; `vmnet doctor` says how to fix the firmware)"
            : byNode.Count > 1 ? $"the VM's ports sit on different NUMA nodes ({string.Join("; ", byNode.Select(g => $"{Names(g)} on node {g.Key}"))})"
            : null;
        int? nicNode = split is null && byNode.Count == 1 ? byNode[0].Key : null;
        if (split is not null && p.Numa == NumaPolicy.Nic)
            throw new HostException($"placement.numa: nic: {split}; give the VM ports of one node (`vmnet host` shows each PF's node), or set placement.numa: preferred or any");
        var first = vfs.Count > 0 ? numa.NodeOf(vfs[0].Pf.NumaNode) : -1;
        var candidates = new List<int>();
        if (nicNode is { } nn) candidates.Add(nn);
        else if (first >= 0) candidates.Add(first);
        if (p.Numa == NumaPolicy.Preferred || candidates.Count == 0)
            candidates.AddRange(numa.Nodes.Select(n => n.Id).Where(id => !candidates.Contains(id)));
        if (split is not null) warnings.Add($"placement.numa: preferred: {split}");

        string? firstShortfall = null;
        foreach (var node in candidates)
        {
            var (fit, shortfall) = TryNode(spec, node, numa, own, others, dedicatedElsewhere, hugepagesInUse, multi);
            if (fit is null)
            {
                firstShortfall ??= shortfall;
                continue;
            }
            if (nicNode is { } want && node != want)
                warnings.Add($"placement.numa: preferred: the VM runs on node {node}, not on its NIC's node {want}: {firstShortfall}");
            return fit with { Warnings = [.. warnings, .. fit.Warnings] };
        }
        throw new HostException(firstShortfall!);
    }

    private static (Placement? Fit, string? Shortfall) TryNode(VmSpec spec, int node, NumaTopology numa, IReadOnlyList<CpuLease> own,
        IReadOnlyList<CpuLease> others, HashSet<int> dedicatedElsewhere, bool hugepagesInUse, bool multi)
    {
        var p = spec.Placement;
        var facts = numa.Node(node);
        if (facts is null) return (null, $"placement: the PFs say NUMA node {node}, but {Sysfs.NodeDir}/node{node} does not exist");
        var isolated = numa.IsolatedCpus.Intersect(facts.Cpus).ToHashSet();
        IReadOnlyList<int> vcpus = [];
        int? emulator = null;
        IReadOnlyList<int> shared = [];
        if (p.Dedicated)
        {
            // The kernel's isolcpus are the CPUs the operator set aside for guests; without them, any CPU of the node but 0.
            var pool = (isolated.Count > 0 ? facts.Cpus.Where(isolated.Contains) : facts.Cpus.Where(c => c != 0)).ToList();
            var free = pool.Where(c => !dedicatedElsewhere.Contains(c)).ToList();
            var need = spec.Cpus + 1;
            if (free.Count < need)
            {
                var leasedBy = others.Where(l => pool.Contains(l.Cpu)).GroupBy(l => l.Vm).Select(g => $"{CpuList.Format(g.Select(l => l.Cpu))} by {g.Key}");
                var leased = string.Join(", ", leasedBy);
                return (null, $"placement.cpuPinning: dedicated needs {need} CPUs of NUMA node {node} ({spec.Cpus} for the vCPUs, 1 for the emulator threads); "
                    + $"{free.Count} of its {pool.Count} {(isolated.Count > 0 ? "isolated (isolcpus) " : "")}CPUs {CpuList.Format(pool)} {(free.Count == 1 ? "is" : "are")} free"
                    + (leased.Length > 0 ? $" (leased: {leased})" : "")
                    + $"; free some with `vmnet rm`, lower cpus, or set placement.cpuPinning: shared");
            }
            // The VM keeps the CPUs it holds (a restart pins the same ones); new ones come from the top of the node down.
            var mine = own.Where(l => l.Node == node && free.Contains(l.Cpu)).ToList();
            if (mine.Count == need && mine.Count(l => l.Vcpu is null) == 1
                && mine.Where(l => l.Vcpu is not null).Select(l => l.Vcpu!.Value).Order().SequenceEqual(Enumerable.Range(0, spec.Cpus)))
            {
                vcpus = mine.Where(l => l.Vcpu is not null).OrderBy(l => l.Vcpu).Select(l => l.Cpu).ToList();
                emulator = mine.Single(l => l.Vcpu is null).Cpu;
            }
            else
            {
                var take = free.OrderDescending().Take(need).Order().ToList();
                vcpus = take.Take(spec.Cpus).ToList();
                emulator = take[^1];
            }
        }
        else if (multi || dedicatedElsewhere.Count > 0)
        {
            shared = facts.Cpus.Where(c => !isolated.Contains(c) && !dedicatedElsewhere.Contains(c)).ToList();
            if (shared.Count == 0)
                return (null, $"placement.cpuPinning: shared: no CPU of NUMA node {node} is left for shared vCPUs (all of {CpuList.Format(facts.Cpus)} are isolated or dedicated to VMs); "
                    + "free some with `vmnet rm`, or set placement.numa: any");
        }
        string? mount = null;
        if (p.HugepageKiB > 0)
        {
            var size = new HugepagePool(p.HugepageKiB, 0, 0).Size;
            var dir = $"{Sysfs.NodeHugepages(node)}/hugepages-{p.HugepageKiB}kB";
            var pool = facts.Hugepages.FirstOrDefault(h => h.SizeKiB == p.HugepageKiB);
            if (pool is null)
                return (null, $"placement.hugepages: {size}: the kernel offers no {size} pages on NUMA node {node} (no {dir}); "
                    + (p.HugepageKiB == 1048576 ? "the CPU lacks 1 GiB pages (pdpe1gb), or the kernel was built without them; use hugepages: 2MiB" : "use hugepages: none"));
            var need = (int)(spec.MemoryMiB * 1024L / p.HugepageKiB);
            if (!hugepagesInUse && pool.Free < need)
                return (null, $"placement.hugepages: {size} needs {need} free {size} pages on NUMA node {node} for {spec.MemoryMiB}MiB of guest memory; it has {pool.Free} free of {pool.Total}; "
                    + $"reserve them: echo {pool.Total + need - pool.Free} > {dir}/nr_hugepages");
            mount = numa.Hugetlbfs.FirstOrDefault(m => m.PageKiB == p.HugepageKiB)?.Path;
            if (mount is null)
                return (null, $"placement.hugepages: {size}: no hugetlbfs of {size} pages is mounted (/proc/mounts); mount one: "
                    + $"mkdir -p /dev/hugepages{size[..^2]} && mount -t hugetlbfs -o pagesize={size[..^2]} hugetlbfs /dev/hugepages{size[..^2]}");
        }
        var rendered = multi || p.Dedicated || p.HugepageKiB > 0 ? node : (int?)null;
        if (rendered is not null && p.HugepageKiB == 0 && facts.MemFreeKiB > 0 && facts.MemFreeKiB < spec.MemoryMiB * 1024L)
            return (new Placement(rendered, vcpus, emulator, shared, p.HugepageKiB, mount,
                [$"placement: NUMA node {node} has {facts.MemFreeKiB / 1024} MiB free for the VM's {spec.MemoryMiB} MiB bound to it (page cache counts as used; QEMU fails if the node cannot give it)"]), null);
        return (new Placement(rendered, vcpus, emulator, shared, p.HugepageKiB, mount, []), null);
    }
}
