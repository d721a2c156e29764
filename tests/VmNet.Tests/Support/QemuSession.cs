using System.Diagnostics;
using System.Globalization;
using System.Net.Sockets;
using System.Text;

namespace VmNet.Tests.Support;

/// <summary>
/// One QEMU process whose channels are unix sockets this process listens on and QEMU connects to at start (QMP, a
/// test shell, report ports, network streams), in a temp directory of its own. The test guest and the lab host both
/// run on it: it starts the process, accepts the connections, speaks QMP and the shell protocol, and cleans up.
/// </summary>
public sealed class QemuSession : IAsyncDisposable
{
    private readonly Dictionary<string, Socket> _listeners = [];
    private readonly List<IDisposable> _disposables = [];
    private readonly CancellationTokenSource _cancel = new();
    private readonly StringBuilder _stderr = new();
    private readonly string _what;
    private Process? _qemu;
    private Stream? _qmp;
    private StreamReader? _qmpReader;
    private Stream? _shell;
    private StreamReader? _shellReader;
    private int _commands;

    /// <param name="what">Names the machine in messages ("guest", "lab host").</param>
    /// <param name="dirPrefix">The temp directory's prefix.</param>
    public QemuSession(string what, string dirPrefix)
    {
        _what = what;
        Dir = Directory.CreateTempSubdirectory(dirPrefix).FullName;
    }

    public string Dir { get; }

    /// <summary>Cancelled when the session is disposed (for pumps reading its streams).</summary>
    public CancellationToken Stopping => _cancel.Token;

    public string Path(string name) => System.IO.Path.Combine(Dir, name);

    /// <summary>The serial console's log (serial.log in <see cref="Dir"/>), or "" before QEMU wrote one.</summary>
    public string SerialLog => File.Exists(Path("serial.log")) ? File.ReadAllText(Path("serial.log")) : "";

    public bool HasExited => _qemu is { HasExited: true };

    /// <summary>Listens on each socket name in <see cref="Dir"/>, for QEMU to connect to once started.</summary>
    public void Listen(IEnumerable<string> names)
    {
        foreach (var name in names)
        {
            var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            socket.Bind(new UnixDomainSocketEndPoint(Path(name)));
            socket.Listen(1);
            _disposables.Add(socket);
            _listeners[name] = socket;
        }
    }

    /// <summary>Starts QEMU (or a script that execs it), collecting its stderr for messages.</summary>
    public void Start(string program, IEnumerable<string> args)
    {
        var psi = new ProcessStartInfo(program, args) { UseShellExecute = false, RedirectStandardError = true, RedirectStandardOutput = true };
        _qemu = Process.Start(psi)!;
        _qemu.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (_stderr) _stderr.AppendLine(e.Data); };
        _qemu.BeginErrorReadLine();
        _qemu.OutputDataReceived += (_, _) => { };
        _qemu.BeginOutputReadLine();
    }

    /// <summary>Waits for QEMU to connect to socket <paramref name="name"/>; fails at once if QEMU exits first.</summary>
    public async Task<Stream> Accept(string name, TimeSpan timeout)
    {
        using var deadline = new CancellationTokenSource(timeout);
        var accept = _listeners[name].AcceptAsync(deadline.Token).AsTask();
        while (!accept.IsCompleted)
        {
            if (_qemu!.HasExited)
            {
                string stderr;
                lock (_stderr) stderr = _stderr.ToString();
                throw new InvalidOperationException($"QEMU exited ({_qemu.ExitCode}) before connecting {name}: {stderr}");
            }
            await Task.WhenAny(accept, Task.Delay(100));
        }
        var stream = new NetworkStream(await accept, ownsSocket: true);
        _disposables.Add(stream);
        return stream;
    }

    /// <summary>Accepts QMP on <paramref name="name"/> and negotiates capabilities.</summary>
    public async Task ConnectQmp(string name, TimeSpan timeout)
    {
        _qmp = await Accept(name, timeout);
        _qmpReader = new StreamReader(_qmp);
        await Qmp("{\"execute\":\"qmp_capabilities\"}");
    }

    /// <summary>Accepts the test shell (a shell reading commands from a virtio-serial port) on <paramref name="name"/>.</summary>
    public async Task ConnectShell(string name, TimeSpan timeout)
    {
        _shell = await Accept(name, timeout);
        _shellReader = new StreamReader(_shell);
    }

    /// <summary>Something to dispose with the session (a peer, a stream).</summary>
    public void Own(IDisposable disposable) => _disposables.Add(disposable);

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

    /// <summary>Runs a command in the test shell; returns its output and exit code. A timeout names the command and
    /// shows its output so far and the serial console's tail.</summary>
    public async Task<(string Output, int Exit)> Shell(string command, TimeSpan timeout)
    {
        var marker = $"__VMNET_END_{++_commands}__";
        await _shell!.WriteAsync(Encoding.UTF8.GetBytes($"{{ {command}\n}} 2>&1; echo \"{marker} $?\"\n"));
        var output = new StringBuilder();
        using var cancel = new CancellationTokenSource(timeout);
        try
        {
            while (await _shellReader!.ReadLineAsync(cancel.Token) is { } line)
            {
                // The marker ends the line: output without a final newline (a pid file) comes before it on the same line.
                if (line.IndexOf(marker, StringComparison.Ordinal) is >= 0 and var at)
                    return (output.Append(line[..at]).ToString(), int.Parse(line[(at + marker.Length + 1)..], CultureInfo.InvariantCulture));
                output.AppendLine(line);
            }
        }
        catch (OperationCanceledException)
        {
            throw new TimeoutException($"{_what} shell: `{command}` did not finish in {timeout.TotalSeconds:0} s; output so far:\n{output}\nserial (tail):\n{Tail(SerialLog, 30)}");
        }
        throw new InvalidOperationException($"{_what} shell closed");
    }

    /// <summary>Whether QEMU exited within <paramref name="timeout"/> (e.g. after the machine powered off).</summary>
    public async Task<bool> WaitForExit(TimeSpan timeout)
    {
        using var cancel = new CancellationTokenSource(timeout);
        try { await _qemu!.WaitForExitAsync(cancel.Token); return true; }
        catch (OperationCanceledException) { return false; }
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
