using System.Text.Json;
using System.Text.Json.Serialization;

namespace VmNet.GuestAgent.Reporting;

/// <summary>One JSON line per event on the report port. <c>event</c> names the kind; <c>uptimeMs</c> is the guest's uptime.</summary>
public sealed record MemberState(string Name, string Mac, string Link);

public sealed record NetworkState(string Name, string? Active, IReadOnlyList<MemberState> Members, IReadOnlyList<string> Addresses, int? Mtu);

public sealed record NetworkReadyEvent(string Event, long UptimeMs, int Changes, IReadOnlyList<NetworkState> Networks);

public sealed record ActiveChangedEvent(string Event, long UptimeMs, string Network, string? Active, string? Previous);

public sealed record LinkChangedEvent(string Event, long UptimeMs, string Network, string Member, string Link);

public sealed record AddressesChangedEvent(string Event, long UptimeMs, string Network, IReadOnlyList<string> Addresses);

public sealed record ErrorEvent(string Event, long UptimeMs, string Message);

/// <summary>The answer to the host's <c>{"query":"state"}</c>: every bond as it is now.</summary>
public sealed record StateEvent(string Event, long UptimeMs, IReadOnlyList<NetworkState> Networks);

/// <summary>A line the host writes on the report port.</summary>
public sealed record HostRequest(string? Query);

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase,
    DefaultIgnoreCondition = JsonIgnoreCondition.Never)]
[JsonSerializable(typeof(NetworkReadyEvent))]
[JsonSerializable(typeof(ActiveChangedEvent))]
[JsonSerializable(typeof(LinkChangedEvent))]
[JsonSerializable(typeof(AddressesChangedEvent))]
[JsonSerializable(typeof(ErrorEvent))]
[JsonSerializable(typeof(StateEvent))]
[JsonSerializable(typeof(HostRequest))]
public sealed partial class ReportJsonContext : JsonSerializerContext;
