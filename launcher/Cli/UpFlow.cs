using VmNet.Apply;
using VmNet.Backends;
using VmNet.Leases;
using VmNet.Planning;
using VmNet.Rendering;
using VmNet.Spec;

namespace VmNet.Cli;

/// <summary>
/// <c>vmnet up SPEC</c>: reserve, configure and bind the VFs (the host side, with its own rollback), then seed, define
/// and start the VM through its backend, then wait for the guest agent's "network ready". A failure after the host
/// side gives a new VM's VFs back; a VM that was already up keeps what it had.
/// </summary>
internal static class UpFlow
{
    public sealed record Options(Backend? Backend, string? Connect, bool Wait, TimeSpan WaitTimeout, string? TemplatesDir, string? OutDir, bool Start = true);

    public static async Task<int> RunAsync(HostOps ops, VmSpec vm, Options options, TextWriter stdout, CancellationToken ct)
    {
        var agent = Seed.SeedImage.FindAgent(); // before any host change: a VMNET_AGENT naming no file is refused here
        var progress = new UpProgress(stdout);
        var hadLeases = ops.Ledger.Store.OfVm(vm.Name).Count > 0;
        progress.Step("reserve", $"one VF per port for {vm.Networks.Count} network{(vm.Networks.Count == 1 ? "" : "s")}, under the ledger lock");
        var result = await ops.UpAsync(vm, ct);
        foreach (var line in result.Reclaimed) stdout.WriteLine($"      reclaimed an orphan: {line}");
        var plan = result.Plan;
        progress.Step("configure", string.Join(", ", plan.Vfs.Select(a =>
            $"{a.GuestName}={a.Pf.Name} vf {a.Vf.Index} ({a.Vf.Pci}) mac {a.Mac}{(a.Network.Vlan is { } v ? $" vlan {v}" : "")}")));
        progress.Step("bind", $"{plan.Vfs.Count} VFs on vfio-pci: {string.Join(", ", plan.Vfs.Select(a => a.Vf.Pci))}");

        var artifacts = Renderer.Render(plan, new Templates(options.TemplatesDir));
        if (options.OutDir is { } dir) ArtifactWriter.Write(dir, artifacts);
        if (!options.Start)
        {
            stdout.WriteLine($"{vm.Name}: the host side is ready ({plan.Vfs.Count} VFs leased, configured and on vfio-pci); not started (--no-start); "
                + $"give the VFs back with `vmnet rm {vm.Name}`");
            return ExitCodes.Ok;
        }
        using var backends = new BackendSet(LibvirtBackend.ResolveUri(options.Connect), ops.Ledger.State);
        var backend = backends.For(vm, options.Backend);
        try
        {
            await LaunchCommands.StartVmAsync(backend, plan, artifacts, agent, progress, TimeSpan.FromSeconds(60), ct);
            // The leases follow the domain: gone when it is undefined outside vmnet. Not so on libvirt's test driver,
            // whose domains end with the process that made them: there the leases last until `vmnet rm`.
            if (await backend.OwnerOfAsync(vm.Name, ct) is { } token && token.StartsWith("libvirt:", StringComparison.Ordinal)
                && backend is LibvirtBackend { IsTestDriver: false } libvirt)
            {
                using (ops.Ledger.Lock(ct))
                    foreach (var a in plan.Vfs)
                        ops.Ledger.SetOwner(a.Vf.Pci, new LeaseOwner(LeaseOwner.Libvirt, Domain: token["libvirt:".Length..], Uri: libvirt.Uri));
            }
        }
        catch (Exception e) when (!hadLeases && e is VmNetException or Libvirt.LibvirtException or IOException or OperationCanceledException)
        {
            var log = KeepSerialLog(plan, ops.Ledger.State);
            var leftover = "";
            try
            {
                await backend.RemoveAsync(vm.Name, TimeSpan.FromSeconds(5), CancellationToken.None);
            }
            catch (Exception removing) when (removing is VmNetException or Libvirt.LibvirtException or IOException)
            {
                // The VFs go back all the same; what the backend could not undo is named.
                leftover = $"; removing the VM failed too ({removing.Message}): check `vmnet status {vm.Name}`";
            }
            await ops.RemoveAsync(vm.Name, CancellationToken.None);
            var reason = log is null ? Reason(e) : Reason(e).Replace(plan.Paths.SerialLog, log, StringComparison.Ordinal);
            throw new VmNetException($"{reason}; {vm.Name}'s VFs were given back as they were found" +
                (log is null ? "" : $"; its serial log is kept at {log}") + leftover, ExitCodes.Failure, e);
        }

        var where = backend is LibvirtBackend l ? l.Uri : "qemu-system-x86_64";
        if (agent is null)
            progress.Step("wait for guest", "skipped: no guest agent to ship (put vmnet-agent next to vmnet, or set VMNET_AGENT); the bonds come from cloud-init alone");
        else if (!options.Wait)
            progress.Step("wait for guest", "skipped (--no-wait); `vmnet status " + vm.Name + "` shows the agent's report when it comes");
        else if (backend is LibvirtBackend { IsTestDriver: true } test)
            progress.Step("wait for guest", $"skipped: libvirt's test driver ({test.Uri}) runs no guest");
        else
            await LaunchCommands.WaitForGuestAsync(plan, progress, options.WaitTimeout, ct);
        progress.Summary(plan, backend.Name, where);
        return ExitCodes.Ok;
    }

    /// <summary>
    /// A VM that failed to come up is removed with its directory; its serial log (what the guest said) is kept in the
    /// state dir's logs/ for the user to read. Null when there is none.
    /// </summary>
    private static string? KeepSerialLog(Planning.Plan plan, StateDir state)
    {
        try
        {
            if (!File.Exists(plan.Paths.SerialLog) || new FileInfo(plan.Paths.SerialLog).Length == 0) return null;
            var kept = Path.Join(state.Path, "logs", $"{plan.Vm.Name}.serial.log");
            Directory.CreateDirectory(Path.GetDirectoryName(kept)!);
            File.Copy(plan.Paths.SerialLog, kept, overwrite: true);
            return kept;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    private static string Reason(Exception e) => e is OperationCanceledException ? "interrupted" : e.Message;
}
