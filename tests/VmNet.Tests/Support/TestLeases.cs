using VmNet.Kernel;
using VmNet.Leases;
using VmNet.Spec;

namespace VmNet.Tests.Support;

/// <summary>Leases as other VMs hold them, for tests that need a ledger with something in it.</summary>
public static class TestLeases
{
    /// <summary>A lease of VF <paramref name="vf"/> with the MAC and VLAN it was given; no owner, nothing recorded yet.</summary>
    public static Lease Of(string vm, string network, int port, string pf, string pfPci, int vf, string pci, string mac, int? vlan) =>
        new(Lease.CurrentVersion, vm, network, port, pf, pfPci, vf, pci, mac,
            new VfSettings { Mac = mac, Vlan = vlan is { } v ? new VlanTag(v) : VlanTag.Untagged });
}
