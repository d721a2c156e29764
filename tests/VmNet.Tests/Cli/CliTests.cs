using System.Text.Json;
using CliWrap;
using CliWrap.Buffered;
using VmNet.Cli;
using VmNet.Tests.Support;

namespace VmNet.Tests.Cli;

public class CliTests
{
    private static readonly string Example = Repo.File("examples/vm.yaml");
    private static readonly string ExampleHost = Repo.File("examples/hosts/connectx5");

    private static (int Code, string Out, string Err) Run(params string[] args)
    {
        var (o, e) = (new StringWriter(), new StringWriter());
        var code = VmNetCli.Run(args, o, e);
        return (code, o.ToString(), e.ToString());
    }

    [Fact]
    public void A_dry_run_prints_the_vfs_the_host_changes_in_order_and_what_follows()
    {
        using var state = new TempDir();
        var (code, output, error) = Run("up", Example, "--dry-run", "--host-root", ExampleHost, "--state-dir", state.Path);

        Assert.Equal((0, ""), (code, error));
        Assert.Contains("Plan for ceph-osd-1 (dry run: nothing was changed)", output);
        Assert.Contains("storage  storage0   enp3s0f0np0  vf 1  0000:03:00.3  02:00:00:00:40:11", output);
        Assert.Contains("storage  storage1   enp3s0f1np1  vf 0  0000:03:02.2  02:00:00:00:40:12", output);
        Assert.Contains("  echo 0000:03:00.3 > /sys/bus/pci/drivers/mlx5_core/unbind", output);
        Assert.Contains("  ip link set dev enp3s0f0np0 vf 1 vlan 40 qos 0 proto 802.1Q", output);
        Assert.Contains("define the libvirt domain ceph-osd-1", output);
        Assert.True(output.IndexOf("vf 1 vlan 40", StringComparison.Ordinal) < output.IndexOf("vf 1 mac 02:00:00:00:40:11", StringComparison.Ordinal));
        Assert.Empty(Directory.EnumerateFileSystemEntries(state.Path));
    }

    [Fact]
    public void Json_names_each_vf_with_its_network_pf_index_pci_mac_and_vlan()
    {
        using var state = new TempDir();
        var (code, output, _) = Run("up", Example, "--dry-run", "--json", "--host-root", ExampleHost, "--state-dir", state.Path);

        Assert.Equal(0, code);
        using var doc = JsonDocument.Parse(output);
        Assert.Equal("ceph-osd-1", doc.RootElement.GetProperty("name").GetString());
        var vfs = doc.RootElement.GetProperty("vfs").EnumerateArray().Select(v => (
            v.GetProperty("network").GetString(), v.GetProperty("pf").GetString(), v.GetProperty("vf").GetInt32(),
            v.GetProperty("pci").GetString(), v.GetProperty("mac").GetString(), v.GetProperty("vlan").GetInt32())).ToList();
        Assert.Equal(("storage", "enp3s0f0np0", 1, "0000:03:00.3", "02:00:00:00:40:11", 40), vfs[0]);
        Assert.Equal(("public", "enp3s0f1np1", 2, "0000:03:02.4", vfs[3].Item5, 10), vfs[3]);
        Assert.Equal(4, vfs.Count);
    }

    [Fact]
    public void Out_writes_every_artifact()
    {
        using var dir = new TempDir();
        var (code, _, _) = Run("up", Example, "--dry-run", "--out", dir["out"], "--host-root", ExampleHost, "--state-dir", dir["state"]);

        Assert.Equal(0, code);
        foreach (var f in ArtifactWriter.Files) Assert.True(File.Exists(dir[Path.Join("out", f)]), f);
        Assert.StartsWith("<domain type='kvm'>", File.ReadAllText(dir["out/domain.xml"]));
        Assert.Equal("qemu-system-x86_64", File.ReadLines(dir["out/qemu.args"]).First());
        Assert.False(Directory.Exists(dir["state"]));
    }

    [Fact]
    public void An_invalid_spec_exits_2_listing_every_problem_without_a_stack_trace()
    {
        var (code, output, error) = Run("up", Repo.File("tests/VmNet.Tests/VmYaml/bad/many-errors.yaml"), "--dry-run", "--host-root", ExampleHost);

        Assert.Equal((2, ""), (code, output));
        Assert.Contains("6 problems", error);
        Assert.Contains("  cpus: must be 1..512 vCPUs, got 0 (line 8, column 7)", error);
        Assert.DoesNotContain("   at ", error);
    }

    [Fact]
    public void A_port_the_host_lacks_exits_3_and_changes_nothing()
    {
        using var dir = new TempDir();
        var spec = dir.Write("vm.yaml", File.ReadAllText(Example).Replace("enp3s0f1np1", "enp9s0f1np1"));
        var before = HostScannerTests.Snapshot(ExampleHost);

        var (code, _, error) = Run("up", spec, "--dry-run", "--host-root", ExampleHost, "--state-dir", dir["state"]);

        Assert.Equal(3, code);
        Assert.Contains("networks[0].ports[1]: no network device or PCI function \"enp9s0f1np1\" on this host", error);
        Assert.Contains("networks[1].ports[1]: no network device", error);
        Assert.Equal(before, HostScannerTests.Snapshot(ExampleHost));
    }

    [Fact]
    public void A_missing_spec_file_exits_2_naming_it()
    {
        var (code, _, error) = Run("up", "/nonexistent/vm.yaml", "--dry-run");

        Assert.Equal(2, code);
        Assert.StartsWith("vmnet: cannot read the spec /nonexistent/vm.yaml:", error);
    }

    [Fact]
    public void Unknown_options_exit_2()
    {
        var (code, _, error) = Run("up", Example, "--dry-rnu");

        Assert.Equal(2, code);
        Assert.Contains("--dry-rnu", error);
    }

    [Fact]
    public async Task Host_root_and_state_dir_come_from_the_environment_when_not_given()
    {
        using var state = new TempDir();
        var exe = typeof(VmNetCli).Assembly.Location;
        var result = await CliWrap.Cli.Wrap("dotnet").WithArguments([exe, "up", Example, "--dry-run", "--json"])
            .WithEnvironmentVariables(e => e.Set("VMNET_HOST_ROOT", ExampleHost).Set("VMNET_STATE_DIR", state.Path))
            .WithValidation(CommandResultValidation.None)
            .ExecuteBufferedAsync(TestContext.Current.CancellationToken);

        Assert.Equal(0, result.ExitCode);
        Assert.Contains("\"pci\": \"0000:03:00.3\"", result.StandardOutput);
    }

    [Fact]
    public void Rm_refuses_a_negative_timeout_before_touching_anything()
    {
        using var state = new TempDir();
        var (code, _, error) = Run("rm", "vm1", "--timeout", "-1", "--state-dir", state.Path, "--host-root", ExampleHost);

        Assert.Equal(2, code);
        Assert.Contains("--timeout must be 0 or more seconds, got -1", error);
        Assert.Empty(Directory.EnumerateFileSystemEntries(state.Path));
    }

    [Fact]
    public async Task A_vmnet_agent_variable_naming_no_file_is_refused_before_any_host_change()
    {
        using var tmp = new TempDir();
        VmNet.Sim.SimHost.CreateExample(tmp["host"]);
        var before = HostSnapshot.Of(tmp["host"]);
        var result = await CliWrap.Cli.Wrap("dotnet")
            .WithArguments([typeof(VmNetCli).Assembly.Location, "up", Example, "--host-root", tmp["host"], "--state-dir", tmp["state"], "--connect", "test:///default"])
            .WithEnvironmentVariables(e => e.Set("VMNET_AGENT", tmp["no-such-agent"]))
            .WithValidation(CommandResultValidation.None)
            .ExecuteBufferedAsync(TestContext.Current.CancellationToken);

        Assert.Equal(2, result.ExitCode);
        Assert.Contains($"VMNET_AGENT names {tmp["no-such-agent"]}, which does not exist", result.StandardError);
        Assert.DoesNotContain("   at ", result.StandardError);
        Assert.Equal(before, HostSnapshot.Of(tmp["host"]));
        Assert.Equal("", HostSnapshot.Ledger(tmp["state"]));
    }

    [Fact]
    public async Task The_real_command_exits_with_the_documented_codes_and_prints_no_stack_trace()
    {
        var exe = typeof(VmNetCli).Assembly.Location;
        async Task<BufferedCommandResult> Vmnet(params string[] args) =>
            await CliWrap.Cli.Wrap("dotnet").WithArguments([exe, .. args]).WithValidation(CommandResultValidation.None)
                .ExecuteBufferedAsync(TestContext.Current.CancellationToken);

        var bad = await Vmnet("up", Repo.File("tests/VmNet.Tests/VmYaml/bad/vlan-out-of-range.yaml"), "--dry-run", "--host-root", ExampleHost);
        var ok = await Vmnet("validate", Example);

        Assert.Equal(2, bad.ExitCode);
        Assert.Contains("networks[1].vlan: must be 1..4094, got 5000 (line 15, column 11)", bad.StandardError);
        Assert.DoesNotContain("   at ", bad.StandardError);
        Assert.Equal(0, ok.ExitCode);
        Assert.Contains("valid (ceph-osd-1: 2 networks, 4 VFs)", ok.StandardOutput);
    }

    [Fact]
    public void Sim_create_writes_a_host_that_the_planner_can_use()
    {
        using var dir = new TempDir();
        var (code, output, _) = Run("sim", "create", dir["host"], "--shape", "igb", "--pfs", "2", "--vfs", "3");

        Assert.Equal(0, code);
        Assert.Contains("2 x 82576 (igb), 3 VFs each", output);
        Assert.Equal("3\n", File.ReadAllText(dir["host/sys/class/net/enp2s0/device/sriov_numvfs"]));
        Assert.Equal(2, Run("sim", "create", dir["host"]).Code);
        Assert.Equal(2, Run("sim", "create", dir["other"], "--shape", "igb", "--vfs", "8").Code);
    }
}
