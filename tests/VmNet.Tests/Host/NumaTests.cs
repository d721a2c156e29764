using System.Text.Json;
using CsCheck;
using VmNet.Cli;
using VmNet.Host;
using VmNet.Sim;
using VmNet.Tests.Support;

namespace VmNet.Tests.Host;

public class CpuListTests
{
    [Theory]
    [InlineData("0", new[] { 0 })]
    [InlineData("0-3", new[] { 0, 1, 2, 3 })]
    [InlineData("0-1,8,10-11", new[] { 0, 1, 8, 10, 11 })]
    [InlineData("0-15:2/4", new[] { 0, 1, 4, 5, 8, 9, 12, 13 })]
    [InlineData("4,2,2-3\n", new[] { 2, 3, 4 })]
    [InlineData("", new int[0])]
    public void Parses_the_kernels_cpu_lists(string text, int[] cpus) => Assert.Equal(cpus, CpuList.Parse(text));

    [Theory]
    [InlineData("3-1")]
    [InlineData("a")]
    [InlineData("0-")]
    [InlineData("-1")]
    [InlineData("0,,1")]
    [InlineData("0-7:0/2")]
    [InlineData("0-7:3/2")]
    [InlineData("99999")]
    public void Refuses_what_is_not_a_cpu_list(string text) => Assert.Null(CpuList.Parse(text));

    [Fact]
    public void Format_is_the_shortest_list_and_parses_back_to_the_same_cpus() =>
        Gen.Int[0, 300].Array[0, 40].Sample(cpus =>
        {
            var text = CpuList.Format(cpus);
            Assert.Equal(cpus.Distinct().Order(), CpuList.Parse(text));
            // shortest: no two consecutive pieces that could merge
            var pieces = text.Length == 0 ? [] : text.Split(',').Select(p => p.Split('-').Select(int.Parse).ToArray()).ToList();
            for (var i = 1; i < pieces.Count; i++) Assert.True(pieces[i][0] > pieces[i - 1][^1] + 1, text);
        });

    [Theory]
    [InlineData("ro quiet isolcpus=domain,managed_irq,2-5,9 nohz_full=2-5", "isolcpus", "2-5,9")]
    [InlineData("isolcpus=1 isolcpus=6-7", "isolcpus", "6-7")]
    [InlineData("nohz_full=2-5", "nohz_full", "2-5")]
    [InlineData("ro quiet", "isolcpus", "")]
    [InlineData("ro -- isolcpus=3", "isolcpus", "")]
    [InlineData("isolcpus=nohz", "isolcpus", "")]
    public void Reads_the_isolated_cpus_from_the_command_line(string cmdline, string parameter, string expected) =>
        Assert.Equal(expected, CpuList.Format(CpuList.FromCmdline(cmdline, parameter)));
}

public class NumaTopologyTests
{
    [Fact]
    public void Reads_this_machines_own_kernel_and_agrees_with_its_cpu_and_memory_totals()
    {
        // The real /sys and /proc of the machine the tests run on: the same reader the planner uses on a host.
        Assert.True(Directory.Exists("/sys/devices/system/cpu"), "this test reads the running kernel's /sys, which this machine must have");
        var numa = NumaTopology.Read(HostRoot.System);

        Assert.NotEmpty(numa.Nodes);
        Assert.Equal(CpuList.Parse(File.ReadAllText("/sys/devices/system/cpu/online")), numa.Nodes.SelectMany(n => n.Cpus).Order());
        var memTotal = File.ReadAllLines("/proc/meminfo").First(l => l.StartsWith("MemTotal:", StringComparison.Ordinal));
        var total = long.Parse(memTotal.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], System.Globalization.CultureInfo.InvariantCulture);
        // The nodes' MemTotal add up to /proc/meminfo's, give or take what the kernel reserves per node.
        Assert.InRange(numa.Nodes.Sum(n => n.MemTotalKiB), total * 95 / 100, total * 105 / 100);
        Assert.All(numa.Nodes, n => Assert.InRange(n.MemFreeKiB, 1, n.MemTotalKiB));
        // Every hugepage size the kernel supports shows on every node, as in /sys/kernel/mm/hugepages.
        var sizes = Directory.GetDirectories("/sys/kernel/mm/hugepages").Select(Path.GetFileName).Order().ToList();
        Assert.All(numa.Nodes, n => Assert.Equal(sizes, n.Hugepages.Select(h => $"hugepages-{h.SizeKiB}kB").Order()));
    }

    [Fact]
    public void A_simulated_two_node_host_is_laid_out_as_this_kernel_lays_out_its_nodes()
    {
        using var dir = new TempDir();
        SimHost.Create(dir.Path, NicShape.ConnectX5(), pfs: 2, numVfs: 2, topology: new SimTopology(Nodes: 2, NicNode: 1, CpusPerNode: 4, Hugepages1G: 4));

        // every file the simulation writes for node 0 is one the real kernel has there
        var real = "/sys/devices/system/node/node0";
        foreach (var f in new[] { "cpulist", "meminfo", "hugepages/hugepages-2048kB/nr_hugepages", "hugepages/hugepages-2048kB/free_hugepages", "hugepages/hugepages-2048kB/surplus_hugepages" })
        {
            Assert.True(File.Exists(Path.Join(real, f)), $"the kernel has no {real}/{f}");
            Assert.True(File.Exists(Path.Join(dir.Path, real, f)), $"the simulation has no {real}/{f}");
        }
        // and its meminfo lines read as the kernel's do
        var ours = File.ReadAllLines(Path.Join(dir.Path, real, "meminfo"))[0];
        var theirs = File.ReadAllLines(Path.Join(real, "meminfo"))[0];
        Assert.Equal(theirs.Split(' ', StringSplitOptions.RemoveEmptyEntries).Select(w => char.IsAsciiDigit(w[0]) ? "N" : w),
            ours.Split(' ', StringSplitOptions.RemoveEmptyEntries).Select(w => char.IsAsciiDigit(w[0]) ? "N" : w));
        Assert.Equal(theirs.IndexOf(" kB", StringComparison.Ordinal), ours.IndexOf(" kB", StringComparison.Ordinal));

        var scanner = new HostScanner(new HostRoot(dir.Path));
        var numa = scanner.Numa();
        Assert.Equal([0, 1], numa.Nodes.Select(n => n.Id));
        Assert.Equal([4, 5, 6, 7], numa.Node(1)!.Cpus);
        Assert.Equal(32L * 1024 * 1024, numa.Node(1)!.MemTotalKiB);
        Assert.Equal(new HugepagePool(1048576, 4, 4), numa.Node(1)!.Hugepages.Single(h => h.Size == "1GiB"));
        var pf = scanner.FindPort("enp3s0f1np1", withVfs: true)!;
        Assert.Equal(1, pf.NumaNode);
        Assert.All(pf.Vfs, vf => Assert.Equal(1, vf.NumaNode));
        Assert.Equal(new PcieLink("8.0 GT/s PCIe", 16, "8.0 GT/s PCIe", 16), pf.Link);
        Assert.False(pf.Link!.Degraded);
    }

    [Theory]
    [InlineData("8.0 GT/s PCIe", 8, "8.0 GT/s PCIe", 16, true)]
    [InlineData("5.0 GT/s PCIe", 16, "8.0 GT/s PCIe", 16, true)]
    [InlineData("16.0 GT/s PCIe", 16, "16.0 GT/s PCIe", 16, false)]
    [InlineData("Unknown", 16, "8.0 GT/s PCIe", 16, false)]
    public void A_link_is_degraded_when_it_trained_narrower_or_slower(string speed, int width, string max, int maxWidth, bool degraded) =>
        Assert.Equal(degraded, new PcieLink(speed, width, max, maxWidth).Degraded);

    [Fact]
    public void A_gen3_x16_slot_carries_about_126_gbits_and_a_x8_slot_half()
    {
        Assert.Equal(126.0, VmNet.Doctor.HostDoctor.PcieGbps("8.0 GT/s PCIe", 16));
        Assert.Equal(63.0, VmNet.Doctor.HostDoctor.PcieGbps("8.0 GT/s PCIe", 8));
        Assert.Equal(8.0, VmNet.Doctor.HostDoctor.PcieGbps("2.5 GT/s PCIe", 4));
    }
}

public class NumaCliTests
{
    private static (int Code, string Out, string Err) Run(params string[] args)
    {
        var (o, e) = (new StringWriter(), new StringWriter());
        var code = VmNetCli.Run(args, o, e);
        return (code, o.ToString(), e.ToString());
    }

    [Fact]
    public void Host_and_doctor_show_the_nics_node_its_hugepages_and_a_narrow_slot()
    {
        using var dir = new TempDir();
        var host = dir["host"];
        Assert.Equal(0, Run("sim", "create", host, "--numa-nodes", "2", "--nic-node", "1", "--link-width", "8", "--hugepages-1g", "4", "--cpus-per-node", "4").Code);

        var (code, output, _) = Run("host", "--host-root", host, "--state-dir", dir["state"]);
        Assert.Equal(0, code);
        var lines = output.Split('\n');
        Assert.Equal("enp3s0f0np0  0000:03:00.0  mlx5_core  up  mtu 1500  VFs 8/16  free 8  node 1  PCIe 8 GT/s x8  guaranteed 0/100000 Mbit/s", lines[0]);
        Assert.Contains("  PCIe link trained below the card's: 8.0 GT/s PCIe x8 (max 8.0 GT/s PCIe x16) (a slower or narrower slot caps both ports; `vmnet doctor` says more)", lines);
        Assert.Contains(lines, l => l.StartsWith("  0     0-3   -          32.0 GiB", StringComparison.Ordinal) && l.Contains("1GiB 4/4") && l.EndsWith('-'));
        Assert.Contains(lines, l => l.StartsWith("  1     4-7   -          32.0 GiB", StringComparison.Ordinal) && l.Contains("1GiB 4/4") && l.EndsWith("enp3s0f0np0,enp3s0f1np1", StringComparison.Ordinal));

        var summary = Run("host", "--summary", "--host-root", host, "--state-dir", dir["state"]).Out;
        Assert.Contains(summary.Split('\n'), l => l.StartsWith("  enp3s0f1np1  0000:03:00.1  mlx5_core  up     1 ", StringComparison.Ordinal));

        var (dcode, doctor, _) = Run("doctor", "--host-root", host);
        Assert.Equal(0, dcode);
        Assert.Contains("warn  enp3s0f0np0 (0000:03:00.0, PCIe): the link trained at 8.0 GT/s PCIe x8 below the card's 8.0 GT/s PCIe x16: about 63 of 126 Gbit/s", doctor);
        Assert.Contains("ok    NUMA node 1 (enp3s0f0np0, enp3s0f1np1): CPUs 4-7; hugepages 1GiB 4 free of 4", doctor);
    }

    [Fact]
    public void On_a_one_node_host_a_pf_without_a_node_is_on_node_0_for_host_and_doctor_alike()
    {
        using var dir = new TempDir();
        var host = dir["host"];
        Assert.Equal(0, Run("sim", "create", host).Code);
        // Most one-socket machines report numa_node -1 for their PCI devices.
        foreach (var pf in new[] { "0000:03:00.0", "0000:03:00.1" })
            File.WriteAllText(Path.Join(host, "sys/bus/pci/devices", pf, "numa_node"), "-1\n");

        var lines = Run("host", "--host-root", host, "--state-dir", dir["state"]).Out.Split('\n');
        Assert.StartsWith("enp3s0f0np0  0000:03:00.0  mlx5_core  up  mtu 1500  VFs 8/16  free 8  node 0  ", lines[0]);
        Assert.Contains(lines, l => l.StartsWith("  0     0-7", StringComparison.Ordinal) && l.EndsWith("enp3s0f0np0,enp3s0f1np1", StringComparison.Ordinal));
        var doctor = Run("doctor", "--host-root", host).Out;
        Assert.Contains("ok    NUMA node 0 (enp3s0f0np0, enp3s0f1np1): CPUs 0-7;", doctor);
        Assert.DoesNotContain("numa_node is -1", doctor);
    }

    [Fact]
    public void Doctor_says_how_to_reserve_hugepages_on_the_nics_node()
    {
        using var dir = new TempDir();
        Assert.Equal(0, Run("sim", "create", dir["host"], "--numa-nodes", "2", "--nic-node", "1").Code);

        var doctor = Run("doctor", "--host-root", dir["host"]).Out;

        Assert.Contains("ok    NUMA node 1 (enp3s0f0np0, enp3s0f1np1): CPUs 8-15; no hugepages reserved beside the NICs, so guest memory comes from ordinary pages"
            + " (to reserve them: echo N > /sys/devices/system/node/node1/hugepages/hugepages-1048576kB/nr_hugepages, or hugepagesz=1G hugepages=N on the kernel command line)", doctor);
        Assert.Contains("ok    enp3s0f0np0 (0000:03:00.0, PCIe): link 8.0 GT/s PCIe x16 (the card's maximum): about 126 Gbit/s", doctor);
    }

    [Fact]
    public void Host_json_carries_the_nodes_and_each_pfs_node_and_link()
    {
        using var dir = new TempDir();
        Assert.Equal(0, Run("sim", "create", dir["host"], "--numa-nodes", "2", "--nic-node", "1", "--hugepages-2m", "512").Code);

        using var doc = JsonDocument.Parse(Run("host", "--json", "--host-root", dir["host"], "--state-dir", dir["state"]).Out);

        var nodes = doc.RootElement.GetProperty("nodes");
        Assert.Equal(2, nodes.GetArrayLength());
        Assert.Equal([8, 9, 10, 11, 12, 13, 14, 15], nodes[1].GetProperty("cpus").EnumerateArray().Select(c => c.GetInt32()));
        var twoMiB = nodes[1].GetProperty("hugepages").EnumerateArray().Single(h => h.GetProperty("size").GetString() == "2MiB");
        Assert.Equal((2048, 512, 512), (twoMiB.GetProperty("sizeKiB").GetInt32(), twoMiB.GetProperty("total").GetInt32(), twoMiB.GetProperty("free").GetInt32()));
        var pf = doc.RootElement.GetProperty("pfs")[0];
        Assert.Equal(1, pf.GetProperty("numaNode").GetInt32());
        Assert.Equal((16, false), (pf.GetProperty("link").GetProperty("maxWidth").GetInt32(), pf.GetProperty("link").GetProperty("degraded").GetBoolean()));
    }

    [Theory]
    [InlineData(new[] { "--numa-nodes", "2", "--nic-node", "2" }, "--nic-node must be 0..1 on a host of 2 nodes, got 2")]
    [InlineData(new[] { "--numa-nodes", "0" }, "--numa-nodes must be 1..8, got 0")]
    [InlineData(new[] { "--hugepages-1g", "40" }, "--hugepages-2m and --hugepages-1g must be >= 0 and fit in the node's 32 GiB, got 0 and 40")]
    [InlineData(new[] { "--link-width", "0" }, "--link-width must be 1..32, got 0")]
    public void A_topology_that_cannot_be_built_is_refused_naming_the_option_and_nothing_is_written(string[] options, string message)
    {
        using var dir = new TempDir();
        var (code, output, error) = Run(["sim", "create", dir["host"], .. options]);

        Assert.Equal((2, ""), (code, output));
        Assert.Contains(message, error);
        Assert.DoesNotContain("   at ", error);
        Assert.False(Directory.Exists(dir["host"]) && Directory.EnumerateFileSystemEntries(dir["host"]).Any());
    }
}
