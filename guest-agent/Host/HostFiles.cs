namespace VmNet.GuestAgent.Host;

/// <summary>The files the agent reads and writes (/sys, /proc, /etc, /dev), relative to a root that tests can move.
/// Paths never start with '/'.</summary>
public interface IHostFiles
{
    bool Exists(string path);
    /// <summary>The file's content with trailing white space removed, or null when the file does not exist or cannot be read.</summary>
    string? Read(string path);
    /// <summary>One write(2) of the value (sysfs acts on each write); throws <see cref="HostWriteException"/> with the kernel's reason.</summary>
    void Write(string path, string value);
    /// <summary>Entry names in a directory, sorted; empty when it does not exist.</summary>
    IReadOnlyList<string> List(string directory);
    /// <summary>Writes a whole file of the agent's own (its directory made when missing), replacing it at once.</summary>
    void Save(string path, string content);
    /// <summary>Removes a file of the agent's own; nothing when it is not there.</summary>
    void Delete(string path);
}

public sealed class HostWriteException(string path, string value, string reason)
    : Exception($"writing `{value}` to /{path} failed: {reason}")
{
    public string Path { get; } = path;
    public string Value { get; } = value;
}

/// <summary>The real host below <paramref name="root"/> ("/" in the guest).</summary>
public sealed class HostFiles(string root) : IHostFiles
{
    public string Root { get; } = root;

    public string Full(string path) => System.IO.Path.Combine(Root, path);

    public bool Exists(string path) => System.IO.Path.Exists(Full(path));

    public string? Read(string path)
    {
        try { return File.ReadAllText(Full(path)).TrimEnd(); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return null; }
    }

    public void Write(string path, string value)
    {
        try
        {
            using var stream = new FileStream(Full(path), FileMode.Open, FileAccess.Write, FileShare.ReadWrite, 1, FileOptions.None);
            var bytes = System.Text.Encoding.ASCII.GetBytes(value);
            stream.Write(bytes);
            stream.Flush();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new HostWriteException(path, value, e.Message);
        }
    }

    public void Save(string path, string content)
    {
        var full = Full(path);
        try
        {
            Directory.CreateDirectory(System.IO.Path.GetDirectoryName(full)!);
            File.WriteAllText(full + ".tmp", content);
            File.Move(full + ".tmp", full, overwrite: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new HostWriteException(path, content.Trim(), e.Message);
        }
    }

    public void Delete(string path)
    {
        try { File.Delete(Full(path)); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or DirectoryNotFoundException) { }
    }

    public IReadOnlyList<string> List(string directory)
    {
        var full = Full(directory);
        if (!Directory.Exists(full)) return [];
        var names = Directory.EnumerateFileSystemEntries(full).Select(e => System.IO.Path.GetFileName(e)!).ToList();
        names.Sort(StringComparer.Ordinal);
        return names;
    }
}
