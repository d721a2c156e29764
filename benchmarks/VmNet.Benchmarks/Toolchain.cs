using System.Reflection;
using BenchmarkDotNet.Loggers;
using BenchmarkDotNet.Running;
using BenchmarkDotNet.Toolchains;
using BenchmarkDotNet.Toolchains.CsProj;
using BenchmarkDotNet.Toolchains.DotNetCli;

namespace VmNet.Benchmarks;

/// <summary>
/// The default out-of-process toolchain, told where this project is. BenchmarkDotNet otherwise looks for the csproj by
/// walking every file under the solution's directory, following symlinks, and the simulated hosts in examples/hosts
/// are sysfs trees whose links loop (device -> driver -> device ...): the search never ends.
/// </summary>
public static class RepoToolchain
{
    public static IToolchain Create()
    {
        var settings = NetCoreAppSettings.NetCoreApp10_0;
        return new Toolchain(settings.Name,
            new Generator(settings.TargetFrameworkMoniker, settings.CustomDotNetCliPath!, settings.PackagesPath!, settings.RuntimeFrameworkVersion!),
            new DotNetCliBuilder(settings.TargetFrameworkMoniker, settings.CustomDotNetCliPath!),
            new DotNetCliExecutor(settings.CustomDotNetCliPath!));
    }

    /// <summary>This project's csproj, recorded at build time (AssemblyMetadata in the csproj).</summary>
    public static string ProjectPath =>
        typeof(RepoToolchain).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>()
            .FirstOrDefault(a => a.Key == "ProjectPath")?.Value
        ?? throw new InvalidOperationException("the ProjectPath metadata is missing from the benchmarks assembly");

    private sealed class Generator(string tfm, string cliPath, string packagesPath, string runtimeFrameworkVersion)
        : CsProjGenerator(tfm, cliPath, packagesPath, runtimeFrameworkVersion, isNetCore: true)
    {
        protected override FileInfo GetProjectFilePath(Type benchmarkTarget, ILogger logger) => new(ProjectPath);
    }
}
