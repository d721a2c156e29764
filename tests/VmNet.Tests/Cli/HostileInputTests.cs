using VmNet.Cli;
using VmNet.Contract;
using VmNet.Execution;
using VmNet.Sim;
using VmNet.Tests.Execution;
using VmNet.Tests.Support;

namespace VmNet.Tests.Cli;

/// <summary>
/// Issue 13 through the command line, where a hostile or careless user meets it: each refusal exits 2 naming the
/// argument or field, and the host tree, the ledger and the files around are as before.
/// </summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed class HostileInputTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    private (int Code, string Out, string Err) Vmnet(params string[] args) => HostCliTests.OnSimHost(_dir, args);

    [Theory]
    [InlineData("rm"), InlineData("status"), InlineData("down"), InlineData("console")]
    public void A_name_that_is_no_vm_name_is_refused_before_anything_runs(string command)
    {
        SimHost.Create(_dir["host"], NicShape.ConnectX5(), pfs: 2, numVfs: 1);
        // What `vmnet rm ../../victim` reached: the VM files of a directory outside the state dir.
        foreach (var f in new[] { "disk.qcow2", "seed.iso", "qemu.json" }) _dir.Write($"victim/{f}", "precious");
        Directory.CreateDirectory(_dir["state/vms"]);
        var before = HostSnapshot.Of(_dir["host"]) + HostSnapshot.Ledger(_dir["state"]);

        foreach (var name in new[] { "../../victim", "vm1\n", "VM1", "a/b", "" })
        {
            var r = Vmnet(command, name);
            Assert.Equal(2, r.Code);
            Assert.Contains("vmnet: NAME must be lowercase letters, digits and '-', starting with a letter or digit, at most 63 characters, got ", r.Err);
            Assert.DoesNotContain("   at ", r.Err);
        }
        Assert.All(new[] { "disk.qcow2", "seed.iso", "qemu.json" }, f => Assert.Equal("precious", File.ReadAllText(_dir[$"victim/{f}"])));
        Assert.Equal(before, HostSnapshot.Of(_dir["host"]) + HostSnapshot.Ledger(_dir["state"]));
    }

    /// <summary>A spec on the simulated host whose base image is a real qcow2 (made here), for the refusals below.</summary>
    private async Task<string> StartableSpec(string name)
    {
        SimHost.Create(_dir["host"], NicShape.ConnectX5(), pfs: 2, numVfs: 2);
        await CliWrap.Cli.Wrap(RequiredTool.Path("qemu-img")).WithArguments(["create", "-q", "-f", "qcow2", _dir["base.qcow2"], "16M"]).ExecuteAsync(TestContext.Current.CancellationToken);
        return _dir.Write($"{name}.yaml", $"name: {name}\ndisk: {{image: {_dir["base.qcow2"]}}}\nnetworks:\n  - name: s\n    vlan: 40\n    ports: [enp3s0f0np0, enp3s0f1np1]\n    address: 192.168.40.11/24\n");
    }

    /// <summary>
    /// Item 1: what can fail without touching the host fails before the first change: an unwritable --out, a
    /// --templates dir that is missing or holds a template that does not parse, a template override that renders
    /// nothing libvirt takes. Each exits 2 naming what to fix; the host tree and the ledger are as before and no VM dir
    /// is left (the VFs were never unbound, so nothing can leak).
    /// </summary>
    [Fact]
    public async Task What_can_fail_without_touching_the_host_fails_before_the_first_change()
    {
        var spec = await StartableSpec("pre1");
        Directory.CreateDirectory(_dir["state"]);
        var before = HostSnapshot.Of(_dir["host"]) + HostSnapshot.Ledger(_dir["state"]);
        _dir.Write("broken/domain.xml.sbn", "<domain>{{ if }}</domain>");
        _dir.Write("unparsable/domain.xml.sbn", "<domain type='kvm'><name>{{ vm.name }}</name>");
        var cases = new (string[] Args, string Names)[]
        {
            (["--out", "/dev/null/x"], "--out"),
            (["--templates", _dir["no-such-dir"]], "--templates"),
            (["--templates", _dir["broken"]], "template domain.xml.sbn in " + _dir["broken"] + " does not parse"),
            (["--templates", _dir["unparsable"]], "domain.xml"),
        };
        foreach (var (args, names) in cases)
        {
            var r = Vmnet(["up", spec, "--connect", "test:///default", .. args]);
            Assert.True(r.Code == 2, $"{string.Join(' ', args)}: exit {r.Code}\n{r.Out}{r.Err}");
            Assert.Contains(names, r.Err);
            Assert.DoesNotContain("   at ", r.Err);
            Assert.DoesNotContain("[2/7] configure", r.Out);
            Assert.Equal(before, HostSnapshot.Of(_dir["host"]) + HostSnapshot.Ledger(_dir["state"]));
            Assert.False(Directory.Exists(_dir["state/vms/pre1"]), $"{string.Join(' ', args)} left a VM dir");
            Assert.Equal("no orphaned leases\n", Vmnet("gc").Out);
        }
    }

    /// <summary>
    /// Item 2: the base image is checked by --dry-run (which names it among the problems) and refused by up before the
    /// first change: missing, unreadable (a directory), not qcow2.
    /// </summary>
    [Fact]
    public async Task A_base_image_up_cannot_use_is_named_by_the_dry_run_and_refused_before_the_first_change()
    {
        var spec = await StartableSpec("pre2");
        Directory.CreateDirectory(_dir["state"]);
        Directory.CreateDirectory(_dir["a-directory.qcow2"]);
        _dir.Write("raw.img", new string('\0', 4096));
        // Item 15: a qcow2 base whose own backing file is a host file (the guest would read it), and one whose backing
        // format is not named (qemu-img would probe it: a raw file passes as an image). qemu-img itself no longer
        // writes the latter: its header's backing-format extension is cut off here (its magic zeroed ends the list).
        Directory.CreateDirectory(_dir["images"]);
        var qemuImg = RequiredTool.Path("qemu-img");
        await CliWrap.Cli.Wrap(qemuImg).WithArguments(["create", "-q", "-f", "qcow2", "-b", "/etc/passwd", "-F", "raw", _dir["images/shadowed.qcow2"], "16M"]).ExecuteAsync(TestContext.Current.CancellationToken);
        await CliWrap.Cli.Wrap(qemuImg).WithArguments(["create", "-q", "-f", "qcow2", _dir["images/inner.qcow2"], "16M"]).ExecuteAsync(TestContext.Current.CancellationToken);
        await CliWrap.Cli.Wrap(qemuImg).WithArguments(["create", "-q", "-f", "qcow2", "-b", "inner.qcow2", "-F", "qcow2", _dir["images/probed.qcow2"], "16M"]).ExecuteAsync(TestContext.Current.CancellationToken);
        var bytes = File.ReadAllBytes(_dir["images/probed.qcow2"]);
        var magic = bytes.AsSpan(0, 4096).IndexOf(new byte[] { 0xe2, 0x79, 0x2a, 0xca });
        Assert.True(magic > 0, "no backing-format extension in the qcow2 header");
        bytes.AsSpan(magic, 4).Clear();
        File.WriteAllBytes(_dir["images/probed.qcow2"], bytes);
        var before = HostSnapshot.Of(_dir["host"]) + HostSnapshot.Ledger(_dir["state"]);
        foreach (var (image, says) in new[]
        {
            (_dir["missing.qcow2"], "does not exist"),
            (_dir["a-directory.qcow2"], "a-directory.qcow2"),
            (_dir["raw.img"], "qcow2"),
            (_dir["images/shadowed.qcow2"], $"whose backing file \"/etc/passwd\" lies outside {_dir["images"]}/; flatten it first"),
            (_dir["images/probed.qcow2"], "whose backing file \"inner.qcow2\" has no format named (qemu-img would probe it)"),
        })
        {
            var bad = _dir.Write("bad.yaml", File.ReadAllText(spec).Replace(_dir["base.qcow2"], image));
            var dry = Vmnet("up", bad, "--dry-run", "--connect", "test:///default");
            Assert.Equal(0, dry.Code);
            Assert.Matches($@"`vmnet up` would stop before the first change \(1 problem\):\n  disk\.image: [^\n]*{System.Text.RegularExpressions.Regex.Escape(says)}", dry.Out);

            var up = Vmnet("up", bad, "--connect", "test:///default");
            Assert.True(up.Code is 2 or 3, $"{image}: exit {up.Code}\n{up.Out}{up.Err}");
            Assert.StartsWith("vmnet: disk.image: ", up.Err);
            Assert.Contains(says, up.Err);
            Assert.DoesNotContain("   at ", up.Err);
            Assert.DoesNotContain("[2/7] configure", up.Out);
            Assert.Equal(before, HostSnapshot.Of(_dir["host"]) + HostSnapshot.Ledger(_dir["state"]));
            Assert.False(Directory.Exists(_dir["state/vms/pre2"]));
        }
    }

    [Fact]
    public void A_host_config_port_with_a_newline_is_refused_and_injects_nothing()
    {
        SimHost.Create(_dir["host"], NicShape.Igb(), pfs: 2, numVfs: 0);
        var before = HostSnapshot.Of(_dir["host"]);
        var config = _dir.Write("host.yaml", "pfs:\n  - port: \"enp1s0\\n[Service]\\nExecStartPre=/bin/evil\"\n    vfs: 3\n  - port: \"enp2s0 x\"\n    vfs: 1\n");

        foreach (var args in new[] { new[] { "host", "apply", "--config", config }, ["host", "boot-unit", "--config", config, "-o", "-"] })
        {
            var r = Vmnet(args);
            Assert.Equal(2, r.Code);
            Assert.Contains("pfs[0].port: must not contain control characters (newlines, tabs, escapes): U+000A at character 7", r.Err);
            Assert.Contains("pfs[1].port: must be a network device name or a PCI address like 0000:03:00.0, got \"enp2s0 x\"", r.Err);
            Assert.DoesNotContain("[Service]\nExecStartPre", r.Out);
        }
        Assert.Equal(before, HostSnapshot.Of(_dir["host"]));
    }

    [Fact]
    public async Task The_boot_units_lines_are_quoted_as_systemd_splits_them()
    {
        // Paths with a space, %, $, a quote and a backslash: systemd must see each as one word, literally (verify
        // fails on an ExecStart whose program does not exist). systemd refuses a quote or backslash in a program's path.
        var odd = _dir["odd dir %h $HOME"];
        var odder = Path.Join(odd, "\"q\" back\\slash");
        Directory.CreateDirectory(odder);
        var vmnet = Path.Join(odd, "vmnet");
        File.Copy(Path.Join(AppContext.BaseDirectory, "vmnet"), vmnet);
        var unit = Provisioner.BootUnit(vmnet, Path.Join(odder, "host.yaml"), Path.Join(odder, "state"), ["enp1s0", "en-p2"]);

        Assert.Contains("ExecStart=\"" + _dir.Path + "/odd dir %%h $HOME/vmnet\" --state-dir \"" + _dir.Path + "/odd dir %%h $$HOME/\\\"q\\\" back\\\\slash/state\" host apply", unit);
        Assert.Equal(ExitCodes.InvalidInput, Assert.Throws<VmNetException>(() => Provisioner.BootUnit(Path.Join(odder, "vmnet"), "/h.yaml", "/s", [])).ExitCode);
        Assert.Contains("sys-subsystem-net-devices-en\\x2dp2.device", unit);
        var file = _dir.Write("vmnet-host.service", unit);
        var r = await RequiredTool.Run("systemd-analyze", ["verify", file]);
        Assert.True(r.ExitCode == 0, r.StandardError + "\n" + unit);

        var e = Assert.Throws<VmNetException>(() => Provisioner.BootUnit(vmnet, "/etc/vmnet/host.yaml\nExecStartPre=/bin/evil", "/var/lib/vmnet", []));
        Assert.Equal((ExitCodes.InvalidInput, "--config must not contain control characters (a newline would end the unit's line), got \"/etc/vmnet/host.yaml\\nExecStartPre=/bin/evil\""), (e.ExitCode, e.Message));
    }

    [Fact]
    public void The_ledger_and_its_lock_are_the_owners_alone_and_a_vm_dir_is_never_wider_than_0711()
    {
        SimHost.Create(_dir["host"], NicShape.ConnectX5(), pfs: 2, numVfs: 1);
        var spec = _dir.Write("vm.yaml", "name: vm1\ndisk: {image: /i.qcow2}\nnetworks:\n  - name: s\n    ports: [enp3s0f0np0, enp3s0f1np1]\n    address: dhcp\n");
        Assert.Equal(0, Vmnet("up", spec, "--out", _dir["out"], "--no-start").Code);

        const UnixFileMode owner = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        Assert.Equal(owner, File.GetUnixFileMode(_dir["state/lock"]));
        var ledger = Directory.GetFiles(_dir["state/leases"]).Concat(Directory.GetFiles(_dir["state/macs"])).Concat(Directory.GetFiles(_dir["state/pfs"])).ToList();
        Assert.NotEmpty(ledger);
        Assert.All(ledger, f => Assert.Equal(owner, File.GetUnixFileMode(f)));
        Assert.Equal(StateDirMode, File.GetUnixFileMode(_dir["state/vms/vm1"]));
        Assert.Equal(owner | UnixFileMode.UserExecute, File.GetUnixFileMode(_dir["state/vms/vm1/vfs"]));

        // A lock file an older vmnet left 0644 in a 0755 state dir, which a local user (nobody) opened read-only and
        // holds a lock on: vmnet does not wait for them; it takes a fresh private lock file in its place.
        var lockFile = _dir["state/lock"];
        File.SetUnixFileMode(lockFile, owner | UnixFileMode.GroupRead | UnixFileMode.OtherRead);
        File.SetUnixFileMode(_dir.Path, (UnixFileMode)0b111_001_001);
        File.SetUnixFileMode(_dir["state"], (UnixFileMode)0b111_101_101);
        var oldLock = VmNet.Io.SafePath.Identity(lockFile);
        using var holder = System.Diagnostics.Process.Start(RequiredTool.Path("setpriv"), ["--reuid=65534", "--regid=65534", "--clear-groups", "flock", "-s", lockFile, "sleep", "300"])!;
        try
        {
            var wait = System.Diagnostics.Stopwatch.StartNew();
            while (!HeldByOthers(lockFile))
            {
                Assert.False(holder.HasExited, $"the hostile lock holder exited {(holder.HasExited ? holder.ExitCode : 0)}");
                Assert.True(wait.Elapsed < TimeSpan.FromSeconds(30), "the hostile lock holder never took its lock");
                Thread.Sleep(50);
            }
            var clock = System.Diagnostics.Stopwatch.StartNew();
            Assert.Equal(0, Vmnet("rm", "vm1").Code);
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(30), $"rm waited {clock.Elapsed} for a lock a local user held");
            Assert.Equal(owner, File.GetUnixFileMode(lockFile));
            Assert.NotEqual(oldLock, VmNet.Io.SafePath.Identity(lockFile));
            Assert.Equal(["lock"], Directory.GetFiles(_dir["state"]).Select(Path.GetFileName)); // no temporary file left
        }
        finally
        {
            holder.Kill();
        }
    }

    /// <summary>Whether someone holds a lock on <paramref name="path"/>: an exclusive non-blocking flock(1) fails.</summary>
    private static bool HeldByOthers(string path)
    {
        using var p = System.Diagnostics.Process.Start(RequiredTool.Path("flock"), ["-n", "-x", path, "true"])!;
        p.WaitForExit();
        return p.ExitCode != 0;
    }

    [Fact]
    public void A_corrupt_lease_is_named_by_host_and_gc_and_the_rest_of_the_host_is_served()
    {
        SimHost.Create(_dir["host"], NicShape.ConnectX5(), pfs: 2, numVfs: 2);
        var start = HostSnapshot.Of(_dir["host"]);
        var spec = _dir.Write("vm.yaml", "name: vm1\ndisk: {image: /i.qcow2}\nnetworks:\n  - name: s\n    ports: [enp3s0f0np0, enp3s0f1np1]\n    address: dhcp\n");
        Assert.Equal(0, Vmnet("up", spec, "--out", _dir["out"], "--no-start").Code);
        var lease = Directory.GetFiles(_dir["state/leases"]).Order(StringComparer.Ordinal).First();
        File.WriteAllText(lease, "{\"version\": 2, \"vm\": ");

        var host = Vmnet("host");
        Assert.Equal(0, host.Code);
        Assert.Contains("lease file corrupt (see below)", host.Out);
        Assert.Contains($"the lease file {lease} is corrupt", host.Out);
        Assert.Contains("vm1/s", host.Out);                                   // the other VF's lease is still shown
        var gc = Vmnet("gc");
        Assert.Equal((1, "no orphaned leases\n"), (gc.Code, gc.Out));
        Assert.Contains($"vmnet: skipped: the lease file {lease} is corrupt", gc.Err);
        Assert.DoesNotContain("   at ", gc.Err + host.Out);

        // The repair it names: `gc --reset PCI`. Refused for a VF whose lease is readable and for one a VM holds open
        // through VFIO; then the VF gets the kernel's defaults and its driver back, and the lease goes.
        var pci = Path.GetFileNameWithoutExtension(lease);
        Assert.Contains($"`vmnet gc --reset {pci}` gives it the kernel's defaults and drops the lease", gc.Err);
        var other = Path.GetFileNameWithoutExtension(Directory.GetFiles(_dir["state/leases"]).Order(StringComparer.Ordinal).Last());
        var readable = Vmnet("gc", "--reset", other);
        Assert.Equal(2, readable.Code);
        Assert.Contains($"--reset: VF {other} is leased by vm1 and its lease is readable: `vmnet rm vm1`", readable.Err);
        Assert.Equal(2, Vmnet("gc", "--reset", "0000:03:00.2\n").Code);
        var group = new VmNet.Host.HostScanner(new VmNet.Host.HostRoot(_dir["host"])).IommuGroupOf(pci);
        using (File.OpenRead(_dir[$"host/dev/vfio/{group}"]))
        {
            var busy = Vmnet("gc", "--reset", pci);
            Assert.Equal(3, busy.Code);
            Assert.Contains($"--reset: VF {pci} is in use: process {Environment.ProcessId} holds its VFIO group /dev/vfio/{group} open", busy.Err);
        }
        var reset = Vmnet("gc", "--reset", pci);
        Assert.True(reset.Code == 0, reset.Out + reset.Err);
        Assert.StartsWith($"{pci}: reset to the kernel's defaults (VF ", reset.Out);
        Assert.EndsWith("driver mlx5_core); its corrupt lease removed\n", reset.Out);
        Assert.False(File.Exists(lease));
        Assert.DoesNotContain("corrupt", Vmnet("host").Out);
        Assert.Equal(0, Vmnet("rm", "vm1").Code);
        Assert.Equal(start, HostSnapshot.Of(_dir["host"]));

        // A corrupt PF index: rm still gives the VFs back (and rebuilds it); up names it and `vmnet gc`, which
        // rebuilds it; then up works.
        Assert.Equal(0, Vmnet("up", spec, "--out", _dir["out"], "--no-start").Code);
        var index = Directory.GetFiles(_dir["state/pfs"]).Order(StringComparer.Ordinal).First();
        File.WriteAllText(index, "0\nnot a number\n");
        var rmCorrupt = Vmnet("rm", "vm1");
        Assert.True(rmCorrupt.Code == 0, rmCorrupt.Out + rmCorrupt.Err);
        Assert.Equal(start, HostSnapshot.Of(_dir["host"]));
        Assert.False(File.Exists(index));
        File.WriteAllText(index, "not a number\n");
        var blocked = Vmnet("up", spec, "--out", _dir["out"], "--no-start");
        Assert.Equal(1, blocked.Code);
        Assert.Contains($"the lease index {index} is corrupt (line \"not a number\"); run `vmnet gc` to rebuild it", blocked.Err);
        Assert.Equal((0, "no orphaned leases\n"), (Vmnet("gc").Code, Vmnet("gc").Out));
        Assert.Equal(0, Vmnet("up", spec, "--out", _dir["out"], "--no-start").Code);
        Assert.Equal(0, Vmnet("rm", "vm1").Code);
        Assert.Equal(start, HostSnapshot.Of(_dir["host"]));
    }

    private const UnixFileMode StateDirMode = VmNet.State.StateDir.VmDirMode;

    /// <summary>Issue 13, item 5: a syntax error, deep nesting, a huge or endless file: exit 2 with line and column, no stack trace.</summary>
    [Fact]
    public void Yaml_that_is_broken_too_deep_or_too_big_is_refused_with_where_and_why()
    {
        var cases = new (string File, string Expected)[]
        {
            (_dir.Write("syntax.yaml", "name: a\nnetworks:\n  - name: x\n    ports: [a, b\n"), "(yaml): not valid YAML: While parsing a flow sequence, did not find expected ',' or ']'. (line 5, column 1)"),
            (_dir.Write("deep.yaml", "name: " + new string('[', 40_000)), $"(yaml): nests lists and mappings more than {VmNet.Spec.YamlInput.MaxDepth} deep"),
            (_dir.Write("deep-block.yaml", string.Concat(Enumerable.Range(0, 100).Select(d => new string(' ', d * 2) + "- \n")) ), "nests lists and mappings more than 32 deep"),
            (_dir.Write("big.yaml", "name: a\n# " + new string('x', VmNet.Spec.YamlInput.MaxBytes) + "\n"), "(file): is larger than 1 MiB; a spec or host.yaml is a few KB"),
            ("/dev/zero", "(file): is larger than 1 MiB"),
            (_dir.Write("latin1.yaml", "name: a\n"), ""),
        };
        File.WriteAllBytes(cases[^1].File, [0x6e, 0x61, 0x6d, 0x65, 0x3a, 0x20, 0xe9, 0x0a]); // "name: \xe9": Latin-1, not UTF-8
        cases[^1].Expected = "(file): is not UTF-8 text (invalid bytes at byte 7); save it as UTF-8";

        foreach (var (file, expected) in cases)
            foreach (var args in new[] { new[] { "validate", file }, ["up", file, "--dry-run"], ["host", "apply", "--config", file] })
            {
                var r = Vmnet(args);
                Assert.True(r.Code == 2, $"vmnet {string.Join(' ', args)} exited {r.Code}:\n{r.Out}{r.Err}");
                Assert.Contains(expected, r.Err);
                Assert.DoesNotContain("   at ", r.Err);
            }
    }

    /// <summary>Issue 13, item 14: what vmnet keeps in its state dir is its own: no link, no other owner, no writable-by-others directory.</summary>
    [Fact]
    public void A_planted_link_or_a_foreign_directory_in_the_state_dir_is_refused_and_nothing_is_written_through_it()
    {
        SimHost.Create(_dir["host"], NicShape.ConnectX5(), pfs: 2, numVfs: 1);
        var spec = _dir.Write("vm.yaml", "name: vm1\ndisk: {image: /i.qcow2}\nnetworks:\n  - name: s\n    ports: [enp3s0f0np0, enp3s0f1np1]\n    address: dhcp\n");
        var victim = _dir.Write("victim/qemu.json", "precious");
        Directory.CreateDirectory(_dir["state/vms"]);
        File.CreateSymbolicLink(_dir["state/vms/vm1"], _dir["victim"]);
        var before = HostSnapshot.Of(_dir["host"]);

        foreach (var args in new[] { new[] { "up", spec, "--no-start" }, ["rm", "vm1"], ["gc"], ["host"], ["status", "vm1"] })
        {
            var r = Vmnet(args);
            Assert.True(r.Code == 3, $"vmnet {string.Join(' ', args)} exited {r.Code}:\n{r.Out}{r.Err}");
            Assert.Contains($"{_dir["state/vms/vm1"]} is a symbolic link, not a directory; vmnet keeps its state in real files and directories: remove it", r.Err);
        }
        Assert.Equal("precious", File.ReadAllText(victim));
        Assert.Equal(["qemu.json"], Directory.GetFiles(_dir["victim"]).Select(Path.GetFileName));
        Assert.Equal(before, HostSnapshot.Of(_dir["host"]));

        File.Delete(_dir["state/vms/vm1"]);
        Directory.CreateDirectory(_dir["state/vms/vm1"]);
        File.SetUnixFileMode(_dir["state/vms/vm1"], (UnixFileMode)0b111_111_111);
        var open = Vmnet("up", spec, "--no-start");
        Assert.Equal(3, open.Code);
        Assert.Contains($"{_dir["state/vms/vm1"]} is writable by group or others (mode 777); chmod go-w", open.Err);

        File.SetUnixFileMode(_dir["state/vms/vm1"], (UnixFileMode)0b111_101_101);
        Assert.Equal(0, Chown(_dir["state/vms/vm1"], 4242));
        var foreign = Vmnet("up", spec, "--no-start");
        Assert.Equal(3, foreign.Code);
        Assert.Contains($"{_dir["state/vms/vm1"]} is owned by uid 4242, not by uid 0 that vmnet runs as", foreign.Err);
        Assert.Equal(before, HostSnapshot.Of(_dir["host"]));

        // A QEMU record planted as a link in a VM dir of vmnet's own: refused by every command that reads it; rm
        // removes the link (never what it points at) with the VM dir, and says so.
        File.SetUnixFileMode(_dir["state/vms/vm1"], StateDirMode);
        Assert.Equal(0, Chown(_dir["state/vms/vm1"], 0));
        File.CreateSymbolicLink(_dir["state/vms/vm1/qemu.json"], victim);
        foreach (var args in new[] { new[] { "status", "vm1" }, ["down", "vm1"], ["ls"] })
        {
            var r = Vmnet(args);
            Assert.True(r.Code == 3, $"vmnet {string.Join(' ', args)} exited {r.Code}:\n{r.Out}{r.Err}");
            Assert.Contains($"{_dir["state/vms/vm1/qemu.json"]} is a symbolic link, not a file", r.Err);
        }
        var rm = Vmnet("rm", "vm1");
        Assert.True(rm.Code == 0, rm.Out + rm.Err);
        Assert.Contains($"vmnet: warning: {_dir["state/vms/vm1/qemu.json"]} is a symbolic link, not a file", rm.Err);
        Assert.Equal("precious", File.ReadAllText(victim));
        Assert.False(Directory.Exists(_dir["state/vms/vm1"]));
        Directory.CreateDirectory(_dir["state/vms/vm1"]);

        // A regular file where a directory belongs (item 17): named, with the repair.
        Directory.Delete(_dir["state/vms/vm1"]);
        File.WriteAllText(_dir["state/pfs"], "not a directory");
        var file = Vmnet("host");
        Assert.Equal(3, file.Code);
        Assert.Contains($"{_dir["state/pfs"]} is a file, not a directory; vmnet keeps its state in real files and directories: remove it (vmnet recreates what it needs)", file.Err);
        Assert.DoesNotContain("   at ", file.Err);

        File.Delete(_dir["state/pfs"]);
        Assert.Equal(0, Vmnet("up", spec, "--no-start").Code);
        Assert.Equal(0, Vmnet("rm", "vm1").Code);
        Assert.Equal(before, HostSnapshot.Of(_dir["host"]));
    }

    /// <summary>A saved guest report that is a link (to a file a guest must not see printed) reads as no report.</summary>
    [Fact]
    public void A_guest_report_planted_as_a_link_is_not_read()
    {
        var paths = VmNet.State.VmPaths.For(new VmNet.State.StateDir(_dir["state"]), "vm1");
        Directory.CreateDirectory(paths.VmDir);
        var target = _dir.Write("elsewhere.json", "{\"at\":\"2026-01-01T00:00:00Z\",\"networks\":[]}");
        File.CreateSymbolicLink(paths.GuestReport, target);

        Assert.Null(VmNet.Backends.GuestAgentChannel.ReadSaved(paths));
        File.Delete(paths.GuestReport);
        File.Copy(target, paths.GuestReport);
        Assert.NotNull(VmNet.Backends.GuestAgentChannel.ReadSaved(paths));
    }

    /// <summary>
    /// Items 8 and 9 through the CLI: a guest's report whose strings set the terminal title, clear the screen, forge a
    /// line and write the clipboard reaches `status` (and `status --json`) escaped; reports with a null member list or
    /// a null network are refused, counted, never printed and never saved, and status keeps working. The host, the
    /// ledger and the saved report of the last valid look are as before.
    /// </summary>
    [Fact]
    public async Task A_hostile_guests_report_reaches_status_escaped_and_an_invalid_one_is_neither_printed_nor_kept()
    {
        SimHost.CreateExample(_dir["host"]);
        await CliWrap.Cli.Wrap(RequiredTool.Path("qemu-img")).WithArguments(["create", "-q", "-f", "qcow2", _dir["base.qcow2"], "16M"]).ExecuteAsync(TestContext.Current.CancellationToken);
        var name = "hg-" + Guid.NewGuid().ToString("n")[..8];
        var spec = _dir.Write("vm.yaml", File.ReadAllText(Repo.File("examples/vm.yaml"))
            .Replace("name: ceph-osd-1", "name: " + name).Replace("/var/lib/vmnet/images/debian-13-genericcloud-amd64.qcow2", _dir["base.qcow2"]));
        using var keepAlive = VmNet.Libvirt.LibvirtConnection.Open("test:///default");
        var up = Vmnet("up", spec, "--no-wait", "--connect", "test:///default");
        Assert.True(up.Code == 0, up.Out + up.Err);
        var paths = VmNet.State.VmPaths.For(new VmNet.State.StateDir(_dir["state"]), name);
        var hostTree = HostSnapshot.Of(_dir["host"]);

        const string Hostile = "\u001b]0;pwned\u0007\u001b[2J\rFORGED: storage active on nothing\u001b]52;c;ZXZpbA==\u0007\u202e\u0085";
        var ready = new NetworkReadyEvent(9000, 1, [new NetworkState("storage", "storage0" + Hostile,
            [new MemberState("storage0", "02:00:00:00:40:11", "up" + Hostile), new MemberState("storage1" + Hostile, "02:00:00:00:40:12", "up")],
            ["192.168.40.11/24" + Hostile], 9000)]);
        await using (Agent(paths, ready.ToLine()))
            foreach (var json in new[] { false, true })
            {
                var status = Vmnet(["status", name, "--connect", "test:///default", .. json ? new[] { "--json" } : []]);
                Assert.True(status.Code == 0, status.Out + status.Err);
                Assert.Contains("storage0\\x1b]0;pwned\\x07\\x1b[2J\\x0dFORGED", json ? status.Out.Replace("\\\\", "\\") : status.Out);
                Assert.DoesNotMatch("[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u202e]", status.Out);
            }
        var saved = File.ReadAllText(paths.GuestReport);
        Assert.Contains("pwned", saved);
        var host = HostSnapshot.Of(_dir["host"]) + HostSnapshot.Ledger(_dir["state"]);
        Assert.Equal(hostTree, HostSnapshot.Of(_dir["host"]));

        var withNullMembers = System.Text.Json.Nodes.JsonNode.Parse(ready.ToLine())!;
        withNullMembers["networks"]![0]!["members"] = null;
        var withNullNetwork = System.Text.Json.Nodes.JsonNode.Parse(ready.ToLine())!;
        withNullNetwork["networks"] = new System.Text.Json.Nodes.JsonArray((System.Text.Json.Nodes.JsonNode?)null);
        foreach (var invalid in new[] { withNullMembers.ToJsonString(), withNullNetwork.ToJsonString() })
        {
            await using (Agent(paths, invalid))
            {
                var status = Vmnet("status", name, "--connect", "test:///default");
                Assert.True(status.Code == 0, status.Out + status.Err);
                Assert.Contains("(1 line from the guest refused in this look: not a report VmNet takes, or too long)", status.Out);
                Assert.DoesNotContain("   at ", status.Err);
            }
            Assert.Equal(saved, File.ReadAllText(paths.GuestReport));
            Assert.Equal(0, Vmnet("status", name, "--connect", "test:///default").Code); // and with no agent at all
        }
        Assert.Equal(host, HostSnapshot.Of(_dir["host"]) + HostSnapshot.Ledger(_dir["state"]));

        // Item 10: a line longer than the cap (64 KiB) is skipped unread and counted; the report after it is taken.
        var later = new NetworkReadyEvent(9900, 2, [new NetworkState("storage", "storage1", [new MemberState("storage0", "02:00:00:00:40:11", "down")], ["192.168.40.11/24"], 9000)]);
        await using (Agent(paths, "{\"event\":\"state\",\"networks\":[\"" + new string('x', 4 << 20) + "\"]}", later.ToLine()))
        {
            var status = Vmnet("status", name, "--connect", "test:///default");
            Assert.True(status.Code == 0, status.Out + status.Err);
            Assert.Contains("(1 line from the guest refused in this look", status.Out);
            Assert.Contains("storage1", status.Out);
            Assert.DoesNotContain("xxxxxxxx", File.ReadAllText(paths.GuestReport));
        }
        Assert.Equal(HostSnapshot.Of(_dir["host"]), hostTree);
        Assert.Equal(0, Vmnet("rm", "--force", name, "--connect", "test:///default").Code);
    }

    /// <summary>The guest's end of the report port for one look: answers status's query with <paramref name="lines"/>.</summary>
    private static AgentPeer Agent(VmNet.State.VmPaths paths, params string[] lines) => new(paths.AgentSocket, lines);

    private sealed class AgentPeer : IAsyncDisposable
    {
        private readonly System.Net.Sockets.Socket _listener = new(System.Net.Sockets.AddressFamily.Unix, System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Unspecified);
        private readonly Task _serve;
        private readonly string _path;

        public AgentPeer(string path, string[] lines)
        {
            _path = path;
            File.Delete(path);
            _listener.Bind(new System.Net.Sockets.UnixDomainSocketEndPoint(path));
            _listener.Listen();
            _serve = Task.Run(async () =>
            {
                using var client = await _listener.AcceptAsync();
                foreach (var line in lines) await client.SendAsync(System.Text.Encoding.UTF8.GetBytes(line + "\n"));
                client.Shutdown(System.Net.Sockets.SocketShutdown.Send);
            });
        }

        public async ValueTask DisposeAsync()
        {
            await _serve.WaitAsync(TimeSpan.FromSeconds(30));
            _listener.Dispose();
            File.Delete(_path);
        }
    }

    private static int Chown(string path, int uid)
    {
        using var p = System.Diagnostics.Process.Start("chown", [uid.ToString(System.Globalization.CultureInfo.InvariantCulture), path])!;
        p.WaitForExit();
        return p.ExitCode;
    }
}
