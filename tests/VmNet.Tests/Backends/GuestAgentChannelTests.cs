using System.Net.Sockets;
using System.Text;
using VmNet.Backends;
using VmNet.Cli;

namespace VmNet.Tests.Backends;

// The agent's report port is a unix socket QEMU listens on; here a fake listener plays QEMU and the agent.
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed class GuestAgentChannelTests : IDisposable
{
    private readonly TestVm _vm = new(name: "agent1");

    public void Dispose() => _vm.Dispose();

    private static CancellationToken Cancel => TestContext.Current.CancellationToken;

    private const string Ready = """{"event":"network-ready","uptimeMs":8123,"changes":4,"networks":[{"name":"storage","active":"storage0","members":[{"name":"storage0","mac":"02:00:00:00:40:11","link":"up"},{"name":"storage1","mac":"02:00:00:00:40:12","link":"up"}],"addresses":["192.168.40.11/24"],"mtu":1500}]}""";

    /// <summary>
    /// Listens on the VM's agent socket and sends <paramref name="queued"/> to the first client. With
    /// <paramref name="answer"/>, it then reads the client's first line, answers it and stays connected until the
    /// client closes; it returns the line read ("" without an answer).
    /// </summary>
    private Task<string> FakeAgent(string[] queued, Func<string, string>? answer = null)
    {
        Directory.CreateDirectory(_vm.Plan.Paths.VmDir);
        File.Delete(_vm.Plan.Paths.AgentSocket);
        var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        listener.Bind(new UnixDomainSocketEndPoint(_vm.Plan.Paths.AgentSocket));
        listener.Listen();
        return Task.Run(async () =>
        {
            using (listener)
            using (var client = await listener.AcceptAsync(Cancel))
            using (var stream = new NetworkStream(client))
            using (var reader = new StreamReader(stream))
            {
                await stream.WriteAsync(Encoding.UTF8.GetBytes(string.Concat(queued.Select(l => l + "\n"))), Cancel);
                if (answer is null) return "";
                var request = await reader.ReadLineAsync(Cancel) ?? "";
                await stream.WriteAsync(Encoding.UTF8.GetBytes(answer(request) + "\n"), Cancel);
                await reader.ReadToEndAsync(Cancel); // stays connected until the host closes
                return request;
            }
        }, Cancel);
    }

    private Task FakeAgent(params string[] lines) => FakeAgent(lines, null);

    /// <summary>The VM defined and started on libvirt's test driver, and the agent's network-ready report received.</summary>
    private async Task<LibvirtBackend> StartedWithNetworkReady()
    {
        await _vm.CreateBaseImage();
        var backend = new LibvirtBackend("test://" + _vm.Dir.Write("node.xml", "<node/>"), _vm.State);
        try
        {
            await _vm.StartAsync(backend);
            var ready = FakeAgent(Ready);
            await _vm.WaitForAgentAsync(backend, null, TimeSpan.FromSeconds(10));
            await ready;
            return backend;
        }
        catch
        {
            backend.Dispose();
            throw;
        }
    }

    [Fact]
    public async Task Status_asks_the_agent_for_its_state_which_heals_an_event_lost_between_two_looks()
    {
        using var backend = await StartedWithNetworkReady();
        // The link-changed of storage0 went to a reader that closed before reading it: only active-changed is queued.
        var agent = FakeAgent(
            ["""{"event":"active-changed","uptimeMs":20100,"network":"storage","active":"storage1","previous":"storage0"}"""],
            _ => Ready.Replace("network-ready", "state").Replace("\"changes\":4,", "")
                .Replace("\"active\":\"storage0\"", "\"active\":\"storage1\"").Replace("\"link\":\"up\"},{", "\"link\":\"down\"},{"));

        var status = await backend.StatusAsync("agent1", Cancel);

        Assert.Equal(GuestAgentChannel.StateQuery.TrimEnd('\n'), await agent);
        var text = new StringWriter();
        LaunchCommands.PrintStatus(text, status!);
        Assert.Contains("  storage: active storage1; storage0 down, storage1 up; 192.168.40.11/24\n", text.ToString());
        Assert.Equal("down", GuestAgentChannel.ReadSaved(_vm.Plan.Paths)?.Networks.Single().Members[0].Link);
    }

    [Fact]
    public async Task The_state_ends_the_look_without_waiting_for_the_agent_to_go_quiet()
    {
        var agent = FakeAgent([], _ => Ready.Replace("network-ready", "state"));

        // The agent stays connected: only the state ends the read, long before the 60 s deadline.
        var look = GuestAgentChannel.RefreshAsync(_vm.Plan.Paths, Cancel, max: TimeSpan.FromSeconds(60));
        var first = await Task.WhenAny(look, Task.Delay(TimeSpan.FromSeconds(30), Cancel));

        Assert.Same(look, first);
        Assert.Equal("storage0", (await look)?.Networks.Single().Active);
        await agent; // the host closed its end
    }

    [Fact]
    public async Task Up_warns_when_a_bond_has_no_active_member_in_the_agents_report()
    {
        Directory.CreateDirectory(_vm.Plan.Paths.VmDir);
        var output = new StringWriter();
        var agent = FakeAgent(Ready.Replace("\"active\":\"storage0\"", "\"active\":null").Replace("\"link\":\"up\"}]", "\"link\":\"down\"}]"));

        await _vm.WaitForAgentAsync(new QemuBackend(_vm.State), new UpProgress(output), TimeSpan.FromSeconds(10));
        await agent;

        Assert.Null(GuestAgentChannel.ReadSaved(_vm.Plan.Paths)?.Networks.Single().Active);
        Assert.Contains("      warning: storage has no active member yet (storage0 up, storage1 down); `vmnet status agent1` shows when one takes over\n", output.ToString());
    }

    /// <summary>`vmnet status` as printed after the agent queued <paramref name="queued"/> while no one listened (it
    /// does not answer the state query, so status folds the events).</summary>
    private async Task<string> StatusAfter(LibvirtBackend backend, params string[] queued)
    {
        var later = FakeAgent(queued);
        var status = await backend.StatusAsync("agent1", Cancel);
        await later;
        var text = new StringWriter();
        LaunchCommands.PrintStatus(text, status!);
        return text.ToString();
    }

    [Fact]
    public async Task Status_reads_the_events_the_agent_queued_since_and_shows_the_bond_as_it_is_now()
    {
        using var backend = await StartedWithNetworkReady();

        // storage0 lost its link, the bond moved to storage1.
        var text = await StatusAfter(backend,
            """{"event":"link-changed","uptimeMs":20000,"network":"storage","member":"storage0","link":"down"}""",
            """{"event":"active-changed","uptimeMs":20100,"network":"storage","active":"storage1","previous":"storage0"}""");

        Assert.Contains("  storage: active storage1; storage0 down, storage1 up; 192.168.40.11/24\n", text);
        Assert.Equal("storage1", GuestAgentChannel.ReadSaved(_vm.Plan.Paths)?.Networks.Single().Active); // kept for the next look
        var again = await backend.StatusAsync("agent1", Cancel); // no agent listening now: the saved report
        Assert.Equal("storage1", again?.Guest?.Networks.Single().Active);
    }

    [Fact]
    public async Task Status_shows_an_address_the_guests_dhcp_client_got_lost_or_changed_since()
    {
        using var backend = await StartedWithNetworkReady();

        var text = await StatusAfter(backend,
            """{"event":"addresses-changed","uptimeMs":20000,"network":"storage","addresses":[]}""",
            """{"event":"addresses-changed","uptimeMs":20100,"network":"storage","addresses":["192.168.40.57/24"]}""");

        Assert.Contains("  storage: active storage0; storage0 up, storage1 up; 192.168.40.57/24\n", text);
    }

    [Fact]
    public async Task Up_waits_for_network_ready_and_status_then_shows_the_bond_active_member_and_address()
    {
        await _vm.CreateBaseImage();
        using var backend = new LibvirtBackend("test://" + _vm.Dir.Write("node.xml", "<node/>"), _vm.State);
        await _vm.StartAsync(backend);
        var agent = FakeAgent("""{"event":"link-changed","uptimeMs":10,"network":"storage","member":"storage1","link":"up"}""", "not json", Ready);

        await _vm.WaitForAgentAsync(backend, null, TimeSpan.FromSeconds(10));
        await agent;

        var guest = GuestAgentChannel.ReadSaved(_vm.Plan.Paths)!;
        var network = Assert.Single(guest.Networks);
        Assert.Equal(("storage", "storage0", "192.168.40.11/24"), (network.Name, network.Active, Assert.Single(network.Addresses)));
        var status = await backend.StatusAsync("agent1", Cancel);
        Assert.Equal(guest.Networks.Single().Members, status?.Guest?.Networks.Single().Members);
        var text = new StringWriter();
        LaunchCommands.PrintStatus(text, status!);
        Assert.Contains("  storage: active storage0; storage0 up, storage1 up; 192.168.40.11/24\n", text.ToString());

        await backend.StopAsync("agent1", TimeSpan.FromSeconds(1), Cancel);
        Assert.Null((await backend.StatusAsync("agent1", Cancel))?.Guest); // a stopped VM has no current report
    }

    [Fact]
    public async Task An_error_report_from_the_agent_fails_the_wait_with_its_message()
    {
        var agent = FakeAgent("""{"event":"error","uptimeMs":5000,"message":"no NIC with MAC 02:00:00:00:40:12"}""");

        var error = await Assert.ThrowsAsync<VmNetException>(() => GuestAgentChannel.WaitForReadyAsync(_vm.Plan.Paths, TimeSpan.FromSeconds(10), Cancel));
        await agent;

        Assert.Equal($"the guest agent reported an error: no NIC with MAC 02:00:00:00:40:12; see the serial log {_vm.Plan.Paths.SerialLog}", error.Message);
    }

    [Fact]
    public async Task No_report_within_the_timeout_names_the_serial_log()
    {
        var error = await Assert.ThrowsAsync<GuestAgentTimeoutException>(() => GuestAgentChannel.WaitForReadyAsync(_vm.Plan.Paths, TimeSpan.FromMilliseconds(500), Cancel));

        Assert.Equal($"the guest agent did not report its network ready within 0.5 s (it was not heard at all); see the serial log {_vm.Plan.Paths.SerialLog}", error.Message);
    }

    // ---- the guest is untrusted (issue 13: 8 to 10) ----

    /// <summary>
    /// Item 10 on up's wait: a guest that streams junk (here valid-looking but unknown lines) on its port, reconnecting
    /// whenever the host does, is cut off once the whole wait read its budget, with a message, long before the
    /// timeout; before the fix each reconnection got a fresh budget.
    /// </summary>
    [Fact]
    public async Task A_guest_that_floods_its_port_is_cut_off_at_the_waits_budget_not_read_until_the_timeout()
    {
        Directory.CreateDirectory(_vm.Plan.Paths.VmDir);
        using var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        listener.Bind(new UnixDomainSocketEndPoint(_vm.Plan.Paths.AgentSocket));
        listener.Listen();
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(Cancel);
        long sent = 0;
        var chunk = Encoding.UTF8.GetBytes(string.Concat(Enumerable.Repeat("{\"event\":\"noise\",\"uptimeMs\":1}\n", 30_000)));
        var flood = Task.Run(async () =>
        {
            try
            {
                while (true)
                {
                    using var client = await listener.AcceptAsync(stop.Token);
                    using var stream = new NetworkStream(client);
                    try { while (true) { await stream.WriteAsync(chunk, stop.Token); Interlocked.Add(ref sent, chunk.Length); } }
                    catch (IOException) { } // the host closed this connection: accept the next
                }
            }
            catch (OperationCanceledException) { }
        }, Cancel);
        var clock = System.Diagnostics.Stopwatch.StartNew();

        var error = await Assert.ThrowsAsync<VmNetException>(() => GuestAgentChannel.WaitForReadyAsync(_vm.Plan.Paths, TimeSpan.FromSeconds(60), Cancel));
        await stop.CancelAsync();
        await flood;

        Assert.Equal($"the guest sent 64 MiB on its report port without a network-ready report; vmnet reads no more of it (a guest that floods the port is not trusted); see the serial log {_vm.Plan.Paths.SerialLog}", error.Message);
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(45), $"the flood was read for {clock.Elapsed}");
        Assert.InRange(Interlocked.Read(ref sent), GuestAgentChannel.MaxWaitTotal - chunk.Length, GuestAgentChannel.MaxWaitTotal + 64L * chunk.Length);
    }

    [Fact]
    public async Task What_a_guest_says_reaches_the_terminal_escaped_whatever_it_holds()
    {
        // A title (OSC 0), a screen clear, a forged line (\r), the clipboard (OSC 52), a bidirectional override.
        var hostile = Ready.Replace("\"name\":\"storage\"", "\"name\":\"st\\u001b]0;pwned\\u0007\\u001b[2J\\rok\\u001b]52;c;ZXZpbA==\\u0007\\u202eevil\"");
        var agent = FakeAgent([], _ => hostile.Replace("network-ready", "state").Replace("\"changes\":4,", ""));
        var status = await GuestAgentChannel.RefreshAsync(_vm.Plan.Paths, Cancel, max: TimeSpan.FromSeconds(30));
        await agent;

        var text = new StringWriter();
        LaunchCommands.PrintStatus(text, new VmStatus("agent1", "qemu", "running", true, [], null, status));
        var shown = text.ToString();
        Assert.True(shown.Contains(@"  st\x1b]0;pwned\x07\x1b[2J\x0dok\x1b]52;c;ZXZpbA==\x07\u202eevil: active storage0", StringComparison.Ordinal), GuestReports.Safe(shown));
        Assert.DoesNotContain(text.ToString(), c => char.IsControl(c) && c != '\n');
        // Saved as shown: a later `status` without an agent prints the same.
        Assert.Equal(status!.Networks.Single().Name, GuestAgentChannel.ReadSaved(_vm.Plan.Paths)!.Networks.Single().Name);
    }

    public static TheoryData<string> Refused() =>
    [
        """{"event":"state","uptimeMs":1,"networks":[null]}""",
        """{"event":"state","uptimeMs":1,"networks":[{"name":"storage","active":null,"members":null,"addresses":[],"mtu":1500}]}""",
        """{"event":"state","uptimeMs":1,"networks":[{"name":"storage","active":null,"members":[null],"addresses":[],"mtu":1500}]}""",
        """{"event":"state","uptimeMs":1,"networks":[{"name":"storage","active":null,"members":[],"addresses":[null],"mtu":1500}]}""",
        """{"event":"state","uptimeMs":1,"networks":[{"name":null,"active":null,"members":[],"addresses":[],"mtu":1500}]}""",
        """{"event":"link-changed","uptimeMs":1,"network":"storage","member":null,"link":"down"}""",
        "{\"event\":\"state\",\"uptimeMs\":1,\"networks\":[{\"name\":\"" + new string('n', 300) + "\",\"active\":null,\"members\":[],\"addresses\":[],\"mtu\":1500}]}",
        "not json", "",
    ];

    [Theory, MemberData(nameof(Refused))]
    public async Task A_report_with_holes_or_beyond_bounds_is_refused_not_saved_and_status_goes_on(string line)
    {
        Assert.Null(GuestReports.Accept(line));
        var agent = FakeAgent([line], _ => Ready.Replace("network-ready", "state").Replace("\"changes\":4,", ""));
        var status = await GuestAgentChannel.RefreshAsync(_vm.Plan.Paths, Cancel, max: TimeSpan.FromSeconds(30));
        await agent;
        // The refused line is counted and shown, the good state after it taken.
        Assert.Equal(("storage0", 1), (status?.Networks.Single().Active, status?.Refused));
        var text = new StringWriter();
        LaunchCommands.PrintStatus(text, new VmStatus("agent1", "qemu", "running", true, [], null, status));
        Assert.Contains("  (1 line from the guest refused in this look: not a report VmNet takes, or too long)\n", text.ToString());
    }

    [Fact]
    public async Task A_saved_report_with_holes_reads_as_none()
    {
        Directory.CreateDirectory(_vm.Plan.Paths.VmDir);
        await File.WriteAllTextAsync(_vm.Plan.Paths.GuestReport, """{"receivedAt":"2026-12-02T00:00:00+00:00","networks":[null]}""", Cancel);
        Assert.Null(GuestAgentChannel.ReadSaved(_vm.Plan.Paths));
        await File.WriteAllTextAsync(_vm.Plan.Paths.GuestReport, """{"receivedAt":"2026-12-02T00:00:00+00:00","networks":[{"name":"s","active":null,"members":null,"addresses":[],"mtu":null}]}""", Cancel);
        Assert.Null(GuestAgentChannel.ReadSaved(_vm.Plan.Paths));
    }

    [Fact]
    public async Task A_line_longer_than_64_KiB_is_skipped_without_holding_it_and_the_next_one_is_read()
    {
        // 200 MB took `status` to 2 GB before; 8 MiB here shows the same without the wait: the reader holds at most
        // 64 KiB of a line, whatever its length.
        var huge = "{\"event\":\"state\",\"uptimeMs\":1,\"networks\":[],\"x\":\"" + new string('x', 8 << 20) + "\"}";
        var agent = FakeAgent([huge], _ => Ready.Replace("network-ready", "state").Replace("\"changes\":4,", ""));
        var status = await GuestAgentChannel.RefreshAsync(_vm.Plan.Paths, Cancel, max: TimeSpan.FromSeconds(30));
        await agent;
        Assert.Equal(("storage0", 1), (status?.Networks.Single().Active, status?.Refused));

        using var stream = new MemoryStream(Encoding.UTF8.GetBytes(new string('y', 1 << 20) + "\nshort\r\n" + new string('z', 10)));
        var lines = new VmNet.Io.BoundedLines(stream, maxLine: 1000);
        Assert.Equal("short", await lines.ReadLineAsync(Cancel));
        Assert.Equal(new string('z', 10), await lines.ReadLineAsync(Cancel));
        Assert.Null(await lines.ReadLineAsync(Cancel));
        Assert.Equal(1, lines.Skipped);
    }

    [Fact]
    public async Task A_reader_stops_at_its_budget()
    {
        using var stream = new MemoryStream(Encoding.UTF8.GetBytes(string.Concat(Enumerable.Repeat("line\n", 1000))));
        var lines = new VmNet.Io.BoundedLines(stream, maxLine: 100, maxTotal: 50);
        var read = 0;
        while (await lines.ReadLineAsync(Cancel) is not null) read++;
        Assert.Equal((10, true), (read, lines.Exhausted));
    }
}
