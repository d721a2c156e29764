using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;
using VmNet.Kernel;
using VmNet.Spec;

namespace VmNet.Leases;

/// <summary>
/// Reads lease files of format 1 (vmnet before the typed plan), so VFs leased by an older vmnet are still restored:
/// its <c>original</c> was a flat record and its <c>applied</c> settings were iproute2 argument lists. They are read
/// into the current <see cref="Lease"/> and written in the current format at the next change.
/// </summary>
internal static class LeaseFormatV1
{
    public static int VersionOf(byte[] json)
    {
        using var doc = JsonDocument.Parse(json);
        return doc.RootElement.ValueKind == JsonValueKind.Object && doc.RootElement.TryGetProperty("version", out var v) && v.TryGetInt32(out var n)
            ? n : throw new JsonException("no version");
    }

    public static Lease? Read(byte[] json)
    {
        var old = JsonSerializer.Deserialize(json, LeaseV1Json.Default.V1);
        if (old is null) return null;
        var applied = new VfSettings { Mac = old.Mac, Vlan = old.Vlan is { } v ? new VlanTag(v) : VlanTag.Untagged };
        foreach (var args in old.Applied ?? []) applied = applied.With(FromArguments(args));
        return new Lease(Lease.CurrentVersion, old.Vm, old.Network, old.Port, old.Pf, old.PfPci, old.Vf, old.Pci, old.Mac, applied,
            old.Original is { } o ? new VfState(new VfSettings
            {
                Mac = o.Mac, Vlan = new VlanTag(o.Vlan, o.Qos, Protocol(o.Proto)), SpoofCheck = o.SpoofChk, Trust = o.Trust,
                LinkState = LinkStateOf(o.LinkState), Rates = new TxRates(o.MaxTxRate, o.MinTxRate),
            }, o.Driver, o.DriverOverride, o.NetDev) : null,
            OwnerOf(old.Owner));
    }

    /// <summary>A format-1 owner; one this vmnet cannot judge (an unknown kind, a domain that is no UUID) is held by the definition, as format 1 held it.</summary>
    private static LeaseOwner? OwnerOf(OwnerV1? o) => o switch
    {
        null => null,
        { Kind: "starting", Pid: { } pid, Expires: { } expires } => new StartingOwner(pid, o.StartTime ?? 0, expires),
        { Kind: "process", Pid: { } pid } => new ProcessOwner(pid, o.StartTime ?? 0),
        { Kind: "libvirt", Uri: { } uri } when Guid.TryParse(o.Domain, out var uuid) => new LibvirtDomainOwner(uuid, uri),
        _ => new DefinitionOwner(),
    };

    /// <summary>The settings of one format-1 <c>applied</c> entry (the words after <c>ip link set dev PF vf N</c>).</summary>
    private static VfSettings FromArguments(IReadOnlyList<string> a)
    {
        var s = new VfSettings();
        string? Value(string key) { var i = a.ToList().IndexOf(key); return i >= 0 && i + 1 < a.Count ? a[i + 1] : null; }
        int Int(string key) => int.TryParse(Value(key), NumberStyles.None, CultureInfo.InvariantCulture, out var n) ? n : 0;
        if (Value("vlan") is not null) s = s with { Vlan = new VlanTag(Int("vlan"), Int("qos"), Protocol(Value("proto"))) };
        if (Value("mac") is { } mac) s = s with { Mac = mac };
        if (Value("trust") is { } t) s = s with { Trust = t == "on" };
        if (Value("spoofchk") is { } sc) s = s with { SpoofCheck = sc == "on" };
        if (Value("state") is { } st) s = s with { LinkState = LinkStateOf(st) };
        if (Value("max_tx_rate") is not null || Value("min_tx_rate") is not null) s = s with { Rates = new TxRates(Int("max_tx_rate"), Int("min_tx_rate")) };
        return s;
    }

    private static VlanProtocol Protocol(string? p) => p == "802.1ad" ? VlanProtocol.Dot1Ad : VlanProtocol.Dot1Q;

    private static LinkState LinkStateOf(string? s) => s switch { "enable" => LinkState.Enable, "disable" => LinkState.Disable, _ => LinkState.Auto };
}

internal sealed record OriginalV1(string Mac, int Vlan, int Qos, string Proto, bool? SpoofChk, bool? Trust, string LinkState,
    int MaxTxRate, int MinTxRate, string? Driver, string? DriverOverride, string? NetDev);

internal sealed record OwnerV1(string Kind, int? Pid = null, long? StartTime = null, DateTimeOffset? Expires = null, string? Domain = null, string? Uri = null);

internal sealed record V1(int Version, string Vm, string Network, int Port, string Pf, string PfPci, int Vf, string Pci, string Mac, int? Vlan,
    OriginalV1? Original = null, OwnerV1? Owner = null, IReadOnlyList<IReadOnlyList<string>>? Applied = null);

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase, AllowOutOfOrderMetadataProperties = true)]
[JsonSerializable(typeof(V1))]
internal sealed partial class LeaseV1Json : JsonSerializerContext;
