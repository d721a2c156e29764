using System.Reflection;

namespace VmNet.Tests.Architecture;

/// <summary>
/// The boot tier (real kernels under QEMU) lives apart: every test class under <c>Boots/</c> carries
/// <c>Tier=Boot</c>, none elsewhere does, so <c>scripts/test.sh --fast</c> (everything but <c>Tier=Boot</c>) boots
/// nothing.
/// </summary>
public sealed class TierTests
{
    private static IEnumerable<Type> TestClasses => typeof(TierTests).Assembly.GetTypes()
        .Where(t => t is { IsClass: true, IsAbstract: false } && t.GetMethods().Any(m => m.GetCustomAttributes<FactAttribute>(inherit: true).Any()));

    private static bool IsBoot(Type t) =>
        t.GetCustomAttributes<TraitAttribute>().Any(a => a is { Name: Tier.Name, Value: Tier.Boot });

    [Fact]
    public void Every_class_under_boots_is_in_the_boot_tier_and_no_other_is()
    {
        var classes = TestClasses.ToList();
        var boots = classes.Where(t => t.Namespace!.StartsWith("VmNet.Tests.Boots", StringComparison.Ordinal)).ToList();

        Assert.NotEmpty(boots);
        Assert.Empty(boots.Where(t => !IsBoot(t)).Select(t => t.FullName));
        Assert.Empty(classes.Except(boots).Where(IsBoot).Select(t => t.FullName));
    }

    [Fact]
    public void A_class_that_boots_a_guest_or_the_lab_is_under_boots()
    {
        static bool Boots(Type fixture) => typeof(GuestFixture).IsAssignableFrom(fixture) || fixture == typeof(LabFixture) || fixture == typeof(LabVmNetFixture);
        var booting = TestClasses.Where(t => t.GetConstructors().SelectMany(c => c.GetParameters()).Any(p => Boots(p.ParameterType))).ToList();

        Assert.NotEmpty(booting);
        Assert.All(booting, t => Assert.StartsWith("VmNet.Tests.Boots", t.Namespace));
    }
}
