using System.Net;
using System.Text;
using CsCheck;
using VmNet.Backends;
using VmNet.Contract;
using VmNet.GuestAgent.Config;
using VmNet.GuestAgent.Dhcp;
using VmNet.Tests.Agent;

namespace VmNet.Tests.Fuzz;

/// <summary>
/// Issue 13's property on the guest's side of the border, both ways: what a hostile guest sends the launcher (report
/// lines, truncated, mangled, oversized) and what a hostile network or seed sends the agent (DHCP replies with bad
/// lengths and oversized options, a mangled config). Every case is taken or refused; none throws, and what is taken
/// is within bounds and safe to print.
/// </summary>
public sealed class GuestInputPropertyTests(ITestOutputHelper output)
{
    private static readonly string[] ValidLines =
    [
        new NetworkReadyEvent(1200, 3, [new NetworkState("storage", "storage0", [new MemberState("storage0", "02:00:00:00:40:11", "up"), new MemberState("storage1", "02:00:00:00:40:12", "up")], ["192.168.40.11/24", "fd00::11/64"], 9000)]).ToLine(),
        new StateEvent(5000, [new NetworkState("public", null, [new MemberState("public0", "02:00:00:00:41:11", "down")], [], null)]).ToLine(),
        new ActiveChangedEvent(7000, "storage", "storage1", "storage0").ToLine(),
        new LinkChangedEvent(7100, "storage", "storage0", "down").ToLine(),
        new AddressesChangedEvent(9000, "public", ["203.0.113.5/24"]).ToLine(),
        new ErrorEvent(100, "bond storage: no member came up").ToLine(),
        new StartedEvent(50, "0.1.0", 2).ToLine(),
    ];

    /// <summary>A valid line mangled the ways a hostile guest or a broken pipe would: cut, spliced, a value replaced, bytes flipped.</summary>
    private static readonly Gen<string> Lines = Gen.Int[0, ValidLines.Length - 1].SelectMany(i =>
    {
        var line = ValidLines[i];
        var values = Gen.OneOf(Gen.Const("null"), Gen.Const("[null]"), Gen.Const("{}"), Gen.Const("-1"), Gen.Const("1e999"), Gen.Const("[[[[[[[[]]]]]]]]"),
            Gen.Int[0, 100_000].Select(n => "\"" + new string('A', n) + "\""), HostileStrings.For("storage0").Select(s => System.Text.Json.JsonSerializer.Serialize(s)));
        return Gen.Frequency(
            (3, Gen.Int[0, line.Length].Select(n => line[..n])),
            (3, Gen.Select(Gen.Int[0, line.Length], values, (n, v) =>
            {
                // Replace the JSON value after a random colon.
                var colon = line.IndexOf(':', n);
                if (colon < 0) return line + v;
                var end = line.IndexOfAny([',', '}', ']'], colon + 1);
                return line[..(colon + 1)] + v + (end < 0 ? "" : line[end..]);
            })),
            (2, Gen.Select(Gen.Int[0, line.Length], HostileStrings.For("x"), (n, s) => line[..n] + s + line[n..])),
            (1, Gen.Byte.Array[0, 200].Select(b => Encoding.UTF8.GetString(b))),
            (1, Gen.Const(line)));
    });

    [Fact]
    public void Every_mangled_report_line_is_refused_or_taken_within_bounds_and_safe_to_print()
    {
        int taken = 0, refused = 0;
        var ready = GuestReports.Accept(ValidLines[0])!;
        Lines.Sample(line =>
        {
            var e = GuestReports.Accept(line);
            if (e is null) { Interlocked.Increment(ref refused); return; }
            Interlocked.Increment(ref taken);
            foreach (var text in Strings(e)) Assert.True(GuestReports.Safe(text) == text && text.Length <= GuestReports.MaxMessage + 3, $"unsafe or unbounded text taken from {HostileStrings.Show(line)}");
            _ = GuestAgentChannel.Fold(GuestAgentChannel.Fold(null, ready), e);
        }, iter: 20_000);
        output.WriteLine($"report lines: {taken + refused} cases, {taken} taken, {refused} refused, none threw");
        Assert.Equal(20_000, taken + refused);
        Assert.True(taken > 0 && refused > 0, "the generator never produced one kind of line");
    }

    private static IEnumerable<string> Strings(AgentEvent e) => e switch
    {
        NetworkReadyEvent r => r.Networks.SelectMany(Strings),
        StateEvent s => s.Networks.SelectMany(Strings),
        ActiveChangedEvent a => new[] { a.Network, a.Active, a.Previous }.OfType<string>(),
        LinkChangedEvent l => [l.Network, l.Member, l.Link],
        AddressesChangedEvent x => [x.Network, .. x.Addresses],
        ErrorEvent err => [err.Message],
        _ => [],
    };

    private static IEnumerable<string> Strings(NetworkState n) =>
        new[] { n.Name, n.Active }.OfType<string>().Concat(n.Addresses).Concat(n.Members.SelectMany(m => new[] { m.Name, m.Mac, m.Link }));

    /// <summary>A DHCP server whose every reply is mangled on the way (the UDP and IP checksums still right, so the client parses it).</summary>
    private sealed class MangledWire(FakeDhcpClock clock, Func<byte[], byte[]> mangle, CancellationTokenSource stopAfter) : IDhcpTransport
    {
        private readonly Queue<byte[]> _replies = new();
        private int _sent;

        public void Send(byte[] packet, byte[] destinationMac)
        {
            if (++_sent >= 6) stopAfter.Cancel();
            var m = DhcpMessage.Parse(Ipv4Udp.Unwrap(packet, 67, out _)!)!;
            foreach (var reply in DhcpClientTests.Willing(m))
                _replies.Enqueue(Ipv4Udp.Wrap(DhcpClientTests.Server, IPAddress.Broadcast, 67, 68, mangle(reply.Encode())));
        }

        public (byte[] Packet, byte[] SourceMac)? Receive(TimeSpan timeout, CancellationToken cancel)
        {
            if (_replies.TryDequeue(out var packet)) return (packet, DhcpClientTests.ServerMac);
            clock.Now += timeout;
            return null;
        }

        public void Dispose() { }
    }

    /// <summary>Bad lengths, truncations, oversized and repeated options, flipped bytes: applied to a valid reply.</summary>
    private static readonly Gen<Func<byte[], byte[]>> Mangles = Gen.Frequency<Func<byte[], byte[]>>(
        (2, Gen.Int[0, 400].Select<int, Func<byte[], byte[]>>(n => b => b[..Math.Min(n, b.Length)])),
        (2, Gen.Select(Gen.Int[240, 299], Gen.Byte).Select<(int, byte), Func<byte[], byte[]>>(t => b => { var c = (byte[])b.Clone(); if (t.Item1 < c.Length) c[t.Item1] = t.Item2; return c; })),
        (2, Gen.Select(Gen.Byte, Gen.Byte.Array[0, 255]).Select<(byte, byte[]), Func<byte[], byte[]>>(t => b =>
            [.. b[..240], t.Item1, (byte)t.Item2.Length, .. t.Item2, .. b[240..]])),                  // an extra option first
        (1, Gen.Byte.Array[0, 255].Select<byte[], Func<byte[], byte[]>>(v => b =>
            [.. b[..240], DhcpMessage.OptSubnetMask, (byte)v.Length, .. v, DhcpMessage.OptRouter, (byte)v.Length, .. v, DhcpMessage.OptLeaseTime, (byte)v.Length, .. v, .. b[240..]])),
        (1, Gen.Int[0, 20].Select<int, Func<byte[], byte[]>>(n => b => [.. b[..240], .. Enumerable.Repeat((byte)0xff, n), .. Enumerable.Repeat((byte)0x01, 300)])),
        (1, Gen.Byte.Array[0, 600].Select<byte[], Func<byte[], byte[]>>(junk => _ => junk)));

    [Fact]
    public void The_dhcp_client_takes_a_sane_lease_or_none_from_mangled_replies_and_never_throws()
    {
        int leased = 0, none = 0;
        Mangles.Sample(mangle =>
        {
            var clock = new FakeDhcpClock();
            using var stop = new CancellationTokenSource();
            using var wire = new MangledWire(clock, mangle, stop);
            var client = new DhcpClient(wire, clock, new DhcpIdentity([2, 0, 0, 0, 0x40, 0x11], "vm1"), _ => { }, new Random(7));
            var lease = client.Acquire(null, stop.Token);
            if (lease is null) { Interlocked.Increment(ref none); return; }
            Interlocked.Increment(ref leased);
            Assert.InRange(lease.PrefixLength, 0, 32);
            Assert.True(lease.Renewal <= lease.Rebinding && lease.Rebinding <= lease.Duration, $"lease times out of order: {lease}");
            Assert.All(lease.Routers, r => Assert.Equal(System.Net.Sockets.AddressFamily.InterNetwork, r.AddressFamily));
        }, iter: 3000);
        output.WriteLine($"DHCP: {leased + none} mangled servers, {leased} leases taken, {none} none, none threw");
        Assert.True(leased > 0 && none > 0, "the generator never produced one kind of reply");
    }

    [Fact]
    public void Mangled_wire_bytes_never_throw_in_the_parsers()
    {
        Gen.Byte.Array[0, 700].Sample(bytes =>
        {
            _ = Ipv4Udp.Unwrap(bytes, 68, out _);
            _ = DhcpMessage.Parse(bytes) is { } m ? (m.ServerId, m.SubnetMask, m.Routers, m.Dns, m.DomainName, m.ServerMessage) : default;
        }, iter: 20_000);
    }

    [Fact]
    public void A_mangled_agent_config_is_a_config_error_or_a_valid_config_never_a_crash()
    {
        var sample = File.ReadAllText(Support.Repo.File("guest-agent/agent.sample.json"));
        int valid = 0, refused = 0;
        Gen.Frequency(
            (3, Gen.Int[0, sample.Length].Select(n => sample[..n])),
            (3, Gen.Select(Gen.Int[0, sample.Length - 1], Gen.OneOf(Gen.Const("null"), Gen.Const("[null]"), Gen.Const("{}"), Gen.Const("-1"), Gen.Const("99999999999"),
                HostileStrings.For("storage0").Select(s => System.Text.Json.JsonSerializer.Serialize(s))), (n, v) =>
            {
                var colon = sample.IndexOf(':', n);
                if (colon < 0) return sample;
                var end = sample.IndexOfAny([',', '}', ']', '\n'], colon + 1);
                return sample[..(colon + 1)] + v + (end < 0 ? "" : sample[end..]);
            })),
            (1, Gen.Byte.Array[0, 300].Select(b => Encoding.UTF8.GetString(b))),
            (1, Gen.Const(sample))).Sample(json =>
        {
            try
            {
                var config = ConfigLoader.Parse(json, "fuzz");
                Interlocked.Increment(ref valid);
                Assert.NotNull(config.Networks);
            }
            catch (ConfigException)
            {
                Interlocked.Increment(ref refused);
            }
        }, iter: 5000);
        output.WriteLine($"agent config: {valid + refused} cases, {valid} valid, {refused} refused, none threw otherwise");
        Assert.True(valid > 0 && refused > 0, "the generator never produced one kind of config");
    }

    /// <summary>
    /// The config as the agent finds it in fw_cfg (QEMU's <c>-fw_cfg name=opt/vmnet/agent.json</c>, read from sysfs's
    /// <c>raw</c> file under a real host root): the sample config cut, padded with NULs as fw_cfg pads, with bytes
    /// flipped, invalid UTF-8, or 2 MiB. Every case is a valid config or a ConfigException naming the source.
    /// </summary>
    [Fact]
    public void A_mangled_fw_cfg_config_is_a_config_error_or_a_valid_config_never_a_crash()
    {
        var sample = File.ReadAllBytes(Support.Repo.File("guest-agent/agent.sample.json"));
        using var root = new Support.TempDir();
        var raw = root["sys/firmware/qemu_fw_cfg/by_name/opt/vmnet/agent.json/raw"];
        Directory.CreateDirectory(Path.GetDirectoryName(raw)!);
        var host = new VmNet.GuestAgent.Host.HostFiles(root.Path);
        int valid = 0, refused = 0;
        Gen.Frequency(
            (3, Gen.Int[0, sample.Length].Select(n => sample[..n])),
            (2, Gen.Int[1, 4096].Select(n => sample.Concat(new byte[n]).ToArray())),
            (3, Gen.Select(Gen.Int[0, sample.Length - 1].Array[1, 8], Gen.Byte.Array[1, 8], (at, values) =>
            {
                var b = (byte[])sample.Clone();
                for (var i = 0; i < at.Length; i++) b[at[i]] = values[i % values.Length];
                return b;
            })),
            (1, Gen.Byte.Array[0, 600]),
            (1, Gen.Const(Encoding.UTF8.GetBytes("{\"version\": 1, \"networks\": [], \"x\": \"" + new string('a', 2 << 20) + "\"}"))),
            (1, Gen.Const(sample))).Sample(bytes =>
        {
            File.WriteAllBytes(raw, bytes);
            try
            {
                var loaded = ConfigLoader.Load(host, null);
                Assert.NotNull(loaded);
                Assert.Equal("/sys/firmware/qemu_fw_cfg/by_name/opt/vmnet/agent.json/raw", loaded.Value.Source);
                Assert.NotNull(loaded.Value.Config.Networks);
                valid++;
            }
            catch (ConfigException e)
            {
                Assert.Contains("`/sys/firmware/qemu_fw_cfg/by_name/opt/vmnet/agent.json/raw`", e.Message);
                refused++;
            }
        }, iter: 3000, threads: 1);
        output.WriteLine($"fw_cfg config: {valid + refused} cases, {valid} valid, {refused} refused, none threw otherwise");
        Assert.True(valid > 0 && refused > 0, "the generator never produced one kind of config");
    }

    /// <summary>
    /// The seed as the agent reads it from the block device, mangled: sectors of a real seed image (the launcher's
    /// writer, Joliet and primary trees) with bytes flipped, sizes and extents replaced (0xFFFFFFFF once overflowed the
    /// sector count and threw), cut short. Every case reads as the config, as another file's text, or as none.
    /// </summary>
    [Fact]
    public void A_mangled_seed_volume_reads_as_a_file_or_none_never_a_crash()
    {
        var config = File.ReadAllText(Support.Repo.File("guest-agent/agent.sample.json"));
        using var image = new MemoryStream();
        VmNet.Seed.IsoImageWriter.Write(image, "cidata", [new("meta-data", Encoding.UTF8.GetBytes("instance-id: x\n")), new("vmnet/agent.json", Encoding.UTF8.GetBytes(config))]);
        var seed = image.ToArray();
        Assert.Equal(config, SeedVolume.Read(new MemoryStream(seed), "vmnet/agent.json"));
        var sizes = Gen.OneOf(Gen.Const(0xFFFFFFFFu), Gen.Const(0x7FFFFFFFu), Gen.Const(0x80000000u), Gen.Const(SeedVolume.MaxSize + 1), Gen.UInt);
        int read = 0, none = 0;
        Gen.Frequency(
            (3, Gen.Select(Gen.Int[0, seed.Length - 1].Array[1, 40], Gen.Byte.Array[1, 40], (at, values) =>
            {
                var b = (byte[])seed.Clone();
                for (var i = 0; i < at.Length; i++) b[at[i]] = values[i % values.Length];
                return b;
            })),
            // A 32-bit field of a directory record or volume descriptor (both-endian: the little-endian half is read).
            (3, Gen.Select(Gen.Int[16 * 2048 / 4, Math.Min(seed.Length, 64 * 2048) / 4 - 1], sizes, (word, value) =>
            {
                var b = (byte[])seed.Clone();
                System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(Math.Min(word * 4 + 2, b.Length - 4)), value);
                return b;
            })),
            (1, Gen.Int[0, seed.Length].Select(n => seed[..n])),
            (1, Gen.Byte.Array[0, 40 * 2048])).Sample(bytes =>
        {
            var text = SeedVolume.Read(new MemoryStream(bytes), "vmnet/agent.json");
            if (text is null) Interlocked.Increment(ref none); else Interlocked.Increment(ref read);
            Assert.True(text is null || text.Length <= SeedVolume.MaxSize);
        }, iter: 5000);
        output.WriteLine($"seed volume: {read + none} cases, {read} read a file, {none} none, none threw");
        Assert.True(read > 0 && none > 0, "the generator never produced one kind of volume");
    }
}
