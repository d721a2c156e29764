namespace VmNet.Host;

/// <summary>Reads PFs and their VFs from sysfs under a <see cref="HostRoot"/>, the way the kernel lays them out.</summary>
public sealed class HostScanner(HostRoot root) : IHostFacts
{
    public HostRoot Root { get; } = root;

    /// <summary>
    /// Finds a port given as a netdev name or a PCI address. Null when there is no such device; a
    /// <see cref="PhysicalFunction"/> with <c>TotalVfs == 0</c> when it exists but has no SR-IOV capability.
    /// </summary>
    public PhysicalFunction? FindPort(string port) => FindPort(port, withVfs: false);

    public PhysicalFunction? FindPort(string port, bool withVfs)
    {
        string? pci;
        string? name;
        if (Spec.SpecLoader.PciAddress().IsMatch(port))
        {
            pci = port;
            if (!Root.Exists(Sysfs.Device(pci))) return null;
            name = NetDevOf(pci);
        }
        else
        {
            name = port;
            if (!Root.Exists(Sysfs.NetDeviceLink(name))) return null;
            pci = Root.LinkName(Sysfs.NetDeviceLink(name));
            if (pci is null) return null;
        }
        return ReadPf(pci, name, withVfs);
    }

    public string? VfPci(PhysicalFunction pf, int index) => Root.LinkName(Sysfs.VirtFn(pf.Pci, index));

    public PhysicalFunction ReadPf(string pci, string? name, bool withVfs = true)
    {
        var total = Root.ReadInt(Sysfs.SriovTotalVfs(pci)) ?? 0;
        var num = Root.ReadInt(Sysfs.SriovNumVfs(pci)) ?? 0;
        var vfs = new List<VirtualFunction>(withVfs ? num : 0);
        for (var i = 0; withVfs && i < num; i++)
        {
            var vfPci = Root.LinkName(Sysfs.VirtFn(pci, i));
            if (vfPci is not null) vfs.Add(ReadVf(i, vfPci));
        }
        return new PhysicalFunction(
            Name: name ?? pci,
            Pci: pci,
            Driver: DriverOf(pci),
            Mtu: name is null ? 0 : Root.ReadInt(Sysfs.NetMtu(name)) ?? 0,
            OperState: name is null ? "unknown" : Root.Read(Sysfs.NetOperState(name)) ?? "unknown",
            Up: name is not null && IsUp(name),
            TotalVfs: total,
            NumVfs: num,
            NumaNode: Root.ReadInt(Sysfs.NumaNode(pci)) ?? -1,
            Vfs: vfs)
        {
            Link = PcieLink.Read(Root, pci),
            SpeedMbps = name is not null && Root.ReadInt(Sysfs.NetSpeed(name)) is > 0 and var speed ? speed : null,
        };
    }

    public VirtualFunction ReadVf(int index, string pci)
    {
        var netdev = NetDevOf(pci);
        int? group = int.TryParse(Root.LinkName(Sysfs.IommuGroupLink(pci)), out var g) ? g : null;
        return new VirtualFunction(
            Index: index,
            Pci: pci,
            Driver: DriverOf(pci),
            DriverOverride: DriverOverrideOf(pci),
            NetDev: netdev,
            NetDevUp: netdev is not null && Sysfs.IsUp(Root.Read($"{Sysfs.NetDevice(pci, netdev)}/flags")),
            Mac: netdev is null ? null : Root.Read($"{Sysfs.NetDevice(pci, netdev)}/address"),
            IommuGroup: group,
            NumaNode: Root.ReadInt(Sysfs.NumaNode(pci)) ?? -1)
        {
            GroupPeer = group is { } n ? GroupPeers(pci, n).Select(p => $"{p.Pci} (driver {p.Driver})").FirstOrDefault() : null,
        };
    }

    /// <summary>
    /// The devices of IOMMU group <paramref name="group"/> besides <paramref name="pci"/> that vfio would take from the
    /// host with it: bound to a driver other than vfio-pci, and no PCI bridge or port (a group is only viable for vfio
    /// when every endpoint in it is on vfio-pci or on no driver).
    /// </summary>
    public IEnumerable<(string Pci, string Driver)> GroupPeers(string pci, int group)
    {
        foreach (var other in Root.List(Sysfs.IommuGroupDevices(group)).Order(StringComparer.Ordinal))
        {
            if (other == pci) continue;
            var driver = DriverOf(other);
            var cls = Root.Read(Sysfs.PciClass(other)) ?? "";
            if (driver is null or VirtualFunction.VfioDriver or "pcieport" || cls.StartsWith("0x0604", StringComparison.Ordinal)) continue;
            yield return (other, driver);
        }
    }

    /// <summary>The host's NUMA nodes with their CPUs, memory and hugepages, and the CPUs its command line isolates.</summary>
    public NumaTopology Numa() => NumaTopology.Read(Root);

    /// <summary>Every PF with SR-IOV capability on the host, by PCI address.</summary>
    public IReadOnlyList<PhysicalFunction> AllPfs()
    {
        var result = new List<PhysicalFunction>();
        foreach (var pci in Root.List(Sysfs.PciDevices).Order(StringComparer.Ordinal))
        {
            if (!Root.Exists(Sysfs.SriovTotalVfs(pci))) continue;
            result.Add(ReadPf(pci, NetDevOf(pci)));
        }
        return result;
    }

    /// <summary>The function's first network device by name, or null while no network driver holds it.</summary>
    public string? NetDevOf(string pci) => Root.List(Sysfs.NetDir(pci)).Order(StringComparer.Ordinal).FirstOrDefault();

    /// <summary>The driver bound to <paramref name="pci"/>, or null.</summary>
    public string? DriverOf(string pci) => Root.LinkName(Sysfs.DriverLink(pci));

    /// <summary>The function's <c>driver_override</c>, or null when unset.</summary>
    public string? DriverOverrideOf(string pci) =>
        Root.Read(Sysfs.DriverOverride(pci)) is { Length: > 0 } o && o != "(null)" ? o : null;

    /// <summary>Whether the netdev is administratively up (IFF_UP).</summary>
    public bool IsUp(string netdev) => Sysfs.IsUp(Root.Read(Sysfs.NetFlags(netdev)));

    /// <summary>The VF at index <paramref name="vf"/> of the PF at <paramref name="pfPci"/> (its <c>virtfnN</c> link), or null.</summary>
    public string? VfPciOf(string pfPci, int vf) => Root.LinkName(Sysfs.VirtFn(pfPci, vf));

    /// <summary>The IOMMU group of <paramref name="pci"/>, or null when the IOMMU is off.</summary>
    public int? IommuGroupOf(string pci) => int.TryParse(Root.LinkName(Sysfs.IommuGroupLink(pci)), out var g) ? g : null;
}
