using System.CommandLine;
using VmNet.Backends;
using VmNet.Planning;
using VmNet.Sim;
using VmNet.Spec;
using VmNet.State;

namespace VmNet.Cli;

/// <summary>The <c>vmnet</c> command line: a thin layer over spec, plan and render.</summary>
public static class VmNetCli
{
    public static int Run(string[] args) => Run(args, Console.Out, Console.Error);

    public static int Run(string[] args, TextWriter stdout, TextWriter stderr)
    {
        var root = Build(stdout);
        var parsed = root.Parse(args);
        if (parsed.Errors.Count > 0)
        {
            foreach (var e in parsed.Errors) stderr.WriteLine($"vmnet: {e.Message}");
            stderr.WriteLine("Run `vmnet --help` for usage.");
            return ExitCodes.InvalidInput;
        }
        try
        {
            // VmNet turns SIGINT and SIGTERM into a rollback itself (HostCommands.WithSignals); System.CommandLine's own
            // handling would end the process after a timeout, in the middle of that rollback.
            return parsed.Invoke(new InvocationConfiguration { Output = stdout, Error = stderr, EnableDefaultExceptionHandler = false, ProcessTerminationTimeout = null });
        }
        catch (Exception e) when (e is VmNetException || Environment.GetEnvironmentVariable("VMNET_DEBUG") != "1")
        {
            var (message, code) = ErrorTranslator.Describe(e);
            stderr.WriteLine($"vmnet: {message}");
            return code;
        }
    }

    internal static readonly Option<string> HostRootOption = new("--host-root")
    {
        Description = "Root of the host's /sys, /proc and /dev (a simulated host for trials and tests) [env VMNET_HOST_ROOT]",
        DefaultValueFactory = _ => Environment.GetEnvironmentVariable("VMNET_HOST_ROOT") is { Length: > 0 } v ? v : "/",
        Recursive = true,
    };

    internal static readonly Option<string> StateDirOption = new("--state-dir")
    {
        Description = "Where leases and VM files live [env VMNET_STATE_DIR]",
        DefaultValueFactory = _ => Environment.GetEnvironmentVariable("VMNET_STATE_DIR") is { Length: > 0 } v ? v : StateDir.DefaultPath,
        Recursive = true,
    };

    private static RootCommand Build(TextWriter stdout)
    {
        var root = new RootCommand("vmnet: VMs with SR-IOV VFs bonded active-backup in the guest, from one YAML spec.");
        root.Options.Add(HostRootOption);
        root.Options.Add(StateDirOption);
        root.Subcommands.Add(UpCommand(stdout));
        root.Subcommands.Add(ValidateCommand(stdout));
        root.Subcommands.Add(SimCommand(stdout));
        root.Subcommands.Add(HostCommands.Rm(stdout));
        root.Subcommands.Add(HostCommands.Gc(stdout));
        root.Subcommands.Add(HostCommand(stdout));
        root.Subcommands.Add(HostViewCommands.Doctor(stdout));
        root.Subcommands.Add(LaunchCommands.Status(stdout, StateDirOption));
        root.Subcommands.Add(LaunchCommands.List(stdout, StateDirOption));
        root.Subcommands.Add(LaunchCommands.Down(stdout, StateDirOption));
        root.Subcommands.Add(LaunchCommands.ConsoleCommand(StateDirOption));
        return root;
    }

    private static Command UpCommand(TextWriter stdout)
    {
        var spec = new Argument<string>("SPEC") { Description = "The VM's spec (vm.yaml)" };
        var dryRun = new Option<bool>("--dry-run") { Description = "Print the plan and change nothing" };
        var json = new Option<bool>("--json") { Description = "Print the plan as JSON" };
        var outDir = new Option<string?>("--out") { Description = "Also write the artifacts to this directory" };
        var templates = new Option<string?>("--templates") { Description = "Read templates from this directory (files there override the embedded ones)" };
        var backend = new Option<string?>("--backend") { Description = "libvirt or qemu (default: the spec's backend)" };
        backend.AcceptOnlyFromAmong("libvirt", "qemu");
        var connect = LaunchCommands.ConnectOption();
        var noWait = new Option<bool>("--no-wait") { Description = "Do not wait for the guest agent's network-ready report" };
        var waitTimeout = new Option<int>("--wait-timeout") { Description = "Seconds to wait for the guest agent", DefaultValueFactory = _ => 300 };
        var noStart = new Option<bool>("--no-start") { Description = "Only reserve, configure and bind the VFs (for a VM started elsewhere)" };
        var cmd = new Command("up", "Reserve VFs, configure them, bind them to vfio-pci, and start the VM")
            { spec, dryRun, json, outDir, templates, backend, connect, noWait, waitTimeout, noStart };
        cmd.SetAction(async (r, ct) =>
        {
            var vm = SpecLoader.LoadFile(r.GetValue(spec)!);
            var dry = r.GetValue(dryRun);
            var launch = new LaunchOptions
            {
                Backend = r.GetValue(backend) switch { "qemu" => Backend.Qemu, "libvirt" => Backend.Libvirt, _ => null },
                LibvirtUri = LibvirtBackend.ResolveUri(r.GetValue(connect)),
                Start = !r.GetValue(noStart),
                Wait = !r.GetValue(noWait),
                WaitTimeout = TimeSpan.FromSeconds(r.GetValue(waitTimeout)),
                // Looked for before any host change: a VMNET_AGENT naming no file is refused here.
                Agent = Seed.SeedImage.FindAgent(),
            };
            var options = new UpFlow.Options(launch, r.GetValue(templates), r.GetValue(outDir), dry, r.GetValue(json));
            var ops = HostCommands.Ops(r);
            if (dry) return await UpFlow.RunAsync(ops, vm, options, stdout, r.InvocationConfiguration.Error, ct);
            return await HostCommands.WithSignals(ct, c => UpFlow.RunAsync(ops, vm, options, stdout, r.InvocationConfiguration.Error, c), vm.Name);
        });
        return cmd;
    }

    private static Command ValidateCommand(TextWriter stdout)
    {
        var spec = new Argument<string>("SPEC") { Description = "The VM's spec (vm.yaml)" };
        var cmd = new Command("validate", "Check a spec without looking at the host") { spec };
        cmd.SetAction(r =>
        {
            var vm = SpecLoader.LoadFile(r.GetValue(spec)!);
            stdout.WriteLine($"{r.GetValue(spec)}: valid ({vm.Name}: {vm.Networks.Count} network{(vm.Networks.Count == 1 ? "" : "s")}, {vm.Networks.Sum(n => n.Ports.Count)} VFs)");
            return ExitCodes.Ok;
        });
        return cmd;
    }

    private static Command HostCommand(TextWriter stdout)
    {
        var json = new Option<bool>("--json") { Description = "Print as JSON" };
        var host = new Command("host", "The host's SR-IOV PFs and VFs (same as `vmnet host ls`), provisioning and boot preparation")
            { json, HostViewCommands.Ls(stdout) };
        host.SetAction((r, ct) => HostViewCommands.List(r, stdout, r.GetValue(json), ct));
        HostCommands.AddProvisioning(host, stdout);
        return host;
    }

    private static Command SimCommand(TextWriter stdout)
    {
        var dir = new Argument<string>("DIR") { Description = "Directory to write the simulated host's /sys, /proc and /dev into" };
        var shape = new Option<string>("--shape") { Description = "NIC model: connectx5 or igb", DefaultValueFactory = _ => "connectx5" };
        shape.AcceptOnlyFromAmong("connectx5", "igb");
        var pfs = new Option<int>("--pfs") { Description = "Number of ports (PFs)", DefaultValueFactory = _ => 2 };
        var vfs = new Option<int>("--vfs") { Description = "VFs to create on each PF (sriov_numvfs)", DefaultValueFactory = _ => 8 };
        var total = new Option<int?>("--total-vfs") { Description = "sriov_totalvfs (connectx5: the firmware's NUM_OF_VFS; default 16)" };
        var mtu = new Option<int>("--mtu") { Description = "The PFs' MTU", DefaultValueFactory = _ => 1500 };
        var example = new Option<bool>("--example") { Description = "Write the host shipped in examples/hosts/connectx5 (other options ignored)" };
        var create = new Command("create", "Write a simulated host laid out like the kernel's sysfs") { dir, shape, pfs, vfs, total, mtu, example };
        create.SetAction(r =>
        {
            if (r.GetValue(example))
            {
                EnsureEmpty(r.GetValue(dir)!);
                SimHost.CreateExample(r.GetValue(dir)!);
                stdout.WriteLine($"wrote the example host to {r.GetValue(dir)}");
                return ExitCodes.Ok;
            }
            var nic = r.GetValue(shape) == "igb" ? NicShape.Igb() : NicShape.ConnectX5(r.GetValue(total) ?? 16);
            var n = r.GetValue(vfs);
            if (n < 0 || n > nic.TotalVfs)
                throw new VmNetException($"--vfs must be 0..{nic.TotalVfs} for {nic.Model}, got {n}", ExitCodes.InvalidInput);
            var target = r.GetValue(dir)!;
            EnsureEmpty(target);
            SimHost.Create(target, nic, r.GetValue(pfs), n, r.GetValue(mtu));
            stdout.WriteLine($"wrote a simulated host to {target}: {r.GetValue(pfs)} x {nic.Model} ({nic.PfDriver}), {n} VFs each");
            return ExitCodes.Ok;
        });
        return new Command("sim", "Simulated hosts for trials and tests") { create };
    }

    private static void EnsureEmpty(string target)
    {
        if (Directory.Exists(target) && Directory.EnumerateFileSystemEntries(target).Any())
            throw new VmNetException($"{target} is not empty; give a new directory", ExitCodes.InvalidInput);
    }
}
