using System.Text.Json;
using System.Text.Json.Serialization;

namespace VmNet.Contract;

/// <summary>One bond member as the agent reports it: <see cref="Link"/> is <c>up</c> or <c>down</c>.</summary>
public sealed record MemberState(string Name, string Mac, string Link);

/// <summary>One bond as the agent reports it: the active member (null while none is), the members' links, the
/// addresses (a DHCP lease first) and the MTU the bond has.</summary>
public sealed record NetworkState(string Name, string? Active, IReadOnlyList<MemberState> Members, IReadOnlyList<string> Addresses, int? Mtu);

/// <summary>
/// One JSON line the agent writes on the report port. <c>event</c> names the kind (it comes first when the agent
/// writes; a reader takes it anywhere in the object); <c>uptimeMs</c> is the guest's uptime.
/// </summary>
[JsonPolymorphic(TypeDiscriminatorPropertyName = "event")]
[JsonDerivedType(typeof(StartedEvent), "started")]
[JsonDerivedType(typeof(NetworkReadyEvent), "network-ready")]
[JsonDerivedType(typeof(StateEvent), "state")]
[JsonDerivedType(typeof(ActiveChangedEvent), "active-changed")]
[JsonDerivedType(typeof(LinkChangedEvent), "link-changed")]
[JsonDerivedType(typeof(AddressesChangedEvent), "addresses-changed")]
[JsonDerivedType(typeof(ErrorEvent), "error")]
public abstract record AgentEvent([property: JsonPropertyOrder(-1)] long UptimeMs) // before the kind's own fields
{
    /// <summary>The line as the agent writes it (without the newline).</summary>
    public string ToLine() => JsonSerializer.Serialize(this, ReportJsonContext.Default.AgentEvent);

    /// <summary>The event on one line, or null for a line that is none: not JSON, an unknown <c>event</c>, a field
    /// missing or of the wrong type. A reader skips such lines.</summary>
    public static AgentEvent? Parse(string line)
    {
        try
        {
            return JsonSerializer.Deserialize(line, ReportJsonContext.Default.AgentEvent);
        }
        catch (Exception e) when (e is JsonException or NotSupportedException) // NotSupported: no `event` to pick the type by
        {
            return null;
        }
    }
}

/// <summary>Once, first: the agent read its config and starts on the bonds (its version, how many networks it builds).
/// Before <c>network-ready</c>, the agent also sends the link, active-member and address changes it sees as the
/// bonds come up, so the host can show the bring-up as it happens.</summary>
public sealed record StartedEvent(long UptimeMs, string Version, int Networks) : AgentEvent(UptimeMs);

/// <summary>Once, when every bond is up (or gave up): every bond, and how many changes the agent made to get there.</summary>
public sealed record NetworkReadyEvent(long UptimeMs, int Changes, IReadOnlyList<NetworkState> Networks) : AgentEvent(UptimeMs);

/// <summary>The answer to the host's <see cref="HostRequest.State"/>: every bond as it is now.</summary>
public sealed record StateEvent(long UptimeMs, IReadOnlyList<NetworkState> Networks) : AgentEvent(UptimeMs);

/// <summary>A bond's active member changed (<see cref="Active"/> null: none is).</summary>
public sealed record ActiveChangedEvent(long UptimeMs, string Network, string? Active, string? Previous) : AgentEvent(UptimeMs);

/// <summary>A member's carrier changed: <see cref="Link"/> is <c>up</c> or <c>down</c>.</summary>
public sealed record LinkChangedEvent(long UptimeMs, string Network, string Member, string Link) : AgentEvent(UptimeMs);

/// <summary>A bond's addresses changed: a DHCP lease got, changed or lost.</summary>
public sealed record AddressesChangedEvent(long UptimeMs, string Network, IReadOnlyList<string> Addresses) : AgentEvent(UptimeMs);

/// <summary>Something the agent could not do; the launcher stops waiting and shows it.</summary>
public sealed record ErrorEvent(long UptimeMs, string Message) : AgentEvent(UptimeMs);

/// <summary>A line the host writes on the report port.</summary>
public sealed record HostRequest(string? Query)
{
    /// <summary>Asks for a <see cref="StateEvent"/>: <c>{"query":"state"}</c>.</summary>
    public static readonly HostRequest State = new("state");

    public string ToLine() => JsonSerializer.Serialize(this, ReportJsonContext.Default.HostRequest);

    /// <summary>The request on one line, or null for a line that is none.</summary>
    public static HostRequest? Parse(string line)
    {
        try { return JsonSerializer.Deserialize(line, ReportJsonContext.Default.HostRequest); }
        catch (JsonException) { return null; }
    }
}

/// <summary>
/// The report lines: camelCase, one line each, every property written (null too). A reader takes <c>event</c>
/// anywhere in the object, skips members it does not know, and refuses a line that lacks a field or has null where
/// the type has none (<see cref="AgentEvent.Parse"/> returns null for it).
/// </summary>
[JsonSourceGenerationOptions(
    PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase,
    DefaultIgnoreCondition = JsonIgnoreCondition.Never,
    AllowOutOfOrderMetadataProperties = true,
    RespectNullableAnnotations = true,
    RespectRequiredConstructorParameters = true)]
[JsonSerializable(typeof(AgentEvent))]
[JsonSerializable(typeof(HostRequest))]
public sealed partial class ReportJsonContext : JsonSerializerContext;
