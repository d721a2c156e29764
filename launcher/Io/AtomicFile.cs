namespace VmNet.Io;

/// <summary>Whole-file writes that never leave a torn file: a temp file in the same directory, fsync, rename.</summary>
public static class AtomicFile
{
    /// <param name="durable">fsync before the rename (the ledger); false where a crash of the machine loses the state anyway (the simulator's netlink).</param>
    public static void Write(string path, string content, bool durable = true)
    {
        var dir = Path.GetDirectoryName(Path.GetFullPath(path))!;
        Directory.CreateDirectory(dir);
        var tmp = Path.Join(dir, $".{Path.GetFileName(path)}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp");
        try
        {
            using (var fs = new FileStream(tmp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 4096, FileOptions.None))
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
