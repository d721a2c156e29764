using System.Net;
using VmNet.GuestAgent.Dhcp;

namespace VmNet.Tests.Agent;

/// <summary>The wire format: what the client sends parses as the RFC lays it out, and framing checksums hold.</summary>
public sealed class DhcpMessageTests
{
    [Fact]
    public void The_ip_header_checksum_is_the_internet_checksum()
    {
        // RFC 1071's worked example, as a header: 4500 0073 0000 4000 4011 [b861] c0a8 0001 c0a8 00c7.
        var header = Convert.FromHexString("450000730000400040110000c0a80001c0a800c7");

        Assert.Equal(0xb861, Ipv4Udp.Checksum(header, 0));
        header[10] = 0xb8; header[11] = 0x61;
        Assert.Equal(0, Ipv4Udp.Checksum(header, 0));
    }

    [Fact]
    public void A_wrapped_datagram_unwraps_and_a_flipped_bit_is_refused()
    {
        var payload = "hello dhcp"u8.ToArray();
        var packet = Ipv4Udp.Wrap(IPAddress.Parse("10.0.2.2"), IPAddress.Broadcast, 67, 68, payload);

        Assert.Equal(payload, Ipv4Udp.Unwrap(packet, 68, out var source));
        Assert.Equal(IPAddress.Parse("10.0.2.2"), source);
        Assert.Null(Ipv4Udp.Unwrap(packet, 67, out _));                 // another port
        var udp = (byte[])packet.Clone();
        udp[30] ^= 1;
        Assert.Null(Ipv4Udp.Unwrap(udp, 68, out _));                    // UDP checksum
        var ip = (byte[])packet.Clone();
        ip[8] ^= 1;
        Assert.Null(Ipv4Udp.Unwrap(ip, 68, out _));                     // header checksum
    }

    [Fact]
    public void A_discover_is_a_bootp_request_with_the_magic_cookie_and_its_options()
    {
        var m = new DhcpMessage
        {
            Type = DhcpMessageType.Discover, Xid = 0x12345678, Broadcast = true, HardwareAddress = [2, 0, 0, 0, 0x40, 0x11],
            Options = [(DhcpMessage.OptClientId, [1, 2, 0, 0, 0, 0x40, 0x11]), (DhcpMessage.OptHostname, "vm1"u8.ToArray())],
        };

        var bytes = m.Encode();

        Assert.Equal(300, bytes.Length);                                // BOOTP's minimum
        Assert.Equal(1, bytes[0]);                                      // BOOTREQUEST
        Assert.Equal([1, 6], bytes[1..3]);                              // Ethernet, 6-byte addresses
        Assert.Equal(Convert.FromHexString("12345678"), bytes[4..8]);
        Assert.Equal(Convert.FromHexString("8000"), bytes[10..12]);    // BROADCAST flag
        Assert.Equal(Convert.FromHexString("020000004011"), bytes[28..34]);
        Assert.Equal(Convert.FromHexString("63825363"), bytes[236..240]);
        Assert.Equal(Convert.FromHexString("350101"), bytes[240..243]); // option 53 first: DHCPDISCOVER
        Assert.Equal(Convert.FromHexString("3d07010200000040110c03766d31ff"), bytes[243..258]);
        var parsed = DhcpMessage.Parse(bytes)!;
        Assert.Equal(DhcpMessageType.Discover, parsed.Type);
        Assert.Equal(m.Xid, parsed.Xid);
        Assert.True(parsed.Broadcast);
        Assert.Equal(m.Options.Select(o => (o.Code, Convert.ToHexString(o.Value))), parsed.Options.Select(o => (o.Code, Convert.ToHexString(o.Value))));
    }

    [Fact]
    public void An_ack_gives_its_lease_fields_and_a_truncated_one_is_refused()
    {
        var ack = new DhcpMessage
        {
            Op = DhcpMessage.BootReply, Type = DhcpMessageType.Ack, YourAddress = IPAddress.Parse("10.0.2.15"),
            Options =
            [
                (DhcpMessage.OptServerId, [10, 0, 2, 2]), (DhcpMessage.OptSubnetMask, [255, 255, 255, 0]), (DhcpMessage.OptRouter, [10, 0, 2, 2]),
                (DhcpMessage.OptDns, [10, 0, 2, 3, 10, 0, 2, 4]), (DhcpMessage.OptLeaseTime, DhcpMessage.U32(86400)),
                (DhcpMessage.OptDomainName, "lab.example\0"u8.ToArray()),
            ],
        }.Encode();

        var m = DhcpMessage.Parse(ack)!;

        Assert.Equal(IPAddress.Parse("10.0.2.2"), m.ServerId);
        Assert.Equal(24, DhcpMessage.PrefixLength(m.SubnetMask!));
        Assert.Equal([IPAddress.Parse("10.0.2.2")], m.Routers);
        Assert.Equal([IPAddress.Parse("10.0.2.3"), IPAddress.Parse("10.0.2.4")], m.Dns);
        Assert.Equal(TimeSpan.FromDays(1), m.LeaseTime);
        Assert.Equal("lab.example", m.DomainName);
        Assert.Null(DhcpMessage.PrefixLength(IPAddress.Parse("255.0.255.0")));
        Assert.Null(DhcpMessage.Parse(ack.AsSpan(0, 250)[..243].ToArray().Concat(new byte[] { DhcpMessage.OptRouter, 8, 10 }).ToArray()));
    }
}

public sealed class FakeDhcpClock : IDhcpClock
{
    public DateTimeOffset Now { get; set; } = new(2026, 11, 24, 12, 0, 0, TimeSpan.Zero);
    public bool Sleep(TimeSpan duration, CancellationToken cancel)
    {
        if (duration > TimeSpan.Zero) Now += duration;
        return !cancel.IsCancellationRequested;
    }
}

/// <summary>A fake wire (for <see cref="DhcpClientTests"/>) that hands each sent message to <see cref="Answer"/> and queues what it returns.</summary>
public sealed class FakeDhcpWire(FakeDhcpClock clock) : IDhcpTransport
{
    private readonly Queue<byte[]> _replies = new();
    public List<(DateTimeOffset At, DhcpMessage Message, IPAddress Source, IPAddress Destination, string Mac)> Sent { get; } = [];
    public Func<DhcpMessage, IEnumerable<DhcpMessage>> Answer { get; set; } = _ => [];

    public void Send(byte[] packet, byte[] destinationMac)
    {
        var payload = Ipv4Udp.Unwrap(packet, 67, out var source)!;
        var m = DhcpMessage.Parse(payload)!;
        Sent.Add((clock.Now, m, source, new IPAddress(packet.AsSpan(16, 4)), Convert.ToHexString(destinationMac)));
        foreach (var reply in Answer(m))
            _replies.Enqueue(Ipv4Udp.Wrap(DhcpClientTests.Server, IPAddress.Broadcast, 67, 68, reply.Encode()));
    }

    public (byte[] Packet, byte[] SourceMac)? Receive(TimeSpan timeout, CancellationToken cancel)
    {
        if (_replies.TryDequeue(out var packet)) return (packet, DhcpClientTests.ServerMac);
        clock.Now += timeout;
        return null;
    }

    public void Dispose() { }
}

/// <summary>
/// The client's states against a scripted server on a fake wire and a fake clock (no waiting): INIT, SELECTING,
/// REQUESTING, INIT-REBOOT, RENEWING, REBINDING and expiry, with what it sends in each.
/// </summary>
public sealed class DhcpClientTests
{
    private static readonly byte[] Me = [2, 0, 0, 0, 0x40, 0x11];
    public static readonly byte[] ServerMac = [2, 0, 0, 0, 0, 2];
    public static readonly IPAddress Server = IPAddress.Parse("192.168.40.2");
    public static readonly IPAddress Offered = IPAddress.Parse("192.168.40.50");

    public static DhcpMessage Reply(DhcpMessage to, DhcpMessageType type, uint lease = 600) => new()
    {
        Op = DhcpMessage.BootReply, Type = type, Xid = to.Xid, HardwareAddress = to.HardwareAddress,
        YourAddress = type == DhcpMessageType.Nak ? IPAddress.Any : Offered,
        Options = type == DhcpMessageType.Nak ? [(DhcpMessage.OptServerId, Server.GetAddressBytes())] :
        [
            (DhcpMessage.OptServerId, Server.GetAddressBytes()), (DhcpMessage.OptSubnetMask, [255, 255, 255, 0]),
            (DhcpMessage.OptRouter, Server.GetAddressBytes()), (DhcpMessage.OptLeaseTime, DhcpMessage.U32(lease)),
        ],
    };

    /// <summary>A server that offers <see cref="Offered"/> and acknowledges every request for it.</summary>
    public static IEnumerable<DhcpMessage> Willing(DhcpMessage m) => m.Type switch
    {
        DhcpMessageType.Discover => [Reply(m, DhcpMessageType.Offer)],
        DhcpMessageType.Request => [Reply(m, DhcpMessageType.Ack)],
        _ => [],
    };

    private readonly FakeDhcpClock _clock = new();
    private readonly List<string> _log = [];
    private readonly FakeDhcpWire _wire;
    private readonly DhcpClient _client;

    public DhcpClientTests()
    {
        _wire = new FakeDhcpWire(_clock);
        _client = new DhcpClient(_wire, _clock, new DhcpIdentity(Me, "vm1"), _log.Add, new Random(7));
    }

    [Fact]
    public void Discover_offer_request_ack_gives_the_lease_and_every_message_names_the_client_stably()
    {
        _wire.Answer = Willing;

        var lease = _client.Acquire(null, TestContext.Current.CancellationToken)!;

        Assert.Equal("192.168.40.50/24", lease.Cidr.ToString());
        Assert.Equal([Server], lease.Routers);
        Assert.Equal(TimeSpan.FromSeconds(300), lease.Renewal);
        Assert.Equal(TimeSpan.FromSeconds(525), lease.Rebinding);
        Assert.Equal(Convert.ToHexString(ServerMac), Convert.ToHexString(lease.ServerMac));
        Assert.Equal([DhcpMessageType.Discover, DhcpMessageType.Request], _wire.Sent.Select(s => s.Message.Type!.Value));
        var request = _wire.Sent[1].Message;
        Assert.Equal(_wire.Sent[0].Message.Xid, request.Xid);
        Assert.Equal(Server, new IPAddress(request.Option(DhcpMessage.OptServerId)!));
        Assert.Equal(Offered, new IPAddress(request.Option(DhcpMessage.OptRequestedIp)!));
        Assert.All(_wire.Sent, s =>
        {
            Assert.Equal("0102000000401" + "1", Convert.ToHexString(s.Message.Option(DhcpMessage.OptClientId)!));
            Assert.Equal(Me, s.Message.HardwareAddress);
            Assert.True(s.Message.Broadcast);
            Assert.Equal(IPAddress.Any, s.Source);
            Assert.Equal(IPAddress.Broadcast, s.Destination);
            Assert.Equal("FFFFFFFFFFFF", s.Mac);
        });
        Assert.Contains("DHCP: 192.168.40.50/24 leased from 192.168.40.2 (lease 600 s, router 192.168.40.2)", _log);
    }

    [Fact]
    public void With_no_server_it_retransmits_with_doubling_waits_up_to_64_s()
    {
        using var cancel = new CancellationTokenSource();
        _wire.Answer = m => { if (_wire.Sent.Count == 9) cancel.Cancel(); return []; };

        Assert.Null(_client.Acquire(null, cancel.Token));

        var gaps = _wire.Sent.Zip(_wire.Sent.Skip(1), (a, b) => (b.At - a.At).TotalSeconds).ToList();
        Assert.All(_wire.Sent, s => Assert.Equal(DhcpMessageType.Discover, s.Message.Type));
        Assert.All(gaps.Zip([2, 4, 8, 16, 32, 64, 64, 64]), p => Assert.InRange(p.First, p.Second - 1, p.Second + 1));
    }

    [Fact]
    public void A_remembered_address_is_asked_for_first_and_a_nak_sends_the_client_back_to_discover()
    {
        _wire.Answer = m => m.Type == DhcpMessageType.Request && m.Option(DhcpMessage.OptServerId) is null
            ? [Reply(m, DhcpMessageType.Nak)]
            : Willing(m);

        var lease = _client.Acquire(IPAddress.Parse("192.168.40.99"), TestContext.Current.CancellationToken)!;

        Assert.Equal(Offered, lease.Address);
        Assert.Equal([DhcpMessageType.Request, DhcpMessageType.Discover, DhcpMessageType.Request], _wire.Sent.Select(s => s.Message.Type!.Value));
        Assert.Equal(IPAddress.Parse("192.168.40.99"), new IPAddress(_wire.Sent[0].Message.Option(DhcpMessage.OptRequestedIp)!));
        Assert.Null(_wire.Sent[0].Message.Option(DhcpMessage.OptServerId));     // INIT-REBOOT names no server
        Assert.Contains(_log, l => l.Contains("192.168.40.99 refused by 192.168.40.2"));
    }

    /// <summary>A lease from the willing server, with what the client sent for it forgotten.</summary>
    private DhcpLease Leased()
    {
        _wire.Answer = Willing;
        var lease = _client.Acquire(null, TestContext.Current.CancellationToken)!;
        _wire.Sent.Clear();
        return lease;
    }

    [Fact]
    public void At_t1_it_renews_with_its_server_by_unicast_and_gets_the_lease_extended()
    {
        var lease = Leased();

        var extended = _client.Extend(lease, TestContext.Current.CancellationToken)!;

        var renew = Assert.Single(_wire.Sent);
        Assert.Equal(lease.RenewAt, renew.At);
        Assert.Equal(DhcpMessageType.Request, renew.Message.Type);
        Assert.Equal(Offered, renew.Message.ClientAddress);
        Assert.Null(renew.Message.Option(DhcpMessage.OptServerId));
        Assert.Null(renew.Message.Option(DhcpMessage.OptRequestedIp));
        Assert.Equal((Offered, Server, Convert.ToHexString(ServerMac)), (renew.Source, renew.Destination, renew.Mac));
        Assert.Equal(lease.RenewAt, extended.Acquired);
        Assert.Contains(_log, l => l.StartsWith("DHCP: 192.168.40.50/24 renewed with 192.168.40.2"));
    }

    [Fact]
    public void When_its_server_is_silent_it_rebinds_by_broadcast_at_t2_and_when_no_one_answers_the_lease_expires()
    {
        var lease = Leased();
        _wire.Answer = _ => [];

        var extended = _client.Extend(lease, TestContext.Current.CancellationToken);

        Assert.Null(extended);
        Assert.Equal(lease.Expires, _clock.Now);
        var renewing = _wire.Sent.Where(s => s.At < lease.RebindAt).ToList();
        var rebinding = _wire.Sent.Where(s => s.At >= lease.RebindAt).ToList();
        Assert.NotEmpty(renewing);
        Assert.All(renewing, s => Assert.Equal((Server, Convert.ToHexString(ServerMac)), (s.Destination, s.Mac)));
        Assert.NotEmpty(rebinding);
        Assert.All(rebinding, s => Assert.Equal((IPAddress.Broadcast, "FFFFFFFFFFFF", Offered), (s.Destination, s.Mac, s.Message.ClientAddress)));
        // Half the time left each time, at least 60 s or what is left: T1 300 s, T2 525 s, lease 600 s.
        Assert.Equal([0, 112.5, 172.5], renewing.Select(s => (s.At - lease.RenewAt).TotalSeconds));
        Assert.Equal([225, 285], rebinding.Select(s => (s.At - lease.RenewAt).TotalSeconds));
        Assert.Contains(_log, l => l == "DHCP: the lease of 192.168.40.50/24 expired with no server answering");
    }

    [Fact]
    public void A_nak_to_a_renewal_ends_the_lease()
    {
        var lease = Leased();
        _wire.Answer = m => [Reply(m, DhcpMessageType.Nak)];

        Assert.Null(_client.Extend(lease, TestContext.Current.CancellationToken));
        Assert.Contains(_log, l => l.StartsWith("DHCP: 192.168.40.2 refused to extend 192.168.40.50/24"));
    }

    [Fact]
    public void Replies_for_another_transaction_or_client_are_ignored()
    {
        _wire.Answer = m => m.Type == DhcpMessageType.Discover
            ? [Reply(m, DhcpMessageType.Offer) with { Xid = m.Xid + 1 }, Reply(m, DhcpMessageType.Offer) with { HardwareAddress = [2, 0, 0, 0, 0, 9] }, Reply(m, DhcpMessageType.Offer)]
            : Willing(m);

        var lease = _client.Acquire(null, TestContext.Current.CancellationToken)!;

        Assert.Equal(Offered, lease.Address);
        Assert.Equal(2, _wire.Sent.Count);
    }
}
