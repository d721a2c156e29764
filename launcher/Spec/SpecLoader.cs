using System.Globalization;
using System.Net;
using System.Text.RegularExpressions;
using YamlDotNet.Core;
using YamlDotNet.RepresentationModel;

namespace VmNet.Spec;

/// <summary>
/// Loads a vm.yaml: parses it, fills the built-in defaults (<see cref="Defaults"/>) and validates every field,
/// collecting every problem with its field path, line and column. Throws <see cref="SpecException"/> listing them all.
/// </summary>
public static partial class SpecLoader
{
    public static VmSpec LoadFile(string path) => LoadFile(path, () => null);

    /// <param name="host">The host config whose named networks the spec may use (<c>network: NAME</c>), read only when
    /// a network names one (a spec that names none does not depend on it); null: none.</param>
    public static VmSpec LoadFile(string path, Func<HostNetworks?> host)
    {
        string text;
        try
        {
            text = YamlInput.ReadFile(path, path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new VmNetException($"cannot read the spec {path}: {e.Message}", ExitCodes.InvalidInput);
        }
        return Load(text, path, host);
    }

    /// <summary>
    /// Runs the loader over <paramref name="text"/> with <paramref name="recorder"/> declared to every reader: each
    /// field it looks at, with its type and bounds, each map whose other keys it refuses, each field it requires.
    /// </summary>
    internal static void Declare(string text, SchemaRecorder recorder)
    {
        var problems = new Problems { Recorder = recorder };
        if (YamlInput.Parse(text, "schema").Documents is [{ RootNode: YamlMappingNode root }]) Read(new MapReader(root, "", problems), () => null);
    }

    public static VmSpec Load(string text, string source = "vm.yaml", HostNetworks? host = null) => Load(text, source, () => host);

    public static VmSpec Load(string text, string source, Func<HostNetworks?> host)
    {
        var problems = new Problems();
        YamlMappingNode? root = null;
        var stream = YamlInput.Parse(text, source);
        if (stream.Documents.Count == 0)
            problems.Add("(root)", "the spec is empty; start from templates/vm.reference.yaml");
        else if (stream.Documents.Count > 1)
            problems.Add("(root)", "the spec holds more than one YAML document; keep one VM per file");
        else if (stream.Documents[0].RootNode is YamlMappingNode m)
            root = m;
        else
            problems.Add("(root)", $"must be a mapping of keys (name:, networks:, ...), got {MapReader.Describe(stream.Documents[0].RootNode)}",
                stream.Documents[0].RootNode);

        VmSpec? spec = null;
        if (root is not null) spec = Read(new MapReader(root, "", problems), host);
        if (problems.Any || spec is null) throw new SpecException(source, problems.Errors);
        return spec;
    }


    private static VmSpec? Read(MapReader r, Func<HostNetworks?>? host)
    {
        var p = r.Problems;
        var name = r.String("name");
        p.Recorder?.Pattern("name", VmName());
        if (name is null) p.Add("name", "is required: the VM's name, which becomes the libvirt domain name (e.g. name: ceph-osd-1)", r.Node);
        else if (VmNameProblem(name) is { } problem)
            p.Add("name", problem, r.Get("name"));

        var cpus = r.Int("cpus", 1, 512, "vCPUs") ?? Defaults.Cpus;
        var memory = Size(r, "memory", minMiB: 128) ?? Defaults.MemoryMiB;
        var backend = r.Choice("backend", BackendChoices) ?? Defaults.VmBackend;
        var accel = r.Choice("accel", AccelChoices) ?? Defaults.VmAccel;
        var autostart = r.Bool("autostart") ?? false;

        DiskSpec? disk = null;
        var diskReader = r.Map("disk");
        if (diskReader is null)
        {
            if (r.Get("disk") is null) p.Add("disk", "is required: disk.image names the base image (a qcow2 file, absolute path)", r.Node);
        }
        else
        {
            var image = diskReader.String("image");
            if (image is null) p.Add("disk.image", "is required: an absolute path to a qcow2 base image", diskReader.Node);
            else if (FilePathProblem(image) is { } problem)
                p.Add("disk.image", problem, diskReader.Get("image"));
            var size = Size(diskReader, "size", minMiB: 1024);
            diskReader.RejectUnknownKeys();
            if (image is not null) disk = new DiskSpec(image, size);
        }

        var boot = ReadBoot(r.Map("boot"), p);
        var placement = ReadPlacement(r.Map("placement"), memory, p);

        var networks = new List<NetworkSpec>();
        var networkReaders = r.MapList("networks");
        p.Recorder?.Required("networks");
        p.Recorder?.Items("networks", 1);
        if (networkReaders is null || networkReaders.Count == 0)
        {
            if (r.Get("networks") is null || networkReaders is { Count: 0 })
                p.Add("networks", "needs at least one network (name, ports, address)", r.Get("networks") ?? r.Node);
        }
        else
        {
            for (var i = 0; i < networkReaders.Count; i++)
            {
                var n = ReadNetwork(networkReaders[i], host);
                if (n is not null) networks.Add(n);
            }
            CheckAcrossNetworks(networkReaders, networks, p);
        }

        var guest = ReadGuest(r.Map("guest"), name, p);
        r.RejectUnknownKeys();

        if (p.Any || name is null || disk is null) return null;
        return new VmSpec(name, cpus, memory, disk, networks, guest, backend, accel, autostart, boot) { Placement = placement };
    }

    private static PlacementSpec ReadPlacement(MapReader? m, int memoryMiB, Problems p)
    {
        if (m is null) return PlacementSpec.Default;
        var numa = m.Choice("numa", NumaChoices) ?? PlacementSpec.Default.Numa;
        var pinning = m.Choice("cpuPinning", PinningChoices) ?? PlacementSpec.Default.CpuPinning;
        var huge = m.Choice("hugepages", HugepageChoices) ?? 0;
        m.RejectUnknownKeys();
        if (huge > 0 && memoryMiB * 1024L % huge != 0)
            p.Add("memory", $"must be a whole number of {(huge == 2048 ? "2MiB" : "1GiB")} pages with placement.hugepages: {(huge == 2048 ? "2MiB" : "1GiB")}, got {memoryMiB}MiB; "
                + $"round it to {(memoryMiB * 1024L + huge - 1) / huge * huge / 1024}MiB", m.Node);
        if (numa == NumaPolicy.Any && huge > 0)
            p.Add(m.Child("hugepages"), "needs a NUMA node to take the pages from: use numa: nic or preferred with hugepages", m.Get("hugepages"));
        if (numa == NumaPolicy.Any && pinning == CpuPinning.Dedicated)
            p.Add(m.Child("cpuPinning"), "dedicated pins each vCPU to a CPU of the NIC's node: use numa: nic or preferred with it", m.Get("cpuPinning"));
        return new PlacementSpec(numa, pinning, huge);
    }

    private static BootSpec? ReadBoot(MapReader? b, Problems p)
    {
        if (b is null) return null;
        string? Path(string key, bool required)
        {
            var value = b.String(key);
            if (value is null)
            {
                if (required) p.Add(b.Child(key), "is required in boot: an absolute path to the kernel image (e.g. /var/lib/vmnet/vmlinuz)", b.Node);
                return null;
            }
            if (FilePathProblem(value) is not { } problem) return value;
            p.Add(b.Child(key), problem, b.Get(key));
            return null;
        }
        var kernel = Path("kernel", required: true);
        var initrd = Path("initrd", required: false);
        var cmdline = b.String("cmdline");
        if (cmdline is not null && (HasControl(cmdline) || cmdline.Length > 2048))
        {
            p.Add(b.Child("cmdline"), $"must be one line of at most 2048 characters without control characters, got {MapReader.Quote(cmdline)}", b.Get("cmdline"));
            cmdline = null;
        }
        b.RejectUnknownKeys();
        return kernel is null ? null : new BootSpec(kernel, initrd, cmdline);
    }

    private static NetworkSpec? ReadNetwork(MapReader n, Func<HostNetworks?>? hostConfig)
    {
        var p = n.Problems;
        var ok = true;
        // A host network (network: NAME in the spec, networks: in host.yaml): its values fill what the spec leaves out.
        var hostName = n.String("network");
        HostNetwork? hn = null;
        HostNetworks? host = null;
        if (hostName is not null)
        {
            host = hostConfig?.Invoke();
            if (host?.ByName.GetValueOrDefault(hostName) is { } found) hn = found;
            else
            {
                var known = host is null || host.ByName.Count == 0 ? "it defines none" : $"it defines {string.Join(", ", host.ByName.Keys.Order(StringComparer.Ordinal))}";
                p.Add(n.Child("network"), $"no host network {MapReader.Quote(hostName)} in {host?.Source ?? "/etc/vmnet/host.yaml"} ({known}; `vmnet host networks` lists them); "
                    + "define it under networks: there, or leave network out and give the ports here", n.Get("network"));
                ok = false;
            }
        }
        var name = n.String("name");
        p.Recorder?.Pattern(n.Child("name"), NetworkName());
        if (name is null) { p.Add(n.Child("name"), "is required: a short name for this network (e.g. storage)", n.Node); ok = false; }
        else if (!NetworkName().IsMatch(name) || name is "lo" or "all" or "default")
        {
            p.Add(n.Child("name"), $"must be 1..14 lowercase letters, digits or '-', starting with a letter (it names the guest's bond), got {MapReader.Quote(name)}", n.Get("name"));
            ok = false;
        }

        var vlan = n.Int("vlan", 1, 4094, null);
        var qos = n.Int("qos", 0, 7, null);
        var protocol = n.Choice("vlanProtocol", ProtocolChoices);
        if (vlan is null && n.Get("vlan") is null && !(hostName is not null && host?.ByName.GetValueOrDefault(hostName)?.Vlan is not null))
        {
            if (qos is > 0) p.Add(n.Child("qos"), "needs a vlan: the priority is carried in the VLAN tag", n.Get("qos"));
            if (protocol == VlanProtocol.Dot1Ad) p.Add(n.Child("vlanProtocol"), "needs a vlan", n.Get("vlanProtocol"));
        }

        var ports = n.StringList("ports");
        p.Recorder?.Items(n.Child("ports"), 1, 8);
        if (hn is not null)
        {
            if (ports is not null && !ports.SequenceEqual(hn.Ports))
                p.Add(n.Child("ports"), $"host network {hn.Name} fixes its ports [{string.Join(", ", hn.Ports)}] ({host!.Source}); leave ports out", n.Get("ports"));
            ports = hn.Ports;
        }
        else if (hostName is not null) ok = false;
        else if (ports is null || ports.Count == 0)
        {
            // Not "is required": a host network gives the ports instead (the schema leaves the choice to the loader).
            p.Add(n.Child("ports"), "needs the PFs to take one VF from each, by netdev name or PCI address (e.g. [enp3s0f0np0, enp3s0f1np1]), or a host network (network: NAME)", n.Get("ports") ?? n.Node);
            ok = false;
        }
        else
        {
            if (ports.Count > 8) { p.Add(n.Child("ports"), $"takes at most 8 ports, got {ports.Count}", n.Get("ports")); ok = false; }
            for (var i = 0; i < ports.Count; i++)
            {
                if (PortProblem(ports[i]) is { } problem)
                {
                    p.Add($"{n.Child("ports")}[{i}]", problem, At(n, "ports", i));
                    ok = false;
                }
                else if (ports.Take(i).Contains(ports[i]))
                {
                    p.Add($"{n.Child("ports")}[{i}]", $"{MapReader.Quote(ports[i])} is listed twice; each VF of a bond must come from a different PF", At(n, "ports", i));
                    ok = false;
                }
            }
        }

        var address = ReadAddress(n);
        var gateway = n.String("gateway");
        if (gateway is not null)
        {
            if (!StrictIp(gateway, out var gw))
                p.Add(n.Child("gateway"), $"must be an IP address (IPv4 as four decimal numbers 0 to 255, IPv6 without a %zone), got {MapReader.Quote(gateway)}", n.Get("gateway"));
            else if (address is { Dhcp: true })
                p.Add(n.Child("gateway"), "cannot be set with address: dhcp; DHCP provides the gateway", n.Get("gateway"));
            else if (address?.Cidr is { } cidr && (gw.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6) != address.IsIPv6)
                p.Add(n.Child("gateway"), $"must be of the same IP family as address {cidr}, got {MapReader.Quote(gateway)}", n.Get("gateway"));
        }
        var dns = n.StringList("dns") ?? [];
        for (var i = 0; i < dns.Count; i++)
        {
            if (!StrictIp(dns[i], out _))
                p.Add($"{n.Child("dns")}[{i}]", $"must be an IP address (IPv4 as four decimal numbers 0 to 255, IPv6 without a %zone), got {MapReader.Quote(dns[i])}", At(n, "dns", i));
        }

        var mtu = n.Int("mtu", 68, 9216, "bytes");
        var macs = n.StringList("macs");
        if (macs is not null)
        {
            if (ports is not null && macs.Count != ports.Count)
                p.Add(n.Child("macs"), $"needs one MAC per port ({ports.Count}), got {macs.Count}", n.Get("macs"));
            for (var i = 0; i < macs.Count; i++)
            {
                var problem = Mac.Check(macs[i]);
                if (problem is not null) p.Add($"{n.Child("macs")}[{i}]", problem, At(n, "macs", i));
            }
        }

        var spoof = n.Bool("spoofCheck") ?? Defaults.SpoofCheck;
        var trust = n.Bool("trust") ?? Defaults.Trust;
        var linkState = n.Choice("linkState", LinkStateChoices) ?? Defaults.VfLinkState;
        var maxTx = n.Int("maxTxRate", 0, 1_000_000, "Mbit/s");
        var minTx = n.Int("minTxRate", 0, 1_000_000, "Mbit/s");
        if (maxTx is > 0 && minTx is > 0 && minTx > maxTx)
            p.Add(n.Child("minTxRate"), $"must not exceed maxTxRate ({maxTx} Mbit/s), got {minTx}", n.Get("minTxRate"));

        var bond = ReadBond(n.Map("bond"), n, ports);
        n.RejectUnknownKeys();
        if (!ok || name is null || ports is null || address is null || bond is null) return null;
        var tag = vlan is { } id ? new VlanTag(id, qos ?? 0, protocol ?? Defaults.Protocol) : null;
        if (hn is not null)
        {
            // What the host fixes wins; the spec may narrow it (lower MTU or rate, spoof checking on, trust off), never widen it.
            void Widens(string key, string value, string hostValue) =>
                p.Add(n.Child(key), $"{value} widens host network {hn.Name} ({hostValue} in {host!.Source}); leave {key} out, or narrow it", n.Get(key));
            void Fixed(string key, string value, string hostValue) =>
                p.Add(n.Child(key), $"{value} differs from host network {hn.Name}, which fixes it ({hostValue} in {host!.Source}); leave {key} out", n.Get(key));
            if (hn.Vlan is { } hv)
            {
                if (n.Get("vlan") is not null && vlan != hv.Id) Fixed("vlan", $"{vlan}", hv.ToString());
                if (n.Get("qos") is not null && qos != hv.Qos) Fixed("qos", $"{qos}", hv.ToString());
                if (n.Get("vlanProtocol") is not null && protocol != hv.Protocol) Fixed("vlanProtocol", SpecNames.Of(protocol ?? Defaults.Protocol), hv.ToString());
                tag = hv;
            }
            if (hn.Mtu is { } hm)
            {
                if (mtu > hm) Widens("mtu", $"{mtu}", $"mtu {hm}");
                mtu ??= hm;
            }
            if (hn.SpoofCheck == true && n.Get("spoofCheck") is not null && !spoof) Widens("spoofCheck", "false", "spoofCheck true");
            if (n.Get("spoofCheck") is null && hn.SpoofCheck is { } hs) spoof = hs;
            if (hn.Trust == false && trust) Widens("trust", "true", "trust false");
            if (n.Get("trust") is null && hn.Trust is { } ht) trust = ht;
            if (hn.LinkState is { } hl)
            {
                if (n.Get("linkState") is not null && linkState != hl) Fixed("linkState", SpecNames.Of(linkState), $"linkState {SpecNames.Of(hl)}");
                linkState = hl;
            }
            if (hn.MaxTxRate is > 0 and var hmax && maxTx is { } smax && (smax == 0 || smax > hmax)) Widens("maxTxRate", $"{smax}", $"maxTxRate {hmax}");
            maxTx ??= hn.MaxTxRate;
            if (hn.MinTxRate is { } hmin && minTx > hmin) Widens("minTxRate", $"{minTx}", $"minTxRate {hmin}");
            minTx ??= hn.MinTxRate;
            if (maxTx is > 0 && minTx > maxTx && (n.Get("minTxRate") is null || n.Get("maxTxRate") is null)) // both the spec's: refused above
                p.Add(n.Child(n.Get("minTxRate") is not null ? "minTxRate" : "maxTxRate"),
                    $"minTxRate {minTx} must not exceed maxTxRate {maxTx} Mbit/s (with host network {hn.Name}'s rates from {host!.Source})", n.Get("minTxRate") ?? n.Get("maxTxRate"));
            if (p.Any) return null;
        }
        TxRates? rates = maxTx is null && minTx is null ? null : new TxRates(maxTx ?? 0, minTx ?? 0);
        return new NetworkSpec(name, tag, ports, address, gateway, dns, mtu,
            macs?.Select(m => m.ToLowerInvariant()).ToList(), spoof, trust, linkState, rates, bond)
        { HostNetwork = hn?.Name };
    }

    private static GuestAddress? ReadAddress(MapReader n)
    {
        var text = n.String("address");
        if (text is null)
        {
            if (n.Get("address") is null)
                n.Problems.Add(n.Child("address"), "is required: an address in CIDR form (e.g. 192.168.40.11/24) or dhcp", n.Node);
            return null;
        }
        if (text == "dhcp") return GuestAddress.DhcpAddress;
        var slash = text.IndexOf('/');
        if (slash > 0 && StrictIp(text[..slash], out var ip)
            && int.TryParse(text[(slash + 1)..], NumberStyles.None, CultureInfo.InvariantCulture, out var prefix)
            && prefix <= (ip.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6 ? 128 : 32)
            && !text[..slash].Contains('%'))
            return new GuestAddress(false, $"{ip}/{prefix}");
        n.Problems.Add(n.Child("address"), $"must be an address in CIDR form (e.g. 192.168.40.11/24) or dhcp, got {MapReader.Quote(text)}", n.Get("address"));
        return null;
    }

    private static BondSpec? ReadBond(MapReader? b, MapReader network, IReadOnlyList<string>? ports)
    {
        var firstPort = ports is { Count: > 0 } ? ports[0] : "";
        if (b is null) return new BondSpec(Defaults.Miimon, 0, [], firstPort, PrimaryReselect.Always, Defaults.UpDelay(Defaults.Miimon), 0, Defaults.GratuitousArp);
        var p = b.Problems;
        b.Choice("mode", ModeChoices, mode => $"only active-backup works over VFs, got {MapReader.Quote(mode)}: "
            + "balance and LACP modes need one switch port behind both members and a bond MAC the VFs may take, "
            + "but each VF sits behind its own PF with its own admin MAC (for aggregation, bond the PFs on the host: VF-LAG)");
        b.Choice("failOverMac", FailOverMacChoices, v => $"must be active, got {MapReader.Quote(v)}: "
            + "with none or follow the bond rewrites a VF's MAC, which an untrusted VF with spoof checking refuses");
        var miimon = b.Int("miimon", 0, 60_000, "ms");
        var arpInterval = b.Int("arpInterval", 0, 60_000, "ms");
        var targets = b.StringList("arpTargets") ?? [];
        p.Recorder?.Items(b.Child("arpTargets"), 0, 16);
        for (var i = 0; i < targets.Count; i++)
        {
            if (!StrictIp(targets[i], out var t) || t.AddressFamily != System.Net.Sockets.AddressFamily.InterNetwork)
                p.Add($"{b.Child("arpTargets")}[{i}]", $"must be an IPv4 address (four decimal numbers 0 to 255), got {MapReader.Quote(targets[i])}", At(b, "arpTargets", i));
        }
        if (targets.Count > 16) p.Add(b.Child("arpTargets"), $"takes at most 16 addresses (the kernel's limit), got {targets.Count}", b.Get("arpTargets"));
        var arp = arpInterval is > 0;
        if (arp && targets.Count == 0)
            p.Add(b.Child("arpTargets"), "is required with arpInterval: the addresses the bond probes (e.g. the gateway)", b.Get("arpInterval"));
        if (!arp && targets.Count > 0)
            p.Add(b.Child("arpInterval"), "is required with arpTargets: the probe interval in ms (e.g. 100)", b.Get("arpTargets"));
        if (arp && miimon is > 0)
            p.Add(b.Child("miimon"), "cannot be combined with arpInterval: the kernel runs one link monitor per bond; drop one", b.Get("miimon"));
        if (!arp && miimon == 0)
            p.Add(b.Child("miimon"), "must be > 0 (ms) unless ARP monitoring is used: with 0 no failure is ever detected; 100 is the usual value", b.Get("miimon"));
        var monitor = arp ? arpInterval!.Value : miimon ?? Defaults.Miimon;

        var primary = b.String("primary") ?? firstPort;
        if (ports is not null && b.Get("primary") is not null && !ports.Contains(primary))
            p.Add(b.Child("primary"), $"must be one of this network's ports ({string.Join(", ", ports)}), got {MapReader.Quote(primary)}", b.Get("primary"));
        var reselect = b.Choice("primaryReselect", ReselectChoices) ?? PrimaryReselect.Always;
        var upDelay = b.Int("upDelay", 0, 600_000, "ms");
        var downDelay = b.Int("downDelay", 0, 600_000, "ms");
        if (!arp && monitor > 0)
        {
            if (upDelay is { } u && u % monitor != 0)
                p.Add(b.Child("upDelay"), $"must be a multiple of {b.Child("miimon")} ({monitor} ms), got {u}; change one of them", b.Get("upDelay"));
            if (downDelay is { } d && d % monitor != 0)
                p.Add(b.Child("downDelay"), $"must be a multiple of {b.Child("miimon")} ({monitor} ms), got {d}; change one of them", b.Get("downDelay"));
        }
        var grat = b.Int("gratuitousArp", 0, 255, null) ?? Defaults.GratuitousArp;
        b.RejectUnknownKeys();
        return new BondSpec(arp ? 0 : monitor, arp ? monitor : 0, targets, primary, reselect,
            upDelay ?? (arp ? 0 : Defaults.UpDelay(monitor)), downDelay ?? 0, grat);
    }

    private static void CheckAcrossNetworks(IReadOnlyList<MapReader> readers, List<NetworkSpec> networks, Problems p)
    {
        var seen = new Dictionary<string, int>(StringComparer.Ordinal);
        for (var i = 0; i < readers.Count; i++)
        {
            var name = (readers[i].Get("name") as YamlScalarNode)?.Value;
            if (name is null) continue;
            if (seen.TryGetValue(name, out var first))
                p.Add($"networks[{i}].name", $"{MapReader.Quote(name)} is already the name of networks[{first}]; names must be unique within the VM", readers[i].Get("name"));
            else seen[name] = i;
        }
        var macs = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        foreach (var n in networks)
        {
            for (var j = 0; j < (n.Macs?.Count ?? 0); j++)
            {
                var path = $"networks[{networks.IndexOf(n)}].macs[{j}]";
                if (!macs.TryAdd(n.Macs![j], path))
                    p.Add(path, $"{n.Macs[j]} is already used by {macs[n.Macs[j]]}; every VF needs its own MAC");
            }
        }
    }

    private static GuestSpec ReadGuest(MapReader? g, string? vmName, Problems p)
    {
        if (g is null) return new GuestSpec(vmName ?? "", Defaults.User, []);
        var hostname = g.String("hostname");
        p.Recorder?.Pattern(g.Child("hostname"), Hostname());
        if (hostname is not null && !Hostname().IsMatch(hostname))
            p.Add(g.Child("hostname"), $"must be a DNS name (letters, digits, '-' and '.', labels of at most 63, at most 253 in all), got {MapReader.Quote(hostname)}", g.Get("hostname"));
        var user = g.String("user");
        p.Recorder?.Pattern(g.Child("user"), UserName());
        if (user is not null && !UserName().IsMatch(user))
            p.Add(g.Child("user"), $"must be a Linux user name (lowercase letters, digits, '_' and '-', starting with a letter or '_', at most 32), got {MapReader.Quote(user)}", g.Get("user"));
        if (user is "root")
            p.Add(g.Child("user"), "must not be root: VmNet creates this user with sudo rights; log in as it and use sudo", g.Get("user"));
        var keys = g.StringList("sshAuthorizedKeys") ?? [];
        for (var i = 0; i < keys.Count; i++)
        {
            if (!SshKey().IsMatch(keys[i]))
                p.Add($"{g.Child("sshAuthorizedKeys")}[{i}]", $"must be one OpenSSH public key line (type, base64 key, optional comment), got {MapReader.Quote(keys[i])}", At(g, "sshAuthorizedKeys", i));
        }
        g.RejectUnknownKeys();
        return new GuestSpec(hostname ?? vmName ?? "", user ?? Defaults.User, keys);
    }

    /// <summary>A size like 16GiB or 512MiB, in MiB.</summary>
    private static int? Size(MapReader r, string key, int minMiB)
    {
        var text = r.String(key);
        r.Problems.Recorder?.Pattern(r.Child(key), SizeText());
        if (text is null) return null;
        var m = SizeText().Match(text);
        if (!m.Success || !long.TryParse(m.Groups[1].Value, NumberStyles.None, CultureInfo.InvariantCulture, out var n))
        {
            r.Problems.Add(r.Child(key), $"must be a size in MiB or GiB (e.g. 2GiB, 512MiB), got {MapReader.Quote(text)}", r.Get(key));
            return null;
        }
        var mib = m.Groups[2].Value == "GiB" ? n * 1024 : n;
        if (mib < minMiB || mib > 16L * 1024 * 1024)
        {
            r.Problems.Add(r.Child(key), $"must be {minMiB}MiB..16384GiB, got {text}", r.Get(key));
            return null;
        }
        return (int)mib;
    }

    private static YamlNode? At(MapReader r, string key, int index) =>
        r.Get(key) is YamlSequenceNode s && index < s.Children.Count ? s.Children[index] : r.Get(key);

    private static bool HasControl(string s) => s.Any(char.IsControl);

    private static readonly Dictionary<string, Backend> BackendChoices = new() { ["libvirt"] = Backend.Libvirt, ["qemu"] = Backend.Qemu };
    private static readonly Dictionary<string, NumaPolicy> NumaChoices = new() { ["nic"] = NumaPolicy.Nic, ["preferred"] = NumaPolicy.Preferred, ["any"] = NumaPolicy.Any };
    private static readonly Dictionary<string, CpuPinning> PinningChoices = new() { ["shared"] = CpuPinning.Shared, ["dedicated"] = CpuPinning.Dedicated };
    private static readonly Dictionary<string, long> HugepageChoices = new() { ["none"] = 0, ["2MiB"] = 2048, ["1GiB"] = 1048576 };
    private static readonly Dictionary<string, Accel> AccelChoices = new() { ["kvm"] = Accel.Kvm, ["tcg"] = Accel.Tcg };
    private static readonly Dictionary<string, VlanProtocol> ProtocolChoices = new() { ["802.1Q"] = VlanProtocol.Dot1Q, ["802.1ad"] = VlanProtocol.Dot1Ad };
    private static readonly Dictionary<string, LinkState> LinkStateChoices = new() { ["auto"] = LinkState.Auto, ["enable"] = LinkState.Enable, ["disable"] = LinkState.Disable };
    private static readonly Dictionary<string, PrimaryReselect> ReselectChoices = new() { ["always"] = PrimaryReselect.Always, ["better"] = PrimaryReselect.Better, ["failure"] = PrimaryReselect.Failure };
    private static readonly Dictionary<string, int> ModeChoices = new() { ["active-backup"] = 1 };
    private static readonly Dictionary<string, int> FailOverMacChoices = new() { ["active"] = 1 };

    /// <summary>
    /// An IP address as every config file reads it: IPv4 as four decimal octets without leading zeros (not `1`,
    /// `0x7f000001` or `010.0.0.1`, which .NET, glibc and ifupdown each read differently), IPv6 in hex and colons
    /// (with a dotted IPv4 tail) and no zone (`fe80::1%x` would reach a shell in cloud-init's eni renderer).
    /// </summary>
    public static bool StrictIp(string text, out IPAddress ip)
    {
        ip = IPAddress.None;
        if (text.Contains(':'))
            return text.All(c => char.IsAsciiHexDigit(c) || c is ':' or '.') && IPAddress.TryParse(text, out ip!)
                && ip.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6;
        return Ipv4Text().IsMatch(text) && IPAddress.TryParse(text, out ip!);
    }

    /// <summary>
    /// Why <paramref name="path"/> is no absolute path of a file (disk.image, boot.kernel, boot.initrd), or null: it must
    /// start with '/' and not end with one (libvirt's schema takes a file path as '/' and at least one more character;
    /// "/" or "/var/lib/" names a directory).
    /// </summary>
    internal static string? FilePathProblem(string path) =>
        path.StartsWith('/') && !path.EndsWith('/') && !HasControl(path) ? null
            : $"must be an absolute path of a file (starting with / and not ending with one) without control characters, got {MapReader.Quote(path)}";

    [GeneratedRegex(@"^(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(\.(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}\z")]
    private static partial Regex Ipv4Text();

    /// <summary>Why <paramref name="name"/> cannot name a VM, or null: the spec's rule, also for every command's NAME.</summary>
    public static string? VmNameProblem(string name) => VmName().IsMatch(name) ? null
        : $"must be lowercase letters, digits and '-', starting with a letter or digit, at most 63 characters, got {MapReader.Quote(name)}";

    [GeneratedRegex("^[a-z0-9][a-z0-9-]{0,62}\\z")] private static partial Regex VmName();
    [GeneratedRegex("^[a-z][a-z0-9-]{0,13}\\z")] private static partial Regex NetworkName();
    /// <summary>Whether <paramref name="text"/> is a PCI address in sysfs's form (0000:03:00.2).</summary>
    public static bool IsPciAddress(string text) => PciAddress().IsMatch(text);

    /// <summary>Why <paramref name="port"/> names no PF, or null: the spec's ports and host.yaml's port take the same.</summary>
    public static string? PortProblem(string port) => PortName().IsMatch(port) || PciAddress().IsMatch(port) ? null
        : $"must be a network device name or a PCI address like 0000:03:00.0, got {MapReader.Quote(port)}";

    [GeneratedRegex("^[A-Za-z0-9][A-Za-z0-9_.:-]{0,14}\\z")] private static partial Regex PortName();
    [GeneratedRegex("^[0-9a-f]{4}:[0-9a-f]{2}:[0-1][0-9a-f]\\.[0-7]\\z")] internal static partial Regex PciAddress();
    [GeneratedRegex(@"^(?=.{1,253}\z)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\z")] private static partial Regex Hostname();
    [GeneratedRegex("^[a-z_][a-z0-9_-]{0,31}\\z")] private static partial Regex UserName();
    [GeneratedRegex(@"^(ssh-ed25519|ssh-rsa|ssh-dss|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh\.com|sk-ecdsa-sha2-nistp256@openssh\.com) [A-Za-z0-9+/]+={0,3}( [\x20-\x7e]*)?\z")] private static partial Regex SshKey();
    [GeneratedRegex(@"^(\d{1,9})(MiB|GiB)\z")] private static partial Regex SizeText();
}
