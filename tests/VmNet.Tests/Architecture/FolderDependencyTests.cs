using System.Reflection;
using System.Text.RegularExpressions;
using VmNet.Tests.Support;

namespace VmNet.Tests.Architecture;

/// <summary>
/// The folders of the launcher and of the agent show the pipeline: each folder is a namespace, and no two folders
/// import each other, directly or around a circle. A folder's imports are its <c>using</c> directives and its
/// qualified references to another folder's types (<c>Leases.Liveness</c>), read from the source.
/// </summary>
public sealed partial class FolderDependencyTests
{
    public static TheoryData<string, string> Projects => new()
    {
        { "launcher", "VmNet" },
        { "guest-agent", "VmNet.GuestAgent" },
    };

    [Theory]
    [MemberData(nameof(Projects))]
    public void No_two_folders_import_each_other_directly_or_around_a_circle(string project, string rootNamespace)
    {
        var graph = Imports(project, rootNamespace);

        var cycles = graph.Keys.SelectMany(a => graph[a].Where(b => Reaches(graph, b, a)).Select(b => $"{a} -> {b}")).ToList();

        Assert.True(cycles.Count == 0, $"{project}: folders that import each other: {string.Join(", ", cycles)}\n{Describe(graph)}");
    }

    [Fact]
    public void The_launcher_reads_as_a_pipeline_spec_then_host_then_plan_then_execution_then_cli()
    {
        var graph = Imports("launcher", "VmNet");

        // Lower folders never import higher ones: the order a newcomer reads them in.
        string[] order = ["Io", "State", "Spec", "Host", "Kernel", "Sim", "Libvirt", "Leases", "Rendering", "Seed", "Planning", "Backends", "Execution", "Doctor", "Cli"];
        Assert.Equal(order.Order(StringComparer.Ordinal), graph.Keys.Order(StringComparer.Ordinal));
        var upward = graph.SelectMany(kv => kv.Value.Where(to => Array.IndexOf(order, to) > Array.IndexOf(order, kv.Key)).Select(to => $"{kv.Key} -> {to}")).ToList();
        Assert.True(upward.Count == 0, "imports against the pipeline's order: " + string.Join(", ", upward) + "\n" + Describe(graph));
    }

    [Fact]
    public void The_scan_sees_imports_written_both_ways()
    {
        var graph = Imports("launcher", "VmNet");

        Assert.Contains("Libvirt", graph["Leases"]);   // Liveness asks libvirt, by a qualified name (Libvirt.LibvirtConnection)
        Assert.Contains("Kernel", graph["Execution"]);  // a using directive
        Assert.DoesNotContain("Cli", graph["Execution"]);
    }

    private static string Describe(Dictionary<string, SortedSet<string>> graph) =>
        string.Join("\n", graph.OrderBy(kv => kv.Key, StringComparer.Ordinal).Select(kv => $"  {kv.Key} -> {string.Join(" ", kv.Value)}"));

    private static bool Reaches(Dictionary<string, SortedSet<string>> graph, string from, string to)
    {
        var seen = new HashSet<string>();
        var todo = new Stack<string>([from]);
        while (todo.TryPop(out var x))
        {
            if (x == to) return true;
            if (!seen.Add(x)) continue;
            foreach (var y in graph.GetValueOrDefault(x) ?? []) todo.Push(y);
        }
        return false;
    }

    /// <summary>Folder -> the other folders its files import, for the top-level folders of <paramref name="project"/>.</summary>
    internal static Dictionary<string, SortedSet<string>> Imports(string project, string rootNamespace)
    {
        var root = Repo.File(project);
        var folders = Directory.GetDirectories(root).Select(Path.GetFileName).OfType<string>()
            .Where(d => d is not ("bin" or "obj") && Directory.EnumerateFiles(Path.Join(root, d), "*.cs", SearchOption.AllDirectories).Any())
            .ToHashSet(StringComparer.Ordinal);
        // The types each folder declares, so that `Folder.Name` counts only when Name is one of them.
        var assembly = project == "launcher" ? typeof(VmNetException).Assembly : typeof(VmNet.GuestAgent.Config.ConfigLoader).Assembly;
        var types = assembly.GetTypes().Where(t => t.Namespace is not null)
            .GroupBy(t => t.Namespace!).ToDictionary(g => g.Key, g => g.Select(t => t.Name.Split('`')[0]).ToHashSet(StringComparer.Ordinal));
        var graph = folders.ToDictionary(f => f, _ => new SortedSet<string>(StringComparer.Ordinal));
        foreach (var folder in folders)
        {
            foreach (var file in Directory.EnumerateFiles(Path.Join(root, folder), "*.cs", SearchOption.AllDirectories))
            {
                var text = Comments().Replace(File.ReadAllText(file), "");
                foreach (Match m in Using().Matches(text))
                {
                    var ns = m.Groups[1].Value;
                    if (!ns.StartsWith(rootNamespace + ".", StringComparison.Ordinal)) continue;
                    var top = ns[(rootNamespace.Length + 1)..].Split('.')[0];
                    if (folders.Contains(top)) graph[folder].Add(top);
                }
                foreach (Match m in Qualified().Matches(text))
                {
                    var (top, name) = (m.Groups[1].Value, m.Groups[2].Value);
                    if (folders.Contains(top) && types.TryGetValue($"{rootNamespace}.{top}", out var declared) && declared.Contains(name))
                        graph[folder].Add(top);
                }
            }
            graph[folder].Remove(folder);
        }
        return graph;
    }

    [GeneratedRegex(@"//[^\n]*|/\*.*?\*/", RegexOptions.Singleline)]
    private static partial Regex Comments();

    [GeneratedRegex(@"^\s*using\s+(?:static\s+)?([A-Za-z0-9_.]+)\s*;", RegexOptions.Multiline)]
    private static partial Regex Using();

    [GeneratedRegex(@"(?<![\w.])([A-Z]\w*)\.([A-Z]\w*)")]
    private static partial Regex Qualified();
}
