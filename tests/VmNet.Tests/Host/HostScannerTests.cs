using VmNet.Host;
using VmNet.Sim;
using VmNet.Tests.Support;

namespace VmNet.Tests.Host;

public class HostScannerTests
{
    [Fact]
    public void A_connectx5_port_is_found_by_name_and_by_pci_address_with_its_vfs()
    {
        using var dir = new TempDir();
        SimHost.Create(dir.Path, NicShape.ConnectX5(), pfs: 2, numVfs: 4, mtu: 9000);
        var scanner = new HostScanner(new HostRoot(dir.Path));

        var byName = scanner.FindPort("enp3s0f1np1", withVfs: true)!;
        var byPci = scanner.FindPort("0000:03:00.1", withVfs: true)!;

        Assert.Equal(byName with { Vfs = [] }, byPci with { Vfs = [] });
        Assert.Equal(("0000:03:00.1", "mlx5_core", 9000, 16, 4, true), (byName.Pci, byName.Driver, byName.Mtu, byName.TotalVfs, byName.NumVfs, byName.Up));
        Assert.Equal(["0000:03:02.2", "0000:03:02.3", "0000:03:02.4", "0000:03:02.5"], byName.Vfs.Select(v => v.Pci));
        var vf = byName.Vfs[1];
        Assert.Equal((1, "mlx5_core", "enp3s0f1v1", false, (string?)null), (vf.Index, vf.Driver, vf.NetDev, vf.NetDevUp, vf.BusyReason));
        Assert.NotNull(vf.IommuGroup);
    }

    [Fact]
    public void Seed_000s_addresses_hold_pf1s_vf1_is_0000_03_02_3() =>
        Assert.Equal(("0000:03:00.3", "0000:03:02.3"), (NicShape.ConnectX5().VfPci(0, 1), NicShape.ConnectX5().VfPci(1, 1)));

    [Fact]
    public void Igb_vfs_sit_at_offset_0x80_with_stride_2_as_qemu_emulates_them()
    {
        var igb = NicShape.Igb();

        Assert.Equal(["0000:01:10.0", "0000:01:10.2", "0000:01:10.4", "0000:01:10.6", "0000:01:11.0"], Enumerable.Range(0, 5).Select(i => igb.VfPci(0, i)));
        Assert.Equal("0000:02:10.0", igb.VfPci(1, 0));
    }

    [Fact]
    public void The_tree_is_laid_out_with_the_kernels_relative_symlinks()
    {
        using var dir = new TempDir();
        SimHost.Create(dir.Path, NicShape.Igb(), pfs: 1, numVfs: 2);

        Assert.Equal("../../devices/pci0000:00/0000:00:01.1/0000:01:00.0/net/enp1s0", new FileInfo(dir["sys/class/net/enp1s0"]).LinkTarget);
        Assert.Equal("../../../devices/pci0000:00/0000:00:01.1/0000:01:10.0", new FileInfo(dir["sys/bus/pci/devices/0000:01:10.0"]).LinkTarget);
        Assert.Equal("../0000:01:10.0", new FileInfo(dir["sys/bus/pci/devices/0000:01:00.0/virtfn0"]).LinkTarget);
        Assert.Equal("../0000:01:00.0", new FileInfo(dir["sys/bus/pci/devices/0000:01:10.2/physfn"]).LinkTarget);
        Assert.Equal("../../../../bus/pci/drivers/igbvf", new FileInfo(dir["sys/bus/pci/devices/0000:01:10.2/driver"]).LinkTarget);
        Assert.Equal("(null)\n", File.ReadAllText(dir["sys/bus/pci/devices/0000:01:10.2/driver_override"]));
        Assert.True(File.Exists(dir["sys/bus/pci/devices/0000:01:10.2/net/enp1s16f2/address"]));
        Assert.Equal("7\n", File.ReadAllText(dir["sys/class/net/enp1s0/device/sriov_totalvfs"]));
        var group = new FileInfo(dir["sys/bus/pci/devices/0000:01:10.2/iommu_group"]).LinkTarget!.Split('/')[^1];
        Assert.True(Directory.Exists(dir[$"sys/kernel/iommu_groups/{group}/devices/0000:01:10.2"]));
    }

    [Fact]
    public void A_vf_on_vfio_pci_or_up_or_without_a_driver_is_busy()
    {
        using var dir = new TempDir();
        var shape = NicShape.Igb();
        var tree = SimHost.Create(dir.Path, shape, pfs: 1, numVfs: 4);
        tree.Unbind(shape.VfPci(0, 0));
        tree.Bind(shape.VfPci(0, 0), VirtualFunction.VfioDriver);
        tree.SetUp(shape.VfPci(0, 1), shape.VfName(0, 1), up: true);
        tree.Unbind(shape.VfPci(0, 2));

        var vfs = new HostScanner(new HostRoot(dir.Path)).FindPort("enp1s0", withVfs: true)!.Vfs;

        Assert.Equal(["bound to vfio-pci", "its netdev enp1s16f2 is up", "bound to no driver", null], vfs.Select(v => v.BusyReason));
        Assert.True(File.Exists(dir[$"dev/vfio/{vfs[0].IommuGroup}"]));
    }

    [Fact]
    public void A_missing_port_is_null_and_a_port_without_sriov_has_no_total_vfs()
    {
        using var dir = new TempDir();
        var tree = SimHost.Create(dir.Path, NicShape.Igb(), pfs: 1, numVfs: 0);
        tree.Device("0000:05:00.0", "0x8086", "0x10d3", 99);
        tree.Bind("0000:05:00.0", "e1000e", "enp5s0", "52:54:00:00:00:05", up: true);
        var scanner = new HostScanner(new HostRoot(dir.Path));

        Assert.Null(scanner.FindPort("enp9s0"));
        Assert.Null(scanner.FindPort("0000:09:00.0"));
        Assert.Equal(0, scanner.FindPort("enp5s0")!.TotalVfs);
        Assert.Equal((7, 0), (scanner.FindPort("enp1s0")!.TotalVfs, scanner.FindPort("enp1s0")!.NumVfs));
    }

    [Fact]
    public void The_shipped_example_host_is_what_the_generator_makes()
    {
        using var dir = new TempDir();
        SimHost.CreateExample(dir.Path);

        Assert.Equal(Snapshot(dir.Path), Snapshot(Repo.File("examples/hosts/connectx5")));
        // git keeps no empty directory: a generated tree that has one would differ in every fresh clone
        var lines = Snapshot(dir.Path).Split('\n');
        var empty = lines.Where((l, i) => l.EndsWith('/') && (i + 1 == lines.Length || !lines[i + 1].StartsWith(l, StringComparison.Ordinal)));
        Assert.Empty(empty);
    }

    /// <summary>Every path in a tree with its symlink target or file content; symlinks are not followed.</summary>
    internal static string Snapshot(string root)
    {
        var lines = new List<string>();
        void Walk(string dir)
        {
            foreach (var p in Directory.EnumerateFileSystemEntries(dir).Order(StringComparer.Ordinal))
            {
                var rel = Path.GetRelativePath(root, p);
                var info = new FileInfo(p);
                if (info.LinkTarget is { } target) lines.Add($"{rel} -> {target}");
                else if (Directory.Exists(p)) { lines.Add(rel + "/"); Walk(p); }
                else lines.Add($"{rel} = {File.ReadAllText(p).TrimEnd('\n')}");
            }
        }
        Walk(root);
        return string.Join("\n", lines);
    }
}
