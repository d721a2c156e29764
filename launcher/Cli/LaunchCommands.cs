using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;
using VmNet.Backends;
using VmNet.State;

namespace VmNet.Cli;

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase, WriteIndented = true)]
[JsonSerializable(typeof(VmStatus))]
[JsonSerializable(typeof(List<VmStatus>))]
internal sealed partial class StatusJson : JsonSerializerContext;

/// <summary>
/// <c>vmnet status</c>, <c>vmnet ls</c> and <c>vmnet down</c>, each registered with one line from <see cref="VmNetCli"/>.
/// They take the state directory option from there, and <c>--connect</c> (env <c>VMNET_CONNECT</c>) from here.
/// </summary>
public static class LaunchCommands
{
    /// <summary>The libvirt URI option; <see cref="LibvirtBackend.ResolveUri"/> applies VMNET_CONNECT and the default.</summary>
    /// <summary>How long `down` and `rm --force` wait for a guest to power off (ACPI power button) before stopping it hard.</summary>
    public const int StopTimeoutSeconds = 60;

    /// <summary>The <c>--timeout</c> of <c>down</c> and <c>rm</c>: one default for both.</summary>
    internal static Option<int> TimeoutOption(string description) =>
        new("--timeout") { Description = description, DefaultValueFactory = _ => StopTimeoutSeconds };

    internal static int Seconds(ParseResult r, Option<int> timeout) =>
        r.GetValue(timeout) is var seconds and >= 0 ? seconds
        : throw new VmNetException($"--timeout must be 0 or more seconds, got {r.GetValue(timeout)}", ExitCodes.InvalidInput);

    public static Option<string?> ConnectOption() => new("--connect", "-c")
    {
        Description = $"libvirt URI [env VMNET_CONNECT, then LIBVIRT_DEFAULT_URI, then libvirt.conf's uri_default] (default {LibvirtBackend.DefaultUri})",
    };

    /// <summary>
    /// A command's NAME, held to the spec's rule for a VM's name before anything runs: a name is also a directory
    /// under the state dir (`vmnet rm ../../x` must not reach outside it) and a domain name.
    /// </summary>
    internal static Argument<string> NameArgument()
    {
        var name = new Argument<string>("NAME") { Description = "The VM's name" };
        name.Validators.Add(result =>
        {
            if (result.GetValueOrDefault<string>() is { } value && Spec.SpecLoader.VmNameProblem(value) is { } problem)
                result.AddError($"NAME {problem}");
        });
        return name;
    }

    private static Option<bool> JsonOption() => new("--json") { Description = "Print JSON" };

    private static BackendSet Backends(ParseResult r, Option<string?> connect, Option<string> stateDir) =>
        new(LibvirtBackend.ResolveUri(r.GetValue(connect)), new StateDir(r.GetValue(stateDir)!));

    /// <summary><c>vmnet status NAME [--json]</c>: state, VFs with PF, VLAN and MAC, and the serial log.</summary>
    public static Command Status(TextWriter stdout, Option<string> stateDir)
    {
        var name = LaunchCommands.NameArgument();
        var json = JsonOption();
        var connect = ConnectOption();
        var cmd = new Command("status", "Show a VM's state and its VFs") { name, json, connect };
        cmd.SetAction(async (r, cancel) =>
        {
            using var backends = Backends(r, connect, stateDir);
            var vm = r.GetValue(name)!;
            var found = await backends.FindAsync(vm, cancel)
                ?? throw new VmNetException($"no VmNet VM named {vm} (looked in {backends.Libvirt.Uri} and {backends.Qemu.State.Path}); `vmnet ls` lists them", ExitCodes.InvalidInput);
            var status = WithLedger(await new NicView(r).AsTheNicHoldsThem(found.Status, cancel), new Leases.LeaseLedger(backends.Qemu.State));
            if (r.GetValue(json))
                stdout.WriteLine(JsonSerializer.Serialize(status, StatusJson.Default.VmStatus));
            else
                PrintStatus(stdout, status);
            return ExitCodes.Ok;
        });
        return cmd;
    }

    /// <summary>What only the ledger knows of a VM: the host network of each VF and the CPUs dedicated to it.</summary>
    internal static VmStatus WithLedger(VmStatus status, Leases.LeaseLedger ledger)
    {
        var leases = ledger.Store.OfVm(status.Name).ToDictionary(l => l.Pci, StringComparer.Ordinal);
        var cpus = ledger.Cpus.OfVm(status.Name);
        var vcpus = cpus.Where(c => c.Vcpu is not null).OrderBy(c => c.Vcpu).Select(c => c.Cpu).ToList();
        return status with
        {
            Vfs = [.. status.Vfs.Select(v => v with { HostNetwork = leases.GetValueOrDefault(v.Pci)?.HostNetwork })],
            DedicatedCpus = vcpus.Count > 0 ? vcpus : null,
            EmulatorCpu = cpus.FirstOrDefault(c => c.Vcpu is null)?.Cpu,
        };
    }

    /// <summary>
    /// The VMs' VFs with the VLAN and MAC their PF holds now, read through the kernel (<c>ip -j link show dev PF</c>),
    /// not as the backend recorded them at the last <c>up</c>: a change made live shows, and so does one made behind
    /// VmNet's back. A VF that cannot be read (its PF gone, the function at that index another one) keeps the record.
    /// One per command: each PF is read once, however many VMs hold its VFs.
    /// </summary>
    internal sealed class NicView(ParseResult r)
    {
        private readonly Kernel.IKernel _kernel = HostCommands.KernelFor(new Host.HostRoot(r.GetValue(VmNetCli.HostRootOption)!));
        private readonly Dictionary<string, Kernel.PfLink?> _links = new(StringComparer.Ordinal);

        public async Task<VmStatus> AsTheNicHoldsThem(VmStatus status, CancellationToken ct)
        {
            if (status.Vfs.Count == 0) return status;
            var scanner = new Host.HostScanner(_kernel.Root);
            var vfs = new List<VfStatus>();
            foreach (var v in status.Vfs)
            {
                var pf = scanner.NetDevOf(v.PfPci);
                Kernel.PfLink? link = null;
                if (pf is not null && scanner.VfPciOf(v.PfPci, v.Vf) == v.Pci && !_links.TryGetValue(pf, out link))
                {
                    try { link = await _kernel.ReadLinkAsync(pf, ct); }
                    catch (VmNetException) { link = null; }
                    _links[pf] = link;
                }
                vfs.Add(link?.Vf(v.Vf)?.Settings is { } held
                    ? v with { Pf = pf!, Vlan = held.Vlan is { IsTagged: true } tag ? tag.Id : held.Vlan is null ? v.Vlan : null, Mac = held.Mac ?? v.Mac }
                    : v);
            }
            return status with { Vfs = vfs };
        }
    }

    /// <summary><c>vmnet ls [--json]</c>: one line per VmNet VM, libvirt's and QEMU's.</summary>
    public static Command List(TextWriter stdout, Option<string> stateDir)
    {
        var json = JsonOption();
        var connect = ConnectOption();
        var cmd = new Command("ls", "List VmNet's VMs (with --quiet, -q: the names only, one a line)") { json, connect };
        cmd.SetAction(async (r, cancel) =>
        {
            using var backends = Backends(r, connect, stateDir);
            var all = new List<VmStatus>(await backends.Qemu.ListAsync(cancel));
            try
            {
                all.AddRange(await backends.Libvirt.ListAsync(cancel));
            }
            catch (VmNetException e) when (all.Count > 0)
            {
                // libvirt is down or absent: still list the QEMU backend's VMs, and say what is missing.
                r.InvocationConfiguration.Error.WriteLine($"vmnet: libvirt's VMs are not listed: {e.Message}");
            }
            all.Sort((a, b) => string.CompareOrdinal(a.Name, b.Name));
            var nic = new NicView(r);
            for (var i = 0; i < all.Count; i++) all[i] = await nic.AsTheNicHoldsThem(all[i], cancel);
            if (r.GetValue(json))
            {
                stdout.WriteLine(JsonSerializer.Serialize(all, StatusJson.Default.ListVmStatus));
                return ExitCodes.Ok;
            }
            if (r.GetValue(VmNetCli.QuietOption))
            {
                foreach (var s in all) stdout.WriteLine(s.Name);
                return ExitCodes.Ok;
            }
            TextTable.Print(stdout, ["NAME", "STATE", "BACKEND", "CPUS", "MEMORY", "VFS", "NETWORKS"], all.Select(s => new[]
            {
                s.Name, s.State, s.Backend, s.Cpus?.ToString(CultureInfo.InvariantCulture) ?? "-", Memory(s.MemoryMiB),
                s.Vfs.Count.ToString(CultureInfo.InvariantCulture), Networks(s),
            }).ToList());
            return ExitCodes.Ok;
        });
        return cmd;
    }

    private static string Memory(long? mib) => mib switch
    {
        null => "-",
        >= 1024 when mib % 1024 == 0 => $"{(mib / 1024).Value.ToString(CultureInfo.InvariantCulture)}GiB",
        _ => $"{mib.Value.ToString(CultureInfo.InvariantCulture)}MiB",
    };

    /// <summary>Each network of <c>vmnet ls</c>: its name, and while the VM runs what the agent last reported: the
    /// active member and the addresses (<c>storage(storage0 192.168.40.11/24)</c>).</summary>
    private static string Networks(VmStatus s) => string.Join(" ", s.Vfs.Select(v => v.Network).Distinct().Select(network =>
        s.Guest?.Networks.FirstOrDefault(n => n.Name == network) is { } n
            ? $"{network}({(n.Active is { } a ? a : "no active member")}{(n.Addresses.Count > 0 ? " " + string.Join(",", n.Addresses) : "")})"
            : network));

    /// <summary>How a stop went, in the JSON vocabulary: notRunning, shutDown (within the timeout) or stoppedHard.</summary>
    public static string StopWord(StopResult result) => result switch
    {
        StopResult.AlreadyStopped => "notRunning",
        StopResult.ShutDown => "shutDown",
        _ => "stoppedHard",
    };

    /// <summary><c>vmnet down NAME [--timeout S]</c>: graceful shutdown, then a hard stop; the definition and leases stay.</summary>
    public static Command Down(TextWriter stdout, Option<string> stateDir)
    {
        var name = LaunchCommands.NameArgument();
        var timeout = TimeoutOption("Seconds to wait for the guest to power off before stopping it hard");
        var connect = ConnectOption();
        var json = JsonOption();
        var cmd = new Command("down", "Stop a VM (its definition, disk and VFs stay; `vmnet up` starts it again)") { name, timeout, connect, json };
        cmd.SetAction(async (r, cancel) =>
        {
            var seconds = Seconds(r, timeout);
            using var backends = Backends(r, connect, stateDir);
            var vm = r.GetValue(name)!;
            var found = await backends.FindAsync(vm, cancel)
                ?? throw new VmNetException($"no VmNet VM named {vm}; `vmnet ls` lists them", ExitCodes.InvalidInput);
            if (found.Backend is QemuBackend)
            {
                // The VM stays defined and keeps its VFs: from its QEMU process, its leases go back to its definition,
                // before QEMU ends (a QEMU that dies on its own leaves them to `vmnet gc`).
                var ledger = new Leases.LeaseLedger(new StateDir(r.GetValue(stateDir)!));
                using (ledger.Lock(cancel))
                    foreach (var lease in ledger.Store.OfVm(vm)) ledger.SetOwner(lease.Pci, new Leases.DefinitionOwner());
            }
            var result = await found.Backend.StopAsync(vm, TimeSpan.FromSeconds(seconds), cancel);
            if (r.GetValue(json))
            {
                stdout.WriteLine(System.Text.Json.JsonSerializer.Serialize(new DownDocument(vm, found.Backend.Name, StopWord(result), seconds), OutputJson.Default.DownDocument));
                return ExitCodes.Ok;
            }
            stdout.WriteLine(result switch
            {
                StopResult.AlreadyStopped => $"{vm} was not running",
                StopResult.ShutDown => $"{vm} shut down",
                _ => $"{vm} did not power off within {seconds} s and was stopped hard",
            });
            return ExitCodes.Ok;
        });
        return cmd;
    }

    /// <summary>
    /// <c>vmnet console NAME</c>: attaches this terminal to the VM's serial console, for both backends: libvirt's pty
    /// through <c>virsh console</c>, the QEMU backend's console socket through socat. Ctrl+] leaves. What the console
    /// shows is also in the VM's serial log.
    /// </summary>
    public static Command ConsoleCommand(Option<string> stateDir)
    {
        var name = LaunchCommands.NameArgument();
        var connect = ConnectOption();
        var cmd = new Command("console", "Attach to a VM's serial console (Ctrl+] leaves); it is also logged to the VM's serial log") { name, connect };
        cmd.SetAction(async (r, cancel) =>
        {
            using var backends = Backends(r, connect, stateDir);
            var vm = r.GetValue(name)!;
            var found = await backends.FindAsync(vm, cancel)
                ?? throw new VmNetException($"no VmNet VM named {vm}; `vmnet ls` lists them", ExitCodes.InvalidInput);
            if (!found.Status.Running)
                throw new VmNetException($"{vm} is {found.Status.State}: start it with `vmnet up`, then attach; its last output is in {found.Status.SerialLog}", ExitCodes.InvalidInput);
            var (tool, args, package) = ConsoleArgv(found.Backend, vm, VmPaths.For(new StateDir(r.GetValue(stateDir)!), vm), !Console.IsInputRedirected);
            return await Attach(tool, args, package, cancel);
        });
        return cmd;
    }

    /// <summary>What <c>vmnet console</c> runs: <c>virsh console</c> for libvirt, socat on the console socket for QEMU (raw, Ctrl+] leaves, on a terminal).</summary>
    internal static (string Tool, IReadOnlyList<string> Args, string Package) ConsoleArgv(IBackend backend, string vm, VmPaths paths, bool terminal) =>
        backend is LibvirtBackend l
            ? ("virsh", ["-c", l.Uri, "console", "--force", vm], "libvirt-clients")
            : ("socat", [terminal ? "-,raw,echo=0,escape=0x1d" : "-", $"UNIX-CONNECT:{paths.ConsoleSocket}"], "socat");

    private static async Task<int> Attach(string tool, IReadOnlyList<string> args, string package, CancellationToken cancel)
    {
        var psi = new ProcessStartInfo(tool) { UseShellExecute = false };
        foreach (var a in args) psi.ArgumentList.Add(a);
        Process process;
        try
        {
            process = Process.Start(psi) ?? throw new VmNetException($"cannot run {tool}", ExitCodes.Failure);
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            throw new VmNetException($"cannot run {tool} ({e.Message}): install {package} (apt-get install {package})", ExitCodes.Failure, e);
        }
        using (process)
        {
            await process.WaitForExitAsync(cancel);
            return process.ExitCode;
        }
    }

    internal static void PrintStatus(TextWriter o, VmStatus s)
    {
        o.WriteLine($"{s.Name}: {s.State} ({s.Backend})");
        if (s.Vfs.Count > 0)
        {
            TextTable.Print(o, ["NETWORK", "GUEST NIC", "PF", "VF", "PCI", "MAC", "VLAN"], s.Vfs.Select(v => new[]
            {
                v.Network, v.Member, v.Pf, $"vf {v.Vf.ToString(CultureInfo.InvariantCulture)}", v.Pci, v.Mac,
                v.Vlan is { } vlan ? $"vlan {vlan.ToString(CultureInfo.InvariantCulture)}" : "untagged",
            }).ToList());
        }
        foreach (var (network, host) in s.Vfs.Where(v => v.HostNetwork is not null).Select(v => (v.Network, v.HostNetwork!)).Distinct())
            o.WriteLine($"{network}: host network {host} (its ports and what the host fixes of its VFs come from the host config)");
        if (s.DedicatedCpus is { } pinned)
            o.WriteLine($"dedicated CPUs: vCPUs on {string.Join(",", pinned)}, emulator threads on {s.EmulatorCpu}");
        if (s.Guest is { } guest)
        {
            o.WriteLine($"guest (agent report of {guest.ReceivedAt.ToString("u", CultureInfo.InvariantCulture)}):");
            foreach (var n in guest.Networks)
                o.WriteLine($"  {n.Name}: active {n.Active ?? "none"}; {string.Join(", ", n.Members.Select(m => $"{m.Name} {m.Link}"))}; {(n.Addresses.Count == 0 ? "no address" : string.Join(", ", n.Addresses))}");
            if (guest.Refused > 0)
                o.WriteLine($"  ({guest.Refused} line{(guest.Refused == 1 ? "" : "s")} from the guest refused in this look: not a report VmNet takes, or too long)");
        }
        if (s.SerialLog is not null) o.WriteLine($"serial log: {s.SerialLog}");
    }
}
