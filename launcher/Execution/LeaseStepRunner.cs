using VmNet.Leases;
using VmNet.Planning;

namespace VmNet.Execution;

/// <summary>
/// Runs <see cref="HandOverLeases"/>: under the ledger lock, the leases of the plan's VFs pass from this vmnet's time
/// lease to the owner that holds them from then on (the undo gives each back the owner it had).
/// </summary>
public sealed class LeaseStepRunner(LeaseLedger ledger, IReadOnlyList<string> pcis) : IStepRunner
{
    public bool Runs(Step step) => step is HandOverLeases;

    public Task RunAsync(Step step, Reverter? reverter, CancellationToken ct)
    {
        var h = (HandOverLeases)step;
        var before = pcis.Select(p => (Pci: p, ledger.Store.Find(p)?.Owner)).ToList();
        reverter?.Add(h.Describe(), () =>
        {
            using (ledger.Lock(CancellationToken.None))
                foreach (var (pci, owner) in before)
                    if (owner is not null) ledger.SetOwner(pci, owner);
            return Task.CompletedTask;
        });
        using (ledger.Lock(ct))
            foreach (var pci in pcis)
                ledger.SetOwner(pci, h.Owner);
        return Task.CompletedTask;
    }
}
