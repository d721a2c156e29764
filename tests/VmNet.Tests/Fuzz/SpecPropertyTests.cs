using System.Text.RegularExpressions;
using System.Xml.Linq;
using CsCheck;
using VmNet.Cli;
using VmNet.Host;
using VmNet.Libvirt;
using VmNet.Planning;
using VmNet.Rendering;
using VmNet.Sim;
using VmNet.Spec;
using VmNet.State;
using VmNet.Tests.Support;
using YamlDotNet.RepresentationModel;

namespace VmNet.Tests.Fuzz;

/// <summary>
/// Issue 13's property: hostile strings (<see cref="HostileStrings"/>) in every string field of a spec and of
/// host.yaml. Each case is either refused (a <see cref="SpecException"/> naming that field, or a host refusal that is a
/// <see cref="VmNetException"/>, never another exception) or accepted; an accepted spec's every rendered file parses in
/// its consumer (libvirt's parser with schema validation through the test driver, YAML for cloud-init's files, JSON for
/// the agent's, QEMU's option syntax) with the same shape as the plain spec's: a value can change a value, never add an
/// element, a key or an option. The figures (cases, accepted, refused) go to the test output.
/// </summary>
public sealed class SpecPropertyTests(ITestOutputHelper output) : IDisposable
{
    private const int CasesPerField = 60;
    private readonly TempDir _dir = new();
    private static readonly Lazy<string> Host = new(() =>
    {
        var dir = Directory.CreateTempSubdirectory("vmnet-fuzz-host-").FullName;
        AppDomain.CurrentDomain.ProcessExit += (_, _) => { try { Directory.Delete(dir, recursive: true); } catch (IOException) { } };
        SimHost.Create(dir, NicShape.Igb(), pfs: 2, numVfs: 7, mtu: 9000);
        return dir;
    });

    public void Dispose() => _dir.Dispose();

    /// <summary>Every string-valued (or string-typed) field of the spec and the plain value it holds in <see cref="Spec"/>.</summary>
    public static readonly (string Field, string Plain)[] Fields =
    [
        ("name", "fz"), ("cpus", "1"), ("memory", "256MiB"), ("backend", "qemu"), ("accel", "tcg"),
        ("disk.image", "/var/lib/vmnet/images/base.qcow2"), ("disk.size", "2GiB"),
        ("boot.kernel", "/var/lib/vmnet/vmlinuz"), ("boot.initrd", "/var/lib/vmnet/initrd"), ("boot.cmdline", "console=ttyS0 quiet"),
        ("networks[0].name", "lab"), ("networks[0].ports[0]", "enp1s0"), ("networks[0].ports[1]", "enp2s0"),
        ("networks[0].address", "192.168.40.11/24"), ("networks[0].gateway", "192.168.40.1"), ("networks[0].dns[0]", "192.168.40.1"),
        ("networks[0].mtu", "1500"), ("networks[0].vlan", "40"), ("networks[0].qos", "0"), ("networks[0].vlanProtocol", "802.1Q"),
        ("networks[0].macs[0]", "02:00:00:00:40:11"), ("networks[0].linkState", "auto"), ("networks[0].maxTxRate", "0"),
        ("networks[0].bond.miimon", "100"), ("networks[0].bond.primary", "enp1s0"), ("networks[0].bond.primaryReselect", "always"),
        ("networks[0].spoofCheck", "true"), ("networks[0].trust", "false"), ("networks[0].minTxRate", "0"),
        ("networks[0].bond.upDelay", "200"), ("networks[0].bond.downDelay", "0"), ("networks[0].bond.gratuitousArp", "3"),
        ("networks[1].bond.arpInterval", "1000"), ("networks[1].bond.arpTargets[0]", "192.168.41.1"),
        ("autostart", "false"),
        ("guest.hostname", "fz"), ("guest.user", "vmnet"),
        ("guest.sshAuthorizedKeys[0]", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIH1nYWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXo0 user@host"),
    ];

    /// <summary>
    /// (field, other): a value of field can make other wrong, and the refusal then names other: the bond's primary
    /// must be one of the ports; a gateway or DNS server cannot come with address: dhcp.
    /// </summary>
    private static readonly HashSet<(string, string)> Dependents =
    [
        ("networks[0].ports[0]", "networks[0].bond.primary"), ("networks[0].ports[1]", "networks[0].bond.primary"),
        ("networks[0].address", "networks[0].gateway"), ("networks[0].address", "networks[0].dns"), ("networks[0].address", "networks[0].dns[0]"),
        ("networks[0].bond.miimon", "networks[0].bond.upDelay"), ("networks[0].bond.miimon", "networks[0].bond.downDelay"),
    ];

    /// <summary>The spec with every field's value from <paramref name="value"/>, each a YAML double-quoted scalar.</summary>
    public static string Spec(Func<string, string> value)
    {
        string V(string field) => HostileStrings.YamlQuoted(value(field));
        return $"""
            name: {V("name")}
            autostart: {V("autostart")}
            cpus: {V("cpus")}
            memory: {V("memory")}
            backend: {V("backend")}
            accel: {V("accel")}
            disk: {"{"}image: {V("disk.image")}, size: {V("disk.size")}{"}"}
            boot: {"{"}kernel: {V("boot.kernel")}, initrd: {V("boot.initrd")}, cmdline: {V("boot.cmdline")}{"}"}
            networks:
              - name: {V("networks[0].name")}
                ports: [{V("networks[0].ports[0]")}, {V("networks[0].ports[1]")}]
                address: {V("networks[0].address")}
                gateway: {V("networks[0].gateway")}
                dns: [{V("networks[0].dns[0]")}]
                mtu: {V("networks[0].mtu")}
                vlan: {V("networks[0].vlan")}
                qos: {V("networks[0].qos")}
                vlanProtocol: {V("networks[0].vlanProtocol")}
                macs: [{V("networks[0].macs[0]")}, "02:00:00:00:40:12"]
                linkState: {V("networks[0].linkState")}
                maxTxRate: {V("networks[0].maxTxRate")}
                minTxRate: {V("networks[0].minTxRate")}
                spoofCheck: {V("networks[0].spoofCheck")}
                trust: {V("networks[0].trust")}
                bond: {"{"}miimon: {V("networks[0].bond.miimon")}, primary: {V("networks[0].bond.primary")}, primaryReselect: {V("networks[0].bond.primaryReselect")}, upDelay: {V("networks[0].bond.upDelay")}, downDelay: {V("networks[0].bond.downDelay")}, gratuitousArp: {V("networks[0].bond.gratuitousArp")}{"}"}
              - name: arp
                ports: [enp1s0, enp2s0]
                address: 192.168.41.11/24
                vlan: 41
                bond: {"{"}miimon: 0, arpInterval: {V("networks[1].bond.arpInterval")}, arpTargets: [{V("networks[1].bond.arpTargets[0]")}]{"}"}
            guest:
              hostname: {V("guest.hostname")}
              user: {V("guest.user")}
              sshAuthorizedKeys: [{V("guest.sshAuthorizedKeys[0]")}]

            """;
    }

    private static string Plain(string field) => Fields.First(f => f.Field == field).Plain;

    private LaunchPlan Plan(VmSpec spec) =>
        Planner.Make(spec, new HostScanner(new HostRoot(Host.Value)), new Rendering.RendererTests.EmptyLeases(), new StateDir(_dir["state"]), new LaunchOptions(), new Templates());

    /// <summary>The shape of each rendered file: what a value must never change.</summary>
    private sealed record Shape(List<string> Xml, List<string> Qemu, List<string> UserData, List<string> NetworkConfig, List<string> MetaData);

    /// <param name="names">The network's name, which names keys of network-config (its bond and members): those keys count as one.</param>
    private static Shape ShapeOf(Artifacts a, string names = "lab") => new(
        XDocument.Parse(a.DomainXml).Descendants().Select(e => e.Name.LocalName + "[" + string.Join(",", e.Attributes().Select(x => x.Name.LocalName)) + "]").ToList(),
        QemuShape(a.QemuArgs),
        YamlKeys(a.UserData, names), YamlKeys(a.NetworkConfig, names), YamlKeys(a.MetaData, names));

    /// <summary>Each option, and for the values QEMU reads as key=value lists, their keys (",," is a literal comma).</summary>
    private static List<string> QemuShape(IReadOnlyList<string> argv)
    {
        var shape = new List<string> { argv[0] };
        for (var i = 1; i < argv.Count; i++)
        {
            var option = argv[i];
            Assert.DoesNotContain('\0', option);
            shape.Add(option);
            if (Flags.Contains(option)) continue;
            var value = argv[++i];
            Assert.DoesNotContain('\0', value);
            if (option is "-kernel" or "-initrd" or "-append" or "-pidfile" or "-m" or "-smp" or "-uuid") { shape.Add("(literal)"); continue; }
            // QEMU's option syntax: key=value pairs split at single commas; ",," is one literal comma.
            shape.Add(string.Join(",", value.Replace(",,", "\u0001").Split(',').Select(p => p.Split('=')[0])));
        }
        return shape;
    }

    /// <summary>The options of the rendered argv that take no value.</summary>
    private static readonly HashSet<string> Flags = ["-nodefaults", "-no-user-config", "-daemonize", "-no-reboot", "-no-shutdown", "-S", "-enable-kvm"];

    private static List<string> YamlKeys(string text, string names)
    {
        var stream = new YamlStream();
        stream.Load(new StringReader(text));
        var keys = new List<string>();
        void Walk(YamlNode n, string path)
        {
            switch (n)
            {
                case YamlMappingNode m:
                    foreach (var (k, v) in m.Children)
                    {
                        var key = ((YamlScalarNode)k).Value!;
                        // network-config v2 names its bond and members after the network: ethernets/NAME0, bonds/NAME.
                        if (path is "/network/ethernets" or "/network/bonds" && key.StartsWith(names, StringComparison.Ordinal)) key = "(network)" + key[names.Length..];
                        keys.Add(path + "/" + key);
                        Walk(v, path + "/" + key);
                    }
                    break;
                case YamlSequenceNode s:
                    var i = 0;
                    foreach (var item in s.Children) Walk(item, $"{path}[{i++}]");
                    break;
            }
        }
        foreach (var d in stream.Documents) Walk(d.RootNode, "");
        return keys;
    }

    /// <summary>The README's reliability figures are this class's: the fields and cases a run tries.</summary>
    [Fact]
    public void The_readmes_figures_are_the_ones_this_test_runs()
    {
        var readme = Regex.Replace(File.ReadAllText(Repo.File("README.md")), @"\s+", " ");
        Assert.Contains(string.Create(System.Globalization.CultureInfo.InvariantCulture, $"in each of {Fields.Length} spec fields, {CasesPerField * Fields.Length:N0} specs a run"), readme);
    }

    [Fact]
    public void The_plain_spec_is_accepted_and_rendered()
    {
        var spec = SpecLoader.Load(Spec(Plain));
        var a = Plan(spec).Artifacts;
        Assert.Contains("<cmdline>console=ttyS0 quiet</cmdline>", a.DomainXml);
        Assert.NotEmpty(ShapeOf(a).Qemu);
    }

    [Fact]
    public void Every_hostile_value_in_every_spec_field_is_refused_by_name_or_renders_files_of_the_same_shape()
    {
        var plainShape = ShapeOf(Plan(SpecLoader.Load(Spec(Plain))).Artifacts);
        var node = _dir.Write("node.xml", "<node/>");
        var figures = new List<string>();
        var perField = new List<(string Field, int Accepted, int Refused)>();
        var total = 0;
        foreach (var (field, plain) in Fields)
        {
            int accepted = 0, refused = 0, hostRefused = 0;
            HostileStrings.For(plain).Sample(value =>
            {
                var yaml = Spec(f => f == field ? value : Plain(f));
                var repro = $"{field} = \"{HostileStrings.Show(value)}\"";
                VmSpec spec;
                try
                {
                    spec = SpecLoader.Load(yaml);
                }
                catch (SpecException e)
                {
                    Interlocked.Increment(ref refused);
                    // The field itself is named: as the error's path (a list's refusal names its item), or, where the value
                    // breaks a rule another field is held to, as that field (Dependents).
                    Assert.True(e.Errors.Any(x => x.Path == field || x.Path.StartsWith(field + ".", StringComparison.Ordinal) || field.StartsWith(x.Path + "[", StringComparison.Ordinal)
                        || Dependents.Contains((field, x.Path)) || (x.Path == "(yaml)" && value.Any(char.IsSurrogate))),
                        $"{repro}: refused without naming {field}:\n{e.Message}");
                    Assert.DoesNotContain("   at ", e.Message);
                    return;
                }
                LaunchPlan plan;
                try
                {
                    plan = Plan(spec);
                }
                catch (VmNetException e)
                {
                    Interlocked.Increment(ref hostRefused);
                    Assert.DoesNotContain("   at ", e.Message);
                    return;
                }
                Interlocked.Increment(ref accepted);
                var a = plan.Artifacts;
                var shape = ShapeOf(a, spec.Networks[0].Name);
                // An optional file or command line given empty is left out (-append and <cmdline> go): its own shape.
                var expected = value.Length == 0 && field is "boot.cmdline" or "boot.initrd"
                    ? ShapeOf(Plan(SpecLoader.Load(Spec(f => f == field ? "" : Plain(f)))).Artifacts) : plainShape;
                Assert.True(expected.Xml.SequenceEqual(shape.Xml), $"{repro}: the domain XML changed shape:\n{a.DomainXml}");
                Assert.True(expected.Qemu.SequenceEqual(shape.Qemu), $"{repro}: the QEMU argv changed shape:\n{string.Join("\n", a.QemuArgs)}");
                Assert.True(expected.UserData.SequenceEqual(shape.UserData), $"{repro}: user-data changed shape:\n{a.UserData}");
                Assert.True(expected.NetworkConfig.SequenceEqual(shape.NetworkConfig), $"{repro}: network-config changed shape:\n{a.NetworkConfig}");
                Assert.True(expected.MetaData.SequenceEqual(shape.MetaData), $"{repro}: meta-data changed shape:\n{a.MetaData}");
                System.Text.Json.JsonDocument.Parse(a.AgentConfig).Dispose();
                // libvirt's own parser with its schema, on a private empty test-driver host (one per case).
                using (var libvirt = LibvirtConnection.Open("test://" + node))
                using (libvirt.DefineDomain(a.DomainXml, validate: true)) { }
                // Values that reach a file literally come back literally.
                if (field == "boot.cmdline") Assert.Equal(value, XDocument.Parse(a.DomainXml, LoadOptions.PreserveWhitespace).Descendants("cmdline").Single().Value);
                if (field == "boot.kernel") Assert.Equal(value, a.QemuArgs[a.QemuArgs.ToList().IndexOf("-kernel") + 1]);
            }, iter: CasesPerField);
            total += accepted + refused + hostRefused;
            perField.Add((field, accepted, refused + hostRefused));
            figures.Add($"{field}: {accepted} accepted, {refused} refused by the spec, {hostRefused} by the host");
        }
        output.WriteLine($"{total} cases over {Fields.Length} fields:\n" + string.Join("\n", figures));
        // Each field met values it must refuse: the generator reached its check (a field the spec stopped reading would
        // accept everything and fail here).
        Assert.All(perField, f => Assert.True(f.Refused > 0, $"{f.Field}: no hostile value was refused in {CasesPerField} cases"));
        Assert.Contains(perField, f => f.Accepted > 0);
    }

    /// <summary>
    /// cloud-init's own tools on what accepted hostile specs render: for each field that reaches the seed, up to four
    /// accepted hostile values; user-data passes `cloud-init schema`, network-config converts with cloud-init's netplan
    /// renderer (the one that knows every bond key VmNet writes).
    /// </summary>
    [Fact]
    public async Task The_seed_of_every_accepted_hostile_spec_passes_cloud_inits_own_schema_and_renderer()
    {
        RequiredTool.Path("cloud-init");
        var fields = Fields.Select(f => f.Field).Where(f => f.StartsWith("guest.", StringComparison.Ordinal) || f.StartsWith("networks[", StringComparison.Ordinal) || f == "name").ToList();
        var cases = new List<(string Field, string Value, Artifacts Files)>();
        foreach (var field in fields)
        {
            var taken = 0;
            HostileStrings.For(Plain(field)).Sample(value =>
            {
                if (taken >= 4 || value == Plain(field)) return;
                try
                {
                    var plan = Plan(SpecLoader.Load(Spec(f => f == field ? value : Plain(f))));
                    lock (cases) { if (taken < 4) { cases.Add((field, value, plan.Artifacts)); taken++; } }
                }
                catch (VmNetException) { } // refused (SpecException is one): the other test's business
            }, iter: CasesPerField, threads: 1);
        }
        Assert.NotEmpty(cases);
        var failures = new System.Collections.Concurrent.ConcurrentBag<string>();
        await Parallel.ForEachAsync(cases.Select((c, i) => (c, i)), new ParallelOptions { MaxDegreeOfParallelism = 2, CancellationToken = TestContext.Current.CancellationToken }, async (x, ct) =>
        {
            var ((field, value, files), i) = x;
            var dir = _dir[$"seed-{i}"];
            Directory.CreateDirectory(dir);
            var userData = Path.Join(dir, "user-data");
            var networkConfig = Path.Join(dir, "network-config");
            await File.WriteAllTextAsync(userData, files.UserData, ct);
            await File.WriteAllTextAsync(networkConfig, files.NetworkConfig, ct);
            var schema = await RequiredTool.Run("cloud-init", ["schema", "--config-file", userData], TimeSpan.FromSeconds(60));
            if (schema.ExitCode != 0 || !schema.StandardOutput.Contains("Valid cloud-config", StringComparison.Ordinal))
                failures.Add($"{field} = \"{HostileStrings.Show(value)}\": cloud-init schema: {schema.StandardOutput}{schema.StandardError}\n{files.UserData}");
            var convert = await RequiredTool.Run("cloud-init", ["devel", "net-convert", "-p", networkConfig, "-k", "yaml", "-D", "debian", "-O", "netplan", "-d", Path.Join(dir, "out")], TimeSpan.FromSeconds(60));
            if (convert.ExitCode != 0)
                failures.Add($"{field} = \"{HostileStrings.Show(value)}\": cloud-init devel net-convert: {convert.StandardError}\n{files.NetworkConfig}");
        });
        output.WriteLine($"{cases.Count} accepted hostile specs through cloud-init schema and net-convert: " + string.Join(", ", cases.GroupBy(c => c.Field).Select(g => $"{g.Key} {g.Count()}")));
        Assert.True(failures.IsEmpty, string.Join("\n\n", failures));
    }

    /// <summary>The same through the command line for a sample: exit 0 or 2, never an internal error, nothing written.</summary>
    [Fact]
    public void Vmnet_validate_and_up_dry_run_exit_0_or_2_on_hostile_specs()
    {
        SimHost.Create(_dir["host"], NicShape.Igb(), pfs: 2, numVfs: 2);
        var codes = new System.Collections.Concurrent.ConcurrentDictionary<int, int>();
        Gen.Int[0, Fields.Length - 1].SelectMany(i => HostileStrings.For(Fields[i].Plain).Select(v => (Fields[i].Field, v))).Sample(c =>
        {
            var file = _dir.Write($"case-{Guid.NewGuid():N}.yaml", Spec(f => f == c.Field ? c.v : Plain(f)));
            foreach (var args in new[] { new[] { "validate", file }, ["up", file, "--dry-run"] })
            {
                using var o = new StringWriter();
                using var e = new StringWriter();
                var code = VmNetCli.Run(["--host-root", _dir["host"], "--state-dir", _dir["state"], .. args], o, e);
                codes.AddOrUpdate(code, 1, (_, n) => n + 1);
                Assert.True(code is 0 or 2 or 3, $"vmnet {args[0]} with {c.Field} = \"{HostileStrings.Show(c.v)}\" exited {code}:\n{o}{e}");
                Assert.DoesNotContain("   at ", e.ToString());
            }
        }, iter: 150);
        output.WriteLine(string.Join(", ", codes.OrderBy(c => c.Key).Select(c => $"exit {c.Key}: {c.Value}")));
        Assert.False(Directory.Exists(_dir["state/leases"]) && Directory.EnumerateFileSystemEntries(_dir["state/leases"]).Any(), "a dry run left a lease");
    }

    /// <summary>
    /// Hostile host.yaml files through the command line on a simulated host: `host apply` and `host boot-unit` exit
    /// 0, 2 or 3, never with a stack trace; a refusal (2) leaves the host tree as it was; every unit written is lines
    /// of sections, comments and known keys only (a value cannot start a line of its own).
    /// </summary>
    [Fact]
    public void Vmnet_host_apply_and_boot_unit_exit_0_2_or_3_on_hostile_host_yaml()
    {
        SimHost.Create(_dir["host"], NicShape.Igb(), pfs: 2, numVfs: 0);
        var codes = new System.Collections.Concurrent.ConcurrentDictionary<string, int>();
        var unitLine = new Regex(@"^(|#.*|\[(Unit|Service|Install)\]|[A-Z][A-Za-z]+=.*)$");
        Gen.Select(Gen.Frequency((1, Gen.Const("enp1s0")), (3, HostileStrings.For("enp1s0"))), Gen.Frequency((2, Gen.Const("3")), (1, HostileStrings.For("3"))), Gen.Bool).Sample((port, vfs, unit) =>
        {
            var file = _dir.Write($"host-{Guid.NewGuid():N}.yaml", $"pfs:\n  - port: {HostileStrings.YamlQuoted(port)}\n    vfs: {HostileStrings.YamlQuoted(vfs)}\n");
            var before = Execution.HostSnapshot.Of(_dir["host"]);
            string[] args = unit ? ["host", "boot-unit", "--config", file, "-o", "-", "--vmnet", "/usr/bin/vmnet"] : ["host", "apply", "--config", file];
            using var o = new StringWriter();
            using var e = new StringWriter();
            var code = VmNetCli.Run(["--host-root", _dir["host"], "--state-dir", _dir["state"], .. args], o, e);
            codes.AddOrUpdate($"{args[1]} exit {code}", 1, (_, n) => n + 1);
            var repro = $"vmnet {args[1]} with port \"{HostileStrings.Show(port)}\", vfs \"{HostileStrings.Show(vfs)}\"";
            Assert.True(code is 0 or 2 or 3, $"{repro} exited {code}:\n{o}{e}");
            Assert.DoesNotContain("   at ", e.ToString());
            if (code == 2) Assert.True(before == Execution.HostSnapshot.Of(_dir["host"]), $"{repro} was refused and changed the host");
            if (unit && code == 0)
                Assert.All(o.ToString().Split('\n'), line => Assert.True(unitLine.IsMatch(line), $"{repro}: the unit has the line \"{HostileStrings.Show(line)}\""));
        }, iter: 200, threads: 1);
        output.WriteLine(string.Join(", ", codes.OrderBy(c => c.Key, StringComparer.Ordinal).Select(c => $"{c.Key}: {c.Value}")));
        Assert.All(new[] { "apply exit 0", "apply exit 2", "boot-unit exit 0", "boot-unit exit 2" }, k => Assert.Contains(k, codes.Keys));
    }

    [Fact]
    public void Every_hostile_host_yaml_port_is_refused_by_name_or_is_a_plain_device_name()
    {
        int accepted = 0, refused = 0;
        Gen.Select(HostileStrings.For("enp1s0"), HostileStrings.For("3")).Sample((port, vfs) =>
        {
            var text = $"pfs:\n  - port: {HostileStrings.YamlQuoted(port)}\n    vfs: {HostileStrings.YamlQuoted(vfs)}\n";
            try
            {
                var config = HostConfig.Load(text);
                Interlocked.Increment(ref accepted);
                Assert.Matches(@"^[A-Za-z0-9][A-Za-z0-9_.:-]*\z", config.Pfs[0].Port);
            }
            catch (SpecException e)
            {
                Interlocked.Increment(ref refused);
                Assert.True(e.Errors.All(x => x.Path is "pfs[0].port" or "pfs[0].vfs"), e.Message);
            }
        }, iter: 2000);
        output.WriteLine($"host.yaml: {accepted + refused} cases, {accepted} accepted, {refused} refused by field");
        Assert.True(accepted > 0 && refused > 0, "the generator never produced one kind of case");
    }
}
