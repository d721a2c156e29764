using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;
using VmNet.Leases;

namespace VmNet.Host.Sim;

/// <summary>
/// The kernel's reactions, applied to a host tree in a directory (<c>--host-root DIR</c>). What it models:
/// <list type="bullet">
/// <item><c>sriov_numvfs</c>: N creates VFs 0..N-1 (devices, <c>virtfnN</c>/<c>physfn</c> links, one IOMMU group each,
/// bound to the VF driver with their netdevs down); 0 removes them; N above <c>sriov_totalvfs</c> is ERANGE, a nonzero
/// count changed to another nonzero count is EBUSY, the same count again is a no-op.</item>
/// <item><c>driver_override</c> (empty clears it to "(null)"); <c>drivers/D/unbind</c> (ENODEV unless bound to D);
/// <c>drivers/D/bind</c> (EBUSY when bound, ENODEV when D is not the override or, without one, not the device's own
/// driver: vfio-pci binds only through the override, never by IDs); <c>drivers_probe</c> (binds the override or the
/// own driver; an override naming an unloaded driver leaves the device unbound). Binding moves the <c>driver</c>
/// links and the <c>net/</c> directory (the netdev comes back down with the admin MAC) or creates
/// <c>/dev/vfio/GROUP</c>.</item>
/// <item>Netlink VF settings kept in <c>DIR/run/vmnet-sim/netlink.json</c> and shown by <c>ip -j link show</c>'s JSON:
/// VLAN above 4095 or qos above 7 is EINVAL, a multicast MAC is EINVAL, a MAC while the PF is down is EPERM (lxd#5041),
/// a VF index past sriov_numvfs is EINVAL, an unknown PF is ENODEV. igb quirks (LAB.md): <c>state</c> is EOPNOTSUPP,
/// 802.1ad is EPROTONOSUPPORT, a nonzero <c>min_tx_rate</c> is EINVAL.</item>
/// </list>
/// Every operation runs under <c>DIR/run/vmnet-sim/lock</c> (the kernel's rtnl and device locks), so parallel vmnet
/// processes see a consistent host.
/// </summary>
public sealed class SimulatedKernel(HostRoot root) : IKernel
{
    public HostRoot Root { get; } = root.IsRealHost
        ? throw new ArgumentException("the simulated kernel never touches the real host", nameof(root))
        : root;

    private SysfsTree Tree => new(Root.Path);
    private string SimDir => Root.Map("/run/vmnet-sim");
    private string NetlinkFile => Path.Join(SimDir, "netlink.json");

    private FileLock Lock(CancellationToken ct) => FileLock.Acquire(Path.Join(SimDir, "lock"), TimeSpan.FromSeconds(60), ct);

    public Task WriteSysfsAsync(string hostPath, string value, CancellationToken ct)
    {
        using var _ = Lock(ct);
        var op = $"echo {value} > {hostPath}";
        var v = value.Trim();
        var parts = hostPath.Trim('/').Split('/');
        if (hostPath.EndsWith("/sriov_numvfs", StringComparison.Ordinal))
            SetNumVfs(op, PciOfDeviceDir(op, hostPath[..^"/sriov_numvfs".Length]), v);
        else if (hostPath.EndsWith("/driver_override", StringComparison.Ordinal))
        {
            var pci = PciOfDeviceDir(op, hostPath[..^"/driver_override".Length]);
            Tree.Write($"{SysfsTree.DevicePath(pci)}/driver_override", (v.Length == 0 ? "(null)" : v) + "\n");
        }
        else if (hostPath == "/sys/bus/pci/drivers_probe")
            Probe(op, v);
        else if (parts is ["sys", "bus", "pci", "drivers", var driver, "unbind"])
            Unbind(op, driver, v);
        else if (parts is ["sys", "bus", "pci", "drivers", var drv, "bind"])
            Bind(op, drv, v);
        else if (parts is ["sys", "bus", "pci", "drivers", _, "new_id"])
            throw new KernelException(op, Errno.EEXIST);
        else if (File.Exists(Root.Map(hostPath)))
            File.WriteAllText(Root.Map(hostPath), v + "\n");
        else
            throw new KernelException(op, Errno.ENOENT);
        return Task.CompletedTask;
    }

    public Task SetVfAsync(string pf, int vf, IReadOnlyList<string> settings, CancellationToken ct)
    {
        using var _ = Lock(ct);
        var op = $"ip link set dev {pf} vf {vf} {string.Join(' ', settings)}";
        var pfPci = Root.LinkName($"/sys/class/net/{pf}/device") ?? throw new KernelException(op, Errno.ENODEV, $"Cannot find device \"{pf}\"");
        var shape = ShapeOf(pfPci);
        var numVfs = Root.ReadInt($"/sys/bus/pci/devices/{pfPci}/sriov_numvfs") ?? 0;
        KernelException Refused(Errno e) => new(op, e, "RTNETLINK answers: " + KernelErrors.Text(e));
        if (vf < 0 || vf >= numVfs) throw Refused(Errno.EINVAL);
        var all = LoadNetlink();
        var current = Get(all, pfPci, vf);
        var next = current;
        for (var i = 0; i < settings.Count; i++)
        {
            string Arg() => i + 1 < settings.Count ? settings[++i] : throw Refused(Errno.EINVAL);
            int IntArg() => int.TryParse(Arg(), NumberStyles.None, CultureInfo.InvariantCulture, out var n) ? n : throw Refused(Errno.EINVAL);
            bool OnOff() => Arg() switch { "on" => true, "off" => false, _ => throw Refused(Errno.EINVAL) };
            switch (settings[i])
            {
                case "mac":
                    var mac = Arg().ToLowerInvariant();
                    if (!Spec.Mac.TryParse(mac, out var bytes) || (bytes[0] & 1) == 1) throw Refused(Errno.EINVAL);
                    if (!PfUp(pf)) throw Refused(Errno.EPERM);
                    next = next with { Mac = mac };
                    break;
                case "vlan":
                    var vlan = IntArg();
                    if (vlan > 4095) throw Refused(Errno.EINVAL);
                    next = next with { Vlan = vlan, Qos = 0, Proto = VfLinkInfo.Dot1Q };
                    break;
                case "qos":
                    var qos = IntArg();
                    if (qos > 7) throw Refused(Errno.EINVAL);
                    next = next with { Qos = next.Vlan == 0 ? 0 : qos };
                    break;
                case "proto":
                    var proto = Arg();
                    if (proto is not ("802.1Q" or "802.1ad")) throw Refused(Errno.EINVAL);
                    if (proto != VfLinkInfo.Dot1Q && shape.PfDriver == "igb") throw Refused(Errno.EPROTONOSUPPORT);
                    next = next with { Proto = proto };
                    break;
                case "spoofchk":
                    next = next with { SpoofChk = OnOff() };
                    break;
                case "trust":
                    next = next with { Trust = OnOff() };
                    break;
                case "state":
                    var state = Arg();
                    if (state is not ("auto" or "enable" or "disable")) throw Refused(Errno.EINVAL);
                    if (shape.PfDriver == "igb") throw Refused(Errno.EOPNOTSUPP);
                    next = next with { LinkState = state };
                    break;
                case "max_tx_rate":
                    next = next with { MaxTxRate = IntArg() };
                    break;
                case "min_tx_rate":
                    var min = IntArg();
                    if (min != 0 && shape.PfDriver == "igb") throw Refused(Errno.EINVAL);
                    next = next with { MinTxRate = min };
                    break;
                default:
                    throw new KernelException(op, Errno.EINVAL, $"Error: argument \"{settings[i]}\" is wrong");
            }
        }
        if (next.MinTxRate != 0 && next.MaxTxRate != 0 && next.MinTxRate > next.MaxTxRate) throw Refused(Errno.EINVAL);
        Set(all, pfPci, next);
        SaveNetlink(all);
        return Task.CompletedTask;
    }

    /// <summary>Reads without the lock: the netlink state is replaced whole (rename), so a read sees one version; and a
    /// read-only command must not create the lock file in the tree.</summary>
    public Task<string> ShowLinkJsonAsync(string pf, CancellationToken ct)
    {
        var pfPci = Root.LinkName($"/sys/class/net/{pf}/device")
            ?? throw new KernelException($"ip -j link show dev {pf}", Errno.ENODEV, $"Device \"{pf}\" does not exist.");
        var numVfs = Root.ReadInt($"/sys/bus/pci/devices/{pfPci}/sriov_numvfs") ?? 0;
        var all = LoadNetlink();
        var info = new PfLinkInfo(pf, PfUp(pf), Root.ReadInt($"/sys/class/net/{pf}/mtu") ?? 1500,
            Root.Read($"/sys/class/net/{pf}/address") ?? VfLinkInfo.ZeroMac,
            Enumerable.Range(0, numVfs).Select(i => Get(all, pfPci, i)).ToList());
        var ifindex = 2 + Root.List("/sys/class/net").Order(StringComparer.Ordinal).TakeWhile(n => n != pf).Count();
        return Task.FromResult(IpLinkJson.Render(ifindex, info));
    }

    // ---- sysfs reactions ----

    private string PciOfDeviceDir(string op, string dir)
    {
        var parts = dir.Trim('/').Split('/');
        var pci = parts switch
        {
            ["sys", "bus", "pci", "devices", var p] => p,
            ["sys", "class", "net", var name, "device"] => Root.LinkName($"/sys/class/net/{name}/device"),
            _ => parts[^1],
        };
        if (pci is null || !Root.Exists($"/sys/bus/pci/devices/{pci}")) throw new KernelException(op, Errno.ENOENT);
        return pci;
    }

    private void SetNumVfs(string op, string pfPci, string value)
    {
        var dev = $"/sys/bus/pci/devices/{pfPci}";
        if (!Root.Exists($"{dev}/sriov_totalvfs")) throw new KernelException(op, Errno.ENOENT);
        if (!int.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out var n)) throw new KernelException(op, Errno.EINVAL);
        var total = Root.ReadInt($"{dev}/sriov_totalvfs") ?? 0;
        var current = Root.ReadInt($"{dev}/sriov_numvfs") ?? 0;
        if (n > total) throw new KernelException(op, Errno.ERANGE);
        if (n == current) return;
        if (current != 0 && n != 0) throw new KernelException(op, Errno.EBUSY);
        var tree = Tree;
        if (n == 0)
        {
            for (var i = 0; i < current; i++)
            {
                var vf = Root.LinkName($"{dev}/virtfn{i}");
                if (vf is null) continue;
                var group = Root.LinkName($"/sys/bus/pci/devices/{vf}/iommu_group");
                tree.Unbind(vf);
                tree.Remove(SysfsTree.DevicePath(vf));
                tree.Remove($"/sys/bus/pci/devices/{vf}");
                if (group is not null) tree.Remove($"/sys/kernel/iommu_groups/{group}");
                tree.Remove($"{SysfsTree.DevicePath(pfPci)}/virtfn{i}");
            }
            tree.Write($"{SysfsTree.DevicePath(pfPci)}/sriov_numvfs", "0\n");
            var all = LoadNetlink();
            all.Remove(pfPci);
            SaveNetlink(all);
            return;
        }
        var shape = ShapeOf(pfPci);
        var nextGroup = Root.List("/sys/kernel/iommu_groups").Select(g => int.TryParse(g, out var x) ? x : 0).DefaultIfEmpty(0).Max() + 1;
        SimHost.SetNumVfs(tree, shape, PfIndex(shape, pfPci), n, ref nextGroup);
    }

    private void Unbind(string op, string driver, string pci)
    {
        if (Root.LinkName($"/sys/bus/pci/devices/{pci}/driver") != driver) throw new KernelException(op, Errno.ENODEV);
        Tree.Unbind(pci);
    }

    private void Bind(string op, string driver, string pci)
    {
        if (!Root.Exists($"/sys/bus/pci/devices/{pci}") || !Root.Exists($"/sys/bus/pci/drivers/{driver}")) throw new KernelException(op, Errno.ENODEV);
        if (Root.LinkName($"/sys/bus/pci/devices/{pci}/driver") is not null) throw new KernelException(op, Errno.EBUSY);
        var over = Override(pci);
        if (over is not null ? over != driver : driver != NativeDriver(pci)) throw new KernelException(op, Errno.ENODEV);
        BindDriver(pci, driver);
    }

    private void Probe(string op, string pci)
    {
        if (!Root.Exists($"/sys/bus/pci/devices/{pci}")) throw new KernelException(op, Errno.ENODEV);
        if (Root.LinkName($"/sys/bus/pci/devices/{pci}/driver") is not null) return;
        var driver = Override(pci) ?? NativeDriver(pci);
        if (driver is null || !Root.Exists($"/sys/bus/pci/drivers/{driver}")) return;
        BindDriver(pci, driver);
    }

    private void BindDriver(string pci, string driver)
    {
        if (driver == VirtualFunction.VfioDriver || Root.LinkName($"/sys/bus/pci/devices/{pci}/physfn") is not { } pfPci)
        {
            Tree.Bind(pci, driver);
            return;
        }
        var shape = ShapeOf(pfPci);
        var pf = PfIndex(shape, pfPci);
        var vf = VfIndex(pfPci, pci);
        Tree.Bind(pci, driver, shape.VfName(pf, vf), Get(LoadNetlink(), pfPci, vf).Mac);
    }

    private string? Override(string pci) => Root.Read($"/sys/bus/pci/devices/{pci}/driver_override") is { } o && o != "(null)" && o.Length > 0 ? o : null;

    private string? NativeDriver(string pci)
    {
        if (Root.LinkName($"/sys/bus/pci/devices/{pci}/physfn") is { } pfPci) return ShapeOf(pfPci).VfDriver;
        var vendor = Root.Read($"/sys/bus/pci/devices/{pci}/vendor");
        return vendor switch { "0x15b3" => "mlx5_core", "0x8086" => "igb", _ => null };
    }

    private int VfIndex(string pfPci, string vfPci)
    {
        for (var i = 0; i < 256; i++)
        {
            var l = Root.LinkName($"/sys/bus/pci/devices/{pfPci}/virtfn{i}");
            if (l is null) break;
            if (l == vfPci) return i;
        }
        throw new InvalidOperationException($"{vfPci} is no VF of {pfPci}");
    }

    private NicShape ShapeOf(string pfPci)
    {
        var vendor = Root.Read($"/sys/bus/pci/devices/{pfPci}/vendor");
        return vendor switch
        {
            "0x15b3" => NicShape.ConnectX5(Root.ReadInt($"/sys/bus/pci/devices/{pfPci}/sriov_totalvfs") ?? 16),
            "0x8086" => NicShape.Igb(),
            _ => throw new VmNetException($"the simulator does not know the NIC at {pfPci} (vendor {vendor}); simulated hosts come from `vmnet sim create`"),
        };
    }

    private static int PfIndex(NicShape shape, string pfPci)
    {
        for (var i = 0; i < 64; i++)
            if (shape.PfPci(i) == pfPci) return i;
        throw new InvalidOperationException($"{pfPci} is not a PF of the {shape.Model} shape");
    }

    private bool PfUp(string pf) =>
        Root.Read($"/sys/class/net/{pf}/flags") is { } f && f.StartsWith("0x", StringComparison.Ordinal)
        && (int.Parse(f.AsSpan(2), NumberStyles.HexNumber, CultureInfo.InvariantCulture) & 1) != 0;

    // ---- netlink state ----

    private Dictionary<string, List<VfLinkInfo>> LoadNetlink()
    {
        if (!File.Exists(NetlinkFile)) return new(StringComparer.Ordinal);
        return JsonSerializer.Deserialize(File.ReadAllText(NetlinkFile), SimJson.Default.DictionaryStringListVfLinkInfo)
            ?? new(StringComparer.Ordinal);
    }

    private void SaveNetlink(Dictionary<string, List<VfLinkInfo>> all) =>
        AtomicFile.Write(NetlinkFile, JsonSerializer.Serialize(all, SimJson.Default.DictionaryStringListVfLinkInfo), durable: false);

    private static VfLinkInfo Get(Dictionary<string, List<VfLinkInfo>> all, string pfPci, int vf) =>
        all.TryGetValue(pfPci, out var list) && list.FirstOrDefault(v => v.Vf == vf) is { } v ? v : new VfLinkInfo(vf, VfLinkInfo.ZeroMac);

    private static void Set(Dictionary<string, List<VfLinkInfo>> all, string pfPci, VfLinkInfo v)
    {
        if (!all.TryGetValue(pfPci, out var list)) all[pfPci] = list = [];
        list.RemoveAll(x => x.Vf == v.Vf);
        list.Add(v);
        list.Sort((a, b) => a.Vf.CompareTo(b.Vf));
    }
}

[JsonSourceGenerationOptions(WriteIndented = true, PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase)]
[JsonSerializable(typeof(Dictionary<string, List<VfLinkInfo>>))]
internal sealed partial class SimJson : JsonSerializerContext;
