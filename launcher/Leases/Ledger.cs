using System.Globalization;
using System.Text.Json;
using VmNet.Host;
using VmNet.Io;
using VmNet.State;

namespace VmNet.Leases;

/// <summary>
/// Writes to the ledger. Find-and-claim happens under <see cref="Lock"/> (<c>STATE/lock</c>, an exclusive flock held
/// by one process at a time); each file is replaced atomically (temp, fsync, rename), so a reader sees the old record
/// or the new one, never a torn one. Layout: <c>leases/PCI.json</c> (the lease), <c>vms/VM/vfs/PCI.json</c> (a link
/// to it, the VM's index) and <c>macs/MAC</c> (the VM using that MAC).
/// </summary>
public sealed class LeaseLedger(StateDir state)
{
    public static readonly TimeSpan LockTimeout = TimeSpan.FromSeconds(120);

    /// <summary>How long a starting vmnet may hold a time lease before it counts as gone.</summary>
    public static readonly TimeSpan StartingLease = TimeSpan.FromMinutes(10);

    public StateDir State { get; } = state;
    public LeaseStore Store { get; } = new(state);

    /// <summary>The dedicated CPUs, held while their VM holds a VF lease.</summary>
    public CpuLedger Cpus => _cpus ??= new CpuLedger(State, Store);
    private CpuLedger? _cpus;

    public FileLock Lock(CancellationToken ct) => FileLock.Acquire(State.LockFile, LockTimeout, ct);

    public void Write(Lease lease)
    {
        AtomicFile.Write(State.LeaseFile(lease.Pci), JsonSerializer.Serialize(lease, LeaseJson.Default.Lease), mode: AtomicFile.Private);
        var link = System.IO.Path.Join(State.VmLeasesDir(lease.Vm), lease.Pci + ".json");
        if (new FileInfo(link).LinkTarget is null)
        {
            State.CreateVmLeasesDir(lease.Vm);
            File.CreateSymbolicLink(link, System.IO.Path.Join("..", "..", "..", "leases", lease.Pci + ".json"));
        }
        if (Store.MacOwner(lease.Mac) != lease.Vm) AtomicFile.Write(State.MacFile(lease.Mac), lease.Vm, mode: AtomicFile.Private);
        var leased = Store.LeasedVfIndices(lease.PfPci);
        if (!leased.Contains(lease.Vf)) WritePfIndex(lease.PfPci, leased.Append(lease.Vf));
    }

    /// <summary>
    /// The PF index lists the leased VF indices of one PF so planning skips them without I/O. The lease file is the
    /// truth: the planner checks it for the VF it picks, and <see cref="RebuildPfIndexes"/> repairs a stale index.
    /// </summary>
    private void WritePfIndex(string pfPci, IEnumerable<int> vfs)
    {
        var text = string.Concat(vfs.Distinct().Order().Select(i => i.ToString(System.Globalization.CultureInfo.InvariantCulture) + "\n"));
        if (text.Length > 0) AtomicFile.Write(State.PfIndexFile(pfPci), text, mode: AtomicFile.Private);
        else File.Delete(State.PfIndexFile(pfPci));
    }

    /// <summary>Rewrites every PF index from the lease files (after a crash between a lease write and its index).</summary>
    public void RebuildPfIndexes()
    {
        // From the readable leases: a corrupt one's VF is left out of its index, and stays taken all the same (the
        // planner reads the lease file of every VF it picks, and that read refuses a corrupt one).
        var byPf = Store.Scan().Select(x => x.Lease).OfType<Lease>().GroupBy(l => l.PfPci).ToDictionary(g => g.Key, g => g.Select(l => l.Vf));
        var dir = State.PfIndexDir;
        if (Directory.Exists(dir))
            foreach (var f in Directory.EnumerateFiles(dir).Where(f => !System.IO.Path.GetFileName(f).StartsWith('.')))
                if (!byPf.ContainsKey(System.IO.Path.GetFileName(f))) File.Delete(f);
        foreach (var (pf, vfs) in byPf) WritePfIndex(pf, vfs);
    }

    /// <summary>Drops a lease: the MAC index, the VM's link, then the lease file last (a crash in between leaves a lease to retry).</summary>
    public void Release(Lease lease)
    {
        if (Store.MacOwner(lease.Mac) == lease.Vm) File.Delete(State.MacFile(lease.Mac));
        var link = System.IO.Path.Join(State.VmLeasesDir(lease.Vm), lease.Pci + ".json");
        if (new FileInfo(link).LinkTarget is not null || File.Exists(link)) File.Delete(link);
        DeleteIfEmpty(State.VmLeasesDir(lease.Vm));
        DeleteIfEmpty(State.VmDir(lease.Vm));
        IReadOnlySet<int>? leased;
        try { leased = Store.LeasedVfIndices(lease.PfPci); }
        catch (VmNetException) { leased = null; } // a corrupt index must not keep a VF from being given back: rebuilt below
        if (leased?.Contains(lease.Vf) == true) WritePfIndex(lease.PfPci, leased.Where(v => v != lease.Vf));
        File.Delete(State.LeaseFile(lease.Pci));
        if (leased is null) RebuildPfIndexes();
    }

    /// <summary>
    /// Records <paramref name="wanted"/> (the planned leases of <paramref name="vm"/>) as being changed by
    /// <paramref name="self"/>. Call under <see cref="Lock"/>, right after planning. A VF the VM already leased keeps
    /// its owner (a running domain keeps holding its VFs, whatever becomes of this vmnet) and its recorded
    /// <see cref="Lease.Original"/>; a VF newly taken is held by <paramref name="self"/> until the hand-over. Returns
    /// what each VF's lease was before (null for a VF newly taken), so a failed apply can put it back.
    /// </summary>
    public IReadOnlyList<(Lease Now, Lease? Before)> Claim(string vm, IEnumerable<Lease> wanted, StartingOwner self)
    {
        var result = new List<(Lease, Lease?)>();
        foreach (var want in wanted)
        {
            var before = Store.Find(want.Pci);
            if (before is not null && before.Vm != vm)
                throw new VmNetException($"VF {want.Pci} is leased by {before.Vm}; the plan was made without the lock. This is a bug in vmnet; report it");
            var owner = before?.Owner is null or StartingOwner ? self : before.Owner;
            var lease = want with { Original = before?.Original, Owner = owner, StartedBy = self };
            if (before is not null && before.Mac != lease.Mac && Store.MacOwner(before.Mac) == before.Vm) File.Delete(State.MacFile(before.Mac));
            Write(lease);
            result.Add((lease, before));
        }
        return result;
    }

    /// <summary>Puts the ledger back as it was before <see cref="Claim"/>: new leases dropped, previous ones rewritten.</summary>
    /// <remarks>With <paramref name="releaseNew"/> false (after a rollback that left changes) only the leases the VM held
    /// before are put back; the new ones stay with the vmnet that took them, for <c>vmnet gc</c>.</remarks>
    public void Unclaim(IEnumerable<(Lease Now, Lease? Before)> claimed, bool releaseNew = true)
    {
        foreach (var (now, before) in claimed)
        {
            var current = Store.Find(now.Pci) ?? now;
            if (before is null) { if (releaseNew) Release(current); }
            else
            {
                if (before.Mac != current.Mac && Store.MacOwner(current.Mac) == current.Vm) File.Delete(State.MacFile(current.Mac));
                Write(before);
            }
        }
    }

    public void SetOwner(string pci, LeaseOwner owner)
    {
        if (Store.Find(pci) is { } lease) Write(lease with { Owner = owner });
    }

    /// <summary>The vmnet that changed the VF is done with it.</summary>
    public void Finish(string pci)
    {
        if (Store.Find(pci) is { StartedBy: not null } lease) Write(lease with { StartedBy = null });
    }

    /// <summary>The vmnet changing one of <paramref name="vm"/>'s VFs right now, when it is another live process.</summary>
    public StartingOwner? BusyWith(string vm) =>
        Store.OfVm(vm).Select(l => l.StartedBy ?? l.Owner as StartingOwner)
            .FirstOrDefault(s => s is not null && !Liveness.IsSelf(s) && Liveness.Gone(s) is null);

    private static void DeleteIfEmpty(string dir)
    {
        if (Directory.Exists(dir) && !Directory.EnumerateFileSystemEntries(dir).Any()) Directory.Delete(dir);
    }
}

/// <summary>
/// The one check of whether a lease's owner is gone: a dead pid, a pid reused by another process, an expired time lease,
/// a libvirt domain no longer defined. When it cannot be judged (libvirt cannot be asked) the owner counts as alive:
/// nothing is released by mistake.
/// </summary>
public static class Liveness
{
    /// <summary>A time lease for this vmnet process.</summary>
    public static StartingOwner StartingSelf() =>
        new(Environment.ProcessId, StartTime(Environment.ProcessId) ?? 0, DateTimeOffset.UtcNow + LeaseLedger.StartingLease);

    /// <summary>This process as a lease owner (the time lease's pid and start time).</summary>
    public static bool IsSelf(LeaseOwner? owner) => owner is StartingOwner s && s.Pid == Environment.ProcessId;

    /// <summary>Null while the owner lives (or cannot be judged), else why it is gone.</summary>
    public static string? Gone(LeaseOwner? owner) => owner switch
    {
        StartingOwner s when s.Expires < DateTimeOffset.UtcNow => $"its time lease expired at {s.Expires:u}",
        StartingOwner s => ProcessGone(s.Pid, s.StartTime),
        ProcessOwner p => ProcessGone(p.Pid, p.StartTime),
        LibvirtDomainOwner d => DomainGone(d),
        _ => null,
    };

    private static string? ProcessGone(int pid, long startTime)
    {
        var start = StartTime(pid);
        if (start is null) return $"process {pid} is gone";
        if (startTime != 0 && startTime != start) return $"process {pid} is gone (the pid now belongs to another process)";
        return null;
    }

    /// <summary>A libvirt owner is gone when its domain is no longer defined (undefined outside vmnet).</summary>
    private static string? DomainGone(LibvirtDomainOwner owner)
    {
        try
        {
            using var connection = Libvirt.LibvirtConnection.Open(owner.Uri);
            using var domain = connection.TryLookupDomain(owner.Domain);
            return domain is null ? $"its domain {owner.Domain:D} is no longer defined on {owner.Uri}" : null;
        }
        catch (Libvirt.LibvirtException)
        {
            return null;
        }
    }

    /// <summary>A live process's start time in clock ticks since boot (<c>/proc/PID/stat</c>), or null when it is gone.</summary>
    public static long? StartTime(int pid) => HostProcess.Find(pid) is { } p ? (long)p.StartTicks : null;
}
