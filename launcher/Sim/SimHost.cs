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
    public static SysfsTree Create(string dir, NicShape shape, int pfs, int numVfs, int mtu = 1500, bool iommu = true)
    {
        var tree = new SysfsTree(dir);
        tree.WriteBase(iommu: iommu);
        var group = 20;
        for (var pf = 0; pf < pfs; pf++)
        {
            var pci = shape.PfPci(pf);
            tree.Device(pci, shape.Vendor, shape.PfDevice, group++);
            var dev = SysfsTree.DevicePath(pci);
            tree.Write($"{dev}/sriov_totalvfs", Num(shape.TotalVfs));
            tree.Write($"{dev}/sriov_offset", Num(shape.VfOffset(pf, shape.TotalVfs)));
            tree.Write($"{dev}/sriov_stride", Num(shape.VfStride));
            tree.Write($"{dev}/sriov_vf_device", shape.VfDevice[2..] + "\n");
            tree.Write($"{dev}/sriov_drivers_autoprobe", "1\n");
            tree.Bind(pci, shape.PfDriver, shape.PfName(pf), PfMac(pf), mtu, up: true);
            SetNumVfs(tree, shape, pf, numVfs, ref group);
        }
        return tree;
    }

    /// <summary>Creates VFs 0..n-1 on a PF as writing <c>sriov_numvfs</c> does: devices, links, VF driver bound.</summary>
    public static void SetNumVfs(SysfsTree tree, NicShape shape, int pf, int n, ref int nextGroup)
    {
        var pfPci = shape.PfPci(pf);
        var dev = SysfsTree.DevicePath(pfPci);
        tree.Write($"{dev}/sriov_numvfs", Num(n));
        for (var vf = 0; vf < n; vf++)
        {
            var pci = shape.VfPci(pf, vf);
            tree.Device(pci, shape.Vendor, shape.VfDevice, nextGroup++);
            tree.Link($"{SysfsTree.DevicePath(pci)}/physfn", $"../{pfPci}");
            tree.Link($"{dev}/virtfn{vf}", $"../{pci}");
            tree.Bind(pci, shape.VfDriver, shape.VfName(pf, vf), "00:00:00:00:00:00");
        }
    }

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
        tree.Write($"{SysfsTree.DevicePath(taken)}/driver_override", VirtualFunction.VfioDriver + "\n");
        tree.Bind(taken, VirtualFunction.VfioDriver);
        tree.SetUp(shape.VfPci(1, 1), shape.VfName(1, 1), up: true);
        return tree;
    }

    public static string PfMac(int pf) => $"b8:ce:f6:0a:{0x10 + pf:x2}:00";

    private static string Num(int n) => n.ToString(CultureInfo.InvariantCulture) + "\n";
}
