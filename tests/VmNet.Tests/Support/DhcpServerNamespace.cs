using System.Diagnostics;

namespace VmNet.Tests.Support;

/// <summary>A network namespace the test creates (and deletes on dispose); tests that need one must run as root.</summary>
public sealed class NetNamespace : IDisposable
{
    public string Name { get; }

    private NetNamespace(string name) => Name = name;

    /// <summary>Creates a namespace named <paramref name="prefix"/> plus a unique suffix; fails (CI=true) or skips when not root.</summary>
    public static async Task<NetNamespace> Create(string prefix)
    {
        if (Environment.UserName != "root")
        {
            Unavailable.Here($"network namespaces need root; this test cannot run as {Environment.UserName}");
        }
        var ns = new NetNamespace($"{prefix}{Environment.ProcessId % 100000}{Random.Shared.Next(100, 999)}");
        await ns.Ip("netns", "add", ns.Name);
        return ns;
    }

    /// <summary>Runs `ip ARGS` (in the host's namespace: pass -n for this one) and returns its output; fails the test on an error.</summary>
    public async Task<string> Ip(params string[] args)
    {
        var result = await RequiredTool.Run("ip", args);
        Assert.True(result.ExitCode == 0, $"ip {string.Join(' ', args)} failed: {result.StandardError}");
        return result.StandardOutput;
    }

    public void Dispose()
    {
        if (File.Exists($"/run/netns/{Name}")) RequiredTool.Run("ip", ["netns", "del", Name]).GetAwaiter().GetResult();
    }
}

/// <summary>What a test DHCP server hands out on a /24: the pool, the lease time, the router, DNS server and domain.</summary>
public sealed record DhcpServer(string ServerIp, string PoolStart, string PoolEnd, int LeaseSeconds, string Router, string Dns, string Domain);

/// <summary>
/// busybox's udhcpd, a real DHCP server of its own lineage, serving <see cref="DhcpServer"/> on one link of a
/// namespace; what it logs is kept for failure messages.
/// </summary>
public sealed class Udhcpd : IDisposable
{
    private readonly Process _process;
    private readonly List<string> _log = [];

    private Udhcpd(Process process) => _process = process;

    public string Log { get { lock (_log) return string.Join('\n', _log); } }

    /// <summary>Gives <paramref name="link"/> the server's address, brings it up and starts udhcpd on it.</summary>
    public static async Task<Udhcpd> Start(NetNamespace ns, string link, string dir, DhcpServer server)
    {
        await ns.Ip("-n", ns.Name, "addr", "add", $"{server.ServerIp}/24", "dev", link);
        await ns.Ip("-n", ns.Name, "link", "set", link, "up");
        var conf = Path.Combine(dir, $"udhcpd-{link}.conf");
        var leases = Path.Combine(dir, $"udhcpd-{link}.leases");
        File.WriteAllText(leases, "");
        File.WriteAllText(conf, $"""
            start {server.PoolStart}
            end {server.PoolEnd}
            interface {link}
            lease_file {leases}
            pidfile {Path.Combine(dir, $"udhcpd-{link}.pid")}
            min_lease 4
            opt lease {server.LeaseSeconds}
            opt router {server.Router}
            opt dns {server.Dns}
            opt subnet 255.255.255.0
            opt domain {server.Domain}

            """);
        var process = Process.Start(new ProcessStartInfo(RequiredTool.Path("ip"), ["netns", "exec", ns.Name, RequiredTool.Path("busybox"), "udhcpd", "-f", conf])
        { RedirectStandardError = true, RedirectStandardOutput = true })!;
        var udhcpd = new Udhcpd(process);
        process.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (udhcpd._log) udhcpd._log.Add(e.Data); };
        process.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (udhcpd._log) udhcpd._log.Add(e.Data); };
        process.BeginErrorReadLine();
        process.BeginOutputReadLine();
        return udhcpd;
    }

    public void Stop()
    {
        try { _process.Kill(); _process.WaitForExit(2000); } catch (InvalidOperationException) { }
    }

    public void Dispose()
    {
        Stop();
        _process.Dispose();
    }
}
