using System.Net.Sockets;
using VmNet.Backends;
using VmNet.Host;
using VmNet.Tests.Support;

namespace VmNet.Tests.Backends;

[CollectionDefinition("Libvirtd", DisableParallelization = true)]
public sealed class LibvirtdCollection : ICollectionFixture<LibvirtdFixture>;

/// <summary>
/// A real libvirtd for the tests, started without systemd the way ANCHORS describes: user/group <c>libvirt-qemu</c>,
/// <c>/var/log/libvirt</c>, <c>virtlogd -d</c> (reused when one already serves /run/libvirt/virtlogd-sock), then
/// <c>libvirtd -d</c> with a config of its own whose <c>unix_sock_dir</c> is a temp directory, so tests connect through
/// <c>qemu+unix:///system?socket=...</c> and never touch the machine's default socket. Both daemons started here are
/// ended at the end (SIGTERM, then SIGKILL). When the machine's own libvirtd already serves /run/libvirt/libvirt-sock, it is
/// used instead (a second privileged libvirtd could not run its qemu driver next to it). Needs root (the tests run as root here); otherwise skips, or fails when CI=true.
/// </summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed class LibvirtdFixture : IAsyncLifetime
{
    private const string VirtlogdSocket = "/run/libvirt/virtlogd-sock";
    private const string SystemSocket = "/run/libvirt/libvirt-sock";
    private readonly TempDir _dir = new();
    private HostProcess? _libvirtd;
    private HostProcess? _virtlogd;
    private string? _problem;
    private bool _reuseSystem;

    /// <summary>The URI of the private daemon; skips (or fails under CI=true) when it could not be started for lack of a tool or of root.</summary>
    public string Uri
    {
        get
        {
            if (_problem is not null) Unavailable.Here(_problem);
            return _reuseSystem ? "qemu:///system" : $"qemu+unix:///system?socket={SocketPath}";
        }
    }

    private string SocketPath => Path.Join(_dir.Path, "sock", "libvirt-sock");

    /// <summary>How long starting the daemons took (the first start on a machine also probes QEMU's capabilities).</summary>
    public TimeSpan StartTime { get; private set; }

    public async ValueTask InitializeAsync()
    {
        foreach (var tool in new[] { "libvirtd", "virtlogd", "qemu-system-x86_64", "qemu-img" })
            if (RequiredTool.Find(tool) is null) { _problem = RequiredTool.MissingMessage(tool); return; }
        if (Environment.UserName != "root") { _problem = "a real libvirtd needs root: run the tests as root"; return; }

        // Two privileged libvirtds cannot share the qemu driver's state (/run/libvirt/qemu): use the machine's when it runs.
        if (CanConnect(SystemSocket)) { _reuseSystem = true; return; }

        var clock = System.Diagnostics.Stopwatch.StartNew();
        if (await Run("getent", "passwd", "libvirt-qemu") != 0)
        {
            if (await Run("getent", "group", "libvirt-qemu") != 0)
                await Must("groupadd", "--system", "libvirt-qemu");
            await Must("useradd", "--system", "--gid", "libvirt-qemu", "--home-dir", "/var/lib/libvirt", "--shell", "/usr/sbin/nologin", "libvirt-qemu");
        }
        Directory.CreateDirectory("/var/log/libvirt");

        if (!CanConnect(VirtlogdSocket))
        {
            var pidFile = _dir["virtlogd.pid"];
            await Must(RequiredTool.Path("virtlogd"), "-d", "-p", pidFile);
            _virtlogd = await WaitForPid(pidFile);
            await WaitFor(() => CanConnect(VirtlogdSocket), "virtlogd's socket " + VirtlogdSocket);
        }

        Directory.CreateDirectory(Path.GetDirectoryName(SocketPath)!);
        var config = _dir.Write("libvirtd.conf", $"""
            unix_sock_dir = "{Path.GetDirectoryName(SocketPath)}"
            auth_unix_rw = "none"
            auth_unix_ro = "none"
            """);
        var libvirtdPid = _dir["libvirtd.pid"];
        await Must(RequiredTool.Path("libvirtd"), "-d", "-f", config, "-p", libvirtdPid);
        _libvirtd = await WaitForPid(libvirtdPid);
        await WaitFor(() => CanConnect(SocketPath), "libvirtd's socket " + SocketPath);
        StartTime = clock.Elapsed;
    }

    public async ValueTask DisposeAsync()
    {
        await Stop(_libvirtd);
        await Stop(_virtlogd);
        _dir.Dispose();
    }

    private static async Task Stop(HostProcess? process)
    {
        if (process is not { } p || !p.IsAlive) return;
        await Run("kill", "-TERM", p.Pid.ToString(System.Globalization.CultureInfo.InvariantCulture));
        for (var i = 0; i < 100 && p.IsAlive; i++) await Task.Delay(100);
        if (p.IsAlive)
        {
            using var os = System.Diagnostics.Process.GetProcessById(p.Pid);
            os.Kill();
        }
    }

    private static bool CanConnect(string path)
    {
        if (!File.Exists(path)) return false;
        using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            socket.Connect(new UnixDomainSocketEndPoint(path));
            return true;
        }
        catch (SocketException)
        {
            return false;
        }
    }

    private static async Task<HostProcess> WaitForPid(string pidFile)
    {
        HostProcess? found = null;
        await WaitFor(() => File.Exists(pidFile) && int.TryParse(File.ReadAllText(pidFile).Trim(), out var pid)
            && (found = HostProcess.Find(pid)) is not null, "pid file " + pidFile);
        return found!.Value;
    }

    private static async Task WaitFor(Func<bool> ready, string what)
    {
        for (var i = 0; i < 300; i++)
        {
            if (ready()) return;
            await Task.Delay(100);
        }
        throw new InvalidOperationException($"{what} did not appear within 30 s; see /var/log/libvirt");
    }

    private static async Task<int> Run(string program, params string[] args) =>
        (await CliWrap.Cli.Wrap(program).WithArguments(args).WithValidation(CliWrap.CommandResultValidation.None)
            .ExecuteAsync()).ExitCode;

    private static async Task Must(string program, params string[] args)
    {
        var result = await CliWrap.Buffered.BufferedCommandExtensions.ExecuteBufferedAsync(
            CliWrap.Cli.Wrap(program).WithArguments(args).WithValidation(CliWrap.CommandResultValidation.None));
        if (result.ExitCode != 0)
            throw new InvalidOperationException($"{program} {string.Join(' ', args)} failed ({result.ExitCode}): {result.StandardError.Trim()}");
    }
}
