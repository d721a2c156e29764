using System.Buffers.Binary;
using System.Runtime.InteropServices;

namespace VmNet.Netlink;

/// <summary>A failure of the netlink transport itself (the socket, send or receive), not the kernel's answer to a request.</summary>
public sealed class NetlinkException(string message) : Exception(message);

/// <summary>
/// An rtnetlink socket (AF_NETLINK, NETLINK_ROUTE) opened on first use: one request at a time, matched to its
/// answers by sequence number. The kernel's answer to a request is 0 or a negative errno, as rtnetlink gives it.
/// </summary>
public sealed unsafe partial class NetlinkSocket : IDisposable
{
    public const ushort NLMSG_ERROR = 2, NLMSG_DONE = 3;

    private const int AF_NETLINK = 16, SOCK_RAW = 3, SOCK_CLOEXEC = 0x80000, NETLINK_ROUTE = 0;
    private const int MSG_PEEK = 2, MSG_TRUNC = 0x20, EINTR = 4;

    private readonly Lock _lock = new();           // threads may share one socket; each request holds it to its end
    private int _fd = -1;
    private uint _seq;
    private byte[] _buffer = new byte[32768];

    /// <summary>Sends a request with NLM_F_ACK and returns the kernel's answer: 0 or a negative errno.</summary>
    public int Request(NetlinkMessage message)
    {
        using var _ = _lock.EnterScope();
        var result = 0;
        Exchange(message, (type, body) =>
        {
            if (type != NLMSG_ERROR) return false;
            result = body.Length >= 4 ? BinaryPrimitives.ReadInt32LittleEndian(body.Span) : -5;
            return true;
        });
        return result;
    }

    /// <summary>Sends a get request (no dump) and returns its one reply as (type, payload), or the negative errno.</summary>
    public (ushort Type, ReadOnlyMemory<byte> Body, int Error) Get(NetlinkMessage message)
    {
        using var _ = _lock.EnterScope();
        (ushort, ReadOnlyMemory<byte>, int) reply = default;
        Exchange(message, (type, body) =>
        {
            reply = type == NLMSG_ERROR
                ? (type, ReadOnlyMemory<byte>.Empty, body.Length >= 4 ? BinaryPrimitives.ReadInt32LittleEndian(body.Span) : -5)
                : (type, body.ToArray(), 0);
            return true;
        });
        return reply;
    }

    /// <summary>The messages of a dump request (NLM_F_DUMP), each as (type, payload after the header).</summary>
    public List<(ushort Type, byte[] Body)> Dump(NetlinkMessage message)
    {
        using var _ = _lock.EnterScope();
        var messages = new List<(ushort, byte[])>();
        Exchange(message, (type, body) =>
        {
            if (type == NLMSG_DONE) return true;
            if (type == NLMSG_ERROR)
                throw new NetlinkException($"a netlink dump failed: {Describe(-BinaryPrimitives.ReadInt32LittleEndian(body.Span))}");
            messages.Add((type, body.ToArray()));
            return false;
        });
        return messages;
    }

    public void Dispose()
    {
        using var _ = _lock.EnterScope();
        if (_fd >= 0) close(_fd);
        _fd = -1;
    }

    /// <summary>strerror(3) with the number: "No such device (errno 19)".</summary>
    public static string Describe(int errno) => $"{Marshal.PtrToStringUTF8(strerror(errno))} (errno {errno})";

    /// <summary>strerror(3) alone, as iproute2 prints it after "RTNETLINK answers: ".</summary>
    public static string Text(int errno) => Marshal.PtrToStringUTF8(strerror(errno)) ?? $"errno {errno}";

    private void Exchange(NetlinkMessage message, Func<ushort, ReadOnlyMemory<byte>, bool> handle)
    {
        if (_fd < 0)
        {
            _fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
            if (_fd < 0) throw new NetlinkException($"opening a netlink socket failed: {Describe(Marshal.GetLastPInvokeError())}");
        }
        var seq = ++_seq;
        var bytes = message.Bytes(seq);
        fixed (byte* p = bytes)
        {
            if (send(_fd, p, bytes.Length, 0) < 0)
                throw new NetlinkException($"netlink send failed: {Describe(Marshal.GetLastPInvokeError())}");
        }
        while (true)
        {
            var n = Receive();
            for (var offset = 0; offset + 16 <= n;)
            {
                var len = (int)BinaryPrimitives.ReadUInt32LittleEndian(_buffer.AsSpan(offset));
                var type = BinaryPrimitives.ReadUInt16LittleEndian(_buffer.AsSpan(offset + 4));
                var replySeq = BinaryPrimitives.ReadUInt32LittleEndian(_buffer.AsSpan(offset + 8));
                if (len < 16 || offset + len > n) break;
                if (replySeq == seq && handle(type, _buffer.AsMemory(offset + 16, len - 16))) return;
                offset += (len + 3) & ~3;
            }
        }
    }

    /// <summary>Receives one datagram whole: its size is peeked first (a PF with many VFs answers with more than 32 KiB).</summary>
    private int Receive()
    {
        while (true)
        {
            nint size;
            fixed (byte* p = _buffer) size = recv(_fd, p, _buffer.Length, MSG_PEEK | MSG_TRUNC);
            if (size < 0 && Marshal.GetLastPInvokeError() == EINTR) continue;
            if (size < 0) throw new NetlinkException($"netlink recv failed: {Describe(Marshal.GetLastPInvokeError())}");
            if (size > _buffer.Length) _buffer = new byte[Math.Max(size, _buffer.Length * 2)];
            nint n;
            fixed (byte* p = _buffer) n = recv(_fd, p, _buffer.Length, 0);
            if (n < 0 && Marshal.GetLastPInvokeError() == EINTR) continue;
            if (n < 0) throw new NetlinkException($"netlink recv failed: {Describe(Marshal.GetLastPInvokeError())}");
            return (int)n;
        }
    }

    [LibraryImport("libc", EntryPoint = "socket", SetLastError = true)]
    private static partial int socket(int domain, int type, int protocol);

    [LibraryImport("libc", EntryPoint = "send", SetLastError = true)]
    private static partial nint send(int fd, byte* buffer, nint length, int flags);

    [LibraryImport("libc", EntryPoint = "recv", SetLastError = true)]
    private static partial nint recv(int fd, byte* buffer, nint length, int flags);

    [LibraryImport("libc", EntryPoint = "close", SetLastError = true)]
    private static partial int close(int fd);

    [LibraryImport("libc", EntryPoint = "strerror")]
    private static partial nint strerror(int errnum);
}
