using System.Globalization;
using System.Diagnostics;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;

namespace VmNet.Tests.Guest;

[CollectionDefinition("Guest", DisableParallelization = true)]
public sealed class GuestCollection;

/// <summary>What the guest tests need on the host, and the test guest image (built by images/guest/build.sh when missing).</summary>
public static class GuestImage
{
    private static readonly Lazy<(string? Dir, string? Problem)> Built = new(Build);

    public static string RepoRoot => Support.Repo.Root;

    /// <summary>The directory holding vmlinuz and initrd.gz, or why it cannot be had (a missing tool).</summary>
    public static (string? Dir, string? Problem) TryGet() => Built.Value;

    public static void MissingOrFail(string problem)
    {
        if (Environment.GetEnvironmentVariable("CI") == "true") Assert.Fail(problem);
        Assert.Skip(problem);
    }

    /// <summary>The NativeAOT agent images/guest/build.sh publishes (after <see cref="TryGet"/>).</summary>
    public static string AgentBinary =>
        Path.Combine(Environment.GetEnvironmentVariable("VMNET_CACHE") ?? Path.Combine(RepoRoot, ".cache"), "images", "agent", "vmnet-agent");

    private static (string?, string?) Build() =>
        BuildWith("images/guest/build.sh", ["qemu-system-x86_64", "cpio", "depmod", "apt-get", "dpkg-deb", "gzip"]);

    /// <summary>Runs an image recipe that prints its output directory last; a missing tool (exit 3) or a build over
    /// 10 minutes is a problem to report, any other failure an error.</summary>
    public static (string? Dir, string? Problem) BuildWith(string script, string[] tools)
    {
        foreach (var tool in tools)
            if (!OnPath(tool)) return (null, $"{tool} missing: run scripts/install-deps.sh");
        if (!File.Exists("/bin/busybox")) return (null, "busybox-static missing: run scripts/install-deps.sh");
        var (stdout, exit, stderr) = Support.Repo.RunScript(script, []);
        if (exit is 3 or 124) return (null, stderr.Trim());
        if (exit != 0) throw new InvalidOperationException($"{script} failed ({exit}):\n{stderr}");
        return (stdout.Trim().Split('\n')[^1], null);
    }

    private static bool OnPath(string tool) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':').Any(d => File.Exists(Path.Combine(d, tool)));
}

/// <summary>Lines read from a socket, with the time each arrived, that tests can wait for.</summary>
public sealed class LineLog
{
    private readonly List<(TimeSpan At, string Line)> _lines = [];
    private readonly Stopwatch _clock;
    private readonly SemaphoreSlim _signal = new(0);

    public LineLog(Stopwatch clock) => _clock = clock;

    public int Count { get { lock (_lines) return _lines.Count; } }

    public IReadOnlyList<(TimeSpan At, string Line)> Snapshot() { lock (_lines) return _lines.ToList(); }

    public void Add(string line)
    {
        lock (_lines) _lines.Add((_clock.Elapsed, line));
        _signal.Release();
    }

    /// <summary>The first line at or after <paramref name="from"/> that matches, or null after the timeout.</summary>
    public async Task<(int Index, TimeSpan At, string Line)?> WaitFor(Func<string, bool> match, TimeSpan timeout, int from = 0)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (true)
        {
            lock (_lines)
                for (var i = from; i < _lines.Count; i++)
                    if (match(_lines[i].Line)) return (i, _lines[i].At, _lines[i].Line);
            var left = deadline - DateTime.UtcNow;
            if (left <= TimeSpan.Zero) return null;
            await _signal.WaitAsync(left < TimeSpan.FromMilliseconds(200) ? left : TimeSpan.FromMilliseconds(200));
        }
    }

    public static async Task Pump(Stream stream, LineLog log, CancellationToken cancel)
    {
        using var reader = new StreamReader(stream, Encoding.UTF8);
        try
        {
            while (await reader.ReadLineAsync(cancel) is { } line) log.Add(line);
        }
        catch (Exception e) when (e is IOException or OperationCanceledException or ObjectDisposedException) { }
    }
}

/// <summary>One network of a test guest: the bond's config and a peer on the network's QEMU hub.</summary>
public sealed record GuestNetwork(string Name, string PeerIp, string GuestIp, int Prefix, IReadOnlyList<(string Name, string Mac)> Members,
    int Miimon = 100, int ArpInterval = 0, int? Mtu = null, int NumGratArp = 3, bool Gateway = true, string? Ipv6 = null)
{
    public string ConfigJson() => JsonSerializer.Serialize(new Dictionary<string, object?>
    {
        ["name"] = Name, ["mode"] = "active-backup", ["miimon"] = Miimon, ["arpInterval"] = ArpInterval,
        ["arpTargets"] = ArpInterval > 0 ? new[] { PeerIp } : Array.Empty<string>(), ["primary"] = Members[0].Name,
        ["failOverMac"] = "active", ["upDelay"] = 0, ["downDelay"] = 0, ["numGratArp"] = NumGratArp, ["mtu"] = Mtu,
        ["members"] = Members.Select(m => new Dictionary<string, string> { ["name"] = m.Name, ["mac"] = m.Mac }).ToArray(),
        ["dhcp"] = false, ["addresses"] = Ipv6 is null ? new[] { $"{GuestIp}/{Prefix}" } : [$"{GuestIp}/{Prefix}", Ipv6], ["gateway"] = Gateway ? PeerIp : null, ["dns"] = new[] { PeerIp },
    }, GuestJson.Options);
}

internal static class GuestJson
{
    public static readonly JsonSerializerOptions Options = new() { TypeInfoResolver = new System.Text.Json.Serialization.Metadata.DefaultJsonTypeInfoResolver() };
}

/// <summary>Boots one guest per test class; tests call <see cref="Guest"/>, which skips (or fails when CI=true)
/// when QEMU or a package is missing.</summary>
public abstract class GuestFixture : IAsyncLifetime
{
    private QemuGuest? _guest;
    private string? _problem;
    private Exception? _bootError;

    protected abstract GuestNetwork[] Networks { get; }

    /// <summary>The agent's config; null to build it from <see cref="Networks"/>.</summary>
    protected virtual string? Config => null;

    /// <summary>Where the guest finds the config: QEMU fw_cfg, or the NoCloud seed (a cidata CD-ROM) as vmnet writes it.</summary>
    protected virtual ConfigPath Delivery => ConfigPath.FwCfg;

    /// <summary>From QEMU's start to the agent's network-ready report, as the host saw it.</summary>
    public TimeSpan BootToReady { get; private set; }
    public string? ReadyReport { get; private set; }

    public QemuGuest Guest
    {
        get
        {
            if (_problem is not null) GuestImage.MissingOrFail(_problem);
            if (_bootError is not null) throw new InvalidOperationException("the guest did not boot", _bootError);
            return _guest!;
        }
    }

    public async ValueTask InitializeAsync()
    {
        var (dir, problem) = await Task.Run(GuestImage.TryGet);
        if (problem is not null) { _problem = problem; return; }
        try
        {
            _guest = await QemuGuest.Start(dir!, Networks, Config, Delivery);
            ReadyReport = await _guest.WaitForReport("network-ready", TimeSpan.FromSeconds(120));
            BootToReady = _guest.Reports.Snapshot().First(r => r.Line == ReadyReport).At - _guest.QemuStarted;
        }
        catch (Exception e) { _bootError = e; }
    }

    public async ValueTask DisposeAsync()
    {
        if (_guest is not null) await _guest.DisposeAsync();
        GC.SuppressFinalize(this);
    }
}

public enum ConfigPath { FwCfg, Seed }

/// <summary>What QEMU boots: a kernel and initramfs (direct boot), optionally a root disk image and a seed image.</summary>
public sealed record GuestMachine(string Kernel, string Initrd, string Append, int MemoryMiB, string? Disk = null, string? Seed = null)
{
    /// <summary>The test guest of images/guest: everything in the initramfs.</summary>
    public static GuestMachine TestGuest(string imageDir) =>
        new(Path.Combine(imageDir, "vmlinuz"), Path.Combine(imageDir, "initrd.gz"), "console=ttyS0 panic=-1 loglevel=4", 384);

    /// <summary>The cloud-init guest of images/cloud-guest: systemd and cloud-init on root.img.</summary>
    public static GuestMachine CloudGuest(string imageDir) =>
        new(Path.Combine(imageDir, "vmlinuz"), Path.Combine(imageDir, "initrd.gz"), "console=ttyS0 panic=-1 loglevel=4", 1024,
            Disk: Path.Combine(imageDir, "root.img"));
}

/// <summary>
/// A test guest under QEMU TCG. Every channel is a unix socket the test listens on and QEMU connects to at start:
/// QMP, the agent's report port (virtio-serial "org.vmnet.agent.0"), a shell on virtio-serial "org.vmnet.test.0",
/// and per network a <c>-netdev stream</c> joined to the network's hub, where an <see cref="EthernetPeer"/> answers.
/// </summary>
public sealed class QemuGuest : IAsyncDisposable
{
    public Stopwatch Clock { get; } = Stopwatch.StartNew();
    public string Dir { get; }
    public LineLog Reports { get; }
    public IReadOnlyList<EthernetPeer> Peers { get; private set; } = [];
    public IReadOnlyList<GuestNetwork> Networks { get; }
    public TimeSpan QemuStarted { get; private set; }
    private readonly List<IDisposable> _disposables = [];
    private readonly CancellationTokenSource _cancel = new();
    private Process? _qemu;
    private Stream? _shell;
    private Stream? _report;
    private StreamReader? _shellReader;
    private Stream? _qmp;
    private StreamReader? _qmpReader;
    private int _commands;

    private QemuGuest(IReadOnlyList<GuestNetwork> networks)
    {
        Networks = networks;
        Dir = Directory.CreateTempSubdirectory("vmnet-guest-").FullName;
        Reports = new LineLog(Clock);
    }

    public string SerialLog => File.Exists(Path.Combine(Dir, "serial.log")) ? File.ReadAllText(Path.Combine(Dir, "serial.log")) : "";

    public static async Task<QemuGuest> Start(string imageDir, GuestNetwork[] networks, string? config = null, ConfigPath delivery = ConfigPath.FwCfg)
    {
        var guest = new QemuGuest(networks);
        try { await guest.Boot(GuestMachine.TestGuest(imageDir), config, delivery); }
        catch { await guest.DisposeAsync(); throw; }
        return guest;
    }

    /// <summary>Boots <paramref name="machine"/> with a seed image made by the caller (vmnet's own seed), no fw_cfg.</summary>
    public static async Task<QemuGuest> Start(GuestMachine machine, GuestNetwork[] networks, string seedIso)
    {
        var guest = new QemuGuest(networks);
        try { await guest.Boot(machine with { Seed = seedIso }, "", ConfigPath.Seed); }
        catch { await guest.DisposeAsync(); throw; }
        return guest;
    }

    private Socket Listen(string name)
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        socket.Bind(new UnixDomainSocketEndPoint(Path.Combine(Dir, name)));
        socket.Listen(1);
        _disposables.Add(socket);
        return socket;
    }

    private async Task Boot(GuestMachine machine, string? rendered, ConfigPath delivery)
    {
        var config = rendered ?? "{\"version\":1,\"hostname\":\"vmnet-test\",\"reportPort\":\"org.vmnet.agent.0\",\"networks\":["
                     + string.Join(",", Networks.Select(n => n.ConfigJson())) + "]}";
        File.WriteAllText(Path.Combine(Dir, "agent.json"), config);
        var listeners = new[] { "qmp.sock", "report.sock", "shell.sock" }.Concat(Networks.Select((_, i) => $"peer{i}.sock"))
            .ToDictionary(n => n, Listen);
        var args = new List<string>
        {
            "-accel", "tcg,tb-size=256", "-machine", "q35", "-cpu", "max", "-smp", "1", "-m", machine.MemoryMiB.ToString(CultureInfo.InvariantCulture),
            "-nodefaults", "-display", "none", "-no-reboot",
            "-kernel", machine.Kernel, "-initrd", machine.Initrd, "-append", machine.Append, "-serial", $"file:{Path.Combine(Dir, "serial.log")}",
            "-chardev", $"socket,id=qmp,path={Path.Combine(Dir, "qmp.sock")}", "-mon", "chardev=qmp,mode=control",
            "-device", "virtio-serial-pci,id=vser",
            "-chardev", $"socket,id=report,path={Path.Combine(Dir, "report.sock")}", "-device", "virtserialport,chardev=report,name=org.vmnet.agent.0",
            "-chardev", $"socket,id=shell,path={Path.Combine(Dir, "shell.sock")}", "-device", "virtserialport,chardev=shell,name=org.vmnet.test.0",
        };
        if (machine.Disk is { } disk)
        {
            // A copy-on-write overlay, so the cached image stays as built.
            var overlay = Path.Combine(Dir, "disk.qcow2");
            await CliWrap.Buffered.BufferedCommandExtensions.ExecuteBufferedAsync(
                CliWrap.Cli.Wrap("qemu-img").WithArguments(["create", "-q", "-f", "qcow2", "-b", disk, "-F", "raw", overlay]));
            args.AddRange(["-drive", $"file={overlay},if=virtio,format=qcow2"]);
        }
        if (delivery == ConfigPath.FwCfg)
            args.AddRange(["-fw_cfg", $"name=opt/vmnet/agent.json,file={Path.Combine(Dir, "agent.json")}"]);
        else
        {
            // The seed as vmnet writes it (label cidata, the agent's config at vmnet/agent.json), on the q35 AHCI CD-ROM.
            var seed = machine.Seed;
            if (seed is null)
            {
                seed = Path.Combine(Dir, "seed.iso");
                VmNet.Seed.IsoImageWriter.WriteFile(seed, VmNet.Seed.SeedImage.VolumeLabel,
                    [new VmNet.Seed.IsoFile("meta-data", "instance-id: vmnet-test\n"u8.ToArray()), new VmNet.Seed.IsoFile(VmNet.GuestAgent.Config.ConfigLoader.SeedFile, System.Text.Encoding.UTF8.GetBytes(config))]);
            }
            args.AddRange(["-drive", $"file={seed},if=none,id=seed,format=raw,readonly=on,media=cdrom", "-device", "ide-cd,drive=seed,bus=ide.0"]);
        }
        for (var i = 0; i < Networks.Count; i++)
        {
            args.AddRange(["-netdev", $"stream,id=peer{i},server=off,addr.type=unix,addr.path={Path.Combine(Dir, $"peer{i}.sock")}",
                "-netdev", $"hubport,id=hpp{i},hubid={i},netdev=peer{i}"]);
            for (var j = 0; j < Networks[i].Members.Count; j++)
                args.AddRange(["-netdev", $"hubport,id=hp{i}{j},hubid={i}",
                    "-device", $"e1000e,netdev=hp{i}{j},id={NicId(i, j)},mac={Networks[i].Members[j].Mac}"]);
        }
        var psi = new ProcessStartInfo("qemu-system-x86_64", args)
        {
            UseShellExecute = false, RedirectStandardError = true, RedirectStandardOutput = true,
        };
        QemuStarted = Clock.Elapsed;
        _qemu = Process.Start(psi)!;
        var stderr = new StringBuilder();
        _qemu.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (stderr) stderr.AppendLine(e.Data); };
        _qemu.BeginErrorReadLine();
        _qemu.OutputDataReceived += (_, _) => { };
        _qemu.BeginOutputReadLine();

        async Task<Stream> Accept(string name)
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
            var accept = listeners[name].AcceptAsync(timeout.Token).AsTask();
            while (!accept.IsCompleted)
            {
                if (_qemu.HasExited) throw new InvalidOperationException($"QEMU exited ({_qemu.ExitCode}) before connecting {name}: {stderr}");
                await Task.WhenAny(accept, Task.Delay(100));
            }
            var stream = new NetworkStream(await accept, ownsSocket: true);
            _disposables.Add(stream);
            return stream;
        }

        _qmp = await Accept("qmp.sock");
        _qmpReader = new StreamReader(_qmp);
        var report = await Accept("report.sock");
        _report = report;
        _ = LineLog.Pump(report, Reports, _cancel.Token);
        _shell = await Accept("shell.sock");
        _shellReader = new StreamReader(_shell);
        var peers = new List<EthernetPeer>();
        for (var i = 0; i < Networks.Count; i++)
        {
            var peer = new EthernetPeer(await Accept($"peer{i}.sock"), Networks[i].PeerIp, Networks[i].GuestIp, (byte)(0x10 + i), Clock);
            _disposables.Add(peer);
            peers.Add(peer);
        }
        Peers = peers;
        await Qmp("{\"execute\":\"qmp_capabilities\"}");
    }

    /// <summary>Whether QEMU exited within <paramref name="timeout"/> (e.g. after the guest powered off).</summary>
    public async Task<bool> WaitForExit(TimeSpan timeout)
    {
        using var cancel = new CancellationTokenSource(timeout);
        try { await _qemu!.WaitForExitAsync(cancel.Token); return true; }
        catch (OperationCanceledException) { return false; }
    }

    /// <summary>Writes a line to the agent on its report port, as `vmnet status` does (e.g. the state query).</summary>
    public async Task SendToAgent(string line) => await _report!.WriteAsync(Encoding.UTF8.GetBytes(line.TrimEnd('\n') + "\n"));

    public static string NicId(int network, int member) => $"nic{network}{member}";

    /// <summary>Sends one QMP command and returns its "return" (or throws on "error"); events are skipped.</summary>
    public async Task<string> Qmp(string command)
    {
        await _qmp!.WriteAsync(Encoding.UTF8.GetBytes(command + "\n"));
        while (await _qmpReader!.ReadLineAsync() is { } line)
        {
            if (line.Contains("\"QMP\"") || line.Contains("\"event\"")) continue;
            if (line.Contains("\"error\"")) throw new InvalidOperationException($"QMP {command} failed: {line}");
            return line;
        }
        throw new InvalidOperationException("QMP closed");
    }

    public Task SetLink(string nicId, bool up) =>
        Qmp($"{{\"execute\":\"set_link\",\"arguments\":{{\"name\":\"{nicId}\",\"up\":{(up ? "true" : "false")}}}}}");

    /// <summary>Runs a command in the guest's test shell; returns its output and exit code.</summary>
    public async Task<(string Output, int Exit)> Shell(string command, TimeSpan? timeout = null)
    {
        var marker = $"__VMNET_END_{++_commands}__";
        await _shell!.WriteAsync(Encoding.UTF8.GetBytes($"{{ {command}\n}} 2>&1; echo \"{marker} $?\"\n"));
        var output = new StringBuilder();
        using var cancel = new CancellationTokenSource(timeout ?? TimeSpan.FromSeconds(30));
        while (await _shellReader!.ReadLineAsync(cancel.Token) is { } line)
        {
            if (line.StartsWith(marker, StringComparison.Ordinal)) return (output.ToString(), int.Parse(line[(marker.Length + 1)..]));
            output.AppendLine(line);
        }
        throw new InvalidOperationException("guest shell closed");
    }

    public async Task<string> WaitForReport(string eventName, TimeSpan timeout, int from = 0, Func<string, bool>? also = null)
    {
        var found = await Reports.WaitFor(l => l.Contains($"\"event\":\"{eventName}\"") && (also?.Invoke(l) ?? true), timeout, from);
        if (found is null)
            Assert.Fail($"no `{eventName}` report within {timeout.TotalSeconds} s. Reports:\n{string.Join("\n", Reports.Snapshot().Select(r => r.Line))}\nSerial console (tail):\n{Tail(SerialLog, 40)}");
        return found.Value.Line;
    }

    public static string Tail(string text, int lines) => string.Join("\n", text.Split('\n').TakeLast(lines));

    public async ValueTask DisposeAsync()
    {
        _cancel.Cancel();
        if (_qemu is { HasExited: false })
        {
            try { await Qmp("{\"execute\":\"quit\"}").WaitAsync(TimeSpan.FromSeconds(2)); } catch (Exception) { }
            if (!_qemu.WaitForExit(TimeSpan.FromSeconds(3))) _qemu.Kill(true);
        }
        _qemu?.Dispose();
        foreach (var d in Enumerable.Reverse(_disposables)) { try { d.Dispose(); } catch (Exception) { } }
        try { Directory.Delete(Dir, true); } catch (IOException) { }
    }
}
