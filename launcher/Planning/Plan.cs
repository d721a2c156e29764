using VmNet.Host;
using VmNet.Spec;

namespace VmNet.Planning;

/// <summary>One VF chosen for one port of one network.</summary>
public sealed record VfAssignment(
    int NetworkIndex,
    NetworkSpec Network,
    int Port,
    string PortName,
    PhysicalFunction Pf,
    VirtualFunction Vf,
    string Mac,
    bool MacGenerated,
    bool AlreadyLeased)
{
    /// <summary>The member's stable name in the guest (e.g. storage0).</summary>
    public string GuestName => Network.MemberName(Port);
}

/// <summary>Where a VM's files live on the host.</summary>
public sealed record VmPaths(string VmDir, string Disk, string Seed, string SerialLog, string QmpSocket, string AgentSocket, string PidFile, string AgentConfig, string ConsoleSocket)
{
    public static VmPaths For(Leases.StateDir state, string vm)
    {
        var dir = state.VmDir(vm);
        string F(string name) => Path.Join(dir, name);
        return new VmPaths(dir, F("disk.qcow2"), F("seed.iso"), F("serial.log"), F("qmp.sock"), F("agent.sock"), F("qemu.pid"), F("agent.json"), F("console.sock"));
    }
}

/// <summary>
/// What <c>vmnet up</c> will do: the VFs chosen and every host change in order. Made by <see cref="Planner"/> without
/// touching the host; applied by the apply step.
/// </summary>
public sealed record Plan(VmSpec Vm, IReadOnlyList<VfAssignment> Vfs, IReadOnlyList<HostStep> Steps, VmPaths Paths);
