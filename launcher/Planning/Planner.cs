using System.Globalization;
using VmNet.Host;
using VmNet.Leases;
using VmNet.Spec;

namespace VmNet.Planning;

/// <summary>
/// Makes a <see cref="Plan"/>: a pure function of the spec, the host facts and the leases. It reads, never writes.
/// For each network it takes one VF on each port: the VF this VM already leases there, else the lowest-numbered VF that
/// is bound to its host driver, has its netdev down and is leased by no one.
/// </summary>
public static class Planner
{
    public const int VfioWaitMs = 10_000;

    public static Plan Make(VmSpec spec, IHostFacts host, ILeaseView leases, StateDir state)
    {
        var problems = new List<string>();
        var inputProblems = new List<string>();
        var own = leases.OfVm(spec.Name).ToDictionary(l => (l.Network, l.Port));
        var chosen = new HashSet<string>(StringComparer.Ordinal);
        var macsInPlan = new HashSet<string>(spec.Networks.SelectMany(n => n.Macs ?? []), StringComparer.OrdinalIgnoreCase);
        var vfs = new List<VfAssignment>();
        var leasedOfPf = new Dictionary<string, IReadOnlySet<int>>(StringComparer.Ordinal);

        for (var ni = 0; ni < spec.Networks.Count; ni++)
        {
            var network = spec.Networks[ni];
            var pfsOfNetwork = new Dictionary<string, int>(StringComparer.Ordinal);
            for (var port = 0; port < network.Ports.Count; port++)
            {
                var field = $"networks[{ni}].ports[{port}]";
                var portName = network.Ports[port];
                var pf = host.FindPort(portName);
                if (pf is null)
                {
                    problems.Add($"{field}: no network device or PCI function \"{portName}\" on this host; list the SR-IOV ports with `vmnet host`");
                    continue;
                }
                if (pf.TotalVfs == 0)
                {
                    problems.Add($"{field}: {pf.Name} ({pf.Pci}) has no SR-IOV capability (no sriov_totalvfs); pick a port of an SR-IOV NIC, or enable SR-IOV in the firmware (mlx5: mstconfig set SRIOV_EN=1 NUM_OF_VFS=N)");
                    continue;
                }
                if (pf.NumVfs == 0)
                {
                    problems.Add($"{field}: SR-IOV is not enabled on {pf.Name} (sriov_numvfs is 0 of {pf.TotalVfs}); create VFs with `vmnet host apply` or `echo N > /sys/class/net/{pf.Name}/device/sriov_numvfs`");
                    continue;
                }
                if (pfsOfNetwork.TryGetValue(pf.Pci, out var other))
                {
                    inputProblems.Add($"{field}: \"{portName}\" is the same PF ({pf.Pci}) as networks[{ni}].ports[{other}]; each VF of a bond must come from a different PF");
                    continue;
                }
                pfsOfNetwork[pf.Pci] = port;
                if (network.Mtu is { } mtu && pf.Mtu > 0 && mtu > pf.Mtu)
                    problems.Add($"networks[{ni}].mtu: {mtu} exceeds the MTU {pf.Mtu} of {pf.Name}; raise it (`ip link set dev {pf.Name} mtu {mtu}`) or lower networks[{ni}].mtu");

                var assignment = Choose(spec, ni, network, port, portName, pf, host, leases, own, chosen, macsInPlan, leasedOfPf);
                if (assignment is null)
                {
                    problems.Add($"{field}: no free VF on {pf.Name}: all {pf.NumVfs} VFs are leased, bound to vfio-pci or up; "
                        + $"free one with `vmnet rm` / `vmnet gc`, or raise sriov_numvfs (at most {pf.TotalVfs}) with `vmnet host apply`");
                    continue;
                }
                chosen.Add(assignment.Vf.Pci);
                macsInPlan.Add(assignment.Mac);
                vfs.Add(assignment);
            }
        }

        if (inputProblems.Count > 0)
            throw new VmNetException(string.Join("\n", inputProblems.Concat(problems)), ExitCodes.InvalidInput);
        if (problems.Count > 0)
            throw new HostException(string.Join("\n", problems));

        var steps = vfs.SelectMany(StepsFor).ToList();
        return new Plan(spec, vfs, steps, VmPaths.For(state, spec.Name));
    }

    private static VfAssignment? Choose(VmSpec spec, int ni, NetworkSpec network, int port, string portName,
        PhysicalFunction pf, IHostFacts host, ILeaseView leases, Dictionary<(string, int), Lease> own,
        HashSet<string> chosen, HashSet<string> macsInPlan, Dictionary<string, IReadOnlySet<int>> leasedOfPf)
    {
        if (own.TryGetValue((network.Name, port), out var mine) && mine.PfPci == pf.Pci && !chosen.Contains(mine.Pci))
        {
            var vf = host.ReadVf(mine.Vf, mine.Pci);
            var mac = network.Macs?[port] ?? mine.Mac;
            return new VfAssignment(ni, network, port, portName, pf, vf, mac, network.Macs is null, AlreadyLeased: true);
        }
        if (!leasedOfPf.TryGetValue(pf.Pci, out var leasedHere)) leasedOfPf[pf.Pci] = leasedHere = leases.LeasedVfIndices(pf.Pci);
        for (var i = 0; i < pf.NumVfs; i++)
        {
            if (leasedHere.Contains(i)) continue;
            var pci = host.VfPci(pf, i);
            if (pci is null || chosen.Contains(pci) || leases.IsLeased(pci)) continue;
            var vf = host.ReadVf(i, pci);
            if (vf.BusyReason is not null) continue;
            var explicitMac = network.Macs?[port];
            var mac = explicitMac ?? Mac.Generate(spec.Name, network.Name, port,
                m => macsInPlan.Contains(m) || (leases.MacOwner(m) is { } owner && owner != spec.Name));
            return new VfAssignment(ni, network, port, portName, pf, vf, mac, explicitMac is null, AlreadyLeased: false);
        }
        return null;
    }

    /// <summary>
    /// The host changes for one VF, in the order that works on mlx5, igb and ice (Incus, sriov-cni): record, unbind,
    /// VLAN, trust, MAC, spoof checking, rates, link state, then vfio-pci through driver_override and a probe.
    /// </summary>
    public static IEnumerable<HostStep> StepsFor(VfAssignment a)
    {
        var pci = a.Vf.Pci;
        var n = a.Network;
        var pf = a.Pf.Name;
        var vf = a.Vf.Index;
        yield return new RecordState(pci, pf, vf);
        var onVfio = a.Vf.Driver == VirtualFunction.VfioDriver;
        if (a.Vf.Driver is { } driver && !onVfio)
            yield return new SysfsWrite(pci, $"/sys/bus/pci/drivers/{driver}/unbind", pci);
        yield return new IpLinkVf(pci, pf, vf, n.Vlan is { } vlan
            ? ["vlan", Num(vlan), "qos", Num(n.Qos), "proto", SpecNames.Of(n.VlanProtocol)]
            : ["vlan", "0"]);
        yield return new IpLinkVf(pci, pf, vf, ["trust", n.Trust ? "on" : "off"]);
        yield return new IpLinkVf(pci, pf, vf, ["mac", a.Mac]);
        yield return new IpLinkVf(pci, pf, vf, ["spoofchk", n.SpoofCheck ? "on" : "off"]);
        if (n.MaxTxRate is not null || n.MinTxRate is not null)
            yield return new IpLinkVf(pci, pf, vf, ["max_tx_rate", Num(n.MaxTxRate ?? 0), "min_tx_rate", Num(n.MinTxRate ?? 0)]);
        yield return new IpLinkVf(pci, pf, vf, ["state", SpecNames.Of(n.LinkState)]);
        if (!onVfio)
        {
            yield return new SysfsWrite(pci, $"/sys/bus/pci/devices/{pci}/driver_override", VirtualFunction.VfioDriver);
            yield return new SysfsWrite(pci, "/sys/bus/pci/drivers_probe", pci);
        }
        if (a.Vf.IommuGroup is { } group)
            yield return new WaitForPath(pci, $"/dev/vfio/{group}", VfioWaitMs);
    }

    private static string Num(int n) => n.ToString(CultureInfo.InvariantCulture);
}
