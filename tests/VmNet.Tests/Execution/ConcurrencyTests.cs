using System.Diagnostics;
using VmNet.Execution;
using VmNet.Host;
using VmNet.Leases;
using VmNet.Planning;
using VmNet.Sim;
using VmNet.Spec;
using VmNet.State;
using VmNet.Tests.Support;

namespace VmNet.Tests.Execution;

/// <summary>The real built CLI in parallel processes against one simulated host: the ledger lock and crash recovery.</summary>
public sealed class ConcurrencyTests : IDisposable
{
    private readonly TempDir _dir = new();
    private readonly CancellationToken _ct = TestContext.Current.CancellationToken;

    public void Dispose() => _dir.Dispose();

    private static string VmnetDll => Path.Join(AppContext.BaseDirectory, "vmnet.dll");

    private static Process Start(string hostDir, string stateDir, IReadOnlyList<string> args, IDictionary<string, string>? env = null)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in (string[])[VmnetDll, "--host-root", hostDir, "--state-dir", stateDir, .. args]) psi.ArgumentList.Add(a);
        psi.Environment["DOTNET_TieredPGO"] = "0";
        psi.Environment["DOTNET_TC_QuickJitForLoops"] = "1";
        foreach (var (k, v) in env ?? new Dictionary<string, string>()) psi.Environment[k] = v;
        return Process.Start(psi)!;
    }

    /// <param name="dedicated">One vCPU pinned to a dedicated CPU of the NIC's node (and one more CPU for the emulator
    /// threads); else shared vCPUs, on the NIC's node while it has CPUs no VM holds dedicated, else on the other.</param>
    private static string Spec(string dir, string vm, NicShape nic, bool dedicated = false)
    {
        var path = Path.Join(dir, vm + ".yaml");
        File.WriteAllText(path, $"""
            name: {vm}
            cpus: 1
            placement: {"{"}{(dedicated ? "cpuPinning: dedicated" : "numa: preferred")}{"}"}
            disk: {"{"}image: /img.qcow2{"}"}
            networks:
              - name: storage
                vlan: 40
                trust: true
                ports: [{nic.PfName(0)}, {nic.PfName(1)}]
                address: dhcp
            """);
        return path;
    }

    /// <summary>
    /// Two kinds of scarcity race at once on a two-node host: 10 free VF pairs for 16 VMs, and node 1's 8 CPUs (8-15)
    /// for the 8 VMs that ask for dedicated pinning (2 CPUs each: at most 4 fit). At most 8 shared and 4 dedicated VMs
    /// can start, 12 in all, so the VFs always run out: whatever the order, exactly 10 VMs start (2 to 4 of them
    /// dedicated), no VF and no CPU is granted twice, every refusal is exit 3 naming what ran out, and `rm` gives
    /// everything back.
    /// </summary>
    [Fact]
    public async Task Sixteen_parallel_ups_on_ten_free_vf_pairs_and_eight_free_cpus_lease_each_vf_and_cpu_once()
    {
        var nic = NicShape.ConnectX5();
        SimHost.Create(_dir["host"], nic, pfs: 2, numVfs: 10, topology: TwoNodes);
        var start = HostSnapshot.Of(_dir["host"]);
        var specs = Enumerable.Range(1, 16).Select(i => Spec(_dir.Path, $"vm{i:00}", nic, dedicated: i <= 8)).ToList();

        // The whole `up`: host side, then seed, overlay, define and start through libvirt's test driver.
        var image = _dir["base.qcow2"];
        await CliWrap.Cli.Wrap(Support.RequiredTool.Path("qemu-img")).WithArguments(["create", "-q", "-f", "qcow2", image, "64M"]).ExecuteAsync(_ct);
        foreach (var s in specs) File.WriteAllText(s, File.ReadAllText(s).Replace("/img.qcow2", image));
        var procs = specs.Select(s => Start(_dir["host"], _dir["state"], ["up", s, "--connect", "test:///default"])).ToList();
        var results = await Task.WhenAll(procs.Select(async p =>
        {
            var err = p.StandardError.ReadToEndAsync(_ct);
            var output = p.StandardOutput.ReadToEndAsync(_ct);
            await p.WaitForExitAsync(_ct);
            return (p.ExitCode, Out: await output, Err: await err);
        }));

        Assert.True(results.Count(r => r.ExitCode == 0) == 10, string.Join("\n", results.Select(r => $"{r.ExitCode}: {r.Out}{r.Err}")));
        Assert.All(results.Where(r => r.ExitCode != 0), r =>
        {
            Assert.Equal(ExitCodes.HostCannotServe, r.ExitCode);
            Assert.True(r.Err.Contains("no free VF", StringComparison.Ordinal)
                || r.Err.Contains("placement.cpuPinning: dedicated needs 2 CPUs of NUMA node 1 (1 for the vCPUs, 1 for the emulator threads); 0 of its 8 CPUs 8-15 are free", StringComparison.Ordinal), r.Err);
        });
        var store = new LeaseStore(new StateDir(_dir["state"]));
        var cpus = new CpuLedger(store.State, store).All();
        var dedicatedUp = results.Take(8).Count(r => r.ExitCode == 0);
        Assert.InRange(dedicatedUp, 2, 4);
        Assert.Equal(2 * dedicatedUp, cpus.Count);
        Assert.Equal(cpus.Count, cpus.Select(c => c.Cpu).Distinct().Count());
        Assert.All(cpus, c => Assert.InRange(c.Cpu, 8, 15));
        Assert.All(cpus.GroupBy(c => c.Vm), g => Assert.Equal([0, null], g.Select(c => c.Vcpu).OrderBy(v => v ?? int.MaxValue)));
        var leases = store.All().ToList();
        Assert.Equal(20, leases.Count);
        Assert.Equal(20, leases.Select(l => l.Pci).Distinct().Count());
        Assert.Equal(20, leases.Select(l => l.Mac).Distinct().Count());
        Assert.All(leases.GroupBy(l => l.Vm), g => Assert.Equal(2, g.Count()));

        foreach (var vm in leases.Select(l => l.Vm).Distinct())
            Assert.Equal(0, VmNet.Cli.VmNetCli.Run(["rm", vm, "--host-root", _dir["host"], "--state-dir", _dir["state"], "--connect", "test:///default"], new StringWriter(), new StringWriter()));
        Assert.Equal(start, HostSnapshot.Of(_dir["host"]));
        Assert.Equal("", HostSnapshot.Ledger(_dir["state"]));
    }

    [Fact]
    public async Task A_vmnet_killed_at_any_apply_step_is_converged_by_gc_and_by_the_next_up()
    {
        var nic = NicShape.Igb();
        var steps = Planner.Make(SpecLoader.LoadFile(Spec(_dir.Path, "probe", nic, dedicated: true)),
            new HostScanner(new HostRoot(CreateHost("probe-host", nic))), new LeaseStore(new StateDir(_dir["probe-state"])),
            new StateDir(_dir["probe-state"]), new LaunchOptions { Start = false }, new VmNet.Rendering.Templates()).Steps.Count;
        Assert.True(steps >= 16, $"only {steps} steps");

        // One host per (step, way to converge); the paused processes are started a few at a time.
        // Both VMs take dedicated CPUs: the crashed one's must come back with its VFs, whichever step it died at.
        var crashed = Spec(_dir.Path, "crashed", nic, dedicated: true);
        var next = SpecLoader.LoadFile(Spec(_dir.Path, "next", nic, dedicated: true));
        var cases = Enumerable.Range(1, steps).SelectMany(k => new[] { (k, gc: true), (k, gc: false) }).ToList();
        foreach (var batch in cases.Chunk(8))
        {
            var runs = batch.Select(c =>
            {
                var name = $"k{c.k}-{(c.gc ? "gc" : "up")}";
                var host = CreateHost(name, nic);
                var p = Start(host, _dir[name + "-state"], ["up", crashed, "--no-start"],
                    new Dictionary<string, string> { ["VMNET_TEST_PAUSE_AT_STEP"] = c.k.ToString(System.Globalization.CultureInfo.InvariantCulture) });
                return (c.k, c.gc, name, host, p);
            }).ToList();
            foreach (var r in runs)
            {
                await WaitForPause(r.p, r.k);
                r.p.Kill(entireProcessTree: true);
                await r.p.WaitForExitAsync(_ct);
            }
            foreach (var r in runs)
            {
                var state = new StateDir(_dir[r.name + "-state"]);
                var ops = new HostOps(new SimulatedKernel(new HostRoot(r.host)), state);
                Assert.Equal(2, ops.Ledger.Store.All().Count());
                if (r.gc)
                {
                    Assert.Equal(2, ops.Ledger.Cpus.All().Count);
                    var (done, problems) = await ops.GcAsync(_ct);
                    Assert.Equal((3, 0), (done.Count, problems.Count)); // two VFs, then the CPUs
                }
                else
                {
                    var up = await ops.UpAsync(next, _ct);
                    Assert.Equal(2, up.Reclaimed.Count);
                    Assert.All(ops.Ledger.Store.All(), l => Assert.Equal("next", l.Vm));
                    Assert.All(ops.Ledger.Cpus.All(), c => Assert.Equal("next", c.Vm));
                    await ops.RemoveAsync("next", _ct);
                }
                Assert.True(_starts[r.name] == HostSnapshot.Of(r.host), $"{r.name}: the host differs from the start");
                Assert.True(HostSnapshot.Ledger(state.Path) == "", $"{r.name}: leases left");
            }
        }
    }

    [Fact]
    public async Task A_vmnet_stopped_by_sigterm_mid_apply_rolls_back_and_gives_its_leases_back()
    {
        var nic = NicShape.ConnectX5();
        var host = CreateHost("term", nic);
        var p = Start(host, _dir["term-state"], ["up", Spec(_dir.Path, "vm1", nic, dedicated: true), "--no-start"], new Dictionary<string, string> { ["VMNET_TEST_PAUSE_AT_STEP"] = "14" });
        await WaitForPause(p, 14);

        using (var kill = Process.Start("kill", ["-TERM", p.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)])) await kill.WaitForExitAsync(_ct);
        var err = await p.StandardError.ReadToEndAsync(_ct);
        await p.WaitForExitAsync(_ct);

        Assert.Equal(ExitCodes.Failure, p.ExitCode);
        Assert.Contains("vmnet: interrupted: the changes made to the host were rolled back", err);
        Assert.Equal(_starts["term"], HostSnapshot.Of(host));
        Assert.Equal("", HostSnapshot.Ledger(_dir["term-state"]));
    }

    private readonly Dictionary<string, string> _starts = [];

    /// <summary>Two NUMA nodes of 8 CPUs, the NIC on node 1.</summary>
    private static readonly SimTopology TwoNodes = new(Nodes: 2, NicNode: 1);

    private string CreateHost(string name, NicShape nic)
    {
        var dir = _dir[name];
        SimHost.Create(dir, nic, pfs: 2, numVfs: 1, topology: TwoNodes);
        _starts[name] = HostSnapshot.Of(dir);
        return dir;
    }

    private async Task WaitForPause(Process p, int k)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(_ct);
        timeout.CancelAfter(TimeSpan.FromSeconds(60));
        while (await p.StandardError.ReadLineAsync(timeout.Token) is { } line)
            if (line.Contains($"paused at step {k}:", StringComparison.Ordinal)) return;
        Assert.Fail($"vmnet exited ({p.ExitCode}) before pausing at step {k}: {await p.StandardOutput.ReadToEndAsync(_ct)}");
    }
}
