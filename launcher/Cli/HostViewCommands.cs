using System.CommandLine;
using VmNet.Doctor;
using VmNet.Host;
using VmNet.Leases;

namespace VmNet.Cli;

/// <summary><c>vmnet host [ls]</c> and <c>vmnet doctor</c>: read-only views of the host.</summary>
internal static class HostViewCommands
{
    /// <summary>Lists PFs and VFs; used as the action of both <c>vmnet host</c> and <c>vmnet host ls</c>.</summary>
    public static int List(ParseResult r, TextWriter stdout, bool json)
    {
        var root = new HostRoot(r.GetValue(VmNetCli.HostRootOption)!);
        var kernel = Apply.HostOps.KernelFor(root);
        var inventory = HostInventory.Read(root, new LeaseStore(new StateDir(r.GetValue(VmNetCli.StateDirOption)!)), pf => AdminState(kernel, pf));
        if (json) stdout.WriteLine(System.Text.Json.JsonSerializer.Serialize(inventory, HostInventoryJson.Default.HostInventory));
        else inventory.PrintTable(stdout);
        return ExitCodes.Ok;
    }

    /// <summary>The VF settings the PF holds (MAC, VLAN), read back through netlink; empty when the PF cannot be read.</summary>
    private static IReadOnlyDictionary<int, VfAdmin> AdminState(IKernel kernel, PhysicalFunction pf)
    {
        try
        {
            var info = IpLinkJson.Parse(kernel.ShowLinkJsonAsync(pf.Name, CancellationToken.None).GetAwaiter().GetResult());
            return info.Vfs.ToDictionary(v => v.Vf, v => new VfAdmin(v.Mac, v.Vlan == 0 ? null : v.Vlan));
        }
        catch (Exception e) when (e is KernelException or VmNetException or System.Text.Json.JsonException or IOException)
        {
            return new Dictionary<int, VfAdmin>();
        }
    }

    public static Command Ls(TextWriter stdout)
    {
        var json = new Option<bool>("--json") { Description = "Print as JSON" };
        var ls = new Command("ls", "List SR-IOV PFs and their VFs: driver, MAC, VLAN, state, owner VM") { json };
        ls.SetAction(r => List(r, stdout, r.GetValue(json)));
        return ls;
    }

    public static Command Doctor(TextWriter stdout)
    {
        var cmd = new Command("doctor", "Check the host for VmNet: IOMMU, vfio-pci, SR-IOV ports, firmware, eswitch mode, memlock");
        cmd.SetAction(async (r, ct) =>
        {
            var root = new HostRoot(r.GetValue(VmNetCli.HostRootOption)!);
            var checks = await new HostDoctor(root, root.IsRealHost ? new CliToolRunner() : null).Run(ct);
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
