using System.Text.Json;
using System.Text.Json.Serialization;

namespace VmNet.GuestAgent.Config;

/// <summary>The agent's input, exactly as the launcher renders it (camelCase JSON, version 1).</summary>
public sealed record AgentConfig
{
    public int Version { get; init; }
    public string? Hostname { get; init; }
    /// <summary>virtio-serial port name: /dev/virtio-ports/&lt;name&gt;. Absent: report to stderr only.</summary>
    public string? ReportPort { get; init; }
    public IReadOnlyList<NetworkConfig> Networks { get; init; } = [];
}

/// <summary>One network: one active-backup bond over one VF per NIC port.</summary>
public sealed record NetworkConfig
{
    /// <summary>The bond's interface name in the guest (at most 15 characters).</summary>
    public string? Name { get; init; }
    public string Mode { get; init; } = "active-backup";
    /// <summary>MII link monitoring interval in ms; 0 when ARP monitoring is used.</summary>
    public int Miimon { get; init; } = 100;
    /// <summary>ARP monitoring interval in ms; greater than 0 turns ARP monitoring on.</summary>
    public int ArpInterval { get; init; }
    public IReadOnlyList<string> ArpTargets { get; init; } = [];
    /// <summary>The member name that is active whenever its link is up.</summary>
    public string? Primary { get; init; }
    public string FailOverMac { get; init; } = "active";
    public int UpDelay { get; init; }
    public int DownDelay { get; init; }
    public int NumGratArp { get; init; } = 1;
    public int? Mtu { get; init; }
    public IReadOnlyList<MemberConfig> Members { get; init; } = [];
    public bool Dhcp { get; init; }
    /// <summary>CIDR, IPv4 or IPv6.</summary>
    public IReadOnlyList<string> Addresses { get; init; } = [];
    public string? Gateway { get; init; }
    public IReadOnlyList<string> Dns { get; init; } = [];

    public bool UsesArpMonitoring => ArpInterval > 0;
}

/// <summary>A bond member, found by its MAC and renamed to <see cref="Name"/>.</summary>
public sealed record MemberConfig
{
    public string? Name { get; init; }
    public string? Mac { get; init; }
}

[JsonSourceGenerationOptions(
    PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase,
    ReadCommentHandling = JsonCommentHandling.Skip,
    AllowTrailingCommas = true,
    UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow,
    WriteIndented = true)]
[JsonSerializable(typeof(AgentConfig))]
internal sealed partial class AgentConfigJsonContext : JsonSerializerContext;
