using System.Buffers.Binary;
using System.Text;

namespace VmNet.Netlink;

/// <summary>
/// One netlink request being built: the 16-byte <c>nlmsghdr</c> (length patched when sent), the family's fixed header
/// written by the caller, then attributes (<c>struct rtattr</c>: length, type, value, padded to 4 bytes), which may nest.
/// </summary>
public sealed class NetlinkMessage
{
    public const ushort NLM_F_REQUEST = 1, NLM_F_ACK = 4, NLM_F_REPLACE = 0x100, NLM_F_EXCL = 0x200, NLM_F_CREATE = 0x400, NLM_F_DUMP = 0x300;
    private readonly List<byte> _bytes = new(128);

    public NetlinkMessage(ushort type, ushort flags)
    {
        U32(0);                                    // nlmsg_len, patched by Bytes
        U16(type);
        U16(flags);
        U32(0);                                    // nlmsg_seq, set by the socket
        U32(0);                                    // nlmsg_pid: the kernel
    }

    public NetlinkMessage U8(byte v) { _bytes.Add(v); return this; }
    public NetlinkMessage U16(ushort v) { _bytes.Add((byte)v); _bytes.Add((byte)(v >> 8)); return this; }
    public NetlinkMessage U32(uint v) { U16((ushort)v); return U16((ushort)(v >> 16)); }
    public NetlinkMessage Raw(ReadOnlySpan<byte> data) { _bytes.AddRange(data); return this; }

    /// <summary>The fixed header of RTM_*LINK requests (<c>struct ifinfomsg</c>): AF_UNSPEC, type 0, index, flags, change mask.</summary>
    public NetlinkMessage IfInfo(int index, uint flags = 0, uint change = 0)
    {
        U8(0).U8(0).U16(0);                        // ifi_family AF_UNSPEC, pad, ifi_type
        return U32((uint)index).U32(flags).U32(change);
    }

    public NetlinkMessage Attr(ushort type, ReadOnlySpan<byte> value)
    {
        U16((ushort)(4 + value.Length));
        U16(type);
        _bytes.AddRange(value);
        return Pad();
    }

    /// <summary>A NUL-terminated string attribute (names of links).</summary>
    public NetlinkMessage AttrString(ushort type, string value)
    {
        var bytes = new byte[Encoding.UTF8.GetByteCount(value) + 1];
        Encoding.UTF8.GetBytes(value, bytes);
        return Attr(type, bytes);
    }

    public NetlinkMessage AttrU32(ushort type, uint value)
    {
        Span<byte> b = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(b, value);
        return Attr(type, b);
    }

    /// <summary>A struct of native-endian u32 fields (the IFLA_VF_* structs).</summary>
    public NetlinkMessage AttrU32s(ushort type, params ReadOnlySpan<uint> values)
    {
        var b = new byte[values.Length * 4];
        for (var i = 0; i < values.Length; i++) BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(i * 4), values[i]);
        return Attr(type, b);
    }

    /// <summary>
    /// Opens a nested attribute; its length is written by <see cref="EndNest"/>. Without NLA_F_NESTED, as iproute2
    /// sends IFLA_VFINFO_LIST (rtnetlink parses links liberally).
    /// </summary>
    public int BeginNest(ushort type)
    {
        var at = _bytes.Count;
        U16(0);
        U16(type);
        return at;
    }

    public NetlinkMessage EndNest(int at)
    {
        var length = _bytes.Count - at;
        _bytes[at] = (byte)length;
        _bytes[at + 1] = (byte)(length >> 8);
        return this;
    }

    private NetlinkMessage Pad()
    {
        while (_bytes.Count % 4 != 0) _bytes.Add(0);
        return this;
    }

    /// <summary>The message as sent: its length and <paramref name="seq"/> in the header.</summary>
    internal byte[] Bytes(uint seq)
    {
        var bytes = _bytes.ToArray();
        BinaryPrimitives.WriteUInt32LittleEndian(bytes, (uint)bytes.Length);
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(8), seq);
        return bytes;
    }
}

/// <summary>One attribute of a received message: its type (without the nested and byte-order flags) and value.</summary>
public readonly record struct NetlinkAttribute(ushort Type, ReadOnlyMemory<byte> Value)
{
    public uint U32(int offset = 0) => Value.Length >= offset + 4 ? BinaryPrimitives.ReadUInt32LittleEndian(Value.Span[offset..]) : 0;

    /// <summary>A NUL-terminated string value.</summary>
    public string String()
    {
        var span = Value.Span;
        var end = span.IndexOf((byte)0);
        return Encoding.UTF8.GetString(end < 0 ? span : span[..end]);
    }

    /// <summary>The attributes nested in this one.</summary>
    public IReadOnlyList<NetlinkAttribute> Nested() => Parse(Value);

    /// <summary>The attributes in <paramref name="data"/>; a truncated or malformed tail ends the list.</summary>
    public static IReadOnlyList<NetlinkAttribute> Parse(ReadOnlyMemory<byte> data)
    {
        var list = new List<NetlinkAttribute>();
        var span = data.Span;
        for (var at = 0; at + 4 <= span.Length;)
        {
            var length = BinaryPrimitives.ReadUInt16LittleEndian(span[at..]);
            var type = (ushort)(BinaryPrimitives.ReadUInt16LittleEndian(span[(at + 2)..]) & 0x3fff);
            if (length < 4 || at + length > span.Length) break;
            list.Add(new NetlinkAttribute(type, data.Slice(at + 4, length - 4)));
            at += (length + 3) & ~3;
        }
        return list;
    }
}
