namespace VmNet.Host;

/// <summary>
/// Every kernel path VmNet reads or writes, named once, as on the host ("/sys/...", "/dev/...", "/proc/..."). A
/// <see cref="HostRoot"/> maps them into a simulated host's directory. The layout is the kernel's (Documentation/ABI:
/// sysfs-bus-pci, sysfs-class-net, sysfs-kernel-iommu_groups).
/// </summary>
public static class Sysfs
{
    /// <summary>The PCI bus's device links: one per function, named by its address, pointing into /sys/devices.</summary>
    public const string PciDevices = "/sys/bus/pci/devices";

    /// <summary>Writing a PCI address here makes the kernel bind the device to its <c>driver_override</c> or own driver.</summary>
    public const string DriversProbe = "/sys/bus/pci/drivers_probe";

    public const string NetClass = "/sys/class/net";
    public const string IommuClass = "/sys/class/iommu";
    public const string ProcCmdline = "/proc/cmdline";
    public const string ProcMounts = "/proc/mounts";
    public const string ProcSelfLimits = "/proc/self/limits";
    public const string VfioContainer = "/dev/vfio/vfio";

    /// <summary>A PCI function's directory (through its bus link).</summary>
    public static string Device(string pci) => $"{PciDevices}/{pci}";

    /// <summary>Link to the bound driver; absent when none is bound.</summary>
    public static string DriverLink(string pci) => $"{Device(pci)}/driver";

    /// <summary>The driver the next probe binds ("(null)" when unset).</summary>
    public static string DriverOverride(string pci) => $"{Device(pci)}/driver_override";

    public static string IommuGroupLink(string pci) => $"{Device(pci)}/iommu_group";

    /// <summary>The function's network devices (one directory per netdev), present while a network driver holds it.</summary>
    public static string NetDir(string pci) => $"{Device(pci)}/net";

    public static string NetDevice(string pci, string netdev) => $"{NetDir(pci)}/{netdev}";

    public static string NumaNode(string pci) => $"{Device(pci)}/numa_node";

    /// <summary>A PCIe link attribute of a function (current_link_speed, current_link_width, max_link_speed, max_link_width).</summary>
    public static string PciLink(string pci, string attribute) => $"{Device(pci)}/{attribute}";

    /// <summary>The NUMA nodes (Documentation/ABI/stable/sysfs-devices-node): nodeN/{cpulist,meminfo,hugepages}.</summary>
    public const string NodeDir = "/sys/devices/system/node";

    public static string NodeCpuList(int node) => $"{NodeDir}/node{node}/cpulist";

    public static string NodeMeminfo(int node) => $"{NodeDir}/node{node}/meminfo";

    /// <summary>A node's hugepage pools: hugepages-SIZEkB/{nr,free,surplus}_hugepages.</summary>
    public static string NodeHugepages(int node) => $"{NodeDir}/node{node}/hugepages";

    /// <summary>The host-wide pools, on a kernel without NUMA nodes.</summary>
    public const string Hugepages = "/sys/kernel/mm/hugepages";

    public const string CpuOnline = "/sys/devices/system/cpu/online";
    public const string ProcMeminfo = "/proc/meminfo";

    public static string PciClass(string pci) => $"{Device(pci)}/class";

    public static string SriovTotalVfs(string pfPci) => $"{Device(pfPci)}/sriov_totalvfs";

    public static string SriovNumVfs(string pfPci) => $"{Device(pfPci)}/sriov_numvfs";

    /// <summary>The PF's link to its VF <paramref name="index"/>.</summary>
    public static string VirtFn(string pfPci, int index) => $"{Device(pfPci)}/virtfn{index}";

    public static string DriverDir(string driver) => $"/sys/bus/pci/drivers/{driver}";

    public static string Unbind(string driver) => $"{DriverDir(driver)}/unbind";

    public static string Bind(string driver) => $"{DriverDir(driver)}/bind";

    /// <summary>A network device by name (a link into the device's <c>net/</c>).</summary>
    public static string Net(string netdev) => $"{NetClass}/{netdev}";

    /// <summary>Link from a netdev to its PCI function.</summary>
    public static string NetDeviceLink(string netdev) => $"{Net(netdev)}/device";

    public static string NetFlags(string netdev) => $"{Net(netdev)}/flags";

    public static string NetMtu(string netdev) => $"{Net(netdev)}/mtu";
    /// <summary>The link's speed in Mbit/s; -1 (or unreadable) while the link is down.</summary>
    public static string NetSpeed(string netdev) => $"{Net(netdev)}/speed";
    public static string NetIfIndex(string netdev) => $"{Net(netdev)}/ifindex";

    public static string NetOperState(string netdev) => $"{Net(netdev)}/operstate";

    public const string IommuGroups = "/sys/kernel/iommu_groups";

    public static string IommuGroup(string group) => $"{IommuGroups}/{group}";

    public static string IommuGroupDevices(int group) => $"{IommuGroups}/{group}/devices";

    /// <summary>A VF's link to its PF.</summary>
    public static string PhysFn(string pci) => $"{Device(pci)}/physfn";

    public static string Vendor(string pci) => $"{Device(pci)}/vendor";

    public const string DriversAutoprobe = "/sys/bus/pci/drivers_autoprobe";

    public static string Module(string module) => $"/sys/module/{module}";

    /// <summary>A process's <c>stat</c> (proc(5)); read on the machine itself, never under a simulated root.</summary>
    public static string ProcStat(int pid) => $"/proc/{pid}/stat";

    public static string ProcCmdlineOf(int pid) => $"/proc/{pid}/cmdline";

    /// <summary>The VFIO group node that appears once every device of the group is on vfio-pci.</summary>
    public static string VfioGroup(int group) => $"/dev/vfio/{group}";

    /// <summary>IFF_UP in a netdev's <c>flags</c> file ("0x1003").</summary>
    public static bool IsUp(string? flags) =>
        flags is not null && flags.StartsWith("0x", StringComparison.Ordinal)
        && int.TryParse(flags.AsSpan(2), System.Globalization.NumberStyles.HexNumber, null, out var v) && (v & 1) != 0;
}
