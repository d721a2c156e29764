using System.Reflection;
using Xunit.Sdk;
using Xunit.v3;

namespace VmNet.Tests.Support;

/// <summary>The place of a test in a scenario that builds on the one before (see <see cref="StepOrderer"/>).</summary>
[AttributeUsage(AttributeTargets.Method)]
public sealed class StepAttribute(int order) : Attribute
{
    public int Order { get; } = order;
}

/// <summary>
/// Runs a class's test methods in the order of their <see cref="StepAttribute"/> (xunit v3 orders methods with a
/// method orderer, then the cases of each method), for scenarios whose steps share one expensive world (the lab
/// host and its VMs) and change it: the VMs are removed last. Apply with <c>[TestMethodOrderer(typeof(StepOrderer))]</c>.
/// </summary>
public sealed class StepOrderer : ITestMethodOrderer
{
    public IReadOnlyCollection<TTestMethod?> OrderTestMethods<TTestMethod>(IReadOnlyCollection<TTestMethod?> testMethods)
        where TTestMethod : notnull, ITestMethod =>
        testMethods.OrderBy(Order).ThenBy(m => m?.MethodName, StringComparer.Ordinal).ToList();

    private static int Order<TTestMethod>(TTestMethod? method) where TTestMethod : notnull, ITestMethod =>
        method is IXunitTestMethod x ? x.Method.GetCustomAttribute<StepAttribute>()?.Order ?? int.MaxValue : int.MaxValue;
}
