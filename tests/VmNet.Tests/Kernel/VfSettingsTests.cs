using VmNet.Kernel;
using VmNet.Spec;

namespace VmNet.Tests.Kernel;

/// <summary>The typed VF settings: what counts as held, what an undo puts back, and iproute2's words.</summary>
public sealed class VfSettingsTests
{
    private static readonly VfSettings Planned = new()
    {
        Vlan = new VlanTag(40, 3, VlanProtocol.Dot1Ad), Trust = false, Mac = "02:00:00:00:40:11", SpoofCheck = true,
        Rates = new TxRates(1000, 100), LinkState = LinkState.Auto,
    };

    [Fact]
    public void The_words_after_ip_link_set_dev_pf_vf_n_come_from_one_builder()
    {
        Assert.Equal(["vlan", "40", "qos", "3", "proto", "802.1ad", "trust", "off", "mac", "02:00:00:00:40:11", "spoofchk", "on",
            "max_tx_rate", "1000", "min_tx_rate", "100", "state", "auto"], Planned.IpArguments());
        Assert.Equal(["vlan", "0"], new VfSettings { Vlan = VlanTag.Untagged }.IpArguments());
    }

    [Fact]
    public void Split_gives_one_change_per_field_in_the_order_asked()
    {
        Assert.Equal(["vlan", "trust", "mac", "spoofchk", "max_tx_rate", "state"],
            Planned.Split(VfSettings.ApplyOrder).Select(s => s.IpArguments()[0]));
        Assert.Equal(["vlan", "spoofchk", "mac", "trust", "max_tx_rate", "state"],
            Planned.Split(VfSettings.RestoreOrder).Select(s => s.IpArguments()[0]));
        Assert.All(Planned.Split(VfSettings.ApplyOrder), one => Assert.Single(VfSettings.ApplyOrder, one.Has));
    }

    [Fact]
    public void A_vf_holds_what_was_set_and_a_field_its_driver_does_not_report_counts_as_held()
    {
        Assert.Empty(Planned.Mismatches(Planned));
        var silent = Planned with { SpoofCheck = null, Trust = null }; // e.g. a driver without spoofchk or trust in its vfinfo
        Assert.Empty(Planned.Mismatches(silent));
        Assert.Equal(["it holds vlan 40, not vlan 40 qos 3 802.1ad", "it holds trust on, not off"],
            Planned.Mismatches(Planned with { Vlan = new VlanTag(40), Trust = true }));
    }

    [Fact]
    public void An_untagged_vf_is_untagged_whatever_qos_its_driver_keeps_beside_vlan_0()
    {
        // ixgbe, i40e and ice report `vlan 0, qos N` after a qos was set; `ip link set ... vlan 0` cannot set it again.
        var untagged = new VfSettings { Vlan = VlanTag.Untagged };
        Assert.Empty(untagged.Mismatches(new VfSettings { Vlan = new VlanTag(0, 5) }));
        Assert.True(untagged.Unmet(new VfSettings { Vlan = new VlanTag(0, 5) }).IsEmpty);
        Assert.False(untagged.Unmet(new VfSettings { Vlan = new VlanTag(40) }).IsEmpty);
        Assert.False(new VfSettings { Vlan = new VlanTag(40, 3) }.Unmet(new VfSettings { Vlan = new VlanTag(40) }).IsEmpty);
    }

    [Fact]
    public void An_undo_takes_the_fields_a_change_set_from_the_state_found_and_leaves_unknown_ones_out()
    {
        var found = VfSettings.Fresh with { Trust = null };

        Assert.Equal(new VfSettings { Mac = VfSettings.ZeroMac }, found.For(new VfSettings { Mac = "02:00:00:00:00:01" }));
        Assert.True(found.For(new VfSettings { Trust = true }).IsEmpty); // never reported: nothing to put back
        Assert.Equal(new VfSettings { Vlan = VlanTag.Untagged, SpoofCheck = true }, found.For(new VfSettings { Vlan = new VlanTag(40), SpoofCheck = false }));
    }

    [Fact]
    public void With_overlays_the_fields_set_and_keeps_the_rest()
    {
        var next = VfSettings.Fresh.With(new VfSettings { Mac = "02:00:00:00:00:01", Vlan = new VlanTag(7) });

        Assert.Equal(VfSettings.Fresh with { Mac = "02:00:00:00:00:01", Vlan = new VlanTag(7) }, next);
    }
}
