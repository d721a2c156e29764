using System.Diagnostics;
using VmNet.Contract;
using VmNet.GuestAgent.Bonds;
using VmNet.GuestAgent.Config;
using VmNet.GuestAgent.Dhcp;
using VmNet.GuestAgent.Host;
using VmNet.GuestAgent.Reporting;
using VmNet.Netlink;

namespace VmNet.GuestAgent;

public static class Program
{
    public const string Version = "0.1.0";

    private const string Usage = """
        usage: vmnet-agent [--config FILE] [--once] [--root DIR] [--version]
          Builds one active-backup bond per network from the config, sets addresses (static, or a DHCP lease it
          keeps renewed), routes, DNS and the hostname, reports network-ready on the virtio-serial report port, then
          reports bond and address changes until killed.
          --config FILE  read this config instead of /etc/vmnet/agent.json, fw_cfg opt/vmnet/agent.json or
                         vmnet/agent.json on the NoCloud seed (the volume labelled cidata)
          --once         configure, report and exit (a second run changes nothing)
          --root DIR     treat DIR as / (tests)
        """;

    public static int Main(string[] args)
    {
        string? configFile = null, root = "/";
        var once = false;
        for (var i = 0; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--version": Console.WriteLine($"vmnet-agent {Version}"); return 0;
                case "--help" or "-h": Console.WriteLine(Usage); return 0;
                case "--once": once = true; break;
                case "--config" when i + 1 < args.Length: configFile = args[++i]; break;
                case "--root" when i + 1 < args.Length: root = args[++i]; break;
                default: Console.Error.WriteLine($"vmnet-agent: unknown argument `{args[i]}`\n{Usage}"); return 2;
            }
        }
        using var cancel = new CancellationTokenSource();
        Console.CancelKeyPress += (_, e) => { e.Cancel = true; cancel.Cancel(); };
        return Run(new HostFiles(root), configFile, once, cancel.Token);
    }

    public static int Run(HostFiles host, string? configFile, bool once, CancellationToken cancel)
    {
        var log = Console.Error;
        var clock = Stopwatch.StartNew();
        (AgentConfig Config, string Source) loaded;
        try
        {
            var found = ConfigLoader.Load(host, configFile, host.Root);
            if (found is null)
            {
                log.WriteLine($"vmnet-agent: no config: looked in {ConfigLoader.Described}; nothing to do");
                return 0;
            }
            loaded = found.Value;
        }
        catch (ConfigException e)
        {
            log.WriteLine($"vmnet-agent: {e.Message}");
            return 2;
        }
        var config = loaded.Config;
        log.WriteLine($"vmnet-agent {Version}: config from {loaded.Source}, {config.Networks.Count} network(s)");

        using var reporter = new Reporter(host, config.ReportPort, log);
        var dhcp = new Dictionary<string, DhcpService>();
        var monitor = new BondMonitor(host, config, reporter, bond => dhcp.GetValueOrDefault(bond)?.Address);
        monitor.ReportStarted(Version);
        using var links = new NetlinkLinkControl(host);
        var gate = new Lock();                     // the DHCP clients' threads change DNS and bonds too
        var configurator = new BondConfigurator(host, links, what => log.WriteLine($"vmnet-agent: {what}"));
        using var stopDhcp = CancellationTokenSource.CreateLinkedTokenSource(cancel);
        var failed = 0;
        try
        {
            configurator.ApplyHostname(config.Hostname);
            configurator.ApplyDns(config);
            if (config.Networks.Count > 0) EnsureBonding(host, log);
        }
        catch (Exception e) when (e is BondException or HostWriteException or NetlinkException)
        {
            failed++;
            Error(reporter, monitor, e.Message);
        }
        foreach (var network in config.Networks)
        {
            try
            {
                WaitForMembers(configurator, network, TimeSpan.FromSeconds(10), cancel);
                lock (gate) configurator.Apply(network, holdArp: network is { Dhcp: true, UsesArpMonitoring: true } && !HasIpv4(links, network.Name!));
                if (network.Dhcp)
                {
                    // Registered before it starts: its first lease already finds itself among the others.
                    var service = NewDhcp(host, links, config, network, configurator, gate, dhcp, log);
                    lock (gate) dhcp[network.Name!] = service;
                    service.Start(stopDhcp.Token);
                }
            }
            catch (Exception e) when (e is BondException or HostWriteException or NetlinkException)
            {
                failed++;
                Error(reporter, monitor, $"network `{network.Name}`: {e.Message}");
            }
        }
        log.WriteLine($"vmnet-agent: {configurator.Changes.Count} change(s) in {clock.ElapsedMilliseconds} ms");
        if (!monitor.WaitForActive(TimeSpan.FromSeconds(15), TimeSpan.FromSeconds(3), cancel))
            log.WriteLine("vmnet-agent: a bond has no active member after 15 s: check the members' carrier");
        var dhcpDeadline = DateTime.UtcNow + DhcpWait;
        foreach (var (bond, service) in dhcp)
            if (!service.Bound.WaitOne(Max(dhcpDeadline - DateTime.UtcNow, TimeSpan.Zero)))
                Error(reporter, monitor, $"network `{bond}`: no DHCP lease within {DhcpWait.TotalSeconds:F0} s (no server answered on the bond's VLAN); the agent keeps asking");
        monitor.ReportReady(configurator.Changes.Count);
        log.WriteLine($"vmnet-agent: network-ready after {clock.ElapsedMilliseconds} ms");
        if (once)
        {
            if (dhcp.Values.Any(s => s.Lease is not null))
                log.WriteLine("vmnet-agent: --once: DHCP leases are not renewed; each address goes when its lease ends");
            stopDhcp.Cancel();
            foreach (var service in dhcp.Values) service.Join(TimeSpan.FromSeconds(2));
            return failed == 0 ? 0 : 1;
        }
        monitor.Run(TimeSpan.FromMilliseconds(50), cancel);
        return 0;
    }

    /// <summary>How long network-ready waits for the DHCP leases.</summary>
    private static readonly TimeSpan DhcpWait = TimeSpan.FromSeconds(30);

    private static TimeSpan Max(TimeSpan a, TimeSpan b) => a > b ? a : b;

    private static bool HasIpv4(ILinkControl links, string bond)
    {
        try { return links.Addresses(bond).Any(a => a.Address.Address.AddressFamily == System.Net.Sockets.AddressFamily.InterNetwork); }
        catch (NetlinkException) { return false; }                        // no such link yet
    }

    /// <summary>The DHCP client of one network; each lease it gets, renews or loses rewrites resolv.conf from every
    /// network's leases (<paramref name="all"/>, read under <paramref name="gate"/>) and, for ARP monitoring, switches
    /// the bond's monitor.</summary>
    private static DhcpService NewDhcp(HostFiles host, NetlinkLinkControl links, AgentConfig config, NetworkConfig network, BondConfigurator configurator,
        Lock gate, Dictionary<string, DhcpService> all, TextWriter log)
    {
        DhcpService? service = null;
        service = new DhcpService(host, links, network, DhcpIdentity.For(network, config.Hostname), new SystemDhcpClock(),
            () => new PacketTransport(network.Name!, int.TryParse(host.Read($"sys/class/net/{network.Name}/ifindex"), out var index) && index > 0
                ? index : throw new DhcpException($"the bond `{network.Name}` is gone")),
            what => { lock (gate) configurator.Record(what); },
            what => log.WriteLine($"vmnet-agent: {what}"),
            () =>
            {
                lock (gate)
                {
                    try
                    {
                        configurator.ApplyDns(config, all.Values.Select(s => s.Lease).OfType<DhcpLease>());
                        // ARP monitoring waits for an address, and waits again when the lease is gone (see BondConfigurator.Apply).
                        if (network.UsesArpMonitoring) configurator.Apply(network, holdArp: service!.Address is null);
                    }
                    catch (Exception e) when (e is BondException or HostWriteException or NetlinkException)
                    {
                        log.WriteLine($"vmnet-agent: network `{network.Name}`: after the DHCP lease: {e.Message}");
                    }
                }
            });
        return service;
    }

    private static void Error(Reporter reporter, BondMonitor monitor, string message) =>
        reporter.Send(new ErrorEvent(monitor.UptimeMs(), message));

    /// <summary>Loads the bonding module when the kernel has no bonding_masters yet (the only program the agent may run).</summary>
    private static void EnsureBonding(HostFiles host, TextWriter log)
    {
        if (host.Exists("sys/class/net/bonding_masters")) return;
        if (host.Root != "/") throw new BondException("bonding_masters missing below the test root");
        log.WriteLine("vmnet-agent: loading the bonding module");
        using var modprobe = Process.Start(new ProcessStartInfo("/sbin/modprobe", ["bonding", "max_bonds=0"]) { UseShellExecute = false })
            ?? throw new BondException("cannot start /sbin/modprobe");
        modprobe.WaitForExit();
        if (!host.Exists("sys/class/net/bonding_masters"))
            throw new BondException("the kernel has no bonding support: /sys/class/net/bonding_masters is missing after `modprobe bonding`");
    }

    /// <summary>NICs can appear after the agent starts (drivers probe asynchronously): wait for every member's MAC.</summary>
    private static void WaitForMembers(BondConfigurator configurator, NetworkConfig network, TimeSpan timeout, CancellationToken cancel)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (DateTime.UtcNow < deadline && !cancel.IsCancellationRequested)
        {
            if (network.Members.All(m => m.Name is not null && (configurator.FindByMac(m.Mac!) is not null))) return;
            Thread.Sleep(50);
        }
    }
}
