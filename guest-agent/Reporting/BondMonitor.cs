using VmNet.Contract;
using VmNet.GuestAgent.Host;

namespace VmNet.GuestAgent.Reporting;

/// <summary>Reads each bond's state from sysfs and reports what changed. <paramref name="leased"/> gives a bond's DHCP
/// address, if it has one.</summary>
public sealed class BondMonitor(IHostFiles host, AgentConfig config, Reporter reporter, Func<string, string?>? leased = null)
{
    private readonly Dictionary<string, string?> _active = new();
    private readonly Dictionary<(string, string), string> _links = new();
    private readonly Dictionary<string, string> _addresses = new();

    public long UptimeMs()
    {
        var text = host.Read("proc/uptime");
        var first = text?.Split(' ')[0];
        return double.TryParse(first, System.Globalization.CultureInfo.InvariantCulture, out var s) ? (long)(s * 1000) : 0;
    }

    public NetworkState Read(NetworkConfig network)
    {
        var bond = network.Name!;
        var active = host.Read($"sys/class/net/{bond}/bonding/active_slave");
        var members = network.Members.Select(m => new MemberState(m.Name!, m.Mac!.ToLowerInvariant(), Link(m.Name!))).ToList();
        var mtu = int.TryParse(host.Read($"sys/class/net/{bond}/mtu"), out var value) ? value : (int?)null;
        var addresses = leased?.Invoke(bond) is { } lease ? network.Addresses.Prepend(lease).ToList() : network.Addresses;
        return new NetworkState(bond, string.IsNullOrEmpty(active) ? null : active, members, addresses, mtu);
    }

    /// <summary>"up" when the member has carrier, else "down" (a link that is administratively down has no carrier to read).</summary>
    public string Link(string member) => host.Read($"sys/class/net/{member}/carrier") == "1" ? "up" : "down";

    /// <summary>Waits until every bond has an active member (false after <paramref name="timeout"/>), then up to
    /// <paramref name="membersGrace"/> more for every member's carrier, so the first report shows settled links.
    /// Every 100 ms it reports what changed (<see cref="Poll"/>): the host shows the bring-up as it happens.</summary>
    public bool WaitForActive(TimeSpan timeout, TimeSpan membersGrace, CancellationToken cancel)
    {
        var deadline = DateTime.UtcNow + timeout;
        var poll = DateTime.MinValue;
        void Progress()
        {
            if (DateTime.UtcNow < poll) return;
            Poll();
            poll = DateTime.UtcNow + TimeSpan.FromMilliseconds(100);
        }
        while (!config.Networks.All(n => Read(n).Active is not null))
        {
            Progress();
            if (DateTime.UtcNow > deadline || cancel.IsCancellationRequested) return false;
            Thread.Sleep(20);
        }
        deadline = DateTime.UtcNow + membersGrace;
        while (DateTime.UtcNow < deadline && !cancel.IsCancellationRequested
               && !config.Networks.All(n => Read(n).Members.All(m => m.Link == "up")))
        {
            Progress();
            Thread.Sleep(20);
        }
        Poll();
        return true;
    }

    /// <summary>The first report: the agent runs, with its version and how many bonds it builds.</summary>
    public void ReportStarted(string version) => reporter.Send(new StartedEvent(UptimeMs(), version, config.Networks.Count));

    public void ReportReady(int changes)
    {
        var states = config.Networks.Select(Read).ToList();
        foreach (var s in states)
        {
            _active[s.Name] = s.Active;
            _addresses[s.Name] = string.Join(' ', s.Addresses);
            foreach (var m in s.Members) _links[(s.Name, m.Name)] = m.Link;
        }
        reporter.Send(new NetworkReadyEvent(UptimeMs(), changes, states));
    }

    /// <summary>One look at every bond; reports member link changes first, then active-member changes, then address
    /// changes (a DHCP lease got, changed or lost).</summary>
    public void Poll()
    {
        foreach (var network in config.Networks)
        {
            var state = Read(network);
            foreach (var m in state.Members)
            {
                if (_links.TryGetValue((state.Name, m.Name), out var before) && before == m.Link) continue;
                _links[(state.Name, m.Name)] = m.Link;
                reporter.Send(new LinkChangedEvent(UptimeMs(), state.Name, m.Name, m.Link));
            }
            if (!_active.TryGetValue(state.Name, out var previous) || previous != state.Active)
            {
                _active[state.Name] = state.Active;
                reporter.Send(new ActiveChangedEvent(UptimeMs(), state.Name, state.Active, previous));
            }
            var addresses = string.Join(' ', state.Addresses);
            if (_addresses.TryGetValue(state.Name, out var reported) && reported == addresses) continue;
            _addresses[state.Name] = addresses;
            reporter.Send(new AddressesChangedEvent(UptimeMs(), state.Name, state.Addresses));
        }
        reporter.Flush();
    }

    /// <summary>
    /// Answers the host's requests: <c>{"query":"state"}</c> gets a <c>state</c> report of every bond as it is now,
    /// after the changes <see cref="Poll"/> just reported, so a host that missed events still sees the truth.
    /// </summary>
    public void Answer(string request)
    {
        if (HostRequest.Parse(request) != HostRequest.State) return;
        reporter.Send(new StateEvent(UptimeMs(), config.Networks.Select(Read).ToList()), logged: false);
    }

    public void Run(TimeSpan interval, CancellationToken cancel)
    {
        while (!cancel.IsCancellationRequested)
        {
            Poll();
            foreach (var request in reporter.ReadRequests()) Answer(request);
            cancel.WaitHandle.WaitOne(interval);
        }
    }
}
