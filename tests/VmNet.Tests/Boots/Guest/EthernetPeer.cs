using System.Buffers.Binary;
using System.Diagnostics;
using System.Net;
using System.Threading.Channels;

namespace VmNet.Tests.Boots.Guest;

/// <summary>
/// A host on a guest network, living in the test process: QEMU's <c>-netdev stream</c> hands it Ethernet frames
/// (each behind a 4-byte big-endian length). It answers ARP for its address, learns the guest's MAC from any ARP the
/// guest sends (gratuitous ARPs after a failover included) and pings the guest with ICMP echo requests.
/// Nothing leaves the machine. With several ports (one stream per emulated switch) it also joins the switches, as
/// an inter-switch link would: every frame that arrives on one port is passed on to the others, and the peer's own
/// frames go out on all of them. With a VLAN it tags what it sends and answers only frames tagged with that VLAN.
/// It answers echo requests to its address too. With <c>alsoOn</c> it is present with the same address on further
/// VLANs (as one router per VLAN would be): there it answers ARP and echo requests, tagged with the VLAN they came on.
/// </summary>
public sealed class EthernetPeer : IDisposable
{
    private readonly Stream[] _ports;
    private readonly Channel<byte[]>[] _outgoing;
    private readonly ushort? _vlan;
    private readonly HashSet<ushort> _alsoOn;
    private readonly Dictionary<ushort, int> _echoes = new();
    private readonly byte[] _mac;
    private readonly byte[] _ip;
    private readonly byte[] _guestIp;
    private readonly Stopwatch _clock;
    private readonly Dictionary<ushort, TimeSpan> _replies = new();
    private readonly CancellationTokenSource _cancel = new();
    private readonly ushort _icmpId;
    private byte[]? _guestMac;

    public EthernetPeer(Stream stream, string ip, string guestIp, byte id, Stopwatch clock)
        : this([stream], ip, guestIp, id, clock) { }

    public EthernetPeer(IReadOnlyList<Stream> ports, string ip, string guestIp, byte id, Stopwatch clock, ushort? vlan = null, IEnumerable<ushort>? alsoOn = null)
    {
        _alsoOn = [.. alsoOn ?? []];
        _ports = ports.ToArray();
        // One writer per port with a bounded queue that drops when full, as a switch port does: a port whose far end
        // stops reading (QEMU stops reading a stream netdev while its NIC cannot receive) must not stall the others.
        _outgoing = _ports.Select(_ => Channel.CreateBounded<byte[]>(new BoundedChannelOptions(512) { FullMode = BoundedChannelFullMode.DropWrite })).ToArray();
        _vlan = vlan;
        _mac = [0x02, 0x00, 0x00, 0x00, 0xfe, id];
        _ip = IPAddress.Parse(ip).GetAddressBytes();
        _guestIp = IPAddress.Parse(guestIp).GetAddressBytes();
        _clock = clock;
        _icmpId = (ushort)(0x5600 + id);
        for (var i = 0; i < _ports.Length; i++) { var port = i; _ = Task.Run(() => ReadLoop(port)); _ = Task.Run(() => WriteLoop(port)); }
    }

    /// <summary>Forgets the guest's MAC, so the next ping asks for it again (after the guest's bond was rebuilt).</summary>
    public void ForgetGuest() { lock (_replies) _guestMac = null; }

    /// <summary>The guest's MAC as the peer last learned it from an ARP, and how often it changed.</summary>
    public string? GuestMac { get { lock (_replies) return _guestMac is null ? null : Convert.ToHexString(_guestMac); } }
    public int GuestMacChanges { get; private set; }
    public int ArpRequestsFromGuest { get; private set; }
    public int FramesReceived { get; private set; }

    /// <summary>Every source MAC seen on this network (12 lower-case hex digits).</summary>
    public IReadOnlyCollection<string> SourceMacs { get { lock (_sources) return _sources.ToList(); } }
    private readonly HashSet<string> _sources = [];

    /// <summary>Echo requests to the peer's address that it answered on <paramref name="vlan"/> (0: untagged).</summary>
    public int EchoesAnswered(ushort vlan) { lock (_echoes) return _echoes.GetValueOrDefault(vlan); }

    public TimeSpan? ReplyTime(ushort seq) { lock (_replies) return _replies.TryGetValue(seq, out var t) ? t : null; }

    private async Task ReadLoop(int port)
    {
        var header = new byte[4];
        var stream = _ports[port];
        try
        {
            while (!_cancel.IsCancellationRequested)
            {
                await stream.ReadExactlyAsync(header, _cancel.Token);
                var frame = new byte[BinaryPrimitives.ReadUInt32BigEndian(header)];
                await stream.ReadExactlyAsync(frame, _cancel.Token);
                for (var other = 0; other < _ports.Length; other++) if (other != port) Write(other, frame);
                FramesReceived++;
                if (frame.Length >= 12) lock (_sources) _sources.Add(Convert.ToHexString(frame, 6, 6).ToLowerInvariant());
                ushort tag = 0;
                if (_vlan is { } vlan)
                {
                    if (frame.Length < 18 || BinaryPrimitives.ReadUInt16BigEndian(frame.AsSpan(12)) != 0x8100) continue;
                    tag = (ushort)(BinaryPrimitives.ReadUInt16BigEndian(frame.AsSpan(14)) & 0xfff);
                    if (tag != vlan && !_alsoOn.Contains(tag)) continue;
                    frame = [.. frame.AsSpan(0, 12), .. frame.AsSpan(16)];
                }
                Handle(frame, tag, main: tag == (_vlan ?? 0));
            }
        }
        catch (Exception e) when (e is IOException or OperationCanceledException or EndOfStreamException or ObjectDisposedException) { }
    }

    private void Handle(byte[] f, ushort tag, bool main)
    {
        if (f.Length < 42) return;
        var type = BinaryPrimitives.ReadUInt16BigEndian(f.AsSpan(12));
        if (type == 0x0806)
        {
            var op = BinaryPrimitives.ReadUInt16BigEndian(f.AsSpan(20));
            var senderMac = f[22..28];
            var senderIp = f.AsSpan(28, 4);
            var targetIp = f.AsSpan(38, 4);
            if (main && senderIp.SequenceEqual(_guestIp))
            {
                lock (_replies)
                {
                    if (_guestMac is not null && !_guestMac.AsSpan().SequenceEqual(senderMac)) GuestMacChanges++;
                    _guestMac = senderMac;
                }
            }
            if (op == 1 && targetIp.SequenceEqual(_ip))
            {
                if (main && senderIp.SequenceEqual(_guestIp)) ArpRequestsFromGuest++;
                Send(Arp(2, senderMac, senderMac, senderIp.ToArray()), tag);
            }
            return;
        }
        if (type == 0x0800 && f[23] == 1 && f.Length >= 42)
        {
            var ihl = (f[14] & 0xf) * 4;
            var icmp = 14 + ihl;
            if (f.Length < icmp + 8) return;
            if (f[icmp] == 8 && f.AsSpan(30, 4).SequenceEqual(_ip)) { AnswerEcho(f, icmp, tag); return; }
            if (!main || f[icmp] != 0 || BinaryPrimitives.ReadUInt16BigEndian(f.AsSpan(icmp + 4)) != _icmpId) return;
            var seq = BinaryPrimitives.ReadUInt16BigEndian(f.AsSpan(icmp + 6));
            lock (_replies) _replies.TryAdd(seq, _clock.Elapsed);
        }
    }

    private void AnswerEcho(byte[] request, int icmp, ushort tag)
    {
        var f = (byte[])request.Clone();
        request.AsSpan(6, 6).CopyTo(f);
        _mac.CopyTo(f, 6);
        request.AsSpan(30, 4).CopyTo(f.AsSpan(26));
        request.AsSpan(26, 4).CopyTo(f.AsSpan(30));
        f[22] = 64;
        BinaryPrimitives.WriteUInt16BigEndian(f.AsSpan(24), 0);
        BinaryPrimitives.WriteUInt16BigEndian(f.AsSpan(24), Checksum(f.AsSpan(14, icmp - 14)));
        var length = 14 + BinaryPrimitives.ReadUInt16BigEndian(f.AsSpan(16));
        f[icmp] = 0;
        BinaryPrimitives.WriteUInt16BigEndian(f.AsSpan(icmp + 2), 0);
        BinaryPrimitives.WriteUInt16BigEndian(f.AsSpan(icmp + 2), Checksum(f.AsSpan(icmp, Math.Min(length, f.Length) - icmp)));
        lock (_echoes) _echoes[tag] = _echoes.GetValueOrDefault(tag) + 1;
        Send(f[..Math.Min(length, f.Length)], tag);
    }

    private byte[] Arp(ushort op, byte[] destination, byte[] targetMac, byte[] targetIp)
    {
        var f = new byte[42];
        destination.CopyTo(f, 0);
        _mac.CopyTo(f, 6);
        BinaryPrimitives.WriteUInt16BigEndian(f.AsSpan(12), 0x0806);
        BinaryPrimitives.WriteUInt16BigEndian(f.AsSpan(14), 1);
        BinaryPrimitives.WriteUInt16BigEndian(f.AsSpan(16), 0x0800);
        f[18] = 6; f[19] = 4;
        BinaryPrimitives.WriteUInt16BigEndian(f.AsSpan(20), op);
        _mac.CopyTo(f, 22);
        _ip.CopyTo(f, 28);
        targetMac.CopyTo(f, 32);
        targetIp.CopyTo(f, 38);
        return f;
    }

    /// <summary>Asks who has the guest's address (broadcast).</summary>
    public void ArpForGuest() => Send(Arp(1, [0xff, 0xff, 0xff, 0xff, 0xff, 0xff], new byte[6], _guestIp));

    /// <summary>Sends one echo request; false when the guest's MAC is not known yet (an ARP request goes out instead).</summary>
    public bool Ping(ushort seq)
    {
        byte[]? guestMac;
        lock (_replies) guestMac = _guestMac;
        if (guestMac is null) { ArpForGuest(); return false; }
        var f = new byte[14 + 20 + 8 + 32];
        guestMac.CopyTo(f, 0);
        _mac.CopyTo(f, 6);
        BinaryPrimitives.WriteUInt16BigEndian(f.AsSpan(12), 0x0800);
        var ip = f.AsSpan(14, 20);
        ip[0] = 0x45;
        BinaryPrimitives.WriteUInt16BigEndian(ip[2..], (ushort)(20 + 8 + 32));
        BinaryPrimitives.WriteUInt16BigEndian(ip[4..], seq);
        ip[8] = 64; ip[9] = 1;
        _ip.CopyTo(ip[12..]);
        _guestIp.CopyTo(ip[16..]);
        BinaryPrimitives.WriteUInt16BigEndian(ip[10..], Checksum(ip));
        var icmp = f.AsSpan(34);
        icmp[0] = 8;
        BinaryPrimitives.WriteUInt16BigEndian(icmp[4..], _icmpId);
        BinaryPrimitives.WriteUInt16BigEndian(icmp[6..], seq);
        for (var i = 8; i < icmp.Length; i++) icmp[i] = (byte)i;
        BinaryPrimitives.WriteUInt16BigEndian(icmp[2..], Checksum(icmp));
        Send(f);
        return true;
    }

    /// <summary>Pings every <paramref name="interval"/> until cancelled; returns each sequence's send time.</summary>
    public async Task<List<(ushort Seq, TimeSpan Sent)>> PingUntil(TimeSpan interval, CancellationToken stop, ushort firstSeq = 1)
    {
        var sent = new List<(ushort, TimeSpan)>();
        var seq = firstSeq;
        var next = _clock.Elapsed;
        while (!stop.IsCancellationRequested)
        {
            if (Ping(seq)) sent.Add((seq++, _clock.Elapsed));
            next += interval;
            var wait = next - _clock.Elapsed;
            if (wait > TimeSpan.Zero) { try { await Task.Delay(wait, stop); } catch (OperationCanceledException) { } }
        }
        // The last pings' replies are still on their way (a round trip through TCG inside TCG took over 300 ms on a
        // busy machine): without this wait they counted as lost, and a CI run saw "3 of 20 lost" right after a failover.
        await Task.Delay(InFlight);
        return sent;
    }

    /// <summary>How long <see cref="PingUntil"/> waits after its last ping for the replies in flight.</summary>
    public static readonly TimeSpan InFlight = TimeSpan.FromMilliseconds(1500);

    /// <summary>Pings until the first reply; false after the timeout.</summary>
    public async Task<bool> Reaches(TimeSpan timeout, ushort seqBase = 40000)
    {
        var deadline = _clock.Elapsed + timeout;
        for (var seq = seqBase; _clock.Elapsed < deadline; seq++)
        {
            Ping(seq);
            await Task.Delay(100);
            lock (_replies) if (_replies.Keys.Any(k => k >= seqBase)) return true;
        }
        return false;
    }

    private void Send(byte[] frame) => Send(frame, _vlan ?? 0);

    private void Send(byte[] frame, ushort vlan)
    {
        if (vlan != 0)
        {
            var tag = new byte[4];
            BinaryPrimitives.WriteUInt16BigEndian(tag, 0x8100);
            BinaryPrimitives.WriteUInt16BigEndian(tag.AsSpan(2), vlan);
            frame = [.. frame.AsSpan(0, 12), .. tag, .. frame.AsSpan(12)];
        }
        for (var port = 0; port < _ports.Length; port++) Write(port, frame);
    }

    private void Write(int port, byte[] frame) => _outgoing[port].Writer.TryWrite(frame);

    private async Task WriteLoop(int port)
    {
        var buffer = new byte[4 + 65536];
        try
        {
            await foreach (var frame in _outgoing[port].Reader.ReadAllAsync(_cancel.Token))
            {
                BinaryPrimitives.WriteUInt32BigEndian(buffer, (uint)frame.Length);
                frame.CopyTo(buffer, 4);
                await _ports[port].WriteAsync(buffer.AsMemory(0, 4 + frame.Length), _cancel.Token);
            }
        }
        catch (Exception e) when (e is IOException or OperationCanceledException or ObjectDisposedException) { }
    }

    private static ushort Checksum(ReadOnlySpan<byte> data)
    {
        uint sum = 0;
        for (var i = 0; i + 1 < data.Length; i += 2) sum += BinaryPrimitives.ReadUInt16BigEndian(data[i..]);
        if (data.Length % 2 == 1) sum += (uint)data[^1] << 8;
        while (sum >> 16 != 0) sum = (sum & 0xffff) + (sum >> 16);
        return (ushort)~sum;
    }

    public void Dispose()
    {
        _cancel.Cancel();
        foreach (var port in _ports) port.Dispose();
    }
}
