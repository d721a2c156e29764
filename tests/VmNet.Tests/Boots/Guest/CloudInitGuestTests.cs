
namespace VmNet.Tests.Boots.Guest;

/// <summary>The cloud-init guest of images/cloud-guest (built by its recipe when missing), after the test guest's
/// build, which publishes the agent the tests put on the seed or bake into the disk.</summary>
public static class CloudGuestImage
{
    private static readonly Lazy<(string? Dir, string? Problem)> Built = new(() =>
        GuestImage.TryGet().Problem is { } problem ? (null, problem)
            : GuestImage.BuildWith("images/cloud-guest/build.sh", ["qemu-system-x86_64", "qemu-img", "mmdebstrap", "mkfs.ext4", "cpio", "depmod", "apt-get", "dpkg-deb"]));

    public static (string? Dir, string? Problem) TryGet() => Built.Value;
}

/// <summary>
/// Debian bookworm with systemd and cloud-init 22.4, booted under TCG with the seed exactly as vmnet writes it for
/// VmYaml/consumers/cloud-guest.yaml (user-data, meta-data, network-config and the agent, from the launcher's own
/// templates and seed writer). Four e1000e NICs with the planned VFs' MACs stand in for the VFs, two per network hub.
/// </summary>
public class CloudInitGuest : GuestFixture
{
    private readonly Lazy<RenderedVm> _vm;

    public CloudInitGuest() => _vm = new(() => ConsumerCorpus.Render(SpecName));

    /// <summary>The spec of VmYaml/consumers/ the guest is planned from.</summary>
    protected virtual string SpecName => "cloud-guest";

    public RenderedVm Vm => _vm.Value;

    protected override GuestNetwork[] Networks => NetworksOf(Vm);

    protected override (string? Dir, string? Problem) Image() => CloudGuestImage.TryGet();

    protected override Task<QemuGuest> Boot(string imageDir)
    {
        var seed = Path.Join(Vm.Dir, "seed.iso");
        VmNet.Seed.SeedImage.Write(seed, Vm.Artifacts, GuestImage.AgentBinary);
        return QemuGuest.Start(GuestMachine.CloudGuest(imageDir), Networks, seed);
    }

    // systemd, then cloud-init's four stages in Python, under TCG: about 50 s on a quiet machine here.
    protected override TimeSpan ReadyTimeout => TimeSpan.FromSeconds(600);

    protected override void Cleanup()
    {
        if (_vm.IsValueCreated) _vm.Value.Dispose();
    }

    /// <summary>The networks as the peers see them: each peer answers at the network's .1 (public: its gateway).</summary>
    public static GuestNetwork[] NetworksOf(RenderedVm vm) => vm.Spec.Networks.Select((n, i) =>
    {
        var address = n.Address.Cidr!.Split('/');
        var peer = n.Gateway ?? string.Join('.', address[0].Split('.')[..3]) + ".1";
        var members = vm.Members(i).Select((v, j) => (n.MemberName(j), v.Mac)).ToList();
        return new GuestNetwork(n.Name, peer, address[0], int.Parse(address[1], System.Globalization.CultureInfo.InvariantCulture), members);
    }).ToArray();
}

/// <summary>The cloud-init path on a real cloud-init: the bonds are cloud-init's (ifupdown), the agent comes from the seed.</summary>
[Trait(Tier.Name, Tier.Boot)]
[Collection("Guest")]
public sealed class CloudInitGuestTests(CloudInitGuest fixture, ITestOutputHelper output) : IClassFixture<CloudInitGuest>
{
    private QemuGuest Guest => fixture.Guest;

    private Task<string> Run(string command) => Guest.Must(command, output);

    [Fact]
    public async Task Cloud_init_renders_both_bonds_with_ifupdown_from_vmnets_network_config()
    {
        output.WriteLine($"network-ready {fixture.BootToReady.TotalSeconds:0.0} s after QEMU started:\n{fixture.ReadyReport}");
        var status = await Run("cloud-init status --long --wait");
        Assert.Contains("status: done", status);
        Assert.Contains("DataSourceNoCloud", status);

        // cloud-init's eni renderer wrote the bonds (each member names its master); ifupdown and ifenslave built them.
        var eni = await Run("cat /etc/network/interfaces.d/50-cloud-init");
        foreach (var bond in new[] { "storage", "public" })
        {
            Assert.Contains($"auto {bond}\n", eni);
            Assert.Contains($"bond-master {bond}\n", eni);
            Assert.Contains($"bond-primary {bond}0\n", eni);
        }
        Assert.Contains("bond-mode active-backup", eni);
        Assert.Contains("bond-miimon 100", eni);
        Assert.Contains("bond-fail-over-mac active", eni);

        foreach (var network in CloudInitGuest.NetworksOf(fixture.Vm))
        {
            var bonding = await Run($"cat /proc/net/bonding/{network.Name}");
            Assert.Contains("Bonding Mode: fault-tolerance (active-backup) (fail_over_mac active)", bonding);
            Assert.Contains("MII Polling Interval (ms): 100", bonding);
            Assert.Contains($"Primary Slave: {network.Members[0].Name}", bonding);
            Assert.Contains($"Currently Active Slave: {network.Members[0].Name}", bonding);
            // Each member kept its own MAC (the VF's admin MAC): no slave MAC rewriting.
            foreach (var (name, mac) in network.Members)
                Assert.Contains(mac, await Run($"cat /sys/class/net/{name}/address"));
        }
        Assert.Contains("mtu 9000", await Run("ip link show storage"));
        Assert.Contains("default via 203.0.113.1 dev public", await Run("ip route show default"));
    }

    [Fact]
    public async Task User_data_installs_the_agent_from_the_seed_as_a_systemd_unit_and_it_reports_both_bonds()
    {
        Assert.Equal("enabled", (await Run("systemctl is-enabled vmnet-agent.service")).Trim());
        Assert.Equal("active", (await Run("systemctl is-active vmnet-agent.service")).Trim());
        var seeded = await Run("sha256sum /usr/local/sbin/vmnet-agent");
        Assert.Contains(Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(File.ReadAllBytes(GuestImage.AgentBinary))), seeded);
        // The bonds needed no mending: the agent's first run changed only what Debian's eni path leaves undone on an
        // image without net-tools and resolvconf (the default route eni adds with `route`, and resolv.conf).
        var journal = await Run("journalctl -b -u vmnet-agent.service --no-pager -o cat | grep -m 4 -e 'config from' -e change -e 'default route' -e resolv.conf");
        Assert.Matches(@"vmnet-agent [0-9.]+: config from /etc/vmnet/agent\.json, 2 network\(s\)", journal);
        Assert.Contains("vmnet-agent: public default route via 203.0.113.1", journal);
        Assert.Contains("vmnet-agent: resolv.conf lists 203.0.113.1", journal);
        Assert.Contains("vmnet-agent: 2 change(s)", journal);

        var report = fixture.ReadyReport!;
        Assert.Contains("\"name\":\"storage\",\"active\":\"storage0\"", report);
        Assert.Contains("\"name\":\"public\",\"active\":\"public0\"", report);
        Assert.Contains("\"addresses\":[\"192.168.40.11/24\"],\"mtu\":9000", report);
        Assert.Contains("\"addresses\":[\"203.0.113.5/24\"]", report);
    }

    [Fact]
    public async Task The_peers_reach_the_guest_on_each_network_and_the_bond_fails_over()
    {
        foreach (var peer in Guest.Peers)
            Assert.True(await peer.Reaches(TimeSpan.FromSeconds(30)), $"the peer at {peer} gets no echo reply through the bond");

        // The storage bond's active member loses its link: the bond moves to storage1 and the peer still gets replies.
        var from = Guest.Reports.Count;
        await Guest.SetLink(QemuGuest.NicId(0, 0), up: false);
        try
        {
            await Guest.WaitForReport("active-changed", TimeSpan.FromSeconds(60), from, l => l.Contains("\"active\":\"storage1\""));
            Assert.Contains("Currently Active Slave: storage1", await Run("cat /proc/net/bonding/storage"));
            Assert.True(await Guest.Peers[0].Reaches(TimeSpan.FromSeconds(30), seqBase: 41000), "no echo reply after the failover");
        }
        finally { await Guest.SetLink(QemuGuest.NicId(0, 0), up: true); }
        await Guest.WaitForReport("active-changed", TimeSpan.FromSeconds(60), from, l => l.Contains("\"active\":\"storage0\""));
    }

    [Fact]
    public async Task A_second_run_of_the_agent_changes_nothing()
    {
        var from = Guest.Reports.Count;
        await Run("systemctl restart vmnet-agent.service");
        var again = await Guest.WaitForReport("network-ready", TimeSpan.FromSeconds(120), from);
        Assert.Contains("\"changes\":0", again);
    }
}

/// <summary>An ARP-monitored network (VmYaml/consumers/arp-monitor.yaml) on the same cloud-init guest.</summary>
public sealed class CloudInitArpGuest : CloudInitGuest
{
    protected override string SpecName => "arp-monitor";
}

/// <summary>
/// cloud-init 22.4 cannot render a bond with <c>arp-ip-targets</c> for ifupdown (KeyError, LP: #1906187): the guest
/// gets no network from cloud-init. The agent, which user-data still installs, builds the bond with ARP monitoring.
/// </summary>
[Trait(Tier.Name, Tier.Boot)]
[Collection("Guest")]
public sealed class CloudInitArpGuestTests(CloudInitArpGuest fixture, ITestOutputHelper output) : IClassFixture<CloudInitArpGuest>
{
    [Fact]
    public async Task When_cloud_init_cannot_render_an_arp_monitored_bond_the_agent_builds_it()
    {
        var guest = fixture.Guest;
        output.WriteLine(fixture.ReadyReport ?? "(no report)");
        var (log, _) = await guest.Shell("grep -a -m 3 -e KeyError -e 'Failed to apply network config' /var/log/cloud-init.log; " +
            "ls /etc/network/interfaces.d; systemctl is-active vmnet-agent.service; cat /proc/net/bonding/public", TimeSpan.FromSeconds(60));
        output.WriteLine(log);

        Assert.Contains("KeyError: 'arp-ip-targets'", log);
        Assert.DoesNotContain("50-cloud-init", log); // cloud-init wrote no interfaces file
        Assert.Contains("active\n", log);
        Assert.Contains("ARP Polling Interval (ms): 100", log);
        Assert.Contains("ARP IP target/s (n.n.n.n form): 203.0.113.1, 203.0.113.2", log);
        Assert.Contains("Currently Active Slave: public0", log);
        Assert.True(await guest.Peers[0].Reaches(TimeSpan.FromSeconds(30)), "the peer gets no echo reply through the bond");
    }
}
