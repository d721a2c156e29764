using VmNet.Io;

namespace VmNet.State;

/// <summary>
/// The state directory's paths, named once. Opening one checks what exists of it (<see cref="Guard"/>): vmnet runs as
/// root, and a link or another user's directory planted there would have it write guest output into, or read, the
/// file the link points at.
/// </summary>
public sealed class StateDir
{
    public const string DefaultPath = "/var/lib/vmnet";
    public string Path { get; }

    public StateDir(string path)
    {
        Path = System.IO.Path.GetFullPath(path);
        Guard();
    }

    /// <summary>
    /// Throws (exit 3) unless the state directory, its fixed subdirectories and every VM directory with its lease
    /// index are real directories owned by vmnet's user and writable by nobody else (<see cref="SafePath"/>); what does
    /// not exist yet is fine (vmnet creates it so).
    /// </summary>
    public void Guard()
    {
        SafePath.Check(Path, "directory");
        foreach (var dir in new[] { LeasesDir, VmsDir, PfIndexDir, MacsDir, LogsDir, CpusDir })
            SafePath.Check(dir, "directory");
        if (!Directory.Exists(VmsDir)) return;
        foreach (var vm in Directory.EnumerateFileSystemEntries(VmsDir).Select(System.IO.Path.GetFileName))
        {
            SafePath.Check(VmDir(vm!), "directory");
            SafePath.Check(VmLeasesDir(vm!), "directory");
        }
    }
    public string LeasesDir => System.IO.Path.Join(Path, "leases");
    /// <summary>The CPU leases of dedicated pinning: one file per host CPU leased.</summary>
    public string CpusDir => System.IO.Path.Join(Path, "cpus");
    public string CpuLeaseFile(int cpu) => System.IO.Path.Join(CpusDir, cpu.ToString(System.Globalization.CultureInfo.InvariantCulture) + ".json");
    public string LeaseFile(string pci) => System.IO.Path.Join(LeasesDir, pci + ".json");
    public string VmDir(string vm) => System.IO.Path.Join(VmsDir, vm);
    /// <summary>The VM's own index of its leases: one link per leased VF into <see cref="LeasesDir"/>.</summary>
    public string VmLeasesDir(string vm) => System.IO.Path.Join(VmDir(vm), "vfs");
    /// <summary>The MAC index: one file per MAC in use, holding the VM's name, so uniqueness is one lookup.</summary>
    public string MacFile(string mac) => System.IO.Path.Join(MacsDir, mac.Replace(':', '-'));
    public string MacsDir => System.IO.Path.Join(Path, "macs");
    /// <summary>The PF index: the leased VF indices of one PF, one per line.</summary>
    public string PfIndexFile(string pfPci) => System.IO.Path.Join(PfIndexDir, pfPci);
    public string PfIndexDir => System.IO.Path.Join(Path, "pfs");
    /// <summary>The ledger's lock: one vmnet at a time plans and claims.</summary>
    public string LockFile => System.IO.Path.Join(Path, "lock");
    public string VmsDir => System.IO.Path.Join(Path, "vms");
    /// <summary>Where a failed <c>up</c> keeps the VM's serial log after its directory is gone.</summary>
    public string KeptSerialLog(string vm) => System.IO.Path.Join(LogsDir, $"{vm}.serial.log");
    public string LogsDir => System.IO.Path.Join(Path, "logs");

    /// <summary>
    /// A VM directory: traversable but not listable by others (libvirt's QEMU runs as libvirt-qemu and must reach the
    /// files libvirt relabels for it), created with that mode, never wider first.
    /// </summary>
    public const UnixFileMode VmDirMode = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute
        | UnixFileMode.GroupExecute | UnixFileMode.OtherExecute;

    /// <summary>Creates <see cref="VmLeasesDir"/> owner-only, and the VM directory above it with <see cref="VmDirMode"/>.</summary>
    public void CreateVmLeasesDir(string vm)
    {
        if (OperatingSystem.IsWindows()) { Directory.CreateDirectory(VmLeasesDir(vm)); return; }
        Directory.CreateDirectory(VmDir(vm), VmDirMode);
        Directory.CreateDirectory(VmLeasesDir(vm), UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
    }
}

/// <summary>Where a VM's files live on the host, named once.</summary>
public sealed record VmPaths(string VmDir, string Disk, string Seed, string SerialLog, string QmpSocket, string AgentSocket, string PidFile, string AgentConfig, string ConsoleSocket)
{
    /// <summary>The agent's last report, kept for <c>vmnet status</c>.</summary>
    public string GuestReport => Path.Join(VmDir, "guest.json");

    /// <summary>The spec the VM was last launched with (<see cref="Planning.LaunchRecord"/>), written with its seed.</summary>
    public string Launched => Path.Join(VmDir, "launched.json");

    /// <summary>What the QEMU backend keeps about a VM it runs (libvirt keeps the same in the domain's metadata).</summary>
    public string QemuRecord => Path.Join(VmDir, "qemu.json");

    public static VmPaths For(StateDir state, string vm)
    {
        var dir = state.VmDir(vm);
        string F(string name) => Path.Join(dir, name);
        return new VmPaths(dir, F("disk.qcow2"), F("seed.iso"), F("serial.log"), F("qmp.sock"), F("agent.sock"), F("qemu.pid"), F("agent.json"), F("console.sock"));
    }
}

