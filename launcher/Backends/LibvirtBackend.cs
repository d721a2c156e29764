using System.Globalization;
using System.Xml.Linq;
using VmNet.Io;
using VmNet.Libvirt;
using VmNet.Planning;
using VmNet.Rendering;
using VmNet.State;

namespace VmNet.Backends;

/// <summary>
/// Runs the VM as a persistent libvirt domain (default backend), so <c>virsh</c> can manage it too. VmNet's domains are
/// the ones carrying the vmnet metadata (<see cref="Renderer.XmlNamespace"/>); others are never touched.
/// Holds one connection, opened on first use (a <c>test:///FILE</c> URI builds a fresh host at every open).
/// </summary>
public sealed class LibvirtBackend(string uri, StateDir state) : IBackend, IDisposable
{
    /// <summary>The URI used when no <c>--connect</c>, <c>VMNET_CONNECT</c>, <c>LIBVIRT_DEFAULT_URI</c> or <c>uri_default</c> names one.</summary>
    public const string DefaultUri = LaunchOptions.DefaultLibvirtUri;

    private static readonly TimeSpan Poll = TimeSpan.FromMilliseconds(200);
    private LibvirtConnection? _connection;

    public string Name => "libvirt";

    public string Uri { get; } = uri;

    public StateDir State { get; } = state;

    /// <summary>
    /// The URI as virsh would choose it, VmNet's own settings first: <paramref name="option"/> (<c>--connect</c>), else
    /// <c>VMNET_CONNECT</c>, else <c>LIBVIRT_DEFAULT_URI</c>, else <c>uri_default</c> of libvirt's client config
    /// (<c>/etc/libvirt/libvirt.conf</c> for root, <c>$XDG_CONFIG_HOME/libvirt/libvirt.conf</c> otherwise), else
    /// <see cref="DefaultUri"/>.
    /// </summary>
    public static string ResolveUri(string? option) => ResolveUri(option, Environment.GetEnvironmentVariable, ClientConfig());

    /// <summary><see cref="ResolveUri(string?)"/> over given environment and config file (tests).</summary>
    public static string ResolveUri(string? option, Func<string, string?> env, string? clientConfig) =>
        option is { Length: > 0 } ? option
        : env("VMNET_CONNECT") is { Length: > 0 } vmnet ? vmnet
        : env("LIBVIRT_DEFAULT_URI") is { Length: > 0 } libvirt ? libvirt
        : ReadUriDefault(clientConfig) ?? DefaultUri;

    /// <summary>libvirt's client config file for this user, as libvirt looks for it.</summary>
    private static string ClientConfig()
    {
        if (SafePath.Euid == 0) return "/etc/libvirt/libvirt.conf";
        var config = Environment.GetEnvironmentVariable("XDG_CONFIG_HOME") is { Length: > 0 } xdg ? xdg
            : Path.Join(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".config");
        return Path.Join(config, "libvirt", "libvirt.conf");
    }

    /// <summary>The <c>uri_default = "..."</c> setting of a libvirt client config; null when the file or the setting is missing.</summary>
    public static string? ReadUriDefault(string? path)
    {
        try
        {
            if (path is null || !File.Exists(path)) return null;
            using var reader = new StreamReader(path);
            var text = new char[64 * 1024];
            var read = reader.ReadBlock(text, 0, text.Length);
            return UriDefault(new string(text, 0, read));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    /// <summary>The value of an uncommented <c>uri_default</c> line (libvirt's config syntax: <c>key = "value"</c>, <c>#</c> comments).</summary>
    public static string? UriDefault(string config) =>
        System.Text.RegularExpressions.Regex.Match(config, @"^[ \t]*uri_default[ \t]*=[ \t]*""([^""\n]*)""", System.Text.RegularExpressions.RegexOptions.Multiline) is { Success: true } m
        && m.Groups[1].Value.Length > 0 ? m.Groups[1].Value : null;

    /// <summary>The backend's connection, opened on first use.</summary>
    internal LibvirtConnection Connection => _connection ??= LibvirtConnection.Open(Uri);

    public Task<bool> IsDefinedAsync(string vm, CancellationToken cancel)
    {
        using var domain = VmNetDomain(vm);
        return Task.FromResult(domain is not null);
    }

    public Task<SavedDefinition?> SaveDefinitionAsync(string vm, CancellationToken cancel)
    {
        using var domain = VmNetDomain(vm);
        return Task.FromResult(domain is null ? null : new SavedDefinition(domain.GetXml(inactive: true), domain.Autostart));
    }

    public Task RestoreDefinitionAsync(string vm, SavedDefinition saved, CancellationToken cancel)
    {
        using var domain = Connection.DefineDomain(saved.Text, validate: false);
        domain.SetAutostart(saved.Autostart);
        return Task.CompletedTask;
    }

    public Task DefineAsync(LaunchPlan plan, CancellationToken cancel)
    {
        var vm = plan.Vm.Name;
        using (var existing = Connection.TryLookupDomain(vm))
            if (existing is not null && existing.GetMetadata(Renderer.XmlNamespace) is null)
                throw new VmNetException($"a libvirt domain named {vm} already exists and is not VmNet's; rename the VM in the spec or remove that domain (`virsh undefine {vm}`)", ExitCodes.InvalidInput);
        LibvirtDomain domain;
        try
        {
            domain = Connection.DefineDomain(plan.Artifacts.DomainXml, validate: true);
        }
        catch (LibvirtException e) when (e.Code is LibvirtErrorCode.XmlInvalidSchema or LibvirtErrorCode.XmlError or LibvirtErrorCode.XmlDetail)
        {
            throw new VmNetException(e.Message + " (the domain XML rendered from templates/domain.xml.sbn was refused; check the template or rerun with --dry-run --out DIR to inspect it)", ExitCodes.Failure, e);
        }
        using (domain)
            domain.SetAutostart(plan.Vm.Autostart);
        return Task.CompletedTask;
    }

    public Task UndefineAsync(string vm, CancellationToken cancel)
    {
        using var domain = VmNetDomain(vm);
        domain?.Undefine();
        return Task.CompletedTask;
    }

    public Task StartAsync(LaunchPlan plan, CancellationToken cancel)
    {
        var vm = plan.Vm.Name;
        using var domain = VmNetDomain(vm)
            ?? throw new VmNetException($"the libvirt domain {vm} is not defined on {Uri}; run `vmnet up` again", ExitCodes.Failure);
        if (domain.IsActive) return Task.CompletedTask;
        // virtlogd appends the guest's output to the serial log, following a link (as root): only a regular file stays.
        SafePath.RemoveUnlessRegularFile(plan.Paths.SerialLog);
        try
        {
            domain.Start();
        }
        catch (LibvirtException e)
        {
            throw new VmNetException($"{e.Message}; see the serial log {plan.Paths.SerialLog} and libvirt's log /var/log/libvirt/qemu/{vm}.log", ExitCodes.Failure, e);
        }
        return Task.CompletedTask;
    }

    public async Task<StopResult> StopAsync(string vm, TimeSpan graceful, CancellationToken cancel)
    {
        using var domain = VmNetDomain(vm);
        if (domain is null || !domain.IsActive) return StopResult.AlreadyStopped;
        try
        {
            domain.Shutdown();
        }
        catch (LibvirtException e) when (e.Code == LibvirtErrorCode.OperationInvalid)
        {
            if (!domain.IsActive) return StopResult.AlreadyStopped; // it stopped meanwhile
            // Paused: libvirt refuses to shut it down and nothing in it runs to power off; left running, its QEMU would
            // keep the VFs on vfio-pci while they are given back. Stop it hard.
            domain.Destroy();
            return StopResult.Forced;
        }
        var deadline = DateTime.UtcNow + graceful;
        while (DateTime.UtcNow < deadline)
        {
            if (!domain.IsActive) return StopResult.ShutDown;
            await Task.Delay(Poll, cancel);
        }
        try
        {
            domain.Destroy();
        }
        catch (LibvirtException e) when (e.Code == LibvirtErrorCode.OperationInvalid)
        {
            return StopResult.ShutDown; // it powered off just now
        }
        return StopResult.Forced;
    }

    public async Task<StopResult> RemoveAsync(string vm, TimeSpan graceful, CancellationToken cancel)
    {
        var stopped = await StopAsync(vm, graceful, cancel);
        using (var domain = VmNetDomain(vm))
            domain?.Undefine();
        VmFiles.Delete(VmPaths.For(State, vm), []);
        return stopped;
    }

    /// <summary>The domain's state, VFs and the agent's latest report (read fresh from its socket while it runs).</summary>
    public async Task<VmStatus?> StatusAsync(string vm, CancellationToken cancel, bool guest = true)
    {
        VmStatus? status;
        using (var domain = Connection.TryLookupDomain(vm))
            status = domain is null ? null : StatusOf(domain, savedReport: false);
        return status is { Running: true } && guest ? status with { Guest = await GuestAgentChannel.RefreshAsync(VmPaths.For(State, vm), cancel) } : status;
    }

    public Task<IReadOnlyList<VmStatus>> ListAsync(CancellationToken cancel)
    {
        var domains = Connection.ListDomains();
        try
        {
            IReadOnlyList<VmStatus> list = domains.Select(d => StatusOf(d)).OfType<VmStatus>().OrderBy(s => s.Name, StringComparer.Ordinal).ToList();
            return Task.FromResult(list);
        }
        finally
        {
            foreach (var d in domains) d.Dispose();
        }
    }

    /// <summary>The domain called <paramref name="vm"/> if it is VmNet's; another domain of that name is refused.</summary>
    private LibvirtDomain? VmNetDomain(string vm)
    {
        var domain = Connection.TryLookupDomain(vm);
        if (domain is null || domain.GetMetadata(Renderer.XmlNamespace) is not null) return domain;
        domain.Dispose();
        throw new VmNetException($"the libvirt domain {vm} was not made by VmNet (it has no vmnet metadata); manage it with virsh", ExitCodes.InvalidInput);
    }

    /// <summary>The domain's status from libvirt; with <paramref name="savedReport"/>, the agent's last saved report too.</summary>
    private VmStatus? StatusOf(LibvirtDomain domain, bool savedReport = true)
    {
        var metadata = domain.GetMetadata(Renderer.XmlNamespace);
        if (metadata is null) return null;
        var state = domain.State;
        var running = state is DomainState.Running or DomainState.Paused or DomainState.Blocked;
        var paths = VmPaths.For(State, domain.Name);
        var (cpus, memory) = Shape(domain.GetXml(inactive: true));
        // The agent's report describes the current boot only: a stopped VM shows none.
        return new VmStatus(domain.Name, Name, StateName(state), running, ParseMetadata(metadata), paths.SerialLog,
            running && savedReport ? GuestAgentChannel.ReadSaved(paths) : null)
        { Cpus = cpus, MemoryMiB = memory };
    }

    /// <summary>vCPUs and memory (MiB) as a domain's XML defines them (libvirt writes memory in KiB).</summary>
    public static (int? Cpus, long? MemoryMiB) Shape(string domainXml)
    {
        try
        {
            var root = XElement.Parse(domainXml);
            var cpus = int.TryParse((string?)root.Element("vcpu"), CultureInfo.InvariantCulture, out var n) ? n : (int?)null;
            long? memory = null;
            if (root.Element("memory") is { } m && long.TryParse(m.Value, CultureInfo.InvariantCulture, out var amount))
                memory = ((string?)m.Attribute("unit") ?? "KiB") switch
                {
                    "b" or "bytes" => amount >> 20,
                    "KiB" or "k" => amount >> 10,
                    "MiB" or "M" => amount,
                    "GiB" or "G" => amount << 10,
                    _ => null,
                };
            return (cpus, memory);
        }
        catch (System.Xml.XmlException)
        {
            return (null, null);
        }
    }

    /// <summary>
    /// The VFs recorded in the domain's vmnet metadata. libvirt returns that element without any namespace (virsh
    /// metadata shows <c>&lt;vm&gt;&lt;network&gt;&lt;vf .../&gt;</c>), so elements are matched by local name.
    /// </summary>
    public static IReadOnlyList<VfStatus> ParseMetadata(string xml)
    {
        var root = XElement.Parse(xml);
        return Children(root, "network").SelectMany(n => Children(n, "vf").Select(vf => new VfStatus(
            (string?)n.Attribute("name") ?? "",
            (string?)vf.Attribute("member") ?? "",
            (string?)vf.Attribute("port") ?? "",
            (string?)vf.Attribute("pf") ?? "",
            (string?)vf.Attribute("pf-pci") ?? "",
            int.TryParse((string?)vf.Attribute("vf"), CultureInfo.InvariantCulture, out var index) ? index : -1,
            (string?)vf.Attribute("pci") ?? "",
            (string?)vf.Attribute("mac") ?? "",
            int.TryParse((string?)n.Attribute("vlan"), CultureInfo.InvariantCulture, out var vlan) ? vlan : null))).ToList();
    }

    private static IEnumerable<XElement> Children(XElement parent, string localName) =>
        parent.Elements().Where(e => e.Name.LocalName == localName);

    /// <summary>The state as <c>virsh domstate</c> names it.</summary>
    public static string StateName(DomainState state) => state switch
    {
        DomainState.Running => "running",
        DomainState.Blocked => "idle",
        DomainState.Paused => "paused",
        DomainState.Shutdown => "in shutdown",
        DomainState.Shutoff => "shut off",
        DomainState.Crashed => "crashed",
        DomainState.PmSuspended => "pmsuspended",
        _ => "no state",
    };

    public void Dispose() => _connection?.Dispose();
}
