using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace VmNet.Io;

/// <summary>
/// A cross-process exclusive lock: the file opened with <see cref="FileShare.None"/> (which .NET takes as
/// <c>flock(LOCK_EX | LOCK_NB)</c> on Linux) and an explicit <c>flock</c> on top, so the lock holds even where .NET's
/// own file locking is turned off (DOTNET_SYSTEM_IO_DISABLEFILELOCKING). The kernel drops it when the process dies,
/// even by kill -9.
/// </summary>
public sealed partial class FileLock : IDisposable
{
    private const int LockEx = 2;
    private const int LockNb = 4;

    [LibraryImport("libc", SetLastError = true)]
    private static partial int flock(SafeFileHandle fd, int operation);

    private readonly FileStream _stream;

    private FileLock(FileStream stream) => _stream = stream;

    public static FileLock Acquire(string path, TimeSpan timeout, CancellationToken ct)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        var deadline = DateTime.UtcNow + timeout;
        var delay = 5;
        while (true)
        {
            try
            {
                ReplaceIfOthersCouldHold(path);
                var options = new FileStreamOptions { Mode = FileMode.OpenOrCreate, Access = FileAccess.ReadWrite, Share = FileShare.None, BufferSize = 1 };
                if (!OperatingSystem.IsWindows()) options.UnixCreateMode = AtomicFile.Private;
                var stream = new FileStream(path, options);
                if (!OperatingSystem.IsLinux()) return new FileLock(stream);
                if (flock(stream.SafeFileHandle, LockEx | LockNb) == 0)
                {
                    // The lock is the file the path names now: one replaced (below, by another vmnet) while this one
                    // waited is a lock nobody else will ever ask for. Take the current one instead.
                    if (SafePath.Identity(path, stream.SafeFileHandle) == SafePath.Identity(path)) return new FileLock(stream);
                    stream.Dispose();
                    continue;
                }
                stream.Dispose();
                throw new IOException($"{path} is locked by another process");
            }
            catch (IOException e) when (e is not FileNotFoundException and not DirectoryNotFoundException)
            {
                if (DateTime.UtcNow > deadline)
                    throw new VmNetException($"could not take the lock {path} within {timeout.TotalSeconds:0} s: another vmnet is still working on this host; wait for it and retry", ExitCodes.Failure, e);
                Thread.Sleep(Random.Shared.Next(delay, delay * 2));
                delay = Math.Min(delay * 2, 50);
                ct.ThrowIfCancellationRequested();
            }
            catch (UnauthorizedAccessException e)
            {
                throw new VmNetException($"cannot open the lock {path}: {e.Message}; run vmnet as root or give --state-dir a directory you can write", ExitCodes.Failure, e);
            }
        }
    }

    /// <summary>
    /// A lock file others could open is a lock others can hold for as long as they like (flock works on a read-only
    /// descriptor, and narrowing the mode does not close a descriptor opened before): one that is not a private
    /// regular file of vmnet's user (an older vmnet's 0644 file, a link, another user's file) is replaced by a new
    /// inode, renamed over it, so whatever held the old one holds nothing vmnet asks for.
    /// </summary>
    private static void ReplaceIfOthersCouldHold(string path)
    {
        if (!OperatingSystem.IsLinux() || SafePath.Stat(path) is not { } st) return;
        if (st.Kind == "file" && st.Uid == SafePath.Euid && (st.Mode & 0x3f) == 0) return;
        if (st.Kind == "directory")
            throw new VmNetException($"{path} is a directory, not a lock file; remove it (vmnet recreates it)", ExitCodes.HostCannotServe);
        var fresh = $"{path}.{Environment.ProcessId}.new";
        File.Delete(fresh);
        using (new FileStream(fresh, new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write, UnixCreateMode = AtomicFile.Private })) { }
        File.Move(fresh, path, overwrite: true);
    }

    public void Dispose() => _stream.Dispose();
}
