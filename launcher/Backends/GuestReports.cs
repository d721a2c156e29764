using System.Globalization;
using System.Text;
using VmNet.Contract;

namespace VmNet.Backends;

/// <summary>
/// The launcher's border with the guest: everything a guest agent sends is untrusted. A report line is taken only
/// when it is a known event whose every list and string is there (no null member, network or address), within bounds
/// (<see cref="MaxNetworks"/>, <see cref="MaxMembers"/>, <see cref="MaxAddresses"/>, <see cref="MaxText"/>
/// characters a string), and its strings are made safe to print: control and format characters (escapes, carriage
/// returns, bidirectional overrides) become <c>\xNN</c> or <c>\uNNNN</c>. Anything else is refused whole.
/// </summary>
public static class GuestReports
{
    public const int MaxNetworks = 64, MaxMembers = 16, MaxAddresses = 64, MaxText = 256, MaxMessage = 1024;

    /// <summary>The event on <paramref name="line"/>, checked and made safe, or null when refused.</summary>
    public static AgentEvent? Accept(string line) => Check(AgentEvent.Parse(line));

    public static AgentEvent? Check(AgentEvent? e) => e switch
    {
        StartedEvent s => Text(s.Version) is { } version && s.Networks is >= 0 and <= MaxNetworks ? s with { Version = version } : null,
        NetworkReadyEvent r => Networks(r.Networks) is { } n ? r with { Networks = n } : null,
        StateEvent s => Networks(s.Networks) is { } n ? s with { Networks = n } : null,
        ActiveChangedEvent a => Text(a.Network) is { } net && Optional(a.Active, out var active) && Optional(a.Previous, out var previous)
            ? a with { Network = net, Active = active, Previous = previous } : null,
        LinkChangedEvent l => Text(l.Network) is { } net && Text(l.Member) is { } member && Text(l.Link) is { } link
            ? l with { Network = net, Member = member, Link = link } : null,
        AddressesChangedEvent x => Text(x.Network) is { } net && Texts(x.Addresses, MaxAddresses) is { } addresses
            ? x with { Network = net, Addresses = addresses } : null,
        ErrorEvent err => err.Message is null ? null : err with { Message = Safe(err.Message.Length > MaxMessage ? err.Message[..MaxMessage] + "..." : err.Message) },
        _ => null,
    };

    /// <summary>The bonds of a report, checked and made safe, or null when any is refused.</summary>
    public static IReadOnlyList<NetworkState>? Networks(IReadOnlyList<NetworkState?>? networks)
    {
        if (networks is null || networks.Count > MaxNetworks) return null;
        var list = new List<NetworkState>(networks.Count);
        foreach (var n in networks)
        {
            if (n is null || Text(n.Name) is not { } name || !Optional(n.Active, out var active) || n.Members is null || n.Members.Count > MaxMembers
                || Texts(n.Addresses, MaxAddresses) is not { } addresses || n.Mtu is < 0 or > 1 << 20)
                return null;
            var members = new List<MemberState>(n.Members.Count);
            foreach (var m in n.Members)
            {
                if (m is null || Text(m.Name) is not { } member || Text(m.Mac) is not { } mac || Text(m.Link) is not { } link) return null;
                members.Add(new MemberState(member, mac, link));
            }
            list.Add(new NetworkState(name, active, members, addresses, n.Mtu));
        }
        return list;
    }

    /// <summary>
    /// <paramref name="text"/> with every control and format character written as an escape, so that printing it
    /// cannot move the cursor, set a title, forge a line or reorder what follows.
    /// </summary>
    public static string Safe(string text)
    {
        if (!text.Any(Unsafe)) return text;
        var sb = new StringBuilder(text.Length + 8);
        foreach (var c in text)
        {
            if (!Unsafe(c)) sb.Append(c);
            else if (c <= '\u00ff') sb.Append("\\x").Append(((int)c).ToString("x2", CultureInfo.InvariantCulture));
            else sb.Append("\\u").Append(((int)c).ToString("x4", CultureInfo.InvariantCulture));
        }
        return sb.ToString();
    }

    private static bool Unsafe(char c) => char.IsControl(c)
        || CharUnicodeInfo.GetUnicodeCategory(c) is UnicodeCategory.Format or UnicodeCategory.LineSeparator or UnicodeCategory.ParagraphSeparator;

    private static string? Text(string? text) => text is null || text.Length > MaxText ? null : Safe(text);

    private static bool Optional(string? text, out string? safe)
    {
        safe = text is null ? null : Text(text);
        return text is null || safe is not null;
    }

    private static List<string>? Texts(IReadOnlyList<string?>? texts, int max)
    {
        if (texts is null || texts.Count > max) return null;
        var list = new List<string>(texts.Count);
        foreach (var t in texts)
        {
            if (Text(t) is not { } safe) return null;
            list.Add(safe);
        }
        return list;
    }
}
