using VmNet.Host;
using VmNet.Kernel;
using VmNet.Leases;
using VmNet.Rendering;
using VmNet.Spec;
using VmNet.State;

namespace VmNet.Planning;

/// <summary>One VF chosen for one port of one network, with every setting it gets.</summary>
public sealed record VfClaim(
    int NetworkIndex,
    NetworkSpec Network,
    int Port,
    string PortName,
    PhysicalFunction Pf,
    VirtualFunction Vf,
    string Mac,
    bool MacGenerated,
    bool AlreadyLeased,
    VfSettings Settings)
{
    /// <summary>The member's stable name in the guest (e.g. storage0).</summary>
    public string GuestName => Network.MemberName(Port);

    public VfRef Ref => new(Pf.Name, Pf.Pci, Vf.Index, Vf.Pci);

    /// <summary>The lease this claim takes (its owner and original state are the ledger's to fill).</summary>
    public Lease LeaseFor(string vm) =>
        new(Lease.CurrentVersion, vm, Network.Name, Port, Pf.Name, Pf.Pci, Vf.Index, Vf.Pci, Mac, Settings, HostNetwork: Network.HostNetwork);
}

/// <summary>What <c>vmnet up</c> is asked to do beyond the spec: which backend, whether to start and wait, what to ship.</summary>
public sealed record LaunchOptions
{
    /// <summary><c>--backend</c>: overrides the spec's backend.</summary>
    public Backend? Backend { get; init; }

    /// <summary>The libvirt URI (already resolved: option, environment, default).</summary>
    public string LibvirtUri { get; init; } = DefaultLibvirtUri;

    /// <summary>False with <c>--no-start</c>: reserve, configure and bind only.</summary>
    public bool Start { get; init; } = true;

    /// <summary>False with <c>--no-wait</c>.</summary>
    public bool Wait { get; init; } = true;

    public TimeSpan StartTimeout { get; init; } = TimeSpan.FromSeconds(60);
    public TimeSpan WaitTimeout { get; init; } = TimeSpan.FromSeconds(300);

    /// <summary>The guest agent binary shipped on the seed, or null when there is none.</summary>
    public string? Agent { get; init; }

    public const string DefaultLibvirtUri = "qemu:///system";

    /// <summary>libvirt's test driver: it runs no guest, and its domains end with the process that made them.</summary>
    public bool IsLibvirtTestDriver => LibvirtUri.StartsWith("test:", StringComparison.Ordinal);
}

/// <summary>
/// The whole launch, made by <see cref="Planner"/> without touching the host: the VFs claimed with their settings, every
/// step in order (host changes, then the backend's), and the artifacts rendered for them. The executor applies it;
/// <c>--dry-run</c> prints it.
/// </summary>
public sealed record LaunchPlan(
    VmSpec Vm,
    Backend Backend,
    LaunchOptions Options,
    IReadOnlyList<VfClaim> Vfs,
    IReadOnlyList<Step> Steps,
    Artifacts Artifacts,
    VmPaths Paths)
{
    /// <summary>Where the VM runs on the host: NUMA node, pinned CPUs, hugepages.</summary>
    public Placement Placement { get; init; } = Placement.None;

    /// <summary>The CPU leases the plan takes (dedicated pinning).</summary>
    public IReadOnlyList<CpuLease> CpuLeases => Placement.Leases(Vm.Name);

    /// <summary>The VM as it ran when the plan was made, or null when it did not run.</summary>
    public RunningVm? Running { get; init; }

    /// <summary>How the spec differs from what the running VM was launched with (empty for a VM not running).</summary>
    public IReadOnlyList<SpecChange> Drift { get; init; } = [];

    /// <summary>The changes of <see cref="Drift"/> that take a restart.</summary>
    public IEnumerable<SpecChange> NeedRestart => Drift.Where(c => !c.Live);

    /// <summary>The leases the plan takes.</summary>
    public IEnumerable<Lease> Leases => Vfs.Select(v => v.LeaseFor(Vm.Name));

    /// <summary>Where the VM runs: the libvirt connection's URI, or qemu-system-x86_64 for the QEMU backend.</summary>
    public string RunsOn => Backend == Backend.Libvirt ? Options.LibvirtUri : "qemu-system-x86_64";

    /// <summary>What a later vmnet command needs to find this VM again: <c> --connect URI</c> for a libvirt connection
    /// other than the default, else nothing.</summary>
    public string ConnectArgument =>
        Backend == Backend.Libvirt && Options.LibvirtUri != LaunchOptions.DefaultLibvirtUri ? $" --connect {Options.LibvirtUri}" : "";
}
