using System.Runtime.CompilerServices;

namespace VmNet.Tests.Support;

/// <summary>Paths in the source tree (not the build output), for shipped files and approved (golden) files.</summary>
public static class Repo
{
    public static string Root { get; } = FindRoot();

    public static string File(string relative) => Path.Join(Root, relative);

    /// <summary>
    /// Runs one of the repository's bash scripts (e.g. images/guest/build.sh) outside the MSBuild that may have started
    /// the tests, so its node settings do not leak into a nested dotnet publish. After <paramref name="timeout"/>
    /// (default 10 minutes) the script is killed and the result is exit 124 (as timeout(1) reports) with a message as stderr.
    /// </summary>
    public static (string Output, int Exit, string Stderr) RunScript(string script, IReadOnlyList<string> args, TimeSpan? timeout = null)
    {
        var psi = new System.Diagnostics.ProcessStartInfo("bash", [File(script), .. args])
        {
            RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
        };
        foreach (var key in psi.Environment.Keys.Where(k => k.StartsWith("MSBuild", StringComparison.OrdinalIgnoreCase)).ToList())
            psi.Environment.Remove(key);
        using var p = System.Diagnostics.Process.Start(psi)!;
        var stderr = p.StandardError.ReadToEndAsync();
        var stdout = p.StandardOutput.ReadToEnd();
        var limit = timeout ?? TimeSpan.FromMinutes(10);
        if (!p.WaitForExit(limit)) { p.Kill(true); return ("", 124, $"{script} took over {limit.TotalMinutes:0} minutes"); }
        return (stdout, p.ExitCode, stderr.Result);
    }

    private static string FindRoot([CallerFilePath] string here = "")
    {
        var dir = Path.GetDirectoryName(here);
        while (dir is not null && !System.IO.File.Exists(Path.Join(dir, "VmNet.sln"))) dir = Path.GetDirectoryName(dir);
        return dir ?? throw new InvalidOperationException("VmNet.sln not found above " + here);
    }
}

/// <summary>
/// Approved files: the output must equal tests/VmNet.Tests/Golden/NAME. To approve a change, rerun with
/// VMNET_APPROVE=1, review the diff in git, and commit it. CI never approves: a missing file fails there.
/// </summary>
public static class Golden
{
    public static void Verify(string name, string actual)
    {
        var path = Repo.File(Path.Join("tests/VmNet.Tests/Golden", name));
        var approve = Environment.GetEnvironmentVariable("VMNET_APPROVE") == "1"
            && !Unavailable.InCi;
        if (approve)
        {
            Directory.CreateDirectory(Path.GetDirectoryName(path)!);
            System.IO.File.WriteAllText(path, actual);
            return;
        }
        Assert.True(System.IO.File.Exists(path), $"no approved file {path}; run the tests with VMNET_APPROVE=1 and review it");
        var expected = System.IO.File.ReadAllText(path);
        if (expected != actual)
        {
            var received = path + ".received";
            System.IO.File.WriteAllText(received, actual);
            Assert.Fail($"{name} differs from the approved file; see `diff {path} {received}` (approve with VMNET_APPROVE=1)");
        }
    }
}
