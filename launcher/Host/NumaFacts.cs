using System.Globalization;

namespace VmNet.Host;

/// <summary>A pool of hugepages of one size on one NUMA node (<c>nodeN/hugepages/hugepages-SIZEkB</c>).</summary>
public sealed record HugepagePool(long SizeKiB, int Total, int Free)
{
    /// <summary>"2MiB", "1GiB": how the spec and the output name the size.</summary>
    public string Size => SizeKiB switch
    {
        >= 1048576 when SizeKiB % 1048576 == 0 => $"{SizeKiB / 1048576}GiB",
        >= 1024 when SizeKiB % 1024 == 0 => $"{SizeKiB / 1024}MiB",
        _ => $"{SizeKiB}KiB",
    };
}

/// <summary>A hugetlbfs mount and the size of its pages.</summary>
public sealed record HugetlbfsMount(string Path, long PageKiB)
{
    /// <summary>The hugetlbfs lines of /proc/mounts ("hugetlbfs /dev/hugepages hugetlbfs rw,relatime,pagesize=2M 0 0").</summary>
    public static IReadOnlyList<HugetlbfsMount> Parse(string? mounts, long defaultKiB)
    {
        var result = new List<HugetlbfsMount>();
        foreach (var line in (mounts ?? "").Split('\n'))
        {
            var f = line.Split(' ');
            if (f.Length < 4 || f[2] != "hugetlbfs") continue;
            var size = defaultKiB;
            foreach (var option in f[3].Split(','))
                if (option.StartsWith("pagesize=", StringComparison.Ordinal) && Size(option[9..]) is { } s) size = s;
            result.Add(new HugetlbfsMount(Unescape(f[1]), size));
        }
        return result;
    }

    /// <summary>"2M", "1024M", "1G" in KiB.</summary>
    private static long? Size(string text)
    {
        if (text.Length < 2) return null;
        var unit = char.ToUpperInvariant(text[^1]) switch { 'K' => 1L, 'M' => 1024L, 'G' => 1048576L, _ => 0L };
        return unit > 0 && long.TryParse(text.AsSpan(0, text.Length - 1), NumberStyles.None, CultureInfo.InvariantCulture, out var n) ? n * unit : null;
    }

    /// <summary>/proc/mounts writes a space, tab, newline and backslash in a path as octal escapes (\040).</summary>
    private static string Unescape(string path)
    {
        var sb = new System.Text.StringBuilder();
        for (var i = 0; i < path.Length; i++)
        {
            if (path[i] == '\\' && i + 3 < path.Length && path.AsSpan(i + 1, 3).ToString() is var oct
                && oct.All(c => c is >= '0' and <= '7'))
            {
                sb.Append((char)Convert.ToInt32(oct, 8));
                i += 3;
            }
            else sb.Append(path[i]);
        }
        return sb.ToString();
    }
}

/// <summary>One NUMA node as <c>/sys/devices/system/node/nodeN</c> shows it.</summary>
public sealed record NumaNodeFacts(int Id, IReadOnlyList<int> Cpus, long MemTotalKiB, long MemFreeKiB, IReadOnlyList<HugepagePool> Hugepages);

/// <summary>The host's NUMA layout and the CPUs its command line keeps from the scheduler.</summary>
public sealed record NumaTopology(IReadOnlyList<NumaNodeFacts> Nodes, IReadOnlyList<int> IsolatedCpus, IReadOnlyList<int> NohzFullCpus)
{
    /// <summary>The hugetlbfs mounts of /proc/mounts, each with its page size: where QEMU maps hugepage memory from.</summary>
    public IReadOnlyList<HugetlbfsMount> Hugetlbfs { get; init; } = [];

    public NumaNodeFacts? Node(int id) => Nodes.FirstOrDefault(n => n.Id == id);

    /// <summary>The node of a device whose <c>numa_node</c> reads <paramref name="deviceNode"/>; -1 when unknown.</summary>
    public int NodeOf(int deviceNode) => NodeOf(Nodes, deviceNode);

    /// <summary>
    /// On a one-node host a device without a node (numa_node -1, as most one-socket machines report) is on that node;
    /// on a host of several nodes -1 stays unknown.
    /// </summary>
    public static int NodeOf(IReadOnlyList<NumaNodeFacts> nodes, int deviceNode) =>
        deviceNode >= 0 || nodes.Count != 1 ? deviceNode : nodes[0].Id;

    /// <summary>
    /// Reads the nodes under <paramref name="root"/>. A kernel without CONFIG_NUMA has no node directory: the host is
    /// then one node 0 with every online CPU and /proc/meminfo's memory, as libvirt's capabilities show it.
    /// </summary>
    public static NumaTopology Read(HostRoot root)
    {
        var nodes = new List<NumaNodeFacts>();
        foreach (var entry in root.List(Sysfs.NodeDir))
        {
            if (!entry.StartsWith("node", StringComparison.Ordinal)
                || !int.TryParse(entry.AsSpan(4), NumberStyles.None, CultureInfo.InvariantCulture, out var id)) continue;
            var meminfo = Meminfo(root.Read(Sysfs.NodeMeminfo(id)), $"Node {id} ");
            nodes.Add(new NumaNodeFacts(id, CpuList.Parse(root.Read(Sysfs.NodeCpuList(id))) ?? [],
                meminfo.GetValueOrDefault("MemTotal"), meminfo.GetValueOrDefault("MemFree"), Hugepages(root, Sysfs.NodeHugepages(id))));
        }
        if (nodes.Count == 0 && root.Exists(Sysfs.CpuOnline))
        {
            var meminfo = Meminfo(root.Read(Sysfs.ProcMeminfo), "");
            nodes.Add(new NumaNodeFacts(0, CpuList.Parse(root.Read(Sysfs.CpuOnline)) ?? [], meminfo.GetValueOrDefault("MemTotal"),
                meminfo.GetValueOrDefault("MemFree"), Hugepages(root, Sysfs.Hugepages)));
        }
        nodes.Sort((a, b) => a.Id.CompareTo(b.Id));
        var cmdline = root.Read(Sysfs.ProcCmdline);
        return new NumaTopology(nodes, CpuList.FromCmdline(cmdline, "isolcpus"), CpuList.FromCmdline(cmdline, "nohz_full"))
        {
            Hugetlbfs = HugetlbfsMount.Parse(root.Read(Sysfs.ProcMounts), DefaultHugepageKiB(root)),
        };
    }

    /// <summary>The kernel's default hugepage size (/proc/meminfo Hugepagesize): the page size of a mount without pagesize=.</summary>
    private static long DefaultHugepageKiB(HostRoot root) => Meminfo(root.Read(Sysfs.ProcMeminfo), "").GetValueOrDefault("Hugepagesize", 2048);

    private static List<HugepagePool> Hugepages(HostRoot root, string dir)
    {
        var pools = new List<HugepagePool>();
        foreach (var entry in root.List(dir))
        {
            // hugepages-2048kB, hugepages-1048576kB
            if (!entry.StartsWith("hugepages-", StringComparison.Ordinal) || !entry.EndsWith("kB", StringComparison.Ordinal)
                || !long.TryParse(entry.AsSpan(10, entry.Length - 12), NumberStyles.None, CultureInfo.InvariantCulture, out var size)) continue;
            pools.Add(new HugepagePool(size, root.ReadInt($"{dir}/{entry}/nr_hugepages") ?? 0, root.ReadInt($"{dir}/{entry}/free_hugepages") ?? 0));
        }
        pools.Sort((a, b) => a.SizeKiB.CompareTo(b.SizeKiB));
        return pools;
    }

    /// <summary>The "Key: N kB" lines of a meminfo file, the node's ("Node 0 MemTotal: ...") or /proc's.</summary>
    private static Dictionary<string, long> Meminfo(string? text, string prefix)
    {
        var result = new Dictionary<string, long>(StringComparer.Ordinal);
        foreach (var line in (text ?? "").Split('\n'))
        {
            var l = line.StartsWith(prefix, StringComparison.Ordinal) ? line[prefix.Length..] : line;
            var colon = l.IndexOf(':');
            if (colon <= 0) continue;
            var value = l[(colon + 1)..].Trim();
            if (value.EndsWith(" kB", StringComparison.Ordinal)) value = value[..^3].TrimEnd();
            if (long.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out var n)) result[l[..colon].Trim()] = n;
        }
        return result;
    }
}

/// <summary>
/// A PCIe function's link as trained and as capable (<c>current_link_speed/width</c>, <c>max_link_speed/width</c>):
/// a dual-port 100G card in a x8 slot, or on a Gen3 link when it is Gen4, cannot reach line rate on both ports.
/// </summary>
public sealed record PcieLink(string? Speed, int? Width, string? MaxSpeed, int? MaxWidth)
{
    /// <summary>Transfer rate in GT/s from "8.0 GT/s PCIe" (the kernel's format since 4.18), or null.</summary>
    public static double? Rate(string? speed) =>
        speed is not null && speed.IndexOf(" GT/s", StringComparison.Ordinal) is var i and > 0
        && double.TryParse(speed[..i], NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out var r) ? r : null;

    /// <summary>Whether the link trained below what the device can do (narrower or slower); false when unknown.</summary>
    public bool Degraded =>
        (Width is { } w && MaxWidth is { } mw && w < mw) || (Rate(Speed) is { } s && Rate(MaxSpeed) is { } ms && s < ms);

    public static PcieLink? Read(HostRoot root, string pci)
    {
        var speed = root.Read(Sysfs.PciLink(pci, "current_link_speed"));
        var maxSpeed = root.Read(Sysfs.PciLink(pci, "max_link_speed"));
        var width = root.ReadInt(Sysfs.PciLink(pci, "current_link_width"));
        var maxWidth = root.ReadInt(Sysfs.PciLink(pci, "max_link_width"));
        return speed is null && maxSpeed is null && width is null && maxWidth is null ? null : new PcieLink(speed, width, maxSpeed, maxWidth);
    }

    public override string ToString() =>
        $"{Speed ?? "?"} x{Width?.ToString(CultureInfo.InvariantCulture) ?? "?"} (max {MaxSpeed ?? "?"} x{MaxWidth?.ToString(CultureInfo.InvariantCulture) ?? "?"})";
}
