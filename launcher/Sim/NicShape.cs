using VmNet.Host;

namespace VmNet.Sim;

/// <summary>
/// What a NIC model looks like in sysfs: IDs, drivers, where its VFs land on the bus (SR-IOV offset and stride, as in
/// the PF's config space) and how udev names its netdevs.
/// </summary>
public sealed record NicShape(
    string Model,
    string Vendor,
    string PfDevice,
    string VfDevice,
    string PfDriver,
    string VfDriver,
    int TotalVfs,
    Func<int, string> PfPci,
    Func<int, string> PfName,
    Func<int, int, int> VfOffset,
    int VfStride,
    Func<int, int, string> VfName)
{
    /// <summary>The link the card is built for ("8.0 GT/s PCIe", 16): what sysfs shows as max_link_speed/width.</summary>
    public string PcieSpeed { get; init; } = "8.0 GT/s PCIe";

    public int PcieWidth { get; init; } = 16;

    /// <summary>Each port's Ethernet speed in Mbit/s (<c>/sys/class/net/PF/speed</c> with the link up).</summary>
    public int LinkMbps { get; init; } = 100000;

    /// <summary>
    /// A dual-port ConnectX-5 (mlx5_core) on bus 03 as in seed 000: PF0 0000:03:00.0 (enp3s0f0np0), PF1 0000:03:00.1
    /// (enp3s0f1np1). With ARI the VFs follow the PFs: PF0's from 03:00.2, PF1's after PF0's last possible VF
    /// (03:02.2 with 16 VFs per port, as the seed's 03:02.3 for PF1's VF 1 shows).
    /// </summary>
    public static NicShape ConnectX5(int totalVfs = 16) => new(
        Model: "ConnectX-5",
        Vendor: "0x15b3",
        PfDevice: "0x1017",
        VfDevice: "0x1018",
        PfDriver: "mlx5_core",
        VfDriver: "mlx5_core",
        TotalVfs: totalVfs,
        PfPci: pf => $"0000:03:00.{pf}",
        PfName: pf => $"enp3s0f{pf}np{pf}",
        VfOffset: (pf, total) => 2 + pf * (total - 1),
        VfStride: 1,
        VfName: (pf, vf) => $"enp3s0f{pf}v{vf}");

    /// <summary>
    /// Intel 82576 (igb) as QEMU emulates it: one PF per PCIe root port (buses 01, 02, ...), 7 VFs per port at
    /// offset 0x80, stride 2 (01:10.0, 01:10.2, ...), VF driver igbvf.
    /// </summary>
    public static NicShape Igb() => new(
        Model: "82576",
        Vendor: "0x8086",
        PfDevice: "0x10c9",
        VfDevice: "0x10ca",
        PfDriver: "igb",
        VfDriver: "igbvf",
        TotalVfs: 7,
        PfPci: pf => $"0000:{pf + 1:x2}:00.0",
        PfName: pf => $"enp{pf + 1}s0",
        VfOffset: (_, _) => 0x80,
        VfStride: 2,
        VfName: (pf, vf) => vf * 2 % 8 == 0 ? $"enp{pf + 1}s{16 + vf / 4}" : $"enp{pf + 1}s{16 + vf / 4}f{vf * 2 % 8}")
    {
        PcieSpeed = "2.5 GT/s PCIe",
        PcieWidth = 4,
        LinkMbps = 1000,
    };

    /// <summary>The PCI address of VF <paramref name="vf"/> of PF <paramref name="pf"/>: PF routing ID + offset + stride * vf.</summary>
    public string VfPci(int pf, int vf) => SimHost.VfPci(PfPci(pf), VfOffset(pf, TotalVfs), VfStride, vf);
}
