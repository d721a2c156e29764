using System.Text;
using System.Text.Json;
using VmNet.Kernel;
using VmNet.Spec;

namespace VmNet.Tests.Support;

/// <summary>
/// Reads and writes iproute2 6.1's JSON for <c>ip -j link show dev PF</c>: <c>vfinfo_list</c> with <c>vf</c>,
/// <c>address</c>, <c>vlan_list[{vlan,qos,protocol}]</c> (zero VLAN and qos omitted, the protocol only when not
/// 802.1Q), <c>rate{max_tx,min_tx}</c>, <c>spoofchk</c>, <c>link_state</c>, <c>trust</c>. Tests hold vmnet's netlink
/// reads against iproute2's on a real kernel with <see cref="Parse"/>, and print hosts for snapshots with <see cref="Render"/>.
/// </summary>
public static class IpLinkJson
{
    public static PfLink Parse(string json)
    {
        using var doc = JsonDocument.Parse(json);
        var link = doc.RootElement.ValueKind == JsonValueKind.Array ? doc.RootElement[0] : doc.RootElement;
        var flags = link.TryGetProperty("flags", out var f) ? f.EnumerateArray().Select(x => x.GetString()).ToList() : [];
        var vfs = new List<VfLink>();
        if (link.TryGetProperty("vfinfo_list", out var list))
        {
            foreach (var v in list.EnumerateArray())
            {
                int vlan, qos;
                var proto = VlanProtocol.Dot1Q;
                if (v.TryGetProperty("vlan_list", out var vl) && vl.GetArrayLength() > 0)
                {
                    var first = vl[0];
                    vlan = Int(first, "vlan");
                    qos = Int(first, "qos");
                    if (first.TryGetProperty("protocol", out var p) && p.GetString() == "802.1ad") proto = VlanProtocol.Dot1Ad;
                }
                else
                {
                    vlan = Int(v, "vlan");
                    qos = Int(v, "qos");
                }
                var rates = v.TryGetProperty("rate", out var rate) ? new TxRates(Int(rate, "max_tx"), Int(rate, "min_tx")) : new TxRates(0, 0);
                vfs.Add(new VfLink(Int(v, "vf"), new VfSettings
                {
                    Vlan = new VlanTag(vlan, qos, vlan == 0 ? VlanProtocol.Dot1Q : proto),
                    Mac = v.TryGetProperty("address", out var a) ? a.GetString() ?? VfSettings.ZeroMac : VfSettings.ZeroMac,
                    Rates = rates,
                    SpoofCheck = v.TryGetProperty("spoofchk", out var s) ? s.GetBoolean() : null,
                    Trust = v.TryGetProperty("trust", out var t) ? t.GetBoolean() : null,
                    LinkState = v.TryGetProperty("link_state", out var ls) ? LinkStateOf(ls.GetString()) : LinkState.Auto,
                }));
            }
        }
        return new PfLink(
            Name: link.TryGetProperty("ifname", out var n) ? n.GetString() ?? "" : "",
            Up: flags.Contains("UP"),
            Mtu: Int(link, "mtu"),
            Mac: link.TryGetProperty("address", out var mac) ? mac.GetString() ?? "" : "",
            Vfs: vfs);
    }

    /// <summary>The JSON iproute2 6.1 prints for <paramref name="pf"/>; every VF's settings must be known (as a kernel holds them).</summary>
    public static string Render(int ifindex, PfLink pf)
    {
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms))
        {
            w.WriteStartArray();
            w.WriteStartObject();
            w.WriteNumber("ifindex", ifindex);
            w.WriteString("ifname", pf.Name);
            w.WriteStartArray("flags");
            foreach (var flag in pf.Up ? new[] { "BROADCAST", "MULTICAST", "UP", "LOWER_UP" } : ["BROADCAST", "MULTICAST"])
                w.WriteStringValue(flag);
            w.WriteEndArray();
            w.WriteNumber("mtu", pf.Mtu);
            w.WriteString("qdisc", "mq");
            w.WriteString("operstate", pf.Up ? "UP" : "DOWN");
            w.WriteString("linkmode", "DEFAULT");
            w.WriteString("group", "default");
            w.WriteNumber("txqlen", 1000);
            w.WriteString("link_type", "ether");
            w.WriteString("address", pf.Mac);
            w.WriteString("broadcast", "ff:ff:ff:ff:ff:ff");
            w.WriteStartArray("vfinfo_list");
            foreach (var (index, s) in pf.Vfs)
            {
                var vlan = s.Vlan ?? VlanTag.Untagged;
                var rates = s.Rates ?? new TxRates(0, 0);
                w.WriteStartObject();
                w.WriteNumber("vf", index);
                w.WriteString("link_type", "ether");
                w.WriteString("address", s.Mac ?? VfSettings.ZeroMac);
                w.WriteString("broadcast", "ff:ff:ff:ff:ff:ff");
                w.WriteStartArray("vlan_list");
                w.WriteStartObject();
                if (vlan.Id != 0) w.WriteNumber("vlan", vlan.Id);
                if (vlan.Qos != 0) w.WriteNumber("qos", vlan.Qos);
                if (vlan.Id != 0 && vlan.Protocol != VlanProtocol.Dot1Q) w.WriteString("protocol", SpecNames.Of(vlan.Protocol));
                w.WriteEndObject();
                w.WriteEndArray();
                w.WriteStartObject("rate");
                w.WriteNumber("max_tx", rates.MaxMbps);
                w.WriteNumber("min_tx", rates.MinMbps);
                w.WriteEndObject();
                if (s.SpoofCheck is { } sc) w.WriteBoolean("spoofchk", sc);
                w.WriteString("link_state", SpecNames.Of(s.LinkState ?? LinkState.Auto));
                if (s.Trust is { } t) w.WriteBoolean("trust", t);
                w.WriteBoolean("query_rss_en", false);
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteEndObject();
            w.WriteEndArray();
        }
        return Encoding.UTF8.GetString(ms.ToArray());
    }

    private static LinkState LinkStateOf(string? text) => text switch
    {
        "enable" => LinkState.Enable,
        "disable" => LinkState.Disable,
        _ => LinkState.Auto,
    };

    private static int Int(JsonElement e, string name) =>
        e.TryGetProperty(name, out var p) && p.ValueKind == JsonValueKind.Number ? p.GetInt32() : 0;
}
