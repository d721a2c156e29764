namespace VmNet.Host;

/// <summary>What the planner needs to know about one physical function (a NIC port).</summary>
public sealed record PhysicalFunction(
    string Name,
    string Pci,
    string? Driver,
    int Mtu,
    string OperState,
    bool Up,
    int TotalVfs,
    int NumVfs,
    int NumaNode,
    IReadOnlyList<VirtualFunction> Vfs)
{
    /// <summary>The PF's PCIe link, when sysfs shows it (not for devices on a virtual bus).</summary>
    public PcieLink? Link { get; init; }

    /// <summary>The port's Ethernet speed in Mbit/s; null while unknown (link down: the kernel says -1).</summary>
    public int? SpeedMbps { get; init; }
}

/// <summary>One VF as sysfs shows it.</summary>
public sealed record VirtualFunction(
    int Index,
    string Pci,
    string? Driver,
    string? DriverOverride,
    string? NetDev,
    bool NetDevUp,
    string? Mac,
    int? IommuGroup,
    int NumaNode)
{
    public const string VfioDriver = "vfio-pci";

    /// <summary>
    /// A device in this VF's IOMMU group that vfio would take from the host with it ("0000:00:1f.0 (driver e1000e)"),
    /// or null when the group is the VF's alone (bridges, unbound devices and vfio-pci ones do not count).
    /// </summary>
    public string? GroupPeer { get; init; }

    /// <summary>Why this VF cannot be taken by anyone right now (ignoring leases), or null if it is free.</summary>
    public string? BusyReason => GroupPeer is not null ? $"shares IOMMU group {IommuGroup} with {GroupPeer}" : Driver switch
    {
        null => "bound to no driver",
        VfioDriver => "bound to vfio-pci",
        _ when NetDev is null => $"bound to {Driver} without a network device",
        _ when NetDevUp => $"its netdev {NetDev} is up",
        _ => null,
    };
}

/// <summary>
/// The host as the planner sees it: read-only, read lazily, so a plan looks only at the PFs it names and the VFs it
/// considers.
/// </summary>
public interface IHostFacts
{
    /// <summary>The PF for a port (netdev name or PCI address), without its VFs; null when there is no such device.</summary>
    PhysicalFunction? FindPort(string port);

    /// <summary>The PCI address of VF <paramref name="index"/> of <paramref name="pf"/> (its <c>virtfnN</c> link).</summary>
    string? VfPci(PhysicalFunction pf, int index);

    VirtualFunction ReadVf(int index, string pci);

    /// <summary>The host's NUMA nodes, isolated CPUs and hugetlbfs mounts.</summary>
    NumaTopology Numa();
}
