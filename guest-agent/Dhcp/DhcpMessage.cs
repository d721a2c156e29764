using System.Buffers.Binary;
using System.Net;
using System.Text;

namespace VmNet.GuestAgent.Dhcp;

public enum DhcpMessageType : byte { Discover = 1, Offer = 2, Request = 3, Decline = 4, Ack = 5, Nak = 6, Release = 7, Inform = 8 }

/// <summary>
/// One DHCPv4 message (RFC 2131 over the BOOTP layout of RFC 951, options of RFC 2132): the fixed 236-byte header,
/// the magic cookie, then type-length-value options. Only what a client sends and reads is modelled.
/// </summary>
public sealed record DhcpMessage
{
    public const byte BootRequest = 1, BootReply = 2;
    public const byte OptSubnetMask = 1, OptRouter = 3, OptDns = 6, OptHostname = 12, OptDomainName = 15, OptMtu = 26,
        OptRequestedIp = 50, OptLeaseTime = 51, OptMessageType = 53, OptServerId = 54, OptParameterList = 55,
        OptMessage = 56, OptMaxSize = 57, OptRenewalTime = 58, OptRebindingTime = 59, OptClientId = 61, OptEnd = 255, OptPad = 0;
    private const uint MagicCookie = 0x63825363;
    private const int HeaderLength = 236;

    public byte Op { get; init; } = BootRequest;
    public uint Xid { get; init; }
    public ushort Secs { get; init; }
    /// <summary>The BROADCAST flag: the client asks the server to broadcast its replies.</summary>
    public bool Broadcast { get; init; }
    public IPAddress ClientAddress { get; init; } = IPAddress.Any;     // ciaddr
    public IPAddress YourAddress { get; init; } = IPAddress.Any;       // yiaddr
    public IPAddress ServerAddress { get; init; } = IPAddress.Any;     // siaddr
    public IPAddress RelayAddress { get; init; } = IPAddress.Any;      // giaddr
    public byte[] HardwareAddress { get; init; } = new byte[6];        // chaddr (Ethernet)
    /// <summary>Options in the order they are written; option 53 (the message type) is written first from <see cref="Type"/>.</summary>
    public IReadOnlyList<(byte Code, byte[] Value)> Options { get; init; } = [];
    public DhcpMessageType? Type { get; init; }

    public byte[]? Option(byte code) => Options.FirstOrDefault(o => o.Code == code).Value;

    public IPAddress? ServerId => Address(Option(OptServerId));
    public IPAddress? SubnetMask => Address(Option(OptSubnetMask));
    public IReadOnlyList<IPAddress> Routers => Addresses(Option(OptRouter));
    public IReadOnlyList<IPAddress> Dns => Addresses(Option(OptDns));
    public string? DomainName => Option(OptDomainName) is { } d ? Encoding.ASCII.GetString(d).TrimEnd('\0') : null;
    public string? ServerMessage => Option(OptMessage) is { } m ? Encoding.ASCII.GetString(m) : null;
    public TimeSpan? LeaseTime => Seconds(Option(OptLeaseTime));
    public TimeSpan? RenewalTime => Seconds(Option(OptRenewalTime));
    public TimeSpan? RebindingTime => Seconds(Option(OptRebindingTime));

    public byte[] Encode()
    {
        var size = HeaderLength + 4 + 3 + Options.Sum(o => 2 + o.Value.Length) + 1;
        var b = new byte[Math.Max(size, 300)];                      // BOOTP's minimum: some relays drop shorter messages
        b[0] = Op;
        b[1] = 1;                                                   // htype: Ethernet
        b[2] = 6;                                                   // hlen
        BinaryPrimitives.WriteUInt32BigEndian(b.AsSpan(4), Xid);
        BinaryPrimitives.WriteUInt16BigEndian(b.AsSpan(8), Secs);
        BinaryPrimitives.WriteUInt16BigEndian(b.AsSpan(10), Broadcast ? (ushort)0x8000 : (ushort)0);
        ClientAddress.GetAddressBytes().CopyTo(b, 12);
        YourAddress.GetAddressBytes().CopyTo(b, 16);
        ServerAddress.GetAddressBytes().CopyTo(b, 20);
        RelayAddress.GetAddressBytes().CopyTo(b, 24);
        HardwareAddress.AsSpan(0, 6).CopyTo(b.AsSpan(28));
        BinaryPrimitives.WriteUInt32BigEndian(b.AsSpan(HeaderLength), MagicCookie);
        var at = HeaderLength + 4;
        if (Type is { } type) { b[at++] = OptMessageType; b[at++] = 1; b[at++] = (byte)type; }
        foreach (var (code, value) in Options)
        {
            if (value.Length > 255) throw new ArgumentException($"DHCP option {code} is longer than 255 bytes");
            b[at++] = code;
            b[at++] = (byte)value.Length;
            value.CopyTo(b, at);
            at += value.Length;
        }
        b[at] = OptEnd;
        return b;
    }

    /// <summary>The message in <paramref name="data"/>, or null when it is not a well-formed DHCP message for Ethernet.</summary>
    public static DhcpMessage? Parse(ReadOnlySpan<byte> data)
    {
        if (data.Length < HeaderLength + 4 || data[1] != 1 || data[2] != 6) return null;
        if (BinaryPrimitives.ReadUInt32BigEndian(data[HeaderLength..]) != MagicCookie) return null;
        var options = new List<(byte, byte[])>();
        DhcpMessageType? type = null;
        var at = HeaderLength + 4;
        while (at < data.Length)
        {
            var code = data[at++];
            if (code == OptPad) continue;
            if (code == OptEnd) break;
            if (at >= data.Length) return null;
            var length = data[at++];
            if (at + length > data.Length) return null;
            var value = data.Slice(at, length).ToArray();
            at += length;
            if (code == OptMessageType && length == 1) type = (DhcpMessageType)value[0];
            else options.Add((code, value));
        }
        return new DhcpMessage
        {
            Op = data[0],
            Xid = BinaryPrimitives.ReadUInt32BigEndian(data[4..]),
            Secs = BinaryPrimitives.ReadUInt16BigEndian(data[8..]),
            Broadcast = (BinaryPrimitives.ReadUInt16BigEndian(data[10..]) & 0x8000) != 0,
            ClientAddress = new IPAddress(data.Slice(12, 4)),
            YourAddress = new IPAddress(data.Slice(16, 4)),
            ServerAddress = new IPAddress(data.Slice(20, 4)),
            RelayAddress = new IPAddress(data.Slice(24, 4)),
            HardwareAddress = data.Slice(28, 6).ToArray(),
            Type = type,
            Options = options,
        };
    }

    /// <summary>The prefix length of a contiguous netmask, or null when the mask has holes.</summary>
    public static int? PrefixLength(IPAddress mask)
    {
        var bits = BinaryPrimitives.ReadUInt32BigEndian(mask.GetAddressBytes());
        var length = System.Numerics.BitOperations.PopCount(bits);
        return length == 0 || bits == uint.MaxValue << (32 - length) ? length : null;
    }

    public static byte[] U32(uint value)
    {
        var b = new byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(b, value);
        return b;
    }

    private static IPAddress? Address(byte[]? value) => value is { Length: 4 } ? new IPAddress(value) : null;

    private static IReadOnlyList<IPAddress> Addresses(byte[]? value) =>
        value is null || value.Length % 4 != 0 ? [] : value.Chunk(4).Select(c => new IPAddress(c)).ToList();

    private static TimeSpan? Seconds(byte[]? value) =>
        value is { Length: 4 } ? TimeSpan.FromSeconds(BinaryPrimitives.ReadUInt32BigEndian(value)) : null;
}

/// <summary>IPv4 + UDP framing for a client that has no address yet and talks through a packet socket (RFC 791, 768).</summary>
public static class Ipv4Udp
{
    public const ushort ClientPort = 68, ServerPort = 67;

    public static byte[] Wrap(IPAddress source, IPAddress destination, ushort sourcePort, ushort destinationPort, ReadOnlySpan<byte> payload)
    {
        var packet = new byte[20 + 8 + payload.Length];
        var ip = packet.AsSpan(0, 20);
        ip[0] = 0x45;                                               // version 4, header 5 words
        ip[1] = 0x10;                                               // DSCP: low delay, as ISC dhclient and udhcpc send
        BinaryPrimitives.WriteUInt16BigEndian(ip[2..], (ushort)packet.Length);
        ip[8] = 64;                                                 // TTL
        ip[9] = 17;                                                 // UDP
        source.GetAddressBytes().CopyTo(ip[12..]);
        destination.GetAddressBytes().CopyTo(ip[16..]);
        BinaryPrimitives.WriteUInt16BigEndian(ip[10..], Checksum(ip, 0));
        var udp = packet.AsSpan(20);
        BinaryPrimitives.WriteUInt16BigEndian(udp, sourcePort);
        BinaryPrimitives.WriteUInt16BigEndian(udp[2..], destinationPort);
        BinaryPrimitives.WriteUInt16BigEndian(udp[4..], (ushort)(8 + payload.Length));
        payload.CopyTo(udp[8..]);
        var checksum = Checksum(udp, PseudoHeaderSum(ip, udp.Length));
        BinaryPrimitives.WriteUInt16BigEndian(udp[6..], checksum == 0 ? (ushort)0xffff : checksum);
        return packet;
    }

    /// <summary>The UDP payload of an IPv4 packet sent to <paramref name="port"/>, or null (another packet, a fragment,
    /// a bad header checksum or a bad UDP checksum).</summary>
    public static byte[]? Unwrap(ReadOnlySpan<byte> packet, ushort port, out IPAddress source)
    {
        source = IPAddress.Any;
        if (packet.Length < 28 || packet[0] >> 4 != 4 || packet[9] != 17) return null;
        var headerLength = (packet[0] & 0x0f) * 4;
        var total = BinaryPrimitives.ReadUInt16BigEndian(packet[2..]);
        if (headerLength < 20 || total > packet.Length || total < headerLength + 8) return null;
        if ((BinaryPrimitives.ReadUInt16BigEndian(packet[6..]) & 0x3fff) != 0) return null;     // fragments
        if (Checksum(packet[..headerLength], 0) != 0) return null;
        var udp = packet[headerLength..total];
        if (BinaryPrimitives.ReadUInt16BigEndian(udp[2..]) != port) return null;
        var length = BinaryPrimitives.ReadUInt16BigEndian(udp[4..]);
        if (length < 8 || length > udp.Length) return null;
        udp = udp[..length];
        if (BinaryPrimitives.ReadUInt16BigEndian(udp[6..]) != 0 && Checksum(udp, PseudoHeaderSum(packet, length)) != 0) return null;
        source = new IPAddress(packet.Slice(12, 4));
        return udp[8..].ToArray();
    }

    private static uint PseudoHeaderSum(ReadOnlySpan<byte> ip, int udpLength)
    {
        uint sum = 0;
        for (var i = 12; i < 20; i += 2) sum += BinaryPrimitives.ReadUInt16BigEndian(ip[i..]);
        return sum + 17 + (uint)udpLength;
    }

    /// <summary>The Internet checksum (RFC 1071) of <paramref name="data"/> plus <paramref name="sum"/>; 0 over data that holds its checksum.</summary>
    public static ushort Checksum(ReadOnlySpan<byte> data, uint sum)
    {
        var i = 0;
        for (; i + 1 < data.Length; i += 2) sum += BinaryPrimitives.ReadUInt16BigEndian(data[i..]);
        if (i < data.Length) sum += (uint)data[i] << 8;
        while (sum >> 16 != 0) sum = (sum & 0xffff) + (sum >> 16);
        return (ushort)~sum;
    }
}
