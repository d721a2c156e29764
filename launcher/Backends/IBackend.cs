using VmNet.Planning;
using VmNet.Rendering;

namespace VmNet.Backends;

/// <summary>
/// How a VM is run, once the host side has applied the plan (VFs configured and bound to vfio-pci). Every method is
/// idempotent: starting a running VM, stopping a stopped one or removing a removed one succeeds and changes nothing.
/// Leases and VF restore belong to the host side; a backend only names the owner of a lease (<see cref="OwnerOfAsync"/>)
/// and tells whether that owner is still alive (<see cref="IsOwnerAlive"/>).
/// </summary>
public interface IBackend
{
    /// <summary>"libvirt" or "qemu".</summary>
    string Name { get; }

    /// <summary>Writes what a start needs: the VM directory, the NoCloud seed (with the agent binary
    /// <paramref name="agent"/> on it, when not null) and the disk overlay.</summary>
    Task PrepareAsync(Plan plan, Artifacts artifacts, string? agent, CancellationToken cancel);

    /// <summary>Defines the VM (libvirt: validated domain XML, autostart as the spec says) and starts it unless it runs.</summary>
    Task DefineAndStartAsync(Plan plan, Artifacts artifacts, CancellationToken cancel);

    /// <summary>Asks the guest to power off, waits up to <paramref name="graceful"/>, then pulls the plug. Keeps the definition.</summary>
    Task<StopResult> StopAsync(string vm, TimeSpan graceful, CancellationToken cancel);

    /// <summary>Stops the VM as <see cref="StopAsync"/> does, then undefines it and deletes its run files, seed and overlay.</summary>
    Task<StopResult> RemoveAsync(string vm, TimeSpan graceful, CancellationToken cancel);

    /// <summary>The VM's state and VFs, or null when this backend does not know a VmNet VM of that name.</summary>
    Task<VmStatus?> StatusAsync(string vm, CancellationToken cancel);

    /// <summary>Every VmNet VM this backend knows, by name.</summary>
    Task<IReadOnlyList<VmStatus>> ListAsync(CancellationToken cancel);

    /// <summary>A token for the ledger naming what owns the VM's leases now (libvirt: the domain; qemu: the process), or null.</summary>
    Task<string?> OwnerOfAsync(string vm, CancellationToken cancel);

    /// <summary>Whether the owner recorded by <see cref="OwnerOfAsync"/> still exists (gc releases the leases of dead owners).</summary>
    bool IsOwnerAlive(string owner);
}

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
public sealed record VfStatus(string Network, string Member, string Port, string Pf, string PfPci, int Vf, string Pci, string Mac, int? Vlan);

/// <summary>What <c>vmnet status</c> and <c>vmnet ls</c> show for a VM; <see cref="Guest"/> is the agent's last report VmNet received.</summary>
public sealed record VmStatus(string Name, string Backend, string State, bool Running, IReadOnlyList<VfStatus> Vfs, string? SerialLog,
    GuestStatus? Guest = null);
