using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using CliWrap;
using CliWrap.Buffered;
using VmNet.State;
using VmNet.Tests.Support;

namespace VmNet.Tests.Rendering.Consumers;

// QEMU is the consumer of qemu.args, but no test machine has the VFs the argv names. So the argv is checked in two runs
// that together cover every argument:
//   (a) the argv as rendered: QEMU parses every option, opens the disk and seed, creates the chardevs (QMP, agent),
//       builds the machine and realizes the -device list in order. It must stop exactly at the first vfio-pci device,
//       with an error naming that VF's host address: nothing before it was refused, and it tried to grab the planned VF.
//   (b) the same argv without the vfio-pci devices, plus -S (never run the guest): QEMU must come up and answer on the
//       rendered QMP socket (qmp_capabilities, query-status), write the rendered pidfile, and quit cleanly. This
//       proves every device after the VFs (virtio-serial, the agent port, rng) and the monitor setup are valid too.
// Adjustments, each only what this machine needs and none touching what is checked:
//   - -daemonize is dropped: the test must own the process, see its exit status and stderr.
//   - The paths already point into the test's private state dir (the plan's VmPaths); the disk is created there with
//     qemu-img and the seed is a small raw file (QEMU only opens it).
//   - -m is lowered to 128M: with -overcommit mem-lock=on QEMU mlocks all guest RAM, and as root (CAP_IPC_LOCK) the
//     example's 16 GiB would really be pinned. mem-lock=on itself is kept.
//   - A placed VM's memory backend follows: its size= is lowered to 128M with -m, host-nodes= becomes this machine's
//     node 0 (the simulated host has two nodes; this machine has one), and a hugepage mem-path= becomes a directory
//     on /dev/shm (this machine reserves no hugepages; QEMU maps and preallocates a file there just the same).
//   - "-accel kvm"/"-cpu host" become "-accel tcg,tb-size=32"/"-cpu max" only when a probe shows KVM cannot create a
//     VM here (e.g. no /dev/kvm, or the nested KVM of this kind of machine that aborts QEMU setting MSRs). The small
//     translation cache keeps the test cheap: mem-lock=on locks it too. A spec with accel: tcg runs as rendered.
public static class QemuRun
{
    private static readonly Lazy<Task<bool>> Kvm = new(ProbeKvm);

    public static async Task<(string Qemu, List<string> Args)> Prepare(RenderedVm vm)
    {
        var argv = vm.Artifacts.QemuArgs;
        Assert.Equal("qemu-system-x86_64", argv[0]);
        var qemu = RequiredTool.Path("qemu-system-x86_64");
        var paths = vm.Plan.Paths;
        Directory.CreateDirectory(paths.VmDir);
        var img = await Tools.Run("qemu-img", ["create", "-q", "-f", "qcow2", paths.Disk, "64M"]);
        Assert.True(img.ExitCode == 0, Tools.Describe(img));
        await File.WriteAllBytesAsync(paths.Seed, new byte[64 * 1024]);
        await File.WriteAllTextAsync(paths.AgentConfig, vm.Artifacts.AgentConfig);

        var kvm = await Kvm.Value;
        var args = new List<string>();
        for (var i = 1; i < argv.Count; i++)
        {
            var a = argv[i];
            if (a == "-daemonize") continue;
            if (argv[i - 1] == "-m") a = "128M";
            if (argv[i - 1] == "-object" && a.StartsWith("memory-backend-", StringComparison.Ordinal))
                a = string.Join(',', a.Split(',').Select(o =>
                    o.StartsWith("size=", StringComparison.Ordinal) ? "size=128M"
                    : o.StartsWith("host-nodes=", StringComparison.Ordinal) ? "host-nodes=0"
                    : o.StartsWith("mem-path=", StringComparison.Ordinal) ? "mem-path=" + ShmDir(paths.VmDir)
                    : o));
            if (!kvm && argv[i - 1] == "-accel" && a == "kvm") a = "tcg,tb-size=32";
            if (!kvm && argv[i - 1] == "-cpu" && a == "host") a = "max";
            args.Add(a);
        }
        Assert.Single(args, a => a == "-accel");
        return (qemu, args);
    }

    /// <summary>A directory on /dev/shm (tmpfs) for a hugepage-backed VM's memory file, gone with the test's process.</summary>
    private static string ShmDir(string vmDir)
    {
        var dir = Path.Join("/dev/shm", "vmnet-test-" + Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(Encoding.UTF8.GetBytes(vmDir)))[..12]);
        Directory.CreateDirectory(dir);
        AppDomain.CurrentDomain.ProcessExit += (_, _) => { try { Directory.Delete(dir, recursive: true); } catch (IOException) { } };
        return dir;
    }

    /// <summary>Can QEMU create a KVM machine here? A paused q35 that is told to quit at once.</summary>
    private static async Task<bool> ProbeKvm()
    {
        if (!File.Exists("/dev/kvm")) return false;
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        var r = await CliWrap.Cli.Wrap(RequiredTool.Path("qemu-system-x86_64"))
            .WithArguments(["-machine", "q35,accel=kvm", "-cpu", "host", "-m", "64M", "-nodefaults", "-display", "none", "-S", "-qmp", "stdio"])
            .WithStandardInputPipe(PipeSource.FromString("""{"execute":"qmp_capabilities"}{"execute":"quit"}""" + "\n"))
            .WithValidation(CommandResultValidation.None)
            .ExecuteBufferedAsync(cts.Token);
        return r.ExitCode == 0;
    }
}

/// <summary>(a) The rendered argv gets as far as the first VF.</summary>
public sealed class QemuArgvTests
{
    [Theory]
    [MemberData(nameof(ConsumerCorpus.All), MemberType = typeof(ConsumerCorpus))]
    public async Task Qemu_accepts_the_rendered_argv_up_to_the_first_vf_and_fails_on_its_host_address(string name)
    {
        using var vm = ConsumerCorpus.Render(name);
        var (qemu, args) = await QemuRun.Prepare(vm);
        var first = vm.Plan.Vfs[0];

        using var cts = CancellationTokenSource.CreateLinkedTokenSource(TestContext.Current.CancellationToken);
        cts.CancelAfter(TimeSpan.FromSeconds(20));
        var r = await CliWrap.Cli.Wrap(qemu).WithArguments(args).WithValidation(CommandResultValidation.None).ExecuteBufferedAsync(cts.Token);

        Assert.True(r.ExitCode != 0, Tools.Describe(r));
        var errors = r.StandardError.Split('\n', StringSplitOptions.RemoveEmptyEntries)
            .Where(l => !l.Contains("warning:", StringComparison.Ordinal)).ToList();
        Assert.NotEmpty(errors);
        // QEMU prefixes the error with the option it was realizing; every error line is about the first VF only.
        Assert.All(errors, l => Assert.StartsWith($"qemu-system-x86_64: -device vfio-pci,host={first.Vf.Pci},id={first.GuestName}: ", l));
        Assert.Contains(first.Vf.Pci, string.Join('\n', errors).Split(": ", 3)[2]);
        Assert.All(vm.Plan.Vfs.Skip(1), v => Assert.DoesNotContain(v.Vf.Pci, r.StandardError));
    }
}

/// <summary>(b) Without the VFs the argv brings up a paused VM that answers on its QMP socket.</summary>
public sealed class QemuWithoutVfsTests
{
    [Theory]
    [MemberData(nameof(ConsumerCorpus.All), MemberType = typeof(ConsumerCorpus))]
    public async Task Qemu_runs_the_rendered_argv_without_the_vfs_and_answers_on_the_qmp_socket(string name)
    {
        using var vm = ConsumerCorpus.Render(name);
        var (qemu, args) = await QemuRun.Prepare(vm);
        var withoutVfs = new List<string>();
        for (var i = 0; i < args.Count; i++)
        {
            if (args[i] == "-device" && i + 1 < args.Count && args[i + 1].StartsWith("vfio-pci,", StringComparison.Ordinal)) { i++; continue; }
            withoutVfs.Add(args[i]);
        }
        Assert.Equal(args.Count - 2 * vm.Plan.Vfs.Count, withoutVfs.Count);
        withoutVfs.Add("-S");

        using var cts = CancellationTokenSource.CreateLinkedTokenSource(TestContext.Current.CancellationToken);
        cts.CancelAfter(TimeSpan.FromSeconds(20));
        var run = CliWrap.Cli.Wrap(qemu).WithArguments(withoutVfs).WithValidation(CommandResultValidation.None).ExecuteBufferedAsync(cts.Token);

        using (var qmp = await Qmp.Connect(vm.Plan.Paths.QmpSocket, run, cts.Token))
        {
            Assert.Equal(JsonValueKind.Object, (await qmp.Execute("qmp_capabilities")).ValueKind);
            var status = await qmp.Execute("query-status");
            Assert.Equal("prelaunch", status.GetProperty("status").GetString());
            Assert.False(status.GetProperty("running").GetBoolean());
            Assert.Equal(run.ProcessId.ToString(), (await File.ReadAllTextAsync(vm.Plan.Paths.PidFile, cts.Token)).Trim());
            await qmp.Execute("quit");
        }
        var r = await run;

        Assert.True(r.ExitCode == 0, Tools.Describe(r));
        Assert.True(File.Exists(vm.Plan.Paths.SerialLog), "the serial log file was not created");
    }
}

/// <summary>A minimal QMP client: one JSON object per line; events are skipped.</summary>
internal sealed class Qmp : IDisposable
{
    private readonly Socket _socket;
    private readonly StreamReader _reader;
    private readonly CancellationToken _ct;

    private Qmp(Socket socket, CancellationToken ct)
    {
        _socket = socket;
        _reader = new StreamReader(new NetworkStream(socket), Encoding.UTF8);
        _ct = ct;
    }

    public static async Task<Qmp> Connect(string path, Task<BufferedCommandResult> process, CancellationToken ct)
    {
        while (true)
        {
            if (process.IsCompleted)
                Assert.Fail($"QEMU exited before its QMP socket answered:\n{Tools.Describe(await process)}");
            var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            try
            {
                await socket.ConnectAsync(new UnixDomainSocketEndPoint(path), ct);
                var qmp = new Qmp(socket, ct);
                var greeting = await qmp.ReadObject();
                Assert.True(greeting.TryGetProperty("QMP", out _), greeting.ToString());
                return qmp;
            }
            catch (SocketException)
            {
                socket.Dispose();
                await Task.Delay(50, ct);
            }
        }
    }

    public async Task<JsonElement> Execute(string command)
    {
        await _socket.SendAsync(Encoding.UTF8.GetBytes($$"""{"execute":"{{command}}"}""" + "\n"), _ct);
        while (true)
        {
            var o = await ReadObject();
            if (o.TryGetProperty("event", out _)) continue;
            if (o.TryGetProperty("error", out var error)) Assert.Fail($"QMP {command} failed: {error}");
            return o.GetProperty("return");
        }
    }

    private async Task<JsonElement> ReadObject()
    {
        var line = await _reader.ReadLineAsync(_ct) ?? throw new EndOfStreamException("QMP closed the connection");
        return JsonDocument.Parse(line).RootElement.Clone();
    }

    public void Dispose()
    {
        _reader.Dispose();
        _socket.Dispose();
    }
}

/// <summary>
/// backend: qemu pins a placed VM's threads itself (libvirt does it from &lt;cputune&gt;): QEMU as rendered starts
/// paused (-S), and <see cref="VmNet.Backends.ThreadPinner"/> pins the vCPU thread QMP names and every other thread,
/// then lets the guest run. Read back from this machine's kernel (/proc/PID/task/*/status). The simulated host has
/// CPUs 0 and 1 like this machine, both isolated, so dedicated pinning puts the vCPU on one and the emulator on the other.
/// </summary>
public sealed class QemuPinningTests
{
    [Fact]
    public async Task A_dedicated_vcpu_runs_only_on_its_cpu_and_every_other_qemu_thread_on_the_emulators()
    {
        var online = VmNet.Host.CpuList.Parse(File.ReadAllText("/sys/devices/system/cpu/online").Trim()) ?? [];
        if (!online.Contains(0) || !online.Contains(1))
            Assert.Skip($"this machine's online CPUs are {VmNet.Host.CpuList.Format(online)}; the test pins a vCPU to CPU 0 apart from the emulator threads on CPU 1");
        var dir = Directory.CreateTempSubdirectory("vmnet-pinning-").FullName;
        try
        {
            var host = Path.Join(dir, "host");
            var tree = VmNet.Sim.SimHost.Create(host, VmNet.Sim.NicShape.Igb(), pfs: 2, numVfs: 2, topology: new VmNet.Sim.SimTopology(CpusPerNode: 2));
            tree.Write(VmNet.Host.Sysfs.ProcCmdline, "BOOT_IMAGE=/vmlinuz isolcpus=0-1\n");
            var spec = VmNet.Spec.SpecLoader.Load("""
                name: pinned
                cpus: 1
                memory: 128MiB
                backend: qemu
                accel: tcg
                placement: {cpuPinning: dedicated}
                disk: {image: /var/lib/vmnet/images/debian.qcow2}
                networks:
                  - {name: lan, ports: [enp1s0, enp2s0], address: 192.0.2.40/24}
                """);
            var state = new StateDir(Path.Join(dir, "state"));
            var plan = VmNet.Planning.Planner.Make(spec, new VmNet.Host.HostScanner(new VmNet.Host.HostRoot(host)), new VmNet.Leases.LeaseStore(state), state);
            Assert.Equal(("0", 1), (string.Join(",", plan.Placement.VcpuCpus), plan.Placement.EmulatorCpu));
            Assert.Contains("-S", plan.Artifacts.QemuArgs);
            using var vm = new RenderedVm("pinned", spec, plan, plan.Artifacts, dir);
            var (qemu, args) = await QemuRun.Prepare(vm);
            var withoutVfs = new List<string>();
            for (var i = 0; i < args.Count; i++)
            {
                if (args[i] == "-device" && args[i + 1].StartsWith("vfio-pci,", StringComparison.Ordinal)) { i++; continue; }
                withoutVfs.Add(args[i]);
            }

            using var cts = CancellationTokenSource.CreateLinkedTokenSource(TestContext.Current.CancellationToken);
            cts.CancelAfter(TimeSpan.FromSeconds(30));
            var run = CliWrap.Cli.Wrap(qemu).WithArguments(withoutVfs).WithValidation(CommandResultValidation.None).ExecuteBufferedAsync(cts.Token);
            VmNet.Backends.QmpClient? qmp = null;
            while (qmp is null)
            {
                if (run.Task.IsCompleted) Assert.Fail($"QEMU exited before its QMP socket answered:\n{Tools.Describe(await run)}");
                try { qmp = await VmNet.Backends.QmpClient.ConnectAsync(plan.Paths.QmpSocket, cts.Token); }
                catch (VmNetException) { await Task.Delay(50, cts.Token); }
            }
            await using (qmp)
            {
                Assert.Equal("prelaunch", (await qmp.QueryStatusAsync(cts.Token)).Status);
                await VmNet.Backends.ThreadPinner.PinAndContinueAsync(qmp, run.ProcessId, VmNet.Backends.QemuPinning.Of(plan.Placement)!, cts.Token);

                Assert.Equal("running", (await qmp.QueryStatusAsync(cts.Token)).Status);
                var vcpu = (await qmp.ExecuteAsync("query-cpus-fast", cts.Token)).EnumerateArray().Single().GetProperty("thread-id").GetInt32();
                var threads = VmNet.Backends.ThreadPinner.Threads(run.ProcessId);
                Assert.True(threads.Count >= 3, $"QEMU has {threads.Count} threads");
                Assert.Equal([0], VmNet.Backends.ThreadPinner.Allowed(run.ProcessId, vcpu));
                Assert.All(threads.Where(t => t != vcpu), t => Assert.Equal([1], VmNet.Backends.ThreadPinner.Allowed(run.ProcessId, t)));
                await qmp.QuitAsync(cts.Token);
            }
            var r = await run;
            Assert.True(r.ExitCode == 0, Tools.Describe(r));
        }
        finally
        {
            if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true); // the RenderedVm deletes it when it got that far
        }
    }
}
