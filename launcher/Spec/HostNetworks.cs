namespace VmNet.Spec;

/// <summary>
/// A network the host defines by name (<c>networks:</c> in host.yaml; seed 002's port groups, Proxmox's resource
/// mappings): its ports and what the host fixes of its VFs. A null field is one the host leaves to the spec. A spec
/// that names it (<c>network: NAME</c>) gets these values and may only narrow them (a lower MTU or rate, spoof
/// checking on, trust off), never widen them.
/// </summary>
public sealed record HostNetwork(string Name, IReadOnlyList<string> Ports, VlanTag? Vlan, int? Mtu, bool? SpoofCheck, bool? Trust,
    LinkState? LinkState, int? MaxTxRate, int? MinTxRate)
{
    /// <summary>"vlan 40, mtu 9000, max 10000 Mbit/s": what the host fixes, as `vmnet host networks` shows it.</summary>
    public string Describe()
    {
        var parts = new List<string> { Vlan?.ToString() ?? "vlan: the spec's" };
        if (Mtu is { } m) parts.Add(FormattableString.Invariant($"mtu {m}"));
        if (SpoofCheck is { } sc) parts.Add($"spoofchk {(sc ? "on" : "off")}");
        if (Trust is { } t) parts.Add($"trust {(t ? "on" : "off")}");
        if (LinkState is { } ls) parts.Add($"state {SpecNames.Of(ls)}");
        if (MaxTxRate is { } max) parts.Add(FormattableString.Invariant($"max_tx_rate {max}"));
        if (MinTxRate is { } min) parts.Add(FormattableString.Invariant($"min_tx_rate {min}"));
        return string.Join(", ", parts);
    }
}

/// <summary>The networks a host config defines by name, and where it was read from (named in the spec's messages).</summary>
public sealed record HostNetworks(IReadOnlyDictionary<string, HostNetwork> ByName, string Source);
