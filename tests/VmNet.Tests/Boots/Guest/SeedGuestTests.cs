namespace VmNet.Tests.Boots.Guest;

/// <summary>The guest gets no fw_cfg entry, only the NoCloud seed on its CD-ROM, as a guest without cloud-init would.</summary>
public sealed class SeedOnlyGuest : GuestFixture
{
    public static readonly GuestNetwork Lab = new("lab", "192.168.50.1", "192.168.50.11", 24,
        [("lab0", "02:00:00:00:50:11"), ("lab1", "02:00:00:00:50:12")], Miimon: 100);

    protected override GuestNetwork[] Networks => [Lab];
    protected override ConfigPath Delivery => ConfigPath.Seed;
}

/// <summary>A real kernel under QEMU TCG reads the agent's config from the seed volume (label cidata), unmounted.</summary>
[Trait(Tier.Name, Tier.Boot)]
[Collection("Guest")]
public sealed class SeedGuestTests(SeedOnlyGuest fixture, ITestOutputHelper output) : IClassFixture<SeedOnlyGuest>
{
    [Fact]
    public async Task Without_fw_cfg_the_agent_reads_its_config_from_the_cidata_seed_and_builds_the_bond()
    {
        var guest = fixture.Guest;
        var (fwcfg, _) = await guest.Shell("ls /sys/firmware/qemu_fw_cfg/by_name/opt/vmnet 2>&1; cat /proc/net/bonding/lab");
        output.WriteLine($"{fixture.ReadyReport}\n{fwcfg}");
        var log = guest.SerialLog;

        Assert.Contains("No such file or directory", fwcfg);
        Assert.Matches(@"vmnet-agent [0-9.]+: config from /dev/sr0 \(cidata\):vmnet/agent\.json, 1 network", log);
        Assert.Contains("Currently Active Slave: lab0", fwcfg);
        Assert.Contains("\"addresses\":[\"192.168.50.11/24\"]", fixture.ReadyReport);
        Assert.True(await guest.Peers[0].Reaches(TimeSpan.FromSeconds(20)), "the peer gets no echo reply through the bond");
    }
}
