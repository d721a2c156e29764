using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using VmNet.Io;
using VmNet.State;

namespace VmNet.Backends;

/// <summary>One bond member as the guest agent reports it.</summary>
public sealed record GuestMember(string Name, string Mac, string Link);

/// <summary>One bond as the guest agent reports it: the active member, the members' links and the addresses.</summary>
public sealed record GuestNetwork(string Name, string? Active, IReadOnlyList<GuestMember> Members, IReadOnlyList<string> Addresses, int? Mtu);

/// <summary>
/// One line of the agent: <c>network-ready</c> (all networks), <c>state</c> (all networks, the answer to
/// <see cref="GuestAgentChannel.StateQuery"/>), <c>active-changed</c> (network, active), <c>link-changed</c>
/// (network, member, link), <c>addresses-changed</c> (network, addresses: a DHCP lease got, changed or lost) or
/// <c>error</c> (message).
/// </summary>
public sealed record GuestEvent(string Event, long UptimeMs, string? Message, IReadOnlyList<GuestNetwork>? Networks,
    string? Network = null, string? Active = null, string? Member = null, string? Link = null, IReadOnlyList<string>? Addresses = null);

/// <summary>The last guest report VmNet received, kept in the VM directory for <c>vmnet status</c>.</summary>
public sealed record GuestStatus(DateTimeOffset ReceivedAt, IReadOnlyList<GuestNetwork> Networks);

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase, WriteIndented = false)]
[JsonSerializable(typeof(GuestEvent))]
[JsonSerializable(typeof(GuestStatus))]
internal sealed partial class GuestJson : JsonSerializerContext;

/// <summary>
/// The host end of the guest agent's report port: a virtio-serial channel whose unix socket QEMU listens on
/// (<see cref="VmPaths.AgentSocket"/>). The agent sends one JSON object per line; <c>network-ready</c> comes once
/// the bonds are up.
/// </summary>
public static class GuestAgentChannel
{
    /// <summary>What the host writes to ask the agent for a <c>state</c> report of every bond as it is now.</summary>
    public const string StateQuery = "{\"query\":\"state\"}\n";

    /// <summary>
    /// Connects to the agent socket (retrying while QEMU is not listening yet) and waits for <c>network-ready</c>;
    /// saves it for <see cref="ReadSaved"/>. An <c>error</c> report or the timeout throws, naming the serial log.
    /// </summary>
    public static async Task<GuestStatus> WaitForReadyAsync(VmPaths paths, TimeSpan timeout, CancellationToken cancel)
    {
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancel);
        deadline.CancelAfter(timeout);
        try
        {
            while (true)
            {
                using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
                try
                {
                    await socket.ConnectAsync(new UnixDomainSocketEndPoint(paths.AgentSocket), deadline.Token);
                }
                catch (SocketException)
                {
                    await Task.Delay(200, deadline.Token);
                    continue;
                }
                using var reader = new StreamReader(new NetworkStream(socket, ownsSocket: false), new UTF8Encoding(false));
                while (await reader.ReadLineAsync(deadline.Token) is { } line)
                {
                    GuestEvent? report;
                    try { report = JsonSerializer.Deserialize(line, GuestJson.Default.GuestEvent); }
                    catch (JsonException) { continue; } // not a report line
                    if (report?.Event == "error")
                        throw new VmNetException($"the guest agent reported an error: {report.Message}; see the serial log {paths.SerialLog}", ExitCodes.Failure);
                    if (report is { Event: "network-ready", Networks: { } networks })
                    {
                        var status = new GuestStatus(DateTimeOffset.UtcNow, networks);
                        await File.WriteAllTextAsync(paths.GuestReport, JsonSerializer.Serialize(status, GuestJson.Default.GuestStatus), deadline.Token);
                        return status;
                    }
                }
                await Task.Delay(200, deadline.Token); // QEMU closed the connection (guest restarting?): connect again
            }
        }
        catch (OperationCanceledException) when (!cancel.IsCancellationRequested)
        {
            throw new VmNetException(
                $"the guest agent did not report its network ready within {timeout.TotalSeconds:0.#} s; see the serial log {paths.SerialLog}",
                ExitCodes.Failure);
        }
    }

    /// <summary>
    /// Brings the saved report up to date: connects to the agent socket, asks for the agent's <c>state</c>, and folds
    /// into the saved report what comes: the events the agent queued while no one listened, then the state, which
    /// replaces the report whole (so an event lost between two looks does no lasting harm). An agent that does not
    /// answer within <paramref name="max"/> (3 s; not running yet, or too old to answer) leaves the folded events.
    /// Without a socket it returns what is saved.
    /// </summary>
    public static async Task<GuestStatus?> RefreshAsync(VmPaths paths, CancellationToken cancel, TimeSpan? max = null)
    {
        var status = ReadSaved(paths);
        if (!File.Exists(paths.AgentSocket)) return status;
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancel);
        deadline.CancelAfter(max ?? TimeSpan.FromSeconds(3));
        var read = 0;
        try
        {
            using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            await socket.ConnectAsync(new UnixDomainSocketEndPoint(paths.AgentSocket), deadline.Token);
            using var stream = new NetworkStream(socket, ownsSocket: false);
            await stream.WriteAsync(Encoding.UTF8.GetBytes(StateQuery), deadline.Token);
            using var reader = new StreamReader(stream, new UTF8Encoding(false));
            while (true)
            {
                if (await reader.ReadLineAsync(deadline.Token) is not { } line) break;
                GuestEvent? e;
                try { e = JsonSerializer.Deserialize(line, GuestJson.Default.GuestEvent); }
                catch (JsonException) { continue; }
                if (e is null) continue;
                read++;
                status = Fold(status, e);
                if (e.Event == "state" && status is not null) break; // the whole truth: nothing more to wait for
            }
        }
        catch (Exception e) when (e is SocketException or IOException or OperationCanceledException && !cancel.IsCancellationRequested) { }
        if (read > 0 && status is not null)
        {
            status = status with { ReceivedAt = DateTimeOffset.UtcNow };
            try { AtomicFile.Write(paths.GuestReport, JsonSerializer.Serialize(status, GuestJson.Default.GuestStatus), durable: false); }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
        }
        return status;
    }

    /// <summary>One event applied to a report: network-ready and state replace it; the others change one network.</summary>
    public static GuestStatus? Fold(GuestStatus? status, GuestEvent e)
    {
        if (e is { Event: "network-ready" or "state", Networks: { } all }) return new GuestStatus(DateTimeOffset.UtcNow, all);
        if (status is null || e.Network is null) return status;
        return status with
        {
            Networks = status.Networks.Select(n => n.Name != e.Network ? n : e.Event switch
            {
                "active-changed" => n with { Active = e.Active },
                "link-changed" when e.Member is not null && e.Link is not null =>
                    n with { Members = n.Members.Select(m => m.Name == e.Member ? m with { Link = e.Link } : m).ToList() },
                "addresses-changed" when e.Addresses is not null => n with { Addresses = e.Addresses },
                _ => n,
            }).ToList(),
        };
    }

    /// <summary>The last saved report, or null when none was received (or the file is unreadable).</summary>
    public static GuestStatus? ReadSaved(VmPaths paths)
    {
        try
        {
            return JsonSerializer.Deserialize(File.ReadAllText(paths.GuestReport), GuestJson.Default.GuestStatus);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or JsonException)
        {
            return null;
        }
    }
}
