using System.Text.Json;
using VmNet.Backends;
using VmNet.Cli;
using VmNet.Libvirt;
using VmNet.Planning;

namespace VmNet.Tests.Cli;

// The CLI runs in this process, so it shares test:///default with the connection the test holds open (the test
// driver keeps one host per process while a connection is open). Names are unique: other tests use that host too.
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed class LaunchCommandsTests : IDisposable
{
    private readonly string _name = $"cli-{Guid.NewGuid():N}"[..13];
    private readonly TestVm _vm;
    private readonly LibvirtConnection _connection = LibvirtConnection.Open("test:///default");
    private readonly LibvirtDomain _domain;

    public LaunchCommandsTests()
    {
        _vm = new TestVm(name: _name);
        _domain = _connection.DefineDomain(_vm.Artifacts.DomainXml);
        _domain.Start();
    }

    public void Dispose()
    {
        if (_domain.IsActive) _domain.Destroy();
        _domain.Undefine();
        _domain.Dispose();
        _connection.Dispose();
        _vm.Dispose();
    }

    private (int Exit, string Out, string Err) Vmnet(params string[] args)
    {
        var (o, e) = (new StringWriter(), new StringWriter());
        var exit = VmNetCli.Run([.. args, "--state-dir", _vm.State.Path], o, e);
        return (exit, o.ToString(), e.ToString());
    }

    [Fact]
    public void Status_shows_the_state_and_each_vf_with_its_pf_vlan_and_mac()
    {
        var (exit, output, _) = Vmnet("status", _name, "--connect", "test:///default");

        Assert.Equal(ExitCodes.Ok, exit);
        var a = _vm.Plan.Vfs;
        Assert.Equal($"""
            {_name}: running (libvirt)
              NETWORK  GUEST NIC  PF           VF    PCI           MAC                VLAN
              storage  storage0   enp3s0f0np0  vf 0  {a[0].Vf.Pci}  {a[0].Mac}  vlan 40
              storage  storage1   enp3s0f1np1  vf 0  {a[1].Vf.Pci}  {a[1].Mac}  vlan 40
            serial log: {_vm.Plan.Paths.SerialLog}

            """, output);
    }

    [Fact]
    public void Status_as_json_carries_the_same_facts()
    {
        var (exit, output, _) = Vmnet("status", _name, "--json", "--connect", "test:///default");

        Assert.Equal(ExitCodes.Ok, exit);
        using var doc = JsonDocument.Parse(output);
        var root = doc.RootElement;
        Assert.Equal(_name, root.GetProperty("name").GetString());
        Assert.Equal("running", root.GetProperty("state").GetString());
        Assert.True(root.GetProperty("running").GetBoolean());
        var vfs = root.GetProperty("vfs").EnumerateArray().ToList();
        Assert.Equal(_vm.Plan.Vfs.Select(a => (a.Pf.Name, a.Mac, 40)),
            vfs.Select(v => (v.GetProperty("pf").GetString()!, v.GetProperty("mac").GetString()!, v.GetProperty("vlan").GetInt32())));
    }

    [Fact]
    public void Ls_lists_vmnet_vms_one_per_line_and_not_other_domains()
    {
        var (exit, output, _) = Vmnet("ls", "--connect", "test:///default");
        var (jsonExit, json, _) = Vmnet("ls", "--json", "--connect", "test:///default");

        Assert.Equal(ExitCodes.Ok, exit);
        Assert.StartsWith("  NAME", output);
        Assert.Matches(@"^  NAME +STATE +BACKEND +CPUS +MEMORY +VFS +NETWORKS\n", output);
        // The shape as libvirt holds it (the spec's 1 CPU, 256 MiB), the VFs, each network (no agent report here).
        Assert.Contains(output.Split('\n'), l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries).SequenceEqual([_name, "running", "libvirt", "1", "256MiB", "2", "storage"]));
        Assert.DoesNotContain(output.Split('\n'), l => l.StartsWith("  test ", StringComparison.Ordinal)); // test:///default's own domain
        Assert.Equal(ExitCodes.Ok, jsonExit);
        using var doc = JsonDocument.Parse(json);
        var vm = Assert.Single(doc.RootElement.EnumerateArray(), e => e.GetProperty("name").GetString() == _name);
        Assert.Equal((1, 256), (vm.GetProperty("cpus").GetInt32(), vm.GetProperty("memoryMiB").GetInt32()));
    }

    [Fact]
    public void Ls_shows_each_networks_active_member_and_addresses_from_the_agents_last_report()
    {
        var saved = new VmNet.Backends.GuestStatus(DateTimeOffset.UtcNow, [new VmNet.Contract.NetworkState("storage", "storage1",
            [new("storage0", "02:00:00:00:40:11", "down"), new("storage1", "02:00:00:00:40:12", "up")], ["192.168.40.11/24"], 1500)]);
        Directory.CreateDirectory(_vm.Plan.Paths.VmDir);
        File.WriteAllText(_vm.Plan.Paths.GuestReport, System.Text.Json.JsonSerializer.Serialize(saved, VmNet.Backends.GuestJson.Default.GuestStatus));

        var (exit, output, _) = Vmnet("ls", "--connect", "test:///default");

        Assert.Equal(ExitCodes.Ok, exit);
        Assert.Contains(output.Split('\n'), l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries).SequenceEqual([_name, "running", "libvirt", "1", "256MiB", "2", "storage(storage1", "192.168.40.11/24)"]));
    }

    [Fact]
    public void Down_stops_the_vm_keeps_its_definition_and_is_idempotent()
    {
        var first = Vmnet("down", _name, "--timeout", "5", "--connect", "test:///default");
        var second = Vmnet("down", _name, "--connect", "test:///default");

        Assert.Equal((ExitCodes.Ok, $"{_name} shut down\n"), (first.Exit, first.Out));
        Assert.Equal((ExitCodes.Ok, $"{_name} was not running\n"), (second.Exit, second.Out));
        Assert.Equal(DomainState.Shutoff, _domain.State);
        Assert.StartsWith($"{_name}: shut off (libvirt)", Vmnet("status", _name, "--connect", "test:///default").Out);
    }

    [Fact]
    public void An_unknown_vm_is_an_input_error_that_says_where_it_looked()
    {
        var (exit, _, error) = Vmnet("status", "nope", "--connect", "test:///default");

        Assert.Equal(ExitCodes.InvalidInput, exit);
        Assert.Equal($"vmnet: no VmNet VM named nope (looked in test:///default and {_vm.State.Path}); `vmnet ls` lists them\n", error);
    }

    [Fact]
    public void Vmnet_connect_in_the_environment_is_the_uri_when_no_option_is_given()
    {
        // Asserted through the resolver, not by changing this process's environment (tests run in parallel).
        Assert.Equal("test:///x", LibvirtBackend.ResolveUri("test:///x"));
        var (exit, _, error) = Vmnet("status", _name, "--connect", "bogus:///x");
        Assert.Equal(ExitCodes.Failure, exit);
        Assert.StartsWith($"vmnet: no VM named {_name} runs on the QEMU backend (state ", error);
        Assert.Contains("and libvirt could not be asked: Cannot connect to libvirt at 'bogus:///x': ", error);
        Assert.DoesNotContain("   at ", error);
    }
}

[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed class UpProgressTests
{
    [Fact]
    public void Up_progress_prints_each_phase_once_in_order_with_what_it_does()
    {
        using var vm = new TestVm(name: "prog1");
        var plan = vm.PlanWith(new LaunchOptions { Agent = "/usr/lib/vmnet/vmnet-agent", WaitTimeout = TimeSpan.FromSeconds(42) });
        var output = new StringWriter();
        var progress = new UpProgress(output, clock: () => TimeSpan.FromSeconds(2.5));

        progress.Planning(plan.Vm);
        progress.Enter(Phase.Reserve);
        progress.Planned(plan);
        progress.Enter(Phase.Bind);
        progress.Note("a note");
        progress.Enter(Phase.Bind);
        progress.Enter(Phase.WaitForGuest);

        var lines = output.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries);
        var a = plan.Vfs[0];
        Assert.Equal([
            "   2.5s [1/7] reserve: one VF per port for 1 network, under the ledger lock",
            $"   2.5s [2/7] configure: storage0={a.Pf.Name} vf {a.Vf.Index} ({a.Vf.Pci}) mac {a.Mac} vlan 40, storage1={plan.Vfs[1].Pf.Name} vf {plan.Vfs[1].Vf.Index} ({plan.Vfs[1].Vf.Pci}) mac {plan.Vfs[1].Mac} vlan 40",
            $"   2.5s [3/7] bind: 2 VFs on vfio-pci: {a.Vf.Pci}, {plan.Vfs[1].Vf.Pci}",
            "              a note",
            $"   2.5s [4/7] seed: {plan.Paths.Seed} (label cidata) and disk {plan.Paths.Disk} over {vm.BaseImage}",
            "   2.5s [5/7] define: libvirt domain prog1 at qemu:///system",
            "   2.5s [6/7] start: prog1 running",
            $"   2.5s [7/7] wait for guest: the agent's network-ready report on {plan.Paths.AgentSocket} (up to 42 s; serial log {plan.Paths.SerialLog})"], lines);
        Assert.Equal(7, Phases.All.Count);
    }

    [Fact]
    public void The_summary_names_the_vm_backend_vfs_serial_log_addresses_and_how_to_reach_the_guest()
    {
        using var vm = new TestVm(name: "sum1");
        var output = new StringWriter();

        new UpProgress(output).Summary(vm.Plan);

        var lines = output.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(3, lines.Length);
        Assert.Matches($@"^sum1 is up \(libvirt, qemu:///system\): 1 network over 2 VFs in \d+\.\d s; serial log {System.Text.RegularExpressions.Regex.Escape(vm.Plan.Paths.SerialLog)}$", lines[0]);
        // Without the agent's report, the spec's address; the guest's user from the spec.
        Assert.Equal($"  storage  {vm.Plan.Vm.Networks[0].Address}", lines[1]);
        Assert.Equal($"  reach it: ssh {vm.Plan.Vm.Guest.User}@{vm.Plan.Vm.Networks[0].Address.Cidr!.Split('/')[0]} (console: vmnet console sum1)", lines[2]);
    }
}

[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed class StartVmTests
{
    [Fact]
    public async Task The_launch_steps_write_the_seed_define_and_wait_until_the_vm_runs()
    {
        using var vm = new TestVm(name: "steps1");
        await vm.CreateBaseImage();
        var uri = "test://" + vm.Dir.Write("node.xml", "<node/>");
        using var backend = new LibvirtBackend(uri, vm.State);
        var plan = vm.PlanWith(new LaunchOptions { LibvirtUri = uri });
        var output = new StringWriter();
        var progress = new UpProgress(output);
        progress.Planned(plan);
        progress.Enter(Phase.Bind);

        await vm.StartAsync(backend, progress, plan);

        Assert.Equal("running", (await backend.StatusAsync("steps1", TestContext.Current.CancellationToken))?.State);
        Assert.True(File.Exists(vm.Plan.Paths.Seed));
        Assert.True(File.Exists(vm.Plan.Paths.Disk));
        var lines = output.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => System.Text.RegularExpressions.Regex.Replace(l, @"^ *\d+\.\ds ", "")).ToArray();
        Assert.Equal([
            $"[4/7] seed: {vm.Plan.Paths.Seed} (label cidata) and disk {vm.Plan.Paths.Disk} over {vm.BaseImage}",
            $"[5/7] define: libvirt domain steps1 at {backend.Uri}",
            "[6/7] start: steps1 running"], lines[3..]);
    }
}

[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed class ConsoleTests
{
    [Fact]
    public void Console_attaches_through_virsh_for_libvirt_and_socat_on_the_console_socket_for_qemu()
    {
        using var vm = new TestVm(name: "con1");
        using var libvirt = new LibvirtBackend("qemu:///system", vm.State);

        Assert.Equal("virsh -c qemu:///system console --force con1 (libvirt-clients)",
            Flat(LaunchCommands.ConsoleArgv(libvirt, "con1", vm.Plan.Paths, terminal: true)));
        Assert.Equal($"socat -,raw,echo=0,escape=0x1d UNIX-CONNECT:{vm.Plan.Paths.ConsoleSocket} (socat)",
            Flat(LaunchCommands.ConsoleArgv(new QemuBackend(vm.State), "con1", vm.Plan.Paths, terminal: true)));
        Assert.Equal("-", LaunchCommands.ConsoleArgv(new QemuBackend(vm.State), "con1", vm.Plan.Paths, terminal: false).Args[0]);
    }

    [Fact]
    public void Console_of_a_vm_that_is_not_there_says_so()
    {
        using var dir = new TempDir();
        var (o, e) = (new StringWriter(), new StringWriter());

        var code = VmNetCli.Run(["console", "nope", "--state-dir", dir["state"], "--connect", "test:///default"], o, e);

        Assert.Equal((ExitCodes.InvalidInput, "vmnet: no VmNet VM named nope; `vmnet ls` lists them\n"), (code, e.ToString()));
    }

    private static string Flat((string Tool, IReadOnlyList<string> Args, string Package) a) => $"{a.Tool} {string.Join(' ', a.Args)} ({a.Package})";
}
