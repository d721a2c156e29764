using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Running;
using BenchmarkDotNet.Toolchains.InProcess.Emit;
using VmNet.Benchmarks;

// dotnet run -c Release -- [BenchmarkDotNet options]   the full suite (all benchmarks unless --filter is given)
// dotnet run -c Release -- --smoke                     every benchmark once, in process: proves they run (CI)
// dotnet run -c Release -- state DIR LEASES             writes a state dir with LEASES leases (for hyperfine)

if (args is ["state", var dir, var count])
{
    // The host comes from `vmnet sim create DIR --pfs 2 --vfs 127 --total-vfs 127 --mtu 9000`.
    var leases = int.Parse(count, System.Globalization.CultureInfo.InvariantCulture);
    Fixture.WriteLeases(new VmNet.State.StateDir(dir), leases, Placement.Lowest);
    Console.WriteLine($"wrote {leases} leases on the lowest VFs of both PFs to {dir}");
    return 0;
}

var smoke = args.Contains("--smoke");
var rest = args.Where(a => a != "--smoke").ToList();
if (!rest.Contains("--filter")) rest.AddRange(["--filter", "*"]);

IConfig config = DefaultConfig.Instance;
config = smoke
    ? config.AddJob(Job.Dry.WithToolchain(InProcessEmitToolchain.Instance).WithId("Smoke"))
    // Every job (the default one, or those given with --job) builds with the toolchain that knows where the project is.
    : config.AddJob(Job.Default.WithToolchain(RepoToolchain.Create()).AsMutator());

var summaries = BenchmarkSwitcher.FromAssembly(typeof(Fixture).Assembly).Run([.. rest], config).ToList();
// A benchmark whose setup throws leaves no successful report: count those as failures, so CI notices.
var failed = summaries.Count == 0 || summaries.Any(s =>
    s.HasCriticalValidationErrors || s.Reports.Count(r => r.Success) < s.BenchmarksCases.Length);
return failed ? 1 : 0;
