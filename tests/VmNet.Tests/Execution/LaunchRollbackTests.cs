using VmNet.Backends;
using VmNet.Execution;
using VmNet.Host;
using VmNet.Leases;
using VmNet.Planning;
using VmNet.Rendering;
using VmNet.Sim;
using VmNet.Spec;
using VmNet.State;

namespace VmNet.Tests.Execution;

/// <summary>
/// The whole launch as one transaction: host steps, the hand-over of the leases, seed, overlay, define and start, on a
/// simulated host and a private libvirt test-driver host (test:///FILE, kept by the backend's connection). A failure
/// at any step leaves the host, the ledger, the VM's files and libvirt as they were, for a new VM, for a running VM
/// whose VLAN changes live, and for a VM that was up before and is upped again with another network once stopped
/// (while it runs, that change is refused).
/// </summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed class LaunchRollbackTests : IDisposable
{
    private readonly TempDir _dir = new();
    private readonly CancellationToken _ct = TestContext.Current.CancellationToken;
    private readonly LibvirtBackend _libvirt;
    private readonly LaunchOptions _options;

    public LaunchRollbackTests()
    {
        SimHost.Create(_dir["host"], NicShape.ConnectX5(), pfs: 2, numVfs: 4);
        var uri = "test://" + _dir.Write("node.xml", "<node/>");
        _libvirt = new LibvirtBackend(uri, new StateDir(_dir["state"]));
        _options = new LaunchOptions { LibvirtUri = uri, Agent = null };
    }

    public void Dispose()
    {
        _libvirt.Dispose();
        _dir.Dispose();
    }

    private VmSpec Spec(bool twoNetworks, int vlan = 40) => SpecLoader.Load($$"""
        name: tx1
        accel: tcg
        memory: 256MiB
        disk: {image: {{_dir["base.qcow2"]}}}
        networks:
          - name: storage
            vlan: {{vlan}}
            ports: [enp3s0f0np0, enp3s0f1np1]
            address: 192.168.40.11/24
        {{(twoNetworks ? "  - name: public\n    vlan: 10\n    ports: [enp3s0f0np0, enp3s0f1np1]\n    address: 203.0.113.5/24" : "")}}
        """);

    private HostOps Ops(int? failAt = null) =>
        new(new SimulatedKernel(new HostRoot(_dir["host"])), new StateDir(_dir["state"]), new ApplyHooks(FailAtStep: failAt));

    private Task<UpResult> Up(VmSpec spec, int? failAt = null) =>
        Ops(failAt).UpAsync(spec, _options, new Templates(), _libvirt, null, _ct);

    private string Definition() =>
        _libvirt.Connection.TryLookupDomain("tx1") is { } d ? d.GetXml(inactive: true) : "(not defined)";

    private string Everything() => HostSnapshot.Of(_dir["host"]) + "\n--- state\n" + HostSnapshot.Ledger(_dir["state"]) + "\n--- libvirt\n" + Definition();

    [Fact]
    public async Task A_failure_at_any_step_of_a_new_vms_launch_leaves_host_ledger_files_and_libvirt_as_they_were()
    {
        Assert.Equal(0, (await RequiredTool.Run("qemu-img", ["create", "-q", "-f", "qcow2", _dir["base.qcow2"], "64M"])).ExitCode);
        var spec = Spec(twoNetworks: false);
        var start = Everything();
        var steps = Planner.Make(spec, new HostScanner(new HostRoot(_dir["host"])), new LeaseStore(new StateDir(_dir["state"])),
            new StateDir(_dir["state"]), _options, new Templates()).Steps;
        Assert.Contains(steps, s => s is DefineVm);
        Assert.Contains(steps, s => s is StartVm);

        for (var k = 1; k <= steps.Count; k++)
        {
            if (!steps[k - 1].Transactional) continue;
            var e = await Assert.ThrowsAnyAsync<VmNetException>(() => Up(spec, failAt: k));
            Assert.Contains($"failing at step {k}", e.Message);
            Assert.True(start == Everything(), $"something differs after a failure at step {k} ({steps[k - 1].Describe()})");
        }

        // The wait for the guest comes after the commit: a failure there keeps the VM, its files and its VFs.
        var wait = steps.Count;
        Assert.False(steps[wait - 1].Transactional);
        await Assert.ThrowsAnyAsync<VmNetException>(() => Up(spec, failAt: wait));
        Assert.Equal("running", (await _libvirt.StatusAsync("tx1", _ct))?.State);
        Assert.Equal(2, Ops().Ledger.Store.OfVm("tx1").Count);

        var up = await Up(spec);
        Assert.Equal("running", (await _libvirt.StatusAsync("tx1", _ct))?.State);
        Assert.All(Ops().Ledger.Store.OfVm("tx1"), l => Assert.Null(l.StartedBy)); // done with it: no vmnet holds it now
        Assert.All(up.Plan.Vfs, a => Assert.Equal("vfio-pci", new HostScanner(new HostRoot(_dir["host"])).DriverOf(a.Vf.Pci)));
    }

    [Fact]
    public async Task A_failed_re_up_gives_a_vm_that_was_up_back_its_definition_seed_vfs_and_leases()
    {
        Assert.Equal(0, (await RequiredTool.Run("qemu-img", ["create", "-q", "-f", "qcow2", _dir["base.qcow2"], "64M"])).ExitCode);
        var start = Everything();
        await Up(Spec(twoNetworks: false));
        var more = Spec(twoNetworks: true);

        // While it runs, a network more needs a restart: refused before any change, naming it and the way to restart.
        var running = Everything();
        var refused = await Assert.ThrowsAnyAsync<VmNetException>(() => Up(more));
        Assert.Equal(ExitCodes.Failure, refused.ExitCode);
        Assert.Contains("tx1 is running, and 1 change of the spec needs a restart: networks[1]: (none) -> network public", refused.Message);
        Assert.Contains("`vmnet down tx1 --connect test://", refused.Message);
        Assert.True(running == Everything(), "the refused re-up changed something");

        // A live change (the VLAN) of the running VM that fails at any step leaves it as it was.
        var live = Spec(twoNetworks: false, vlan: 41);
        var liveSteps = Planner.Make(live, new HostScanner(new HostRoot(_dir["host"])), new LeaseStore(new StateDir(_dir["state"])),
            new StateDir(_dir["state"]), _options, new Templates(), new RunningVm(VmFiles.ReadLaunchRecord(VmPaths.For(new StateDir(_dir["state"]), "tx1")))).Steps;
        for (var k = 1; k <= liveSteps.Count; k++)
        {
            if (!liveSteps[k - 1].Transactional) continue;
            await Assert.ThrowsAnyAsync<VmNetException>(() => Up(live, failAt: k));
            Assert.True(running == Everything(), $"the running VM differs after a live change failed at step {k} ({liveSteps[k - 1].Describe()})");
        }
        Assert.Equal([new SpecChange("networks[0].vlan", "40", "41", Live: true)], (await Up(live)).Plan.Drift);
        Assert.NotEqual(running, Everything());
        await Up(Spec(twoNetworks: false));

        // Stopped, it takes the network more; a failure at any step of that re-up gives it back what it had.
        await _libvirt.StopAsync("tx1", TimeSpan.Zero, _ct);
        var upBefore = Everything();
        var steps = Planner.Make(more, new HostScanner(new HostRoot(_dir["host"])), new LeaseStore(new StateDir(_dir["state"])),
            new StateDir(_dir["state"]), _options, new Templates()).Steps;

        for (var k = 1; k <= steps.Count; k++)
        {
            if (!steps[k - 1].Transactional) continue;
            await Assert.ThrowsAnyAsync<VmNetException>(() => Up(more, failAt: k));
            Assert.True(upBefore == Everything(), $"the VM differs from before the re-up after a failure at step {k} ({steps[k - 1].Describe()})");
        }

        var again = await Up(more);
        Assert.Equal(4, again.Plan.Vfs.Count);
        Assert.Matches("<vmnet:network name=[\"']public[\"'] vlan=[\"']10[\"']", Definition());
        await _libvirt.RemoveAsync("tx1", TimeSpan.Zero, _ct);
        await Ops().RemoveAsync("tx1", _ct);
        Assert.Equal(start.Replace("(not defined)", ""), Everything().Replace("(not defined)", ""));
    }

    [Fact]
    public async Task A_vm_that_another_live_vmnet_is_changing_is_refused_and_one_held_by_its_domain_keeps_its_owner_on_a_new_claim()
    {
        var ledger = new LeaseLedger(new StateDir(_dir["state"]));
        var held = TestLeases.Of("tx1", "storage", 0, "enp3s0f0np0", "0000:03:00.0", 0, "0000:03:00.2", "02:00:00:00:00:01", 40) with { Owner = new DefinitionOwner() };
        ledger.Write(held);

        using (ledger.Lock(_ct))
            ledger.Claim("tx1", [held with { Owner = null }], new StartingOwner(int.MaxValue - 1, 1, DateTimeOffset.UtcNow.AddMinutes(5)));

        var lease = ledger.Store.Find(held.Pci)!;
        Assert.IsType<DefinitionOwner>(lease.Owner);               // a vmnet killed now leaves the VF with its VM
        Assert.Null(Liveness.Gone(lease.Owner));
        Assert.Null(ledger.BusyWith("tx1"));                        // that vmnet (pid MaxValue - 1) is gone
        using var sleeper = System.Diagnostics.Process.Start("sleep", "30");
        try
        {
            var other = new StartingOwner(sleeper.Id, Liveness.StartTime(sleeper.Id)!.Value, DateTimeOffset.UtcNow.AddMinutes(5));
            ledger.Write(lease with { StartedBy = other });
            Assert.Equal(other, ledger.BusyWith("tx1"));
            var e = await Assert.ThrowsAnyAsync<VmNetException>(() => Ops().UpAsync(Spec(false), _options, new Templates(), _libvirt, null, _ct));
            Assert.Contains($"tx1 is being changed by vmnet pid {sleeper.Id} right now", e.Message);
        }
        finally
        {
            sleeper.Kill();
        }
    }

    /// <summary>
    /// Issue 13, item 14: the serial log of a VM that failed to come up is kept in the state dir's logs/ as a file of
    /// its own; a link planted where it goes (to a file the guest's words must not reach) is replaced, not written
    /// through. The backend here writes what a guest would have said on its console as it starts.
    /// </summary>
    [Fact]
    public async Task A_failed_launch_keeps_the_serial_log_in_a_file_of_its_own_and_never_writes_through_a_planted_link()
    {
        Assert.Equal(0, (await RequiredTool.Run("qemu-img", ["create", "-q", "-f", "qcow2", _dir["base.qcow2"], "64M"])).ExitCode);
        var spec = Spec(twoNetworks: false);
        var state = new StateDir(_dir["state"]);
        var victim = _dir.Write("victim", "precious");
        Directory.CreateDirectory(state.LogsDir);
        File.CreateSymbolicLink(state.KeptSerialLog("tx1"), victim);
        var host = HostSnapshot.Of(_dir["host"]);

        var e = await Assert.ThrowsAnyAsync<VmNetException>(() =>
            Ops().UpAsync(spec, _options, new Templates(), new SpeakingBackend(_libvirt), null, _ct));

        var kept = state.KeptSerialLog("tx1");
        Assert.Contains($"its serial log is kept at {kept}", e.Message);
        Assert.Equal("precious", File.ReadAllText(victim));
        Assert.Equal("file", VmNet.Io.SafePath.Stat(kept)?.Kind);
        Assert.Equal(SpeakingBackend.Said, File.ReadAllText(kept));
        Assert.Equal(host, HostSnapshot.Of(_dir["host"]));
        Assert.False(Directory.Exists(state.VmDir("tx1")));
    }

    /// <summary>The libvirt backend, and a guest that writes to its serial console once started and dies.</summary>
    private sealed class SpeakingBackend(IBackend inner) : IBackend
    {
        public const string Said = "[    0.000000] Linux version 6.1.0 (a guest's console)\n\u001b]0;title\u0007\n";

        public string Name => inner.Name;
        public Task<bool> IsDefinedAsync(string vm, CancellationToken cancel) => inner.IsDefinedAsync(vm, cancel);
        public Task<SavedDefinition?> SaveDefinitionAsync(string vm, CancellationToken cancel) => inner.SaveDefinitionAsync(vm, cancel);
        public Task RestoreDefinitionAsync(string vm, SavedDefinition saved, CancellationToken cancel) => inner.RestoreDefinitionAsync(vm, saved, cancel);
        public Task DefineAsync(LaunchPlan plan, CancellationToken cancel) => inner.DefineAsync(plan, cancel);
        public Task UndefineAsync(string vm, CancellationToken cancel) => inner.UndefineAsync(vm, cancel);

        public async Task StartAsync(LaunchPlan plan, CancellationToken cancel)
        {
            await inner.StartAsync(plan, cancel);
            File.WriteAllText(plan.Paths.SerialLog, Said);
            throw new VmNetException($"{plan.Vm.Name} stopped as it started (the guest panicked)");
        }

        public Task<StopResult> StopAsync(string vm, TimeSpan graceful, CancellationToken cancel) => inner.StopAsync(vm, graceful, cancel);
        public Task<StopResult> RemoveAsync(string vm, TimeSpan graceful, CancellationToken cancel) => inner.RemoveAsync(vm, graceful, cancel);
        public Task<VmStatus?> StatusAsync(string vm, CancellationToken cancel, bool guest = true) => inner.StatusAsync(vm, cancel, guest);
        public Task<IReadOnlyList<VmStatus>> ListAsync(CancellationToken cancel) => inner.ListAsync(cancel);
    }
}
