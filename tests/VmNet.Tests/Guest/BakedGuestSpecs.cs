using VmNet.Tests.Support;

namespace VmNet.Tests.Guest;

/// <summary>
/// The cloud-init guest's disk (images/cloud-guest) baked with images/agent-disk/bake.sh and booted with cloud-init
/// switched off on the kernel command line (<c>cloud-init=disabled</c>): a systemd guest with no cloud-init to
/// install the agent, so only the baked unit can start it. Its config comes through QEMU fw_cfg, as vmnet's domain
/// and QEMU argv pass it.
/// </summary>
public sealed class BakedGuest : IAsyncLifetime
{
    public static readonly GuestNetwork Lab = new("lab", "192.168.70.1", "192.168.70.11", 24,
        [("lab0", "02:00:00:00:70:11"), ("lab1", "02:00:00:00:70:12")], Miimon: 100);

    private QemuGuest? _guest;
    private string? _problem;
    private Exception? _bootError;
    private readonly TempDir _dir = new();

    public string BakeOutput { get; private set; } = "";
    public string? ReadyReport { get; private set; }

    public QemuGuest Guest
    {
        get
        {
            if (_problem is not null) GuestImage.MissingOrFail(_problem);
            if (_bootError is not null) throw new InvalidOperationException("the baked guest did not reach network-ready", _bootError);
            return _guest!;
        }
    }

    public async ValueTask InitializeAsync()
    {
        var (_, problem) = await Task.Run(GuestImage.TryGet); // publishes the agent
        var (imageDir, cloudProblem) = problem is null ? await Task.Run(CloudGuestImage.TryGet) : (null, null);
        if ((problem ?? cloudProblem) is { } p) { _problem = p; return; }
        try
        {
            var baked = _dir["baked.qcow2"];
            var bake = await RequiredTool.Run("bash", [Repo.File("images/agent-disk/bake.sh"), Path.Join(imageDir, "root.img"), baked, GuestImage.AgentBinary],
                TimeSpan.FromMinutes(5));
            BakeOutput = bake.StandardOutput + bake.StandardError;
            if (bake.ExitCode != 0) throw new InvalidOperationException($"bake.sh exited {bake.ExitCode}:\n{BakeOutput}");
            var cloud = GuestMachine.CloudGuest(imageDir!);
            var machine = cloud with { Disk = baked, DiskFormat = "qcow2", Append = cloud.Append + " cloud-init=disabled" };
            _guest = await QemuGuest.Start(machine, [Lab], null, ConfigPath.FwCfg);
            ReadyReport = await _guest.WaitForReport("network-ready", TimeSpan.FromSeconds(600));
        }
        catch (Exception e) { _bootError = e; }
    }

    public async ValueTask DisposeAsync()
    {
        if (_guest is not null) await _guest.DisposeAsync();
        _dir.Dispose();
        GC.SuppressFinalize(this);
    }
}

/// <summary>A baked disk brings the agent up by itself: systemd starts the unit bake.sh enabled, the agent builds the bond.</summary>
[Collection("Guest")]
public sealed class BakedGuestSpecs(BakedGuest fixture, ITestOutputHelper output) : IClassFixture<BakedGuest>
{
    private QemuGuest Guest => fixture.Guest;

    private async Task<string> Run(string command)
    {
        var (text, exit) = await Guest.Shell(command, TimeSpan.FromSeconds(120));
        output.WriteLine($"$ {command}\n{text}");
        Assert.True(exit == 0, $"`{command}` exited {exit}:\n{text}");
        return text;
    }

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
