namespace VmNet.Libvirt;

/// <summary>The state of a domain (<c>virDomainState</c>).</summary>
public enum DomainState
{
    /// <summary>No state.</summary>
    NoState = 0,
    /// <summary>Running.</summary>
    Running = 1,
    /// <summary>Blocked on a resource.</summary>
    Blocked = 2,
    /// <summary>Paused by the user.</summary>
    Paused = 3,
    /// <summary>Being shut down.</summary>
    Shutdown = 4,
    /// <summary>Shut off (defined, not running).</summary>
    Shutoff = 5,
    /// <summary>Crashed.</summary>
    Crashed = 6,
    /// <summary>Suspended by guest power management.</summary>
    PmSuspended = 7,
}

/// <summary>A libvirt domain (VM). Every method is one synchronous libvirt call; failures throw <see cref="LibvirtException"/>.</summary>
public sealed class LibvirtDomain : IDisposable
{
    private readonly DomainHandle _handle;

    internal LibvirtDomain(DomainHandle handle)
    {
        _handle = handle;
        Name = NativeMethods.CopyString(NativeMethods.virDomainGetName(handle)) ?? NameFailed(handle);
    }

    private static string NameFailed(DomainHandle handle)
    {
        var error = LibvirtException.FromLastError("read a domain's name");
        handle.Dispose();
        throw error;
    }

    /// <summary>The domain's name.</summary>
    public string Name { get; }

    /// <summary>The domain's UUID.</summary>
    public unsafe Guid Uuid
    {
        get
        {
            var buffer = stackalloc byte[NativeMethods.VIR_UUID_STRING_BUFLEN];
            Check(NativeMethods.virDomainGetUUIDString(_handle, buffer), "read the UUID of");
            return Guid.Parse(new ReadOnlySpan<byte>(buffer, NativeMethods.VIR_UUID_STRING_BUFLEN - 1));
        }
    }

    /// <summary>The domain's XML; with <paramref name="inactive"/>, the persistent definition rather than the live one.</summary>
    public string GetXml(bool inactive = false) =>
        NativeMethods.TakeString(NativeMethods.virDomainGetXMLDesc(_handle, inactive ? NativeMethods.VIR_DOMAIN_XML_INACTIVE : 0))
        ?? throw Error("read the XML of");

    /// <summary>
    /// The <c>&lt;metadata&gt;</c> element in namespace <paramref name="namespaceUri"/> (of the live definition when running,
    /// the persistent one otherwise), or null when there is none. libvirt returns it without the namespace prefix.
    /// </summary>
    public string? GetMetadata(string namespaceUri)
    {
        var xml = NativeMethods.TakeString(NativeMethods.virDomainGetMetadata(
            _handle, NativeMethods.VIR_DOMAIN_METADATA_ELEMENT, namespaceUri, NativeMethods.VIR_DOMAIN_AFFECT_CURRENT));
        if (xml is not null)
            return xml;
        var error = Error($"read metadata '{namespaceUri}' of");
        return error.Code == LibvirtErrorCode.NoDomainMetadata ? null : throw error;
    }

    /// <summary>The domain's current state.</summary>
    public DomainState State
    {
        get
        {
            Check(NativeMethods.virDomainGetState(_handle, out var state, out _, 0), "read the state of");
            return (DomainState)state;
        }
    }

    /// <summary>Whether the domain is running (or paused).</summary>
    public bool IsActive => Check(NativeMethods.virDomainIsActive(_handle), "check the state of") == 1;

    /// <summary>Starts the defined domain (<c>virDomainCreate</c>).</summary>
    public void Start() => Check(NativeMethods.virDomainCreate(_handle), "start");

    /// <summary>Asks the guest to shut down; returns before it has.</summary>
    public void Shutdown() => Check(NativeMethods.virDomainShutdown(_handle), "shut down");

    /// <summary>Stops the domain at once, like pulling the plug.</summary>
    public void Destroy() => Check(NativeMethods.virDomainDestroy(_handle), "destroy");

    /// <summary>
    /// Removes the persistent definition, with its managed save image and snapshot metadata, and its NVRAM file where the
    /// driver supports that (qemu does; the test driver refuses the NVRAM flag, so it is retried without).
    /// </summary>
    public void Undefine()
    {
        const uint always = NativeMethods.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | NativeMethods.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA;
        if (NativeMethods.virDomainUndefineFlags(_handle, always | NativeMethods.VIR_DOMAIN_UNDEFINE_NVRAM) == 0)
            return;
        var error = Error("undefine");
        if (error.Code is not (LibvirtErrorCode.InvalidArg or LibvirtErrorCode.NoSupport))
            throw error;
        Check(NativeMethods.virDomainUndefineFlags(_handle, always), "undefine");
    }

    /// <summary>Whether libvirtd starts the domain when the host boots.</summary>
    public void SetAutostart(bool autostart) =>
        Check(NativeMethods.virDomainSetAutostart(_handle, autostart ? 1 : 0), $"{(autostart ? "enable" : "disable")} autostart of");

    /// <summary>Whether libvirtd starts the domain when the host boots (<c>virDomainGetAutostart</c>).</summary>
    public bool Autostart
    {
        get
        {
            Check(NativeMethods.virDomainGetAutostart(_handle, out var autostart), "read autostart of");
            return autostart != 0;
        }
    }

    /// <summary>Frees the domain reference (the domain itself is unaffected).</summary>
    public void Dispose() => _handle.Dispose();

    private int Check(int result, string verb) => result < 0 ? throw Error(verb) : result;

    private LibvirtException Error(string verb) => LibvirtException.FromLastError($"{verb} domain '{Name}'");
}
