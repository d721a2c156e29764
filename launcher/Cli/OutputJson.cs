using System.Text.Json.Serialization;

namespace VmNet.Cli;

/// <summary><c>vmnet doctor --json</c> (schemas/vmnet-output.schema.json, <c>doctor</c>): whether the host is ready, and each check.</summary>
public sealed record DoctorDocument(bool Ready, int Failed, IReadOnlyList<DoctorCheck> Checks);

/// <summary>One check of the doctor: <see cref="Status"/> is ok, warn, fail or skip; <see cref="Fix"/> what to do, when there is something.</summary>
public sealed record DoctorCheck(string Name, string Status, string Detail, string? Fix);

/// <summary><c>vmnet gc --json</c> (<c>gc</c>): each VF given back (in words), and what was skipped and why (exit 1 then).</summary>
public sealed record GcDocument(IReadOnlyList<string> Released, IReadOnlyList<string> Skipped);

/// <summary><c>vmnet validate --json</c> (<c>validate</c>): whether the spec is valid, what it asks for, and every problem with where it is (exit 2 then).</summary>
public sealed record ValidateDocument(string Spec, bool Valid, string? Name, int? Networks, int? Vfs, IReadOnlyList<SpecProblem> Problems);

/// <summary>One problem of a spec: the field's path (null when the file itself is the problem), what is wrong, and where.</summary>
public sealed record SpecProblem(string? Field, string Message, int? Line, int? Column);

/// <summary><c>vmnet host apply --json</c> (<c>hostApply</c>): each PF of the host config, its VF count before and after.</summary>
public sealed record HostApplyDocument(IReadOnlyList<HostApplyPf> Pfs);

public sealed record HostApplyPf(string Pf, string PfPci, int VfsBefore, int Vfs, bool Changed);

/// <summary><c>vmnet host prepare --json</c> (<c>hostPrepare</c>): each leased VF prepared or skipped, and each VM whose VFs could not be (exit 1 then).</summary>
public sealed record HostPrepareDocument(IReadOnlyList<Execution.PreparedVf> Prepared, IReadOnlyList<Execution.PrepareSkip> Skipped, IReadOnlyList<Execution.PrepareFailure> Failed);

/// <summary><c>vmnet down --json</c> (<c>down</c>): the VM, the backend that ran it, how it stopped (notRunning, shutDown or stoppedHard) and the timeout.</summary>
public sealed record DownDocument(string Name, string Backend, string Stop, int TimeoutSeconds);

/// <summary>
/// <c>vmnet rm --json</c> (<c>rm</c>): the VM, the backend it was removed from and how it stopped (both null when no
/// backend knew it), the directory deleted (null: there was none), and each VF given back (in words).
/// </summary>
public sealed record RmDocument(string Name, string? Backend, string? Stop, string? Deleted, IReadOnlyList<string> Released);

/// <summary>
/// <c>vmnet up --json</c> (<c>up</c>): the VM that runs now (or, with <c>--no-start</c>, whose host side is ready), its
/// VFs, each network's addresses and active member as the agent reported them (else as the spec gives them), what
/// changed live on a VM that was running, and how to reach it. Progress goes to stderr.
/// </summary>
public sealed record UpDocument(string Name, string Backend, string RunsOn, bool Started, bool WasRunning, double ElapsedSeconds,
    IReadOnlyList<Backends.VfStatus> Vfs, IReadOnlyList<UpNetwork> Networks, IReadOnlyList<Planning.SpecChange> Changes, string SerialLog,
    string? Ssh, string Console);

/// <summary>A network of <see cref="UpDocument"/>: the addresses, and the bond's active member (null: not reported, or none yet).</summary>
public sealed record UpNetwork(string Name, IReadOnlyList<string> Addresses, string? Active, bool Reported);

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase, WriteIndented = true)]
[JsonSerializable(typeof(DoctorDocument))]
[JsonSerializable(typeof(GcDocument))]
[JsonSerializable(typeof(ValidateDocument))]
[JsonSerializable(typeof(HostApplyDocument))]
[JsonSerializable(typeof(UpDocument))]
[JsonSerializable(typeof(HostPrepareDocument))]
[JsonSerializable(typeof(DownDocument))]
[JsonSerializable(typeof(RmDocument))]
[JsonSerializable(typeof(HostNetworksDocument))]
internal sealed partial class OutputJson : JsonSerializerContext;

/// <summary><c>vmnet host networks --json</c> (schema: <c>hostNetworks</c>).</summary>
public sealed record HostNetworksDocument(string Config, IReadOnlyList<HostNetworkRow> Networks);

/// <summary>One host network: what the host fixes (null: left to the spec) and the VMs whose VFs it serves.</summary>
public sealed record HostNetworkRow(string Name, IReadOnlyList<string> Ports, int? Vlan, int? Qos, string? VlanProtocol, int? Mtu, bool? SpoofCheck,
    bool? Trust, string? LinkState, int? MaxTxRate, int? MinTxRate, IReadOnlyList<string> Vms);

