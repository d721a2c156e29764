using BenchmarkDotNet.Attributes;
using VmNet.Cli;
using VmNet.Host;
using VmNet.Leases;
using VmNet.Planning;
using VmNet.Rendering;
using VmNet.Spec;
using VmNet.State;

namespace VmNet.Benchmarks;

/// <summary>
/// Planner.Make against the generated 2 x 127 host with 0, 50 and 200 leases of other VMs. With the leases on the
/// lowest VFs the planner walks past them (one lease lookup and one sysfs read per skipped VF); with them on the
/// highest VFs its first candidate is free, which isolates the cost of the number of leases itself.
/// </summary>
[MemoryDiagnoser]
public class PlanBenchmarks
{
    [Params(0, 50, 200)]
    public int Leases { get; set; }

    [Params(Placement.Lowest, Placement.Highest)]
    public Placement Placement { get; set; }

    private Fixture _fixture = null!;
    private VmSpec _spec = null!;
    private StateDir _state = null!;

    [GlobalSetup]
    public void Setup()
    {
        _fixture = Fixture.CreateTemp(Leases, Placement);
        _spec = SpecLoader.Load(ExampleSpec.Text);
        _state = new StateDir(_fixture.StateDirPath);
    }

    [GlobalCleanup]
    public void Cleanup() => _fixture.Dispose();

    [Benchmark]
    public LaunchPlan Plan() =>
        Planner.Make(_spec, new HostScanner(new HostRoot(_fixture.HostDir)), new LeaseStore(_state), _state);
}

/// <summary>The other steps of <c>vmnet up --dry-run</c>, on the generated host with 200 leases on the lowest VFs.</summary>
[MemoryDiagnoser]
public class PipelineBenchmarks
{
    public const int Leases = 200;

    private Fixture _fixture = null!;
    private LaunchPlan _plan = null!;
    private string[] _args = null!;

    [GlobalSetup]
    public void Setup()
    {
        _fixture = Fixture.CreateTemp(Leases);
        var state = new StateDir(_fixture.StateDirPath);
        _plan = Planner.Make(SpecLoader.Load(ExampleSpec.Text), new HostScanner(new HostRoot(_fixture.HostDir)), new LeaseStore(state), state);
        _args = ["up", _fixture.SpecPath, "--dry-run", "--host-root", _fixture.HostDir, "--state-dir", _fixture.StateDirPath];
        var check = new StringWriter();
        if (VmNetCli.Run(_args, check, check) != 0) throw new InvalidOperationException("vmnet up --dry-run failed:\n" + check);
    }

    [GlobalCleanup]
    public void Cleanup() => _fixture.Dispose();

    /// <summary>Parse and validate examples/vm.yaml.</summary>
    [Benchmark]
    public VmSpec Load() => SpecLoader.Load(ExampleSpec.Text);

    /// <summary>Render every artifact, parsing the embedded templates as each <c>vmnet up</c> does.</summary>
    [Benchmark]
    public Artifacts Render() => Renderer.Render(Planner.RenderInput(_plan.Vm, _plan.Vfs, _plan.Paths), new Templates());

    /// <summary>The whole <c>vmnet up SPEC --dry-run</c> in process: CLI parsing, load, plan, render, print.</summary>
    [Benchmark]
    public int UpDryRun()
    {
        var output = new StringWriter();
        return VmNetCli.Run(_args, output, output);
    }
}
