using Xunit.Sdk;
using Xunit.v3;

[assembly: Xunit.TestCollectionOrderer(typeof(VmNet.Tests.Support.SlowFirst))]

namespace VmNet.Tests.Support;

/// <summary>
/// Starts the libvirt lab first and the guests second, then the rest of the parallel collections: the libvirt lab
/// (one lab host, one nested guest at a time, about 20 minutes) holds one of the two test threads from the start,
/// the guest collection and the fast tier share the other. Its nested guest keeps about one core busy, a guest of
/// the Guest collection the other. The other lab classes (collection Lab) run alone afterwards: LabVmNetTests boots
/// two nested guests at once, and beside a guest of the Guest collection their boots took over 10 minutes (as two
/// labs side by side did; README, "How it is tested").
/// </summary>
public sealed class SlowFirst : ITestCollectionOrderer
{
    public const string Lab = "Lab", LabLibvirt = "LabLibvirt", Guest = "Guest";

    public IReadOnlyCollection<TTestCollection> OrderTestCollections<TTestCollection>(IReadOnlyCollection<TTestCollection> testCollections)
        where TTestCollection : notnull, ITestCollection =>
        testCollections.OrderBy(c => Rank(c)).ThenBy(c => c.TestCollectionDisplayName, StringComparer.Ordinal).ToList();

    private static int Rank(ITestCollection c) => c.TestCollectionDisplayName switch
    {
        LabLibvirt => 0,
        Guest => 1,
        _ => 2,
    };
}
