using System.Buffers.Binary;
using System.Globalization;
using VmNet.Netlink;
using VmNet.Spec;

namespace VmNet.Kernel;

/// <summary>
/// A PF's VF settings over rtnetlink, the messages iproute2 sends for <c>ip link set dev PF vf N ...</c> and
/// <c>ip link show dev PF</c>, from the process: RTM_NEWLINK with IFLA_VFINFO_LIST / IFLA_VF_INFO (IFLA_VF_VLAN with
/// its qos, or IFLA_VF_VLAN_LIST for 802.1ad, IFLA_VF_TRUST, IFLA_VF_MAC, IFLA_VF_SPOOFCHK, IFLA_VF_LINK_STATE,
/// IFLA_VF_RATE), and RTM_GETLINK with RTEXT_FILTER_VF. Encoding and decoding
/// are pure (<see cref="SetMessage"/>, <see cref="ParseLink"/>); <see cref="RealKernel"/> sends them.
/// </summary>
public static class VfNetlink
{
    public const ushort RTM_NEWLINK = 16, RTM_GETLINK = 18;
    private const ushort IFLA_ADDRESS = 1, IFLA_IFNAME = 3, IFLA_MTU = 4, IFLA_VFINFO_LIST = 22, IFLA_EXT_MASK = 29;
    private const ushort IFLA_VF_INFO = 1;
    private const ushort IFLA_VF_MAC = 1, IFLA_VF_VLAN = 2, IFLA_VF_SPOOFCHK = 4, IFLA_VF_LINK_STATE = 5, IFLA_VF_RATE = 6,
        IFLA_VF_TRUST = 9, IFLA_VF_VLAN_LIST = 12, IFLA_VF_VLAN_INFO = 1;
    private const uint RTEXT_FILTER_VF = 1, RTEXT_FILTER_SKIP_STATS = 8, IFF_UP = 1;
    /// <summary>What a driver that does not report spoof checking or trust puts in the field (iproute2 then prints none).</summary>
    private const uint NotReported = uint.MaxValue;
    private const ushort ETH_P_8021Q = 0x8100, ETH_P_8021AD = 0x88a8;

    /// <summary>
    /// One RTM_NEWLINK setting the fields of <paramref name="settings"/> that are not null on VF <paramref name="vf"/>
    /// of the PF with index <paramref name="ifindex"/>: byte for byte what iproute2 6.1 sends (VfNetlinkTests).
    /// </summary>
    public static NetlinkMessage SetMessage(int ifindex, int vf, VfSettings settings)
    {
        var m = new NetlinkMessage(RTM_NEWLINK, NetlinkMessage.NLM_F_REQUEST | NetlinkMessage.NLM_F_ACK).IfInfo(ifindex);
        var list = m.BeginNest(IFLA_VFINFO_LIST);
        var info = m.BeginNest(IFLA_VF_INFO);
        var n = (uint)vf;
        if (settings.Vlan is { } v)
        {
            // As iproute2: IFLA_VF_VLAN (vf, vlan, qos) for 802.1Q and untagged, IFLA_VF_VLAN_LIST for another protocol.
            if (v.IsTagged && v.Protocol != VlanProtocol.Dot1Q)
            {
                var vlans = m.BeginNest(IFLA_VF_VLAN_LIST);
                var value = new byte[16];                      // struct ifla_vf_vlan_info: vf, vlan, qos, __be16 vlan_proto, 2 bytes padding
                BinaryPrimitives.WriteUInt32LittleEndian(value, n);
                BinaryPrimitives.WriteUInt32LittleEndian(value.AsSpan(4), (uint)v.Id);
                BinaryPrimitives.WriteUInt32LittleEndian(value.AsSpan(8), (uint)v.Qos);
                BinaryPrimitives.WriteUInt16BigEndian(value.AsSpan(12), ETH_P_8021AD);
                m.Attr(IFLA_VF_VLAN_INFO, value);
                m.EndNest(vlans);
            }
            else
                m.AttrU32s(IFLA_VF_VLAN, n, (uint)v.Id, v.IsTagged ? (uint)v.Qos : 0u);
        }
        if (settings.Trust is { } t) m.AttrU32s(IFLA_VF_TRUST, n, t ? 1u : 0u);
        if (settings.Mac is { } mac)
        {
            var value = new byte[36];                          // struct ifla_vf_mac: vf, mac[32]
            BinaryPrimitives.WriteUInt32LittleEndian(value, n);
            if (!Spec.Mac.TryParse(mac, out var bytes)) throw new ArgumentException($"not a MAC address: {mac}", nameof(settings));
            bytes.CopyTo(value.AsSpan(4));
            m.Attr(IFLA_VF_MAC, value);
        }
        if (settings.SpoofCheck is { } s) m.AttrU32s(IFLA_VF_SPOOFCHK, n, s ? 1u : 0u);
        if (settings.LinkState is { } l) m.AttrU32s(IFLA_VF_LINK_STATE, n, l switch { LinkState.Enable => 1u, LinkState.Disable => 2u, _ => 0u });
        // iproute2 adds the rates after the other fields, whatever their order on its command line.
        if (settings.Rates is { } r) m.AttrU32s(IFLA_VF_RATE, n, (uint)r.MinMbps, (uint)r.MaxMbps);
        m.EndNest(info);
        m.EndNest(list);
        return m;
    }

    /// <summary>RTM_GETLINK for <paramref name="pf"/> with its VFs and without their statistics.</summary>
    public static NetlinkMessage GetMessage(string pf) =>
        new NetlinkMessage(RTM_GETLINK, NetlinkMessage.NLM_F_REQUEST).IfInfo(0).AttrString(IFLA_IFNAME, pf)
            .AttrU32(IFLA_EXT_MASK, RTEXT_FILTER_VF | RTEXT_FILTER_SKIP_STATS);

    /// <summary>The PF and its VFs from the payload of the kernel's RTM_NEWLINK answer (<c>ifinfomsg</c> + attributes).</summary>
    public static PfLink ParseLink(ReadOnlyMemory<byte> body)
    {
        if (body.Length < 16) throw new FormatException("an RTM_NEWLINK answer shorter than its ifinfomsg");
        var flags = BinaryPrimitives.ReadUInt32LittleEndian(body.Span[8..]);
        string name = "", mac = "";
        var mtu = 0;
        var vfs = new List<VfLink>();
        foreach (var a in NetlinkAttribute.Parse(body[16..]))
        {
            switch (a.Type)
            {
                case IFLA_IFNAME: name = a.String(); break;
                case IFLA_MTU: mtu = (int)a.U32(); break;
                case IFLA_ADDRESS: mac = Hex(a.Value.Span); break;
                case IFLA_VFINFO_LIST:
                    foreach (var info in a.Nested())
                        if (info.Type == IFLA_VF_INFO && ParseVf(info.Nested(), mac.Length == 0 ? 6 : (mac.Length + 1) / 3) is { } vf)
                            vfs.Add(vf);
                    break;
            }
        }
        return new PfLink(name, (flags & IFF_UP) != 0, mtu, mac, vfs);
    }

    private static VfLink? ParseVf(IReadOnlyList<NetlinkAttribute> attrs, int macLength)
    {
        int? index = null;
        string mac = VfSettings.ZeroMac;
        VlanTag? vlan = null, listed = null;
        bool? spoof = null, trust = null;
        var state = LinkState.Auto;
        var rates = new TxRates(0, 0);
        foreach (var a in attrs)
        {
            switch (a.Type)
            {
                case IFLA_VF_MAC when a.Value.Length >= 4 + macLength:
                    index = (int)a.U32();
                    mac = Hex(a.Value.Span.Slice(4, macLength));
                    break;
                case IFLA_VF_VLAN when a.Value.Length >= 12:
                    vlan = Tag((int)a.U32(4), (int)a.U32(8), VlanProtocol.Dot1Q);
                    break;
                case IFLA_VF_VLAN_LIST:
                    // The first entry, as iproute2 shows it first (drivers report one).
                    foreach (var e in a.Nested())
                        if (listed is null && e.Type == IFLA_VF_VLAN_INFO && e.Value.Length >= 14)
                            listed = Tag((int)e.U32(4), (int)e.U32(8),
                                BinaryPrimitives.ReadUInt16BigEndian(e.Value.Span[12..]) == ETH_P_8021AD ? VlanProtocol.Dot1Ad : VlanProtocol.Dot1Q);
                    break;
                case IFLA_VF_SPOOFCHK when a.Value.Length >= 8:
                    spoof = a.U32(4) == NotReported ? null : a.U32(4) != 0;
                    break;
                case IFLA_VF_TRUST when a.Value.Length >= 8:
                    trust = a.U32(4) == NotReported ? null : a.U32(4) != 0;
                    break;
                case IFLA_VF_LINK_STATE when a.Value.Length >= 8:
                    state = a.U32(4) switch { 1 => LinkState.Enable, 2 => LinkState.Disable, _ => LinkState.Auto };
                    break;
                case IFLA_VF_RATE when a.Value.Length >= 12:
                    rates = new TxRates(MaxMbps: (int)a.U32(8), MinMbps: (int)a.U32(4));
                    break;
            }
        }
        if (index is null) return null;
        return new VfLink(index.Value, new VfSettings
        {
            Vlan = listed ?? vlan ?? VlanTag.Untagged, Mac = mac, SpoofCheck = spoof, Trust = trust, LinkState = state, Rates = rates,
        });
    }

    /// <summary>A VLAN as read back: 802.1Q when its ID is 0 (untagged), with any qos a driver keeps beside it.</summary>
    private static VlanTag Tag(int id, int qos, VlanProtocol protocol) => new(id, qos, id == 0 ? VlanProtocol.Dot1Q : protocol);

    private static string Hex(ReadOnlySpan<byte> bytes) =>
        string.Join(':', bytes.ToArray().Select(b => b.ToString("x2", CultureInfo.InvariantCulture)));
}
