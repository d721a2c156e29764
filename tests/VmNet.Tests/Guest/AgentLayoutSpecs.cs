using System.Text.RegularExpressions;
using VmNet.Tests.Support;

namespace VmNet.Tests.Guest;

/// <summary>The agent's folders (one namespace each) depend on each other in one direction only.</summary>
public sealed partial class AgentLayoutSpecs
{
    [Fact]
    public void No_two_agent_folders_use_each_other()
    {
        var root = Repo.File("guest-agent");
        var folders = Directory.GetDirectories(root).Select(Path.GetFileName).OfType<string>()
            .Where(f => f is not ("bin" or "obj") && Directory.GetFiles(Path.Join(root, f), "*.cs").Length > 0).ToList();
        string Source(string folder) => string.Join('\n', Directory.GetFiles(Path.Join(root, folder), "*.cs").Select(File.ReadAllText));
        var types = folders.ToDictionary(f => f, f => TypeDeclaration().Matches(Source(f)).Select(m => m.Groups[1].Value).ToHashSet());

        // A folder uses another by a using directive, a full name, or a name qualified by the folder (Dhcp.DhcpLease).
        bool Uses(string from, string to) =>
            Source(from) is var text && (text.Contains($"using VmNet.GuestAgent.{to};") || text.Contains($"VmNet.GuestAgent.{to}.")
                || Regex.Matches(text, $@"(?<![\w.]){to}\.(\w+)").Any(m => types[to].Contains(m.Groups[1].Value)));

        var both = from a in folders from b in folders where string.CompareOrdinal(a, b) < 0 && Uses(a, b) && Uses(b, a) select $"{a} <-> {b}";
        Assert.Empty(both);
        Assert.Contains("Net", folders);
    }

    [GeneratedRegex(@"\b(?:class|record|struct|interface|enum)\s+(\w+)")]
    private static partial Regex TypeDeclaration();
}
