using Xunit.Sdk;
using Xunit.v3;

[assembly: Xunit.TestCollectionOrderer(typeof(VmNet.Tests.Support.SlowFirst))]

namespace VmNet.Tests.Support;

/// <summary>
/// Starts the lab first and the guests second, then the rest, so the whole run takes about as long as the lab alone:
/// the lab's collection (every lab host and its nested guests, one class after the other) holds one of the two test
/// threads from the start, the guests and the fast tier share the other. The lab's nested guest keeps about one
/// core busy, a guest of the Guest collection the other; two labs side by side made each nested boot take over 10
/// minutes (README, "How it is tested").
/// </summary>
public sealed class SlowFirst : ITestCollectionOrderer
{
    public const string Lab = "Lab", Guest = "Guest";

    public IReadOnlyCollection<TTestCollection> OrderTestCollections<TTestCollection>(IReadOnlyCollection<TTestCollection> testCollections)
        where TTestCollection : notnull, ITestCollection =>
        testCollections.OrderBy(c => Rank(c)).ThenBy(c => c.TestCollectionDisplayName, StringComparer.Ordinal).ToList();

    private static int Rank(ITestCollection c) => c.TestCollectionDisplayName switch
    {
        Lab => 0,
        Guest => 1,
        _ => 2,
    };
}
