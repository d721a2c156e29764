using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace VmNet.Backends;

/// <summary>A QMP command as sent on the wire.</summary>
public sealed record QmpCommand(
    [property: JsonPropertyName("execute")] string Execute,
    [property: JsonPropertyName("arguments"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] Dictionary<string, string>? Arguments = null);

/// <summary>The result of <c>query-status</c>.</summary>
public sealed record QmpStatus(
    [property: JsonPropertyName("status")] string Status,
    [property: JsonPropertyName("running")] bool Running);

/// <summary>One entry of <c>query-block</c> (the fields VmNet reads).</summary>
public sealed record QmpBlock(
    [property: JsonPropertyName("device")] string Device,
    [property: JsonPropertyName("qdev")] string? Qdev,
    [property: JsonPropertyName("inserted")] QmpInserted? Inserted);

/// <summary>The medium of a block device.</summary>
public sealed record QmpInserted(
    [property: JsonPropertyName("file")] string File,
    [property: JsonPropertyName("ro")] bool ReadOnly,
    [property: JsonPropertyName("drv")] string Driver);

[JsonSerializable(typeof(QmpCommand))]
[JsonSerializable(typeof(QmpStatus))]
[JsonSerializable(typeof(List<QmpBlock>))]
internal sealed partial class QmpJson : JsonSerializerContext;

/// <summary>A QMP command failed; <see cref="Exception.Message"/> carries QEMU's class and description.</summary>
public sealed class QmpException(string message) : VmNetException(message, ExitCodes.Failure);

/// <summary>
/// A small QMP client over QEMU's unix socket: one JSON object per line. Connecting reads the greeting and negotiates
/// capabilities; events that arrive between commands are skipped. Not thread-safe: one command at a time.
/// </summary>
public sealed class QmpClient : IAsyncDisposable
{
    /// <summary>
    /// How long VmNet waits for any one message from QEMU (the greeting, an answer): QEMU answers in milliseconds,
    /// and a nested TCG host in well under a second; a socket that accepts and never speaks (a hung QEMU, or something
    /// else listening there) must not hang `status`, `ls` or `rm --timeout`.
    /// </summary>
    public static readonly TimeSpan ReplyTimeout = TimeSpan.FromSeconds(20);

    private readonly Socket _socket;
    private readonly NetworkStream _stream;
    private readonly Io.BoundedLines _reader;
    private readonly string _path;
    private readonly TimeSpan _replyTimeout;

    private QmpClient(Socket socket, string path, TimeSpan replyTimeout)
    {
        _socket = socket;
        _path = path;
        _replyTimeout = replyTimeout;
        _stream = new NetworkStream(socket, ownsSocket: true);
        // QEMU's answers are small (query-block of many disks is a few KiB); no message longer than 1 MiB is taken.
        _reader = new Io.BoundedLines(_stream, maxLine: 1 << 20, maxTotal: long.MaxValue);
    }

    /// <summary>Connects to <paramref name="socketPath"/>, reads the greeting and sends <c>qmp_capabilities</c>.</summary>
    public static async Task<QmpClient> ConnectAsync(string socketPath, CancellationToken cancel, TimeSpan? replyTimeout = null)
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            await socket.ConnectAsync(new UnixDomainSocketEndPoint(socketPath), cancel);
        }
        catch (SocketException e)
        {
            socket.Dispose();
            throw new VmNetException($"cannot reach QEMU's QMP socket {socketPath}: {e.Message}; is the VM running? (`vmnet status`)", ExitCodes.Failure);
        }
        var client = new QmpClient(socket, socketPath, replyTimeout ?? ReplyTimeout);
        try
        {
            using var greeting = await client.ReadMessageAsync(cancel);
            if (!greeting.RootElement.TryGetProperty("QMP", out _))
                throw new QmpException($"{socketPath} is not a QMP socket: it greeted with {greeting.RootElement.GetRawText()}");
            await client.ExecuteAsync("qmp_capabilities", cancel);
            return client;
        }
        catch
        {
            await client.DisposeAsync();
            throw;
        }
    }

    /// <summary>Runs <paramref name="command"/> and returns its <c>return</c> value (a copy); QEMU's <c>error</c> throws <see cref="QmpException"/>.</summary>
    public async Task<JsonElement> ExecuteAsync(string command, CancellationToken cancel, Dictionary<string, string>? arguments = null)
    {
        var line = JsonSerializer.Serialize(new QmpCommand(command, arguments), QmpJson.Default.QmpCommand) + "\n";
        try
        {
            await _stream.WriteAsync(Encoding.UTF8.GetBytes(line), cancel);
        }
        catch (IOException e)
        {
            throw new QmpException($"QEMU closed the QMP connection {_path}: {e.Message}");
        }
        while (true)
        {
            using var message = await ReadMessageAsync(cancel);
            var root = message.RootElement;
            if (root.TryGetProperty("return", out var value))
                return value.Clone();
            if (root.TryGetProperty("error", out var error))
            {
                var cls = error.TryGetProperty("class", out var c) ? c.GetString() : "Error";
                var desc = error.TryGetProperty("desc", out var d) ? d.GetString() : root.GetRawText();
                throw new QmpException($"QEMU refused {command}: {cls}: {desc}");
            }
            // an asynchronous event ("event": ...): not the answer; keep reading
        }
    }

    /// <summary>The VM's run state (<c>query-status</c>), e.g. "running".</summary>
    public async Task<QmpStatus> QueryStatusAsync(CancellationToken cancel) =>
        (await ExecuteAsync("query-status", cancel)).Deserialize(QmpJson.Default.QmpStatus)
        ?? throw new QmpException("QEMU answered query-status with null");

    /// <summary>The VM's block devices and their media (<c>query-block</c>).</summary>
    public async Task<IReadOnlyList<QmpBlock>> QueryBlockAsync(CancellationToken cancel) =>
        (await ExecuteAsync("query-block", cancel)).Deserialize(QmpJson.Default.ListQmpBlock) ?? [];

    /// <summary>Presses the ACPI power button (<c>system_powerdown</c>); returns before the guest reacts.</summary>
    public Task SystemPowerdownAsync(CancellationToken cancel) => ExecuteAsync("system_powerdown", cancel);

    /// <summary>Ends QEMU at once (<c>quit</c>). The connection closes with it.</summary>
    public async Task QuitAsync(CancellationToken cancel)
    {
        try
        {
            await ExecuteAsync("quit", cancel);
        }
        catch (Exception e) when (e is IOException || (e is QmpException && e.Message.Contains("closed", StringComparison.Ordinal))) { }
    }

    private async Task<JsonDocument> ReadMessageAsync(CancellationToken cancel)
    {
        string? line;
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancel);
        deadline.CancelAfter(_replyTimeout);
        try
        {
            var skipped = _reader.Skipped;
            line = await _reader.ReadLineAsync(deadline.Token);
            if (_reader.Skipped != skipped) throw new QmpException($"{_path} sent a message longer than 1 MiB: not QEMU's QMP");
        }
        catch (IOException e) // the peer reset the connection: QEMU ended mid-conversation
        {
            throw new QmpException($"QEMU closed the QMP connection {_path}: {e.Message}");
        }
        catch (OperationCanceledException) when (!cancel.IsCancellationRequested)
        {
            throw new QmpException($"QEMU did not answer on its QMP socket {_path} within {_replyTimeout.TotalSeconds:0.#} s; is it hung? (`vmnet status`, or stop it with `vmnet down`)");
        }
        if (line is null) throw new QmpException($"QEMU closed the QMP connection {_path}");
        try
        {
            return JsonDocument.Parse(line);
        }
        catch (JsonException)
        {
            throw new QmpException($"{_path} sent a line that is not JSON: not QEMU's QMP");
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stream.DisposeAsync();
        _socket.Dispose();
    }
}
