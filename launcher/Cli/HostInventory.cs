using System.Text.Json.Serialization;
using VmNet.Host;
using VmNet.Leases;

namespace VmNet.Cli;

/// <summary>What <c>vmnet host</c> shows: every SR-IOV PF and its VFs, with who holds each.</summary>
public sealed record HostInventory(IReadOnlyList<PfRow> Pfs, IReadOnlyList<NumaNodeFacts> Nodes)
{
    /// <summary>The host CPUs leased to VMs for dedicated pinning (<c>placement.cpuPinning: dedicated</c>).</summary>
    public IReadOnlyList<DedicatedCpu> DedicatedCpus { get; init; } = [];

    /// <summary>
    /// Reads every SR-IOV PF and its VFs; <paramref name="adminState"/> gives the VF settings the PF holds (MAC and
    /// VLAN from netlink) where available, else the lease's and the netdev's are shown.
    /// </summary>
    public static HostInventory Read(IReadOnlyList<PhysicalFunction> all, LeaseStore leases, Func<PhysicalFunction, IReadOnlyDictionary<int, VfAdmin>>? adminState = null,
        NumaTopology? numa = null)
    {
        var pfs = new List<PfRow>();
        foreach (var pf in all)
        {
            var admin = adminState?.Invoke(pf) ?? new Dictionary<int, VfAdmin>();
            var guaranteed = 0L; // the sum of the leased VFs' min_tx_rate (seed 003's capacity)
            var vfs = pf.Vfs.Select(vf =>
            {
                // A corrupt lease file hides this VF's owner, not the host: the row says so, the others are served.
                Lease? lease = null;
                string? corrupt = null;
                try { lease = leases.Find(vf.Pci); }
                catch (VmNetException e) { corrupt = e.Message; }
                guaranteed += lease?.Applied.Rates?.MinMbps ?? 0;
                var a = admin.GetValueOrDefault(vf.Index);
                var state = vf.Driver switch
                {
                    null => "unbound",
                    VirtualFunction.VfioDriver => "vfio",
                    _ => vf.NetDevUp ? "up" : "down",
                };
                var free = lease is null && corrupt is null && vf.BusyReason is null;
                return new VfRow(vf.Index, vf.Pci, vf.Driver, vf.NetDev, state, a?.Mac ?? lease?.Mac ?? vf.Mac,
                    a is not null ? a.Vlan : lease?.Applied.Vlan is { IsTagged: true } t ? t.Id : null, lease?.Vm, lease?.Network, free, corrupt)
                {
                    Unusable = vf.GroupPeer is not null ? vf.BusyReason : null,
                };
            }).ToList();
            pfs.Add(new PfRow(pf.Name, pf.Pci, pf.Driver, pf.TotalVfs, pf.NumVfs, pf.Mtu, pf.Up ? "up" : "down", vfs)
            {
                NumaNode = numa?.NodeOf(pf.NumaNode) ?? pf.NumaNode, Link = pf.Link, SpeedMbps = pf.SpeedMbps, GuaranteedMbps = guaranteed,
            });
        }
        return new HostInventory(pfs, numa?.Nodes ?? [])
        {
            DedicatedCpus = CpuLedger.HeldOf(leases.CpuLeases(), leases).Select(c => new DedicatedCpu(c.Cpu, c.Node, c.Vm, c.Vcpu)).ToList(),
        };
    }

    /// <summary>One CPU dedicated to a VM: its vCPU (null: the emulator threads).</summary>
    public sealed record DedicatedCpu(int Cpu, int Node, string Vm, int? Vcpu);

    private const string NoPf = "no SR-IOV PF on this host (no PCI function has sriov_totalvfs)";

    /// <summary>The same host with only the VFs a VM could be given now (<c>--free</c>).</summary>
    public HostInventory FreeOnly() => this with { Pfs = Pfs.Select(p => p with { Vfs = p.Vfs.Where(v => v.Free).ToList() }).ToList() };

    /// <summary>One row per PF (<c>--summary</c>): how many VFs are free, vmnet's, another user's, unusable, unreadable.</summary>
    public IReadOnlyList<PfSummary> Summary() => Pfs.Select(p => new PfSummary(
        p.Name, p.Pci, p.Driver, p.State, p.Mtu, p.NumVfs, p.TotalVfs,
        Free: p.Vfs.Count(v => v.Free),
        Vmnet: p.Vfs.Count(v => v.Vm is not null),
        Other: p.Vfs.Count(v => InUseElsewhere(v)),
        Unusable: p.Vfs.Count(v => v.Vm is null && v.LeaseProblem is null && v.Unusable is not null),
        CorruptLeases: p.Vfs.Count(v => v.LeaseProblem is not null),
        Vms: p.Vfs.Select(v => v.Vm).OfType<string>().Distinct().Order(StringComparer.Ordinal).ToList())
    { NumaNode = p.NumaNode, SpeedMbps = p.SpeedMbps, GuaranteedMbps = p.GuaranteedMbps }).ToList();

    /// <summary>Held by something that is not vmnet (a host netdev's user, another tool's vfio-pci).</summary>
    private static bool InUseElsewhere(VfRow v) => !v.Free && v.Vm is null && v.LeaseProblem is null && v.Unusable is null;

    public void PrintSummary(TextWriter o)
    {
        if (Pfs.Count == 0)
        {
            o.WriteLine(NoPf);
            return;
        }
        var summary = Summary();
        string N(int n) => n.ToString(System.Globalization.CultureInfo.InvariantCulture);
        TextTable.Print(o, ["PF", "PCI", "DRIVER", "STATE", "NODE", "MTU", "VFS", "FREE", "VMNET", "OTHER", "UNUSABLE", "GUARANTEED", "VMS"], summary.Select(p => new[]
        {
            p.Name, p.Pci, p.Driver ?? "-", p.State, Node(p.NumaNode), N(p.Mtu), $"{N(p.NumVfs)}/{N(p.TotalVfs)}", N(p.Free), N(p.Vmnet), N(p.Other),
            N(p.Unusable + p.CorruptLeases), Guarantee(p.GuaranteedMbps, p.SpeedMbps), p.Vms.Count == 0 ? "-" : string.Join(",", p.Vms),
        }).ToList());
        var vfs = summary.Sum(p => p.NumVfs);
        o.WriteLine($"{summary.Count} PF{(summary.Count == 1 ? "" : "s")}, {vfs} VF{(vfs == 1 ? "" : "s")}, {summary.Sum(p => p.Free)} free" +
            (summary.Sum(p => p.CorruptLeases) is > 0 and var c ? $", {c} with a corrupt lease file (`vmnet host` names them)" : ""));
        PrintNodes(o);
    }

    /// <summary>"2000/100000": the VFs' guaranteed rates against the link's speed ("-" when the speed is unknown).</summary>
    private static string Guarantee(long guaranteed, int? speed) =>
        speed is { } s ? FormattableString.Invariant($"{guaranteed}/{s}") : "-";

    private static string Node(int node) => node < 0 ? "-" : node.ToString(System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>One row per NUMA node: its CPUs, memory and hugepages (free/total per size), and the PFs on it.</summary>
    public void PrintNodes(TextWriter o)
    {
        if (Nodes.Count == 0) return;
        static string GiB(long kib) => (kib / 1048576.0).ToString("0.0", System.Globalization.CultureInfo.InvariantCulture) + " GiB";
        o.WriteLine();
        TextTable.Print(o, ["NODE", "CPUS", "DEDICATED", "MEMORY", "FREE", "HUGEPAGES (FREE/TOTAL)", "PFS"], Nodes.Select(n => new[]
        {
            Node(n.Id), n.Cpus.Count == 0 ? "-" : CpuList.Format(n.Cpus),
            DedicatedCpus.Where(c => n.Cpus.Contains(c.Cpu)).Select(c => c.Cpu).ToList() is { Count: > 0 } d ? CpuList.Format(d) : "-",
            GiB(n.MemTotalKiB), GiB(n.MemFreeKiB),
            n.Hugepages.Count == 0 ? "-" : string.Join(", ", n.Hugepages.Select(h => $"{h.Size} {h.Free}/{h.Total}")),
            Pfs.Where(p => p.NumaNode == n.Id).Select(p => p.Name).DefaultIfEmpty("-").Aggregate((a, b) => a + "," + b),
        }).ToList());
        // A PF without a node on a host of several (firmware that does not say; on a one-node host it is on that node).
        if (Nodes.Count > 1 && Pfs.FirstOrDefault(p => p.NumaNode < 0) is { } unknown)
            o.WriteLine($"{unknown.Name}: the kernel does not say which node it sits on (numa_node is -1); its VMs are not placed by node");
    }

    public void PrintTable(TextWriter o)
    {
        if (Pfs.Count == 0)
        {
            o.WriteLine(NoPf);
            return;
        }
        foreach (var pf in Pfs)
        {
            o.WriteLine($"{pf.Name}  {pf.Pci}  {pf.Driver ?? "-"}  {pf.State}  mtu {pf.Mtu}  VFs {pf.NumVfs}/{pf.TotalVfs}  free {pf.Vfs.Count(v => v.Free)}  node {Node(pf.NumaNode)}"
                + (pf.Link is { Speed: not null } l ? $"  PCIe {PcieLink.Rate(l.Speed)?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? l.Speed} GT/s x{l.Width}" : "")
                + (pf.SpeedMbps is not null ? $"  guaranteed {Guarantee(pf.GuaranteedMbps, pf.SpeedMbps)} Mbit/s" : ""));
            if (pf.Link is { Degraded: true } d)
                o.WriteLine($"  PCIe link trained below the card's: {d} (a slower or narrower slot caps both ports; `vmnet doctor` says more)");
            var rows = pf.Vfs.Select(v => new[]
            {
                v.Vf.ToString(System.Globalization.CultureInfo.InvariantCulture), v.Pci, v.Driver ?? "-", v.NetDev ?? "-", v.State,
                v.Mac ?? "-", v.Vlan is > 0 ? v.Vlan.Value.ToString(System.Globalization.CultureInfo.InvariantCulture) : "-",
                v.LeaseProblem is not null ? "lease file corrupt (see below)" : v.Vm is null ? (v.Free ? "free" : v.Unusable is not null ? "unusable (see below)" : "in use (not vmnet)") : $"{v.Vm}/{v.Network}",
            }).ToList();
            if (rows.Count == 0)
            {
                o.WriteLine(pf.NumVfs == 0 ? "  no VFs (sriov_numvfs is 0: `vmnet host apply` creates them)" : "  no free VF");
                continue;
            }
            TextTable.Print(o, ["VF", "PCI", "DRIVER", "NETDEV", "STATE", "MAC", "VLAN", "OWNER"], rows);
            foreach (var v in pf.Vfs.Where(v => v.LeaseProblem is not null)) o.WriteLine($"  VF {v.Vf}: {v.LeaseProblem}");
            foreach (var v in pf.Vfs.Where(v => v.Unusable is not null && v.Vm is null)) o.WriteLine($"  VF {v.Vf}: {v.Unusable}: vfio cannot take it alone (vmnet doctor says what to do)");
        }
        PrintNodes(o);
    }
}

public sealed record PfRow(string Name, string Pci, string? Driver, int TotalVfs, int NumVfs, int Mtu, string State, IReadOnlyList<VfRow> Vfs)
{
    /// <summary>The NUMA node the PF sits on (its <c>numa_node</c>); -1 when the kernel does not say.</summary>
    public int NumaNode { get; init; } = -1;

    /// <summary>Its PCIe link as trained and as the card can; null when sysfs does not show one.</summary>
    public PcieLink? Link { get; init; }

    /// <summary>The port's speed in Mbit/s; null while unknown (link down).</summary>
    public int? SpeedMbps { get; init; }

    /// <summary>The sum of its leased VFs' min_tx_rate in Mbit/s: the bandwidth it guarantees.</summary>
    public long GuaranteedMbps { get; init; }
}

/// <summary>One VF of <c>vmnet host</c>: <see cref="Vm"/> and <see cref="Network"/> are the VmNet VM holding it and
/// the network it serves there; <see cref="LeaseProblem"/>: its lease file cannot be read (what to do about it).</summary>
public sealed record VfRow(int Vf, string Pci, string? Driver, string? NetDev, string State, string? Mac, int? Vlan, string? Vm, string? Network, bool Free,
    string? LeaseProblem = null)
{
    /// <summary>Why no VM can have this VF while the host stays as it is (its IOMMU group holds a host device), or null.</summary>
    public string? Unusable { get; init; }
}

/// <summary>One PF of <c>vmnet host --summary</c>: its VFs counted by who can have them; <see cref="Vms"/> the VMs holding some.</summary>
public sealed record PfSummary(string Name, string Pci, string? Driver, string State, int Mtu, int NumVfs, int TotalVfs,
    int Free, int Vmnet, int Other, int Unusable, int CorruptLeases, IReadOnlyList<string> Vms)
{
    public int NumaNode { get; init; } = -1;
    public int? SpeedMbps { get; init; }
    public long GuaranteedMbps { get; init; }
}

/// <summary>A VF's settings as the PF holds them (netlink).</summary>
public sealed record VfAdmin(string Mac, int? Vlan);

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase, WriteIndented = true)]
[JsonSerializable(typeof(HostInventory))]
[JsonSerializable(typeof(IReadOnlyList<PfSummary>))]
internal sealed partial class HostInventoryJson : JsonSerializerContext;
