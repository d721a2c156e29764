using VmNet.Planning;

namespace VmNet.Cli;

/// <summary>The human form of a plan: the VFs chosen, then every host change in order, then what follows.</summary>
internal static class PlanPrinter
{
    public static void Print(TextWriter o, Plan plan, string? outDir)
    {
        var vm = plan.Vm;
        o.WriteLine($"Plan for {vm.Name} (dry run: nothing was changed)");
        o.WriteLine();
        o.WriteLine("VFs:");
        var rows = plan.Vfs.Select(a => new[]
        {
            a.Network.Name, a.GuestName, a.Pf.Name, $"vf {a.Vf.Index}", a.Vf.Pci, a.Mac + (a.MacGenerated ? " (generated)" : ""),
            a.Network.Vlan is { } v ? $"vlan {v}" : "untagged", a.AlreadyLeased ? "already leased" : "",
        }).ToList();
        TextTable.Print(o, ["NETWORK", "GUEST NIC", "PF", "VF", "PCI", "MAC", "VLAN", ""], rows);
        o.WriteLine();
        o.WriteLine("Host changes, in order:");
        string? current = null;
        foreach (var step in plan.Steps)
        {
            if (step.Pci != current)
            {
                current = step.Pci;
                var a = plan.Vfs.First(x => x.Vf.Pci == step.Pci);
                o.WriteLine($"  # {a.GuestName}: {a.Network.Name} on {a.Pf.Name}");
            }
            o.WriteLine("  " + step.Describe());
        }
        o.WriteLine();
        o.WriteLine("Then:");
        o.WriteLine($"  qemu-img create -f qcow2 -b {vm.Disk.Image} -F qcow2 {plan.Paths.Disk}");
        o.WriteLine($"  write the NoCloud seed {plan.Paths.Seed} (label cidata: meta-data, user-data, network-config, vmnet/agent.json)");
        o.WriteLine(vm.Backend == Spec.Backend.Libvirt
            ? $"  define the libvirt domain {vm.Name} (domain.xml) and start it{(vm.Autostart ? "; mark it autostart" : "")}"
            : $"  start qemu-system-x86_64 (qemu.args), pid file {plan.Paths.PidFile}");
        o.WriteLine("  wait for the guest agent to report the bonds up");
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
        Save(dir, "domain.xml", a.DomainXml);
        Save(dir, "qemu.args", string.Join('\n', a.QemuArgs) + "\n");
        foreach (var (name, content) in a.SeedFiles) Save(dir, "cidata/" + name, content);
    }

    private static void Save(string dir, string name, string content)
    {
        Leases.AtomicFile.Write(Path.Join(dir, name), content, durable: false);
    }
}
