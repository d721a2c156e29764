namespace VmNet.Tests.Boots.Guest;

internal static class Failover
{
    /// <summary>Pings sent in [start, end): how many got no reply, and the longest time without a reply.</summary>
    public static (int Sent, int Lost, TimeSpan Gap) Outage(EthernetPeer peer, List<(ushort Seq, TimeSpan Sent)> sent, TimeSpan start, TimeSpan end)
    {
        var window = sent.Where(s => s.Sent >= start && s.Sent < end).ToList();
        var lost = window.Count(s => peer.ReplyTime(s.Seq) is null);
        var replies = sent.Select(s => peer.ReplyTime(s.Seq)).OfType<TimeSpan>().Where(t => t >= start - TimeSpan.FromMilliseconds(200) && t < end).Order().ToList();
        var gap = TimeSpan.Zero;
        var previous = start;
        foreach (var t in replies) { if (t - previous > gap) gap = t - previous; previous = t; }
        return (window.Count, lost, gap);
    }
}
