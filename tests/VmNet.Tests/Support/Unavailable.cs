namespace VmNet.Tests.Support;

/// <summary>
/// The one rule for a test that cannot run here: under CI (CI=true) it fails, since CI must never skip; elsewhere it
/// is skipped, loudly, with the reason and what to do.
/// </summary>
public static class Unavailable
{
    public static bool InCi => string.Equals(Environment.GetEnvironmentVariable("CI"), "true", StringComparison.OrdinalIgnoreCase);

    /// <summary>Fails (CI) or skips (elsewhere) the current test with <paramref name="why"/>; never returns.</summary>
    [System.Diagnostics.CodeAnalysis.DoesNotReturn]
    public static void Here(string why)
    {
        if (InCi) Assert.Fail(why);
        Assert.Skip(why);
        throw new InvalidOperationException("unreachable: Assert.Skip throws");
    }
}

/// <summary>
/// The test tiers. Tests that boot real Linux kernels under QEMU (the test guests and the emulated SR-IOV lab) carry
/// <c>[Trait(Tier.Name, Tier.Boot)]</c> and live under <c>Boots/</c>; every other test is the fast tier, which
/// <c>scripts/test.sh --fast</c> runs alone. CI runs both.
/// </summary>
public static class Tier
{
    public const string Name = "Tier";
    public const string Boot = "Boot";
}
