using VmNet.Spec;
using VmNet.State;

namespace VmNet.Backends;

/// <summary>Picks the backend for a spec, and finds which backend runs an existing VM.</summary>
public sealed class BackendSet(string libvirtUri, StateDir state) : IDisposable
{
    private LibvirtBackend? _libvirt;
    private QemuBackend? _qemu;

    public LibvirtBackend Libvirt => _libvirt ??= new LibvirtBackend(libvirtUri, state);

    public QemuBackend Qemu => _qemu ??= new QemuBackend(state);

    /// <summary>The backend <c>up</c> uses: <c>--backend</c> when given, else the spec's <c>backend</c>.</summary>
    public IBackend For(VmSpec spec, Backend? overrideBackend = null) =>
        (overrideBackend ?? spec.Backend) == Backend.Qemu ? Qemu : Libvirt;

    /// <summary>
    /// The backend that knows <paramref name="vm"/>: the QEMU backend when the VM directory holds its record (a local
    /// check), else libvirt. Null when neither knows it. When libvirt cannot be asked, the error says that the VM is
    /// not a QEMU-backend VM and why libvirt could not be asked.
    /// </summary>
    public async Task<(IBackend Backend, VmStatus Status)?> FindAsync(string vm, CancellationToken cancel)
    {
        if (await Qemu.StatusAsync(vm, cancel) is { } q) return (Qemu, q);
        try
        {
            if (await Libvirt.StatusAsync(vm, cancel) is { } l) return (Libvirt, l);
        }
        catch (VmNetException e)
        {
            throw new VmNetException($"no VM named {vm} runs on the QEMU backend (state {state.Path}), and libvirt could not be asked: {e.Message}", e.ExitCode, e);
        }
        return null;
    }

    public void Dispose() => _libvirt?.Dispose();
}
