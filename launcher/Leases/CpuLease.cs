using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;
using VmNet.Io;
using VmNet.State;

namespace VmNet.Leases;

/// <summary>
/// One host CPU leased to one VM for dedicated pinning (<c>STATE/cpus/N.json</c>): one of its vCPUs
/// (<see cref="Vcpu"/>) or its emulator threads (<see cref="Vcpu"/> null). A CPU lease has no owner of its own: it is
/// held while its VM holds a VF lease, so it lives and dies with the VM's VFs (whose owners are a libvirt domain, a
/// QEMU process, the definition, or the vmnet starting it) and `vmnet rm` and `vmnet gc` give both back together. A
/// CPU lease of a VM without VF leases (its VFs were released and a crash came before its CPUs) is stale: it is free
/// to take, and `gc` drops it.
/// </summary>
public sealed record CpuLease(int Version, string Vm, int Cpu, int Node, int? Vcpu)
{
    public const int CurrentVersion = 1;

    /// <summary>"vCPU 0" or "emulator".</summary>
    public string Role => Vcpu is { } v ? $"vCPU {v.ToString(CultureInfo.InvariantCulture)}" : "emulator";
}

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase, WriteIndented = true, RespectNullableAnnotations = true)]
[JsonSerializable(typeof(CpuLease))]
internal sealed partial class CpuLeaseJson : JsonSerializerContext;

/// <summary>The CPU side of the ledger: read and written under the ledger's lock, each file replaced atomically.</summary>
public sealed class CpuLedger(StateDir state, ILeaseView vfs)
{
    /// <summary>Every CPU lease, by CPU; a corrupt file is refused naming it, never taken as free.</summary>
    public IReadOnlyList<CpuLease> All() => Read(strict: true);

    /// <param name="strict">False: a corrupt file is skipped (for what serves one VM: its rm, its status), true: refused.</param>
    private IReadOnlyList<CpuLease> Read(bool strict)
    {
        var dir = state.CpusDir;
        if (!Directory.Exists(dir)) return [];
        var result = new List<CpuLease>();
        foreach (var file in Directory.EnumerateFiles(dir, "*.json"))
        {
            var name = Path.GetFileNameWithoutExtension(file);
            CpuLease? lease;
            try
            {
                lease = JsonSerializer.Deserialize(File.ReadAllBytes(file), CpuLeaseJson.Default.CpuLease);
            }
            catch (Exception e) when (e is JsonException or FileNotFoundException)
            {
                if (e is FileNotFoundException) continue;
                lease = null;
            }
            if (lease is null || lease.Vm is null || lease.Cpu.ToString(CultureInfo.InvariantCulture) != name || lease.Version != CpuLease.CurrentVersion)
            {
                if (!strict) continue;
                throw new VmNetException($"the CPU lease {file} is corrupt or of another vmnet; VmNet will not guess who holds CPU {name}. " +
                    "Inspect it; if no VM is pinned to that CPU, delete the file", ExitCodes.Failure);
            }
            result.Add(lease);
        }
        result.Sort((a, b) => a.Cpu.CompareTo(b.Cpu));
        return result;
    }

    /// <summary>The CPU leases that hold (their VM holds a VF lease), each VM asked once.</summary>
    public IReadOnlyList<CpuLease> Held() => HeldOf(All(), vfs);

    /// <summary>Of <paramref name="leases"/>, those whose VM holds a VF lease in <paramref name="vfs"/>, each VM asked once.</summary>
    public static IReadOnlyList<CpuLease> HeldOf(IEnumerable<CpuLease> leases, ILeaseView vfs)
    {
        var holds = new Dictionary<string, bool>(StringComparer.Ordinal);
        return leases.Where(l => holds.TryGetValue(l.Vm, out var h) ? h : holds[l.Vm] = vfs.OfVm(l.Vm).Count > 0).ToList();
    }

    /// <summary><paramref name="vm"/>'s CPU leases; a corrupt file is skipped (it is no proof of this VM's).</summary>
    public IReadOnlyList<CpuLease> OfVm(string vm) => Read(strict: false).Where(l => l.Vm == vm).ToList();

    /// <summary>
    /// Adds <paramref name="wanted"/> to <paramref name="vm"/>'s CPU leases, keeping the ones it held: as with VFs, a VM
    /// keeps what it held until the change is done (<see cref="Restore"/> with <paramref name="wanted"/> on commit drops
    /// the rest; with the result on rollback, the new ones), so no other VM can take a CPU the rollback gives back.
    /// Returns the VM's leases before. Call under the ledger's lock.
    /// </summary>
    public IReadOnlyList<CpuLease> Claim(string vm, IReadOnlyList<CpuLease> wanted)
    {
        DropStale(); // the CPUs of a VM whose VFs were reclaimed as orphans go with them
        var before = All().Where(l => l.Vm == vm).ToList();
        var held = Held().ToDictionary(l => l.Cpu);
        foreach (var want in wanted)
            if (held.TryGetValue(want.Cpu, out var other) && other.Vm != vm)
                throw new VmNetException($"CPU {want.Cpu} is leased by {other.Vm}; the plan was made without the lock. This is a bug in vmnet; report it");
        var wantedCpus = wanted.Select(w => w.Cpu).ToHashSet();
        foreach (var l in wanted.Concat(before.Where(b => !wantedCpus.Contains(b.Cpu)))) Write(l);
        return before;
    }

    /// <summary>Makes <paramref name="vm"/>'s CPU leases exactly <paramref name="leases"/> (none: all released).</summary>
    public void Restore(string vm, IReadOnlyList<CpuLease> leases)
    {
        var keep = leases.Select(l => l.Cpu).ToHashSet();
        foreach (var l in leases) Write(l);
        foreach (var old in OfVm(vm).Where(l => !keep.Contains(l.Cpu)))
            File.Delete(state.CpuLeaseFile(old.Cpu));
    }

    private void Write(CpuLease l) =>
        AtomicFile.Write(state.CpuLeaseFile(l.Cpu), JsonSerializer.Serialize(l, CpuLeaseJson.Default.CpuLease), mode: AtomicFile.Private);

    public void Release(string vm) => Restore(vm, []);

    /// <summary>Drops every stale CPU lease (its VM holds no VF lease); returns what it dropped.</summary>
    public IReadOnlyList<CpuLease> DropStale()
    {
        var held = Held().Select(l => l.Cpu).ToHashSet();
        var stale = All().Where(l => !held.Contains(l.Cpu)).ToList();
        foreach (var l in stale) File.Delete(state.CpuLeaseFile(l.Cpu));
        return stale;
    }
}
