using System.Globalization;
using System.Net;
using System.Net.Sockets;
using VmNet.Contract;
using VmNet.GuestAgent.Host;
using VmNet.GuestAgent.Net;
using VmNet.Netlink;

namespace VmNet.GuestAgent.Dhcp;

/// <summary>
/// Keeps one bond's DHCP lease: gets it, sets the address with the lease's lifetime (so the kernel drops it if the
/// agent dies and nobody renews), the router as a default route (metric 1024: a static gateway wins), renews it at
/// T1 and rebinds at T2, and takes the address away when the lease ends. The lease is remembered in
/// <c>/run/vmnet-agent/dhcp-BOND.lease</c>, so a restarted agent asks for the same address again (INIT-REBOOT) and a
/// second agent (<c>--once</c>) leaves it to the running one. In the cloud-init path the distribution may run DHCP on
/// the bond itself: an address another client set, or a link systemd-networkd or NetworkManager manages, is left to
/// that client (two clients with two identities would get two addresses).
/// </summary>
public sealed class DhcpService(IHostFiles host, ILinkControl links, NetworkConfig network, DhcpIdentity identity, IDhcpClock clock,
    Func<IDhcpTransport> transport, Action<string> changed, Action<string> log, Action onLease)
{
    public const int RouteMetric = 1024;
    private readonly ManualResetEventSlim _bound = new();
    private Thread? _thread;
    private volatile DhcpLease? _lease;

    private string Bond => network.Name!;
    private string StateFile => $"run/vmnet-agent/dhcp-{Bond}.lease";

    /// <summary>The lease this agent holds, or null.</summary>
    public DhcpLease? Lease => _lease;

    /// <summary>The bond's DHCP address, whoever holds it (this agent, another one, another client), for reports.</summary>
    public string? Address { get; private set; }

    /// <summary>Set once the bond has its DHCP address (or another client or agent holds it).</summary>
    public WaitHandle Bound => _bound.WaitHandle;

    /// <summary>Whether another client or agent keeps the address, so this one runs no client.</summary>
    public string? LeftTo { get; private set; }

    /// <summary>Looks for a client already at work (then only watches the address it sets); otherwise starts one,
    /// each on a thread of its own.</summary>
    public void Start(CancellationToken cancel)
    {
        var dynamic = Dynamic();
        var remembered = Remembered();
        if (remembered is { } r && r.Pid != Environment.ProcessId && IsAgent(r.Pid) && dynamic.Contains(r.Address))
        {
            LeftTo = $"vmnet-agent (pid {r.Pid})";
            Address = r.Address.ToString();
            log($"network `{Bond}`: the running vmnet-agent (pid {r.Pid}) holds the lease of {Address}");
            _bound.Set();
            return;
        }
        LeftTo = dynamic.Count > 0 && (remembered is null || !dynamic.Contains(remembered.Value.Address)) ? "another DHCP client" : Manager();
        if (LeftTo is not null)
        {
            log($"network `{Bond}`: {(dynamic.Count > 0 ? $"{dynamic[0]} was set by {LeftTo}" : $"{LeftTo} manages the link")}; leaving DHCP to it");
            _thread = new Thread(() => Watch(cancel)) { IsBackground = true, Name = $"dhcp {Bond}" };
        }
        else _thread = new Thread(() => Run(remembered?.Address.Address, cancel)) { IsBackground = true, Name = $"dhcp {Bond}" };
        _thread.Start();
    }

    /// <summary>Follows the address another client keeps on the bond (for the reports, and to release the ARP monitor).</summary>
    private void Watch(CancellationToken cancel)
    {
        do
        {
            string? now;
            try { now = Dynamic().FirstOrDefault() is { Address: not null } a ? a.ToString() : null; }
            catch (NetlinkException) { now = null; }
            if (now != Address)
            {
                Address = now;
                onLease();
            }
            if (now is not null) _bound.Set();
        } while (clock.Sleep(TimeSpan.FromSeconds(1), cancel));
    }

    /// <summary>The bond's IPv4 addresses that expire (a DHCP client's).</summary>
    private List<Cidr> Dynamic() =>
        links.Addresses(Bond).Where(a => !a.Permanent && a.Address.Address.AddressFamily == AddressFamily.InterNetwork).Select(a => a.Address).ToList();

    /// <summary>The network manager that configures the bond, if one does (cloud-init rendered its config): it runs
    /// DHCP itself, even if its address has not come yet.</summary>
    private string? Manager()
    {
        var index = host.Read($"sys/class/net/{Bond}/ifindex");
        if (index is null) return null;
        var networkd = host.Read($"run/systemd/netif/links/{index}");
        if (networkd is not null && networkd.Contains("NETWORK_FILE=/") && !networkd.Contains("ADMIN_STATE=unmanaged")) return "systemd-networkd";
        if (host.Exists($"run/NetworkManager/devices/{index}")) return "NetworkManager";
        return null;
    }

    /// <summary>Waits for the thread after <paramref name="cancel"/> fired (the lease stays, with its lifetime).</summary>
    public void Join(TimeSpan timeout) => _thread?.Join(timeout);

    private void Run(IPAddress? previous, CancellationToken cancel)
    {
        try
        {
            using var io = transport();
            var client = new DhcpClient(io, clock, identity, what => log($"network `{Bond}`: {what}"));
            while (!cancel.IsCancellationRequested)
            {
                var lease = client.Acquire(previous, cancel);
                if (lease is null) return;
                Apply(lease, null);
                while (true)
                {
                    var next = client.Extend(lease, cancel);
                    if (cancel.IsCancellationRequested) return;
                    if (next is null) { Drop(lease); previous = null; break; }
                    Apply(next, lease);
                    lease = next;
                }
            }
        }
        catch (Exception e) when (e is DhcpException or NetlinkException or HostWriteException)
        {
            log($"network `{Bond}`: DHCP stopped: {e.Message}");
        }
    }

    private void Apply(DhcpLease lease, DhcpLease? before)
    {
        if (before is not null && !before.Address.Equals(lease.Address)) Drop(before);
        if (links.SetAddress(Bond, lease.Cidr, lease.Left(clock.Now))) changed($"{Bond} address {lease.Cidr} (DHCP from {lease.Server})");
        var router = lease.Routers.FirstOrDefault();
        var oldRouter = before?.Routers.FirstOrDefault();
        if (oldRouter is not null && !oldRouter.Equals(router)) links.RemoveDefaultRoute(Bond, oldRouter, RouteMetric);
        if (router is not null && links.AddDefaultRoute(Bond, router, RouteMetric)) changed($"{Bond} default route via {router} (DHCP)");
        host.Save(StateFile, $"{lease.Cidr} {Environment.ProcessId}\n");
        _lease = lease;
        Address = lease.Cidr.ToString();
        onLease();
        _bound.Set();
    }

    private void Drop(DhcpLease lease)
    {
        if (links.RemoveAddress(Bond, lease.Cidr)) changed($"{Bond} address {lease.Cidr} removed (the lease ended)");
        if (lease.Routers.FirstOrDefault() is { } router) links.RemoveDefaultRoute(Bond, router, RouteMetric);
        host.Delete(StateFile);
        _lease = null;
        Address = null;
        onLease();
    }

    private (Cidr Address, int Pid)? Remembered()
    {
        var parts = host.Read(StateFile)?.Split(' ');
        if (parts is not [var cidr, var pid] || !Cidr.TryParse(cidr, out var address)
            || !int.TryParse(pid, NumberStyles.None, CultureInfo.InvariantCulture, out var number)) return null;
        return (address, number);
    }

    private bool IsAgent(int pid) => host.Read($"proc/{pid}/comm") == "vmnet-agent";
}
