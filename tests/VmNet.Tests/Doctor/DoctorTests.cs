using VmNet.Doctor;
using VmNet.Host;
using VmNet.Leases;
using VmNet.Sim;
using VmNet.State;
using VmNet.Tests.Support;

namespace VmNet.Tests.Doctor;

public class DoctorTests
{
    private sealed class FakeTools(Dictionary<string, (int, string)?> answers) : IToolRunner
    {
        public Task<(int ExitCode, string Output)?> Run(string tool, IReadOnlyList<string> args, CancellationToken ct) =>
            Task.FromResult(answers.GetValueOrDefault(tool));
    }

    private static async Task<IReadOnlyList<Check>> Doctor(string dir, IToolRunner? tools = null) =>
        await new HostDoctor(new HostRoot(dir), tools).Run(TestContext.Current.CancellationToken);

    [Fact]
    public async Task A_ready_host_passes_every_check()
    {
        using var dir = new TempDir();
        SimHost.Create(dir.Path, NicShape.Igb(), pfs: 2, numVfs: 2);

        var checks = await Doctor(dir.Path);

        Assert.DoesNotContain(checks, c => c.Status is CheckStatus.Fail or CheckStatus.Warn);
        Assert.Contains(checks, c => c is { Name: "IOMMU", Status: CheckStatus.Ok } && c.Detail == "enabled (dmar0; cmdline intel_iommu=on iommu=pt)");
        Assert.Contains(checks, c => c.Name == "enp2s0 (0000:02:00.0, igb)" && c.Detail == "SR-IOV: 2 of 7 VFs enabled");
    }

    [Fact]
    public async Task Each_failing_check_prints_its_fix()
    {
        using var dir = new TempDir();
        var tree = SimHost.Create(dir.Path, NicShape.Igb(), pfs: 1, numVfs: 0, iommu: false);
        tree.Remove("/sys/bus/pci/drivers/vfio-pci");
        tree.SetUp("0000:01:00.0", "enp1s0", up: false);

        var checks = await Doctor(dir.Path);

        var iommu = Assert.Single(checks, c => c.Name == "IOMMU");
        Assert.Equal(CheckStatus.Fail, iommu.Status);
        Assert.Contains("intel_iommu=on iommu=pt", iommu.Fix);
        Assert.Equal("modprobe vfio-pci, and load it at boot: echo vfio-pci > /etc/modules-load.d/vfio-pci.conf", Assert.Single(checks, c => c.Name == "vfio-pci").Fix);
        Assert.Contains(checks, c => c.Status == CheckStatus.Warn && c.Detail == "SR-IOV capable (7 VFs) but no VF enabled");
        Assert.Contains(checks, c => c.Status == CheckStatus.Fail && c.Fix == "ip link set dev enp1s0 up (and make it persistent in the host's network configuration)");
    }

    [Fact]
    public async Task Mlx5_firmware_limits_and_switchdev_mode_are_read_from_mstconfig_and_devlink()
    {
        using var dir = new TempDir();
        SimHost.Create(dir.Path, NicShape.ConnectX5(), pfs: 1, numVfs: 2);
        var tools = new FakeTools(new()
        {
            ["mstconfig"] = (0, "Device #1:\n  Configurations:    Next Boot\n         SRIOV_EN                  False(0)\n         NUM_OF_VFS                0\n"),
            ["devlink"] = (0, "pci/0000:03:00.0: mode switchdev inline-mode none encap-mode basic\n"),
        });

        var checks = await Doctor(dir.Path, tools);

        Assert.Contains(checks, c => c.Status == CheckStatus.Fail && c.Detail == "firmware: SRIOV_EN False(0), NUM_OF_VFS 0"
            && c.Fix!.StartsWith("mstconfig -d 0000:03:00.0 set SRIOV_EN=1 NUM_OF_VFS=16", StringComparison.Ordinal));
        Assert.Contains(checks, c => c.Status == CheckStatus.Warn && c.Fix == "devlink dev eswitch set pci/0000:03:00.0 mode legacy (with no VF in use)");
    }

    [Fact]
    public async Task A_missing_mstconfig_is_a_skip_that_says_how_to_install_it()
    {
        using var dir = new TempDir();
        SimHost.Create(dir.Path, NicShape.ConnectX5(), pfs: 1, numVfs: 2);

        var checks = await Doctor(dir.Path, new FakeTools(new()));

        Assert.Contains(checks, c => c.Status == CheckStatus.Skip && c.Fix == "apt install mstflint");
    }

    [Fact]
    public void Doctor_exits_3_when_a_check_fails_and_0_on_the_shipped_host()
    {
        using var dir = new TempDir();
        SimHost.Create(dir.Path, NicShape.Igb(), pfs: 1, numVfs: 1, iommu: false);
        var (o, e) = (new StringWriter(), new StringWriter());

        Assert.Equal(3, VmNet.Cli.VmNetCli.Run(["doctor", "--host-root", dir.Path], o, e));
        Assert.Contains("FAIL  IOMMU: no IOMMU is active", o.ToString());
        Assert.Contains("      fix: enable VT-d / AMD-Vi", o.ToString());
        Assert.Equal(0, VmNet.Cli.VmNetCli.Run(["doctor", "--host-root", Repo.File("examples/hosts/connectx5")], new StringWriter(), e));
    }
}

public class HostInventoryTests
{
    [Fact]
    public void The_table_shows_each_vf_with_its_driver_state_and_owner()
    {
        using var dir = new TempDir();
        SimHost.CreateExample(dir["host"]);
        var state = new StateDir(dir["state"]);
        new LeaseLedger(state).Write(TestLeases.Of("ceph-osd-1", "storage", 0, "enp3s0f0np0", "0000:03:00.0", 1, "0000:03:00.3", "02:00:00:00:40:11", 40));
        var (o, e) = (new StringWriter(), new StringWriter());

        var code = VmNet.Cli.VmNetCli.Run(["host", "--host-root", dir["host"], "--state-dir", dir["state"]], o, e);

        Assert.Equal(0, code);
        var lines = o.ToString().Split('\n');
        Assert.Equal("enp3s0f0np0  0000:03:00.0  mlx5_core  up  mtu 9000  VFs 8/16  free 6  node 0  PCIe 8 GT/s x16  guaranteed 0/100000 Mbit/s", lines[0]);
        Assert.Contains("  0   0000:03:00.2  vfio-pci   -           vfio   00:00:00:00:00:00  -     in use (not vmnet)", lines);
        Assert.Contains("  1   0000:03:00.3  mlx5_core  enp3s0f0v1  down   00:00:00:00:00:00  -     ceph-osd-1/storage", lines);
        Assert.Contains(lines, l => l.StartsWith("  1   0000:03:02.3  mlx5_core  enp3s0f1v1  up", StringComparison.Ordinal) && l.EndsWith("in use (not vmnet)", StringComparison.Ordinal));
    }

    [Fact]
    public void Json_lists_pfs_and_vfs_with_owner_and_free()
    {
        using var dir = new TempDir();
        var (o, e) = (new StringWriter(), new StringWriter());

        Assert.Equal(0, VmNet.Cli.VmNetCli.Run(["host", "ls", "--json", "--host-root", Repo.File("examples/hosts/connectx5"), "--state-dir", dir.Path], o, e));

        using var doc = System.Text.Json.JsonDocument.Parse(o.ToString());
        var pfs = doc.RootElement.GetProperty("pfs");
        Assert.Equal(["enp3s0f0np0", "enp3s0f1np1"], pfs.EnumerateArray().Select(p => p.GetProperty("name").GetString()));
        var vf0 = pfs[0].GetProperty("vfs")[0];
        Assert.Equal(("0000:03:00.2", "vfio-pci", false), (vf0.GetProperty("pci").GetString(), vf0.GetProperty("driver").GetString(), vf0.GetProperty("free").GetBoolean()));
        Assert.Equal(14, pfs.EnumerateArray().Sum(p => p.GetProperty("vfs").EnumerateArray().Count(v => v.GetProperty("free").GetBoolean())));
    }

    [Fact]
    public void Host_and_doctor_only_read_the_host()
    {
        var example = Repo.File("examples/hosts/connectx5");
        var before = HostScannerTests.Snapshot(example);
        using var state = new TempDir();

        Assert.Equal(0, VmNet.Cli.VmNetCli.Run(["host", "--host-root", example, "--state-dir", state.Path], new StringWriter(), new StringWriter()));
        Assert.Equal(0, VmNet.Cli.VmNetCli.Run(["doctor", "--host-root", example], new StringWriter(), new StringWriter()));

        Assert.Equal(before, HostScannerTests.Snapshot(example));
    }
}

/// <summary>Issue 13, item 19: a VF whose IOMMU group holds a host device is named by the doctor and by `vmnet host`.</summary>
public sealed class DoctorIommuGroupTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();


    [Fact]
    public void The_doctor_warns_of_a_vf_in_a_shared_group_and_vmnet_host_shows_it_busy()
    {
        var tree = SimHost.Create(_dir["host"], NicShape.Igb(), pfs: 1, numVfs: 2);
        Execution.ApplyTests.ShareGroup(tree, 21);

        var doctor = Cli.HostCliTests.OnSimHost(_dir, ["doctor"]);
        var host = Cli.HostCliTests.OnSimHost(_dir, ["host"]);

        Assert.True(doctor.Code == 0, $"vmnet doctor exited {doctor.Code} (a warning is no failure):\n{doctor.Out}{doctor.Err}");
        Assert.Contains("1 of 2 VFs share their IOMMU group with a host device, so vfio cannot take them alone (vmnet up skips them): vf 0 (0000:01:10.0): group 21 with 0000:00:1f.0 (driver ahci)", doctor.Out);
        Assert.Contains("ACS", doctor.Out);
        Assert.Equal(0, host.Code);
        Assert.Matches(@"0 +0000:01:10\.0 +igbvf .*unusable \(see below\)", host.Out);
        Assert.Contains("VF 0: shares IOMMU group 21 with 0000:00:1f.0 (driver ahci): vfio cannot take it alone", host.Out);
        Assert.Matches(@"1 +0000:01:10\.2 +igbvf .*free", host.Out);
    }

    [Fact]
    public void The_doctor_fails_a_pf_whose_every_vf_shares_its_group()
    {
        var tree = SimHost.Create(_dir["host"], NicShape.Igb(), pfs: 1, numVfs: 2);
        Execution.ApplyTests.ShareGroup(tree, 21, 22);

        var doctor = Cli.HostCliTests.OnSimHost(_dir, ["doctor"]);

        Assert.Equal(ExitCodes.HostCannotServe, doctor.Code);
        Assert.Contains("2 of 2 VFs share their IOMMU group with a host device", doctor.Out + doctor.Err);
    }
}
