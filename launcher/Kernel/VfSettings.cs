using System.Globalization;
using VmNet.Spec;

namespace VmNet.Kernel;

/// <summary>One settable field of a VF, as the PF holds it (netlink IFLA_VF_*).</summary>
public enum VfField { Vlan, Trust, Mac, SpoofCheck, Rates, LinkState }

/// <summary>
/// A VF's settings as its PF holds them: VLAN (ID, qos, protocol), MAC, spoof checking, trust, link state and transmit
/// rates, each a typed value. A null field is "not set" in a change and "not reported" in a read-back (some drivers
/// report no spoofchk or trust). The one place that turns them into iproute2's words is <see cref="IpArguments"/>.
/// </summary>
public sealed record VfSettings
{
    public const string ZeroMac = "00:00:00:00:00:00";

    public VlanTag? Vlan { get; init; }
    public string? Mac { get; init; }
    public bool? SpoofCheck { get; init; }
    public bool? Trust { get; init; }
    public LinkState? LinkState { get; init; }
    public TxRates? Rates { get; init; }

    /// <summary>A VF as the kernel creates it: no MAC, untagged, spoof checking on, trust off, link auto, no rate limits.</summary>
    public static VfSettings Fresh { get; } = new()
    {
        Vlan = VlanTag.Untagged, Mac = ZeroMac, SpoofCheck = true, Trust = false,
        LinkState = Spec.LinkState.Auto, Rates = new TxRates(0, 0),
    };

    /// <summary>The order VmNet sets a VF's fields in, which works on mlx5, igb and ice (Incus, sriov-cni).</summary>
    public static readonly IReadOnlyList<VfField> ApplyOrder = [VfField.Vlan, VfField.Trust, VfField.Mac, VfField.SpoofCheck, VfField.Rates, VfField.LinkState];

    /// <summary>The order a VF is given back in: spoof checking before the MAC, so a zero MAC is never refused (ANCHORS.md).</summary>
    public static readonly IReadOnlyList<VfField> RestoreOrder = [VfField.Vlan, VfField.SpoofCheck, VfField.Mac, VfField.Trust, VfField.Rates, VfField.LinkState];

    [System.Text.Json.Serialization.JsonIgnore]
    public bool IsEmpty => Vlan is null && Mac is null && SpoofCheck is null && Trust is null && LinkState is null && Rates is null;

    public bool Has(VfField field) => field switch
    {
        VfField.Vlan => Vlan is not null,
        VfField.Trust => Trust is not null,
        VfField.Mac => Mac is not null,
        VfField.SpoofCheck => SpoofCheck is not null,
        VfField.Rates => Rates is not null,
        _ => LinkState is not null,
    };

    /// <summary>Only <paramref name="field"/> of these settings (empty when it is not set).</summary>
    public VfSettings Only(VfField field) => field switch
    {
        VfField.Vlan => new() { Vlan = Vlan },
        VfField.Trust => new() { Trust = Trust },
        VfField.Mac => new() { Mac = Mac },
        VfField.SpoofCheck => new() { SpoofCheck = SpoofCheck },
        VfField.Rates => new() { Rates = Rates },
        _ => new() { LinkState = LinkState },
    };

    /// <summary>One single-field change per set field, in <paramref name="order"/>.</summary>
    public IEnumerable<VfSettings> Split(IReadOnlyList<VfField> order) => order.Where(Has).Select(Only);

    /// <summary>These settings with every field <paramref name="top"/> sets replaced by its value.</summary>
    public VfSettings With(VfSettings top) => new()
    {
        Vlan = top.Vlan ?? Vlan, Mac = top.Mac ?? Mac, SpoofCheck = top.SpoofCheck ?? SpoofCheck, Trust = top.Trust ?? Trust,
        LinkState = top.LinkState ?? LinkState, Rates = top.Rates ?? Rates,
    };

    /// <summary>
    /// The values these settings have for the fields <paramref name="shape"/> sets: what puts back a change of those
    /// fields. A field not known here (not reported) is left out.
    /// </summary>
    public VfSettings For(VfSettings shape) => new()
    {
        Vlan = shape.Vlan is null ? null : Vlan, Mac = shape.Mac is null ? null : Mac,
        SpoofCheck = shape.SpoofCheck is null ? null : SpoofCheck, Trust = shape.Trust is null ? null : Trust,
        LinkState = shape.LinkState is null ? null : LinkState, Rates = shape.Rates is null ? null : Rates,
    };

    /// <summary>The fields of these settings that <paramref name="actual"/> does not hold (a field it does not report counts as held).</summary>
    public VfSettings Unmet(VfSettings actual) => new()
    {
        Vlan = Vlan is { } v && actual.Vlan is { } a && !SameVlan(v, a) ? Vlan : null,
        Mac = Mac is { } m && actual.Mac is { } am && !string.Equals(m, am, StringComparison.OrdinalIgnoreCase) ? Mac : null,
        SpoofCheck = SpoofCheck is { } s && actual.SpoofCheck is { } asc && s != asc ? SpoofCheck : null,
        Trust = Trust is { } t && actual.Trust is { } at && t != at ? Trust : null,
        LinkState = LinkState is { } l && actual.LinkState is { } al && l != al ? LinkState : null,
        Rates = Rates is { } r && actual.Rates is { } ar && r != ar ? Rates : null,
    };

    /// <summary>What differs, in words: "vlan is untagged, not vlan 40".</summary>
    public IReadOnlyList<string> Mismatches(VfSettings actual)
    {
        var unmet = Unmet(actual);
        var wrong = new List<string>();
        if (unmet.Vlan is { } v) wrong.Add($"it holds {actual.Vlan}, not {v}");
        if (unmet.Mac is { } m) wrong.Add($"it holds mac {actual.Mac}, not {m}");
        if (unmet.SpoofCheck is { } s) wrong.Add($"it holds spoofchk {OnOff(actual.SpoofCheck!.Value)}, not {OnOff(s)}");
        if (unmet.Trust is { } t) wrong.Add($"it holds trust {OnOff(actual.Trust!.Value)}, not {OnOff(t)}");
        if (unmet.LinkState is { } l) wrong.Add($"it holds state {SpecNames.Of(actual.LinkState!.Value)}, not {SpecNames.Of(l)}");
        if (unmet.Rates is { } r) wrong.Add(FormattableString.Invariant($"it holds max_tx_rate {actual.Rates!.Value.MaxMbps} min_tx_rate {actual.Rates.Value.MinMbps}, not {r.MaxMbps} and {r.MinMbps}"));
        return wrong;
    }

    /// <summary>The arguments after <c>ip link set dev PF vf N</c>: vlan (with qos and proto when tagged), trust, mac, spoofchk, rates, state.</summary>
    public IReadOnlyList<string> IpArguments()
    {
        var args = new List<string>();
        if (Vlan is { } v)
            args.AddRange(v.IsTagged ? ["vlan", Num(v.Id), "qos", Num(v.Qos), "proto", SpecNames.Of(v.Protocol)] : ["vlan", "0"]);
        if (Trust is { } t) args.AddRange(["trust", OnOff(t)]);
        if (Mac is { } m) args.AddRange(["mac", m]);
        if (SpoofCheck is { } s) args.AddRange(["spoofchk", OnOff(s)]);
        if (Rates is { } r) args.AddRange(["max_tx_rate", Num(r.MaxMbps), "min_tx_rate", Num(r.MinMbps)]);
        if (LinkState is { } l) args.AddRange(["state", SpecNames.Of(l)]);
        return args;
    }

    public override string ToString() => string.Join(' ', IpArguments());

    /// <summary>
    /// A VLAN read back equals the one set when the IDs match and, when tagged, qos and protocol too: an untagged VF
    /// is untagged whatever qos some drivers (ixgbe, i40e, ice) keep beside VLAN 0, and `vlan 0` cannot set one.
    /// </summary>
    public static bool SameVlan(VlanTag a, VlanTag b) => a.Id == b.Id && (!a.IsTagged || (a.Qos == b.Qos && a.Protocol == b.Protocol));

    public static string OnOff(bool b) => b ? "on" : "off";

    private static string Num(int n) => n.ToString(CultureInfo.InvariantCulture);
}
