using System.Globalization;
using VmNet.Host;
using VmNet.Kernel;
using VmNet.Leases;
using VmNet.Spec;

namespace VmNet.Planning;

/// <summary>The phases of <c>vmnet up</c>, in order; progress shows them as "[i/7] phase: ...".</summary>
public enum Phase { Reserve, Configure, Bind, Seed, Define, Start, WaitForGuest }

public static class Phases
{
    public static readonly IReadOnlyList<Phase> All = Enum.GetValues<Phase>();

    public static string Name(Phase p) => p switch
    {
        Phase.Reserve => "reserve",
        Phase.Configure => "configure",
        Phase.Bind => "bind",
        Phase.Seed => "seed",
        Phase.Define => "define",
        Phase.Start => "start",
        _ => "wait for guest",
    };
}

/// <summary>
/// One change the executor makes, as a typed value. <see cref="Describe"/> says it in the words an operator knows (the
/// sysfs write, the ip command, the libvirt call). A step is <see cref="Transactional"/> unless it only waits: a failure
/// at a transactional step rolls back every step before it.
/// </summary>
public abstract record Step
{
    public abstract Phase Phase { get; }

    public abstract string Describe();

    public virtual bool Transactional => true;
}

/// <summary>A VF, named by its PF's netdev, the PF's PCI address, its index and its own PCI address.</summary>
public sealed record VfRef(string Pf, string PfPci, int Index, string Pci)
{
    public override string ToString() => $"VF {Index.ToString(CultureInfo.InvariantCulture)} of {Pf} ({Pci})";
}

/// <summary>A change to one VF.</summary>
public abstract record VfStep(VfRef Vf) : Step;

/// <summary>Reads and keeps the VF's settings and driver, so rollback and teardown can give it back as found.</summary>
public sealed record RecordVf(VfRef Vf) : VfStep(Vf)
{
    public override Phase Phase => Phase.Configure;
    public override string Describe() =>
        $"# record VF {Vf.Index.ToString(CultureInfo.InvariantCulture)} of {Vf.Pf} ({Vf.Pci}): MAC, VLAN, qos, proto, spoofchk, trust, link-state, rates, driver";
}

/// <summary>Unbinds the VF from <see cref="Driver"/>.</summary>
public sealed record UnbindVf(VfRef Vf, string Driver, Phase In = Phase.Configure) : VfStep(Vf)
{
    public override Phase Phase => In;
    public override string Describe() => $"echo {Vf.Pci} > {Sysfs.Unbind(Driver)}";
}

/// <summary><c>ip link set dev PF vf N ...</c>: the VF settings <see cref="Settings"/> sets, through the PF, read back after.</summary>
public sealed record SetVf(VfRef Vf, VfSettings Settings) : VfStep(Vf)
{
    public override Phase Phase => Phase.Configure;
    public override string Describe() => $"ip link set dev {Vf.Pf} vf {Vf.Index.ToString(CultureInfo.InvariantCulture)} {Settings}";
}

/// <summary>Sets the VF's <c>driver_override</c> (null clears it), so the next probe binds that driver and no other.</summary>
public sealed record OverrideDriver(VfRef Vf, string? Driver, Phase In = Phase.Bind) : VfStep(Vf)
{
    public override Phase Phase => In;
    public override string Describe() => $"echo {Driver ?? "\"\""} > {Sysfs.DriverOverride(Vf.Pci)}";
}

/// <summary>Asks the kernel to bind the VF (<c>drivers_probe</c>) and waits until <see cref="Driver"/> holds it (and its netdev, with <see cref="WaitForNetdev"/>).</summary>
public sealed record ProbeVf(VfRef Vf, string Driver, bool WaitForNetdev = false, Phase In = Phase.Bind) : VfStep(Vf)
{
    public override Phase Phase => In;
    public override string Describe() => $"echo {Vf.Pci} > {Sysfs.DriversProbe}";
}

/// <summary>Waits until the VF's VFIO group node exists.</summary>
public sealed record WaitForVfio(VfRef Vf, int Group, int TimeoutMs) : VfStep(Vf)
{
    public override Phase Phase => Phase.Bind;
    public string Path => Sysfs.VfioGroup(Group);
    public override string Describe() => FormattableString.Invariant($"# wait up to {TimeoutMs / 1000.0:0.#} s for {Path}");
}

/// <summary>Sets a PF's VF count (<c>sriov_numvfs</c>): the kernel takes 0 or N from 0, never N from M.</summary>
public sealed record SetNumVfs(string Pf, string PfPci, int Count) : Step
{
    public override Phase Phase => Phase.Configure;
    public override string Describe() => $"echo {Count.ToString(CultureInfo.InvariantCulture)} > {Sysfs.SriovNumVfs(PfPci)}";
}

/// <summary>Creates the VM's copy-on-write disk over the base image (and grows it), unless it exists.</summary>
public sealed record CreateOverlay(string BaseImage, string Disk, long? SizeMiB) : Step
{
    public override Phase Phase => Phase.Seed;
    public override string Describe() =>
        $"qemu-img create -f qcow2 -b {BaseImage} -F qcow2 {Disk}{(SizeMiB is { } s ? FormattableString.Invariant($" {s}M") : "")}";
}

/// <summary>Writes the NoCloud seed (with the agent binary, when there is one) and the agent's fw_cfg config.</summary>
public sealed record WriteSeed(string Seed, string AgentConfig, string? Agent) : Step
{
    public override Phase Phase => Phase.Seed;
    public override string Describe() =>
        $"write the NoCloud seed {Seed} (label cidata: meta-data, user-data, network-config, vmnet/agent.json{(Agent is null ? "" : ", vmnet/vmnet-agent")})";
}

/// <summary>Defines the VM: a libvirt domain from domain.xml (autostart as the spec says), or the QEMU backend's record.</summary>
public sealed record DefineVm(string Vm, Backend Backend, string Target, bool Autostart) : Step
{
    public override Phase Phase => Phase.Define;
    public override string Describe() => Backend == Backend.Libvirt
        ? $"define the libvirt domain {Vm} (domain.xml) at {Target}{(Autostart ? "; mark it autostart" : "")}"
        : $"record {Vm} for qemu-system-x86_64 (qemu.args)";
}

/// <summary>Moves the VM's leases from this vmnet's time lease to the owner that holds them from now on.</summary>
public sealed record HandOverLeases(string Vm, LeaseOwner Owner, Phase In) : Step
{
    public override Phase Phase => In;
    public override string Describe() => $"# {Vm}'s leases pass to {Owner}";
}

/// <summary>Starts the VM unless it runs, and waits until it runs.</summary>
public sealed record StartVm(string Vm, Backend Backend, string PidFile, TimeSpan Timeout) : Step
{
    public override Phase Phase => Phase.Start;
    public override string Describe() => Backend == Backend.Libvirt
        ? $"start the libvirt domain {Vm}"
        : $"start qemu-system-x86_64 (qemu.args), pid file {PidFile}";
}

/// <summary>
/// QEMU backend: once QEMU runs, the leases pass to its process (pid and start time), so that `vmnet gc` gives the VFs
/// back when it dies (`vmnet down` hands them back to the definition first).
/// </summary>
public sealed record HandOverToProcess(string Vm) : Step
{
    public override Phase Phase => Phase.Start;
    public override string Describe() => $"# {Vm}'s leases pass to its QEMU process (gone with it: `vmnet gc` gives the VFs back)";
}

/// <summary>
/// Waits for the guest agent's "network ready" report. Not transactional: the VM runs by then, and a guest that is slow
/// to report keeps its VM. <see cref="Skipped"/> says why there is nothing to wait for.
/// </summary>
public sealed record WaitForAgent(string AgentSocket, TimeSpan Timeout, string? Skipped) : Step
{
    public override Phase Phase => Phase.WaitForGuest;
    public override bool Transactional => false;
    public override string Describe() => Skipped is null
        ? "wait for the guest agent to report the bonds up"
        : $"# no wait for the guest agent: {Skipped}";
}
