using System.Text.Json.Serialization;

namespace VmNet.Leases;

/// <summary>
/// One leased VF. The ledger keeps one such file per VF (<c>STATE/leases/PCI.json</c>), so checking whether a VF is
/// taken is one lookup whatever the number of leases.
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
    int? Vlan,
    VfOriginal? Original = null,
    LeaseOwner? Owner = null,
    IReadOnlyList<IReadOnlyList<string>>? Applied = null);

/// <summary>
/// The VF as it was found, recorded before the first change so teardown can give it back: its netlink settings and
/// its driver. Null in a lease means nothing was changed on the VF yet.
/// </summary>
public sealed record VfOriginal(
    string Mac,
    int Vlan,
    int Qos,
    string Proto,
    bool? SpoofChk,
    bool? Trust,
    string LinkState,
    int MaxTxRate,
    int MinTxRate,
    string? Driver,
    string? DriverOverride,
    string? NetDev);

/// <summary>
/// Who holds a lease, as a small tagged record. <see cref="Starting"/>: a time lease of the vmnet process applying the
/// plan (pid, its start time, an expiry); <see cref="Process"/>: a running process (pid and start time, e.g. QEMU);
/// <see cref="Defined"/>: the VM definition itself (apply-only: held until <c>vmnet rm</c>). A backend adds its kind
/// (e.g. "libvirt" with <see cref="Domain"/> and <see cref="Uri"/>). An unknown kind is never taken for gone.
/// </summary>
public sealed record LeaseOwner(
    string Kind,
    int? Pid = null,
    long? StartTime = null,
    DateTimeOffset? Expires = null,
    string? Domain = null,
    string? Uri = null)
{
    public const string Starting = "starting";
    public const string Process = "process";
    public const string Defined = "defined";

    /// <summary>A libvirt domain (<see cref="Domain"/> its UUID, <see cref="Uri"/> the connection): held while it is defined.</summary>
    public const string Libvirt = "libvirt";

    public override string ToString() => Kind switch
    {
        Starting => $"vmnet pid {Pid} (starting, until {Expires:u})",
        Process => $"pid {Pid}",
        Defined => "the VM definition",
        _ => Domain is null ? Kind : $"{Kind} domain {Domain} on {Uri}",
    };
}

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase, WriteIndented = true,
    DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(Lease))]
[JsonSerializable(typeof(VfOriginal))]
[JsonSerializable(typeof(LeaseOwner))]
[JsonSerializable(typeof(IReadOnlyList<IReadOnlyList<string>>))]
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
}

/// <summary>The state directory's paths, named once.</summary>
public sealed class StateDir(string path)
{
    public const string DefaultPath = "/var/lib/vmnet";
    public string Path { get; } = System.IO.Path.GetFullPath(path);
    public string LeasesDir => System.IO.Path.Join(Path, "leases");
    public string LeaseFile(string pci) => System.IO.Path.Join(LeasesDir, pci + ".json");
    public string VmDir(string vm) => System.IO.Path.Join(Path, "vms", vm);
    /// <summary>The VM's own index of its leases: one link per leased VF into <see cref="LeasesDir"/>.</summary>
    public string VmLeasesDir(string vm) => System.IO.Path.Join(VmDir(vm), "vfs");
    /// <summary>The MAC index: one file per MAC in use, holding the VM's name, so uniqueness is one lookup.</summary>
    public string MacFile(string mac) => System.IO.Path.Join(Path, "macs", mac.Replace(':', '-'));
    /// <summary>The PF index: the leased VF indices of one PF, one per line.</summary>
    public string PfIndexFile(string pfPci) => System.IO.Path.Join(Path, "pfs", pfPci);
}

/// <summary>Leases read from the state directory, one file per VF; a corrupt file is reported, never ignored.</summary>
public sealed class LeaseStore(StateDir state) : ILeaseView, Host.ILeaseStore
{
    public StateDir State { get; } = state;

    public bool IsLeased(string pci) => File.Exists(State.LeaseFile(pci));

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
            var lease = System.Text.Json.JsonSerializer.Deserialize(bytes, LeaseJson.Default.Lease);
            if (lease is null || lease.Pci != pci || lease.Version != 1) throw new System.Text.Json.JsonException("unexpected content");
            return lease;
        }
        catch (System.Text.Json.JsonException e)
        {
            throw new VmNetException(
                $"the lease file {file} is corrupt ({e.Message}); VmNet will not guess who owns VF {pci}. " +
                "Inspect it, then remove it only if no VM uses that VF", ExitCodes.Failure);
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
