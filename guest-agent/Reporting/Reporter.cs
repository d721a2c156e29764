using System.Runtime.InteropServices;
using System.Text;
using VmNet.Contract;
using VmNet.GuestAgent.Host;

namespace VmNet.GuestAgent.Reporting;

/// <summary>
/// Writes JSON lines to the virtio-serial report port and to stderr. The port is opened non-blocking: while the host
/// side is not connected, lines wait in a queue (at most 1000) and go out on the next <see cref="Flush"/>.
/// The host writes requests on the same port, one JSON line each (<see cref="ReadRequests"/>).
/// </summary>
public sealed class Reporter(IHostFiles host, string? portName, TextWriter log) : IDisposable
{
    private readonly Queue<byte[]> _pending = new();
    private readonly List<byte> _incoming = [];
    private int _fd = -1;
    private bool _warned;

    /// <summary>/dev/virtio-ports/&lt;name&gt;, or the port's /dev/vportNpM found through sysfs when udev made no link.</summary>
    public string? ResolvePort()
    {
        if (portName is null) return null;
        var link = $"dev/virtio-ports/{portName}";
        if (host.Exists(link)) return link;
        foreach (var port in host.List("sys/class/virtio-ports"))
            if (host.Read($"sys/class/virtio-ports/{port}/name") == portName && host.Exists($"dev/{port}"))
                return $"dev/{port}";
        return null;
    }

    /// <summary>Queues one report line and flushes; <paramref name="logged"/> false keeps it off stderr (answers to
    /// the host's queries, which would otherwise fill the journal or serial log at each `vmnet status`).</summary>
    public void Send(AgentEvent report, bool logged = true)
    {
        var json = report.ToLine();
        if (logged) log.WriteLine("vmnet-agent: report " + json);
        if (portName is null) return;
        if (_pending.Count >= 1000) _pending.Dequeue();
        _pending.Enqueue(Encoding.UTF8.GetBytes(json + "\n"));
        Flush();
    }

    public unsafe void Flush()
    {
        if (_pending.Count == 0) return;
        if (_fd < 0 && !TryOpen()) return;
        while (_pending.TryPeek(out var line))
        {
            nint written;
            fixed (byte* p = line) written = Libc.write(_fd, p, line.Length);
            if (written == line.Length) { _pending.Dequeue(); continue; }
            var errno = Marshal.GetLastPInvokeError();
            if (written < 0 && errno == Libc.EAGAIN) return; // host side not connected yet or full: retry later
            if (written >= 0) { _pending.Dequeue(); _pending.Enqueue(line[(int)written..]); return; }
            Warn($"writing to report port `{portName}` failed: {Libc.Describe(errno)}");
            Libc.close(_fd);
            _fd = -1;
            return;
        }
    }

    /// <summary>
    /// The complete lines the host wrote since the last call (without blocking; none while the host side is not
    /// connected). A line longer than 4 KiB is dropped: requests are short.
    /// </summary>
    public unsafe IReadOnlyList<string> ReadRequests()
    {
        if (portName is null || (_fd < 0 && !TryOpen())) return [];
        var buffer = stackalloc byte[512];
        while (true)
        {
            var n = Libc.read(_fd, buffer, 512);
            if (n <= 0) break; // EAGAIN: nothing more; 0: the host side is not connected
            for (var i = 0; i < n; i++) _incoming.Add(buffer[i]);
        }
        var lines = new List<string>();
        int newline;
        while ((newline = _incoming.IndexOf((byte)'\n')) >= 0)
        {
            lines.Add(Encoding.UTF8.GetString(_incoming.GetRange(0, newline).ToArray()).Trim());
            _incoming.RemoveRange(0, newline + 1);
        }
        if (_incoming.Count > 4096) _incoming.Clear();
        return lines;
    }

    private bool TryOpen()
    {
        var path = ResolvePort();
        if (path is null)
        {
            Warn($"report port `{portName}` not found (no /dev/virtio-ports/{portName}); is virtio_console loaded and the port on the VM?");
            return false;
        }
        var full = host is HostFiles real ? real.Full(path) : "/" + path;
        _fd = Libc.open(full, Libc.O_RDWR | Libc.O_NONBLOCK | Libc.O_CLOEXEC);
        if (_fd >= 0) return true;
        var errno = Marshal.GetLastPInvokeError();
        Warn(errno == Libc.EBUSY
            ? $"report port `{portName}` is held by another vmnet-agent; this run reports to stderr only"
            : $"opening report port /{path} failed: {Libc.Describe(errno)}");
        return false;
    }

    private void Warn(string message)
    {
        if (_warned) return;
        _warned = true;
        log.WriteLine("vmnet-agent: " + message);
    }

    public void Dispose()
    {
        if (_fd >= 0) Libc.close(_fd);
        _fd = -1;
    }
}
