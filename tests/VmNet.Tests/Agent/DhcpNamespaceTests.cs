using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text.RegularExpressions;
using VmNet.Contract;
using VmNet.GuestAgent.Dhcp;
using VmNet.GuestAgent.Host;
using VmNet.Tests.Support;

namespace VmNet.Tests.Agent;

/// <summary>
/// The agent's DHCP client against another real server, with leases short enough to watch them renew and expire:
/// busybox's udhcpd in one network namespace, the client in another, a veth pair between them. The client runs in
/// this process on a thread moved into its namespace (setns), with the agent's own packet socket and rtnetlink
/// code; nothing changes in the host's own namespace.
/// </summary>
public sealed class DhcpNamespaceTests(ITestOutputHelper output) : IDisposable
{
    private const int CLONE_NEWNET = 0x40000000;
    private readonly TempDir _dir = new();
    private readonly List<IDisposable> _owned = [];
    private NetNamespace _server = null!, _client = null!;
    private Udhcpd? _udhcpd;
    private string Client => _client.Name;
    private string ClientLink => "vdc0";

    [DllImport("libc", SetLastError = true)]
    private static extern int setns(int fd, int nstype);

    private Task<string> Ip(params string[] args) => _client.Ip(args);

    /// <summary>Two namespaces, a veth between them, udhcpd (leases of <paramref name="leaseSeconds"/>) on the server side.</summary>
    private async Task<int> Network(int leaseSeconds)
    {
        RequiredTool.Path("busybox");
        _server = await NetNamespace.Create("vmnet-ds");
        _owned.Add(_server);
        _client = await NetNamespace.Create("vmnet-dc");
        _owned.Add(_client);
        await Ip("link", "add", ClientLink, "netns", Client, "type", "veth", "peer", "name", "vds0", "netns", _server.Name);
        await Ip("-n", Client, "link", "set", ClientLink, "up");
        _udhcpd = await Udhcpd.Start(_server, "vds0", _dir.Path, new DhcpServer("10.77.0.1", "10.77.0.50", "10.77.0.60", leaseSeconds, "10.77.0.1", "10.77.0.1", "ns.example"));
        _owned.Add(_udhcpd);
        // The agent reads a link's index from sysfs; this namespace's sysfs is not mounted here, so give it the number.
        var index = Regex.Match(await Ip("-n", Client, "-o", "link", "show", ClientLink), @"^(\d+):").Groups[1].Value;
        _dir.Write($"root/sys/class/net/{ClientLink}/ifindex", index + "\n");
        return int.Parse(index);
    }

    /// <summary>Runs <paramref name="body"/> on a thread of its own inside the client namespace (threads it starts stay there).</summary>
    private Task InClientNamespace(Func<Task> body)
    {
        var done = new TaskCompletionSource();
        var thread = new Thread(() =>
        {
            try
            {
                using var ns = File.OpenHandle($"/run/netns/{Client}");
                if (setns((int)ns.DangerousGetHandle(), CLONE_NEWNET) != 0)
                    throw new InvalidOperationException($"setns failed: errno {Marshal.GetLastPInvokeError()}");
                body().GetAwaiter().GetResult();
                done.SetResult();
            }
            catch (Exception e) { done.SetException(e); }
        });
        thread.Start();
        return done.Task;
    }

    private (DhcpService Service, NetlinkLinkControl Links, List<string> Log) Service(int index, string root)
    {
        var log = new List<string>();
        var host = new HostFiles(root);
        var links = new NetlinkLinkControl(host);
        var network = new NetworkConfig
        {
            Name = ClientLink, Dhcp = true, Members = [new() { Name = "m0", Mac = "02:00:00:00:77:11" }],
        };
        var service = new DhcpService(host, links, network, DhcpIdentity.For(network, "ns-client"), new SystemDhcpClock(),
            () => new PacketTransport(ClientLink, index), _ => { }, l => { lock (log) log.Add(l); }, () => { });
        return (service, links, log);
    }

    private async Task<string> WaitForLog(List<string> log, string text, TimeSpan timeout)
    {
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < timeout)
        {
            lock (log) if (log.FirstOrDefault(l => l.Contains(text)) is { } line) return line;
            await Task.Delay(100);
        }
        lock (log) Assert.Fail($"no `{text}` within {timeout.TotalSeconds} s; client log:\n{string.Join('\n', log)}\nudhcpd:\n{_udhcpd?.Log}");
        return "";
    }

    [Fact]
    public async Task A_six_second_lease_is_set_renewed_at_t1_and_removed_when_the_server_is_gone()
    {
        var index = await Network(leaseSeconds: 6);
        using var stop = new CancellationTokenSource();
        var (service, links, log) = Service(index, _dir["root"]);
        string first = "", renewed = "", expired = "";
        string addressAfterLease = "", routeAfterLease = "", addressAfterRenewal = "", addressAfterExpiry = "", routeAfterExpiry = "";

        await InClientNamespace(async () =>
        {
            using var _ = links;
            service.Start(stop.Token);
            Assert.True(service.Bound.WaitOne(TimeSpan.FromSeconds(20)), $"no lease within 20 s:\n{string.Join('\n', log)}");
            first = await WaitForLog(log, "leased from 10.77.0.1", TimeSpan.FromSeconds(1));
            addressAfterLease = await Ip("-n", Client, "addr", "show", "dev", ClientLink);
            routeAfterLease = await Ip("-n", Client, "route");
            renewed = await WaitForLog(log, "renewed with 10.77.0.1", TimeSpan.FromSeconds(10));
            addressAfterRenewal = await Ip("-n", Client, "addr", "show", "dev", ClientLink);

            _udhcpd!.Stop();
            expired = await WaitForLog(log, "expired with no server answering", TimeSpan.FromSeconds(15));
            await Task.Delay(300);
            addressAfterExpiry = await Ip("-n", Client, "addr", "show", "dev", ClientLink);
            routeAfterExpiry = await Ip("-n", Client, "route");
            stop.Cancel();
            service.Join(TimeSpan.FromSeconds(5));
        });
        output.WriteLine(string.Join('\n', log));
        output.WriteLine(addressAfterLease + routeAfterLease);

        Assert.Matches(@"DHCP: 10\.77\.0\.(5\d|60)/24 leased from 10\.77\.0\.1 \(lease 6 s, router 10\.77\.0\.1, DNS 10\.77\.0\.1\)", first);
        var leased = Regex.Match(first, @"10\.77\.0\.\d+/24").Value;
        Assert.Matches($@"inet {Regex.Escape(leased)} brd 10\.77\.0\.255 scope global dynamic {ClientLink}\s+valid_lft [1-6]sec", addressAfterLease);
        Assert.Contains($"default via 10.77.0.1 dev {ClientLink} proto dhcp metric 1024", routeAfterLease);
        Assert.Contains($"DHCP: {leased} renewed with 10.77.0.1 (lease 6 s", renewed);
        // Renewed at T1 (3 s): the kernel's lifetime was set back to the whole lease, not left to run out.
        Assert.InRange(int.Parse(Regex.Match(addressAfterRenewal, @"valid_lft (\d+)sec").Groups[1].Value), 4, 6);
        Assert.Contains($"DHCP: the lease of {leased} expired", expired);
        Assert.DoesNotContain("inet 10.77.", addressAfterExpiry);
        Assert.DoesNotContain("default via", routeAfterExpiry);
        Assert.Null(new HostFiles(_dir["root"]).Read($"run/vmnet-agent/dhcp-{ClientLink}.lease"));
    }

    public void Dispose()
    {
        foreach (var owned in Enumerable.Reverse(_owned)) owned.Dispose();
        _dir.Dispose();
    }
}
