using VmNet.Host;
using VmNet.Kernel;
using VmNet.Leases;
using VmNet.Rendering;
using VmNet.Spec;
using VmNet.State;

namespace VmNet.Planning;

/// <summary>
/// Makes a <see cref="LaunchPlan"/>: a pure function of the spec, the host facts, the leases and the launch options
/// (with the templates as data). It reads, never writes. For each network it takes one VF on each port: the VF this VM
/// already leases there, else the lowest-numbered VF that is bound to its host driver, has its netdev down and is
/// leased by no one. Then come the VFs' host steps (<see cref="VfSteps"/>), the backend's steps and the artifacts.
/// </summary>
public static class Planner
{
    public static LaunchPlan Make(VmSpec spec, IHostFacts host, ILeaseView leases, StateDir state) =>
        Make(spec, host, leases, state, new LaunchOptions(), new Templates());

    /// <param name="running">The VM as it runs now, when it does (its drift is part of the plan); null for a VM not running.</param>
    public static LaunchPlan Make(VmSpec spec, IHostFacts host, ILeaseView leases, StateDir state, LaunchOptions options, Templates templates, RunningVm? running = null)
    {
        var problems = new List<string>();
        var inputProblems = new List<string>();
        var own = leases.OfVm(spec.Name).ToDictionary(l => (l.Network, l.Port));
        var chosen = new HashSet<string>(StringComparer.Ordinal);
        var macsInPlan = new HashSet<string>(spec.Networks.SelectMany(n => n.Macs ?? []), StringComparer.OrdinalIgnoreCase);
        var vfs = new List<VfClaim>();
        var pfs = new Dictionary<string, PhysicalFunction?>(StringComparer.Ordinal);
        var leasedOfPf = new Dictionary<string, IReadOnlySet<int>>(StringComparer.Ordinal);

        for (var ni = 0; ni < spec.Networks.Count; ni++)
        {
            var network = spec.Networks[ni];
            var pfsOfNetwork = new Dictionary<string, int>(StringComparer.Ordinal);
            for (var port = 0; port < network.Ports.Count; port++)
            {
                var field = $"networks[{ni}].ports[{port}]";
                var portName = network.Ports[port];
                if (!pfs.TryGetValue(portName, out var pf)) pfs[portName] = pf = host.FindPort(portName); // each PF read once per plan
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
                    problems.Add($"{field}: no free VF on {pf.Name}: {WhyNoneFree(pf, host, leases, chosen)}; "
                        + $"free one with `vmnet rm` / `vmnet gc`, or raise sriov_numvfs (at most {pf.TotalVfs}) with `vmnet host apply`");
                    continue;
                }
                chosen.Add(assignment.Vf.Pci);
                macsInPlan.Add(assignment.Mac);
                vfs.Add(assignment);
            }
        }

        problems.AddRange(Oversubscribed(spec, vfs, host, leases));
        if (inputProblems.Count > 0)
            throw new VmNetException(string.Join("\n", inputProblems.Concat(problems)), ExitCodes.InvalidInput);
        if (problems.Count > 0)
            throw new HostException(string.Join("\n", problems));

        // A VM running on hugepages of the size asked for holds its pages: they are not free, and need not be.
        var hugepagesInUse = spec.Placement.HugepageKiB > 0 && running?.Record?.Spec.GetValueOrDefault("placement.hugepages") == spec.Placement.Hugepages;
        var placement = PlacementPlanner.Plan(spec, vfs, host.Numa(), leases, hugepagesInUse);

        var paths = VmPaths.For(state, spec.Name);
        var backend = options.Backend ?? spec.Backend;
        var steps = new List<Step>(vfs.SelectMany(a => VfSteps.Configure(a.Ref, a.Vf, a.Settings)));
        steps.AddRange(LaunchSteps(spec, backend, options, paths, running is not null));
        var artifacts = Renderer.Render(RenderInput(spec, vfs, paths, placement), templates);
        // The leases follow the libvirt domain by the UUID planned here: a domain.xml (a --templates override) that
        // names no UUID, or another one, would make libvirt's domain look gone to `vmnet gc` while it runs.
        var uuid = Renderer.Uuid(spec.Name);
        if (backend == Backend.Libvirt && !artifacts.DomainXml.Contains($"<uuid>{uuid}</uuid>", StringComparison.Ordinal))
            throw new VmNetException($"the rendered domain.xml must carry <uuid>{uuid}</uuid> (`<uuid>{{{{ vm.uuid }}}}</uuid>` in domain.xml.sbn): " +
                "the leases follow the domain by it; restore that line in the template given with --templates", ExitCodes.InvalidInput);
        return new LaunchPlan(spec, backend, options, vfs, steps, artifacts, paths)
        {
            Placement = placement,
            Running = running,
            Drift = running?.Record is { } record ? Drift.Compare(record, spec) : [],
        };
    }

    /// <summary>
    /// The backend's part: seed and overlay, define, the hand-over of the leases, start, and the wait for the agent.
    /// The leases pass to what holds the VM from then on: a libvirt domain (by its UUID) once defined; the definition
    /// itself for the QEMU backend, for <c>--no-start</c>, and on libvirt's test driver, whose domains end with the
    /// process that made them.
    /// </summary>
    private static IEnumerable<Step> LaunchSteps(VmSpec spec, Backend backend, LaunchOptions options, VmPaths paths, bool running)
    {
        var vm = spec.Name;
        if (!options.Start)
        {
            yield return new HandOverLeases(vm, new DefinitionOwner(), Phase.Bind);
            yield break;
        }
        yield return new WriteSeed(paths.Seed, paths.AgentConfig, options.Agent);
        yield return new CreateOverlay(spec.Disk.Image, paths.Disk, spec.Disk.SizeMiB);
        var libvirt = backend == Backend.Libvirt;
        // Before the define: a vmnet killed in between leaves leases held by a domain that does not exist (gone: `vmnet
        // gc` gives them back) or that does (held), never a defined domain over VFs nobody holds.
        yield return new HandOverLeases(vm, libvirt && !options.IsLibvirtTestDriver
            ? new LibvirtDomainOwner(Guid.Parse(Renderer.Uuid(vm)), options.LibvirtUri)
            : new DefinitionOwner(), Phase.Define);
        yield return new DefineVm(vm, backend, libvirt ? options.LibvirtUri : "qemu-system-x86_64", spec.Autostart);
        yield return new StartVm(vm, backend, paths.PidFile, options.StartTimeout);
        if (!libvirt) yield return new HandOverToProcess(vm);
        var skipped =
            options.Agent is null ? "no guest agent to ship (put vmnet-agent next to vmnet, or set VMNET_AGENT); the bonds come from cloud-init alone"
            : !options.Wait ? $"--no-wait; `vmnet status {vm}` shows the agent's report when it comes"
            : running ? $"{vm} was running already (its guest reported when it booted); `vmnet status {vm}` shows the agent's last report"
            : libvirt && options.IsLibvirtTestDriver ? $"libvirt's test driver ({options.LibvirtUri}) runs no guest"
            : null;
        yield return new WaitForAgent(paths.AgentSocket, options.WaitTimeout, skipped);
    }

    /// <summary>The flat model the templates are rendered from.</summary>
    public static RenderInput RenderInput(VmSpec spec, IReadOnlyList<VfClaim> vfs, VmPaths paths, Placement? placement = null) =>
        new(spec, vfs.Select(a => new RenderedVf(a.NetworkIndex, a.GuestName, a.Mac, a.Vf.Pci, a.PortName, a.Pf.Name, a.Pf.Pci, a.Vf.Index)).ToList(), paths)
        {
            Placement = placement is { } p ? new RenderedPlacement(p.Node, p.VcpuCpus, p.EmulatorCpu, p.SharedCpus, p.HugepageKiB, p.HugetlbfsMount) : RenderedPlacement.None,
        };

    private static VfClaim? Choose(VmSpec spec, int ni, NetworkSpec network, int port, string portName,
        PhysicalFunction pf, IHostFacts host, ILeaseView leases, Dictionary<(string, int), Lease> own,
        HashSet<string> chosen, HashSet<string> macsInPlan, Dictionary<string, IReadOnlySet<int>> leasedOfPf)
    {
        if (own.TryGetValue((network.Name, port), out var mine) && mine.PfPci == pf.Pci && !chosen.Contains(mine.Pci))
        {
            var vf = host.ReadVf(mine.Vf, mine.Pci);
            var mac = network.Macs?[port] ?? mine.Mac;
            return new VfClaim(ni, network, port, portName, pf, vf, mac, network.Macs is null, AlreadyLeased: true, Settings(network, mac));
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
            return new VfClaim(ni, network, port, portName, pf, vf, mac, explicitMac is null, AlreadyLeased: false, Settings(network, mac));
        }
        return null;
    }

    /// <summary>
    /// Capacity (seed 003): the bandwidth the PF guarantees its VFs (<c>min_tx_rate</c>) must fit its link. For each PF
    /// where the plan asks a guarantee: what the other VMs' leases guarantee there plus the plan's, against the link's
    /// speed; a PF whose speed is unknown (link down) is not judged. Read only for a plan that asks a guarantee.
    /// </summary>
    private static IEnumerable<string> Oversubscribed(VmSpec spec, IReadOnlyList<VfClaim> vfs, IHostFacts host, ILeaseView leases)
    {
        foreach (var onPf in vfs.Where(v => v.Network.Rates?.MinMbps > 0).GroupBy(v => v.Pf.Pci))
        {
            var pf = onPf.First().Pf;
            if (pf.SpeedMbps is not { } speed) continue;
            var mine = onPf.Sum(v => (long)v.Network.Rates!.Value.MinMbps);
            var others = new Dictionary<string, long>(StringComparer.Ordinal);
            foreach (var i in leases.LeasedVfIndices(pf.Pci))
            {
                if (host.VfPci(pf, i) is not { } pci || leases.Find(pci) is not { } lease || lease.Vm == spec.Name) continue;
                if (lease.Applied.Rates is { MinMbps: > 0 } r) others[lease.Vm] = others.GetValueOrDefault(lease.Vm) + r.MinMbps;
            }
            var total = mine + others.Values.Sum();
            if (total <= speed) continue;
            var held = others.Count == 0 ? "" : $"; {others.Values.Sum()} of it guaranteed to {string.Join(", ", others.OrderBy(o => o.Key, StringComparer.Ordinal).Select(o => $"{o.Key} ({o.Value})"))}";
            var field = string.Join(", ", onPf.Select(v => $"networks[{v.NetworkIndex}].minTxRate").Distinct());
            yield return $"{field}: {mine} Mbit/s guaranteed on {pf.Name} would make {total} of its {speed} Mbit/s link{held}; "
                + "lower minTxRate, give the VM another port, or free a VM's VFs there (`vmnet host` shows each PF's guarantees)";
        }
    }

    /// <summary>
    /// Why no VF of <paramref name="pf"/> was free: "all 4 VFs are leased, bound to vfio-pci or up" when that covers it,
    /// else each VF's reason (a shared IOMMU group is worth naming: nothing on the host shows it otherwise).
    /// </summary>
    private static string WhyNoneFree(PhysicalFunction pf, IHostFacts host, ILeaseView leases, HashSet<string> chosen)
    {
        if (pf.NumVfs == 0) return "it has no VFs";
        var reasons = new List<string>();
        var shared = false;
        for (var i = 0; i < pf.NumVfs && reasons.Count < 16; i++)
        {
            var pci = host.VfPci(pf, i);
            if (pci is null) continue;
            var vf = host.ReadVf(i, pci);
            shared |= vf.GroupPeer is not null;
            reasons.Add($"vf {i} " + (chosen.Contains(pci) ? "taken by this spec" : leases.IsLeased(pci) ? "leased" : vf.BusyReason ?? "free"));
        }
        return shared ? string.Join(", ", reasons) : $"all {pf.NumVfs} VFs are leased, bound to vfio-pci or up";
    }

    /// <summary>
    /// What the spec asks of a VF of <paramref name="network"/>: its VLAN (untagged without one), trust, MAC, spoof
    /// checking, rates (only when the spec sets one) and link state.
    /// </summary>
    public static VfSettings Settings(NetworkSpec network, string mac) => new()
    {
        Vlan = network.Vlan ?? VlanTag.Untagged,
        Trust = network.Trust,
        Mac = mac,
        SpoofCheck = network.SpoofCheck,
        Rates = network.Rates,
        LinkState = network.LinkState,
    };
}
