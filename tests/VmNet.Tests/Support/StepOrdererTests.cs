namespace VmNet.Tests.Support;

/// <summary>The scenario classes rely on <see cref="StepOrderer"/>: steps run in their order, not by name.</summary>
[TestMethodOrderer(typeof(StepOrderer))]
public sealed class StepOrdererTests
{
    private static int _last;

    [Fact, Step(1)]
    public void Zeta_runs_first() => Assert.Equal(0, Interlocked.Exchange(ref _last, 1));

    [Fact, Step(2)]
    public void Beta_runs_second() => Assert.Equal(1, Interlocked.Exchange(ref _last, 2));

    [Fact, Step(3)]
    public void Alpha_runs_third() => Assert.Equal(2, Interlocked.Exchange(ref _last, 3));
}
