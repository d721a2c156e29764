using System.Text.Json;
using System.Text.Json.Serialization;

namespace VmNet.Contract;

/// <summary>The agent's input, as the launcher writes it (camelCase JSON, version 1). The agent validates it
/// (ConfigLoader.Validate in guest-agent); these types only say its shape.
/// Properties are settable, not init-only: the JSON source generator passes default(T) for absent init-only
/// properties, which would wipe the defaults below.</summary>
public sealed record AgentConfig
{
    public const int CurrentVersion = 1;

    public int Version { get; set; }
    public string? Hostname { get; set; }
    /// <summary>virtio-serial port name: /dev/virtio-ports/&lt;name&gt;. Absent: report to stderr only.</summary>
    public string? ReportPort { get; set; }
    public IReadOnlyList<NetworkConfig> Networks { get; set; } = [];
}

/// <summary>One network: one active-backup bond over one VF per NIC port.</summary>
public sealed record NetworkConfig
{
    /// <summary>The bond's interface name in the guest (at most 15 characters).</summary>
    public string? Name { get; set; }
    public string Mode { get; set; } = "active-backup";
    /// <summary>MII link monitoring interval in ms; 0 when ARP monitoring is used.</summary>
    public int Miimon { get; set; } = 100;
    /// <summary>ARP monitoring interval in ms; greater than 0 turns ARP monitoring on.</summary>
    public int ArpInterval { get; set; }
    public IReadOnlyList<string> ArpTargets { get; set; } = [];
    /// <summary>The member name that is active whenever its link is up.</summary>
    public string? Primary { get; set; }
    public string FailOverMac { get; set; } = "active";
    public int UpDelay { get; set; }
    public int DownDelay { get; set; }
    public int NumGratArp { get; set; } = 1;
    public int? Mtu { get; set; }
    public IReadOnlyList<MemberConfig> Members { get; set; } = [];
    public bool Dhcp { get; set; }
    /// <summary>CIDR, IPv4 or IPv6.</summary>
    public IReadOnlyList<string> Addresses { get; set; } = [];
    public string? Gateway { get; set; }
    public IReadOnlyList<string> Dns { get; set; } = [];

    /// <summary>Not on the wire: derived from <see cref="ArpInterval"/>.</summary>
    [JsonIgnore]
    public bool UsesArpMonitoring => ArpInterval > 0;
}

/// <summary>A bond member, found by its MAC and renamed to <see cref="Name"/>.</summary>
public sealed record MemberConfig
{
    public string? Name { get; set; }
    public string? Mac { get; set; }
}

/// <summary>
/// Reads as the agent always has (comments skipped, trailing commas allowed, an unknown member refused, an absent
/// property keeps its default) and writes as the launcher puts it on the seed: indented by two spaces, <c>\n</c>.
/// </summary>
[JsonSourceGenerationOptions(
    PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase,
    ReadCommentHandling = JsonCommentHandling.Skip,
    AllowTrailingCommas = true,
    UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow,
    WriteIndented = true,
    IndentSize = 2,
    NewLine = "\n")]
[JsonSerializable(typeof(AgentConfig))]
public sealed partial class AgentConfigJsonContext : JsonSerializerContext;

/// <summary>
/// The launcher's writer of the same config, with the same names and layout: serialization only, so writing it needs
/// no property metadata (the reader's context builds that: about 2 million instructions at each <c>vmnet up</c>).
/// </summary>
[JsonSourceGenerationOptions(
    GenerationMode = JsonSourceGenerationMode.Serialization,
    PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase,
    WriteIndented = true,
    IndentSize = 2,
    NewLine = "\n")]
[JsonSerializable(typeof(AgentConfig))]
public sealed partial class AgentConfigWriteJsonContext : JsonSerializerContext;
