using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;
using VmNet.Backends;
using VmNet.Leases;
using VmNet.Planning;

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
    public static Option<string?> ConnectOption() => new("--connect", "-c")
    {
        Description = $"libvirt URI [env VMNET_CONNECT] (default {LibvirtBackend.DefaultUri})",
    };

    private static Option<bool> JsonOption() => new("--json") { Description = "Print JSON" };

    private static BackendSet Backends(ParseResult r, Option<string?> connect, Option<string> stateDir) =>
        new(LibvirtBackend.ResolveUri(r.GetValue(connect)), new StateDir(r.GetValue(stateDir)!));

    /// <summary><c>vmnet status NAME [--json]</c>: state, VFs with PF, VLAN and MAC, and the serial log.</summary>
    public static Command Status(TextWriter stdout, Option<string> stateDir)
    {
        var name = new Argument<string>("NAME") { Description = "The VM's name" };
        var json = JsonOption();
        var connect = ConnectOption();
        var cmd = new Command("status", "Show a VM's state and its VFs") { name, json, connect };
        cmd.SetAction(async (r, cancel) =>
        {
            using var backends = Backends(r, connect, stateDir);
            var vm = r.GetValue(name)!;
            var found = await backends.FindAsync(vm, cancel)
                ?? throw new VmNetException($"no VmNet VM named {vm} (looked in {backends.Libvirt.Uri} and {backends.Qemu.State.Path}); `vmnet ls` lists them", ExitCodes.InvalidInput);
            if (r.GetValue(json))
                stdout.WriteLine(JsonSerializer.Serialize(found.Status, StatusJson.Default.VmStatus));
            else
                PrintStatus(stdout, found.Status);
            return ExitCodes.Ok;
        });
        return cmd;
    }

    /// <summary><c>vmnet ls [--json]</c>: one line per VmNet VM, libvirt's and QEMU's.</summary>
    public static Command List(TextWriter stdout, Option<string> stateDir)
    {
        var json = JsonOption();
        var connect = ConnectOption();
        var cmd = new Command("ls", "List VmNet's VMs") { json, connect };
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
            if (r.GetValue(json))
            {
                stdout.WriteLine(JsonSerializer.Serialize(all, StatusJson.Default.ListVmStatus));
                return ExitCodes.Ok;
            }
            TextTable.Print(stdout, ["NAME", "STATE", "BACKEND", "NETWORKS", "VFS"], all.Select(s => new[]
            {
                s.Name, s.State, s.Backend, string.Join(",", s.Vfs.Select(v => v.Network).Distinct()), s.Vfs.Count.ToString(CultureInfo.InvariantCulture),
            }).ToList());
            return ExitCodes.Ok;
        });
        return cmd;
    }

    /// <summary><c>vmnet down NAME [--timeout S]</c>: graceful shutdown, then a hard stop; the definition and leases stay.</summary>
    public static Command Down(TextWriter stdout, Option<string> stateDir)
    {
        var name = new Argument<string>("NAME") { Description = "The VM's name" };
        var timeout = new Option<int>("--timeout") { Description = "Seconds to wait for the guest to power off before stopping it hard", DefaultValueFactory = _ => 60 };
        var connect = ConnectOption();
        var cmd = new Command("down", "Stop a VM (its definition, disk and VFs stay; `vmnet up` starts it again)") { name, timeout, connect };
        cmd.SetAction(async (r, cancel) =>
        {
            var seconds = r.GetValue(timeout);
            if (seconds < 0) throw new VmNetException($"--timeout must be 0 or more seconds, got {seconds}", ExitCodes.InvalidInput);
            using var backends = Backends(r, connect, stateDir);
            var vm = r.GetValue(name)!;
            var found = await backends.FindAsync(vm, cancel)
                ?? throw new VmNetException($"no VmNet VM named {vm}; `vmnet ls` lists them", ExitCodes.InvalidInput);
            var result = await found.Backend.StopAsync(vm, TimeSpan.FromSeconds(seconds), cancel);
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
    /// The steps of <c>up</c> after the host side has applied the plan: "seed" (seed image and disk overlay),
    /// "define" (and start), then "start" waits until the VM runs. Returns the running VM's status.
    /// </summary>
    public static async Task<VmStatus> StartVmAsync(IBackend backend, Plan plan, Rendering.Artifacts artifacts, string? agent, UpProgress progress,
        TimeSpan startTimeout, CancellationToken cancel)
    {
        var vm = plan.Vm.Name;
        var paths = plan.Paths;
        progress.Step("seed", $"{paths.Seed} (label cidata) and disk {paths.Disk} over {plan.Vm.Disk.Image}");
        await backend.PrepareAsync(plan, artifacts, agent, cancel);
        progress.Step("define", backend is LibvirtBackend l
            ? $"libvirt domain {vm} at {l.Uri}{(plan.Vm.Autostart ? ", autostart on" : "")}"
            : $"qemu-system-x86_64 for {vm}, pid file {paths.PidFile}, QMP {paths.QmpSocket}");
        await backend.DefineAndStartAsync(plan, artifacts, cancel);
        return await progress.WaitAsync("start", $"{vm} running",
            async c => await backend.StatusAsync(vm, c) is { Running: true } status ? status : null,
            startTimeout, UpProgress.SerialHint(paths), cancel);
    }

    /// <summary>The "wait for guest" step of <c>up</c>: waits for the agent's network-ready report and keeps it for <c>status</c>.</summary>
    public static async Task<GuestStatus> WaitForGuestAsync(Plan plan, UpProgress progress, TimeSpan timeout, CancellationToken cancel)
    {
        progress.Step("wait for guest", $"the agent's network-ready report on {plan.Paths.AgentSocket} (up to {timeout.TotalSeconds:0} s; serial log {plan.Paths.SerialLog})");
        var guest = await GuestAgentChannel.WaitForReadyAsync(plan.Paths, timeout, cancel);
        // The agent reports after 15 s even when a bond has no active member yet (e.g. ARP monitoring that has not
        // seen a reply): the VM runs, but that network carries no traffic until a member takes over.
        foreach (var n in guest.Networks.Where(n => n.Active is null))
            progress.Note($"warning: {n.Name} has no active member yet ({string.Join(", ", n.Members.Select(m => $"{m.Name} {m.Link}"))}); " +
                $"`vmnet status {plan.Vm.Name}` shows when one takes over");
        return guest;
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
        if (s.Guest is { } guest)
        {
            o.WriteLine($"guest (agent report of {guest.ReceivedAt.ToString("u", CultureInfo.InvariantCulture)}):");
            foreach (var n in guest.Networks)
                o.WriteLine($"  {n.Name}: active {n.Active ?? "none"}; {string.Join(", ", n.Members.Select(m => $"{m.Name} {m.Link}"))}; {(n.Addresses.Count == 0 ? "no address" : string.Join(", ", n.Addresses))}");
        }
                if (s.SerialLog is not null) o.WriteLine($"serial log: {s.SerialLog}");
    }
}

/// <summary>
/// Progress for <c>vmnet up</c>: numbered steps ("[3/7] bind: ..."), waits with a timeout and a hint, and a one-line
/// summary at the end. The steps, in order, are <see cref="Steps"/>.
/// </summary>
public sealed class UpProgress(TextWriter output, int total = 7)
{
    /// <summary>The steps of <c>vmnet up</c>, in order.</summary>
    public static readonly IReadOnlyList<string> Steps = ["reserve", "configure", "bind", "seed", "define", "start", "wait for guest"];

    private readonly Stopwatch _clock = Stopwatch.StartNew();
    private int _done;

    /// <summary>Prints "[i/n] step: detail" for the next step.</summary>
    public void Step(string step, string detail) =>
        output.WriteLine($"[{++_done}/{total}] {step}: {detail}");

    /// <summary>Prints an indented line under the current step.</summary>
    public void Note(string line) => output.WriteLine($"      {line}");

    /// <summary>
    /// Prints the next step, then polls <paramref name="probe"/> every <paramref name="every"/> until it returns a value
    /// or <paramref name="timeout"/> passes; on timeout throws an error that names the step and ends with <paramref name="hint"/>.
    /// </summary>
    public async Task<T> WaitAsync<T>(string step, string detail, Func<CancellationToken, Task<T?>> probe, TimeSpan timeout,
        string hint, CancellationToken cancel, TimeSpan? every = null) where T : class
    {
        Step(step, detail);
        var deadline = Stopwatch.StartNew();
        while (true)
        {
            if (await probe(cancel) is { } value) return value;
            if (deadline.Elapsed >= timeout)
                throw new VmNetException($"{step}: {detail} did not happen within {timeout.TotalSeconds:0.#} s; {hint}", ExitCodes.Failure);
            await Task.Delay(every ?? TimeSpan.FromMilliseconds(500), cancel);
        }
    }

    /// <summary>The waiting hint for a VM: where its console output goes.</summary>
    public static string SerialHint(VmPaths paths) => $"see the serial log {paths.SerialLog}";

    /// <summary>The last line of <c>up</c>: what runs, where, with which VFs, and how long it took.</summary>
    public void Summary(Plan plan, string backend, string where)
    {
        var networks = plan.Vm.Networks.Count;
        output.WriteLine(FormattableString.Invariant(
            $"{plan.Vm.Name} is up ({backend}, {where}): {networks} network{(networks == 1 ? "" : "s")} over {plan.Vfs.Count} VFs in {_clock.Elapsed.TotalSeconds:0.0} s; serial log {plan.Paths.SerialLog}"));
    }
}
