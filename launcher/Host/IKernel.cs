using System.Globalization;
using System.Text;
using System.Text.Json;

namespace VmNet.Host;

/// <summary>
/// The kernel boundary: everything <c>vmnet</c> changes on a host goes through here. Two implementations share all
/// code above it: <see cref="RealKernel"/> (sysfs writes and iproute2 on "/") and <see cref="Sim.SimulatedKernel"/>
/// (the kernel's reactions applied to a host tree in a directory).
/// </summary>
public interface IKernel
{
    /// <summary>Where reads of /sys, /proc and /dev go (the same root the writes change).</summary>
    HostRoot Root { get; }

    /// <summary>Writes <paramref name="value"/> to a sysfs file in one write; a refusal throws <see cref="KernelException"/> with the real errno.</summary>
    Task WriteSysfsAsync(string hostPath, string value, CancellationToken ct);

    /// <summary><c>ip link set dev PF vf N SETTINGS...</c>; a refusal throws <see cref="KernelException"/>.</summary>
    Task SetVfAsync(string pf, int vf, IReadOnlyList<string> settings, CancellationToken ct);

    /// <summary>The output of <c>ip -j link show dev PF</c> (iproute2 6.1's JSON).</summary>
    Task<string> ShowLinkJsonAsync(string pf, CancellationToken ct);
}

/// <summary>The errno values the kernel answers VmNet's writes with.</summary>
public enum Errno
{
    EPERM = 1,
    ENOENT = 2,
    EIO = 5,
    EACCES = 13,
    EBUSY = 16,
    EEXIST = 17,
    ENODEV = 19,
    EINVAL = 22,
    ERANGE = 34,
    EPROTONOSUPPORT = 93,
    EOPNOTSUPP = 95,
}

/// <summary>A refusal by the kernel: the operation, the errno and the kernel's own words for it.</summary>
public sealed class KernelException(string operation, Errno errno, string? detail = null)
    : Exception($"{operation}: {detail ?? KernelErrors.Text(errno)}")
{
    public string Operation { get; } = operation;
    public Errno Errno { get; } = errno;
}

public static class KernelErrors
{
    /// <summary>strerror(3) of glibc, as the shell and iproute2 print it.</summary>
    public static string Text(Errno e) => e switch
    {
        Errno.EPERM => "Operation not permitted",
        Errno.ENOENT => "No such file or directory",
        Errno.EIO => "Input/output error",
        Errno.EACCES => "Permission denied",
        Errno.EBUSY => "Device or resource busy",
        Errno.EEXIST => "File exists",
        Errno.ENODEV => "No such device",
        Errno.EINVAL => "Invalid argument",
        Errno.ERANGE => "Numerical result out of range",
        Errno.EPROTONOSUPPORT => "Protocol not supported",
        Errno.EOPNOTSUPP => "Operation not supported",
        _ => $"errno {(int)e}",
    };

    /// <summary>The errno behind iproute2's "RTNETLINK answers: TEXT", or EIO when the words are unknown.</summary>
    public static Errno FromText(string stderr)
    {
        foreach (var e in Enum.GetValues<Errno>())
            if (stderr.Contains(Text(e), StringComparison.Ordinal)) return e;
        if (stderr.Contains("Cannot find device", StringComparison.Ordinal) || stderr.Contains("does not exist", StringComparison.Ordinal))
            return Errno.ENODEV;
        return Errno.EIO;
    }
}

/// <summary>One VF's settings as <c>ip -j link show</c> reports them (<c>vfinfo_list</c>).</summary>
public sealed record VfLinkInfo(
    int Vf,
    string Mac,
    int Vlan = 0,
    int Qos = 0,
    string Proto = VfLinkInfo.Dot1Q,
    int MaxTxRate = 0,
    int MinTxRate = 0,
    bool? SpoofChk = true,
    bool? Trust = false,
    string LinkState = "auto")
{
    public const string Dot1Q = "802.1Q";
    public const string ZeroMac = "00:00:00:00:00:00";
}

/// <summary>A PF as <c>ip -j link show dev PF</c> reports it.</summary>
public sealed record PfLinkInfo(string Name, bool Up, int Mtu, string Mac, IReadOnlyList<VfLinkInfo> Vfs)
{
    public VfLinkInfo? Vf(int index) => Vfs.FirstOrDefault(v => v.Vf == index);
}

/// <summary>
/// Reads and writes iproute2 6.1's JSON for <c>ip -j link show dev PF</c>: <c>vfinfo_list</c> with <c>vf</c>,
/// <c>address</c>, <c>vlan_list[{vlan,qos,protocol}]</c> (zero VLAN and qos omitted, the protocol only when not
/// 802.1Q), <c>rate{max_tx,min_tx}</c>, <c>spoofchk</c>, <c>link_state</c>, <c>trust</c>. The simulator renders with
/// <see cref="Render"/>; both kernels are read back with <see cref="Parse"/>.
/// </summary>
public static class IpLinkJson
{
    public static PfLinkInfo Parse(string json)
    {
        using var doc = JsonDocument.Parse(json);
        var link = doc.RootElement.ValueKind == JsonValueKind.Array ? doc.RootElement[0] : doc.RootElement;
        var flags = link.TryGetProperty("flags", out var f) ? f.EnumerateArray().Select(x => x.GetString()).ToList() : [];
        var vfs = new List<VfLinkInfo>();
        if (link.TryGetProperty("vfinfo_list", out var list))
        {
            foreach (var v in list.EnumerateArray())
            {
                int vlan = 0, qos = 0;
                var proto = VfLinkInfo.Dot1Q;
                if (v.TryGetProperty("vlan_list", out var vl) && vl.GetArrayLength() > 0)
                {
                    var first = vl[0];
                    vlan = Int(first, "vlan");
                    qos = Int(first, "qos");
                    if (first.TryGetProperty("protocol", out var p)) proto = p.GetString() ?? proto;
                }
                else
                {
                    vlan = Int(v, "vlan");
                    qos = Int(v, "qos");
                }
                int maxTx = 0, minTx = 0;
                if (v.TryGetProperty("rate", out var rate))
                {
                    maxTx = Int(rate, "max_tx");
                    minTx = Int(rate, "min_tx");
                }
                vfs.Add(new VfLinkInfo(
                    Vf: Int(v, "vf"),
                    Mac: v.TryGetProperty("address", out var a) ? a.GetString() ?? VfLinkInfo.ZeroMac : VfLinkInfo.ZeroMac,
                    Vlan: vlan, Qos: qos, Proto: proto, MaxTxRate: maxTx, MinTxRate: minTx,
                    SpoofChk: v.TryGetProperty("spoofchk", out var s) ? s.GetBoolean() : null,
                    Trust: v.TryGetProperty("trust", out var t) ? t.GetBoolean() : null,
                    LinkState: v.TryGetProperty("link_state", out var ls) ? ls.GetString() ?? "auto" : "auto"));
            }
        }
        return new PfLinkInfo(
            Name: link.TryGetProperty("ifname", out var n) ? n.GetString() ?? "" : "",
            Up: flags.Contains("UP"),
            Mtu: Int(link, "mtu"),
            Mac: link.TryGetProperty("address", out var mac) ? mac.GetString() ?? "" : "",
            Vfs: vfs);
    }

    public static string Render(int ifindex, PfLinkInfo pf)
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
            foreach (var v in pf.Vfs)
            {
                w.WriteStartObject();
                w.WriteNumber("vf", v.Vf);
                w.WriteString("link_type", "ether");
                w.WriteString("address", v.Mac);
                w.WriteString("broadcast", "ff:ff:ff:ff:ff:ff");
                w.WriteStartArray("vlan_list");
                w.WriteStartObject();
                if (v.Vlan != 0) w.WriteNumber("vlan", v.Vlan);
                if (v.Qos != 0) w.WriteNumber("qos", v.Qos);
                if (v.Vlan != 0 && v.Proto != VfLinkInfo.Dot1Q) w.WriteString("protocol", v.Proto);
                w.WriteEndObject();
                w.WriteEndArray();
                w.WriteStartObject("rate");
                w.WriteNumber("max_tx", v.MaxTxRate);
                w.WriteNumber("min_tx", v.MinTxRate);
                w.WriteEndObject();
                if (v.SpoofChk is { } s) w.WriteBoolean("spoofchk", s);
                w.WriteString("link_state", v.LinkState);
                if (v.Trust is { } t) w.WriteBoolean("trust", t);
                w.WriteBoolean("query_rss_en", false);
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteEndObject();
            w.WriteEndArray();
        }
        return Encoding.UTF8.GetString(ms.ToArray());
    }

    private static int Int(JsonElement e, string name) =>
        e.TryGetProperty(name, out var p) && p.ValueKind == JsonValueKind.Number ? p.GetInt32() : 0;

    internal static string Num(int n) => n.ToString(CultureInfo.InvariantCulture);
}
