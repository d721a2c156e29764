using System.Net;
using VmNet.Contract;
using VmNet.GuestAgent.Host;
using VmNet.GuestAgent.Net;

namespace VmNet.GuestAgent.Bonds;

/// <summary>A network that could not be configured; the message names the network and the next step.</summary>
public sealed class BondException(string message) : Exception(message);

/// <summary>
/// Brings the host to the config, one step at a time, and changes only what differs (a second run changes nothing).
/// Every bond setting goes through the kernel's bonding sysfs interface, in the order the kernel needs:
/// mode and fail_over_mac while the bond has no slaves, the monitor, delays and gratuitous ARPs,
/// then each member (down) into <c>slaves</c>, then <c>primary</c>, MTU, up, addresses, routes.
/// </summary>
public sealed class BondConfigurator(IHostFiles host, ILinkControl links, Action<string> log)
{
    private const string Net = "sys/class/net";
    private readonly List<string> _changes = [];

    /// <summary>What this instance changed so far, in order.</summary>
    public IReadOnlyList<string> Changes => _changes;

    public void ApplyHostname(string? hostname)
    {
        if (hostname is null) return;
        const string path = "proc/sys/kernel/hostname";
        if (host.Read(path) == hostname) return;
        host.Write(path, hostname);
        Changed($"hostname set to `{hostname}`");
    }

    /// <summary>Writes resolv.conf from the config's DNS servers and those of the DHCP leases (with their domains as
    /// the search list); leaves it alone when there are none.</summary>
    public void ApplyDns(AgentConfig config, IEnumerable<Dhcp.DhcpLease>? leases = null)
    {
        var held = leases?.ToList() ?? [];
        var servers = config.Networks.SelectMany(n => n.Dns).Concat(held.SelectMany(l => l.Dns.Select(d => d.ToString()))).Distinct().ToList();
        if (servers.Count == 0) return;
        var search = held.Select(l => l.Domain).Where(IsDomain).Distinct().ToList();
        var content = "# written by vmnet-agent\n" + (search.Count > 0 ? $"search {string.Join(' ', search)}\n" : "")
                      + string.Concat(servers.Select(s => $"nameserver {s}\n"));
        const string path = "etc/resolv.conf";
        if (host.Read(path) == content.TrimEnd()) return;
        if (!host.Exists("etc")) throw new BondException("/etc does not exist: cannot write resolv.conf");
        host.Write(path, content);
        Changed($"resolv.conf lists {string.Join(", ", servers)}");
    }

    /// <summary>A DHCP server's domain name, only if it is one (it ends up in resolv.conf).</summary>
    private static bool IsDomain(string? name) =>
        name is { Length: > 0 and <= 253 } && name.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '.');

    /// <summary>Finds the link that carries <paramref name="mac"/>: a member's permanent address counts, bonds are skipped.</summary>
    public string? FindByMac(string mac)
    {
        Mac.TryNormalize(mac, out var wanted);
        foreach (var name in host.List(Net))
        {
            if (name == "bonding_masters" || host.Exists($"{Net}/{name}/bonding")) continue;
            var current = host.Read($"{Net}/{name}/bonding_slave/perm_hwaddr") ?? host.Read($"{Net}/{name}/address");
            if (Mac.TryNormalize(current, out var found) && found == wanted) return name;
        }
        return null;
    }

    /// <summary>Brings one network's bond to the config. <paramref name="holdArp"/>: monitor with miimon 100 for now,
    /// not ARP: without an address the kernel's ARP probes go out from 0.0.0.0, and a member counts as up only if a
    /// target answers such a probe (or other traffic happens to arrive); until one does, the bond has no active
    /// member and DHCP cannot get the address. The agent applies the network again once DHCP gave one.</summary>
    public void Apply(NetworkConfig network, bool holdArp = false)
    {
        var bond = network.Name!;
        var dir = $"{Net}/{bond}/bonding";

        // Members: found by MAC, named as the config says (the kernel renames only links that are down).
        foreach (var member in network.Members)
        {
            var current = FindByMac(member.Mac!)
                ?? throw new BondException($"network `{bond}`: no link has MAC {member.Mac} (member `{member.Name}`); check the VF's admin MAC and that its driver is loaded");
            if (current == member.Name) continue;
            if (host.Exists($"{Net}/{member.Name}"))
                throw new BondException($"network `{bond}`: cannot name {member.Mac} `{member.Name}`: another link already has that name");
            if (IsUp(current)) { links.SetUp(current, false); Changed($"{current} down to rename it"); }
            links.Rename(current, member.Name!);
            Changed($"{current} ({member.Mac}) renamed to {member.Name}");
        }

        // The bond itself.
        if (!Tokens(host.Read($"{Net}/bonding_masters")).Contains(bond))
        {
            if (host.Exists($"{Net}/{bond}"))
                throw new BondException($"network `{bond}`: a link named `{bond}` exists and is not a bond; rename the network or that link");
            host.Write($"{Net}/bonding_masters", "+" + bond);
            Changed($"bond {bond} created");
        }

        // Settings the kernel accepts only while the bond has no slaves.
        var needsEmpty = First(host.Read($"{dir}/mode")) != network.Mode || First(host.Read($"{dir}/fail_over_mac")) != network.FailOverMac;
        if (needsEmpty)
        {
            foreach (var slave in Tokens(host.Read($"{dir}/slaves")))
            {
                host.Write($"{dir}/slaves", "-" + slave);
                Changed($"{slave} released from {bond} to change mode or fail_over_mac");
            }
            if (IsUp(bond)) { links.SetUp(bond, false); Changed($"{bond} down to change mode"); }
            Set(dir, "mode", network.Mode);
            Set(dir, "fail_over_mac", network.FailOverMac);
        }

        // The link monitor: one of MII or ARP.
        if (network.UsesArpMonitoring && !holdArp)
        {
            var targets = Tokens(host.Read($"{dir}/arp_ip_target"));
            foreach (var target in network.ArpTargets.Where(t => !targets.Contains(t)))
            {
                host.Write($"{dir}/arp_ip_target", "+" + target);
                Changed($"{bond} arp_ip_target +{target}");
            }
            foreach (var target in targets.Where(t => !network.ArpTargets.Contains(t)))
            {
                host.Write($"{dir}/arp_ip_target", "-" + target);
                Changed($"{bond} arp_ip_target -{target}");
            }
            Set(dir, "arp_interval", network.ArpInterval.ToString());
        }
        else
        {
            Set(dir, "arp_interval", "0");
            foreach (var target in Tokens(host.Read($"{dir}/arp_ip_target")))
            {
                host.Write($"{dir}/arp_ip_target", "-" + target);
                Changed($"{bond} arp_ip_target -{target}");
            }
            Set(dir, "miimon", (network.UsesArpMonitoring ? 100 : network.Miimon).ToString());
            Set(dir, "updelay", (network.UsesArpMonitoring ? 0 : network.UpDelay).ToString());
            Set(dir, "downdelay", (network.UsesArpMonitoring ? 0 : network.DownDelay).ToString());
        }
        Set(dir, "num_grat_arp", network.NumGratArp.ToString());

        // Slaves: each member goes in while it is down.
        var slaves = Tokens(host.Read($"{dir}/slaves"));
        foreach (var member in network.Members.Select(m => m.Name!).Where(m => !slaves.Contains(m)))
        {
            if (IsUp(member)) { links.SetUp(member, false); Changed($"{member} down to enslave it"); }
            host.Write($"{dir}/slaves", "+" + member);
            Changed($"{member} enslaved to {bond}");
        }
        foreach (var extra in slaves.Where(s => network.Members.All(m => m.Name != s)))
        {
            host.Write($"{dir}/slaves", "-" + extra);
            Changed($"{extra} released from {bond}: not a member in the config");
        }
        Set(dir, "primary", network.Primary ?? "");

        if (network.Mtu is { } mtu && host.Read($"{Net}/{bond}/mtu") != mtu.ToString())
        {
            host.Write($"{Net}/{bond}/mtu", mtu.ToString());
            Changed($"{bond} mtu {mtu}");
        }

        if (!IsUp(bond)) { links.SetUp(bond, true); Changed($"{bond} up"); }
        foreach (var member in network.Members.Select(m => m.Name!).Where(m => !IsUp(m)))
        {
            links.SetUp(member, true);
            Changed($"{member} up");
        }

        foreach (var text in network.Addresses)
        {
            Cidr.TryParse(text, out var address);
            if (links.AddAddress(bond, address)) Changed($"{bond} address {address}");
        }
        if (network.Gateway is { } gateway && links.AddDefaultRoute(bond, IPAddress.Parse(gateway)))
            Changed($"{bond} default route via {gateway}");
    }

    private bool IsUp(string link)
    {
        var flags = host.Read($"{Net}/{link}/flags");
        return flags is not null && (Convert.ToInt32(flags, 16) & 1) != 0;
    }

    /// <summary>Writes a bonding option when its first token differs.</summary>
    private void Set(string dir, string option, string value)
    {
        if (First(host.Read($"{dir}/{option}")) == value) return;
        host.Write($"{dir}/{option}", value.Length == 0 ? "\n" : value);
        Changed($"{dir.Split('/')[3]} {option} {(value.Length == 0 ? "(none)" : value)}");
    }

    /// <summary>Records a change made elsewhere (the DHCP client's address and route).</summary>
    public void Record(string what) => Changed(what);

    private void Changed(string what)
    {
        _changes.Add(what);
        log(what);
    }

    private static string First(string? text) => Tokens(text).FirstOrDefault() ?? "";

    private static List<string> Tokens(string? text) =>
        (text ?? "").Split([' ', '\n', '\t'], StringSplitOptions.RemoveEmptyEntries).ToList();
}
