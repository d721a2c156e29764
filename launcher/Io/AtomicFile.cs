namespace VmNet.Io;

/// <summary>Whole-file writes that never leave a torn file: a temp file in the same directory, fsync, rename.</summary>
public static class AtomicFile
{
    /// <summary>Only the owner reads or writes: the ledger, the lock, what a guest said.</summary>
    public const UnixFileMode Private = UnixFileMode.UserRead | UnixFileMode.UserWrite;

    /// <param name="durable">fsync before the rename (the ledger); false where a crash of the machine loses the state anyway (the simulator's netlink).</param>
    /// <param name="mode">The file's mode from its creation on (no window with a wider one); null: the umask's.</param>
    public static void Write(string path, string content, bool durable = true, UnixFileMode? mode = null)
    {
        var dir = Path.GetDirectoryName(Path.GetFullPath(path))!;
        Directory.CreateDirectory(dir);
        var tmp = Path.Join(dir, $".{Path.GetFileName(path)}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp");
        try
        {
            var options = new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write, Share = FileShare.None, BufferSize = 4096 };
            if (mode is { } m && !OperatingSystem.IsWindows()) options.UnixCreateMode = m;
            using (var fs = new FileStream(tmp, options))
            {
                fs.Write(System.Text.Encoding.UTF8.GetBytes(content));
                fs.Flush(flushToDisk: durable);
            }
            File.Move(tmp, path, overwrite: true);
        }
        finally
        {
            if (File.Exists(tmp)) File.Delete(tmp);
        }
    }
}
