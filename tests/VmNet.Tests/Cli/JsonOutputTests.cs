using CliWrap;
using CliWrap.Buffered;
using VmNet.Backends;
using VmNet.Libvirt;
using VmNet.Tests.Backends;
using VmNet.Tests.Support;

namespace VmNet.Tests.Cli;

/// <summary>
/// Every `--json` output of vmnet, validated against the one documented vocabulary, schemas/vmnet-output.schema.json
/// (JSON Schema 2020-12, every object closed: a field renamed or added without the schema fails here), with
/// python3-jsonschema (cloud-init's dependency, installed by scripts/install-deps.sh).
/// </summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed class JsonOutputTests : IDisposable
{
    private static readonly string ExampleHost = Repo.File("examples/hosts/connectx5");
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    private const string Validator = """
        import json, sys, jsonschema
        schema = json.load(open(sys.argv[1]))
        validator = jsonschema.Draft202012Validator(dict(schema, **{"$ref": "#/$defs/" + sys.argv[2]}))
        errors = sorted(validator.iter_errors(json.load(sys.stdin)), key=lambda e: list(e.absolute_path))
        for e in errors: print("/".join(str(p) for p in e.absolute_path) or "(root)", ":", e.message)
        sys.exit(1 if errors else 0)
        """;

    /// <summary>The problems the schema's definition <paramref name="definition"/> finds in <paramref name="json"/> (none: valid).</summary>
    private static async Task<(int Exit, string Problems)> Validate(string json, string definition)
    {
        var result = await CliWrap.Cli.Wrap(RequiredTool.Path("python3"))
            .WithArguments(["-c", Validator, Repo.File("schemas/vmnet-output.schema.json"), definition])
            .WithStandardInputPipe(PipeSource.FromString(json)).WithValidation(CommandResultValidation.None)
            .ExecuteBufferedAsync(TestContext.Current.CancellationToken);
        return (result.ExitCode, result.StandardOutput + result.StandardError);
    }

    private static async Task AssertValid(string json, string definition)
    {
        var (exit, problems) = await Validate(json, definition);
        Assert.True(exit == 0, $"the output does not match the schema's {definition}:\n{problems}\n{json}");
    }

    private (int Code, string Out, string Err) Vmnet(params string[] args)
    {
        var (o, e) = (new StringWriter(), new StringWriter());
        var code = VmNet.Cli.VmNetCli.Run([.. args, "--state-dir", _dir["state"]], o, e);
        return (code, o.ToString(), e.ToString());
    }

    [Theory]
    [InlineData("plan", new[] { "up", "examples/vm.yaml", "--dry-run", "--json" })]
    [InlineData("host", new[] { "host", "--json" })]
    [InlineData("host", new[] { "host", "ls", "--free", "--json" })]
    [InlineData("hostSummary", new[] { "host", "--summary", "--json" })]
    [InlineData("doctor", new[] { "doctor", "--json" })]
    [InlineData("gc", new[] { "gc", "--json" })]
    [InlineData("vms", new[] { "ls", "--json", "--connect", "test:///default" })]
    [InlineData("validate", new[] { "validate", "examples/vm.yaml", "--json" })]
    public async Task Each_host_and_plan_output_matches_its_definition(string definition, string[] command)
    {
        var args = command.Select(a => a.StartsWith("examples/", StringComparison.Ordinal) ? Repo.File(a) : a).ToArray();
        var (code, output, error) = Vmnet([.. args, "--host-root", ExampleHost]);

        Assert.True(code == 0, $"vmnet {string.Join(' ', command)} exited {code}: {error}");
        await AssertValid(output, definition);
    }

    /// <summary>A host of two NUMA nodes with hugepages and a NIC in a narrow slot: the nodes and each PF's node and link.</summary>
    [Theory]
    [InlineData("host", new[] { "host", "--json" })]
    [InlineData("hostSummary", new[] { "host", "--summary", "--json" })]
    [InlineData("doctor", new[] { "doctor", "--json" })]
    public async Task A_numa_host_matches_the_definitions(string definition, string[] command)
    {
        var host = _dir["numa"];
        Assert.Equal(0, Vmnet("sim", "create", host, "--numa-nodes", "2", "--nic-node", "1", "--link-width", "8", "--hugepages-2m", "64", "--hugepages-1g", "2").Code);
        var (code, output, error) = Vmnet([.. command, "--host-root", host]);

        Assert.True(code == 0, $"vmnet {string.Join(' ', command)} exited {code}: {error}");
        Assert.Contains(definition == "doctor" ? "NUMA node 1" : "\"numaNode\": 1", output);
        await AssertValid(output, definition);
    }

    [Fact]
    public async Task Host_networks_match_the_definition()
    {
        var config = _dir["host.yaml"];
        File.WriteAllText(config, "networks:\n  storage: {ports: [enp3s0f0np0, enp3s0f1np1], vlan: 40, vlanProtocol: 802.1ad, mtu: 9000, trust: false, linkState: auto}\n  open: {ports: [enp3s0f0np0]}\n");
        var (code, output, error) = Vmnet("host", "networks", "--json", "--config", config, "--host-root", ExampleHost);

        Assert.True(code == 0, error);
        Assert.Contains("\"vlanProtocol\": \"802.1ad\"", output);
        await AssertValid(output, "hostNetworks");
    }

    /// <summary>A VM with dedicated CPUs and hugepages on that host: the plan's placement and the host's dedicated CPUs.</summary>
    [Fact]
    public async Task A_placed_vm_matches_the_plan_and_host_definitions()
    {
        var host = _dir["numa"];
        Assert.Equal(0, Vmnet("sim", "create", host, "--numa-nodes", "2", "--nic-node", "1", "--hugepages-2m", "1024", "--mtu", "9000").Code);
        var spec = _dir["placed.yaml"];
        File.WriteAllText(spec, File.ReadAllText(Repo.File("examples/vm.yaml")).Replace("memory: 16GiB", "memory: 2GiB").Replace("cpus: 8", "cpus: 4")
            + "placement: {cpuPinning: dedicated, hugepages: 2MiB}\n");

        var (code, plan, error) = Vmnet("up", spec, "--dry-run", "--json", "--host-root", host);
        Assert.True(code == 0, error);
        Assert.Contains("\"hugetlbfs\": \"/dev/hugepages\"", plan);
        await AssertValid(plan, "plan");

        Assert.Equal(0, Vmnet("up", spec, "--no-start", "--host-root", host).Code);
        var (hcode, inventory, _) = Vmnet("host", "--json", "--host-root", host);
        Assert.Equal(0, hcode);
        using (var doc = System.Text.Json.JsonDocument.Parse(inventory))
            Assert.Equal(5, doc.RootElement.GetProperty("dedicatedCpus").GetArrayLength()); // 4 vCPUs and the emulator
        await AssertValid(inventory, "host");
    }

    /// <summary>status and ls of a running VM with an agent report: every field of a VM, its VFs and its bonds.</summary>
    [Fact]
    public async Task A_vm_with_its_vfs_and_the_agents_report_matches_vm_and_vms()
    {
        var name = $"json-{Guid.NewGuid():N}"[..13];
        using var vm = new TestVm(name: name);
        using var connection = LibvirtConnection.Open("test:///default");
        using var domain = connection.DefineDomain(vm.Artifacts.DomainXml);
        try
        {
            domain.Start();
            Directory.CreateDirectory(vm.Plan.Paths.VmDir);
            var report = new GuestStatus(DateTimeOffset.UtcNow, [new VmNet.Contract.NetworkState("storage", null,
                [new("storage0", "02:00:00:00:40:11", "down"), new("storage1", "02:00:00:00:40:12", "up")], ["192.168.40.11/24"], null)], 1);
            File.WriteAllText(vm.Plan.Paths.GuestReport, System.Text.Json.JsonSerializer.Serialize(report, VmNet.Backends.GuestJson.Default.GuestStatus));
            string[] where = ["--connect", "test:///default", "--state-dir", vm.State.Path];
            var (o, e) = (new StringWriter(), new StringWriter());

            Assert.Equal(0, VmNet.Cli.VmNetCli.Run(["status", name, "--json", .. where], o, e));
            await AssertValid(o.ToString(), "vm");
            Assert.Contains("\"receivedAt\"", o.ToString());
            o.GetStringBuilder().Clear();
            Assert.Equal(0, VmNet.Cli.VmNetCli.Run(["ls", "--json", .. where], o, e));
            await AssertValid(o.ToString(), "vms");
        }
        finally
        {
            if (domain.IsActive) domain.Destroy();
            domain.Undefine();
        }
    }

    /// <summary>An invalid spec: validate --json still prints the document on stdout (every problem with its field and
    /// place), exits 2, and writes nothing to stderr; a file that is no spec at all is a problem with no field.</summary>
    [Fact]
    public async Task Validate_json_of_an_invalid_spec_lists_every_problem_by_field_and_exits_2()
    {
        var spec = _dir.Write("bad.yaml", "name: bad\ncpus: 0\ndisk: {image: /x.qcow2}\nnetworks:\n  - name: s\n    ports: [enp3s0f0np0]\n    address: 10.0.0.1\n");

        var (code, output, error) = Vmnet("validate", spec, "--json");

        Assert.Equal(2, code);
        Assert.Equal("", error);
        await AssertValid(output, "validate");
        var problems = System.Text.Json.JsonDocument.Parse(output).RootElement.GetProperty("problems").EnumerateArray()
            .Select(p => $"{p.GetProperty("field").GetString()}@{p.GetProperty("line")}").ToList();
        Assert.Equal(["cpus@2", "networks[0].address@7"], problems);
        var (missing, text, _) = Vmnet("validate", _dir["none.yaml"], "--json");
        Assert.Equal(2, missing);
        await AssertValid(text, "validate");
        Assert.Contains("\"field\": null", text);
    }

    /// <summary>host apply --json on a simulated host: one PF changed, one already as the config says.</summary>
    [Fact]
    public async Task Host_apply_json_matches_hostApply()
    {
        VmNet.Sim.SimHost.Create(_dir["host"], VmNet.Sim.NicShape.ConnectX5(), pfs: 2, numVfs: 8);
        var config = _dir.Write("host.yaml", "pfs:\n  - {port: enp3s0f0np0, vfs: 4}\n  - {port: enp3s0f1np1, vfs: 8}\n");

        var (code, output, error) = Vmnet("host", "apply", "--config", config, "--json", "--host-root", _dir["host"]);

        Assert.True(code == 0, error);
        await AssertValid(output, "hostApply");
        var pfs = System.Text.Json.JsonDocument.Parse(output).RootElement.GetProperty("pfs").EnumerateArray()
            .Select(p => $"{p.GetProperty("pf").GetString()} {p.GetProperty("vfsBefore")}->{p.GetProperty("vfs")} {p.GetProperty("changed")}").ToList();
        Assert.Equal(["enp3s0f0np0 8->4 True", "enp3s0f1np1 8->8 False"], pfs);
    }

    /// <summary>up --json: the result alone on stdout (matching `up`), the progress on stderr; again on the running VM,
    /// wasRunning and no changes.</summary>
    [Fact]
    public async Task Up_json_prints_the_result_on_stdout_and_the_progress_on_stderr()
    {
        VmNet.Sim.SimHost.CreateExample(_dir["host"]);
        Assert.Equal(0, (await RequiredTool.Run("qemu-img", ["create", "-q", "-f", "qcow2", _dir["base.qcow2"], "64M"])).ExitCode);
        var name = $"upjson-{Guid.NewGuid():N}"[..15];
        var spec = _dir.Write("vm.yaml", File.ReadAllText(Repo.File("examples/vm.yaml")).Replace("name: ceph-osd-1", "name: " + name)
            .Replace("/var/lib/vmnet/images/debian-13-genericcloud-amd64.qcow2", _dir["base.qcow2"]));
        using var keepAlive = LibvirtConnection.Open("test:///default");
        string[] where = ["--host-root", _dir["host"], "--connect", "test:///default"];
        try
        {
            var (code, output, error) = Vmnet(["up", spec, "--json", .. where]);

            Assert.True(code == 0, error);
            Assert.Contains("[6/7] start:", error);
            Assert.StartsWith("{", output.TrimStart());
            await AssertValid(output, "up");
            var up = System.Text.Json.JsonDocument.Parse(output).RootElement;
            Assert.Equal(name, up.GetProperty("name").GetString());
            Assert.True(up.GetProperty("started").GetBoolean());
            Assert.False(up.GetProperty("wasRunning").GetBoolean());
            Assert.Equal(4, up.GetProperty("vfs").GetArrayLength());
            Assert.Equal("ssh debian@192.168.40.11", up.GetProperty("ssh").GetString());

            var (again, second, _) = Vmnet(["up", spec, "--json", .. where]);
            Assert.Equal(0, again);
            await AssertValid(second, "up");
            Assert.True(System.Text.Json.JsonDocument.Parse(second).RootElement.GetProperty("wasRunning").GetBoolean());

            var (downCode, down, downErr) = Vmnet(["down", name, "--json", "--timeout", "5", .. where]);
            Assert.True(downCode == 0, downErr);
            await AssertValid(down, "down");
            var stopped = System.Text.Json.JsonDocument.Parse(down).RootElement;
            Assert.Equal(("libvirt", "shutDown", 5), (stopped.GetProperty("backend").GetString(), stopped.GetProperty("stop").GetString(), stopped.GetProperty("timeoutSeconds").GetInt32()));

            var (rmCode, rm, rmErr) = Vmnet(["rm", name, "--json", .. where]);
            Assert.True(rmCode == 0, rmErr);
            await AssertValid(rm, "rm");
            var removed = System.Text.Json.JsonDocument.Parse(rm).RootElement;
            Assert.Equal(("libvirt", "notRunning"), (removed.GetProperty("backend").GetString(), removed.GetProperty("stop").GetString()));
            Assert.Equal(4, removed.GetProperty("released").GetArrayLength());
            Assert.EndsWith(name, removed.GetProperty("deleted").GetString());

            var (_, again2, _) = Vmnet(["rm", name, "--json", .. where]);
            await AssertValid(again2, "rm");
            Assert.Contains("\"deleted\": null", again2);
            Assert.Contains("\"backend\": null", again2);
        }
        finally
        {
            Vmnet(["rm", name, "--force", "--timeout", "0", .. where]);
        }
    }

    /// <summary>host prepare --json after a reboot of a simulated host: each VF prepared; then, with a step failing (the
    /// test hook, in a vmnet process of its own), the VM named under failed and exit 1, still valid JSON.</summary>
    [Fact]
    public async Task Host_prepare_json_matches_hostPrepare_also_when_a_vm_fails()
    {
        VmNet.Sim.SimHost.Create(_dir["host"], VmNet.Sim.NicShape.Igb(), pfs: 2, numVfs: 2);
        var spec = _dir.Write("vm.yaml", "name: vm1\ndisk: {image: /i.qcow2}\nnetworks:\n  - name: s\n    vlan: 40\n    ports: [enp1s0, enp2s0]\n    address: dhcp\n");
        string[] where = ["--host-root", _dir["host"]];
        Assert.Equal(0, Vmnet(["up", spec, "--no-start", .. where]).Code);

        var (code, output, error) = Vmnet(["host", "prepare", "--json", .. where]);

        Assert.True(code == 0, error);
        await AssertValid(output, "hostPrepare");
        var prepared = System.Text.Json.JsonDocument.Parse(output).RootElement.GetProperty("prepared").EnumerateArray()
            .Select(p => $"{p.GetProperty("vm").GetString()} {p.GetProperty("pf").GetString()} vf {p.GetProperty("vf")}").ToList();
        Assert.Equal(["vm1 enp1s0 vf 0", "vm1 enp2s0 vf 0"], prepared);

        var failing = await CliWrap.Cli.Wrap(RequiredTool.Path("dotnet"))
            .WithArguments([Path.Join(AppContext.BaseDirectory, "vmnet.dll"), "host", "prepare", "--json", .. where, "--state-dir", _dir["state"]])
            .WithEnvironmentVariables(new Dictionary<string, string?> { ["VMNET_TEST_FAIL_AT_STEP"] = "1" })
            .WithValidation(CommandResultValidation.None).ExecuteBufferedAsync(TestContext.Current.CancellationToken);

        Assert.True(failing.ExitCode == 1, failing.StandardError);
        await AssertValid(failing.StandardOutput, "hostPrepare");
        var failed = System.Text.Json.JsonDocument.Parse(failing.StandardOutput).RootElement.GetProperty("failed");
        Assert.Equal("vm1", failed[0].GetProperty("vm").GetString());
    }

    /// <summary>The check can fail: the old names (`vm` for the plan's name, `guestName`) and a field the schema does not
    /// define are refused, naming where.</summary>
    [Fact]
    public async Task The_schema_refuses_an_output_that_left_the_vocabulary()
    {
        var (_, output, _) = Vmnet("up", Repo.File("examples/vm.yaml"), "--dry-run", "--json", "--host-root", ExampleHost);
        var renamed = output.Replace("\"name\": \"ceph-osd-1\"", "\"vm\": \"ceph-osd-1\"").Replace("\"member\":", "\"guestName\":");
        Assert.NotEqual(output, renamed);

        var (exit, problems) = await Validate(renamed, "plan");

        Assert.Equal(1, exit);
        Assert.Contains("(root) : 'name' is a required property", problems);
        Assert.Contains("vfs/0 : 'member' is a required property", problems);
        Assert.Contains("Additional properties are not allowed ('vm' was unexpected)", problems);
    }
}
