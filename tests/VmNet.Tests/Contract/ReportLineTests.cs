using System.Reflection;
using System.Text.Json;
using System.Text.Json.Serialization;
using VmNet.Backends;
using VmNet.Contract;
using VmNet.GuestAgent.Host;
using VmNet.GuestAgent.Reporting;
using VmNet.Tests.Support;

namespace VmNet.Tests.Contract;

/// <summary>
/// The report lines between the agent and the launcher, both ends compiled from VmNet.Contract: what the agent's
/// BondMonitor and Reporter write on the report port is what the launcher's GuestAgentChannel reads.
/// </summary>
public sealed class ReportLineTests : IDisposable
{
    private const string Port = "org.vmnet.agent.0";
    private readonly TempDir _root = new();
    private readonly Dictionary<string, string> _leases = new();

    public void Dispose() => _root.Dispose();

    /// <summary>One bond, storage, over storage0 (active) and storage1, both with carrier.</summary>
    private (BondMonitor Monitor, Reporter Reporter) Agent()
    {
        _root.Write("proc/uptime", "8.125 5.60\n");
        _root.Write("sys/class/net/storage/bonding/active_slave", "storage0\n");
        _root.Write("sys/class/net/storage/mtu", "9000\n");
        _root.Write("sys/class/net/storage0/carrier", "1\n");
        _root.Write("sys/class/net/storage1/carrier", "1\n");
        _root.Write($"dev/virtio-ports/{Port}", ""); // a plain file stands in for the port: it keeps every line written
        var config = new AgentConfig
        {
            Version = AgentConfig.CurrentVersion,
            ReportPort = Port,
            Networks =
            [
                new NetworkConfig
                {
                    Name = "storage",
                    Members = [new MemberConfig { Name = "storage0", Mac = "02:00:00:00:40:11" }, new MemberConfig { Name = "storage1", Mac = "02:00:00:00:40:12" }],
                    Addresses = ["192.168.40.11/24"],
                },
            ],
        };
        var host = new HostFiles(_root.Path);
        var reporter = new Reporter(host, config.ReportPort, TextWriter.Null);
        return (new BondMonitor(host, config, reporter, bond => _leases.GetValueOrDefault(bond)), reporter);
    }

    /// <summary>Every line the agent wrote on its report port.</summary>
    private string[] PortLines() => File.ReadAllLines(_root[$"dev/virtio-ports/{Port}"]);

    /// <summary>The agent writes every kind of event: started, network-ready, then a failover (link, active member, a DHCP
    /// lease), the answer to the host's state query, an error.</summary>
    private string[] EveryKind()
    {
        var (monitor, reporter) = Agent();
        using (reporter)
        {
            monitor.ReportStarted(VmNet.GuestAgent.Program.Version);
            monitor.ReportReady(changes: 4);
            _root.Write("sys/class/net/storage0/carrier", "0\n");
            _root.Write("sys/class/net/storage/bonding/active_slave", "storage1\n");
            _leases["storage"] = "192.168.40.57/24";
            monitor.Poll();
            monitor.Answer(GuestAgentChannel.StateQuery.TrimEnd('\n'));
            reporter.Send(new ErrorEvent(monitor.UptimeMs(), "network `public`: no NIC with MAC 02:00:00:00:50:12"));
        }
        return PortLines();
    }

    /// <summary>The lines are the agent's wire format as it was before the contract: <c>event</c> first, then
    /// <c>uptimeMs</c> and the kind's fields in their order, nulls written, STJ's default escaping (a backtick is \u0060).</summary>
    [Fact]
    public void The_agent_writes_each_event_as_one_line_event_first()
    {
        const string members = """[{"name":"storage0","mac":"02:00:00:00:40:11","link":"up"},{"name":"storage1","mac":"02:00:00:00:40:12","link":"up"}]""";
        Assert.Equal(
        [
            """{"event":"started","uptimeMs":8125,"version":"0.1.0","networks":1}""",
            $$"""{"event":"network-ready","uptimeMs":8125,"changes":4,"networks":[{"name":"storage","active":"storage0","members":{{members}},"addresses":["192.168.40.11/24"],"mtu":9000}]}""",
            """{"event":"link-changed","uptimeMs":8125,"network":"storage","member":"storage0","link":"down"}""",
            """{"event":"active-changed","uptimeMs":8125,"network":"storage","active":"storage1","previous":"storage0"}""",
            """{"event":"addresses-changed","uptimeMs":8125,"network":"storage","addresses":["192.168.40.57/24","192.168.40.11/24"]}""",
            $$"""{"event":"state","uptimeMs":8125,"networks":[{"name":"storage","active":"storage1","members":{{members.Replace("\"up\"},{", "\"down\"},{")}},"addresses":["192.168.40.57/24","192.168.40.11/24"],"mtu":9000}]}""",
            """{"event":"error","uptimeMs":8125,"message":"network \u0060public\u0060: no NIC with MAC 02:00:00:00:50:12"}""",
        ], EveryKind());
    }

    /// <summary>Agent -> JSON -> launcher for every kind the contract declares: each line reads back as the same
    /// event, and folded in order they leave the launcher's status where the agent's bond is.</summary>
    [Fact]
    public void Every_event_kind_the_agent_writes_reads_back_the_same_in_the_launcher()
    {
        var lines = EveryKind();
        var declared = typeof(AgentEvent).GetCustomAttributes<JsonDerivedTypeAttribute>().ToDictionary(a => (string)a.TypeDiscriminator!, a => a.DerivedType);

        var events = lines.Select(l => AgentEvent.Parse(l) ?? throw new InvalidOperationException($"the launcher cannot read `{l}`")).ToList();

        Assert.Equal(declared.Keys.Order(), lines.Select(l => JsonDocument.Parse(l).RootElement.GetProperty("event").GetString()!).Order());
        foreach (var (line, e) in lines.Zip(events))
        {
            Assert.Equal(declared[JsonDocument.Parse(line).RootElement.GetProperty("event").GetString()!], e.GetType());
            Assert.Equal(line, e.ToLine()); // nothing lost or added on the way
        }
        GuestStatus? status = null;
        var folded = events.Select(e => status = GuestAgentChannel.Fold(status, e)).ToList();
        Assert.Null(folded[0]); // started: no bond to show yet
        var ready = Assert.Single(folded[1]!.Networks);
        Assert.Equal(("storage0", "up"), (ready.Active, ready.Members[0].Link));
        var failedOver = Assert.Single(folded[4]!.Networks); // after the three events of the failover, before the state
        Assert.Equal(("storage1", "down", "up"), (failedOver.Active, failedOver.Members[0].Link, failedOver.Members[1].Link));
        Assert.Equal(["192.168.40.57/24", "192.168.40.11/24"], failedOver.Addresses);
        // The events folded give what the agent's answer to the state query says, which then replaces the status whole.
        Assert.Equal(((StateEvent)events[5]).ToLine(), new StateEvent(8125, folded[4]!.Networks).ToLine());
        Assert.Equal(9000, status!.Networks.Single().Mtu);
    }

    [Fact]
    public void The_host_asks_for_the_state_with_the_line_the_agent_answers()
    {
        Assert.Equal("{\"query\":\"state\"}\n", GuestAgentChannel.StateQuery);
        Assert.Equal(HostRequest.State, HostRequest.Parse(GuestAgentChannel.StateQuery));
        var (monitor, reporter) = Agent();
        using (reporter)
        {
            monitor.Answer("""{"query":"version"}""");
            monitor.Answer("not json");
            Assert.Empty(PortLines());
            monitor.Answer(" {\"query\":\"state\"} ");
        }
        Assert.StartsWith("{\"event\":\"state\",", Assert.Single(PortLines()));
    }

    [Fact]
    public void The_launcher_reads_an_event_whose_kind_is_not_first()
    {
        var e = AgentEvent.Parse("""{"uptimeMs":5,"network":"storage","active":null,"previous":"storage0","event":"active-changed"}""");

        Assert.Equal(new ActiveChangedEvent(5, "storage", null, "storage0"), e);
    }

    /// <summary>The launcher skips what is no event it knows, as it always has: the line is not parsed into a
    /// half-filled event.</summary>
    [Theory]
    [InlineData("not json")]
    [InlineData("")]
    [InlineData("null")]
    [InlineData("[]")]
    [InlineData("""{"query":"state"}""")]
    [InlineData("""{"uptimeMs":5,"message":"no kind"}""")]
    [InlineData("""{"event":"rebooted","uptimeMs":5}""")]
    [InlineData("""{"event":"network-ready","uptimeMs":5,"changes":0}""")]
    [InlineData("""{"event":"link-changed","uptimeMs":5,"network":"storage","member":null,"link":"down"}""")]
    [InlineData("""{"event":"active-changed","uptimeMs":"soon","network":"storage","active":null,"previous":null}""")]
    public void A_line_that_is_no_known_event_is_skipped(string line) => Assert.Null(AgentEvent.Parse(line));

    [Fact]
    public void A_field_the_launcher_does_not_know_is_ignored()
    {
        var e = AgentEvent.Parse("""{"event":"state","uptimeMs":5,"changes":4,"networks":[],"kernel":"6.1"}""");

        Assert.Empty(Assert.IsType<StateEvent>(e).Networks);
    }
}
