using System.Text.Json.Serialization;

namespace VmNet.Cli;

/// <summary><c>vmnet doctor --json</c> (schemas/vmnet-output.schema.json, <c>doctor</c>): whether the host is ready, and each check.</summary>
public sealed record DoctorDocument(bool Ready, int Failed, IReadOnlyList<DoctorCheck> Checks);

/// <summary>One check of the doctor: <see cref="Status"/> is ok, warn, fail or skip; <see cref="Fix"/> what to do, when there is something.</summary>
public sealed record DoctorCheck(string Name, string Status, string Detail, string? Fix);

/// <summary><c>vmnet gc --json</c> (<c>gc</c>): each VF given back (in words), and what was skipped and why (exit 1 then).</summary>
public sealed record GcDocument(IReadOnlyList<string> Released, IReadOnlyList<string> Skipped);

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase, WriteIndented = true)]
[JsonSerializable(typeof(DoctorDocument))]
[JsonSerializable(typeof(GcDocument))]
internal sealed partial class OutputJson : JsonSerializerContext;
