using System.Diagnostics;
using VmNet.Tests.Support;

namespace VmNet.Tests.Boots.Lab;

/// <summary>The qemu-backend lab (LabVmNetTests: one nested guest), on the thread that ran the guests, after the demo.</summary>
[CollectionDefinition(SlowFirst.Lab)]
public sealed class LabCollection;

/// <summary>The README's demo (one nested guest), the first collection a thread takes once the guests and the fast tier are done.</summary>
[CollectionDefinition(SlowFirst.LabDemo)]
public sealed class LabDemoCollection;

/// <summary>The failover lab (no nested guest: the agent runs in the lab host), last.</summary>
[CollectionDefinition(SlowFirst.LabFailover)]
public sealed class LabFailoverCollection;

/// <summary>
/// The libvirt lab (its own lab host, with a disk; one nested guest at a time), started first, beside the guest
/// collection and the fast tier (<see cref="SlowFirst"/>). At most two nested guests run at once, one per core: three
/// (two labs side by side, one with two guests) took over 10 minutes a boot.
/// </summary>
[CollectionDefinition(SlowFirst.LabLibvirt)]
public sealed class LabLibvirtCollection;

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

    /// <summary>
    /// The nested test guest's kernel command line. Under TCG inside TCG its kernel takes 70 to 90 s to reach /init;
    /// initcall_debug there showed crypto_kdf108_init (a self-test of a key derivation nothing here uses) at 9.5 s and
    /// the crypto manager's self-tests at 3.6 s: both are skipped. A second trace (2026-12-02, quiet machine) put
    /// inet6_init first at 10.9 s (no lab guest uses IPv6: ipv6.disable=1), serial8250_init at 1.9 s probing four
    /// UARTs (one is used: 8250.nr_uarts=1) and i8042_init at 1.1 s (no keyboard: the power button is ACPI's). With
    /// those, /init came at 68 s of guest uptime instead of 90. images/lab/demo-inside.sh boots the demo with the same.
    /// </summary>
    public const string GuestCmdline = "console=ttyS0 panic=-1 loglevel=4 initcall_blacklist=crypto_kdf108_init,i8042_init cryptomgr.notests ipv6.disable=1 8250.nr_uarts=1";

    /// <summary>
    /// The nested guests' memory. VFIO pins all of it when QEMU starts, page by page under TCG: QEMU start to the
    /// kernel's clock took 39 s with 384 MiB and 28 s with 256 MiB (the guest uses under 100 MiB).
    /// </summary>
    public const string GuestMemory = "256MiB";

    public Stopwatch Clock { get; } = Stopwatch.StartNew();
    public string Dir => _session.Dir;
    public LineLog Reports { get; }
    public EthernetPeer Peer { get; private set; } = null!;
    public TimeSpan QemuStarted { get; private set; }
    private readonly QemuSession _session = new("lab", "vmnet-lab-");

    private LabHost() => Reports = new LineLog(Clock);

    public string SerialLog => _session.SerialLog;

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
        var (_, problem) = GuestImage.TryGet();
        return problem is not null ? (null, problem) : (GuestImage.AgentBinary, null);
    }

    /// <summary>
    /// Boots the lab host; <paramref name="disk"/> (a raw image) becomes its /dev/vda (lab.sh's LAB_DISK). With
    /// <paramref name="numa"/> it has two NUMA nodes and its PFs on node 1 behind a pxb-pcie (lab.sh's LAB_NUMA):
    /// 0000:81:00.0 and 0000:82:00.0.
    /// </summary>
    public static async Task<LabHost> Start(string? disk = null, bool numa = false)
    {
        var lab = new LabHost();
        try { await lab.Boot(disk, numa); }
        catch { await lab.DisposeAsync(); throw; }
        return lab;
    }

    private async Task Boot(string? disk, bool numa)
    {
        _session.Listen(["qmp.sock", "report.sock", "shell.sock", "peer0.sock", "peer1.sock"]);
        QemuStarted = Clock.Elapsed;
        _session.Start("env", [$"LAB_DISK={disk}", $"LAB_NUMA={(numa ? "1" : "")}", "bash", Repo.File("images/lab/lab.sh"), "run", Dir]);

        var connect = TimeSpan.FromSeconds(60);
        await _session.ConnectQmp("qmp.sock", connect);
        _ = LineLog.Pump(await _session.Accept("report.sock", connect), Reports, _session.Stopping);
        await _session.ConnectShell("shell.sock", connect);
        Peer = new EthernetPeer([await _session.Accept("peer0.sock", connect), await _session.Accept("peer1.sock", connect)], PeerIp, GuestIp, 0x40, Clock, Vlan, alsoOn: [OtherVlan]);
        _session.Own(Peer);
    }

    /// <summary>Sends one QMP command and returns its "return" (or throws on "error"); events are skipped.</summary>
    public Task<string> Qmp(string command) => _session.Qmp(command);

    /// <summary>The emulated cable between PF <paramref name="pf"/> and its switch (QMP set_link on pf0 / pf1).</summary>
    public Task Cable(int pf, bool connected) =>
        Qmp($"{{\"execute\":\"set_link\",\"arguments\":{{\"name\":\"pf{pf}\",\"up\":{(connected ? "true" : "false")}}}}}");

    /// <summary>Runs a bash command in the lab host; returns its output and exit code.</summary>
    public Task<(string Output, int Exit)> Shell(string command, TimeSpan? timeout = null) =>
        _session.Shell(command, timeout ?? TimeSpan.FromSeconds(60));

    /// <summary>Runs a command that must succeed.</summary>
    public async Task<string> Must(string command, TimeSpan? timeout = null)
    {
        var (output, exit) = await Shell(command, timeout);
        if (exit != 0) Assert.Fail($"in the lab host `{command}` exited {exit}:\n{output}");
        return output;
    }

    /// <summary>Powers the lab host off as a power loss would (after a sync): sysrq 'o'; waits for QEMU to exit.</summary>
    public async Task PowerOff()
    {
        await Must("sync");
        try { await Shell("echo o > /proc/sysrq-trigger", TimeSpan.FromSeconds(10)); }
        catch (Exception e) when (e is InvalidOperationException or IOException or TimeoutException) { }
        if (!await _session.WaitForExit(TimeSpan.FromSeconds(60))) Assert.Fail("the lab host did not power off within 60 s of sysrq 'o'");
    }

    public ValueTask DisposeAsync() => _session.DisposeAsync();
}
