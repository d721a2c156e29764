using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using VmNet.GuestAgent.Net;

namespace VmNet.GuestAgent.Host;

/// <summary>Link, address and route changes the agent cannot make through sysfs.</summary>
public interface ILinkControl
{
    /// <summary>Renames a link; the kernel allows it only while the link is down.</summary>
    void Rename(string name, string newName);
    void SetUp(string name, bool up);
    /// <summary>Adds the address; false when it was already there.</summary>
    bool AddAddress(string name, Cidr address);
    /// <summary>Adds a default route through the gateway on the link; false when it was already there. DHCP's routes
    /// carry <paramref name="metric"/> 1024 (as systemd-networkd's), so a static gateway (metric 0) wins.</summary>
    bool AddDefaultRoute(string name, IPAddress gateway, int metric = 0);
    /// <summary>Sets an address that expires (a DHCP lease): adds it, or renews its lifetimes; true when it was added.</summary>
    bool SetAddress(string name, Cidr address, TimeSpan valid);
    /// <summary>Removes an address; false when it was not there.</summary>
    bool RemoveAddress(string name, Cidr address);
    /// <summary>Removes a default route; false when it was not there.</summary>
    bool RemoveDefaultRoute(string name, IPAddress gateway, int metric = 0);
    /// <summary>The link's addresses, and whether each is permanent (set by hand or by a static config) or expires (a DHCP client's).</summary>
    IReadOnlyList<(Cidr Address, bool Permanent)> Addresses(string name);
}

public sealed class NetlinkException(string message) : Exception(message);

/// <summary><see cref="ILinkControl"/> over rtnetlink (a raw AF_NETLINK socket), no external programs.</summary>
public sealed unsafe class Netlink(IHostFiles host) : ILinkControl, IDisposable
{
    private const ushort RTM_NEWLINK = 16, RTM_NEWADDR = 20, RTM_DELADDR = 21, RTM_GETADDR = 22, RTM_NEWROUTE = 24, RTM_DELROUTE = 25;
    private const ushort NLMSG_ERROR = 2, NLMSG_DONE = 3;
    private const ushort NLM_F_REQUEST = 1, NLM_F_ACK = 4, NLM_F_REPLACE = 0x100, NLM_F_EXCL = 0x200, NLM_F_CREATE = 0x400, NLM_F_DUMP = 0x300;
    private const ushort IFLA_IFNAME = 3, IFA_ADDRESS = 1, IFA_LOCAL = 2, IFA_BROADCAST = 4, IFA_CACHEINFO = 6, IFA_FLAGS = 8;
    private const ushort RTA_OIF = 4, RTA_GATEWAY = 5, RTA_PRIORITY = 6;
    private const byte RT_TABLE_MAIN = 254, RTPROT_STATIC = 4, RTPROT_DHCP = 16, RTN_UNICAST = 1, IFA_F_NODAD = 2, IFA_F_PERMANENT = 0x80;
    private const int EADDRNOTAVAIL = 99, ESRCH = 3;

    private readonly Lock _lock = new();                 // the DHCP clients' threads share the socket with the main thread
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

    public bool AddAddress(string name, Cidr address) =>
        Check(Send(AddressMessage(RTM_NEWADDR, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, name, address, null)),
            $"adding address {address} to `{name}`", allowExists: true);

    public bool SetAddress(string name, Cidr address, TimeSpan valid)
    {
        var what = $"setting address {address} on `{name}` for {valid.TotalSeconds:F0} s";
        if (Check(Send(AddressMessage(RTM_NEWADDR, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, name, address, valid)), what, allowExists: true))
            return true;
        Check(Send(AddressMessage(RTM_NEWADDR, NLM_F_REQUEST | NLM_F_ACK | NLM_F_REPLACE, name, address, valid)), what, allowExists: false);
        return false;
    }

    public bool RemoveAddress(string name, Cidr address)
    {
        var result = Send(AddressMessage(RTM_DELADDR, NLM_F_REQUEST | NLM_F_ACK, name, address, null));
        if (result == -EADDRNOTAVAIL) return false;
        return Check(result, $"removing address {address} from `{name}`", allowExists: false);
    }

    private List<byte> AddressMessage(ushort type, ushort flags, string name, Cidr address, TimeSpan? valid)
    {
        var v4 = address.Address.AddressFamily == AddressFamily.InterNetwork;
        var m = Begin(type, flags);
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
        if (valid is { } lifetime)
        {
            // struct ifa_cacheinfo: preferred and valid lifetime in seconds (0xffffffff: forever), then two stamps.
            var seconds = lifetime.TotalSeconds >= uint.MaxValue ? uint.MaxValue : (uint)Math.Max(1, Math.Ceiling(lifetime.TotalSeconds));
            var info = new byte[16];
            BinaryPrimitives.WriteUInt32LittleEndian(info, seconds);
            BinaryPrimitives.WriteUInt32LittleEndian(info.AsSpan(4), seconds);
            Attr(m, IFA_CACHEINFO, info);
        }
        return m;
    }

    public IReadOnlyList<(Cidr Address, bool Permanent)> Addresses(string name)
    {
        var index = Index(name);
        var m = Begin(RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP);
        m.AddRange([0, 0, 0, 0]);                  // ifa_family AF_UNSPEC: all, prefix, flags, scope
        U32(m, 0);
        var found = new List<(Cidr, bool)>();
        foreach (var (type, body) in Dump(m))
        {
            if (type != RTM_NEWADDR || body.Length < 8 || BinaryPrimitives.ReadInt32LittleEndian(body.AsSpan(4)) != index) continue;
            var (family, prefix, flags) = (body[0], body[1], (uint)body[2]);
            byte[]? local = null, address = null;
            for (var at = 8; at + 4 <= body.Length;)
            {
                var length = BinaryPrimitives.ReadUInt16LittleEndian(body.AsSpan(at));
                var attr = BinaryPrimitives.ReadUInt16LittleEndian(body.AsSpan(at + 2));
                if (length < 4 || at + length > body.Length) break;
                var value = body.AsSpan(at + 4, length - 4);
                if (attr == IFA_LOCAL) local = value.ToArray();
                else if (attr == IFA_ADDRESS) address = value.ToArray();
                else if (attr == IFA_FLAGS && value.Length >= 4) flags = BinaryPrimitives.ReadUInt32LittleEndian(value);
                at += (length + 3) & ~3;
            }
            if ((local ?? address) is { } bytes && (family == 2 ? bytes.Length == 4 : bytes.Length == 16))
                found.Add((new Cidr(new IPAddress(bytes), prefix), (flags & IFA_F_PERMANENT) != 0));
        }
        return found;
    }

    public bool AddDefaultRoute(string name, IPAddress gateway, int metric = 0) =>
        Check(Send(RouteMessage(RTM_NEWROUTE, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, name, gateway, metric)),
            $"adding default route via {gateway} on `{name}`", allowExists: true);

    public bool RemoveDefaultRoute(string name, IPAddress gateway, int metric = 0)
    {
        var result = Send(RouteMessage(RTM_DELROUTE, NLM_F_REQUEST | NLM_F_ACK, name, gateway, metric));
        if (result == -ESRCH) return false;
        return Check(result, $"removing default route via {gateway} on `{name}`", allowExists: false);
    }

    private List<byte> RouteMessage(ushort type, ushort flags, string name, IPAddress gateway, int metric)
    {
        var v4 = gateway.AddressFamily == AddressFamily.InterNetwork;
        var m = Begin(type, flags);
        m.AddRange([v4 ? (byte)2 : (byte)10, 0, 0, 0, RT_TABLE_MAIN, metric == 0 ? RTPROT_STATIC : RTPROT_DHCP, 0, RTN_UNICAST]);
        U32(m, 0);                                 // rtm_flags
        Attr(m, RTA_GATEWAY, gateway.GetAddressBytes());
        var oif = new byte[4];
        BinaryPrimitives.WriteInt32LittleEndian(oif, Index(name));
        Attr(m, RTA_OIF, oif);
        if (metric != 0)
        {
            var priority = new byte[4];
            BinaryPrimitives.WriteInt32LittleEndian(priority, metric);
            Attr(m, RTA_PRIORITY, priority);
        }
        return m;
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
        U32(m, Interlocked.Increment(ref _seq));
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
        using var _ = _lock.EnterScope();
        var seq = Transmit(message);
        var result = 0;
        Receive(seq, (type, body) =>
        {
            if (type != NLMSG_ERROR) return false;
            result = BinaryPrimitives.ReadInt32LittleEndian(body);
            return true;
        });
        return result;
    }

    /// <summary>The messages of a dump request, each as (type, payload after the header).</summary>
    private List<(ushort Type, byte[] Body)> Dump(List<byte> message)
    {
        using var _ = _lock.EnterScope();
        var seq = Transmit(message);
        var messages = new List<(ushort, byte[])>();
        Receive(seq, (type, body) =>
        {
            if (type == NLMSG_DONE) return true;
            if (type == NLMSG_ERROR) throw new NetlinkException($"a netlink dump failed: {Libc.Describe(-BinaryPrimitives.ReadInt32LittleEndian(body))}");
            messages.Add((type, body.ToArray()));
            return false;
        });
        return messages;
    }

    private uint Transmit(List<byte> message)
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
        return seq;
    }

    /// <summary>Reads the kernel's messages for <paramref name="seq"/> until <paramref name="handle"/> says it has the last.</summary>
    private void Receive(uint seq, Func<ushort, byte[], bool> handle)
    {
        var buffer = new byte[32768];
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
                if (len < 16 || offset + len > n) break;
                if (replySeq == seq && handle(type, buffer.AsSpan(offset + 16, len - 16).ToArray())) return;
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
