namespace VmNet.Leases;

/// <summary>The leases of <paramref name="inner"/> as if <paramref name="hidden"/> were given back (what a dry run plans with, when <c>up</c> would reclaim orphans first).</summary>
public sealed class LeasesWithout(ILeaseView inner, IEnumerable<Lease> hidden) : ILeaseView
{
    private readonly Dictionary<string, Lease> _hidden = hidden.ToDictionary(l => l.Pci, StringComparer.Ordinal);

    public bool IsLeased(string pci) => !_hidden.ContainsKey(pci) && inner.IsLeased(pci);

    public IReadOnlyList<Lease> OfVm(string vm) => inner.OfVm(vm).Where(l => !_hidden.ContainsKey(l.Pci)).ToList();

    public string? MacOwner(string mac) =>
        _hidden.Values.Any(l => string.Equals(l.Mac, mac, StringComparison.OrdinalIgnoreCase)) ? null : inner.MacOwner(mac);

    public IReadOnlyList<CpuLease> CpuLeases() => inner.CpuLeases();

    public Lease? Find(string pci) => _hidden.ContainsKey(pci) ? null : inner.Find(pci);

    public IReadOnlySet<int> LeasedVfIndices(string pfPci)
    {
        var set = new HashSet<int>(inner.LeasedVfIndices(pfPci));
        foreach (var l in _hidden.Values.Where(l => l.PfPci == pfPci)) set.Remove(l.Vf);
        return set;
    }
}
