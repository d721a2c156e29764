using System.Text.Json.Serialization;
using VmNet.Kernel;

using VmNet.State;

namespace VmNet.Leases;

/// <summary>
/// One leased VF. The ledger keeps one such file per VF (<c>STATE/leases/PCI.json</c>), so checking whether a VF is
/// taken is one lookup whatever the number of leases. <see cref="Applied"/> is every VF setting the plan gave it (what
/// <c>vmnet host prepare</c> sets again at boot); <see cref="Original"/> is the VF as found, recorded before the first
/// change, so teardown can give it back (null: nothing was changed yet). <see cref="Owner"/> is what holds the VF (a VF
/// newly taken is held by the vmnet taking it until it hands the VM over); <see cref="StartedBy"/> is the vmnet
/// changing it right now, if any, so that no second vmnet changes the same VM at once.
/// </summary>
public sealed record Lease(
    int Version,
    string Vm,
    string Network,
    int Port,
    string Pf,
    string PfPci,
    int Vf,
    string Pci,
    string Mac,
    VfSettings Applied,
    VfState? Original = null,
    LeaseOwner? Owner = null,
    StartingOwner? StartedBy = null,
    string? HostNetwork = null)
{
    /// <summary>The lease file format this vmnet reads and writes.</summary>
    public const int CurrentVersion = 2;
}

/// <summary>A VF's state: the settings its PF holds for it, and which driver holds the function.</summary>
public sealed record VfState(VfSettings Settings, string? Driver, string? DriverOverride, string? NetDev);

/// <summary>
/// Who holds a lease. <see cref="StartingOwner"/>: a time lease of the vmnet process applying the plan;
/// <see cref="ProcessOwner"/>: a running process (pid and start time, so a reused pid is never taken for it);
/// <see cref="DefinitionOwner"/>: the VM definition itself, held until <c>vmnet rm</c>; <see cref="LibvirtDomainOwner"/>:
/// a libvirt domain, held while it is defined. <see cref="Liveness"/> tells whether an owner is gone.
/// </summary>
[JsonPolymorphic(TypeDiscriminatorPropertyName = "kind")]
[JsonDerivedType(typeof(StartingOwner), "starting")]
[JsonDerivedType(typeof(ProcessOwner), "process")]
[JsonDerivedType(typeof(DefinitionOwner), "defined")]
[JsonDerivedType(typeof(LibvirtDomainOwner), "libvirt")]
public abstract record LeaseOwner;

/// <summary>The vmnet process applying a plan: held until it hands the leases over, or until it dies or <see cref="Expires"/>.</summary>
public sealed record StartingOwner(int Pid, long StartTime, DateTimeOffset Expires) : LeaseOwner
{
    public override string ToString() => $"vmnet pid {Pid} (starting, until {Expires:u})";
}

/// <summary>A process (e.g. QEMU), by pid and start time in clock ticks after boot.</summary>
public sealed record ProcessOwner(int Pid, long StartTime) : LeaseOwner
{
    public override string ToString() => $"pid {Pid}";
}

/// <summary>The VM definition itself: held until <c>vmnet rm</c>.</summary>
public sealed record DefinitionOwner : LeaseOwner
{
    public override string ToString() => "the VM definition";
}

/// <summary>A libvirt domain (its UUID on the connection <see cref="Uri"/>): held while the domain is defined.</summary>
public sealed record LibvirtDomainOwner(Guid Domain, string Uri) : LeaseOwner
{
    public override string ToString() => $"libvirt domain {Domain:D} on {Uri}";
}

// A lease read back may hold no null where its type has none (RespectNullableAnnotations; LeaseStore.Find checks the
// required fields are there): a hand-edited `"mac": null` is a corrupt lease, named as such, not a NullReferenceException later.
[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase, WriteIndented = true,
    DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull, UseStringEnumConverter = true, AllowOutOfOrderMetadataProperties = true,
    RespectNullableAnnotations = true)]
[JsonSerializable(typeof(Lease))]
internal sealed partial class LeaseJson : JsonSerializerContext;

/// <summary>Read access to the leases in a state directory.</summary>
public interface ILeaseView
{
    /// <summary>Whether any VM holds the VF at <paramref name="pci"/>: one lookup, whatever the number of leases.</summary>
    bool IsLeased(string pci);

    /// <summary>The leases <paramref name="vm"/> holds.</summary>
    IReadOnlyList<Lease> OfVm(string vm);

    /// <summary>The VM that uses <paramref name="mac"/> on one of its VFs, or null.</summary>
    string? MacOwner(string mac);

    /// <summary>
    /// The indices of the leased VFs of the PF at <paramref name="pfPci"/>: one small read per PF, so skipping leased
    /// VFs costs no I/O, however many there are.
    /// </summary>
    IReadOnlySet<int> LeasedVfIndices(string pfPci);

    /// <summary>Every CPU lease of dedicated pinning (held or stale: <see cref="CpuLedger.HeldOf"/> tells).</summary>
    IReadOnlyList<CpuLease> CpuLeases();

    /// <summary>The lease of the VF at <paramref name="pci"/>, or null; a corrupt one throws, naming its file.</summary>
    Lease? Find(string pci);
}

/// <summary>Leases read from the state directory, one file per VF; a corrupt file is reported, never ignored.</summary>
public sealed class LeaseStore(StateDir state) : ILeaseView
{
    public StateDir State { get; } = state;

    public bool IsLeased(string pci) => File.Exists(State.LeaseFile(pci));

    public IReadOnlyList<CpuLease> CpuLeases() => new CpuLedger(State, this).All();

    public IReadOnlyList<Lease> OfVm(string vm)
    {
        var dir = State.VmLeasesDir(vm);
        if (!Directory.Exists(dir)) return [];
        return Directory.EnumerateFileSystemEntries(dir, "*.json").Order(StringComparer.Ordinal)
            .Select(f => Find(System.IO.Path.GetFileNameWithoutExtension(f)))
            .OfType<Lease>().Where(l => l.Vm == vm).ToList();
    }

    public string? MacOwner(string mac)
    {
        try
        {
            return File.ReadAllText(State.MacFile(mac)).Trim();
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            return null;
        }
    }

    public IReadOnlySet<int> LeasedVfIndices(string pfPci)
    {
        string text;
        try
        {
            text = File.ReadAllText(State.PfIndexFile(pfPci));
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            return new HashSet<int>();
        }
        var set = new HashSet<int>();
        foreach (var line in text.Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            if (!int.TryParse(line, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var i))
                throw new VmNetException($"the lease index {State.PfIndexFile(pfPci)} is corrupt (line {Spec.MapReader.Quote(line)}); run `vmnet gc` to rebuild it", ExitCodes.Failure);
            set.Add(i);
        }
        return set;
    }

    public Lease? Find(string pci)
    {
        var file = State.LeaseFile(pci);
        byte[] bytes;
        try
        {
            bytes = File.ReadAllBytes(file);
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            return null;
        }
        try
        {
            var version = LeaseFormatV1.VersionOf(bytes);
            var lease = version switch
            {
                Lease.CurrentVersion => System.Text.Json.JsonSerializer.Deserialize(bytes, LeaseJson.Default.Lease),
                1 => LeaseFormatV1.Read(bytes),
                _ => throw new VmNetException(
                    $"the lease file {file} was written by a newer vmnet (lease format {version}, this vmnet reads up to {Lease.CurrentVersion}); " +
                    "use that vmnet, or give the VF back with it (`vmnet rm`)", ExitCodes.Failure),
            };
            if (lease is null || lease.Pci != pci) throw new System.Text.Json.JsonException("unexpected content");
            if (lease.Vm is null || lease.Network is null || lease.Pf is null || lease.PfPci is null || lease.Mac is null || lease.Applied is null
                || lease.Original is { Settings: null })
                throw new System.Text.Json.JsonException("a required field is missing");
            return lease;
        }
        catch (System.Text.Json.JsonException e)
        {
            throw new VmNetException(
                $"the lease file {file} is corrupt ({e.Message}); VmNet will not guess who owns VF {pci}. " +
                $"Inspect it; if no VM uses that VF, `vmnet gc --reset {pci}` gives it the kernel's defaults and drops the lease", ExitCodes.Failure);
        }
    }

    /// <summary>
    /// Every lease file, each read on its own: a corrupt one comes as its problem (what to do about it) and does not
    /// stop the others, for the commands that serve the rest of the host (<c>vmnet gc</c>, <c>vmnet host</c>).
    /// </summary>
    public IEnumerable<(string Pci, Lease? Lease, string? Problem)> Scan()
    {
        if (!Directory.Exists(State.LeasesDir)) yield break;
        foreach (var file in Directory.EnumerateFiles(State.LeasesDir, "*.json").Order(StringComparer.Ordinal))
        {
            var pci = System.IO.Path.GetFileNameWithoutExtension(file);
            Lease? lease = null;
            string? problem = null;
            try { lease = Find(pci); }
            catch (VmNetException e) { problem = e.Message; }
            if (lease is not null || problem is not null) yield return (pci, lease, problem);
        }
    }

    public IEnumerable<Lease> All()
    {
        if (!Directory.Exists(State.LeasesDir)) yield break;
        foreach (var file in Directory.EnumerateFiles(State.LeasesDir, "*.json").Order(StringComparer.Ordinal))
        {
            if (Find(System.IO.Path.GetFileNameWithoutExtension(file)) is { } lease) yield return lease;
        }
    }
}
