using System.Runtime.InteropServices;

namespace VmNet.Libvirt;

/// <summary>
/// An open connection to a libvirt driver, e.g. <c>qemu:///system</c> or the in-memory <c>test:///default</c>.
/// Calls are synchronous. Domains obtained from it stay usable after it is disposed (libvirt keeps the connection
/// alive until the last domain is freed).
/// </summary>
public sealed class LibvirtConnection : IDisposable
{
    private readonly ConnectHandle _handle;

    private LibvirtConnection(ConnectHandle handle) => _handle = handle;

    /// <summary>Opens <paramref name="uri"/> read-write. Throws <see cref="LibvirtException"/> naming the URI and what to do next.</summary>
    public static LibvirtConnection Open(string uri)
    {
        NativeMethods.EnsureInitialized();
        var handle = NativeMethods.virConnectOpen(uri);
        if (!handle.IsInvalid)
            return new LibvirtConnection(handle);
        handle.Dispose();
        throw LibvirtException.FromLastError($"connect to libvirt at '{uri}'", HintFor(uri));
    }

    private static string HintFor(string uri) =>
        uri.StartsWith("test:", StringComparison.Ordinal)
            ? "Check the URI; test:///default needs no daemon"
            : "Is libvirtd running? Try `systemctl start libvirtd`, or pass --connect with another URI";

    /// <summary>The canonical URI of this connection, as libvirt reports it.</summary>
    public string Uri =>
        NativeMethods.TakeString(NativeMethods.virConnectGetURI(_handle)) ?? throw LibvirtException.FromLastError("read the connection URI");

    /// <summary>The version of the libvirt library in use (e.g. 9.0.0).</summary>
    public Version LibVersion
    {
        get
        {
            LibvirtException.Ensure(NativeMethods.virConnectGetLibVersion(_handle, out var v), "read the libvirt version");
            return new Version((int)(v / 1_000_000), (int)(v / 1_000 % 1_000), (int)(v % 1_000));
        }
    }

    /// <summary>
    /// Defines (or redefines) a persistent domain from <paramref name="xml"/>. With <paramref name="validate"/>,
    /// libvirt first checks the document against its RelaxNG schema (<see cref="LibvirtErrorCode.XmlInvalidSchema"/>);
    /// its own parser checks (bad VLAN tag, multicast MAC) give <see cref="LibvirtErrorCode.XmlError"/>.
    /// </summary>
    public LibvirtDomain DefineDomain(string xml, bool validate = true)
    {
        if (!validate)
            return new LibvirtDomain(LibvirtException.Ensure(NativeMethods.virDomainDefineXMLFlags(_handle, xml, 0), "define the domain"));
        // With an in-process driver (test:///) libvirt parses domain.rng in this process, and libxml2's handling of
        // the XML Schema datatype library is not thread-safe: two validations at once can fail with "Error type
        // 'short' is not exported by type library" (seen in the property tests). One validation at a time.
        lock (ValidationLock)
            return new LibvirtDomain(LibvirtException.Ensure(
                NativeMethods.virDomainDefineXMLFlags(_handle, xml, NativeMethods.VIR_DOMAIN_DEFINE_VALIDATE), "define the domain"));
    }

    private static readonly Lock ValidationLock = new();

    /// <summary>The domain called <paramref name="name"/>, or null when there is none.</summary>
    public LibvirtDomain? TryLookupDomain(string name) =>
        Lookup(NativeMethods.virDomainLookupByName(_handle, name), $"look up domain '{name}'");

    /// <summary>The domain with <paramref name="uuid"/>, or null when there is none.</summary>
    public LibvirtDomain? TryLookupDomain(Guid uuid) =>
        Lookup(NativeMethods.virDomainLookupByUUIDString(_handle, uuid.ToString("D")), $"look up domain {uuid}");

    private static LibvirtDomain? Lookup(DomainHandle handle, string operation)
    {
        if (!handle.IsInvalid)
            return new LibvirtDomain(handle);
        handle.Dispose();
        var error = LibvirtException.FromLastError(operation);
        return error.Code == LibvirtErrorCode.NoDomain ? null : throw error;
    }

    /// <summary>Every domain of this connection, running or not. Dispose each one.</summary>
    public unsafe IReadOnlyList<LibvirtDomain> ListDomains()
    {
        var count = LibvirtException.Ensure(NativeMethods.virConnectListAllDomains(_handle, out var array, 0), "list domains");
        var handles = new DomainHandle[count];
        for (var i = 0; i < count; i++)
            handles[i] = new DomainHandle(array[i]); // each entry is ours to free
        NativeMemory.Free(array); // the array itself: libc free, as the C API says
        return handles.Select(handle => new LibvirtDomain(handle)).ToArray();
    }

    /// <summary>Closes the connection (domains still open keep it alive natively).</summary>
    public void Dispose() => _handle.Dispose();
}
