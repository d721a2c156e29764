using System.Text.Json.Serialization;
using VmNet.Execution;
using VmNet.Planning;

namespace VmNet.Cli;

/// <summary>The plan as <c>vmnet up --dry-run --json</c> prints it (schemas/vmnet-output.schema.json, <c>plan</c>).</summary>
public sealed record PlanDocument(string Name, string Backend, IReadOnlyList<PlanVf> Vfs, PlanPlacement Placement, IReadOnlyList<string> Reclaims,
    IReadOnlyList<string> HostChanges, IReadOnlyList<string> Then, IReadOnlyList<string> Problems, PlanPaths Paths, bool Running,
    IReadOnlyList<SpecChange> Changes)
{
    public static PlanDocument From(DryRun dry) => From(dry.Plan, dry.Problems, dry.Reclaims);

    private static PlanDocument From(LaunchPlan plan, IReadOnlyList<PreflightProblem> problems, IReadOnlyList<string> reclaims) => new(
        plan.Vm.Name,
        Spec.SpecNames.Of(plan.Backend),
        plan.Vfs.Select(a => new PlanVf(a.Network.Name, a.GuestName, a.PortName, a.Port, a.Pf.Name, a.Pf.Pci, a.Vf.Index, a.Vf.Pci,
            a.Mac, a.MacGenerated, a.Network.Vlan?.Id, a.Vf.IommuGroup, a.AlreadyLeased)).ToList(),
        PlanPlacement.Of(plan.Placement),
        reclaims,
        plan.Steps.Where(PlanPrinter.IsHostChange).Select(s => s.Describe()).ToList(),
        plan.Steps.Where(s => !PlanPrinter.IsHostChange(s)).Select(s => s.Describe()).ToList(),
        problems.Select(p => p.Message).ToList(),
        new PlanPaths(plan.Paths.VmDir, plan.Paths.Disk, plan.Paths.Seed, plan.Paths.SerialLog),
        plan.Running is not null,
        plan.Drift);
}

/// <summary>One VF of the plan: the same fields as a VF of <c>vmnet status</c> (network, member, port, pf, pfPci, vf,
/// pci, mac, vlan), and what only a plan knows: the port's index in the network's <c>ports</c>, whether the MAC was
/// generated, the IOMMU group, whether the VM holds the VF already.</summary>
public sealed record PlanVf(string Network, string Member, string Port, int PortIndex, string Pf, string PfPci, int Vf, string Pci,
    string Mac, bool MacGenerated, int? Vlan, int? IommuGroup, bool AlreadyLeased);

/// <summary>The plan's placement (<c>placement</c> in the schema).</summary>
public sealed record PlanPlacement(int? Node, IReadOnlyList<int> VcpuCpus, int? EmulatorCpu, IReadOnlyList<int> SharedCpus, string Hugepages,
    string? Hugetlbfs, IReadOnlyList<string> Warnings)
{
    public static PlanPlacement Of(Placement p) => new(p.Node, p.VcpuCpus, p.EmulatorCpu, p.SharedCpus,
        p.HugepageKiB switch { 0 => "none", 2048 => "2MiB", _ => "1GiB" }, p.HugetlbfsMount, p.Warnings);
}

public sealed record PlanPaths(string VmDir, string Disk, string Seed, string SerialLog);

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase, WriteIndented = true)]
[JsonSerializable(typeof(PlanDocument))]
internal sealed partial class PlanJson : JsonSerializerContext;
