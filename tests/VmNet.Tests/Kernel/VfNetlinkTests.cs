using System.Globalization;
using VmNet.Host;
using VmNet.Kernel;
using VmNet.Spec;
using VmNet.Tests.Support;

namespace VmNet.Tests.Kernel;

/// <summary>
/// vmnet's rtnetlink VF messages held to iproute2 6.1: each request byte for byte against what `ip link set ... vf`
/// sends for the same words (strace, on this machine's kernel, which refuses them on lo), and the real igb driver's
/// answer to RTM_GETLINK (captured in the lab by images/lab/capture-netlink.sh) read as iproute2's JSON reads it.
/// The settings reaching real VFs are proven in the lab (LabLibvirtTests reads every VF back with `ip -d link show`).
/// </summary>
public sealed class VfNetlinkTests
{
    private static readonly string Fixture = Repo.File("tests/Fixtures/igb-lab-netlink");

    [Fact]
    public void The_igb_drivers_answer_reads_as_iproute2_shows_it()
    {
        var body = StraceDump.Last(File.ReadAllLines(Path.Join(Fixture, "getlink.strace")), "recvmsg", "nlmsg_type=0x10"); // RTM_NEWLINK
        var link = VfNetlink.ParseLink(body.AsMemory(16));              // the payload after the nlmsghdr
        var ip = IpLinkJson.Parse(File.ReadAllText(Path.Join(Fixture, "ip.json")));
        Assert.Equal((ip.Name, ip.Up, ip.Mtu, ip.Mac), (link.Name, link.Up, link.Mtu, link.Mac));
        Assert.Equal(ip.Vfs, link.Vfs);
        // What images/lab/capture-netlink.sh set, so the comparison above covers each field and both VLAN forms.
        Assert.Equal(3, link.Vfs.Count);
        Assert.Equal(new VfSettings
        {
            Mac = "02:00:00:00:40:01", Vlan = new VlanTag(40, 3), SpoofCheck = true, Trust = false, LinkState = LinkState.Auto, Rates = new TxRates(0, 0),
        }, link.Vf(0)!.Settings);
        Assert.Equal(("02:00:00:00:41:01", VlanTag.Untagged, false, true), (link.Vf(1)!.Settings.Mac, link.Vf(1)!.Settings.Vlan, link.Vf(1)!.Settings.SpoofCheck, link.Vf(1)!.Settings.Trust));
    }

    public static TheoryData<string> Changes() =>
    [
        // Every field at once, tagged 802.1ad with qos; then each single-field change VmNet makes, in its apply order.
        "vlan 40 qos 3 proto 802.1ad trust on mac 02:00:00:00:40:11 spoofchk off max_tx_rate 1000 min_tx_rate 100 state enable",
        "vlan 40 qos 0 proto 802.1Q", "vlan 0", "trust off", "mac 52:54:00:12:34:56", "mac 00:00:00:00:00:00", "spoofchk on",
        "max_tx_rate 0 min_tx_rate 0", "state auto", "state disable",
    ];

    [Theory, MemberData(nameof(Changes))]
    public async Task Each_vf_change_is_the_rtnetlink_message_iproute2_sends(string words)
    {
        var settings = Parse(words);
        Assert.Equal(words, settings.ToString());
        var sent = await IproutesMessage(settings);
        var seq = BitConverter.ToUInt32(sent, 8);
        var ifindex = HostRoot.System.ReadInt(Sysfs.NetIfIndex("lo"))!.Value;
        Assert.Equal(Convert.ToHexString(sent), Convert.ToHexString(VfNetlink.SetMessage(ifindex, 3, settings).Bytes(seq)));
    }

    /// <summary>The RTM_NEWLINK `ip link set dev lo vf 3 WORDS` sends (the kernel refuses it: lo has no VFs), from strace's dump.</summary>
    private static async Task<byte[]> IproutesMessage(VfSettings settings)
    {
        RequiredTool.Path("ip");
        using var dir = new TempDir();
        var trace = Path.Join(dir.Path, "trace");
        var r = await RequiredTool.Run("strace", ["-qq", "-o", trace, "-e", "trace=sendmsg", "-e", "write=3,4,5",
            RequiredTool.Path("ip"), "link", "set", "dev", "lo", "vf", "3", .. settings.IpArguments()]);
        Assert.Contains("RTNETLINK answers: Operation not supported", r.StandardError);
        return StraceDump.Last(File.ReadAllLines(trace), "sendmsg", "IFLA_VFINFO_LIST");
    }

    /// <summary>The words of <see cref="VfSettings.IpArguments"/> back into settings (the inverse, for the cases above).</summary>
    private static VfSettings Parse(string words)
    {
        var w = words.Split(' ');
        var s = new VfSettings();
        for (var i = 0; i < w.Length; i += 2)
        {
            s = w[i] switch
            {
                "vlan" when w[i + 1] == "0" => s with { Vlan = VlanTag.Untagged },
                "vlan" => s with { Vlan = new VlanTag(int.Parse(w[i + 1], CultureInfo.InvariantCulture), int.Parse(w[i + 3], CultureInfo.InvariantCulture), w[i + 5] == "802.1ad" ? VlanProtocol.Dot1Ad : VlanProtocol.Dot1Q) },
                "trust" => s with { Trust = w[i + 1] == "on" },
                "mac" => s with { Mac = w[i + 1] },
                "spoofchk" => s with { SpoofCheck = w[i + 1] == "on" },
                "max_tx_rate" => s with { Rates = new TxRates(int.Parse(w[i + 1], CultureInfo.InvariantCulture), int.Parse(w[i + 3], CultureInfo.InvariantCulture)) },
                "state" => s with { LinkState = w[i + 1] switch { "enable" => LinkState.Enable, "disable" => LinkState.Disable, _ => LinkState.Auto } },
                _ => s,
            };
            if (w[i] == "vlan" && w[i + 1] != "0") i += 4;
            if (w[i] == "max_tx_rate") i += 2;
        }
        return s;
    }
}
