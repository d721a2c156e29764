namespace VmNet.Tests.Support;

/// <summary>
/// Finds an external program a test needs on PATH. A missing tool is never a silent pass: on CI (env CI=true) the test
/// fails, elsewhere it is skipped with the same message, "&lt;tool&gt; missing: run scripts/install-deps.sh".
/// </summary>
public static class RequiredTool
{
    public static string Path(string name)
    {
        foreach (var dir in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(System.IO.Path.PathSeparator))
        {
            if (dir.Length == 0) continue;
            var candidate = System.IO.Path.Join(dir, name);
            if (File.Exists(candidate) && IsExecutable(candidate)) return candidate;
        }
        var message = $"{name} missing: run scripts/install-deps.sh";
        if (string.Equals(Environment.GetEnvironmentVariable("CI"), "true", StringComparison.OrdinalIgnoreCase))
            Assert.Fail(message);
        Assert.Skip(message);
        return null!; // unreachable: Assert.Skip throws
    }

    private static bool IsExecutable(string path) =>
        OperatingSystem.IsWindows()
        || (File.GetUnixFileMode(path) & (UnixFileMode.UserExecute | UnixFileMode.GroupExecute | UnixFileMode.OtherExecute)) != 0;
}
