using System.Globalization;

using VmNet.Host;

namespace VmNet.Sim;

/// <summary>
/// Writes and changes a tree laid out exactly like the kernel's <c>/sys</c>, <c>/proc</c> and <c>/dev</c> (the same
/// files and relative symlinks) for tests and simulated hosts. The operations mirror what the kernel does: creating
/// VFs, binding and unbinding drivers (which moves the <c>driver</c> link, the driver's device link, the VF's
/// <c>net/</c> directory and <c>/dev/vfio/GROUP</c>).
/// </summary>
public sealed class SysfsTree(string root)
{
    public string Root { get; } = Path.GetFullPath(root);

    private string P(string hostPath) => Path.Join(Root, hostPath.TrimStart('/'));

    /// <summary>
    /// Where a device this class creates lives in a generated tree: behind root port 00:01.N (N = its bus) of its
    /// domain. Devices already in a tree are found through the kernel's own link instead (<see cref="Dir"/>).
    /// </summary>
    public static string DevicePath(string pci) =>
        $"/sys/devices/pci{pci[..4]}:00/{pci[..4]}:00:01.{Convert.ToInt32(pci[5..7], 16) % 8}/{pci}";

    /// <summary>
    /// A device's directory as the kernel's link <c>/sys/bus/pci/devices/BDF</c> names it, so that any tree laid out
    /// like the kernel's (another bridge layout, a capture of a real host) is served; <see cref="DevicePath"/> for a
    /// device not created yet.
    /// </summary>
    public string Dir(string pci)
    {
        var link = Sysfs.Device(pci);
        var target = new FileInfo(P(link)).LinkTarget;
        if (target is null) return DevicePath(pci);
        return "/" + Path.GetRelativePath(Root, Path.GetFullPath(Path.Join(Path.GetDirectoryName(P(link))!, target)));
    }

    /// <summary>The relative link target from the directory holding <paramref name="linkHostPath"/> to <paramref name="targetHostPath"/>.</summary>
    private static string Rel(string linkHostPath, string targetHostPath) =>
        Path.GetRelativePath(Path.GetDirectoryName(linkHostPath)!, targetHostPath);

    private bool Passthrough => File.Exists(P(Sysfs.ProcCmdline)) && File.ReadAllText(P(Sysfs.ProcCmdline)).Split(' ', '\n').Contains("iommu=pt");

    public void Write(string hostPath, string content)
    {
        var real = P(hostPath);
        Directory.CreateDirectory(Path.GetDirectoryName(real)!);
        File.WriteAllText(real, content);
    }

    public void Link(string hostPath, string target)
    {
        var real = P(hostPath);
        Directory.CreateDirectory(Path.GetDirectoryName(real)!);
        if (Path.Exists(real) || new FileInfo(real).LinkTarget is not null) File.Delete(real);
        File.CreateSymbolicLink(real, target);
    }

    public void Remove(string hostPath)
    {
        var real = P(hostPath);
        if (new FileInfo(real).LinkTarget is not null || File.Exists(real)) File.Delete(real);
        else if (Directory.Exists(real)) Directory.Delete(real, recursive: true);
    }

    /// <summary>The host-wide parts: the PCI bus's driver files, the IOMMU, the kernel command line, /dev/vfio.</summary>
    public void WriteBase(bool iommu = true, bool vfioModule = true, string? cmdline = null)
    {
        Write(Sysfs.ProcCmdline, (cmdline ?? "BOOT_IMAGE=/boot/vmlinuz-6.1.0-28-amd64 root=/dev/nvme0n1p2 ro quiet" + (iommu ? " intel_iommu=on iommu=pt" : "")) + "\n");
        Write(Sysfs.DriversProbe, "");
        Write(Sysfs.DriversAutoprobe, "1\n");
        Directory.CreateDirectory(P(Sysfs.IommuGroups));
        Directory.CreateDirectory(P(Sysfs.NetClass));
        if (iommu)
        {
            Write("/sys/devices/virtual/iommu/dmar0/intel-iommu/version", "1:0\n");
            Link($"{Sysfs.IommuClass}/dmar0", "../../devices/virtual/iommu/dmar0");
        }
        else Directory.CreateDirectory(P(Sysfs.IommuClass));
        if (vfioModule)
        {
            Driver(VirtualFunction.VfioDriver);
            // No /sys/module/vfio_pci/parameters/ids: vfio-pci registers `ids` with permission 0, so sysfs has no file.
            Write(Sysfs.VfioContainer, "");
        }
    }

    /// <summary>
    /// The NUMA nodes as the kernel lays them out: <c>/sys/devices/system/node/{online,possible,has_cpu,has_memory}</c>,
    /// per node <c>cpulist</c>, <c>meminfo</c> ("Node N MemTotal: ... kB") and the 2 MiB and 1 GiB hugepage pools, CPUs
    /// numbered node by node; and <c>/sys/devices/system/cpu/online</c>.
    /// </summary>
    public void Nodes(int nodes, int cpusPerNode, long memKiBPerNode, int hugepages2M = 0, int hugepages1G = 0)
    {
        var all = CpuList.Format(Enumerable.Range(0, nodes));
        foreach (var f in new[] { "online", "possible", "has_cpu", "has_memory", "has_normal_memory" }) Write($"{Sysfs.NodeDir}/{f}", all + "\n");
        Write(Sysfs.CpuOnline, CpuList.Format(Enumerable.Range(0, nodes * cpusPerNode)) + "\n");
        for (var n = 0; n < nodes; n++)
        {
            var cpus = Enumerable.Range(n * cpusPerNode, cpusPerNode).ToList();
            Write(Sysfs.NodeCpuList(n), CpuList.Format(cpus) + "\n");
            foreach (var cpu in cpus) Link($"{Sysfs.NodeDir}/node{n}/cpu{cpu}", $"../../cpu/cpu{cpu}");
            var huge = hugepages2M * 2048L + hugepages1G * 1048576L;
            var used = Math.Min(memKiBPerNode, 512 * 1024 + huge);
            string L(string key, long kib) => $"Node {n} {key + ":",-15} {kib,8} kB";
            Write(Sysfs.NodeMeminfo(n), string.Join("\n", L("MemTotal", memKiBPerNode), L("MemFree", memKiBPerNode - used), L("MemUsed", used),
                $"Node {n} HugePages_Total: {hugepages2M,5}", $"Node {n} HugePages_Free: {hugepages2M,6}", $"Node {n} HugePages_Surp: {0,6}") + "\n");
            foreach (var (size, count) in new[] { (2048, hugepages2M), (1048576, hugepages1G) })
            {
                var pool = $"{Sysfs.NodeHugepages(n)}/hugepages-{size}kB";
                Write($"{pool}/nr_hugepages", count.ToString(CultureInfo.InvariantCulture) + "\n");
                Write($"{pool}/free_hugepages", count.ToString(CultureInfo.InvariantCulture) + "\n");
                Write($"{pool}/surplus_hugepages", "0\n");
            }
        }
        // systemd mounts /dev/hugepages (the default 2 MiB pages) on every boot; 1 GiB pages need a mount of their own,
        // which an operator who reserves them adds.
        Write(Sysfs.ProcMounts, "sysfs /sys sysfs rw,nosuid,nodev,noexec,relatime 0 0\n"
            + "hugetlbfs /dev/hugepages hugetlbfs rw,nosuid,nodev,relatime,pagesize=2M 0 0\n"
            + (hugepages1G > 0 ? "hugetlbfs /dev/hugepages1G hugetlbfs rw,relatime,pagesize=1024M 0 0\n" : ""));
    }

    /// <summary>A function's PCIe link attributes, trained at <paramref name="speed"/> x<paramref name="width"/>.</summary>
    public void PcieLink(string pci, string speed, int width, string maxSpeed, int maxWidth)
    {
        var dev = Dir(pci);
        Write($"{dev}/current_link_speed", speed + "\n");
        Write($"{dev}/current_link_width", width.ToString(CultureInfo.InvariantCulture) + "\n");
        Write($"{dev}/max_link_speed", maxSpeed + "\n");
        Write($"{dev}/max_link_width", maxWidth.ToString(CultureInfo.InvariantCulture) + "\n");
    }

    public void Driver(string name)
    {
        foreach (var f in new[] { "bind", "unbind", "new_id", "remove_id", "uevent" })
            if (!File.Exists(P($"{Sysfs.DriverDir(name)}/{f}"))) Write($"{Sysfs.DriverDir(name)}/{f}", "");
        var module = name.Replace('-', '_');
        Write($"{Sysfs.Module(module)}/initstate", "live\n");
        Link($"{Sysfs.DriverDir(name)}/module", $"../../../../module/{module}");
    }

    /// <summary>A PCI function with its attributes, its own IOMMU group, and no driver yet.</summary>
    /// <param name="parentDir">The bridge (or PF's parent) directory it sits under; <see cref="DevicePath"/>'s when null.</param>
    public void Device(string pci, string vendor, string device, int iommuGroup, int numaNode = 0, string? parentDir = null)
    {
        var dev = parentDir is null ? DevicePath(pci) : $"{parentDir}/{pci}";
        Write($"{dev}/vendor", vendor + "\n");
        Write($"{dev}/device", device + "\n");
        Write($"{dev}/class", "0x020000\n");
        Write($"{dev}/numa_node", numaNode.ToString(CultureInfo.InvariantCulture) + "\n");
        Write($"{dev}/driver_override", "(null)\n");
        Write($"{dev}/enable", "1\n");
        Link($"{dev}/subsystem", Rel($"{dev}/subsystem", "/sys/bus/pci"));
        Link(Sysfs.Device(pci), Rel(Sysfs.Device(pci), dev));
        Link($"{dev}/iommu_group", Rel($"{dev}/iommu_group", Sysfs.IommuGroup(iommuGroup.ToString(CultureInfo.InvariantCulture))));
        Directory.CreateDirectory(P(Sysfs.IommuGroupDevices(iommuGroup)));
        // The group's default domain: "identity" under iommu=pt (as the lab kernel shows), "DMA" otherwise.
        Write($"{Sysfs.IommuGroup(iommuGroup.ToString(CultureInfo.InvariantCulture))}/type", Passthrough ? "identity\n" : "DMA\n");
        Link($"{Sysfs.IommuGroupDevices(iommuGroup)}/{pci}", Rel($"{Sysfs.IommuGroupDevices(iommuGroup)}/{pci}", dev));
    }

    /// <summary>Binds a driver as the kernel does: the device's <c>driver</c> link, the driver's link back, the netdev or /dev/vfio node.</summary>
    public void Bind(string pci, string driver, string? netdev = null, string? mac = null, int mtu = 1500, bool up = false)
    {
        var dev = Dir(pci);
        Driver(driver);
        Link($"{dev}/driver", Rel($"{dev}/driver", Sysfs.DriverDir(driver)));
        Link($"{Sysfs.DriverDir(driver)}/{pci}", Rel($"{Sysfs.DriverDir(driver)}/{pci}", dev));
        Uevent(dev, pci, driver);
        if (driver == VirtualFunction.VfioDriver)
        {
            var group = new FileInfo(P($"{dev}/iommu_group")).LinkTarget!.Split('/')[^1];
            Write(Sysfs.VfioGroup(int.Parse(group, CultureInfo.InvariantCulture)), "");
        }
        else if (netdev is not null)
        {
            Netdev(pci, netdev, mac ?? "00:00:00:00:00:00", mtu, up);
        }
    }

    public void Unbind(string pci)
    {
        var dev = Dir(pci);
        var driverLink = new FileInfo(P($"{dev}/driver")).LinkTarget;
        if (driverLink is null) return;
        var driver = driverLink.Split('/')[^1];
        Remove($"{dev}/driver");
        Remove($"{Sysfs.DriverDir(driver)}/{pci}");
        Uevent(dev, pci, null);
        foreach (var net in Directory.Exists(P($"{dev}/net")) ? Directory.GetDirectories(P($"{dev}/net")) : [])
            Remove(Sysfs.Net(Path.GetFileName(net)));
        Remove($"{dev}/net");
        if (driver == VirtualFunction.VfioDriver)
        {
            var group = new FileInfo(P($"{dev}/iommu_group")).LinkTarget!.Split('/')[^1];
            Remove(Sysfs.VfioGroup(int.Parse(group, CultureInfo.InvariantCulture)));
        }
    }

    /// <summary>The device's uevent with its DRIVER= line first (or none): the kernel's other lines (PCI_ID, MODALIAS, ...) stay.</summary>
    private void Uevent(string dev, string pci, string? driver)
    {
        var path = P($"{dev}/uevent");
        var lines = File.Exists(path) ? File.ReadAllLines(path).Where(l => l.Length > 0 && !l.StartsWith("DRIVER=", StringComparison.Ordinal)).ToList() : [];
        if (lines.Count == 0) lines.Add($"PCI_SLOT_NAME={pci}");
        if (driver is not null) lines.Insert(0, $"DRIVER={driver}");
        Write($"{dev}/uevent", string.Join("\n", lines) + "\n");
    }

    public void Netdev(string pci, string name, string mac, int mtu, bool up)
    {
        var dev = Dir(pci);
        var net = $"{dev}/net/{name}";
        Write($"{net}/address", mac + "\n");
        Write($"{net}/mtu", mtu.ToString(CultureInfo.InvariantCulture) + "\n");
        Write($"{net}/type", "1\n");
        Write($"{net}/addr_len", "6\n");
        SetUp(pci, name, up);
        Link($"{net}/device", "../../../" + pci);
        Link(Sysfs.Net(name), Rel(Sysfs.Net(name), net));
    }

    /// <summary>Sets a netdev administratively up or down (IFF_UP in <c>flags</c>) with the matching operstate.</summary>
    public void SetUp(string pci, string name, bool up)
    {
        var net = $"{Dir(pci)}/net/{name}";
        Write($"{net}/flags", up ? "0x1003\n" : "0x1002\n");
        Write($"{net}/operstate", up ? "up\n" : "down\n");
        Write($"{net}/carrier", up ? "1\n" : "");
    }
}
