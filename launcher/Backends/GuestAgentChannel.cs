using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using VmNet.Contract;
using VmNet.Io;
using VmNet.State;

namespace VmNet.Backends;

/// <summary>The last guest report VmNet received (every bond, as the agent's report lines in VmNet.Contract carry
/// them, checked and made safe by <see cref="GuestReports"/>), kept in the VM directory for <c>vmnet status</c>;
/// <see cref="Refused"/> counts the lines of the last look that were refused (not a report, invalid, too long).</summary>
public sealed record GuestStatus(DateTimeOffset ReceivedAt, IReadOnlyList<NetworkState> Networks, int Refused = 0);

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase, WriteIndented = false)]
[JsonSerializable(typeof(GuestStatus))]
internal sealed partial class GuestJson : JsonSerializerContext;

/// <summary>No <c>network-ready</c> within the wait; the message names the last event the agent sent, or says it was
/// not heard at all (the guest did not get as far as starting it).</summary>
public sealed class GuestAgentTimeoutException(TimeSpan timeout, AgentEvent? last, string serialLog)
    : VmNetException(FormattableString.Invariant($"the guest agent did not report its network ready within {timeout.TotalSeconds:0.#} s") +
        (last is null ? " (it was not heard at all)" : $" (last heard: {GuestAgentChannel.Describe(last)})") + $"; see the serial log {serialLog}", ExitCodes.Failure);

/// <summary>
/// The host end of the guest agent's report port: a virtio-serial channel whose unix socket QEMU listens on
/// (<see cref="VmPaths.AgentSocket"/>). The agent sends one JSON object per line (an <see cref="AgentEvent"/>);
/// <c>network-ready</c> comes once the bonds are up. A line that is no event VmNet knows, or that
/// <see cref="GuestReports"/> refuses, is skipped; lines are read with <see cref="BoundedLines"/> (64 KiB a line,
/// 16 MiB a look).
/// </summary>
public static class GuestAgentChannel
{
    /// <summary>What the host writes to ask the agent for a <c>state</c> report of every bond as it is now.</summary>
    public static readonly string StateQuery = HostRequest.State.ToLine() + "\n";

    /// <summary>What <see cref="WaitForReadyAsync"/> reads in all, over every connection of one wait.</summary>
    public const long MaxWaitTotal = 64L * 1024 * 1024;

    /// <summary>
    /// Connects to the agent socket (retrying while QEMU is not listening yet) and waits for <c>network-ready</c>;
    /// saves it for <see cref="ReadSaved"/>. Each event accepted on the way (checked and made safe) goes to
    /// <paramref name="heard"/>, <c>network-ready</c> too. An <c>error</c> report throws, naming the serial log; the
    /// timeout throws <see cref="GuestAgentTimeoutException"/>, which tells whether the agent was heard at all.
    /// </summary>
    public static async Task<GuestStatus> WaitForReadyAsync(VmPaths paths, TimeSpan timeout, CancellationToken cancel, Action<AgentEvent>? heard = null)
    {
        AgentEvent? last = null;
        long used = 0;
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
                using var stream = new NetworkStream(socket, ownsSocket: false);
                // One budget for the whole wait, across reconnections: a guest that floods its port is cut off, not
                // read until the timeout.
                var reader = new BoundedLines(stream, maxTotal: Math.Max(1, MaxWaitTotal - used));
                while (await reader.ReadLineAsync(deadline.Token) is { } line)
                {
                    var report = GuestReports.Accept(line); // null: not a report line, or refused
                    if (report is null) continue;
                    last = report;
                    if (report is ErrorEvent error)
                        throw new VmNetException($"the guest agent reported an error: {error.Message}; see the serial log {paths.SerialLog}", ExitCodes.Failure);
                    heard?.Invoke(report);
                    if (report is NetworkReadyEvent ready)
                    {
                        var status = new GuestStatus(DateTimeOffset.UtcNow, ready.Networks);
                        AtomicFile.Write(paths.GuestReport, JsonSerializer.Serialize(status, GuestJson.Default.GuestStatus), durable: false, mode: AtomicFile.Private);
                        return status;
                    }
                }
                used += reader.Read;
                if (used >= MaxWaitTotal)
                    throw new VmNetException($"the guest sent {MaxWaitTotal >> 20} MiB on its report port without a network-ready report; " +
                        $"vmnet reads no more of it (a guest that floods the port is not trusted); see the serial log {paths.SerialLog}", ExitCodes.Failure);
                await Task.Delay(200, deadline.Token); // QEMU closed the connection (guest restarting?): connect again
            }
        }
        catch (OperationCanceledException) when (!cancel.IsCancellationRequested)
        {
            throw new GuestAgentTimeoutException(timeout, last, paths.SerialLog);
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
        var (read, refused) = (0, 0);
        try
        {
            using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            await socket.ConnectAsync(new UnixDomainSocketEndPoint(paths.AgentSocket), deadline.Token);
            using var stream = new NetworkStream(socket, ownsSocket: false);
            // The other end may have closed already (the guest going down, or a peer that only flushes its queue):
            // then there is no answer to ask for, but what it queued is still there to read.
            try { await stream.WriteAsync(Encoding.UTF8.GetBytes(StateQuery), deadline.Token); }
            catch (IOException) { }
            var reader = new BoundedLines(stream);
            try
            {
                while (true)
                {
                    if (await reader.ReadLineAsync(deadline.Token) is not { } line) break;
                    if (GuestReports.Accept(line) is not { } e) { refused++; continue; }
                    read++;
                    status = Fold(status, e);
                    if (e is StateEvent && status is not null) break; // the whole truth: nothing more to wait for
                }
            }
            finally { refused += reader.Skipped; }
        }
        catch (Exception e) when (e is SocketException or IOException or OperationCanceledException && !cancel.IsCancellationRequested) { }
        if (read > 0 && status is not null)
        {
            status = status with { ReceivedAt = DateTimeOffset.UtcNow, Refused = refused };
            try { AtomicFile.Write(paths.GuestReport, JsonSerializer.Serialize(status, GuestJson.Default.GuestStatus), durable: false, mode: AtomicFile.Private); }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
        }
        return refused > 0 && status is not null ? status with { Refused = refused } : status;
    }

    /// <summary>An event in words, for progress lines and messages (its strings were made safe by <see cref="GuestReports"/>).</summary>
    public static string Describe(AgentEvent e) => e switch
    {
        StartedEvent s => $"agent started (vmnet-agent {s.Version}, {s.Networks} network{(s.Networks == 1 ? "" : "s")})",
        LinkChangedEvent l => $"{l.Network}: {l.Member} link {l.Link}",
        ActiveChangedEvent { Active: { } active } a => $"{a.Network}: active member {active}",
        ActiveChangedEvent a => $"{a.Network}: no active member",
        AddressesChangedEvent { Addresses.Count: 0 } x => $"{x.Network}: no address",
        AddressesChangedEvent x => $"{x.Network}: {string.Join(", ", x.Addresses)}",
        NetworkReadyEvent r => $"network ready ({r.Networks.Count} bond{(r.Networks.Count == 1 ? "" : "s")}, {r.Changes} change{(r.Changes == 1 ? "" : "s")})",
        StateEvent => "state",
        ErrorEvent err => $"error: {err.Message}",
        _ => e.GetType().Name,
    };

    /// <summary>One event applied to a report: network-ready and state replace it; the others change one network.</summary>
    public static GuestStatus? Fold(GuestStatus? status, AgentEvent e)
    {
        switch (e)
        {
            case NetworkReadyEvent ready: return new GuestStatus(DateTimeOffset.UtcNow, ready.Networks);
            case StateEvent state: return new GuestStatus(DateTimeOffset.UtcNow, state.Networks);
        }
        if (status is null) return status;
        return e switch
        {
            ActiveChangedEvent a => Change(status, a.Network, n => n with { Active = a.Active }),
            LinkChangedEvent l => Change(status, l.Network,
                n => n with { Members = n.Members.Select(m => m.Name == l.Member ? m with { Link = l.Link } : m).ToList() }),
            AddressesChangedEvent x => Change(status, x.Network, n => n with { Addresses = x.Addresses }),
            _ => status,
        };
    }

    private static GuestStatus Change(GuestStatus status, string network, Func<NetworkState, NetworkState> change) =>
        status with { Networks = status.Networks.Select(n => n.Name == network ? change(n) : n).ToList() };

    /// <summary>The last saved report, or null when none was received (or the file is unreadable).</summary>
    public static GuestStatus? ReadSaved(VmPaths paths)
    {
        try
        {
            // The file holds what a guest said: checked again as it is read back (a hand-edited or older file too), and
            // only when it is vmnet's own regular file (a planted link to another file reads as no report).
            if (SafePath.Problem(paths.GuestReport, "file") is not null) return null;
            var saved = JsonSerializer.Deserialize(File.ReadAllText(paths.GuestReport), GuestJson.Default.GuestStatus);
            return saved is null || GuestReports.Networks(saved.Networks) is not { } networks ? null : saved with { Networks = networks };
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or JsonException or NotSupportedException)
        {
            return null;
        }
    }
}
