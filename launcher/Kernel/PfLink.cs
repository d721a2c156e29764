namespace VmNet.Kernel;

/// <summary>One VF as its PF reports it (IFLA_VF_INFO; <c>vfinfo_list</c> in <c>ip -j link show</c>): its index and settings.</summary>
public sealed record VfLink(int Vf, VfSettings Settings);

/// <summary>A PF as <c>ip link show dev PF</c> reports it: name, up, MTU, MAC and its VFs.</summary>
public sealed record PfLink(string Name, bool Up, int Mtu, string Mac, IReadOnlyList<VfLink> Vfs)
{
    public VfLink? Vf(int index) => Vfs.FirstOrDefault(v => v.Vf == index);
}
