using System.CommandLine;
using VmNet.Backends;
using VmNet.Execution;
using VmNet.Host;
using VmNet.Io;
using VmNet.Kernel;
using VmNet.Sim;
using VmNet.State;

namespace VmNet.Cli;

/// <summary>The commands that change the host: <c>rm</c>, <c>gc</c>, <c>host apply | prepare | boot-unit</c>.</summary>
internal static class HostCommands
{
    /// <summary>The kernel for a host root: the real one for "/", the simulator for any other directory.</summary>
    public static IKernel KernelFor(HostRoot root) => root.IsRealHost ? new RealKernel() : new SimulatedKernel(root);

    public static HostOps Ops(ParseResult r) =>
        new(KernelFor(new HostRoot(r.GetValue(VmNetCli.HostRootOption)!)), new StateDir(r.GetValue(VmNetCli.StateDirOption)!),
            ApplyHooks.FromEnvironment(), r.InvocationConfiguration.Error);

    /// <summary>
    /// Runs a host-changing command with SIGINT and SIGTERM turned into cancellation, so the executor rolls the host
    /// back and gives the leases back instead of dying half-way.
    /// </summary>
    public static async Task<int> WithSignals(CancellationToken outer, Func<CancellationToken, Task<int>> run, string vm)
    {
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(outer);
        void Stop(System.Runtime.InteropServices.PosixSignalContext c) { c.Cancel = true; cts.Cancel(); }
        using var sigint = System.Runtime.InteropServices.PosixSignalRegistration.Create(System.Runtime.InteropServices.PosixSignal.SIGINT, Stop);
        using var sigterm = System.Runtime.InteropServices.PosixSignalRegistration.Create(System.Runtime.InteropServices.PosixSignal.SIGTERM, Stop);
        try
        {
            return await run(cts.Token);
        }
        catch (OperationCanceledException e)
        {
            throw new VmNetException($"interrupted: the changes made to the host were rolled back and {vm}'s new leases given back", ExitCodes.Failure, e);
        }
    }

    public static Command Rm(TextWriter stdout)
    {
        var name = LaunchCommands.NameArgument();
        var connect = LaunchCommands.ConnectOption();
        var timeout = LaunchCommands.TimeoutOption("With --force: seconds to wait for the guest to power off before stopping it hard");
        var force = new Option<bool>("--force", "-f") { Description = "Remove a running VM too: power it off first (stopped hard after --timeout)" };
        var json = new Option<bool>("--json") { Description = "Print what was stopped, deleted and given back as JSON" };
        var cmd = new Command("rm",
            "Remove a VM (a running one only with --force): undefine it, delete its files (disk overlay too), give its VFs back as found") { name, force, timeout, connect, json };
        cmd.SetAction(async (r, ct) =>
        {
            var vm = r.GetValue(name)!;
            var seconds = LaunchCommands.Seconds(r, timeout);
            var ops = Ops(r);
            var dir = ops.Ledger.State.VmDir(vm);
            var existed = Directory.Exists(dir);
            var lines = new List<string>();
            (string? backendName, string? stop) = (null, null);
            using (var backends = new BackendSet(LibvirtBackend.ResolveUri(r.GetValue(connect)), ops.Ledger.State))
            {
                (IBackend Backend, VmStatus Status)? found = null;
                try
                {
                    found = await backends.FindAsync(vm, ct);
                }
                catch (VmNetException e)
                {
                    r.InvocationConfiguration.Error.WriteLine($"vmnet: warning: {e.Message}; giving back {vm}'s VFs only");
                }
                if (found is { Status.Running: true } running && !r.GetValue(force))
                    throw new VmNetException(
                        $"{vm} is {running.Status.State} ({running.Backend.Name}); nothing was changed. Stop it first with `vmnet down {vm}`, " +
                        $"or stop and remove it at once with `vmnet rm --force {vm}`", ExitCodes.Failure);
                if (found is { } f)
                {
                    var stopped = await f.Backend.RemoveAsync(vm, TimeSpan.FromSeconds(seconds), ct);
                    (backendName, stop) = (f.Backend.Name, LaunchCommands.StopWord(stopped));
                    lines.Add(stopped switch
                    {
                        StopResult.AlreadyStopped => $"{vm}: was not running; removed from {f.Backend.Name}",
                        StopResult.ShutDown => $"{vm}: shut down and removed from {f.Backend.Name}",
                        _ => $"{vm}: did not power off within {seconds} s and was stopped hard; removed from {f.Backend.Name}",
                    });
                }
                else
                {
                    // No backend knows it (never started, or a test driver's host that ended): delete its files only.
                    await backends.Qemu.RemoveAsync(vm, TimeSpan.Zero, ct);
                }
            }
            var done = await ops.RemoveAsync(vm, ct);
            lines.AddRange(done);
            var deleted = existed && !Directory.Exists(dir);
            if (deleted) lines.Add($"{vm}: deleted {dir} (disk overlay, seed, serial log)");
            lines.Add(done.Count > 0 ? $"{vm}: {done.Count} VFs restored and released" : existed ? $"{vm}: held no VFs" : $"{vm}: no leases; nothing to do");
            if (r.GetValue(json))
                stdout.WriteLine(System.Text.Json.JsonSerializer.Serialize(new RmDocument(vm, backendName, stop, deleted ? dir : null, done), OutputJson.Default.RmDocument));
            else
                foreach (var line in lines) stdout.WriteLine(line);
            return ExitCodes.Ok;
        });
        return cmd;
    }

    public static Command Gc(TextWriter stdout)
    {
        var json = new Option<bool>("--json") { Description = "Print what was released and skipped as JSON" };
        var reset = new Option<string>("--reset")
        {
            Description = "Instead: give one VF (by PCI address) whose lease is corrupt or lost the kernel's defaults and its host driver, and drop its lease",
            HelpName = "PCI",
        };
        var cmd = new Command("gc", "Restore and release VFs whose owner is gone (a crashed vmnet, a dead process, an undefined domain)") { json, reset };
        cmd.SetAction(async (r, ct) =>
        {
            if (r.GetValue(reset) is { } pci)
            {
                var line = await Ops(r).ResetVfAsync(pci, ct);
                if (r.GetValue(json)) stdout.WriteLine(System.Text.Json.JsonSerializer.Serialize(new GcDocument([line], []), OutputJson.Default.GcDocument));
                else stdout.WriteLine(line);
                return ExitCodes.Ok;
            }
            var (done, problems) = await Ops(r).GcAsync(ct);
            if (r.GetValue(json))
            {
                stdout.WriteLine(System.Text.Json.JsonSerializer.Serialize(new GcDocument(done, problems), OutputJson.Default.GcDocument));
                return problems.Count == 0 ? ExitCodes.Ok : ExitCodes.Failure;
            }
            foreach (var line in done) stdout.WriteLine(line);
            stdout.WriteLine(done.Count == 0 ? "no orphaned leases" : $"{done.Count} orphaned VFs restored and released");
            foreach (var p in problems) r.InvocationConfiguration.Error.WriteLine($"vmnet: skipped: {p}");
            return problems.Count == 0 ? ExitCodes.Ok : ExitCodes.Failure;
        });
        return cmd;
    }

    /// <summary>The running vmnet's path when it is the vmnet executable (not dotnet or a test host), else the package's /usr/bin/vmnet.</summary>
    private static string ThisVmnet() =>
        Environment.ProcessPath is { } exe && Path.GetFileName(exe) == "vmnet" ? exe : "/usr/bin/vmnet";

    private static readonly Option<string> ConfigOption = new("--config")
    {
        Description = "The host config (pfs: [{port: PF, vfs: N}])",
        DefaultValueFactory = _ => HostConfig.DefaultPath,
    };

    /// <summary><c>vmnet host apply | prepare | boot-unit</c>, added to the <c>host</c> command.</summary>
    public static void AddProvisioning(Command host, TextWriter stdout)
    {
        var applyJson = new Option<bool>("--json") { Description = "Print each PF's VF count before and after as JSON" };
        var apply = new Command("apply", "Give each PF of the host config its number of VFs (idempotent; refuses while VFs are in use)") { ConfigOption, applyJson };
        apply.SetAction(async (r, ct) =>
        {
            var config = HostConfig.LoadFile(r.GetValue(ConfigOption)!);
            var ops = Ops(r);
            var done = await new Provisioner(ops.Kernel, ops.Ledger, ApplyHooks.FromEnvironment()).ApplyAsync(config, ct);
            if (r.GetValue(applyJson))
                stdout.WriteLine(System.Text.Json.JsonSerializer.Serialize(
                    new HostApplyDocument(done.Select(c => new HostApplyPf(c.Pf, c.PfPci, c.Before, c.After, c.Changed)).ToList()), OutputJson.Default.HostApplyDocument));
            else
                foreach (var line in done) stdout.WriteLine(line);
            return ExitCodes.Ok;
        });
        var prepareJson = new Option<bool>("--json") { Description = "Print each VF prepared or skipped, and each VM that failed, as JSON (exit 1 when one failed)" };
        var prepare = new Command("prepare", "Re-apply every leased VF's settings and vfio-pci binding (at boot, after `vmnet host apply`)") { prepareJson };
        prepare.SetAction(async (r, ct) =>
        {
            var ops = Ops(r);
            var report = await new Provisioner(ops.Kernel, ops.Ledger, ApplyHooks.FromEnvironment()).PrepareLeasesAsync(ct);
            if (r.GetValue(prepareJson))
                stdout.WriteLine(System.Text.Json.JsonSerializer.Serialize(new HostPrepareDocument(report.Prepared, report.Skipped, report.Failed), OutputJson.Default.HostPrepareDocument));
            else if (report.Failed.Count > 0)
                throw new VmNetException(string.Join("\n", report.Lines()), ExitCodes.Failure);
            else
                foreach (var line in report.Lines()) stdout.WriteLine(line);
            return report.Failed.Count == 0 ? ExitCodes.Ok : ExitCodes.Failure;
        });
        var output = new Option<string>("--output", "-o")
        {
            Description = "Where to write the unit (- for stdout); enable it with `systemctl daemon-reload && systemctl enable vmnet-host.service`",
            DefaultValueFactory = _ => "/etc/systemd/system/vmnet-host.service",
        };
        var vmnetPath = new Option<string>("--vmnet") { Description = "The vmnet binary the unit runs (default: this vmnet, or /usr/bin/vmnet)", DefaultValueFactory = _ => ThisVmnet() };
        var generic = new Option<bool>("--generic") { Description = "A unit for any host (the one the Debian package installs): it names no PF and reads --config only at boot" };
        var unit = new Command("boot-unit", "Write a systemd unit that runs `vmnet host apply` and `vmnet host prepare` at boot, before libvirt") { ConfigOption, output, vmnetPath, generic };
        unit.SetAction(r =>
        {
            var configPath = Path.GetFullPath(r.GetValue(ConfigOption)!);
            IEnumerable<string> names = [];
            if (!r.GetValue(generic))
            {
                var config = HostConfig.LoadFile(configPath);
                var scanner = new HostScanner(new HostRoot(r.GetValue(VmNetCli.HostRootOption)!));
                names = config.Pfs.Select(p => scanner.FindPort(p.Port)?.Name ?? p.Port).Where(n => !n.Contains(':', StringComparison.Ordinal)).ToList();
            }
            // The package's unit names the man page the package installs beside it (systemd-analyze verify runs `man`).
            var text = Provisioner.BootUnit(r.GetValue(vmnetPath)!, configPath, Path.GetFullPath(r.GetValue(VmNetCli.StateDirOption)!), names, documented: r.GetValue(generic));
            var target = r.GetValue(output)!;
            if (target == "-") stdout.Write(text);
            else
            {
                AtomicFile.Write(target, text);
                stdout.WriteLine($"wrote {target}; enable it with `systemctl daemon-reload && systemctl enable vmnet-host.service`");
            }
            return ExitCodes.Ok;
        });
        host.Subcommands.Add(apply);
        host.Subcommands.Add(prepare);
        host.Subcommands.Add(unit);
    }
}
