using System.CommandLine;
using VmNet.Doctor;
using VmNet.Host;
using VmNet.Kernel;
using VmNet.Leases;
using VmNet.State;

namespace VmNet.Cli;

/// <summary><c>vmnet host [ls]</c> and <c>vmnet doctor</c>: read-only views of the host.</summary>
internal static class HostViewCommands
{
    /// <summary>Lists PFs and VFs; used as the action of both <c>vmnet host</c> and <c>vmnet host ls</c>.</summary>
    public static async Task<int> List(ParseResult r, TextWriter stdout, bool json, bool free, bool summary, CancellationToken ct)
    {
        if (free && summary)
            throw new VmNetException("--free and --summary do not go together: --summary counts every VF; --free lists the free ones", ExitCodes.InvalidInput);
        var root = new HostRoot(r.GetValue(VmNetCli.HostRootOption)!);
        var kernel = HostCommands.KernelFor(root);
        var scanner = new HostScanner(root);
        var pfs = scanner.AllPfs();
        var admin = new Dictionary<string, IReadOnlyDictionary<int, VfAdmin>>(StringComparer.Ordinal);
        foreach (var pf in pfs) admin[pf.Pci] = await AdminState(kernel, pf, ct);
        var inventory = HostInventory.Read(pfs, new LeaseStore(new StateDir(r.GetValue(VmNetCli.StateDirOption)!)), pf => admin[pf.Pci], scanner.Numa());
        if (free) inventory = inventory.FreeOnly();
        if (summary && json) stdout.WriteLine(System.Text.Json.JsonSerializer.Serialize(inventory.Summary(), HostInventoryJson.Default.IReadOnlyListPfSummary));
        else if (summary) inventory.PrintSummary(stdout);
        else if (json) stdout.WriteLine(System.Text.Json.JsonSerializer.Serialize(inventory, HostInventoryJson.Default.HostInventory));
        else inventory.PrintTable(stdout);
        return ExitCodes.Ok;
    }

    /// <summary>The VF settings the PF holds (MAC, VLAN), read back through netlink; empty when the PF cannot be read.</summary>
    private static async Task<IReadOnlyDictionary<int, VfAdmin>> AdminState(IKernel kernel, PhysicalFunction pf, CancellationToken ct)
    {
        try
        {
            var info = await kernel.ReadLinkAsync(pf.Name, ct);
            return info.Vfs.ToDictionary(v => v.Vf, v => new VfAdmin(v.Settings.Mac ?? "", v.Settings.Vlan is { IsTagged: true } t ? t.Id : null));
        }
        catch (Exception e) when (e is VmNetException or Netlink.NetlinkException or IOException)
        {
            return new Dictionary<int, VfAdmin>();
        }
    }

    /// <summary>The options of <c>vmnet host</c> and <c>vmnet host ls</c>.</summary>
    public static (Option<bool> Json, Option<bool> Free, Option<bool> Summary) ListOptions() => (
        new Option<bool>("--json") { Description = "Print as JSON" },
        new Option<bool>("--free") { Description = "Only the VFs a VM could be given now" },
        new Option<bool>("--summary") { Description = "One line per PF: its VFs counted as free, vmnet's, another user's, unusable" });

    public static Command Ls(TextWriter stdout)
    {
        var (json, free, summary) = ListOptions();
        var ls = new Command("ls", "List SR-IOV PFs and their VFs: driver, MAC, VLAN, state, owner VM") { json, free, summary };
        ls.SetAction((r, ct) => List(r, stdout, r.GetValue(json), r.GetValue(free), r.GetValue(summary), ct));
        return ls;
    }

    /// <summary><c>vmnet host networks</c>: the networks host.yaml defines by name, what each fixes, and the VMs using it.</summary>
    public static Command Networks(TextWriter stdout)
    {
        var json = new Option<bool>("--json") { Description = "Print the networks as JSON" };
        var config = new Option<string>("--config")
        {
            Description = "The host config",
            DefaultValueFactory = _ => Environment.GetEnvironmentVariable("VMNET_HOST_CONFIG") is { Length: > 0 } v ? v : HostConfig.DefaultPath,
        };
        var cmd = new Command("networks", "List the networks the host config defines by name (networks: in host.yaml), with the VMs using each") { json, config };
        cmd.SetAction(r =>
        {
            var host = HostConfig.LoadFile(r.GetValue(config)!);
            var leases = new LeaseStore(new StateDir(r.GetValue(VmNetCli.StateDirOption)!));
            var users = leases.Scan().Select(x => x.Lease).OfType<Lease>().Where(l => l.HostNetwork is not null)
                .GroupBy(l => l.HostNetwork!).ToDictionary(g => g.Key, g => (IReadOnlyList<string>)[.. g.Select(l => l.Vm).Distinct().Order(StringComparer.Ordinal)]);
            var rows = host.Networks.Values.OrderBy(n => n.Name, StringComparer.Ordinal)
                .Select(n => new HostNetworkRow(n.Name, n.Ports, n.Vlan?.Id, n.Vlan?.Qos, n.Vlan is { } v ? Spec.SpecNames.Of(v.Protocol) : null, n.Mtu,
                    n.SpoofCheck, n.Trust, n.LinkState is { } ls ? Spec.SpecNames.Of(ls) : null, n.MaxTxRate, n.MinTxRate,
                    users.GetValueOrDefault(n.Name) ?? [])).ToList();
            if (r.GetValue(json))
            {
                stdout.WriteLine(System.Text.Json.JsonSerializer.Serialize(new HostNetworksDocument(host.Source, rows), OutputJson.Default.HostNetworksDocument));
                return ExitCodes.Ok;
            }
            if (rows.Count == 0)
            {
                stdout.WriteLine($"{host.Source} defines no networks (networks: {{NAME: {{ports: [PF, PF], vlan: N}}}})");
                return ExitCodes.Ok;
            }
            TextTable.Print(stdout, ["NETWORK", "PORTS", "FIXED BY THE HOST", "VMS"], rows.Select(n => new[]
            {
                n.Name, string.Join(",", n.Ports), host.Networks[n.Name].Describe(), n.Vms.Count == 0 ? "-" : string.Join(",", n.Vms),
            }).ToList());
            return ExitCodes.Ok;
        });
        return cmd;
    }

    public static Command Doctor(TextWriter stdout)
    {
        var json = new Option<bool>("--json") { Description = "Print the checks as JSON" };
        var cmd = new Command("doctor", "Check the host for VmNet: IOMMU, vfio-pci, SR-IOV ports, firmware, eswitch mode, memlock") { json };
        cmd.SetAction(async (r, ct) =>
        {
            var root = new HostRoot(r.GetValue(VmNetCli.HostRootOption)!);
            var ledger = new LeaseLedger(new StateDir(r.GetValue(VmNetCli.StateDirOption)!));
            var checks = await new HostDoctor(root, root.IsRealHost ? new CliToolRunner() : null, ledger.Cpus.Held()).Run(ct);
            if (r.GetValue(json))
            {
                var failures = checks.Count(c => c.Status == CheckStatus.Fail);
                var document = new DoctorDocument(failures == 0, failures,
                    checks.Select(c => new DoctorCheck(c.Name, c.Status.ToString().ToLowerInvariant(), c.Detail, c.Fix)).ToList());
                stdout.WriteLine(System.Text.Json.JsonSerializer.Serialize(document, OutputJson.Default.DoctorDocument));
                return failures == 0 ? ExitCodes.Ok : ExitCodes.HostCannotServe;
            }
            foreach (var c in checks)
            {
                var mark = c.Status switch { CheckStatus.Ok => "ok  ", CheckStatus.Warn => "warn", CheckStatus.Fail => "FAIL", _ => "skip" };
                stdout.WriteLine($"{mark}  {c.Name}: {c.Detail}");
                if (c.Fix is not null && c.Status is CheckStatus.Fail or CheckStatus.Warn) stdout.WriteLine($"      fix: {c.Fix}");
            }
            var failed = checks.Count(c => c.Status == CheckStatus.Fail);
            stdout.WriteLine(failed == 0 ? "the host is ready for VmNet" : $"{failed} check{(failed == 1 ? "" : "s")} failed");
            return failed == 0 ? ExitCodes.Ok : ExitCodes.HostCannotServe;
        });
        return cmd;
    }

    private sealed class CliToolRunner : IToolRunner
    {
        public async Task<(int ExitCode, string Output)?> Run(string tool, IReadOnlyList<string> args, CancellationToken ct)
        {
            try
            {
                var result = await CliWrap.Buffered.BufferedCommandExtensions.ExecuteBufferedAsync(
                    CliWrap.Cli.Wrap(tool).WithArguments(args).WithValidation(CliWrap.CommandResultValidation.None), ct);
                return (result.ExitCode, result.StandardOutput + result.StandardError);
            }
            catch (System.ComponentModel.Win32Exception)
            {
                return null;
            }
        }
    }
}
