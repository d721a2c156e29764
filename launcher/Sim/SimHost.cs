using System.Globalization;

using VmNet.Host;

namespace VmNet.Sim;

/// <summary>Generates whole simulated hosts: NICs of a <see cref="NicShape"/> with VFs created and bound as the kernel would.</summary>
public static class SimHost
{
    /// <summary>
    /// Writes a host with <paramref name="pfs"/> ports of <paramref name="shape"/>, each with <paramref name="numVfs"/>
    /// VFs bound to the VF driver with their netdevs down. PFs are up with <paramref name="mtu"/>.
    /// </summary>
    public static SysfsTree Create(string dir, NicShape shape, int pfs, int numVfs, int mtu = 1500, bool iommu = true, SimTopology? topology = null)
    {
        var t = topology ?? new SimTopology();
        var tree = new SysfsTree(dir);
        tree.WriteBase(iommu: iommu);
        tree.Nodes(t.Nodes, t.CpusPerNode, t.MemGiBPerNode * 1024L * 1024L, t.Hugepages2M, t.Hugepages1G);
        var group = 20;
        for (var pf = 0; pf < pfs; pf++)
        {
            var pci = shape.PfPci(pf);
            tree.Device(pci, shape.Vendor, shape.PfDevice, group++, t.NicNode);
            tree.PcieLink(pci, shape.PcieSpeed, t.LinkWidth ?? shape.PcieWidth, shape.PcieSpeed, shape.PcieWidth);
            var dev = SysfsTree.DevicePath(pci);
            tree.Write($"{dev}/sriov_totalvfs", Num(shape.TotalVfs));
            tree.Write($"{dev}/sriov_offset", Num(shape.VfOffset(pf, shape.TotalVfs)));
            tree.Write($"{dev}/sriov_stride", Num(shape.VfStride));
            tree.Write($"{dev}/sriov_vf_device", shape.VfDevice[2..] + "\n");
            tree.Write($"{dev}/sriov_drivers_autoprobe", "1\n");
            tree.Bind(pci, shape.PfDriver, shape.PfName(pf), PfMac(pf), mtu, up: true);
            tree.Write($"{dev}/net/{shape.PfName(pf)}/speed", Num(shape.LinkMbps));
            SetNumVfs(tree, shape, pf, numVfs, ref group);
        }
        return tree;
    }

    /// <summary>Creates VFs 0..n-1 on PF <paramref name="pf"/> of a host <see cref="Create"/> generated.</summary>
    public static void SetNumVfs(SysfsTree tree, NicShape shape, int pf, int n, ref int nextGroup) =>
        CreateVfs(tree, shape, shape.PfPci(pf), n, vf => shape.VfName(pf, vf), ref nextGroup);

    /// <summary>
    /// Creates VFs 0..n-1 on a PF as writing <c>sriov_numvfs</c> does, in any tree laid out like the kernel's: each VF
    /// at the PF's routing ID + <c>sriov_offset</c> + <c>sriov_stride</c> x index, beside the PF (same parent
    /// directory), in an IOMMU group of its own, bound to the VF driver with its netdev down.
    /// </summary>
    public static void CreateVfs(SysfsTree tree, NicShape shape, string pfPci, int n, Func<int, string> vfName, ref int nextGroup)
    {
        var dev = tree.Dir(pfPci);
        var parent = dev[..dev.LastIndexOf('/')];
        var offset = ReadNum(tree, $"{dev}/sriov_offset");
        var stride = ReadNum(tree, $"{dev}/sriov_stride");
        var numa = File.Exists(Path.Join(tree.Root, dev, "numa_node")) ? ReadNum(tree, $"{dev}/numa_node") : 0;
        tree.Write($"{dev}/sriov_numvfs", Num(n));
        for (var vf = 0; vf < n; vf++)
        {
            var pci = VfPci(pfPci, offset, stride, vf);
            tree.Device(pci, shape.Vendor, shape.VfDevice, nextGroup++, numa, parent);
            tree.Link($"{parent}/{pci}/physfn", $"../{pfPci}");
            tree.Link($"{dev}/virtfn{vf}", $"../{pci}");
            tree.Bind(pci, shape.VfDriver, vfName(vf), "00:00:00:00:00:00");
        }
    }

    /// <summary>PF routing ID (bus << 8 | devfn) + offset + stride x vf, as the kernel's pci_iov_virtfn_bus/devfn compute it.</summary>
    public static string VfPci(string pfPci, int offset, int stride, int vf)
    {
        var bus = Convert.ToInt32(pfPci[5..7], 16);
        var devfn = (Convert.ToInt32(pfPci[8..10], 16) << 3) | (pfPci[11] - '0');
        var rid = (bus << 8) + devfn + offset + stride * vf;
        return $"{pfPci[..4]}:{rid >> 8:x2}:{(rid & 0xff) >> 3:x2}.{rid & 7}";
    }

    private static int ReadNum(SysfsTree tree, string hostPath) =>
        int.Parse(File.ReadAllText(Path.Join(tree.Root, hostPath)).Trim(), CultureInfo.InvariantCulture);

    /// <summary>
    /// The host shipped in <c>examples/hosts/connectx5</c>: seed 000's dual-port ConnectX-5 with 8 of 16 VFs per port,
    /// PFs at MTU 9000, and two VFs another user holds: PF0's VF 0 on vfio-pci (not VmNet's) and PF1's VF 1 up on the host.
    /// </summary>
    public static SysfsTree CreateExample(string dir)
    {
        var shape = NicShape.ConnectX5();
        var tree = Create(dir, shape, pfs: 2, numVfs: 8, mtu: 9000);
        var taken = shape.VfPci(0, 0);
        tree.Unbind(taken);
        tree.Write($"{tree.Dir(taken)}/driver_override", VirtualFunction.VfioDriver + "\n");
        tree.Bind(taken, VirtualFunction.VfioDriver);
        tree.SetUp(shape.VfPci(1, 1), shape.VfName(1, 1), up: true);
        return tree;
    }

    public static string PfMac(int pf) => $"b8:ce:f6:0a:{0x10 + pf:x2}:00";

    private static string Num(int n) => n.ToString(CultureInfo.InvariantCulture) + "\n";
}

/// <summary>
/// The shape of a simulated host around its NIC: NUMA nodes with their CPUs, memory and hugepages, the node the NIC
/// sits on, and the width its slot trained at (null: the card's own).
/// </summary>
public sealed record SimTopology(int Nodes = 1, int NicNode = 0, int CpusPerNode = 8, int MemGiBPerNode = 32, int Hugepages2M = 0, int Hugepages1G = 0, int? LinkWidth = null)
{
    /// <summary>Why this topology cannot be built, naming the option, or null.</summary>
    public string? Problem =>
        Nodes is < 1 or > 8 ? $"--numa-nodes must be 1..8, got {Nodes}"
        : NicNode < 0 || NicNode >= Nodes ? $"--nic-node must be 0..{Nodes - 1} on a host of {Nodes} node{(Nodes == 1 ? "" : "s")}, got {NicNode}"
        : CpusPerNode is < 1 or > 256 ? $"--cpus-per-node must be 1..256, got {CpusPerNode}"
        : MemGiBPerNode is < 1 or > 4096 ? $"--memory-per-node must be 1..4096 (GiB), got {MemGiBPerNode}"
        : Hugepages2M < 0 || Hugepages1G < 0 || Hugepages2M * 2L + Hugepages1G * 1024L > MemGiBPerNode * 1024L
            ? $"--hugepages-2m and --hugepages-1g must be >= 0 and fit in the node's {MemGiBPerNode} GiB, got {Hugepages2M} and {Hugepages1G}"
        : LinkWidth is < 1 or > 32 ? $"--link-width must be 1..32, got {LinkWidth}"
        : null;
}
