using System.Runtime.InteropServices;

namespace VmNet.Io;

/// <summary>
/// What vmnet trusts in its state directory: real directories and regular files, owned by the user vmnet runs as and
/// writable by nobody else, looked at without following symbolic links (statx with AT_SYMLINK_NOFOLLOW). A link or
/// another user's file planted there would have vmnet (root) write guest output into, or read, a file it points at.
/// </summary>
public static unsafe partial class SafePath
{
    private const int AtFdCwd = -100;
    private const int AtSymlinkNoFollow = 0x100;
    private const uint StatxBasicStats = 0x7ff;
    private const int SIfmt = 0xf000, SIfdir = 0x4000, SIfreg = 0x8000, SIflnk = 0xa000;

    [LibraryImport("libc", EntryPoint = "statx", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Statx(int dirfd, string path, int flags, uint mask, byte* buffer);

    [LibraryImport("libc", EntryPoint = "geteuid")]
    private static partial uint GetEuid();

    /// <summary>The kind, owner and mode of <paramref name="path"/> itself (a link is not followed), or null when it does not exist.</summary>
    public static (string Kind, uint Uid, int Mode)? Stat(string path)
    {
        if (!OperatingSystem.IsLinux()) return File.Exists(path) ? ("file", 0, 0x180) : Directory.Exists(path) ? ("directory", 0, 0x1c0) : null;
        // struct statx: stx_uid at byte 20, stx_mode (u16) at byte 28, the same on every architecture.
        var buffer = stackalloc byte[256];
        if (Statx(AtFdCwd, path, AtSymlinkNoFollow, StatxBasicStats, buffer) != 0)
        {
            var errno = Marshal.GetLastPInvokeError();
            if (errno is 2 or 20) return null; // ENOENT, ENOTDIR
            throw new IOException($"cannot stat {path}: errno {errno}");
        }
        var uid = *(uint*)(buffer + 20);
        var mode = *(ushort*)(buffer + 28);
        var kind = (mode & SIfmt) switch
        {
            SIfdir => "directory",
            SIfreg => "file",
            SIflnk => "symbolic link",
            _ => "special file",
        };
        return (kind, uid, mode & 0xfff);
    }

    public static uint Euid => OperatingSystem.IsLinux() ? GetEuid() : 0;

    private const int AtEmptyPath = 0x1000;

    /// <summary>
    /// The file an open descriptor refers to (device and inode), or of <paramref name="path"/> itself when
    /// <paramref name="handle"/> is null (a link is not followed); null when the path does not exist.
    /// </summary>
    public static (ulong Device, ulong Inode)? Identity(string path, Microsoft.Win32.SafeHandles.SafeFileHandle? handle = null)
    {
        if (!OperatingSystem.IsLinux()) return null;
        // struct statx: stx_ino at byte 32, stx_dev_major and stx_dev_minor (u32 each) at bytes 136 and 140.
        var buffer = stackalloc byte[256];
        var result = handle is null
            ? Statx(AtFdCwd, path, AtSymlinkNoFollow, StatxBasicStats, buffer)
            : Statx((int)handle.DangerousGetHandle(), "", AtEmptyPath, StatxBasicStats, buffer);
        if (result != 0)
        {
            var errno = Marshal.GetLastPInvokeError();
            if (errno is 2 or 20) return null;
            throw new IOException($"cannot stat {path}: errno {errno}");
        }
        return (((ulong)*(uint*)(buffer + 136) << 32) | *(uint*)(buffer + 140), *(ulong*)(buffer + 32));
    }

    /// <summary>
    /// Why <paramref name="path"/> cannot be trusted as a <paramref name="kind"/> of vmnet's ("directory" or "file"),
    /// or null when it is one (or does not exist).
    /// </summary>
    public static string? Problem(string path, string kind)
    {
        if (!OperatingSystem.IsLinux() || Stat(path) is not { } st) return null;
        if (st.Kind != kind)
            return $"{path} is a {st.Kind}, not a {kind}; vmnet keeps its state in real files and directories: remove it (vmnet recreates what it needs)";
        if (st.Uid != Euid)
            return $"{path} is owned by uid {st.Uid}, not by uid {Euid} that vmnet runs as; remove it (vmnet recreates what it needs) or chown it";
        if ((st.Mode & 0x12) != 0) // group or other writable
            return $"{path} is writable by group or others (mode {Convert.ToString(st.Mode, 8)}); chmod go-w {path}";
        return null;
    }

    /// <summary>Throws (exit 3: the host cannot serve) when <paramref name="path"/> exists and is not a trusted <paramref name="kind"/>.</summary>
    public static void Check(string path, string kind)
    {
        if (Problem(path, kind) is { } problem) throw new VmNetException(problem, ExitCodes.HostCannotServe);
    }

    /// <summary>Removes <paramref name="path"/> when it is anything but a regular file (a link is removed, not followed).</summary>
    public static void RemoveUnlessRegularFile(string path)
    {
        if (Stat(path) is not { } st || st.Kind == "file") return;
        if (st.Kind == "directory") Directory.Delete(path, recursive: false);
        else File.Delete(path);
    }
}
