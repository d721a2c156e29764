using System.Net;
using VmNet.GuestAgent.Host;
using VmNet.GuestAgent.Net;
using VmNet.Netlink;

namespace VmNet.Tests.Agent;

/// <summary>
/// Just enough of the kernel's /sys/class/net and bonding sysfs to check what the agent writes and in what order.
/// It refuses what the real kernel refuses: mode or fail_over_mac on a bond with slaves, enslaving a link that is up,
/// renaming a link that is up.
/// </summary>
public sealed class FakeKernel : IHostFiles, ILinkControl
{
    private sealed class Link { public required string Mac; public bool Up; public int Mtu = 1500; public string? Master; public int Index; }
    private sealed class Bond { public Dictionary<string, string> Options = new(); public List<string> Slaves = []; }

    private readonly Dictionary<string, Link> _links = new();
    private readonly Dictionary<string, Bond> _bonds = new();
    private readonly Dictionary<string, string> _files = new() { ["proc/sys/kernel/hostname"] = "localhost", ["etc/resolv.conf"] = "" };
    private readonly HashSet<(string, Cidr)> _addresses = [];
    private readonly HashSet<string> _routes = [];
    private int _nextIndex = 2;

    /// <summary>Every write and link operation, in order.</summary>
    public List<string> Log { get; } = [];

    public FakeKernel WithNic(string name, string mac, bool up = false)
    {
        _links[name] = new Link { Mac = mac, Up = up, Index = _nextIndex++ };
        return this;
    }

    public bool Exists(string path) => path == "etc" || Read(path) is not null || (path.StartsWith("sys/class/net/") && Parts(path) is [_, _, _, var n, ..] && (_links.ContainsKey(n) && (path.Split('/').Length == 4 || (path.EndsWith("/bonding") && _bonds.ContainsKey(n)))));

    private static string[] Parts(string path) => path.Split('/');

    public string? Read(string path)
    {
        if (_files.TryGetValue(path, out var file)) return file.TrimEnd();
        var p = Parts(path);
        if (path == "sys/class/net/bonding_masters") return string.Join(' ', _bonds.Keys);
        if (p is not ["sys", "class", "net", var name, ..] || !_links.TryGetValue(name, out var link)) return null;
        return p[4..] switch
        {
            ["address"] => link.Mac,
            ["flags"] => link.Up ? "0x1003" : "0x1002",
            ["mtu"] => link.Mtu.ToString(),
            ["ifindex"] => link.Index.ToString(),
            ["bonding_slave", "perm_hwaddr"] when link.Master is not null => link.Mac,
            ["bonding", "slaves"] when _bonds.TryGetValue(name, out var b) => string.Join(' ', b.Slaves),
            ["bonding", var option] when _bonds.TryGetValue(name, out var b) => b.Options.GetValueOrDefault(option, Default(option)),
            _ => null,
        };
    }

    private static string Default(string option) => option switch
    {
        "mode" => "balance-rr 0",
        "fail_over_mac" => "none 0",
        "miimon" or "arp_interval" or "updelay" or "downdelay" => "0",
        "num_grat_arp" => "1",
        _ => "",
    };

    public void Write(string path, string value)
    {
        Log.Add($"write {path} {value.Trim()}");
        if (_files.ContainsKey(path)) { _files[path] = value; return; }
        if (path == "sys/class/net/bonding_masters" && value.StartsWith('+'))
        {
            var name = value[1..];
            _links[name] = new Link { Mac = "02:ff:ff:ff:ff:ff", Index = _nextIndex++ };
            _bonds[name] = new Bond();
            return;
        }
        var p = Parts(path);
        if (p is not ["sys", "class", "net", var bondName, ..] || !_bonds.TryGetValue(bondName, out var bond))
            throw new HostWriteException(path, value, "No such file or directory");
        var option = p[^1];
        switch (option)
        {
            case "mode" or "fail_over_mac" when bond.Slaves.Count > 0:
                throw new HostWriteException(path, value, "Directory not empty (the bond has slaves)");
            case "slaves" when value.StartsWith('+'):
                var slave = _links[value[1..]];
                if (slave.Up) throw new HostWriteException(path, value, "Invalid argument (slave is up)");
                bond.Slaves.Add(value[1..]);
                slave.Master = bondName;
                slave.Up = true; // the kernel opens the slave
                return;
            case "slaves" when value.StartsWith('-'):
                bond.Slaves.Remove(value[1..]);
                _links[value[1..]].Master = null;
                return;
            case "arp_ip_target":
                var targets = bond.Options.GetValueOrDefault(option, "").Split(' ', StringSplitOptions.RemoveEmptyEntries).ToList();
                if (value.StartsWith('+')) targets.Add(value[1..]); else targets.Remove(value[1..]);
                bond.Options[option] = string.Join(' ', targets);
                return;
            case "mtu":
                _links[bondName].Mtu = int.Parse(value);
                return;
            case "mode":
                bond.Options[option] = value + " 1";
                return;
            case "fail_over_mac":
                bond.Options[option] = value + " 1";
                return;
            case "arp_interval" when value != "0":
                bond.Options["miimon"] = "0";
                bond.Options[option] = value;
                return;
            default:
                bond.Options[option] = value.Trim();
                return;
        }
    }

    public IReadOnlyList<string> List(string directory) =>
        directory == "sys/class/net" ? _links.Keys.Append("bonding_masters").Order(StringComparer.Ordinal).ToList() : [];

    public void Rename(string name, string newName)
    {
        Log.Add($"rename {name} {newName}");
        var link = _links[name];
        if (link.Up) throw new NetlinkException($"renaming `{name}` failed: Device or resource busy");
        _links.Remove(name);
        _links[newName] = link;
    }

    public void SetUp(string name, bool up)
    {
        Log.Add($"{(up ? "up" : "down")} {name}");
        _links[name].Up = up;
    }

    public bool AddAddress(string name, Cidr address)
    {
        Log.Add($"address {name} {address}");
        return _addresses.Add((name, address));
    }

    public bool AddDefaultRoute(string name, IPAddress gateway, int metric = 0)
    {
        Log.Add($"route {name} {gateway}{(metric == 0 ? "" : $" metric {metric}")}");
        return _routes.Add($"{name} {gateway} {metric}");
    }

    public bool RemoveDefaultRoute(string name, IPAddress gateway, int metric = 0)
    {
        Log.Add($"route del {name} {gateway}{(metric == 0 ? "" : $" metric {metric}")}");
        return _routes.Remove($"{name} {gateway} {metric}");
    }

    /// <summary>Addresses with a lifetime (DHCP), by link, with the lifetime last set.</summary>
    private readonly Dictionary<(string, Cidr), TimeSpan> _dynamic = new();

    public bool SetAddress(string name, Cidr address, TimeSpan valid)
    {
        Log.Add($"address {name} {address} valid {valid.TotalSeconds:F0}s");
        lock (_dynamic)
        {
            var added = !_dynamic.ContainsKey((name, address));
            _dynamic[(name, address)] = valid;
            return added;
        }
    }

    public bool RemoveAddress(string name, Cidr address)
    {
        Log.Add($"address del {name} {address}");
        lock (_dynamic) return _dynamic.Remove((name, address)) | _addresses.Remove((name, address));
    }

    public IReadOnlyList<(Cidr Address, bool Permanent)> Addresses(string name)
    {
        lock (_dynamic)
            return _addresses.Where(a => a.Item1 == name).Select(a => (a.Item2, true))
                .Concat(_dynamic.Keys.Where(a => a.Item1 == name).Select(a => (a.Item2, false))).ToList();
    }

    /// <summary>Adds an address another DHCP client set (it expires).</summary>
    public FakeKernel WithDynamicAddress(string name, string cidr)
    {
        Cidr.TryParse(cidr, out var address);
        lock (_dynamic) _dynamic[(name, address)] = TimeSpan.FromHours(1);
        return this;
    }

    public IReadOnlyList<string> Routes => _routes.Order(StringComparer.Ordinal).ToList();

    public void Save(string path, string content)
    {
        Log.Add($"save {path} {content.Trim()}");
        _files[path] = content;
    }

    public void Delete(string path)
    {
        Log.Add($"delete {path}");
        _files.Remove(path);
    }
}
