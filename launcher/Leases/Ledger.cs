using System.Globalization;
using System.Text.Json;
using VmNet.Planning;

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

    public string LockFile => System.IO.Path.Join(State.Path, "lock");

    public FileLock Lock(CancellationToken ct) => FileLock.Acquire(LockFile, LockTimeout, ct);

    public void Write(Lease lease)
    {
        AtomicFile.Write(State.LeaseFile(lease.Pci), JsonSerializer.Serialize(lease, LeaseJson.Default.Lease));
        var link = System.IO.Path.Join(State.VmLeasesDir(lease.Vm), lease.Pci + ".json");
        if (new FileInfo(link).LinkTarget is null)
        {
            Directory.CreateDirectory(State.VmLeasesDir(lease.Vm));
            File.CreateSymbolicLink(link, System.IO.Path.Join("..", "..", "..", "leases", lease.Pci + ".json"));
        }
        if (Store.MacOwner(lease.Mac) != lease.Vm) AtomicFile.Write(State.MacFile(lease.Mac), lease.Vm);
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
        if (text.Length > 0) AtomicFile.Write(State.PfIndexFile(pfPci), text);
        else File.Delete(State.PfIndexFile(pfPci));
    }

    /// <summary>Rewrites every PF index from the lease files (after a crash between a lease write and its index).</summary>
    public void RebuildPfIndexes()
    {
        var byPf = Store.All().GroupBy(l => l.PfPci).ToDictionary(g => g.Key, g => g.Select(l => l.Vf));
        var dir = System.IO.Path.Join(State.Path, "pfs");
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
        var leased = Store.LeasedVfIndices(lease.PfPci);
        if (leased.Contains(lease.Vf)) WritePfIndex(lease.PfPci, leased.Where(v => v != lease.Vf));
        File.Delete(State.LeaseFile(lease.Pci));
    }

    /// <summary>
    /// Records the plan's VFs as leased by <paramref name="owner"/>. Call under <see cref="Lock"/>, right after planning.
    /// Returns what each VF's lease was before (null for a VF newly taken), so a failed apply can put it back.
    /// </summary>
    public IReadOnlyList<(Lease Now, Lease? Before)> Claim(Plan plan, LeaseOwner owner)
    {
        var result = new List<(Lease, Lease?)>();
        foreach (var a in plan.Vfs)
        {
            var before = Store.Find(a.Vf.Pci);
            if (before is not null && before.Vm != plan.Vm.Name)
                throw new VmNetException($"VF {a.Vf.Pci} is leased by {before.Vm}; the plan was made without the lock. This is a bug in vmnet; report it");
            // The VF settings applied, kept so the boot unit can re-prepare the VF (`vmnet host prepare`).
            var applied = plan.Steps.OfType<IpLinkVf>().Where(s => s.Pci == a.Vf.Pci).Select(s => s.Settings).ToList();
            var lease = before is null
                ? new Lease(1, plan.Vm.Name, a.Network.Name, a.Port, a.Pf.Name, a.Pf.Pci, a.Vf.Index, a.Vf.Pci, a.Mac, a.Network.Vlan, Owner: owner, Applied: applied)
                : before with { Network = a.Network.Name, Port = a.Port, Mac = a.Mac, Vlan = a.Network.Vlan, Owner = owner, Applied = applied };
            if (before is not null && before.Mac != a.Mac && Store.MacOwner(before.Mac) == before.Vm) File.Delete(State.MacFile(before.Mac));
            Write(lease);
            result.Add((lease, before));
        }
        return result;
    }

    /// <summary>Puts the ledger back as it was before <see cref="Claim"/>: new leases dropped, previous ones rewritten.</summary>
    public void Unclaim(IEnumerable<(Lease Now, Lease? Before)> claimed)
    {
        foreach (var (now, before) in claimed)
        {
            var current = Store.Find(now.Pci) ?? now;
            if (before is null) Release(current);
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

    private static void DeleteIfEmpty(string dir)
    {
        if (Directory.Exists(dir) && !Directory.EnumerateFileSystemEntries(dir).Any()) Directory.Delete(dir);
    }
}

/// <summary>Whether a lease's owner is gone: a dead pid, a pid reused by another process, an expired time lease.</summary>
public static class Liveness
{
    public static LeaseOwner StartingSelf() =>
        new(LeaseOwner.Starting, Environment.ProcessId, StartTime(Environment.ProcessId), DateTimeOffset.UtcNow + LeaseLedger.StartingLease);

    /// <summary>Null while the owner lives (or cannot be judged), else why it is gone.</summary>
    /// <summary>
    /// A libvirt owner is gone when its domain is no longer defined (undefined outside vmnet, or a test driver's
    /// in-memory host that ended). When libvirt cannot be asked the owner counts as alive: nothing is released by mistake.
    /// </summary>
    private static string? DomainGone(LeaseOwner owner)
    {
        if (owner.Uri is null || !Guid.TryParse(owner.Domain, out var uuid)) return null;
        try
        {
            using var connection = Libvirt.LibvirtConnection.Open(owner.Uri);
            using var domain = connection.TryLookupDomain(uuid);
            return domain is null ? $"its domain {owner.Domain} is no longer defined on {owner.Uri}" : null;
        }
        catch (Libvirt.LibvirtException)
        {
            return null;
        }
    }

    public static string? Gone(LeaseOwner? owner)
    {
        if (owner is null) return null;
        switch (owner.Kind)
        {
            case LeaseOwner.Starting:
                if (owner.Expires is { } e && e < DateTimeOffset.UtcNow) return $"its time lease expired at {e:u}";
                return ProcessGone(owner);
            case LeaseOwner.Process:
                return ProcessGone(owner);
            case LeaseOwner.Libvirt:
                return DomainGone(owner);
            default:
                return null;
        }
    }

    private static string? ProcessGone(LeaseOwner owner)
    {
        if (owner.Pid is not { } pid) return null;
        var start = StartTime(pid);
        if (start is null) return $"process {pid} is gone";
        if (owner.StartTime is { } expected && expected != start) return $"process {pid} is gone (the pid now belongs to another process)";
        return null;
    }

    /// <summary>A live process's start time in clock ticks since boot (<c>/proc/PID/stat</c>), or null when it is gone.</summary>
    public static long? StartTime(int pid) => Backends.HostProcess.Find(pid) is { } p ? (long)p.StartTicks : null;
}
