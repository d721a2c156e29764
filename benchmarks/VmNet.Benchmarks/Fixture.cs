using System.Text.Json;
using VmNet.Kernel;
using VmNet.Leases;
using VmNet.Sim;
using VmNet.Spec;
using VmNet.State;

namespace VmNet.Benchmarks;

/// <summary>Which VFs the generated leases take.</summary>
public enum Placement
{
    /// <summary>The lowest VFs of both PFs: the planner has to walk past every one of them.</summary>
    Lowest,
    /// <summary>The highest VFs of both PFs: the planner's first candidate is free, so only the lease count changes.</summary>
    Highest,
}

/// <summary>
/// A generated host (2 ConnectX-5 PFs x 127 VFs at MTU 9000, as
/// <c>vmnet sim create --pfs 2 --vfs 127 --total-vfs 127 --mtu 9000</c>) and a
/// state directory holding <c>leases</c> leases of other VMs, written as the launcher's own <see cref="LeaseStore"/> reads them.
/// </summary>
public sealed class Fixture : IDisposable
{
    public const int Pfs = 2;
    public const int VfsPerPf = 127;
    /// <summary>The PFs' MTU: examples/vm.yaml asks for 9000 on its storage network.</summary>
    public const int Mtu = 9000;

    /// <summary>The generated host: the same for every case, so it is written once per machine and kept.</summary>
    public string HostDir { get; }
    public string Dir { get; }
    public string StateDirPath => Path.Join(Dir, "state");
    public string SpecPath => Path.Join(Dir, "vm.yaml");
    private readonly bool _owned;

    private Fixture(string hostDir, string dir, bool owned)
    {
        HostDir = hostDir;
        Dir = dir;
        _owned = owned;
    }

    /// <summary>
    /// A state directory (and a copy of examples/vm.yaml) in a new temporary directory, removed on
    /// <see cref="Dispose"/>, beside the shared generated host (<see cref="SharedHost"/>).
    /// </summary>
    public static Fixture CreateTemp(int leases, Placement placement = Placement.Lowest)
    {
        var dir = Path.Join(Path.GetTempPath(), "vmnet-bench-" + Guid.NewGuid().ToString("n")[..12]);
        return Create(SharedHost(), dir, leases, placement, owned: true);
    }

    private static Fixture Create(string hostDir, string dir, int leases, Placement placement, bool owned)
    {
        var f = new Fixture(hostDir, dir, owned);
        Directory.CreateDirectory(dir);
        WriteLeases(new StateDir(f.StateDirPath), leases, placement);
        File.WriteAllText(f.SpecPath, ExampleSpec.Text);
        return f;
    }

    public static void WriteHost(string dir) => SimHost.Create(dir, NicShape.ConnectX5(VfsPerPf), Pfs, VfsPerPf, Mtu);

    /// <summary>
    /// The generated host under the temp directory, written on first use (some 8,000 files and links: seconds on a
    /// slow disk) and reused by every case and run after it. A marker written last tells a whole tree from a partial one.
    /// </summary>
    public static string SharedHost()
    {
        var dir = Path.Join(Path.GetTempPath(), $"vmnet-bench-host-{Pfs}x{VfsPerPf}-mtu{Mtu}-v1");
        var marker = Path.Join(dir, ".complete");
        if (File.Exists(marker)) return dir;
        var partial = dir + "." + Environment.ProcessId + ".tmp";
        if (Directory.Exists(partial)) Directory.Delete(partial, recursive: true);
        WriteHost(partial);
        File.WriteAllText(Path.Join(partial, ".complete"), "");
        try
        {
            Directory.Move(partial, dir);
        }
        catch (IOException) when (File.Exists(marker))
        {
            Directory.Delete(partial, recursive: true); // another process won the race
        }
        return dir;
    }

    /// <summary>
    /// Writes <paramref name="count"/> leases alternating between the PFs (a bond takes one VF of each), owned by VMs
    /// tenant-000, tenant-001, ... two VFs each, with the launcher's own ledger layout (<see cref="LeaseLedger"/>).
    /// </summary>
    public static void WriteLeases(StateDir state, int count, Placement placement)
    {
        if (count > Pfs * VfsPerPf) throw new ArgumentOutOfRangeException(nameof(count), $"at most {Pfs * VfsPerPf} leases fit");
        var shape = NicShape.ConnectX5(VfsPerPf);
        Directory.CreateDirectory(state.LeasesDir);
        Directory.CreateDirectory(Path.Join(state.Path, "macs"));
        for (var i = 0; i < count; i++)
        {
            var pf = i % Pfs;
            var vf = placement == Placement.Lowest ? i / Pfs : VfsPerPf - 1 - i / Pfs;
            var vm = $"tenant-{i / Pfs:d3}";
            var pci = shape.VfPci(pf, vf);
            var mac = $"02:be:00:00:{i >> 8:x2}:{i & 0xff:x2}";
            new LeaseLedger(state).Write(new Lease(Lease.CurrentVersion, vm, "storage", pf, shape.PfName(pf), shape.PfPci(pf), vf, pci, mac,
                new VfSettings { Mac = mac, Vlan = new VlanTag(40) }));
        }
    }

    public void Dispose()
    {
        if (_owned && Directory.Exists(Dir)) Directory.Delete(Dir, recursive: true);
    }
}

/// <summary>examples/vm.yaml, embedded at build time so the benchmarks run from any directory.</summary>
public static class ExampleSpec
{
    public static readonly string Text = Read();

    private static string Read()
    {
        using var stream = typeof(ExampleSpec).Assembly.GetManifestResourceStream("examples/vm.yaml")
            ?? throw new InvalidOperationException("examples/vm.yaml is not embedded");
        using var reader = new StreamReader(stream);
        return reader.ReadToEnd();
    }
}
