using System.CommandLine;
using VmNet.Apply;
using VmNet.Host;
using VmNet.Leases;
using VmNet.Spec;

namespace VmNet.Cli;

/// <summary>The commands that change the host: <c>up</c> (apply part), <c>rm</c>, <c>gc</c>.</summary>
internal static class HostCommands
{
    public static HostOps Ops(ParseResult r) =>
        new(HostOps.KernelFor(new HostRoot(r.GetValue(VmNetCli.HostRootOption)!)), new StateDir(r.GetValue(VmNetCli.StateDirOption)!),
            ApplyHooks.FromEnvironment(), Console.Error);

    /// <summary>
    /// <c>vmnet up SPEC</c> without --dry-run: plan and claim under the lock, apply, print one line. The backend's
    /// define/start step slots in after <see cref="HostOps.UpAsync"/>.
    /// </summary>
    public static int Up(ParseResult r, VmSpec vm, TextWriter stdout)
    {
        var ops = Ops(r);
        var result = ops.UpAsync(vm, CancellationToken.None).GetAwaiter().GetResult();
        foreach (var line in result.Reclaimed) stdout.WriteLine($"reclaimed an orphan: {line}");
        var vfs = string.Join(", ", result.Plan.Vfs.Select(a => $"{a.GuestName}={a.Vf.Pci} ({a.Pf.Name} vf {a.Vf.Index}, {a.Mac})"));
        stdout.WriteLine($"{vm.Name}: {result.Plan.Vfs.Count} VFs leased, configured and bound to vfio-pci: {vfs}; give them back with `vmnet rm {vm.Name}`");
        return ExitCodes.Ok;
    }

    public static Command Rm(TextWriter stdout)
    {
        var name = new Argument<string>("NAME") { Description = "The VM's name" };
        var cmd = new Command("rm", "Give a VM's VFs back as they were found and drop its leases (idempotent)") { name };
        cmd.SetAction(r =>
        {
            var vm = r.GetValue(name)!;
            var done = Ops(r).RemoveAsync(vm, CancellationToken.None).GetAwaiter().GetResult();
            foreach (var line in done) stdout.WriteLine(line);
            stdout.WriteLine(done.Count == 0 ? $"{vm}: no leases; nothing to do" : $"{vm}: {done.Count} VFs restored and released");
            return ExitCodes.Ok;
        });
        return cmd;
    }

    public static Command Gc(TextWriter stdout)
    {
        var cmd = new Command("gc", "Restore and release VFs whose owner is gone (a crashed vmnet, a dead process)");
        cmd.SetAction(r =>
        {
            var done = Ops(r).GcAsync(CancellationToken.None).GetAwaiter().GetResult();
            foreach (var line in done) stdout.WriteLine(line);
            stdout.WriteLine(done.Count == 0 ? "no orphaned leases" : $"{done.Count} orphaned VFs restored and released");
            return ExitCodes.Ok;
        });
        return cmd;
    }
}
