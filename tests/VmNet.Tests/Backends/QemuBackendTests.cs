using VmNet.Backends;
using VmNet.Host;
using VmNet.Tests.Support;

namespace VmNet.Tests.Backends;

[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed class QemuBackendTests : IDisposable
{
    private readonly TestVm _vm = new(name: "qvm1", backend: "qemu", accel: "tcg", memory: "128MiB");

    public void Dispose() => _vm.Dispose();

    private static CancellationToken Cancel => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Qemu_runs_the_rendered_argv_with_the_seed_attached_and_stops_by_qmp()
    {
        RequiredTool.Path("qemu-system-x86_64");
        await _vm.CreateBaseImage();
        var backend = new QemuBackend(_vm.State);
        var paths = _vm.Plan.Paths;
        // This machine has no VFIO: the vfio-pci devices are left out; everything else is the rendered argv.
        var artifacts = _vm.Artifacts with { QemuArgs = _vm.QemuArgsWithoutVfio() };
        Assert.Contains($"tcg,tb-size={VmNet.Rendering.Renderer.TcgCacheMiB}", artifacts.QemuArgs);

        await TestVm.PrepareAsync(_vm.Plan, artifacts, null, Cancel);
        await TestVm.DefineAndStartAsync(backend, _vm.Plan, artifacts, Cancel);
        try
        {
            var process = backend.Running("qvm1");
            Assert.NotNull(process);
            Assert.True(File.Exists(paths.PidFile));
            Assert.True(File.Exists(paths.ConsoleSocket), "the serial console's socket (logged to serial.log) is there to attach to");
            await using (var qmp = await QmpClient.ConnectAsync(paths.QmpSocket, Cancel))
            {
                Assert.Equal(new QmpStatus("running", true), await qmp.QueryStatusAsync(Cancel));
                var blocks = await qmp.QueryBlockAsync(Cancel);
                var seed = Assert.Single(blocks, b => b.Device == "seed");
                Assert.Equal(paths.Seed, seed.Inserted?.File);
                Assert.True(seed.Inserted?.ReadOnly);
                Assert.Contains(blocks, b => b.Inserted?.File == paths.Disk);
            }
            var status = await backend.StatusAsync("qvm1", Cancel);
            Assert.Equal("running", status?.State);
            Assert.Equal(["storage0", "storage1"], status!.Vfs.Select(v => v.Member));
            Assert.Equal([40, 40], status.Vfs.Select(v => v.Vlan));
            Assert.True(await backend.IsDefinedAsync("qvm1", Cancel));
            await TestVm.DefineAndStartAsync(backend, _vm.Plan, artifacts, Cancel); // already running: nothing happens
            Assert.Equal(process, backend.Running("qvm1"));

            // No guest OS answers the ACPI power button here, so after the grace period QMP quit ends QEMU.
            var stopped = await backend.StopAsync("qvm1", TimeSpan.FromSeconds(1), Cancel);

            Assert.Equal(StopResult.Forced, stopped);
            Assert.False(process.Value.IsAlive);
            Assert.False(File.Exists(paths.PidFile));
            Assert.False(File.Exists(paths.QmpSocket));
            Assert.Equal("shut off", (await backend.StatusAsync("qvm1", Cancel))?.State);
            Assert.Equal(StopResult.AlreadyStopped, await backend.StopAsync("qvm1", TimeSpan.FromSeconds(1), Cancel));
            Assert.True(File.Exists(paths.Disk));   // down keeps the VM's files
            Assert.Equal(["qvm1"], (await backend.ListAsync(Cancel)).Select(s => s.Name));

            await backend.RemoveAsync("qvm1", TimeSpan.FromSeconds(1), Cancel);
            await backend.RemoveAsync("qvm1", TimeSpan.FromSeconds(1), Cancel);

            Assert.False(Directory.Exists(paths.VmDir));
            Assert.Null(await backend.StatusAsync("qvm1", Cancel));
            Assert.Empty(await backend.ListAsync(Cancel));
        }
        finally
        {
            if (backend.Running("qvm1") is { } left)
                System.Diagnostics.Process.GetProcessById(left.Pid).Kill();
        }
    }

    [Fact]
    public async Task A_stale_pid_file_naming_another_process_is_not_the_vm()
    {
        Directory.CreateDirectory(_vm.Plan.Paths.VmDir);
        File.WriteAllText(_vm.Plan.Paths.PidFile, Environment.ProcessId.ToString(System.Globalization.CultureInfo.InvariantCulture));
        var backend = new QemuBackend(_vm.State);

        Assert.Null(backend.Running("qvm1"));
        Assert.Equal(StopResult.AlreadyStopped, await backend.StopAsync("qvm1", TimeSpan.FromSeconds(1), Cancel));
        Assert.False(File.Exists(_vm.Plan.Paths.PidFile));
    }

    [Fact]
    public void A_process_is_known_by_its_pid_and_start_time()
    {
        var self = HostProcess.Find(Environment.ProcessId);

        Assert.NotNull(self);
        Assert.True(self.Value.IsAlive);
        Assert.True(HostProcess.TryParse(self.Value.ToString(), out var parsed));
        Assert.Equal(self, parsed);
        Assert.False((self.Value with { StartTicks = self.Value.StartTicks + 1 }).IsAlive);
        Assert.Null(HostProcess.Find(int.MaxValue));
    }

    [Fact]
    public async Task A_socket_that_accepts_and_never_greets_or_floods_fails_within_the_reply_timeout()
    {
        var path = _vm.Dir["qmp-silent.sock"];
        using var listener = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.Unix, System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Unspecified);
        listener.Bind(new System.Net.Sockets.UnixDomainSocketEndPoint(path));
        listener.Listen();
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var silent = await Assert.ThrowsAsync<QmpException>(() => QmpClient.ConnectAsync(path, Cancel, TimeSpan.FromSeconds(1)));
        Assert.Equal($"QEMU did not answer on its QMP socket {path} within 1 s; is it hung? (`vmnet status`, or stop it with `vmnet down`)", silent.Message);
        Assert.InRange(clock.Elapsed, TimeSpan.FromSeconds(0.9), TimeSpan.FromSeconds(30)); // the timer may fire a hair before the stopwatch says 1 s

        // One that answers with an endless line: refused after 1 MiB, not read into memory whole.
        path = _vm.Dir["qmp-flood.sock"];
        using var flooding = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.Unix, System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Unspecified);
        flooding.Bind(new System.Net.Sockets.UnixDomainSocketEndPoint(path));
        flooding.Listen();
        var flood = Task.Run(async () =>
        {
            using var client = await flooding.AcceptAsync(Cancel);
            var junk = new byte[65536];
            Array.Fill(junk, (byte)'x');
            try { for (var i = 0; i < 64; i++) await client.SendAsync(junk, Cancel); }
            catch (System.Net.Sockets.SocketException) { }
        }, Cancel);
        var flooded = await Assert.ThrowsAsync<QmpException>(() => QmpClient.ConnectAsync(path, Cancel, TimeSpan.FromSeconds(30)));
        Assert.Equal($"{path} sent a message longer than 1 MiB: not QEMU's QMP", flooded.Message);
        await flood;
    }
}
