using VmNet.Execution;
using VmNet.Planning;

namespace VmNet.Cli;

/// <summary>The human form of a plan: the VFs chosen, then every host change in order, then what follows, then what would stop it.</summary>
internal static class PlanPrinter
{
    /// <summary>The steps that change the host's VFs, listed under "Host changes"; the rest come under "Then".</summary>
    public static bool IsHostChange(Step step) => step is VfStep or SetNumVfs;

    public static void Print(TextWriter o, DryRun dry, string? outDir)
    {
        var (plan, problems) = (dry.Plan, dry.Problems);
        var vm = plan.Vm;
        o.WriteLine($"Plan for {vm.Name} (dry run: nothing was changed)");
        o.WriteLine();
        o.WriteLine("VFs:");
        var rows = plan.Vfs.Select(a => new[]
        {
            a.Network.Name, a.GuestName, a.Pf.Name, $"vf {a.Vf.Index}", a.Vf.Pci, a.Mac + (a.MacGenerated ? " (generated)" : ""),
            (a.Network.Vlan ?? Spec.VlanTag.Untagged).ToString(), a.AlreadyLeased ? "already leased" : "",
        }).ToList();
        TextTable.Print(o, ["NETWORK", "GUEST NIC", "PF", "VF", "PCI", "MAC", "VLAN", ""], rows);
        if (plan.Placement.Describe() is { } placement)
        {
            o.WriteLine();
            o.WriteLine($"Placement: {placement}");
        }
        foreach (var w in plan.Placement.Warnings) o.WriteLine($"warning: {w}");
        if (dry.Reclaims.Count > 0)
        {
            o.WriteLine();
            o.WriteLine("First, orphaned VFs reclaimed (restored and released):");
            foreach (var r in dry.Reclaims) o.WriteLine("  " + r);
        }
        if (plan.Running is { } running)
        {
            o.WriteLine();
            if (running.Record is null)
                o.WriteLine($"{vm.Name} is running; it was launched without a launch record, so what it was booted with cannot be compared: only its VFs' settings change live.");
            else if (plan.Drift.Count == 0)
                o.WriteLine($"{vm.Name} is running as the spec says: nothing to change.");
            else
            {
                o.WriteLine($"{vm.Name} is running; the spec differs from what it was launched with:");
                TextTable.Print(o, ["FIELD", "RUNS WITH", "SPEC", ""], plan.Drift.Select(c => new[] { c.Field, c.Was, c.Now, c.Live ? "changes live" : "needs a restart" }).ToList());
            }
        }
        o.WriteLine();
        o.WriteLine("Host changes, in order:");
        string? current = null;
        foreach (var step in plan.Steps.OfType<VfStep>())
        {
            if (step.Vf.Pci != current)
            {
                current = step.Vf.Pci;
                var a = plan.Vfs.First(x => x.Vf.Pci == step.Vf.Pci);
                o.WriteLine($"  # {a.GuestName}: {a.Network.Name} on {a.Pf.Name}");
            }
            o.WriteLine("  " + step.Describe());
        }
        o.WriteLine();
        o.WriteLine("Then:");
        foreach (var step in plan.Steps.Where(s => !IsHostChange(s)))
            o.WriteLine("  " + step.Describe());
        if (problems.Count > 0)
        {
            o.WriteLine();
            o.WriteLine($"`vmnet up` would stop before the first change ({problems.Count} problem{(problems.Count == 1 ? "" : "s")}):");
            foreach (var p in problems) o.WriteLine("  " + p.Message);
        }
        o.WriteLine();
        o.WriteLine(outDir is null
            ? "Artifacts: add --out DIR to write domain.xml, qemu.args and cidata/ there."
            : $"Artifacts written to {outDir}: {string.Join(", ", ArtifactWriter.Files)}");
    }
}

/// <summary>Writes rendered artifacts to a directory, each file atomically.</summary>
public static class ArtifactWriter
{
    public static readonly IReadOnlyList<string> Files =
        ["domain.xml", "qemu.args", "cidata/user-data", "cidata/meta-data", "cidata/network-config", "cidata/vmnet/agent.json"];

    public static void Write(string dir, Rendering.Artifacts a)
    {
        try
        {
            Save(dir, "domain.xml", a.DomainXml);
            Save(dir, "qemu.args", string.Join('\n', a.QemuArgs) + "\n");
            foreach (var (name, content) in a.SeedFiles) Save(dir, "cidata/" + name, content);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new VmNetException($"--out {dir}: cannot write the artifacts there ({e.Message}); give a directory you can write", ExitCodes.InvalidInput, e);
        }
    }

    private static void Save(string dir, string name, string content) =>
        Io.AtomicFile.Write(Path.Join(dir, name), content, durable: false);
}
