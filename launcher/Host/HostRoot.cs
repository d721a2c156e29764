namespace VmNet.Host;

/// <summary>
/// Every read of the host goes through this root: "/" on a real host, a directory laid out exactly like the kernel's
/// <c>/sys</c>, <c>/proc</c> and <c>/dev</c> in tests and simulations. Paths are given as on the host ("/sys/...").
/// </summary>
public sealed class HostRoot(string path)
{
    public static readonly HostRoot System = new("/");

    public string Path { get; } = global::System.IO.Path.GetFullPath(path);
    public bool IsRealHost => Path == "/";

    /// <summary>The real path of a host path under this root.</summary>
    public string Map(string hostPath) =>
        IsRealHost ? hostPath : global::System.IO.Path.Join(Path, hostPath.TrimStart('/'));

    /// <summary>The host path of a real path under this root (the inverse of <see cref="Map"/>).</summary>
    public string Unmap(string realPath) =>
        IsRealHost ? realPath : "/" + global::System.IO.Path.GetRelativePath(Path, realPath).Replace('\\', '/');

    public bool Exists(string hostPath) => global::System.IO.Path.Exists(Map(hostPath));

    /// <summary>A sysfs attribute's value without the trailing newline, or null if it does not exist.</summary>
    public string? Read(string hostPath)
    {
        try
        {
            // One open and one read per attribute (File.ReadAllText adds fstat, two flocks and a second read); a sysfs
            // attribute fits in a page, and a longer file is read whole.
            using var handle = File.OpenHandle(Map(hostPath), FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
            Span<byte> buffer = stackalloc byte[4096];
            var n = RandomAccess.Read(handle, buffer, 0);
            if (n == buffer.Length) return File.ReadAllText(Map(hostPath)).TrimEnd('\n');
            return global::System.Text.Encoding.UTF8.GetString(buffer[..n]).TrimEnd('\n');
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException or UnauthorizedAccessException or IOException)
        {
            return null;
        }
    }

    public int? ReadInt(string hostPath) =>
        int.TryParse(Read(hostPath), global::System.Globalization.NumberStyles.AllowLeadingSign, null, out var v) ? v : null;

    /// <summary>The last path element a symlink points at (e.g. the driver's name for <c>.../driver</c>), or null.</summary>
    public string? LinkName(string hostPath)
    {
        var target = new FileInfo(Map(hostPath)).LinkTarget;
        return target is null ? null : global::System.IO.Path.GetFileName(target.TrimEnd('/'));
    }

    /// <summary>The host path a symlink resolves to (following every link), or null.</summary>
    public string? Resolve(string hostPath)
    {
        var real = Map(hostPath);
        if (!global::System.IO.Path.Exists(real)) return null;
        var info = new DirectoryInfo(real);
        var final = info.ResolveLinkTarget(returnFinalTarget: true)?.FullName ?? info.FullName;
        return Unmap(final);
    }

    public IEnumerable<string> List(string hostPath)
    {
        var real = Map(hostPath);
        if (!Directory.Exists(real)) return [];
        return Directory.EnumerateFileSystemEntries(real).Select(global::System.IO.Path.GetFileName).OfType<string>();
    }
}
