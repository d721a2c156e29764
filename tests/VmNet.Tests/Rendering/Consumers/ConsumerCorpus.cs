using VmNet.Host;
using VmNet.Leases;
using VmNet.Planning;
using VmNet.Rendering;
using VmNet.Sim;
using VmNet.Spec;
using VmNet.State;

namespace VmNet.Tests.Rendering.Consumers;

/// <summary>
/// The specs every consumer test runs over: the shipped example on the shipped ConnectX-5 host, and the files in
/// VmYaml/consumers/*.yaml, each on a throwaway simulated host named by its first line (<c># host: igb|connectx5|connectx5-numa</c>; the last has two NUMA nodes, the NIC on node 1, and 1024 2 MiB and 4 1 GiB pages on each).
/// </summary>
public static class ConsumerCorpus
{
    public const string Example = "example";

    public static readonly string[] Names = [Example, "igb-dhcp", "three-ipv6", "arp-monitor", "qos-qinq", "qemu-tcg", "cloud-guest", "numa-dedicated", "numa-qemu"];

    public static TheoryData<string> All => new(Names);

    /// <summary>Plans and renders one spec of the corpus into a fresh temp directory (host, state, artifacts).</summary>
    public static RenderedVm Render(string name)
    {
        var dir = Directory.CreateTempSubdirectory($"vmnet-consumers-{name}-").FullName;
        try
        {
            string yaml, hostDir;
            if (name == Example)
            {
                yaml = File.ReadAllText(Path.Join(RepoRoot, "examples", "vm.yaml"));
                hostDir = Path.Join(RepoRoot, "examples", "hosts", "connectx5");
            }
            else
            {
                yaml = File.ReadAllText(Path.Join(AppContext.BaseDirectory, "VmYaml", "consumers", name + ".yaml"));
                hostDir = yaml.Split('\n')[0].Trim() switch
                {
                    "# host: igb" => IgbHost.Value,
                    "# host: connectx5" => ConnectX5Host.Value,
                    "# host: connectx5-numa" => NumaHost.Value,
                    var other => throw new InvalidOperationException($"{name}.yaml: first line must be '# host: igb|connectx5|connectx5-numa', got '{other}'"),
                };
            }
            var state = new StateDir(Path.Join(dir, "state"));
            var spec = SpecLoader.Load(yaml, name + ".yaml");
            var plan = Planner.Make(spec, new HostScanner(new HostRoot(hostDir)), new LeaseStore(state), state);
            var artifacts = plan.Artifacts;
            return new RenderedVm(name, spec, plan, artifacts, dir);
        }
        catch
        {
            Directory.Delete(dir, recursive: true);
            throw;
        }
    }

    // The simulated hosts are only read by the planner, so one of each per test process is enough (writing one takes
    // ~0.1-0.5 s). Each render still gets its own state directory, so QEMU's sockets never collide.
    private static readonly Lazy<string> IgbHost = new(() => SharedHost("igb", NicShape.Igb(), 7));
    private static readonly Lazy<string> ConnectX5Host = new(() => SharedHost("connectx5", NicShape.ConnectX5(), 8));

    private static readonly Lazy<string> NumaHost = new(() => SharedHost("connectx5-numa", NicShape.ConnectX5(), 8,
        new SimTopology(Nodes: 2, NicNode: 1, Hugepages2M: 1024, Hugepages1G: 4)));

    private static string SharedHost(string label, NicShape shape, int numVfs, SimTopology? topology = null)
    {
        var dir = Directory.CreateTempSubdirectory($"vmnet-consumers-host-{label}-").FullName;
        AppDomain.CurrentDomain.ProcessExit += (_, _) => { try { Directory.Delete(dir, recursive: true); } catch (IOException) { } };
        SimHost.Create(dir, shape, pfs: 2, numVfs: numVfs, mtu: 9000, topology: topology);
        return dir;
    }

    /// <summary>The repository's root (the source tree, wherever the test binaries run from).</summary>
    public static string RepoRoot => Support.Repo.Root;
}

/// <summary>One rendered VM; the temp directory (simulated host, state dir with the VM's paths, files) goes on dispose.</summary>
public sealed record RenderedVm(string Name, VmSpec Spec, LaunchPlan Plan, Artifacts Artifacts, string Dir) : IDisposable
{
    /// <summary>Writes <paramref name="content"/> under the work directory and returns its full path.</summary>
    public string Write(string relative, string content)
    {
        var path = Path.Join(Dir, "out", relative);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        File.WriteAllText(path, content);
        return path;
    }

    /// <summary>The planned VFs of network <paramref name="index"/>, in port order.</summary>
    public IReadOnlyList<VfClaim> Members(int index) =>
        Plan.Vfs.Where(v => v.NetworkIndex == index).OrderBy(v => v.Port).ToList();

    /// <summary>The guest name of the bond's primary member (the member on the port named bond.primary).</summary>
    public string PrimaryOf(NetworkSpec n) => n.MemberName(n.Ports.ToList().IndexOf(n.Bond.Primary));

    public override string ToString() => Name;

    public void Dispose()
    {
        try { Directory.Delete(Dir, recursive: true); } catch (IOException) { }
    }
}
