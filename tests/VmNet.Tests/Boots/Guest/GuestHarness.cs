using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;

namespace VmNet.Tests.Boots.Guest;

/// <summary>The guest classes, one after the other, beside the lab (<see cref="Support.SlowFirst"/>).</summary>
[CollectionDefinition(Support.SlowFirst.Guest)]
public sealed class GuestCollection;

/// <summary>What the guest tests need on the host, and the test guest image (built by images/guest/build.sh when missing).</summary>
public static class GuestImage
{
    private static readonly Lazy<(string? Dir, string? Problem)> Built = new(Build);

    public static string RepoRoot => Support.Repo.Root;

    /// <summary>The directory holding kernel and initrd, or why it cannot be had (a missing tool).</summary>
    public static (string? Dir, string? Problem) TryGet() => Built.Value;

    public static void MissingOrFail(string problem) => Unavailable.Here(problem);

    /// <summary>The NativeAOT agent images/guest/build.sh publishes (after <see cref="TryGet"/>).</summary>
    public static string AgentBinary =>
        Path.Combine(Environment.GetEnvironmentVariable("VMNET_CACHE") ?? Path.Combine(RepoRoot, ".cache"), "images", "agent", "vmnet-agent");

    private static (string?, string?) Build() =>
        BuildWith("images/guest/build.sh", ["qemu-system-x86_64", "cpio", "depmod", "apt-get", "dpkg-deb", "xz"]);

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

/// <summary>One network of a test guest: the bond's config and a peer on the network's QEMU hub. With
/// <see cref="Dhcp"/>, the bond's address comes from DHCP: busybox's udhcpd serves the hub through a tap device in a
/// network namespace of the test's own (QEMU runs in it; nothing leaves the machine), and hands out
/// <see cref="GuestIp"/> only.</summary>
public sealed record GuestNetwork(string Name, string PeerIp, string GuestIp, int Prefix, IReadOnlyList<(string Name, string Mac)> Members,
    int Miimon = 100, int ArpInterval = 0, int? Mtu = null, int NumGratArp = 3, bool Gateway = true, string? Ipv6 = null, Support.DhcpServer? Dhcp = null)
{
    public string ConfigJson() => JsonSerializer.Serialize(new Dictionary<string, object?>
    {
        ["name"] = Name, ["mode"] = "active-backup", ["miimon"] = Miimon, ["arpInterval"] = ArpInterval,
        ["arpTargets"] = ArpInterval > 0 ? new[] { PeerIp } : Array.Empty<string>(), ["primary"] = Members[0].Name,
        ["failOverMac"] = "active", ["upDelay"] = 0, ["downDelay"] = 0, ["numGratArp"] = NumGratArp, ["mtu"] = Mtu,
        ["members"] = Members.Select(m => new Dictionary<string, string> { ["name"] = m.Name, ["mac"] = m.Mac }).ToArray(),
        ["dhcp"] = Dhcp is not null,
        ["addresses"] = (Dhcp is null ? new[] { $"{GuestIp}/{Prefix}" } : []).Concat(Ipv6 is null ? [] : [Ipv6]).ToArray(),
        ["gateway"] = Gateway && Dhcp is null ? PeerIp : null, ["dns"] = Dhcp is null ? new[] { PeerIp } : [],
    }, GuestJson.Options);

    /// <summary>QEMU's arguments for the DHCP server's link on hub <paramref name="hub"/>: a tap device QEMU makes in the
    /// guest's network namespace, where udhcpd serves it.</summary>
    public IEnumerable<string> DhcpServerArgs(int hub) => Dhcp is null ? [] :
    [
        "-netdev", $"tap,id=dhcp{hub},ifname={TapName(hub)},script=no,downscript=no",
        "-netdev", $"hubport,id=hpd{hub},hubid={hub},netdev=dhcp{hub}",
    ];

    public static string TapName(int hub) => $"vmtap{hub}";
}

internal static class GuestJson
{
    public static readonly JsonSerializerOptions Options = new() { TypeInfoResolver = new System.Text.Json.Serialization.Metadata.DefaultJsonTypeInfoResolver() };
}

/// <summary>Boots one guest per test class and waits for the agent's network-ready report; tests call
/// <see cref="Guest"/>, which skips (or fails when CI=true) when QEMU or a package is missing. By default the test
/// guest of images/guest; subclasses may boot another image (<see cref="Image"/>, <see cref="Boot"/>).</summary>
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

    /// <summary>The image directory to boot, or why it cannot be had (a missing tool or package).</summary>
    protected virtual (string? Dir, string? Problem) Image() => GuestImage.TryGet();

    /// <summary>Starts QEMU on the image directory.</summary>
    protected virtual Task<QemuGuest> Boot(string imageDir) => QemuGuest.Start(imageDir, Networks, Config, Delivery);

    /// <summary>How long the boot may take to the agent's network-ready report.</summary>
    protected virtual TimeSpan ReadyTimeout => TimeSpan.FromSeconds(120);

    public QemuGuest Guest
    {
        get
        {
            if (_problem is not null) GuestImage.MissingOrFail(_problem);
            if (_bootError is not null) throw new InvalidOperationException("the guest did not boot to network-ready", _bootError);
            return _guest!;
        }
    }

    public async ValueTask InitializeAsync()
    {
        var (dir, problem) = await Task.Run(Image);
        if (problem is not null) { _problem = problem; return; }
        try
        {
            _guest = await Boot(dir!);
            ReadyReport = await _guest.WaitForReport("network-ready", ReadyTimeout);
            BootToReady = _guest.Reports.Snapshot().First(r => r.Line == ReadyReport).At - _guest.QemuStarted;
        }
        catch (Exception e) { _bootError = e; }
    }

    /// <summary>Disposes what a subclass made besides the guest (called after QEMU is gone).</summary>
    protected virtual void Cleanup() { }

    public async ValueTask DisposeAsync()
    {
        if (_guest is not null) await _guest.DisposeAsync();
        Cleanup();
        GC.SuppressFinalize(this);
    }
}

public enum ConfigPath { FwCfg, Seed }

/// <summary>What QEMU boots: a kernel and initramfs (direct boot), optionally a root disk image (booted through a
/// qcow2 overlay) and a seed image.</summary>
public sealed record GuestMachine(string Kernel, string Initrd, string Append, int MemoryMiB, string? Disk = null, string? Seed = null,
    string DiskFormat = "raw")
{
    /// <summary>The test guest of images/guest: everything in the initramfs.</summary>
    public static GuestMachine TestGuest(string imageDir) =>
        new(Path.Combine(imageDir, "kernel"), Path.Combine(imageDir, "initrd"), "console=ttyS0 panic=-1 loglevel=4", 384);

    /// <summary>The cloud-init guest of images/cloud-guest: systemd and cloud-init on root.img.</summary>
    public static GuestMachine CloudGuest(string imageDir) =>
        new(Path.Combine(imageDir, "kernel"), Path.Combine(imageDir, "initrd"), "console=ttyS0 panic=-1 loglevel=4", 1024,
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
    public string Dir => _session.Dir;
    public LineLog Reports { get; }
    public IReadOnlyList<EthernetPeer> Peers { get; private set; } = [];
    /// <summary>The DHCP server of each network that has one, by network index.</summary>
    public Dictionary<int, Support.Udhcpd> DhcpServers { get; } = [];
    public IReadOnlyList<GuestNetwork> Networks { get; }
    public TimeSpan QemuStarted { get; private set; }
    private readonly Support.QemuSession _session = new("guest", "vmnet-guest-");
    private Stream? _report;

    private QemuGuest(IReadOnlyList<GuestNetwork> networks)
    {
        Networks = networks;
        Reports = new LineLog(Clock);
    }

    public string SerialLog => _session.SerialLog;

    public static async Task<QemuGuest> Start(string imageDir, GuestNetwork[] networks, string? config = null, ConfigPath delivery = ConfigPath.FwCfg)
    {
        var guest = new QemuGuest(networks);
        try { await guest.Boot(GuestMachine.TestGuest(imageDir), config, delivery); }
        catch { await guest.DisposeAsync(); throw; }
        return guest;
    }

    /// <summary>Boots <paramref name="machine"/> with a seed image made by the caller (vmnet's own seed), no fw_cfg.</summary>
    public static Task<QemuGuest> Start(GuestMachine machine, GuestNetwork[] networks, string seedIso) =>
        Start(machine with { Seed = seedIso }, networks, "", ConfigPath.Seed);

    /// <summary>Boots <paramref name="machine"/>; the agent's config (built from the networks when null) goes by <paramref name="delivery"/>.</summary>
    public static async Task<QemuGuest> Start(GuestMachine machine, GuestNetwork[] networks, string? config, ConfigPath delivery)
    {
        var guest = new QemuGuest(networks);
        try { await guest.Boot(machine, config, delivery); }
        catch { await guest.DisposeAsync(); throw; }
        return guest;
    }

    private async Task Boot(GuestMachine machine, string? rendered, ConfigPath delivery)
    {
        var config = rendered ?? "{\"version\":1,\"hostname\":\"vmnet-test\",\"reportPort\":\"org.vmnet.agent.0\",\"networks\":["
                     + string.Join(",", Networks.Select(n => n.ConfigJson())) + "]}";
        File.WriteAllText(_session.Path("agent.json"), config);
        _session.Listen(new[] { "qmp.sock", "report.sock", "shell.sock" }.Concat(Networks.Select((_, i) => $"peer{i}.sock")));
        var args = new List<string>
        {
            "-accel", "tcg,tb-size=256", "-machine", "q35", "-cpu", "max", "-smp", "1", "-m", machine.MemoryMiB.ToString(CultureInfo.InvariantCulture),
            "-nodefaults", "-display", "none", "-no-reboot",
            "-kernel", machine.Kernel, "-initrd", machine.Initrd, "-append", machine.Append, "-serial", $"file:{_session.Path("serial.log")}",
            "-chardev", $"socket,id=qmp,path={_session.Path("qmp.sock")}", "-mon", "chardev=qmp,mode=control",
            "-device", "virtio-serial-pci,id=vser",
            "-chardev", $"socket,id=report,path={_session.Path("report.sock")}", "-device", "virtserialport,chardev=report,name=org.vmnet.agent.0",
            "-chardev", $"socket,id=shell,path={_session.Path("shell.sock")}", "-device", "virtserialport,chardev=shell,name=org.vmnet.test.0",
        };
        if (machine.Disk is { } disk)
        {
            // A copy-on-write overlay, so the cached image stays as built.
            var overlay = _session.Path("disk.qcow2");
            await CliWrap.Buffered.BufferedCommandExtensions.ExecuteBufferedAsync(
                CliWrap.Cli.Wrap("qemu-img").WithArguments(["create", "-q", "-f", "qcow2", "-b", disk, "-F", machine.DiskFormat, overlay]));
            args.AddRange(["-drive", $"file={overlay},if=virtio,format=qcow2"]);
        }
        if (delivery == ConfigPath.FwCfg)
            args.AddRange(["-fw_cfg", $"name=opt/vmnet/agent.json,file={_session.Path("agent.json")}"]);
        else
        {
            // The seed as vmnet writes it (label cidata, the agent's config at vmnet/agent.json), on the q35 AHCI CD-ROM.
            var seed = machine.Seed;
            if (seed is null)
            {
                seed = _session.Path("seed.iso");
                VmNet.Seed.IsoImageWriter.WriteFile(seed, VmNet.Seed.SeedImage.VolumeLabel,
                    [new VmNet.Seed.IsoFile("meta-data", "instance-id: vmnet-test\n"u8.ToArray()), new VmNet.Seed.IsoFile(VmNet.GuestAgent.Config.ConfigLoader.SeedFile, System.Text.Encoding.UTF8.GetBytes(config))]);
            }
            args.AddRange(["-drive", $"file={seed},if=none,id=seed,format=raw,readonly=on,media=cdrom", "-device", "ide-cd,drive=seed,bus=ide.0"]);
        }
        for (var i = 0; i < Networks.Count; i++)
        {
            args.AddRange(["-netdev", $"stream,id=peer{i},server=off,addr.type=unix,addr.path={_session.Path($"peer{i}.sock")}",
                "-netdev", $"hubport,id=hpp{i},hubid={i},netdev=peer{i}"]);
            args.AddRange(Networks[i].DhcpServerArgs(i));
            for (var j = 0; j < Networks[i].Members.Count; j++)
                args.AddRange(["-netdev", $"hubport,id=hp{i}{j},hubid={i}",
                    "-device", $"e1000e,netdev=hp{i}{j},id={NicId(i, j)},mac={Networks[i].Members[j].Mac}"]);
        }
        QemuStarted = Clock.Elapsed;
        Support.NetNamespace? ns = null;
        if (Networks.Any(n => n.Dhcp is not null))
        {
            // QEMU makes the DHCP servers' tap devices in a namespace of their own; its unix sockets work across namespaces.
            ns = await Support.NetNamespace.Create("vmnet-g");
            _session.Own(ns);
            _session.Start(Support.RequiredTool.Path("ip"), ["netns", "exec", ns.Name, "qemu-system-x86_64", .. args]);
        }
        else _session.Start("qemu-system-x86_64", args);

        var connect = TimeSpan.FromSeconds(30);
        await _session.ConnectQmp("qmp.sock", connect);
        for (var i = 0; i < Networks.Count; i++)
            if (Networks[i].Dhcp is { } server)
            {
                var udhcpd = await Support.Udhcpd.Start(ns!, GuestNetwork.TapName(i), _session.Dir, server);
                _session.Own(udhcpd);
                DhcpServers[i] = udhcpd;
            }
        _report = await _session.Accept("report.sock", connect);
        _ = LineLog.Pump(_report, Reports, _session.Stopping);
        await _session.ConnectShell("shell.sock", connect);
        var peers = new List<EthernetPeer>();
        for (var i = 0; i < Networks.Count; i++)
        {
            var peer = new EthernetPeer(await _session.Accept($"peer{i}.sock", connect), Networks[i].PeerIp, Networks[i].GuestIp, (byte)(0x10 + i), Clock);
            _session.Own(peer);
            peers.Add(peer);
        }
        Peers = peers;
    }

    public static string NicId(int network, int member) => $"nic{network}{member}";

    /// <summary>Sends one QMP command and returns its "return" (or throws on "error"); events are skipped.</summary>
    public Task<string> Qmp(string command) => _session.Qmp(command);

    public Task SetLink(string nicId, bool up) =>
        Qmp($"{{\"execute\":\"set_link\",\"arguments\":{{\"name\":\"{nicId}\",\"up\":{(up ? "true" : "false")}}}}}");

    /// <summary>Runs a command in the guest's test shell; returns its output and exit code.</summary>
    public Task<(string Output, int Exit)> Shell(string command, TimeSpan? timeout = null) =>
        _session.Shell(command, timeout ?? TimeSpan.FromSeconds(120));

    /// <summary>Runs a command that must succeed; logs it and its output to <paramref name="output"/>.</summary>
    public async Task<string> Must(string command, ITestOutputHelper output, TimeSpan? timeout = null)
    {
        var (text, exit) = await Shell(command, timeout ?? TimeSpan.FromSeconds(120));
        output.WriteLine($"$ {command}\n{text}");
        Assert.True(exit == 0, $"`{command}` exited {exit}:\n{text}");
        return text;
    }

    /// <summary>Writes a line to the agent on its report port, as `vmnet status` does (e.g. the state query).</summary>
    public async Task SendToAgent(string line) => await _report!.WriteAsync(Encoding.UTF8.GetBytes(line.TrimEnd('\n') + "\n"));

    /// <summary>Whether QEMU exited within <paramref name="timeout"/> (e.g. after the guest powered off).</summary>
    public Task<bool> WaitForExit(TimeSpan timeout) => _session.WaitForExit(timeout);

    public async Task<string> WaitForReport(string eventName, TimeSpan timeout, int from = 0, Func<string, bool>? also = null)
    {
        var found = await Reports.WaitFor(l => l.Contains($"\"event\":\"{eventName}\"") && (also?.Invoke(l) ?? true), timeout, from);
        if (found is null)
            Assert.Fail($"no `{eventName}` report within {timeout.TotalSeconds} s. Reports:\n{string.Join("\n", Reports.Snapshot().Select(r => r.Line))}\nSerial console (tail):\n{Tail(SerialLog, 40)}");
        return found.Value.Line;
    }

    public static string Tail(string text, int lines) => Support.QemuSession.Tail(text, lines);

    public ValueTask DisposeAsync() => _session.DisposeAsync();
}
