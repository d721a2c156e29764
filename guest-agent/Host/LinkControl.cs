using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using VmNet.GuestAgent.Config;

namespace VmNet.GuestAgent.Host;

/// <summary>Link, address and route changes the agent cannot make through sysfs.</summary>
public interface ILinkControl
{
    /// <summary>Renames a link; the kernel allows it only while the link is down.</summary>
    void Rename(string name, string newName);
    void SetUp(string name, bool up);
    /// <summary>Adds the address; false when it was already there.</summary>
    bool AddAddress(string name, Cidr address);
    /// <summary>Adds a default route through the gateway on the link; false when it was already there.</summary>
    bool AddDefaultRoute(string name, IPAddress gateway);
}

public sealed class NetlinkException(string message) : Exception(message);

/// <summary><see cref="ILinkControl"/> over rtnetlink (a raw AF_NETLINK socket), no external programs.</summary>
public sealed unsafe class Netlink(IHostFiles host) : ILinkControl, IDisposable
{
    private const ushort RTM_NEWLINK = 16, RTM_NEWADDR = 20, RTM_NEWROUTE = 24, NLMSG_ERROR = 2;
    private const ushort NLM_F_REQUEST = 1, NLM_F_ACK = 4, NLM_F_EXCL = 0x200, NLM_F_CREATE = 0x400;
    private const ushort IFLA_IFNAME = 3, IFA_ADDRESS = 1, IFA_LOCAL = 2, IFA_BROADCAST = 4, RTA_OIF = 4, RTA_GATEWAY = 5;
    private const byte RT_TABLE_MAIN = 254, RTPROT_STATIC = 4, RTN_UNICAST = 1, IFA_F_NODAD = 2;

    private int _fd = -1;
    private uint _seq;

    public void Rename(string name, string newName)
    {
        var m = Begin(RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK);
        IfInfo(m, Index(name), 0, 0);
        AttrString(m, IFLA_IFNAME, newName);
        Check(Send(m), $"renaming `{name}` to `{newName}`", allowExists: false);
    }

    public void SetUp(string name, bool up)
    {
        var m = Begin(RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK);
        IfInfo(m, Index(name), up ? 1u : 0u, 1u);
        Check(Send(m), $"setting `{name}` {(up ? "up" : "down")}", allowExists: false);
    }

    public bool AddAddress(string name, Cidr address)
    {
        var v4 = address.Address.AddressFamily == AddressFamily.InterNetwork;
        var m = Begin(RTM_NEWADDR, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL);
        m.Add(v4 ? (byte)2 : (byte)10);           // ifa_family
        m.Add((byte)address.PrefixLength);         // ifa_prefixlen
        m.Add(v4 ? (byte)0 : IFA_F_NODAD);         // ifa_flags
        m.Add(0);                                  // ifa_scope: universe
        U32(m, (uint)Index(name));                 // ifa_index
        var bytes = address.Address.GetAddressBytes();
        Attr(m, IFA_LOCAL, bytes);
        Attr(m, IFA_ADDRESS, bytes);
        if (v4 && address.PrefixLength < 31)
        {
            var host = BinaryPrimitives.ReadUInt32BigEndian(bytes) | (uint.MaxValue >> address.PrefixLength);
            var broadcast = new byte[4];
            BinaryPrimitives.WriteUInt32BigEndian(broadcast, host);
            Attr(m, IFA_BROADCAST, broadcast);
        }
        return Check(Send(m), $"adding address {address} to `{name}`", allowExists: true);
    }

    public bool AddDefaultRoute(string name, IPAddress gateway)
    {
        var v4 = gateway.AddressFamily == AddressFamily.InterNetwork;
        var m = Begin(RTM_NEWROUTE, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL);
        m.AddRange([v4 ? (byte)2 : (byte)10, 0, 0, 0, RT_TABLE_MAIN, RTPROT_STATIC, 0, RTN_UNICAST]);
        U32(m, 0);                                 // rtm_flags
        Attr(m, RTA_GATEWAY, gateway.GetAddressBytes());
        var oif = new byte[4];
        BinaryPrimitives.WriteInt32LittleEndian(oif, Index(name));
        Attr(m, RTA_OIF, oif);
        return Check(Send(m), $"adding default route via {gateway} on `{name}`", allowExists: true);
    }

    public void Dispose()
    {
        if (_fd >= 0) Libc.close(_fd);
        _fd = -1;
    }

    private int Index(string name)
    {
        var text = host.Read($"sys/class/net/{name}/ifindex");
        return int.TryParse(text, out var index) ? index : throw new NetlinkException($"link `{name}` does not exist");
    }

    private List<byte> Begin(ushort type, ushort flags)
    {
        var m = new List<byte>(128);
        U32(m, 0);                                 // nlmsg_len, patched in Send
        U16(m, type);
        U16(m, flags);
        U32(m, ++_seq);
        U32(m, 0);                                 // nlmsg_pid: the kernel
        return m;
    }

    private static void IfInfo(List<byte> m, int index, uint flags, uint change)
    {
        m.AddRange([0, 0]);                        // ifi_family AF_UNSPEC, pad
        U16(m, 0);                                 // ifi_type
        U32(m, (uint)index);
        U32(m, flags);
        U32(m, change);
    }

    private static void AttrString(List<byte> m, ushort type, string value)
    {
        var bytes = new byte[value.Length + 1];
        System.Text.Encoding.ASCII.GetBytes(value, bytes);
        Attr(m, type, bytes);
    }

    private static void Attr(List<byte> m, ushort type, byte[] data)
    {
        U16(m, (ushort)(4 + data.Length));
        U16(m, type);
        m.AddRange(data);
        while (m.Count % 4 != 0) m.Add(0);
    }

    private static void U16(List<byte> m, ushort v) { m.Add((byte)v); m.Add((byte)(v >> 8)); }
    private static void U32(List<byte> m, uint v) { U16(m, (ushort)v); U16(m, (ushort)(v >> 16)); }

    /// <summary>Sends one request and returns the kernel's answer: 0 or a negative errno.</summary>
    private int Send(List<byte> message)
    {
        if (_fd < 0)
        {
            _fd = Libc.socket(Libc.AF_NETLINK, Libc.SOCK_RAW | Libc.SOCK_CLOEXEC, Libc.NETLINK_ROUTE);
            if (_fd < 0) throw new NetlinkException($"opening a netlink socket failed: {Libc.Describe(System.Runtime.InteropServices.Marshal.GetLastPInvokeError())}");
        }
        var bytes = message.ToArray();
        BinaryPrimitives.WriteUInt32LittleEndian(bytes, (uint)bytes.Length);
        var seq = BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(8));
        fixed (byte* p = bytes)
        {
            if (Libc.send(_fd, p, bytes.Length, 0) < 0)
                throw new NetlinkException($"netlink send failed: {Libc.Describe(System.Runtime.InteropServices.Marshal.GetLastPInvokeError())}");
        }
        var buffer = new byte[8192];
        while (true)
        {
            nint n;
            fixed (byte* p = buffer) n = Libc.recv(_fd, p, buffer.Length, 0);
            if (n < 0) throw new NetlinkException($"netlink recv failed: {Libc.Describe(System.Runtime.InteropServices.Marshal.GetLastPInvokeError())}");
            var offset = 0;
            while (offset + 16 <= n)
            {
                var len = (int)BinaryPrimitives.ReadUInt32LittleEndian(buffer.AsSpan(offset));
                var type = BinaryPrimitives.ReadUInt16LittleEndian(buffer.AsSpan(offset + 4));
                var replySeq = BinaryPrimitives.ReadUInt32LittleEndian(buffer.AsSpan(offset + 8));
                if (type == NLMSG_ERROR && replySeq == seq)
                    return BinaryPrimitives.ReadInt32LittleEndian(buffer.AsSpan(offset + 16));
                if (len < 16) break;
                offset += (len + 3) & ~3;
            }
        }
    }

    private static bool Check(int result, string what, bool allowExists)
    {
        if (result == 0) return true;
        if (allowExists && result == -Libc.EEXIST) return false;
        throw new NetlinkException($"{what} failed: {Libc.Describe(-result)}");
    }
}
