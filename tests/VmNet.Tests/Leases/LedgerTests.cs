using System.Diagnostics;
using VmNet.Io;
using VmNet.Kernel;
using VmNet.Leases;
using VmNet.Spec;
using VmNet.State;
using VmNet.Tests.Support;

namespace VmNet.Tests.Leases;

public sealed class LedgerTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    [Fact]
    public void The_ledger_lock_is_exclusive_and_released_on_dispose()
    {
        var ledger = new LeaseLedger(new StateDir(_dir["state"]));
        using (ledger.Lock(TestContext.Current.CancellationToken))
        {
            var e = Assert.Throws<VmNetException>(() => FileLock.Acquire(ledger.State.LockFile, TimeSpan.FromMilliseconds(200), TestContext.Current.CancellationToken));
            Assert.Contains("another vmnet is still working on this host", e.Message);
        }
        using var again = FileLock.Acquire(ledger.State.LockFile, TimeSpan.FromMilliseconds(200), TestContext.Current.CancellationToken);
    }

    [Fact]
    public void A_lease_round_trips_with_its_typed_settings_original_state_and_owner_and_format_1_files_still_read()
    {
        var state = new StateDir(_dir["state"]);
        var ledger = new LeaseLedger(state);
        var lease = new Lease(Lease.CurrentVersion, "vm1", "storage", 0, "enp1s0", "0000:01:00.0", 0, "0000:01:10.0", "02:00:00:00:00:01",
            new VfSettings { Vlan = new VlanTag(40, 3, VlanProtocol.Dot1Ad), Mac = "02:00:00:00:00:01", Rates = new TxRates(1000, 100), LinkState = LinkState.Disable },
            new VfState(VfSettings.Fresh, "igbvf", null, "enp1s16"),
            Liveness.StartingSelf());

        ledger.Write(lease);

        var back = ledger.Store.Find(lease.Pci)!;
        Assert.Equal(lease.Original, back.Original);
        Assert.Equal(lease.Owner, back.Owner);
        Assert.Equal(lease.Applied, back.Applied);
        Assert.Contains("\"protocol\": \"802.1ad\"", File.ReadAllText(state.LeaseFile(lease.Pci)));
        Assert.Equal([lease.Pci], ledger.Store.OfVm("vm1").Select(l => l.Pci));
        Assert.Equal("vm1", ledger.Store.MacOwner(lease.Mac));
        Assert.Empty(Directory.EnumerateFiles(state.LeasesDir, "*.tmp"));

        File.WriteAllText(state.LeaseFile("0000:01:10.2"), """{"version":1,"vm":"old","network":"n","port":0,"pf":"p","pfPci":"0000:01:00.0","vf":1,"pci":"0000:01:10.2","mac":"02:00:00:00:00:02"}""");
        Assert.Null(ledger.Store.Find("0000:01:10.2")!.Owner);
        // A format-1 lease as vmnet 0.1 wrote it, with its original state, owner and applied argument lists.
        File.WriteAllText(state.LeaseFile("0000:01:10.4"), """
            {"version":1,"vm":"old","network":"n","port":1,"pf":"p","pfPci":"0000:01:00.0","vf":2,"pci":"0000:01:10.4","mac":"02:00:00:00:00:03","vlan":40,
             "original":{"mac":"00:00:00:00:00:00","vlan":0,"qos":0,"proto":"802.1Q","spoofChk":true,"trust":false,"linkState":"auto","maxTxRate":0,"minTxRate":0,"driver":"igbvf","netDev":"enp1s16f4"},
             "owner":{"kind":"libvirt","domain":"6b1c4a62-0000-8000-8000-000000000001","uri":"qemu:///system"},
             "applied":[["vlan","40","qos","2","proto","802.1Q"],["trust","off"],["mac","02:00:00:00:00:03"],["spoofchk","on"],["max_tx_rate","1000","min_tx_rate","0"],["state","auto"]]}
            """);
        var v1 = ledger.Store.Find("0000:01:10.4")!;
        Assert.Equal(new VfSettings { Vlan = new VlanTag(40, 2), Trust = false, Mac = "02:00:00:00:00:03", SpoofCheck = true, Rates = new TxRates(1000, 0), LinkState = LinkState.Auto }, v1.Applied);
        Assert.Equal(new VfState(VfSettings.Fresh, "igbvf", null, "enp1s16f4"), v1.Original);
        Assert.Equal(new LibvirtDomainOwner(Guid.Parse("6b1c4a62-0000-8000-8000-000000000001"), "qemu:///system"), v1.Owner);
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
        Assert.Null(Liveness.Gone(new DefinitionOwner()));
        // libvirt cannot be asked (no daemon on that socket): the owner counts as alive, nothing is released by mistake.
        Assert.Null(Liveness.Gone(new LibvirtDomainOwner(Guid.NewGuid(), "qemu+unix:///system?socket=/nonexistent/libvirt-sock")));
        Assert.Contains("expired", Liveness.Gone(me with { Expires = DateTimeOffset.UtcNow.AddSeconds(-1) }));
        Assert.Contains("another process", Liveness.Gone(me with { StartTime = me.StartTime + 1 }));

        using var p = Process.Start(new ProcessStartInfo("true") { UseShellExecute = false })!;
        p.WaitForExit();
        Assert.Contains($"process {p.Id} is gone", Liveness.Gone(new ProcessOwner(p.Id, 1)));
    }
}
