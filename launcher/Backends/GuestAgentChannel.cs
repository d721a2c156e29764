using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using VmNet.Planning;

namespace VmNet.Backends;

/// <summary>One bond member as the guest agent reports it.</summary>
public sealed record GuestMember(string Name, string Mac, string Link);

/// <summary>One bond as the guest agent reports it: the active member, the members' links and the addresses.</summary>
public sealed record GuestNetwork(string Name, string? Active, IReadOnlyList<GuestMember> Members, IReadOnlyList<string> Addresses, int? Mtu);

/// <summary>The agent's <c>network-ready</c> report (other events are read for <c>event</c> and <c>message</c> only).</summary>
public sealed record GuestEvent(string Event, long UptimeMs, string? Message, IReadOnlyList<GuestNetwork>? Networks);

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
    /// <summary>Where the last report is kept.</summary>
    public static string ReportFile(VmPaths paths) => Path.Join(paths.VmDir, "guest.json");

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
                        await File.WriteAllTextAsync(ReportFile(paths), JsonSerializer.Serialize(status, GuestJson.Default.GuestStatus), deadline.Token);
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

    /// <summary>The last saved report, or null when none was received (or the file is unreadable).</summary>
    public static GuestStatus? ReadSaved(VmPaths paths)
    {
        try
        {
            return JsonSerializer.Deserialize(File.ReadAllText(ReportFile(paths)), GuestJson.Default.GuestStatus);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or JsonException)
        {
            return null;
        }
    }
}
