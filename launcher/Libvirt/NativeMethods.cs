using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace VmNet.Libvirt;

/// <summary>
/// Raw libvirt functions with their C names. Nothing here checks errors: the wrappers in
/// <see cref="LibvirtConnection"/> and <see cref="LibvirtDomain"/> do, through <see cref="LibvirtException"/>.
/// Strings libvirt owns come back as <see cref="nint"/>; see <see cref="TakeString"/> and <see cref="CopyString"/>.
/// </summary>
internal static unsafe partial class NativeMethods
{
    /// <summary>The one name of the native library.</summary>
    public const string Library = "libvirt.so.0";

    // virDomainDefineXMLFlags
    public const uint VIR_DOMAIN_DEFINE_VALIDATE = 1 << 0;
    // virDomainGetXMLDesc
    public const uint VIR_DOMAIN_XML_INACTIVE = 1 << 1;
    // virDomainGetMetadata type and flags
    public const int VIR_DOMAIN_METADATA_ELEMENT = 2;
    public const uint VIR_DOMAIN_AFFECT_CURRENT = 0;
    // virDomainUndefineFlags
    public const uint VIR_DOMAIN_UNDEFINE_MANAGED_SAVE = 1 << 0;
    public const uint VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA = 1 << 1;
    public const uint VIR_DOMAIN_UNDEFINE_NVRAM = 1 << 2;
    // virDomainGetUUIDString writes 36 characters and a NUL
    public const int VIR_UUID_STRING_BUFLEN = 37;

    [LibraryImport(Library)]
    public static partial int virInitialize();

    [LibraryImport(Library)]
    public static partial void virSetErrorFunc(nint userData, delegate* unmanaged[Cdecl]<nint, nint, void> handler);

    [LibraryImport(Library)]
    public static partial nint virGetLastError();

    [LibraryImport(Library)]
    public static partial void virResetLastError();

    [LibraryImport(Library, StringMarshalling = StringMarshalling.Utf8)]
    public static partial ConnectHandle virConnectOpen(string? name);

    [LibraryImport(Library)]
    public static partial int virConnectClose(nint conn);

    [LibraryImport(Library)]
    public static partial nint virConnectGetURI(ConnectHandle conn);

    [LibraryImport(Library)]
    public static partial int virConnectGetLibVersion(ConnectHandle conn, out nuint libVer);

    [LibraryImport(Library)]
    public static partial int virConnectListAllDomains(ConnectHandle conn, out nint* domains, uint flags);

    [LibraryImport(Library, StringMarshalling = StringMarshalling.Utf8)]
    public static partial DomainHandle virDomainDefineXMLFlags(ConnectHandle conn, string xml, uint flags);

    [LibraryImport(Library, StringMarshalling = StringMarshalling.Utf8)]
    public static partial DomainHandle virDomainLookupByName(ConnectHandle conn, string name);

    [LibraryImport(Library, StringMarshalling = StringMarshalling.Utf8)]
    public static partial DomainHandle virDomainLookupByUUIDString(ConnectHandle conn, string uuid);

    /// <summary>Returns a string the domain object keeps: copy it, never free it.</summary>
    [LibraryImport(Library)]
    public static partial nint virDomainGetName(DomainHandle domain);

    [LibraryImport(Library)]
    public static partial int virDomainGetUUIDString(DomainHandle domain, byte* buf);

    [LibraryImport(Library)]
    public static partial nint virDomainGetXMLDesc(DomainHandle domain, uint flags);

    [LibraryImport(Library, StringMarshalling = StringMarshalling.Utf8)]
    public static partial nint virDomainGetMetadata(DomainHandle domain, int type, string? uri, uint flags);

    [LibraryImport(Library)]
    public static partial int virDomainGetState(DomainHandle domain, out int state, out int reason, uint flags);

    [LibraryImport(Library)]
    public static partial int virDomainIsActive(DomainHandle domain);

    [LibraryImport(Library)]
    public static partial int virDomainCreate(DomainHandle domain);

    [LibraryImport(Library)]
    public static partial int virDomainShutdown(DomainHandle domain);

    [LibraryImport(Library)]
    public static partial int virDomainDestroy(DomainHandle domain);

    [LibraryImport(Library)]
    public static partial int virDomainUndefineFlags(DomainHandle domain, uint flags);

    [LibraryImport(Library)]
    public static partial int virDomainSetAutostart(DomainHandle domain, int autostart);

    [LibraryImport(Library)]
    public static partial int virDomainGetAutostart(DomainHandle domain, out int autostart);

    [LibraryImport(Library)]
    public static partial int virDomainFree(nint domain);

    /// <summary>
    /// Makes libvirt usable from many threads and silences it: without an error handler libvirt prints
    /// every error to stderr itself ("libvirt: ... error : ..."); ours ignores them, and the wrappers read
    /// <c>virGetLastError</c> instead. Runs once; every public entry point calls it.
    /// </summary>
    public static void EnsureInitialized() => _ = Initialized;

    private static readonly bool Initialized = Initialize();

    private static bool Initialize()
    {
        virInitialize();
        virSetErrorFunc(0, &IgnoreError);
        return true;
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static void IgnoreError(nint userData, nint error) { }

    /// <summary>Copies a string the caller must free (per the C API), then frees it with libc <c>free</c>.</summary>
    public static string? TakeString(nint utf8)
    {
        if (utf8 == 0)
            return null;
        try { return Marshal.PtrToStringUTF8(utf8); }
        finally { NativeMemory.Free((void*)utf8); } // NativeMemory.Free is the C runtime's free on Unix.
    }

    /// <summary>Copies a string libvirt keeps; does not free it.</summary>
    public static string? CopyString(nint utf8) => utf8 == 0 ? null : Marshal.PtrToStringUTF8(utf8);
}
