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
                var options = new FileStreamOptions { Mode = FileMode.OpenOrCreate, Access = FileAccess.ReadWrite, Share = FileShare.None, BufferSize = 1 };
                if (!OperatingSystem.IsWindows()) options.UnixCreateMode = AtomicFile.Private;
                var stream = new FileStream(path, options);
                // A lock file others can open is a lock others can hold (flock works on a read-only descriptor): only
                // its owner may open it, also where an older vmnet created it 0644.
                if (!OperatingSystem.IsWindows() && (File.GetUnixFileMode(stream.SafeFileHandle) & ~AtomicFile.Private) != 0)
                    File.SetUnixFileMode(stream.SafeFileHandle, AtomicFile.Private);
                if (!OperatingSystem.IsLinux() || flock(stream.SafeFileHandle, LockEx | LockNb) == 0) return new FileLock(stream);
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

    public void Dispose() => _stream.Dispose();
}
