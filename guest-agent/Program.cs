using System.Diagnostics;
using System.Text.Json;
using VmNet.GuestAgent.Bonds;
using VmNet.GuestAgent.Config;
using VmNet.GuestAgent.Host;
using VmNet.GuestAgent.Reporting;

namespace VmNet.GuestAgent;

public static class Program
{
    public const string Version = "0.1.0";

    private const string Usage = """
        usage: vmnet-agent [--config FILE] [--once] [--root DIR] [--version]
          Builds one active-backup bond per network from the config, sets addresses, routes, DNS and the hostname,
          reports network-ready on the virtio-serial report port, then reports bond changes until killed.
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
        var monitor = new BondMonitor(host, config, reporter);
        using var links = new Netlink(host);
        var configurator = new BondConfigurator(host, links, what => log.WriteLine($"vmnet-agent: {what}"));
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
                configurator.Apply(network);
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
        monitor.ReportReady(configurator.Changes.Count);
        log.WriteLine($"vmnet-agent: network-ready after {clock.ElapsedMilliseconds} ms");
        if (once) return failed == 0 ? 0 : 1;
        monitor.Run(TimeSpan.FromMilliseconds(50), cancel);
        return 0;
    }

    private static void Error(Reporter reporter, BondMonitor monitor, string message) =>
        reporter.Send(JsonSerializer.Serialize(new ErrorEvent("error", monitor.UptimeMs(), message), ReportJsonContext.Default.ErrorEvent));

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
