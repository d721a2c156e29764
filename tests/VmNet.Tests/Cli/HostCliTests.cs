using VmNet.Cli;
using VmNet.Sim;
using VmNet.Tests.Support;

namespace VmNet.Tests.Cli;

/// <summary>The host-changing commands end to end on a simulated host, in process.</summary>
public sealed class HostCliTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    private (int Code, string Out, string Err) Vmnet(params string[] args) => OnSimHost(_dir, args);

    /// <summary>vmnet in process on the simulated host DIR/host with its state in DIR/state: exit code, stdout, stderr.</summary>
    internal static (int Code, string Out, string Err) OnSimHost(TempDir dir, string[] args)
    {
        using var o = new StringWriter();
        using var e = new StringWriter();
        var code = VmNetCli.Run(["--host-root", dir["host"], "--state-dir", dir["state"], .. args], o, e);
        return (code, o.ToString(), e.ToString());
    }

    /// <summary>up's output without the seconds that lead each phase line.</summary>
    internal static string Unstamped(string output) => System.Text.RegularExpressions.Regex.Replace(output, @"(?m)^ *\d+\.\ds ", "");

    [Fact]
    public void Up_rm_and_gc_print_one_line_each_and_leave_the_host_as_found()
    {
        SimHost.Create(_dir["host"], NicShape.ConnectX5(), pfs: 2, numVfs: 1);
        var start = HostSnapshot.Of(_dir["host"]);
        var spec = _dir.Write("vm.yaml", "name: vm1\ndisk: {image: /i.qcow2}\nnetworks:\n  - name: s\n    vlan: 40\n    ports: [enp3s0f0np0, enp3s0f1np1]\n    address: dhcp\n");

        var up = Vmnet("up", spec, "--out", _dir["out"], "--no-start");
        Assert.Equal(0, up.Code);
        Assert.StartsWith("[1/7] reserve: one VF per port for 1 network, under the ledger lock\n[2/7] configure: s0=enp3s0f0np0 vf 0 (0000:03:00.2) mac ", Unstamped(up.Out));
        Assert.Contains("[3/7] bind: 2 VFs on vfio-pci: 0000:03:00.2, 0000:03:02.2\n", up.Out);
        Assert.EndsWith("vm1: the host side is ready (2 VFs leased, configured and on vfio-pci); not started (--no-start); give the VFs back with `vmnet rm vm1`\n", up.Out);
        Assert.True(File.Exists(_dir["out/domain.xml"]));

        var second = _dir.Write("vm2.yaml", File.ReadAllText(spec).Replace("vm1", "vm2"));
        var full = Vmnet("up", second, "--no-start");
        Assert.Equal((3, "[1/7] reserve: one VF per port for 1 network, under the ledger lock\n"), (full.Code, Unstamped(full.Out)));
        Assert.Contains("vmnet: networks[0].ports[0]: no free VF on enp3s0f0np0", full.Err);

        Assert.Equal((0, "no orphaned leases\n"), (Vmnet("gc").Code, Vmnet("gc").Out));
        var rm = Vmnet("rm", "vm1");
        Assert.Equal(0, rm.Code);
        Assert.EndsWith("vm1: 2 VFs restored and released\n", rm.Out);
        Assert.Equal("vm1: no leases; nothing to do\n", Vmnet("rm", "vm1").Out);
        Assert.Equal(start, HostSnapshot.Of(_dir["host"]));
    }

    [Fact]
    public void Host_apply_and_boot_unit_work_from_the_command_line()
    {
        SimHost.Create(_dir["host"], NicShape.Igb(), pfs: 2, numVfs: 0);
        var config = _dir.Write("host.yaml", "pfs:\n  - port: enp1s0\n    vfs: 3\n  - port: enp2s0\n    vfs: 3\n");

        var apply = Vmnet("host", "apply", "--config", config);
        Assert.Equal((0, "enp1s0: 0 -> 3 VFs\nenp2s0: 0 -> 3 VFs\n"), (apply.Code, apply.Out));
        var unit = Vmnet("host", "boot-unit", "--config", config, "-o", "-");
        Assert.Equal(0, unit.Code);
        Assert.Contains($"host apply --config {config}\n", unit.Out);
        Assert.Equal(0, Vmnet("host", "prepare").Code);
    }

    /// <summary>`host --summary` counts each PF's VFs in one line, `--free` lists only what a VM could be given, both
    /// as text and JSON, on `host` and `host ls` alike.</summary>
    [Fact]
    public void Host_summary_counts_each_pfs_vfs_and_free_lists_only_the_free_ones()
    {
        SimHost.Create(_dir["host"], NicShape.ConnectX5(), pfs: 2, numVfs: 3);
        var spec = _dir.Write("vm.yaml", "name: vm1\ndisk: {image: /i.qcow2}\nnetworks:\n  - name: s\n    vlan: 40\n    ports: [enp3s0f0np0, enp3s0f1np1]\n    address: dhcp\n");
        Assert.Equal(0, Vmnet("up", spec, "--no-start").Code);

        var summary = Vmnet("host", "--summary");
        Assert.Equal(0, summary.Code);
        var lines = summary.Out.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(6, lines.Length);
        Assert.Matches(@"^  PF +PCI +DRIVER +STATE +NODE +MTU +VFS +FREE +VMNET +OTHER +UNUSABLE +GUARANTEED +VMS$", lines[0]);
        Assert.Matches(@"^  enp3s0f0np0 +\S+ +mlx5_core +up +0 +\d+ +3/16 +2 +1 +0 +0 +0/100000 +vm1$", lines[1]);
        Assert.Matches(@"^  enp3s0f1np1 +\S+ +mlx5_core +up +0 +\d+ +3/16 +2 +1 +0 +0 +0/100000 +vm1$", lines[2]);
        Assert.Equal("2 PFs, 6 VFs, 4 free", lines[3]);
        Assert.Matches(@"^  NODE +CPUS +DEDICATED +MEMORY +FREE +HUGEPAGES \(FREE/TOTAL\) +PFS$", lines[4]);
        Assert.Matches(@"^  0 +0-7 +- +32\.0 GiB +\S+ GiB +2MiB 0/0, 1GiB 0/0 +enp3s0f0np0,enp3s0f1np1$", lines[5]);
        Assert.Equal(summary.Out, Vmnet("host", "ls", "--summary").Out);

        var json = System.Text.Json.JsonDocument.Parse(Vmnet("host", "--summary", "--json").Out).RootElement;
        Assert.Equal(2, json.GetArrayLength());
        Assert.All(json.EnumerateArray(), pf =>
        {
            Assert.Equal((2, 1, 0), (pf.GetProperty("free").GetInt32(), pf.GetProperty("vmnet").GetInt32(), pf.GetProperty("other").GetInt32()));
            Assert.Equal(["vm1"], pf.GetProperty("vms").EnumerateArray().Select(v => v.GetString()));
        });

        var free = Vmnet("host", "--free");
        Assert.Equal(0, free.Code);
        Assert.DoesNotContain("vm1", free.Out);
        Assert.Equal(2, System.Text.RegularExpressions.Regex.Matches(free.Out, @"VFs 3/16  free 2  node 0  PCIe 8 GT/s x16  guaranteed 0/100000 Mbit/s\n").Count);
        Assert.Equal(4, System.Text.RegularExpressions.Regex.Matches(free.Out, @"^  \d +0000:\S+ .* free$", System.Text.RegularExpressions.RegexOptions.Multiline).Count);
        var freeJson = System.Text.Json.JsonDocument.Parse(Vmnet("host", "ls", "--free", "--json").Out).RootElement;
        Assert.Equal(4, freeJson.GetProperty("pfs").EnumerateArray().Sum(pf => pf.GetProperty("vfs").GetArrayLength()));

        var both = Vmnet("host", "--free", "--summary");
        Assert.Equal((2, ""), (both.Code, both.Out));
        Assert.Equal("vmnet: --free and --summary do not go together: --summary counts every VF; --free lists the free ones\n", both.Err);
    }
}
