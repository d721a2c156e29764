using System.Text;
using VmNet.Host;
using VmNet.Sim;

namespace VmNet.Tests.Execution;

/// <summary>
/// A full picture of a simulated host and a state dir, for "equal to the start" assertions: every file with its
/// content, every link with its target, every directory, and what `ip -j link show` says for every PF. The
/// simulator's own files (run/vmnet-sim) are left out: the netlink state is compared as the kernel shows it.
/// </summary>
internal static class HostSnapshot
{
    /// <param name="skip">Also leaves out the paths (relative to the tree) it is true for.</param>
    public static string Of(string hostDir, Func<string, bool>? skip = null)
    {
        var sb = new StringBuilder();
        Walk(hostDir, hostDir, sb, skip: p => p == "run" || p.StartsWith("run/", StringComparison.Ordinal) || skip?.Invoke(p) == true);
        var kernel = new SimulatedKernel(new HostRoot(hostDir));
        // Every netdev of a PCI device (a real kernel's tree also has lo, bonding_masters and other virtual entries).
        foreach (var pf in Directory.EnumerateFileSystemEntries(Path.Join(hostDir, "sys/class/net")).Where(e => Path.Exists(Path.Join(e, "device")) && skip?.Invoke(Path.GetRelativePath(hostDir, e) + "/") != true).Select(Path.GetFileName).Order(StringComparer.Ordinal))
            sb.Append("ip -j link show dev ").Append(pf).Append('\n').Append(IpLinkJson.Render(0, kernel.ReadLinkAsync(pf!, CancellationToken.None).Result)).Append('\n');
        return sb.ToString();
    }

    /// <summary>The ledger: lease files, index links and MAC files (the lock file and empty directories do not count).</summary>
    public static string Ledger(string stateDir)
    {
        var sb = new StringBuilder();
        if (Directory.Exists(stateDir))
            Walk(stateDir, stateDir, sb, skip: p => p == "lock", dirs: false);
        return sb.ToString();
    }

    private static void Walk(string root, string dir, StringBuilder sb, Func<string, bool> skip, bool dirs = true)
    {
        foreach (var e in Directory.EnumerateFileSystemEntries(dir).Order(StringComparer.Ordinal))
        {
            var rel = Path.GetRelativePath(root, e);
            if (skip(rel)) continue;
            var info = new FileInfo(e);
            if (info.LinkTarget is { } target) sb.Append("L ").Append(rel).Append(" -> ").Append(target).Append('\n');
            else if (Directory.Exists(e))
            {
                if (dirs) sb.Append("D ").Append(rel).Append('\n');
                Walk(root, e, sb, skip, dirs);
            }
            else sb.Append("F ").Append(rel).Append(" = ").Append(File.ReadAllText(e)).Append('\n');
        }
    }
}
