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
            if (!Root.Exists($"/sys/bus/pci/devices/{pci}")) return null;
            name = Root.List($"/sys/bus/pci/devices/{pci}/net").Order(StringComparer.Ordinal).FirstOrDefault();
        }
        else
        {
            name = port;
            if (!Root.Exists($"/sys/class/net/{name}/device")) return null;
            pci = Root.LinkName($"/sys/class/net/{name}/device");
            if (pci is null) return null;
        }
        return ReadPf(pci, name, withVfs);
    }

    public string? VfPci(PhysicalFunction pf, int index) => Root.LinkName($"/sys/bus/pci/devices/{pf.Pci}/virtfn{index}");

    public PhysicalFunction ReadPf(string pci, string? name, bool withVfs = true)
    {
        var dev = $"/sys/bus/pci/devices/{pci}";
        var total = Root.ReadInt($"{dev}/sriov_totalvfs") ?? 0;
        var num = Root.ReadInt($"{dev}/sriov_numvfs") ?? 0;
        var vfs = new List<VirtualFunction>(withVfs ? num : 0);
        for (var i = 0; withVfs && i < num; i++)
        {
            var vfPci = Root.LinkName($"{dev}/virtfn{i}");
            if (vfPci is not null) vfs.Add(ReadVf(i, vfPci));
        }
        var net = name is null ? null : $"/sys/class/net/{name}";
        var flags = net is null ? 0 : ParseHex(Root.Read($"{net}/flags"));
        return new PhysicalFunction(
            Name: name ?? pci,
            Pci: pci,
            Driver: Root.LinkName($"{dev}/driver"),
            Mtu: net is null ? 0 : Root.ReadInt($"{net}/mtu") ?? 0,
            OperState: net is null ? "unknown" : Root.Read($"{net}/operstate") ?? "unknown",
            Up: (flags & 1) != 0,
            TotalVfs: total,
            NumVfs: num,
            NumaNode: Root.ReadInt($"{dev}/numa_node") ?? -1,
            Vfs: vfs);
    }

    public VirtualFunction ReadVf(int index, string pci)
    {
        var dev = $"/sys/bus/pci/devices/{pci}";
        var netdev = Root.List($"{dev}/net").Order(StringComparer.Ordinal).FirstOrDefault();
        var flags = netdev is null ? 0 : ParseHex(Root.Read($"{dev}/net/{netdev}/flags"));
        var group = Root.LinkName($"{dev}/iommu_group");
        var over = Root.Read($"{dev}/driver_override");
        return new VirtualFunction(
            Index: index,
            Pci: pci,
            Driver: Root.LinkName($"{dev}/driver"),
            DriverOverride: over is null or "(null)" ? null : over,
            NetDev: netdev,
            NetDevUp: (flags & 1) != 0,
            Mac: netdev is null ? null : Root.Read($"{dev}/net/{netdev}/address"),
            IommuGroup: int.TryParse(group, out var g) ? g : null,
            NumaNode: Root.ReadInt($"{dev}/numa_node") ?? -1);
    }

    /// <summary>Every PF with SR-IOV capability on the host, by PCI address.</summary>
    public IReadOnlyList<PhysicalFunction> AllPfs()
    {
        var result = new List<PhysicalFunction>();
        foreach (var pci in Root.List("/sys/bus/pci/devices").Order(StringComparer.Ordinal))
        {
            if (!Root.Exists($"/sys/bus/pci/devices/{pci}/sriov_totalvfs")) continue;
            var name = Root.List($"/sys/bus/pci/devices/{pci}/net").Order(StringComparer.Ordinal).FirstOrDefault();
            result.Add(ReadPf(pci, name));
        }
        return result;
    }

    private static int ParseHex(string? text) =>
        text is not null && text.StartsWith("0x", StringComparison.Ordinal)
        && int.TryParse(text.AsSpan(2), global::System.Globalization.NumberStyles.HexNumber, null, out var v) ? v : 0;
}
