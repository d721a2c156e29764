using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;

using VmNet.Host;
using VmNet.Io;
using VmNet.Kernel;
using VmNet.Spec;

namespace VmNet.Sim;

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
/// <item>Netlink VF settings kept in <c>DIR/run/vmnet-sim/netlink.json</c> and read back as RTM_GETLINK would:
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
            var tree = Tree;
            tree.Write($"{tree.Dir(pci)}/driver_override", (v.Length == 0 ? "(null)" : v) + "\n");
        }
        else if (hostPath == Sysfs.DriversProbe)
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

    public Task SetVfAsync(string pf, int vf, VfSettings settings, CancellationToken ct)
    {
        using var _ = Lock(ct);
        var op = $"ip link set dev {pf} vf {vf} {settings}";
        var pfPci = Root.LinkName(Sysfs.NetDeviceLink(pf)) ?? throw new KernelException(op, Errno.ENODEV, $"Cannot find device \"{pf}\"");
        var shape = ShapeOf(pfPci);
        var numVfs = Root.ReadInt(Sysfs.SriovNumVfs(pfPci)) ?? 0;
        KernelException Refused(Errno e) => new(op, e, "RTNETLINK answers: " + KernelErrors.Text(e));
        if (vf < 0 || vf >= numVfs) throw Refused(Errno.EINVAL);
        if (settings.IsEmpty) throw new KernelException(op, Errno.EINVAL, "Error: no VF setting given");
        var all = LoadNetlink();
        var current = Get(all, pfPci, vf);
        if (settings.Mac is { } mac)
        {
            if (!Spec.Mac.TryParse(mac, out var bytes) || (bytes[0] & 1) == 1) throw Refused(Errno.EINVAL);
            if (!PfUp(pf)) throw Refused(Errno.EPERM);
        }
        if (settings.Vlan is { } vlan)
        {
            if (vlan.Id is < 0 or > 4095 || vlan.Qos is < 0 or > 7) throw Refused(Errno.EINVAL);
            if (vlan.Protocol != VlanProtocol.Dot1Q && shape.PfDriver == "igb") throw Refused(Errno.EPROTONOSUPPORT);
        }
        if (settings.LinkState is not null && shape.PfDriver == "igb") throw Refused(Errno.EOPNOTSUPP);
        if (settings.Rates is { } rates)
        {
            if (rates.MaxMbps < 0 || rates.MinMbps < 0) throw Refused(Errno.EINVAL);
            if (rates.MinMbps != 0 && shape.PfDriver == "igb") throw Refused(Errno.EINVAL);
            if (rates.MinMbps != 0 && rates.MaxMbps != 0 && rates.MinMbps > rates.MaxMbps) throw Refused(Errno.EINVAL);
        }
        // The kernel resets qos and protocol with the VLAN: a VLAN of 0 is untagged, whatever else was asked.
        var next = current.With(settings with
        {
            Mac = settings.Mac?.ToLowerInvariant(),
            Vlan = settings.Vlan is { IsTagged: false } ? VlanTag.Untagged : settings.Vlan,
        });
        Set(all, pfPci, vf, next);
        SaveNetlink(all);
        return Task.CompletedTask;
    }

    /// <summary>Reads without the lock: the netlink state is replaced whole (rename), so a read sees one version; and a
    /// read-only command must not create the lock file in the tree.</summary>
    public Task<PfLink> ReadLinkAsync(string pf, CancellationToken ct)
    {
        var pfPci = Root.LinkName(Sysfs.NetDeviceLink(pf))
            ?? throw new KernelException($"ip link show dev {pf}", Errno.ENODEV, $"Cannot find device \"{pf}\"");
        var numVfs = Root.ReadInt(Sysfs.SriovNumVfs(pfPci)) ?? 0;
        var all = LoadNetlink();
        return Task.FromResult(new PfLink(pf, PfUp(pf), Root.ReadInt(Sysfs.NetMtu(pf)) ?? 1500,
            Root.Read($"{Sysfs.Net(pf)}/address") ?? VfSettings.ZeroMac,
            Enumerable.Range(0, numVfs).Select(i => new VfLink(i, Get(all, pfPci, i))).ToList()));
    }

    // ---- sysfs reactions ----

    private string PciOfDeviceDir(string op, string dir)
    {
        var parts = dir.Trim('/').Split('/');
        var pci = parts switch
        {
            ["sys", "bus", "pci", "devices", var p] => p,
            ["sys", "class", "net", var name, "device"] => Root.LinkName(Sysfs.NetDeviceLink(name)),
            _ => parts[^1],
        };
        if (pci is null || !Root.Exists(Sysfs.Device(pci))) throw new KernelException(op, Errno.ENOENT);
        return pci;
    }

    private void SetNumVfs(string op, string pfPci, string value)
    {
        if (!Root.Exists(Sysfs.SriovTotalVfs(pfPci))) throw new KernelException(op, Errno.ENOENT);
        if (!int.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out var n)) throw new KernelException(op, Errno.EINVAL);
        var total = Root.ReadInt(Sysfs.SriovTotalVfs(pfPci)) ?? 0;
        var current = Root.ReadInt(Sysfs.SriovNumVfs(pfPci)) ?? 0;
        if (n > total) throw new KernelException(op, Errno.ERANGE);
        if (n == current) return;
        if (current != 0 && n != 0) throw new KernelException(op, Errno.EBUSY);
        var tree = Tree;
        if (n == 0)
        {
            for (var i = 0; i < current; i++)
            {
                var vf = Root.LinkName(Sysfs.VirtFn(pfPci, i));
                if (vf is null) continue;
                var group = Root.LinkName(Sysfs.IommuGroupLink(vf));
                tree.Unbind(vf);
                tree.Remove(tree.Dir(vf));
                tree.Remove(Sysfs.Device(vf));
                if (group is not null) tree.Remove(Sysfs.IommuGroup(group));
                tree.Remove($"{tree.Dir(pfPci)}/virtfn{i}");
            }
            tree.Write($"{tree.Dir(pfPci)}/sriov_numvfs", "0\n");
            var all = LoadNetlink();
            all.Remove(pfPci);
            SaveNetlink(all);
            return;
        }
        var shape = ShapeOf(pfPci);
        var nextGroup = Root.List(Sysfs.IommuGroups).Select(g => int.TryParse(g, out var x) ? x : 0).DefaultIfEmpty(0).Max() + 1;
        SimHost.CreateVfs(tree, shape, pfPci, n, vf => VfName(shape, pfPci, vf), ref nextGroup);
    }

    private void Unbind(string op, string driver, string pci)
    {
        if (Root.LinkName(Sysfs.DriverLink(pci)) != driver) throw new KernelException(op, Errno.ENODEV);
        Tree.Unbind(pci);
    }

    private void Bind(string op, string driver, string pci)
    {
        if (!Root.Exists(Sysfs.Device(pci)) || !Root.Exists(Sysfs.DriverDir(driver))) throw new KernelException(op, Errno.ENODEV);
        if (Root.LinkName(Sysfs.DriverLink(pci)) is not null) throw new KernelException(op, Errno.EBUSY);
        var over = Override(pci);
        if (over is not null ? over != driver : driver != NativeDriver(pci)) throw new KernelException(op, Errno.ENODEV);
        BindDriver(pci, driver);
    }

    private void Probe(string op, string pci)
    {
        if (!Root.Exists(Sysfs.Device(pci))) throw new KernelException(op, Errno.ENODEV);
        if (Root.LinkName(Sysfs.DriverLink(pci)) is not null) return;
        var driver = Override(pci) ?? NativeDriver(pci);
        if (driver is null || !Root.Exists(Sysfs.DriverDir(driver))) return;
        BindDriver(pci, driver);
    }

    private void BindDriver(string pci, string driver)
    {
        if (driver == VirtualFunction.VfioDriver || Root.LinkName(Sysfs.PhysFn(pci)) is not { } pfPci)
        {
            Tree.Bind(pci, driver);
            return;
        }
        var vf = VfIndex(pfPci, pci);
        Tree.Bind(pci, driver, VfName(ShapeOf(pfPci), pfPci, vf), Get(LoadNetlink(), pfPci, vf).Mac ?? VfSettings.ZeroMac);
    }

    private string? Override(string pci) => Root.Read(Sysfs.DriverOverride(pci)) is { } o && o != "(null)" && o.Length > 0 ? o : null;

    private string? NativeDriver(string pci)
    {
        if (Root.LinkName(Sysfs.PhysFn(pci)) is { } pfPci) return ShapeOf(pfPci).VfDriver;
        var vendor = Root.Read(Sysfs.Vendor(pci));
        return vendor switch { "0x15b3" => "mlx5_core", "0x8086" => "igb", _ => null };
    }

    private int VfIndex(string pfPci, string vfPci)
    {
        for (var i = 0; i < 256; i++)
        {
            var l = Root.LinkName(Sysfs.VirtFn(pfPci, i));
            if (l is null) break;
            if (l == vfPci) return i;
        }
        throw new InvalidOperationException($"{vfPci} is no VF of {pfPci}");
    }

    private NicShape ShapeOf(string pfPci)
    {
        var vendor = Root.Read(Sysfs.Vendor(pfPci));
        return vendor switch
        {
            "0x15b3" => NicShape.ConnectX5(Root.ReadInt(Sysfs.SriovTotalVfs(pfPci)) ?? 16),
            "0x8086" => NicShape.Igb(),
            _ => throw new VmNetException($"the simulator does not know the NIC at {pfPci} (vendor {vendor}); simulated hosts come from `vmnet sim create`"),
        };
    }

    /// <summary>
    /// The netdev name udev gives VF <paramref name="vf"/>: the shape's name where the PF sits where the shape puts
    /// its PFs; elsewhere (a tree laid out by another machine) the PF's netdev name + "v" + index, as a rule would.
    /// </summary>
    private string VfName(NicShape shape, string pfPci, int vf)
    {
        for (var i = 0; i < 64; i++)
            if (shape.PfPci(i) == pfPci) return shape.VfName(i, vf);
        var pfName = Root.List(Sysfs.NetDir(pfPci)).FirstOrDefault() ?? pfPci.Replace(':', '_').Replace('.', '_');
        return $"{pfName}v{vf}";
    }

    private bool PfUp(string pf) => Sysfs.IsUp(Root.Read(Sysfs.NetFlags(pf)));

    // ---- netlink state ----

    /// <summary>Each PF's VF settings by VF index, as netlink holds them (a VF never set reads as <see cref="VfSettings.Fresh"/>).</summary>
    private Dictionary<string, SortedDictionary<int, VfSettings>> LoadNetlink()
    {
        if (!File.Exists(NetlinkFile)) return new(StringComparer.Ordinal);
        return JsonSerializer.Deserialize(File.ReadAllText(NetlinkFile), SimJson.Default.DictionaryStringSortedDictionaryInt32VfSettings)
            ?? new(StringComparer.Ordinal);
    }

    private void SaveNetlink(Dictionary<string, SortedDictionary<int, VfSettings>> all) =>
        AtomicFile.Write(NetlinkFile, JsonSerializer.Serialize(all, SimJson.Default.DictionaryStringSortedDictionaryInt32VfSettings), durable: false);

    private static VfSettings Get(Dictionary<string, SortedDictionary<int, VfSettings>> all, string pfPci, int vf) =>
        all.TryGetValue(pfPci, out var vfs) && vfs.TryGetValue(vf, out var v) ? v : VfSettings.Fresh;

    private static void Set(Dictionary<string, SortedDictionary<int, VfSettings>> all, string pfPci, int vf, VfSettings v)
    {
        if (!all.TryGetValue(pfPci, out var vfs)) all[pfPci] = vfs = [];
        vfs[vf] = v;
    }
}

[JsonSourceGenerationOptions(WriteIndented = true, PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase,
    DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull, UseStringEnumConverter = true)]
[JsonSerializable(typeof(Dictionary<string, SortedDictionary<int, VfSettings>>))]
internal sealed partial class SimJson : JsonSerializerContext;
