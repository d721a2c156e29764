using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using VmNet.GuestAgent.Host;

namespace VmNet.GuestAgent.Dhcp;

/// <summary>
/// <see cref="IDhcpTransport"/> over an AF_PACKET datagram socket on one link (IPv4 frames only): the client sends and
/// receives before the link has an address, as dhclient and udhcpc do. A UDP socket bound to port 68 on the same link
/// takes the server's unicast replies once the address is set, so the kernel does not answer them with ICMP
/// port-unreachable; what it receives is never read (the packet socket has a copy).
/// </summary>
public sealed unsafe class PacketTransport : IDhcpTransport
{
    private const int SockaddrLlSize = 20, PacketOutgoing = 4;
    private readonly int _fd;
    private readonly int _ifindex;
    private readonly Socket? _sink;

    public PacketTransport(string link, int ifindex)
    {
        _ifindex = ifindex;
        _fd = Libc.socket(Libc.AF_PACKET, Libc.SOCK_DGRAM | Libc.SOCK_CLOEXEC, BinaryPrimitives.ReverseEndianness(Libc.ETH_P_IP));
        if (_fd < 0) throw new DhcpException($"opening a packet socket on `{link}` failed: {Libc.Describe(Marshal.GetLastPInvokeError())}");
        var address = Address(null);
        fixed (byte* a = address)
            if (Libc.bind(_fd, a, SockaddrLlSize) < 0)
            {
                var error = Marshal.GetLastPInvokeError();
                Libc.close(_fd);
                throw new DhcpException($"binding a packet socket to `{link}` failed: {Libc.Describe(error)}");
            }
        try
        {
            _sink = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
            _sink.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
            _sink.SetRawSocketOption(1, 25, [.. System.Text.Encoding.ASCII.GetBytes(link), 0]);   // SOL_SOCKET, SO_BINDTODEVICE
            _sink.Bind(new IPEndPoint(IPAddress.Any, Ipv4Udp.ClientPort));
        }
        catch (SocketException)
        {
            _sink?.Dispose();
            _sink = null;                                                                         // only the ICMP noise is lost
        }
    }

    public void Send(byte[] packet, byte[] destinationMac)
    {
        var address = Address(destinationMac);
        fixed (byte* p = packet)
        fixed (byte* a = address)
            if (Libc.sendto(_fd, p, packet.Length, 0, a, SockaddrLlSize) < 0)
                throw new DhcpException($"sending a DHCP message failed: {Libc.Describe(Marshal.GetLastPInvokeError())}");
    }

    public (byte[] Packet, byte[] SourceMac)? Receive(TimeSpan timeout, CancellationToken cancel)
    {
        var deadline = DateTime.UtcNow + timeout;
        var buffer = new byte[2048];
        var from = new byte[SockaddrLlSize];
        while (!cancel.IsCancellationRequested)
        {
            var left = deadline - DateTime.UtcNow;
            if (left <= TimeSpan.Zero) return null;
            // Short polls, so a cancelled agent stops within 200 ms.
            var poll = new Libc.PollFd { Fd = _fd, Events = Libc.POLLIN };
            var ready = Libc.poll(&poll, 1, (int)Math.Min(Math.Ceiling(left.TotalMilliseconds), 200));
            if (ready < 0 && Marshal.GetLastPInvokeError() == Libc.EINTR) continue;
            if (ready < 0) throw new DhcpException($"waiting for a DHCP answer failed: {Libc.Describe(Marshal.GetLastPInvokeError())}");
            if (ready == 0) continue;
            var length = SockaddrLlSize;
            nint n;
            fixed (byte* b = buffer)
            fixed (byte* a = from)
                n = Libc.recvfrom(_fd, b, buffer.Length, 0, a, &length);
            if (n < 0) throw new DhcpException($"receiving a DHCP answer failed: {Libc.Describe(Marshal.GetLastPInvokeError())}");
            if (from[10] == PacketOutgoing) continue;                                           // our own frames
            return (buffer.AsSpan(0, (int)n).ToArray(), from.AsSpan(12, 6).ToArray());
        }
        return null;
    }

    /// <summary>A struct sockaddr_ll for this link, IPv4, with the destination MAC when sending.</summary>
    private byte[] Address(byte[]? mac)
    {
        var a = new byte[SockaddrLlSize];
        BinaryPrimitives.WriteUInt16LittleEndian(a, Libc.AF_PACKET);                            // sll_family (host order)
        BinaryPrimitives.WriteUInt16BigEndian(a.AsSpan(2), Libc.ETH_P_IP);                       // sll_protocol (network order)
        BinaryPrimitives.WriteInt32LittleEndian(a.AsSpan(4), _ifindex);
        if (mac is not null)
        {
            a[11] = 6;                                                                          // sll_halen
            mac.CopyTo(a, 12);
        }
        return a;
    }

    public void Dispose()
    {
        Libc.close(_fd);
        _sink?.Dispose();
    }
}

public sealed class DhcpException(string message) : Exception(message);
