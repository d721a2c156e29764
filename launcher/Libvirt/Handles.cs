using System.Runtime.InteropServices;

namespace VmNet.Libvirt;

/// <summary>A <c>virConnectPtr</c>; releasing it calls <c>virConnectClose</c>.</summary>
internal sealed class ConnectHandle : SafeHandle
{
    public ConnectHandle() : base(0, ownsHandle: true) { }

    public override bool IsInvalid => handle == 0;

    protected override bool ReleaseHandle() => NativeMethods.virConnectClose(handle) >= 0;
}

/// <summary>A <c>virDomainPtr</c>; releasing it calls <c>virDomainFree</c>. Domains keep their connection alive natively.</summary>
internal sealed class DomainHandle : SafeHandle
{
    public DomainHandle() : base(0, ownsHandle: true) { }

    /// <summary>Takes ownership of a pointer libvirt handed over (e.g. one entry of <c>virConnectListAllDomains</c>).</summary>
    public DomainHandle(nint owned) : this() => SetHandle(owned);

    public override bool IsInvalid => handle == 0;

    protected override bool ReleaseHandle() => NativeMethods.virDomainFree(handle) == 0;
}
