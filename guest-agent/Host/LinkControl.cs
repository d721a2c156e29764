using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using VmNet.GuestAgent.Net;
using VmNet.Netlink;

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

/// <summary><see cref="ILinkControl"/> over rtnetlink (a raw AF_NETLINK socket), no external programs.</summary>
public sealed class NetlinkLinkControl(IHostFiles host) : ILinkControl, IDisposable
{
    private const ushort RTM_NEWLINK = 16, RTM_NEWADDR = 20, RTM_DELADDR = 21, RTM_GETADDR = 22, RTM_NEWROUTE = 24, RTM_DELROUTE = 25;
    private const ushort NLM_F_REQUEST = NetlinkMessage.NLM_F_REQUEST, NLM_F_ACK = NetlinkMessage.NLM_F_ACK,
        NLM_F_REPLACE = NetlinkMessage.NLM_F_REPLACE, NLM_F_EXCL = NetlinkMessage.NLM_F_EXCL,
        NLM_F_CREATE = NetlinkMessage.NLM_F_CREATE, NLM_F_DUMP = NetlinkMessage.NLM_F_DUMP;
    private const ushort IFLA_IFNAME = 3, IFA_ADDRESS = 1, IFA_LOCAL = 2, IFA_BROADCAST = 4, IFA_CACHEINFO = 6, IFA_FLAGS = 8;
    private const ushort RTA_OIF = 4, RTA_GATEWAY = 5, RTA_PRIORITY = 6;
    private const byte RT_TABLE_MAIN = 254, RTPROT_STATIC = 4, RTPROT_DHCP = 16, RTN_UNICAST = 1, IFA_F_NODAD = 2, IFA_F_PERMANENT = 0x80;
    private const int EADDRNOTAVAIL = 99, ESRCH = 3, EEXIST = 17;

    private readonly NetlinkSocket _socket = new();   // the DHCP clients' threads share it with the main thread

    public void Rename(string name, string newName)
    {
        var m = new NetlinkMessage(RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK).IfInfo(Index(name)).AttrString(IFLA_IFNAME, newName);
        Check(_socket.Request(m), $"renaming `{name}` to `{newName}`", allowExists: false);
    }

    public void SetUp(string name, bool up)
    {
        var m = new NetlinkMessage(RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK).IfInfo(Index(name), up ? 1u : 0u, 1u);
        Check(_socket.Request(m), $"setting `{name}` {(up ? "up" : "down")}", allowExists: false);
    }

    public bool AddAddress(string name, Cidr address) =>
        Check(_socket.Request(AddressMessage(RTM_NEWADDR, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, name, address, null)),
            $"adding address {address} to `{name}`", allowExists: true);

    public bool SetAddress(string name, Cidr address, TimeSpan valid)
    {
        var what = $"setting address {address} on `{name}` for {valid.TotalSeconds:F0} s";
        if (Check(_socket.Request(AddressMessage(RTM_NEWADDR, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, name, address, valid)), what, allowExists: true))
            return true;
        Check(_socket.Request(AddressMessage(RTM_NEWADDR, NLM_F_REQUEST | NLM_F_ACK | NLM_F_REPLACE, name, address, valid)), what, allowExists: false);
        return false;
    }

    public bool RemoveAddress(string name, Cidr address)
    {
        var result = _socket.Request(AddressMessage(RTM_DELADDR, NLM_F_REQUEST | NLM_F_ACK, name, address, null));
        if (result == -EADDRNOTAVAIL) return false;
        return Check(result, $"removing address {address} from `{name}`", allowExists: false);
    }

    private NetlinkMessage AddressMessage(ushort type, ushort flags, string name, Cidr address, TimeSpan? valid)
    {
        var v4 = address.Address.AddressFamily == AddressFamily.InterNetwork;
        var m = new NetlinkMessage(type, flags)
            .U8(v4 ? (byte)2 : (byte)10)           // ifa_family
            .U8((byte)address.PrefixLength)        // ifa_prefixlen
            .U8(v4 ? (byte)0 : IFA_F_NODAD)        // ifa_flags
            .U8(0)                                 // ifa_scope: universe
            .U32((uint)Index(name));               // ifa_index
        var bytes = address.Address.GetAddressBytes();
        m.Attr(IFA_LOCAL, bytes).Attr(IFA_ADDRESS, bytes);
        if (v4 && address.PrefixLength < 31)
        {
            var host = BinaryPrimitives.ReadUInt32BigEndian(bytes) | (uint.MaxValue >> address.PrefixLength);
            var broadcast = new byte[4];
            BinaryPrimitives.WriteUInt32BigEndian(broadcast, host);
            m.Attr(IFA_BROADCAST, broadcast);
        }
        if (valid is { } lifetime)
        {
            // struct ifa_cacheinfo: preferred and valid lifetime in seconds (0xffffffff: forever), then two stamps.
            var seconds = lifetime.TotalSeconds >= uint.MaxValue ? uint.MaxValue : (uint)Math.Max(1, Math.Ceiling(lifetime.TotalSeconds));
            m.AttrU32s(IFA_CACHEINFO, seconds, seconds, 0, 0);
        }
        return m;
    }

    public IReadOnlyList<(Cidr Address, bool Permanent)> Addresses(string name)
    {
        var index = Index(name);
        // ifa_family AF_UNSPEC (all), prefix, flags, scope, index 0
        var m = new NetlinkMessage(RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP).U32(0).U32(0);
        var found = new List<(Cidr, bool)>();
        foreach (var (type, body) in _socket.Dump(m))
        {
            if (type != RTM_NEWADDR || body.Length < 8 || BinaryPrimitives.ReadInt32LittleEndian(body.AsSpan(4)) != index) continue;
            var (family, prefix, flags) = (body[0], body[1], (uint)body[2]);
            byte[]? local = null, address = null;
            foreach (var attr in NetlinkAttribute.Parse(body.AsMemory(8)))
            {
                if (attr.Type == IFA_LOCAL) local = attr.Value.ToArray();
                else if (attr.Type == IFA_ADDRESS) address = attr.Value.ToArray();
                else if (attr.Type == IFA_FLAGS && attr.Value.Length >= 4) flags = attr.U32();
            }
            if ((local ?? address) is { } bytes && (family == 2 ? bytes.Length == 4 : bytes.Length == 16))
                found.Add((new Cidr(new IPAddress(bytes), prefix), (flags & IFA_F_PERMANENT) != 0));
        }
        return found;
    }

    public bool AddDefaultRoute(string name, IPAddress gateway, int metric = 0) =>
        Check(_socket.Request(RouteMessage(RTM_NEWROUTE, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, name, gateway, metric)),
            $"adding default route via {gateway} on `{name}`", allowExists: true);

    public bool RemoveDefaultRoute(string name, IPAddress gateway, int metric = 0)
    {
        var result = _socket.Request(RouteMessage(RTM_DELROUTE, NLM_F_REQUEST | NLM_F_ACK, name, gateway, metric));
        if (result == -ESRCH) return false;
        return Check(result, $"removing default route via {gateway} on `{name}`", allowExists: false);
    }

    private NetlinkMessage RouteMessage(ushort type, ushort flags, string name, IPAddress gateway, int metric)
    {
        var v4 = gateway.AddressFamily == AddressFamily.InterNetwork;
        var m = new NetlinkMessage(type, flags)
            .Raw([v4 ? (byte)2 : (byte)10, 0, 0, 0, RT_TABLE_MAIN, metric == 0 ? RTPROT_STATIC : RTPROT_DHCP, 0, RTN_UNICAST])
            .U32(0)                                // rtm_flags
            .Attr(RTA_GATEWAY, gateway.GetAddressBytes())
            .AttrU32(RTA_OIF, (uint)Index(name));
        if (metric != 0) m.AttrU32(RTA_PRIORITY, (uint)metric);
        return m;
    }

    public void Dispose() => _socket.Dispose();

    private int Index(string name)
    {
        var text = host.Read($"sys/class/net/{name}/ifindex");
        return int.TryParse(text, out var index) ? index : throw new NetlinkException($"link `{name}` does not exist");
    }

    private static bool Check(int result, string what, bool allowExists)
    {
        if (result == 0) return true;
        if (allowExists && result == -EEXIST) return false;
        throw new NetlinkException($"{what} failed: {NetlinkSocket.Describe(-result)}");
    }
}
