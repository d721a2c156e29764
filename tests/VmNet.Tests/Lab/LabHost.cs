using System.Diagnostics;
using System.Net.Sockets;
using System.Text;
using VmNet.Tests.Guest;
using VmNet.Tests.Support;

namespace VmNet.Tests.Lab;

[CollectionDefinition("Lab", DisableParallelization = true)]
public sealed class LabCollection;

/// <summary>
/// The emulated SR-IOV host of images/lab/ (lab.sh run DIR) under QEMU TCG: two igb PFs, each on its own emulated
/// switch; the switches' far ends are unix sockets this process listens on, joined by one <see cref="EthernetPeer"/>
/// (192.168.40.1, tagging VLAN 40) as if both switches were linked upstream. QMP, the test shell (bash from the
/// machine's own / over 9p) and the agent's report port are unix sockets too. Nothing leaves the machine.
/// </summary>
public sealed class LabHost : IAsyncDisposable
{
    public const ushort Vlan = 40;
    /// <summary>A second VLAN on the same switches; the peer answers there too, with the same address.</summary>
    public const ushort OtherVlan = 41;
    public const string PeerIp = "192.168.40.1";
    public const string GuestIp = "192.168.40.11";

    public Stopwatch Clock { get; } = Stopwatch.StartNew();
    public string Dir { get; } = Directory.CreateTempSubdirectory("vmnet-lab-").FullName;
    public LineLog Reports { get; }
    public EthernetPeer Peer { get; private set; } = null!;
    public TimeSpan QemuStarted { get; private set; }
    private readonly List<IDisposable> _disposables = [];
    private readonly CancellationTokenSource _cancel = new();
    private readonly StringBuilder _stderr = new();
    private Process? _qemu;
    private Stream? _shell;
    private StreamReader? _shellReader;
    private Stream? _qmp;
    private StreamReader? _qmpReader;
    private int _commands;

    private LabHost() => Reports = new LineLog(Clock);

    public string SerialLog => File.Exists(Path.Combine(Dir, "serial.log")) ? File.ReadAllText(Path.Combine(Dir, "serial.log")) : "";

    /// <summary>The lab image (images/lab/lab.sh build), or why it cannot be had: a missing tool or package.</summary>
    public static (string? Dir, string? Problem) Image()
    {
        if (RequiredTool.Find("qemu-system-x86_64") is null) return (null, RequiredTool.MissingMessage("qemu-system-x86_64"));
        var (output, exit, stderr) = Repo.RunScript("images/lab/lab.sh", ["build"]);
        if (exit == 3) return (null, stderr.Trim());
        if (exit != 0) throw new InvalidOperationException($"images/lab/lab.sh build failed ({exit}):\n{stderr}");
        return (output.Trim().Split('\n')[^1], null);
    }

    /// <summary>vmnet-agent (NativeAOT) as images/guest/build.sh publishes it; the lab host runs it from the 9p root.</summary>
    public static (string? Path, string? Problem) Agent()
    {
        if (Environment.GetEnvironmentVariable("VMNET_AGENT_BIN") is { Length: > 0 } bin) return (bin, null);
        var (guest, problem) = GuestImage.TryGet();
        if (problem is not null) return (null, problem);
        return (Path.Combine(Path.GetDirectoryName(guest!)!, "agent", "vmnet-agent"), null);
    }

    public static async Task<LabHost> Start()
    {
        var lab = new LabHost();
        try { await lab.Boot(); }
        catch { await lab.DisposeAsync(); throw; }
        return lab;
    }

    private async Task Boot()
    {
        var listeners = new[] { "qmp.sock", "report.sock", "shell.sock", "peer0.sock", "peer1.sock" }.ToDictionary(n => n, n =>
        {
            var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            socket.Bind(new UnixDomainSocketEndPoint(Path.Combine(Dir, n)));
            socket.Listen(1);
            _disposables.Add(socket);
            return socket;
        });
        var psi = new ProcessStartInfo("bash", [Repo.File("images/lab/lab.sh"), "run", Dir])
        {
            UseShellExecute = false, RedirectStandardError = true, RedirectStandardOutput = true,
        };
        QemuStarted = Clock.Elapsed;
        _qemu = Process.Start(psi)!;
        _qemu.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (_stderr) _stderr.AppendLine(e.Data); };
        _qemu.BeginErrorReadLine();
        _qemu.OutputDataReceived += (_, _) => { };
        _qemu.BeginOutputReadLine();

        async Task<Stream> Accept(string name)
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
            var accept = listeners[name].AcceptAsync(timeout.Token).AsTask();
            while (!accept.IsCompleted)
            {
                if (_qemu.HasExited) throw new InvalidOperationException($"QEMU exited ({_qemu.ExitCode}) before connecting {name}: {_stderr}");
                await Task.WhenAny(accept, Task.Delay(100));
            }
            var stream = new NetworkStream(await accept, ownsSocket: true);
            _disposables.Add(stream);
            return stream;
        }

        _qmp = await Accept("qmp.sock");
        _qmpReader = new StreamReader(_qmp);
        _ = LineLog.Pump(await Accept("report.sock"), Reports, _cancel.Token);
        _shell = await Accept("shell.sock");
        _shellReader = new StreamReader(_shell);
        Peer = new EthernetPeer([await Accept("peer0.sock"), await Accept("peer1.sock")], PeerIp, GuestIp, 0x40, Clock, Vlan, alsoOn: [OtherVlan]);
        _disposables.Add(Peer);
        await Qmp("{\"execute\":\"qmp_capabilities\"}");
    }

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

    /// <summary>The emulated cable between PF <paramref name="pf"/> and its switch (QMP set_link on pf0 / pf1).</summary>
    public Task Cable(int pf, bool connected) =>
        Qmp($"{{\"execute\":\"set_link\",\"arguments\":{{\"name\":\"pf{pf}\",\"up\":{(connected ? "true" : "false")}}}}}");

    /// <summary>Runs a bash command in the lab host; returns its output and exit code.</summary>
    public async Task<(string Output, int Exit)> Shell(string command, TimeSpan? timeout = null)
    {
        var marker = $"__VMNET_END_{++_commands}__";
        await _shell!.WriteAsync(Encoding.UTF8.GetBytes($"{{ {command}\n}} 2>&1; echo \"{marker} $?\"\n"));
        var output = new StringBuilder();
        using var cancel = new CancellationTokenSource(timeout ?? TimeSpan.FromSeconds(60));
        try
        {
            while (await _shellReader!.ReadLineAsync(cancel.Token) is { } line)
            {
                if (line.StartsWith(marker, StringComparison.Ordinal)) return (output.ToString(), int.Parse(line[(marker.Length + 1)..]));
                output.AppendLine(line);
            }
        }
        catch (OperationCanceledException)
        {
            throw new TimeoutException($"lab shell: `{command}` did not finish in time; output so far:\n{output}\nserial (tail):\n{QemuGuest.Tail(SerialLog, 30)}");
        }
        throw new InvalidOperationException("lab shell closed");
    }

    /// <summary>Runs a command that must succeed.</summary>
    public async Task<string> Must(string command, TimeSpan? timeout = null)
    {
        var (output, exit) = await Shell(command, timeout);
        if (exit != 0) Assert.Fail($"in the lab host `{command}` exited {exit}:\n{output}");
        return output;
    }

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
