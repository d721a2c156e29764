using VmNet.Tests.Support;

namespace VmNet.Tests.Boots.Guest;

/// <summary>
/// The cloud-init guest's disk (images/cloud-guest) baked with images/agent-disk/bake.sh and booted with cloud-init
/// switched off on the kernel command line (<c>cloud-init=disabled</c>): a systemd guest with no cloud-init to
/// install the agent, so only the baked unit can start it. Its config comes through QEMU fw_cfg, as vmnet's domain
/// and QEMU argv pass it.
/// </summary>
public sealed class BakedGuest : GuestFixture
{
    public static readonly GuestNetwork Lab = new("lab", "192.168.70.1", "192.168.70.11", 24,
        [("lab0", "02:00:00:00:70:11"), ("lab1", "02:00:00:00:70:12")], Miimon: 100);

    private readonly TempDir _dir = new();

    protected override GuestNetwork[] Networks => [Lab];

    protected override (string? Dir, string? Problem) Image() => CloudGuestImage.TryGet();

    protected override async Task<QemuGuest> Boot(string imageDir)
    {
        var baked = _dir["baked.qcow2"];
        var bake = await RequiredTool.Run("bash", [Repo.File("images/agent-disk/bake.sh"), Path.Join(imageDir, "root.img"), baked, GuestImage.AgentBinary],
            TimeSpan.FromMinutes(5));
        if (bake.ExitCode != 0) throw new InvalidOperationException($"bake.sh exited {bake.ExitCode}:\n{bake.StandardOutput}{bake.StandardError}");
        var cloud = GuestMachine.CloudGuest(imageDir);
        var machine = cloud with { Disk = baked, DiskFormat = "qcow2", Append = cloud.Append + " cloud-init=disabled" };
        return await QemuGuest.Start(machine, Networks, Config, Delivery);
    }

    protected override TimeSpan ReadyTimeout => TimeSpan.FromSeconds(600);

    protected override void Cleanup() => _dir.Dispose();
}

/// <summary>A baked disk brings the agent up by itself: systemd starts the unit bake.sh enabled, the agent builds the bond.</summary>
[Trait(Tier.Name, Tier.Boot)]
[Collection("Guest")]
public sealed class BakedGuestTests(BakedGuest fixture, ITestOutputHelper output) : IClassFixture<BakedGuest>
{
    private QemuGuest Guest => fixture.Guest;

    private Task<string> Run(string command) => Guest.Must(command, output);

    [Fact]
    public async Task Without_cloud_init_the_baked_unit_starts_the_agent_which_builds_the_bond_from_fw_cfg()
    {
        output.WriteLine(fixture.ReadyReport ?? "(no report)");
        var (cloudInit, _) = await Guest.Shell("cloud-init status");
        output.WriteLine($"$ cloud-init status\n{cloudInit}");
        Assert.Contains("status: disabled", cloudInit);
        Assert.Equal("enabled", (await Run("systemctl is-enabled vmnet-agent.service")).Trim());
        Assert.Equal("active", (await Run("systemctl is-active vmnet-agent.service")).Trim());

        var journal = await Run("journalctl -b -u vmnet-agent.service --no-pager -o cat | grep -m 2 -e 'config from' -e 'change(s)'");
        Assert.Contains("config from /sys/firmware/qemu_fw_cfg/by_name/opt/vmnet/agent.json/raw, 1 network(s)", journal);
        Assert.Matches(@"vmnet-agent: [1-9][0-9]* change\(s\)", journal); // the agent, not a renderer, built the bond

        var bonding = await Run("cat /proc/net/bonding/lab");
        Assert.Contains("Bonding Mode: fault-tolerance (active-backup) (fail_over_mac active)", bonding);
        Assert.Contains("MII Polling Interval (ms): 100", bonding);
        Assert.Contains("Currently Active Slave: lab0", bonding);
        Assert.True(await Guest.Peers[0].Reaches(TimeSpan.FromSeconds(30)), "the peer gets no echo reply through the bond");
    }
}
