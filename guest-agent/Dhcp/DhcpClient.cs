using System.Net;
using System.Text;
using VmNet.Contract;
using VmNet.GuestAgent.Net;

namespace VmNet.GuestAgent.Dhcp;

/// <summary>Sends and receives IPv4 packets on one link below the kernel's IP stack (the client has no address yet).</summary>
public interface IDhcpTransport : IDisposable
{
    /// <summary>Sends an IPv4 packet in one Ethernet frame to <paramref name="destinationMac"/>.</summary>
    void Send(byte[] packet, byte[] destinationMac);
    /// <summary>The next IPv4 packet received and the MAC it came from, or null when none came within <paramref name="timeout"/>.</summary>
    (byte[] Packet, byte[] SourceMac)? Receive(TimeSpan timeout, CancellationToken cancel);
}

/// <summary>The time, and waiting (tests move a fake clock instead of sleeping).</summary>
public interface IDhcpClock
{
    DateTimeOffset Now { get; }
    /// <summary>Waits; false when <paramref name="cancel"/> fired first.</summary>
    bool Sleep(TimeSpan duration, CancellationToken cancel);
}

public sealed class SystemDhcpClock : IDhcpClock
{
    public DateTimeOffset Now => DateTimeOffset.UtcNow;
    public bool Sleep(TimeSpan duration, CancellationToken cancel) =>
        !cancel.WaitHandle.WaitOne(duration == Timeout.InfiniteTimeSpan ? duration : duration < TimeSpan.Zero ? TimeSpan.Zero : duration);
}

/// <summary>
/// Who the client is to the server. The bond's MAC follows its active member (<c>fail_over_mac=active</c>), so the
/// client names itself by something that does not move: the first member's MAC, as <c>chaddr</c> and as the client
/// identifier (option 61, type 1). Servers that key leases by either keep the lease across a failover; replies are
/// asked for by broadcast, since after a failover no VF answers to the first member's MAC.
/// </summary>
public sealed record DhcpIdentity(byte[] HardwareAddress, string? Hostname)
{
    public byte[] ClientId => [1, .. HardwareAddress];

    public static DhcpIdentity For(NetworkConfig network, string? hostname)
    {
        Mac.TryNormalize(network.Members[0].Mac, out var mac);
        return new DhcpIdentity(Convert.FromHexString(mac.Replace(":", "")), hostname);
    }
}

/// <summary>A lease as the server's DHCPACK gave it.</summary>
public sealed record DhcpLease(IPAddress Address, int PrefixLength, IPAddress Server, byte[] ServerMac, IReadOnlyList<IPAddress> Routers,
    IReadOnlyList<IPAddress> Dns, string? Domain, TimeSpan Duration, TimeSpan Renewal, TimeSpan Rebinding, DateTimeOffset Acquired)
{
    /// <summary>Lease time 0xffffffff: the address never expires.</summary>
    public static readonly TimeSpan Infinite = TimeSpan.FromSeconds(uint.MaxValue);

    public Cidr Cidr => new(Address, PrefixLength);
    public bool IsInfinite => Duration >= Infinite;
    public DateTimeOffset RenewAt => Acquired + Renewal;
    public DateTimeOffset RebindAt => Acquired + Rebinding;
    public DateTimeOffset Expires => Acquired + Duration;

    /// <summary>What is left of the lease at <paramref name="now"/> (for the address's valid lifetime).</summary>
    public TimeSpan Left(DateTimeOffset now) => IsInfinite ? Infinite : Expires - now;
}

/// <summary>
/// A DHCPv4 client's states (RFC 2131 section 4.4): INIT-REBOOT for an address held before, INIT/SELECTING/REQUESTING
/// to get one, RENEWING (unicast to the server) from T1 and REBINDING (broadcast) from T2 until the lease expires.
/// Retransmissions back off exponentially with up to a second of random delay, as the RFC asks.
/// </summary>
public sealed class DhcpClient(IDhcpTransport transport, IDhcpClock clock, DhcpIdentity identity, Action<string> log, Random? random = null)
{
    private static readonly byte[] BroadcastMac = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
    private static readonly byte[] Requested = [DhcpMessage.OptSubnetMask, DhcpMessage.OptRouter, DhcpMessage.OptDns, DhcpMessage.OptDomainName,
        DhcpMessage.OptLeaseTime, DhcpMessage.OptServerId, DhcpMessage.OptRenewalTime, DhcpMessage.OptRebindingTime];
    private readonly Random _random = random ?? Random.Shared;

    /// <summary>The first wait for an answer; it doubles up to <see cref="MaxWait"/>.</summary>
    public TimeSpan FirstWait { get; init; } = TimeSpan.FromSeconds(2);
    public TimeSpan MaxWait { get; init; } = TimeSpan.FromSeconds(64);

    /// <summary>Gets a lease: first asks again for <paramref name="previous"/> (INIT-REBOOT), else discovers a server.
    /// Keeps trying until it has one; null only when <paramref name="cancel"/> fired.</summary>
    public DhcpLease? Acquire(IPAddress? previous, CancellationToken cancel)
    {
        var started = clock.Now;
        if (previous is not null)
        {
            var wait = FirstWait;
            for (var attempt = 0; attempt < 2 && !cancel.IsCancellationRequested; attempt++, wait *= 2)
            {
                var xid = NewXid();
                Send(Request(xid, started, previous, server: null, ciaddr: null), IPAddress.Any, IPAddress.Broadcast, BroadcastMac);
                var reply = Await(xid, wait, cancel, DhcpMessageType.Ack, DhcpMessageType.Nak);
                if (reply is { Message.Type: DhcpMessageType.Ack } ack && Lease(ack.Message, ack.Mac) is { } lease)
                {
                    log($"DHCP: {lease.Cidr} confirmed by {lease.Server} ({Describe(lease)})");
                    return lease;
                }
                if (reply is not null)
                {
                    log($"DHCP: {previous} refused by {reply.Value.Message.ServerId} ({reply.Value.Message.ServerMessage ?? "DHCPNAK"}); asking for a new address");
                    break;
                }
            }
        }
        var discoverWait = FirstWait;
        while (!cancel.IsCancellationRequested)
        {
            var xid = NewXid();
            Send(Message(DhcpMessageType.Discover, xid, started, previous is null ? [] : [(DhcpMessage.OptRequestedIp, previous.GetAddressBytes())]),
                IPAddress.Any, IPAddress.Broadcast, BroadcastMac);
            var offer = Await(xid, Jitter(discoverWait), cancel, DhcpMessageType.Offer);
            if (offer is null || offer.Value.Message.ServerId is not { } server || IPAddress.Any.Equals(offer.Value.Message.YourAddress))
            {
                if (discoverWait < MaxWait) discoverWait *= 2;
                continue;
            }
            discoverWait = FirstWait;
            var offered = offer.Value.Message.YourAddress;
            // REQUESTING: the same xid, the chosen server and its offered address, a few times.
            var wait = FirstWait;
            for (var attempt = 0; attempt < 3 && !cancel.IsCancellationRequested; attempt++, wait *= 2)
            {
                Send(Request(xid, started, offered, server, ciaddr: null), IPAddress.Any, IPAddress.Broadcast, BroadcastMac);
                var reply = Await(xid, Jitter(wait), cancel, DhcpMessageType.Ack, DhcpMessageType.Nak);
                if (reply is null) continue;
                if (reply.Value.Message.Type == DhcpMessageType.Ack && Lease(reply.Value.Message, reply.Value.Mac) is { } lease)
                {
                    log($"DHCP: {lease.Cidr} leased from {lease.Server} ({Describe(lease)})");
                    return lease;
                }
                log($"DHCP: {server} refused {offered} ({reply.Value.Message.ServerMessage ?? "DHCPNAK"}); discovering again");
                break;
            }
        }
        return null;
    }

    /// <summary>
    /// Extends <paramref name="lease"/>: waits for T1, asks its server (RENEWING), from T2 asks any server (REBINDING).
    /// Returns the extended lease, or null when the server refused it or it expired (the address must go), or when
    /// <paramref name="cancel"/> fired.
    /// </summary>
    public DhcpLease? Extend(DhcpLease lease, CancellationToken cancel)
    {
        if (lease.IsInfinite) { clock.Sleep(Timeout.InfiniteTimeSpan, cancel); return null; }
        if (!clock.Sleep(lease.RenewAt - clock.Now, cancel)) return null;
        var started = clock.Now;
        while (!cancel.IsCancellationRequested && clock.Now < lease.Expires)
        {
            var renewing = clock.Now < lease.RebindAt;
            var until = renewing ? lease.RebindAt : lease.Expires;
            var left = until - clock.Now;
            // RFC 2131 4.4.5: half the time left, but at least 60 s (or all that is left).
            var wait = TimeSpan.FromTicks(Math.Max(left.Ticks / 2, Math.Min(TimeSpan.FromSeconds(60).Ticks, left.Ticks)));
            var xid = NewXid();
            var request = Request(xid, started, requested: null, server: null, ciaddr: lease.Address);
            if (renewing) Send(request, lease.Address, lease.Server, lease.ServerMac);
            else Send(request, lease.Address, IPAddress.Broadcast, BroadcastMac);
            var reply = Await(xid, wait, cancel, DhcpMessageType.Ack, DhcpMessageType.Nak);
            if (reply is null) continue;
            if (reply.Value.Message.Type == DhcpMessageType.Nak)
            {
                log($"DHCP: {lease.Server} refused to extend {lease.Cidr} ({reply.Value.Message.ServerMessage ?? "DHCPNAK"})");
                return null;
            }
            if (Lease(reply.Value.Message, reply.Value.Mac) is { } extended)
            {
                log($"DHCP: {extended.Cidr} {(renewing ? "renewed" : "rebound")} with {extended.Server} ({Describe(extended)})");
                return extended;
            }
        }
        if (!cancel.IsCancellationRequested) log($"DHCP: the lease of {lease.Cidr} expired with no server answering");
        return null;
    }

    private DhcpMessage Request(uint xid, DateTimeOffset started, IPAddress? requested, IPAddress? server, IPAddress? ciaddr)
    {
        var options = new List<(byte, byte[])>();
        if (requested is not null) options.Add((DhcpMessage.OptRequestedIp, requested.GetAddressBytes()));
        if (server is not null) options.Add((DhcpMessage.OptServerId, server.GetAddressBytes()));
        return Message(DhcpMessageType.Request, xid, started, options) with { ClientAddress = ciaddr ?? IPAddress.Any };
    }

    private DhcpMessage Message(DhcpMessageType type, uint xid, DateTimeOffset started, IEnumerable<(byte, byte[])> extra)
    {
        var options = new List<(byte, byte[])>(extra) { (DhcpMessage.OptClientId, identity.ClientId) };
        if (type is DhcpMessageType.Discover or DhcpMessageType.Request)
        {
            options.Add((DhcpMessage.OptMaxSize, [0x05, 0xdc]));                            // 1500
            if (identity.Hostname is { Length: > 0 } h) options.Add((DhcpMessage.OptHostname, Encoding.ASCII.GetBytes(h)));
            options.Add((DhcpMessage.OptParameterList, Requested));
        }
        var secs = (clock.Now - started).TotalSeconds;
        return new DhcpMessage
        {
            Type = type, Xid = xid, Secs = (ushort)Math.Clamp(secs, 0, ushort.MaxValue), Broadcast = true,
            HardwareAddress = identity.HardwareAddress, Options = options,
        };
    }

    private void Send(DhcpMessage message, IPAddress source, IPAddress destination, byte[] mac) =>
        transport.Send(Ipv4Udp.Wrap(source, destination, Ipv4Udp.ClientPort, Ipv4Udp.ServerPort, message.Encode()), mac);

    /// <summary>The first reply to <paramref name="xid"/> of one of <paramref name="types"/> within <paramref name="timeout"/>.</summary>
    private (DhcpMessage Message, byte[] Mac)? Await(uint xid, TimeSpan timeout, CancellationToken cancel, params DhcpMessageType[] types)
    {
        var deadline = clock.Now + timeout;
        while (!cancel.IsCancellationRequested)
        {
            var left = deadline - clock.Now;
            if (left <= TimeSpan.Zero) return null;
            if (transport.Receive(left, cancel) is not { } received) continue;
            var payload = Ipv4Udp.Unwrap(received.Packet, Ipv4Udp.ClientPort, out _);
            if (payload is null || DhcpMessage.Parse(payload) is not { } m) continue;
            if (m.Op != DhcpMessage.BootReply || m.Xid != xid || !m.HardwareAddress.AsSpan().SequenceEqual(identity.HardwareAddress)) continue;
            if (m.Type is { } type && types.Contains(type)) return (m, received.SourceMac);
        }
        return null;
    }

    private DhcpLease? Lease(DhcpMessage ack, byte[] serverMac)
    {
        if (IPAddress.Any.Equals(ack.YourAddress) || ack.ServerId is not { } server) return null;
        var prefix = ack.SubnetMask is { } mask ? DhcpMessage.PrefixLength(mask) : null;
        prefix ??= ack.YourAddress.GetAddressBytes()[0] switch { < 128 => 8, < 192 => 16, _ => 24 };  // classful, as RFC 2132 leaves it
        var duration = ack.LeaseTime ?? TimeSpan.FromHours(1);
        var renewal = ack.RenewalTime ?? duration / 2;
        var rebinding = ack.RebindingTime ?? duration * 7 / 8;
        if (duration < DhcpLease.Infinite && !(renewal < rebinding && rebinding < duration)) (renewal, rebinding) = (duration / 2, duration * 7 / 8);
        return new DhcpLease(ack.YourAddress, prefix.Value, server, serverMac, ack.Routers, ack.Dns, ack.DomainName, duration, renewal, rebinding, clock.Now);
    }

    private static string Describe(DhcpLease lease) =>
        (lease.IsInfinite ? "infinite lease" : $"lease {lease.Duration.TotalSeconds:F0} s") +
        (lease.Routers.Count > 0 ? $", router {lease.Routers[0]}" : "") +
        (lease.Dns.Count > 0 ? $", DNS {string.Join(' ', lease.Dns)}" : "");

    private uint NewXid() => (uint)_random.NextInt64(1, uint.MaxValue);

    private TimeSpan Jitter(TimeSpan wait) => wait + TimeSpan.FromMilliseconds(_random.Next(-1000, 1000) * Math.Min(1, wait.TotalSeconds / 4));
}
