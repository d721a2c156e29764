using System.Diagnostics;
using VmNet.Leases;
using VmNet.Tests.Support;

namespace VmNet.Tests.HostSide;

public sealed class LedgerSpecs : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    [Fact]
    public void The_ledger_lock_is_exclusive_and_released_on_dispose()
    {
        var ledger = new LeaseLedger(new StateDir(_dir["state"]));
        using (ledger.Lock(TestContext.Current.CancellationToken))
        {
            var e = Assert.Throws<VmNetException>(() => FileLock.Acquire(ledger.LockFile, TimeSpan.FromMilliseconds(200), TestContext.Current.CancellationToken));
            Assert.Contains("another vmnet is still working on this host", e.Message);
        }
        using var again = FileLock.Acquire(ledger.LockFile, TimeSpan.FromMilliseconds(200), TestContext.Current.CancellationToken);
    }

    [Fact]
    public void A_lease_round_trips_with_its_original_state_and_owner_and_old_version_1_files_still_read()
    {
        var state = new StateDir(_dir["state"]);
        var ledger = new LeaseLedger(state);
        var lease = new Lease(1, "vm1", "storage", 0, "enp1s0", "0000:01:00.0", 0, "0000:01:10.0", "02:00:00:00:00:01", 40,
            new VfOriginal("00:00:00:00:00:00", 0, 0, "802.1Q", true, false, "auto", 0, 0, "igbvf", null, "enp1s16"),
            Liveness.StartingSelf(), [["vlan", "40"], ["mac", "02:00:00:00:00:01"]]);

        ledger.Write(lease);

        var back = ledger.Store.Find(lease.Pci)!;
        Assert.Equal(lease.Original, back.Original);
        Assert.Equal(lease.Owner, back.Owner);
        Assert.Equal(lease.Applied!.Select(a => string.Join(' ', a)), back.Applied!.Select(a => string.Join(' ', a)));
        Assert.Equal([lease.Pci], ledger.Store.OfVm("vm1").Select(l => l.Pci));
        Assert.Equal("vm1", ledger.Store.MacOwner(lease.Mac));
        Assert.Empty(Directory.EnumerateFiles(state.LeasesDir, "*.tmp"));

        File.WriteAllText(state.LeaseFile("0000:01:10.2"), """{"version":1,"vm":"old","network":"n","port":0,"pf":"p","pfPci":"0000:01:00.0","vf":1,"pci":"0000:01:10.2","mac":"02:00:00:00:00:02"}""");
        Assert.Null(ledger.Store.Find("0000:01:10.2")!.Owner);
        Assert.Null(Liveness.Gone(null));

        ledger.Release(lease);
        Assert.Null(ledger.Store.Find(lease.Pci));
        Assert.Null(ledger.Store.MacOwner(lease.Mac));
        Assert.False(Directory.Exists(state.VmDir("vm1")));
    }

    [Fact]
    public void An_owner_is_gone_when_its_process_died_its_pid_was_reused_or_its_time_lease_expired()
    {
        var me = Liveness.StartingSelf();
        Assert.Null(Liveness.Gone(me));
        Assert.Null(Liveness.Gone(new LeaseOwner(LeaseOwner.Defined)));
        Assert.Null(Liveness.Gone(new LeaseOwner("libvirt", Domain: "vm1", Uri: "qemu:///system")));
        Assert.Contains("expired", Liveness.Gone(me with { Expires = DateTimeOffset.UtcNow.AddSeconds(-1) }));
        Assert.Contains("another process", Liveness.Gone(me with { StartTime = me.StartTime + 1 }));

        using var p = Process.Start(new ProcessStartInfo("true") { UseShellExecute = false })!;
        p.WaitForExit();
        Assert.Contains($"process {p.Id} is gone", Liveness.Gone(new LeaseOwner(LeaseOwner.Process, p.Id, 1)));
    }
}
