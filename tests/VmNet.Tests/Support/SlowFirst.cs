using Xunit.Sdk;
using Xunit.v3;

[assembly: Xunit.TestCollectionOrderer(typeof(VmNet.Tests.Support.SlowFirst))]

namespace VmNet.Tests.Support;

/// <summary>
/// The order in which the two test threads take the collections. The libvirt lab (one lab host, one nested guest at a
/// time, the longest collection) holds one thread from the start; the guest collection and the fast tier share the
/// other (done after about 11 minutes), which then takes the demo and the qemu-backend lab (one nested guest each),
/// while the libvirt lab still runs; the failover lab (no nested guest) goes to whichever thread frees first. So at
/// most two nested guests run at once, one per core (three took over 10 minutes a boot), and neither core idles.
/// </summary>
public sealed class SlowFirst : ITestCollectionOrderer
{
    public const string Lab = "Lab", LabLibvirt = "LabLibvirt", Guest = "Guest", LabDemo = "LabDemo", LabFailover = "LabFailover";

    public IReadOnlyCollection<TTestCollection> OrderTestCollections<TTestCollection>(IReadOnlyCollection<TTestCollection> testCollections)
        where TTestCollection : notnull, ITestCollection =>
        testCollections.OrderBy(c => Rank(c)).ThenBy(c => c.TestCollectionDisplayName, StringComparer.Ordinal).ToList();

    private static int Rank(ITestCollection c) => c.TestCollectionDisplayName switch
    {
        LabLibvirt => 0,
        Guest => 1,
        LabDemo => 3,
        Lab => 4,
        LabFailover => 5,
        _ => 2,
    };
}
