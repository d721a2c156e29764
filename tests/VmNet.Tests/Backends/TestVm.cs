using VmNet.Backends;
using VmNet.Execution;
using VmNet.Host;
using VmNet.Leases;
using VmNet.Planning;
using VmNet.Rendering;
using VmNet.Sim;
using VmNet.Spec;
using VmNet.State;
using VmNet.Tests.Support;

namespace VmNet.Tests.Backends;

/// <summary>
/// A VM planned over a simulated ConnectX-5 host and rendered by the real templates, with its state directory and base
/// image under a throwaway directory. Nothing here touches the machine's host state.
/// </summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed class TestVm : IDisposable
{
    public TempDir Dir { get; } = new();
    public StateDir State { get; }
    public string BaseImage => Dir["base.qcow2"];
    public LaunchPlan Plan { get; }
    public Artifacts Artifacts { get; }

    public TestVm(string name = "vm1", string backend = "libvirt", string accel = "tcg", string memory = "256MiB", string? diskSize = null)
    {
        // libvirt's QEMU (user libvirt-qemu) must be able to walk down to the VM's files.
        File.SetUnixFileMode(Dir.Path, (UnixFileMode)0b111_001_001);
        SimHost.Create(Dir["host"], NicShape.ConnectX5(), pfs: 2, numVfs: 4);
        State = new StateDir(Dir["state"]);
        var spec = SpecLoader.Load($"""
            name: {name}
            cpus: 1
            memory: {memory}
            backend: {backend}
            accel: {accel}
            disk: {"{"}image: {BaseImage}{(diskSize is null ? "" : ", size: " + diskSize)}{"}"}
            networks:
              - name: storage
                vlan: 40
                ports: [enp3s0f0np0, enp3s0f1np1]
                address: 192.168.40.11/24
            guest:
              sshAuthorizedKeys: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHvmnettestkey admin@example"]
            """);
        Plan = Planner.Make(spec, new HostScanner(new HostRoot(Dir["host"])), new LeaseStore(State), State);
        Artifacts = Plan.Artifacts;
    }

    /// <summary>The plan again, made with <paramref name="options"/> (another backend URI, an agent to ship, ...).</summary>
    public LaunchPlan PlanWith(LaunchOptions options) =>
        Planner.Make(Plan.Vm, new HostScanner(new HostRoot(Dir["host"])), new LeaseStore(State), State, options, new Templates());

    /// <summary>
    /// Runs the plan's backend steps up to the start (seed, overlay, define, start: not the wait) through the launch
    /// runner, as <c>vmnet up</c> does after the host side, with <paramref name="progress"/> told of each phase.
    /// </summary>
    public async Task StartAsync(IBackend backend, IProgressSink? progress = null, LaunchPlan? plan = null)
    {
        plan ??= Plan;
        var steps = plan.Steps.Where(s => s is WriteSeed or CreateOverlay or DefineVm or StartVm).ToList();
        progress?.Planned(plan);
        await new VmNet.Execution.Executor([new VmNet.Execution.LaunchStepRunner(plan, backend, new LeaseLedger(State), progress)], progress: progress)
            .RunAsync(steps, new VmNet.Execution.Reverter(), TestContext.Current.CancellationToken);
    }

    /// <summary>The plan's wait for the guest agent's network-ready report, run by the launch runner (whatever the plan says about skipping it).</summary>
    public Task WaitForAgentAsync(IBackend backend, IProgressSink? progress, TimeSpan timeout) =>
        new VmNet.Execution.LaunchStepRunner(Plan, backend, new LeaseLedger(State), progress)
            .RunAsync(new WaitForAgent(Plan.Paths.AgentSocket, timeout, null), null, TestContext.Current.CancellationToken);

    /// <summary>What the plan's seed and overlay steps do: the seed (with <paramref name="agent"/>) and the disk overlay.</summary>
    public static async Task PrepareAsync(LaunchPlan plan, Artifacts artifacts, string? agent, CancellationToken cancel)
    {
        VmFiles.WriteSeed(plan.Paths, artifacts, agent);
        await VmFiles.EnsureOverlayAsync(plan.Vm.Disk.Image, plan.Paths.Disk, plan.Vm.Disk.SizeMiB, cancel);
    }

    /// <summary>What the plan's define and start steps do, with <paramref name="artifacts"/> in place of the plan's.</summary>
    public static async Task DefineAndStartAsync(IBackend backend, LaunchPlan plan, Artifacts artifacts, CancellationToken cancel)
    {
        var p = plan with { Artifacts = artifacts };
        await backend.DefineAsync(p, cancel);
        await backend.StartAsync(p, cancel);
    }

    /// <summary>Creates a small empty qcow2 base image with qemu-img.</summary>
    public async Task CreateBaseImage(string size = "64M")
    {
        var result = await RequiredTool.Run("qemu-img", ["create", "-q", "-f", "qcow2", BaseImage, size]);
        Assert.True(result.ExitCode == 0, result.StandardError);
    }

    /// <summary>The rendered QEMU argv without the vfio-pci devices (this machine has no VFIO).</summary>
    public IReadOnlyList<string> QemuArgsWithoutVfio()
    {
        var args = Artifacts.QemuArgs;
        var kept = new List<string>();
        for (var i = 0; i < args.Count; i++)
        {
            if (args[i] == "-device" && i + 1 < args.Count && args[i + 1].StartsWith("vfio-pci,", StringComparison.Ordinal)) { i++; continue; }
            kept.Add(args[i]);
        }
        return kept;
    }

    /// <summary>The rendered domain XML without its hostdevs (this machine has no VFIO).</summary>
    public string DomainXmlWithoutHostdevs() =>
        System.Text.RegularExpressions.Regex.Replace(Artifacts.DomainXml, @"\s*<hostdev .*?</hostdev>", "",
            System.Text.RegularExpressions.RegexOptions.Singleline);

    public void Dispose() => Dir.Dispose();
}
