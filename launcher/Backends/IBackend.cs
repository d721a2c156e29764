using VmNet.Planning;

namespace VmNet.Backends;

/// <summary>
/// How a VM is run, once the host side has its VFs configured and bound to vfio-pci. The executor drives it through
/// the plan's steps (define, start) and undoes them (undefine, stop) on failure. Every method is idempotent: defining a
/// defined VM replaces its definition, starting a running VM, stopping a stopped one or removing a removed one succeeds
/// and changes nothing. Leases and VF restore belong to the host side.
/// </summary>
public interface IBackend
{
    /// <summary>"libvirt" or "qemu".</summary>
    string Name { get; }

    /// <summary>Whether a VmNet VM of that name is defined here (a domain, or the QEMU backend's record).</summary>
    Task<bool> IsDefinedAsync(string vm, CancellationToken cancel);

    /// <summary>The VM's definition as it is now (to put back if a new one must be undone), or null when it is not defined.</summary>
    Task<SavedDefinition?> SaveDefinitionAsync(string vm, CancellationToken cancel);

    /// <summary>Puts back a definition <see cref="SaveDefinitionAsync"/> returned.</summary>
    Task RestoreDefinitionAsync(string vm, SavedDefinition saved, CancellationToken cancel);

    /// <summary>Defines the VM (libvirt: validated domain XML, autostart as the spec says; qemu: its record and argv).</summary>
    Task DefineAsync(LaunchPlan plan, CancellationToken cancel);

    /// <summary>Removes the definition only (the VM must not run); the VM's files stay.</summary>
    Task UndefineAsync(string vm, CancellationToken cancel);

    /// <summary>Starts the defined VM unless it runs; returns once the start was accepted.</summary>
    Task StartAsync(LaunchPlan plan, CancellationToken cancel);

    /// <summary>Asks the guest to power off, waits up to <paramref name="graceful"/>, then pulls the plug. Keeps the definition.</summary>
    Task<StopResult> StopAsync(string vm, TimeSpan graceful, CancellationToken cancel);

    /// <summary>Stops the VM as <see cref="StopAsync"/> does, then undefines it and deletes its run files, seed and overlay.</summary>
    Task<StopResult> RemoveAsync(string vm, TimeSpan graceful, CancellationToken cancel);

    /// <summary>The VM's state and VFs, or null when this backend does not know a VmNet VM of that name. With
    /// <paramref name="guest"/>, also the agent's report, read fresh from its port while the VM runs; without, the port
    /// is left alone (up's start step: a look there would take the events the wait that follows is for).</summary>
    Task<VmStatus?> StatusAsync(string vm, CancellationToken cancel, bool guest = true);

    /// <summary>Every VmNet VM this backend knows, by name.</summary>
    Task<IReadOnlyList<VmStatus>> ListAsync(CancellationToken cancel);
}

/// <summary>A backend's definition of a VM, kept to be put back: libvirt's inactive domain XML, or the QEMU record.</summary>
public sealed record SavedDefinition(string Text, bool Autostart);

/// <summary>How a stop went.</summary>
public enum StopResult
{
    /// <summary>It was not running.</summary>
    AlreadyStopped,
    /// <summary>The guest powered off within the timeout.</summary>
    ShutDown,
    /// <summary>The guest did not power off in time and was stopped hard (libvirt destroy, QMP quit or SIGKILL).</summary>
    Forced,
}

/// <summary>One VF of a VM, as recorded with the VM (libvirt: the domain's vmnet metadata).</summary>
public sealed record VfStatus(string Network, string Member, string Port, string Pf, string PfPci, int Vf, string Pci, string Mac, int? Vlan)
{
    /// <summary>The host network (host.yaml) the VF's network comes from, as the ledger says; null: none, or not looked up.</summary>
    [System.Text.Json.Serialization.JsonIgnore(Condition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull)]
    public string? HostNetwork { get; init; }

    public static IReadOnlyList<VfStatus> Of(LaunchPlan plan) =>
        plan.Vfs.Select(a => new VfStatus(a.Network.Name, a.GuestName, a.PortName, a.Pf.Name, a.Pf.Pci, a.Vf.Index, a.Vf.Pci, a.Mac, a.Network.Vlan?.Id)).ToList();
}

/// <summary>What <c>vmnet status</c> and <c>vmnet ls</c> show for a VM; <see cref="Guest"/> is the agent's last report VmNet received.</summary>
public sealed record VmStatus(string Name, string Backend, string State, bool Running, IReadOnlyList<VfStatus> Vfs, string? SerialLog,
    GuestStatus? Guest = null)
{
    /// <summary>The VM's vCPUs as defined (null when the definition does not say).</summary>
    public int? Cpus { get; init; }

    /// <summary>The VM's memory in MiB as defined (null when the definition does not say).</summary>
    public long? MemoryMiB { get; init; }

    /// <summary>The host CPU each vCPU is pinned to (dedicated pinning, from the ledger); null: not pinned, or not looked up.</summary>
    [System.Text.Json.Serialization.JsonIgnore(Condition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull)]
    public IReadOnlyList<int>? DedicatedCpus { get; init; }

    /// <summary>The host CPU of the emulator threads (dedicated pinning).</summary>
    [System.Text.Json.Serialization.JsonIgnore(Condition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull)]
    public int? EmulatorCpu { get; init; }
}
