using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;
using VmNet.Tests.Support;

namespace VmNet.Tests.Boots.Lab;

/// <summary>
/// The README's "Try it without hardware" block (<c>images/lab/demo.sh</c>) run as written with bash from the repo
/// root: it boots the emulated SR-IOV lab host and runs images/lab/demo-inside.sh there, where vmnet (NativeAOT)
/// provisions VFs on the emulated igb PFs and starts the test guest nested under TCG. Asserts the exit status and
/// what the reader is told to look for: every step header, <c>vmnet up</c>'s summary, the agent's report in
/// <c>vmnet status</c>, the VF's settings on the PF, the peer's pings, the failover and <c>vmnet host</c> with every
/// VF free at the end. The demo's output goes to the test output. Took 5.5 to 9.8 minutes here, 12.5 in a CI run where its nested guest missed a 600 s wait beside the libvirt lab's (22 at most).
/// </summary>
[Trait(Tier.Name, Tier.Boot)]
[Collection(SlowFirst.LabDemo)]
public sealed partial class LabDemoTests(ITestOutputHelper output)
{
    public const string Command = "images/lab/demo.sh";
    private static readonly TimeSpan Timeout = TimeSpan.FromMinutes(22);

    /// <summary>The step titles demo-inside.sh prints, in order (each header: "== [+N s] i. title").</summary>
    private static readonly string[] Steps =
    [
        "peer: a network namespace bridging both switches",
        "PFs up",
        "vmnet host apply: 2 VFs on each PF",
        "vmnet doctor and vmnet host",
        "the VM spec",
        "vmnet up:",
        "vmnet status:",
        "the peer pings the guest over VLAN 40",
        "failover: PF eth0 goes down",
        "PF eth0 back up",
        "vmnet rm:",
    ];

    /// <summary>
    /// At most this many pings (every 0.2 s; they run from 3 s before eth0 goes down until 4 s after `vmnet status`
    /// shows lab1 active) may be lost across the failover. Measured here with miimon 100: 14 to 23 on a quiet machine
    /// (gaps of 2.8 to 4.6 s), 44 in a CI run where the nested guest's bond took 2.1 s of its own uptime to switch
    /// (its clock and miimon crawl under TCG inside TCG when the cores are busy). The gap spans the PF's link-down
    /// reaching the nested guest's VF, miimon switching to lab1 and the peer learning lab1's MAC; load stretches all
    /// of it. What makes the failover work or not is that the last pings are answered (demo-inside.sh fails
    /// otherwise); 150 (30 s, the demo's own limit for lab1 to become active) only catches a failover that is broken.
    /// </summary>
    private const int MaxLostPings = 150;

    /// <summary>The README's shell block holding <see cref="Command"/>.</summary>
    public static string ReadmeBlock() =>
        Assert.Single(ReadmeTests.ShellBlocks(), b => b.Contains(Command, StringComparison.Ordinal));

    [Fact]
    public void The_readme_block_is_the_one_command()
    {
        Assert.Equal(Command, ReadmeBlock());
        Assert.True(File.Exists(Repo.File(Command)), $"{Command} missing");
    }

    [Fact]
    public async Task The_readme_demo_runs_every_step_in_the_emulated_lab()
    {
        var (_, problem) = await Task.Run(LabHost.Image);
        problem ??= (await Task.Run(GuestImage.TryGet)).Problem;
        if (problem is not null) GuestImage.MissingOrFail(problem);

        var (text, exit, elapsed) = await Run(ReadmeBlock());
        output.WriteLine($"-- {Command}: exit {exit} after {elapsed.TotalSeconds:F0} s");
        Assert.True(exit == 0, $"{Command} exited {exit} after {elapsed.TotalSeconds:F0} s (output above)");
        var lines = text.Split('\n');

        // Every step, in order, with its elapsed seconds never going back.
        var headers = lines.Select(l => Header().Match(l)).Where(m => m.Success).ToList();
        Assert.Equal(Steps.Length, headers.Count);
        var previous = 0;
        for (var i = 0; i < Steps.Length; i++)
        {
            Assert.Equal((i + 1).ToString(CultureInfo.InvariantCulture), headers[i].Groups["n"].Value);
            Assert.StartsWith(Steps[i], headers[i].Groups["title"].Value, StringComparison.Ordinal);
            var at = int.Parse(headers[i].Groups["s"].Value, CultureInfo.InvariantCulture);
            Assert.True(at >= previous, $"step {i + 1} at +{at} s after step {i} at +{previous} s");
            previous = at;
        }

        // vmnet up: its summary line, and the VFs it configured.
        Assert.Matches(UpSummary(), text);
        var vf0 = Vf0Mac().Match(text);
        Assert.True(vf0.Success, "vmnet up's configure step names no MAC for lab0 (eth0 vf 0)");

        // vmnet status: the VFs and the agent's network-ready report; the PF holds the VF's settings.
        var status = Section(lines, 7);
        Assert.Contains("$ vmnet status demo", status);
        Assert.Contains("demo: running (qemu)", status);
        Assert.Matches(@"guest \(agent report of \d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ\):", status);
        Assert.Contains("  lab: active lab0; lab0 up, lab1 up; 192.168.40.11/24", status);
        Assert.Contains($"vf 0     link/ether {vf0.Groups["mac"].Value} brd ff:ff:ff:ff:ff:ff, vlan 40, spoof checking on, link-state auto, trust off", status);

        // The peer reaches the guest over VLAN 40.
        var ping = Section(lines, 8);
        Assert.Matches(@"64 bytes from 192\.168\.40\.11: seq=\d+ ttl=64", ping);
        Assert.Matches(@"3 packets transmitted, [1-3] packets received", ping);

        // Failover: vmnet status shows lab1 active, the agent reported it, and the pings came back.
        var failover = Section(lines, 9);
        Assert.Contains("  lab: active lab1; lab0 down, lab1 up; 192.168.40.11/24", failover);
        Assert.Contains("\"event\":\"active-changed\"", failover);
        Assert.Matches(@"# failover: `vmnet status` showed lab1 active \d+\.\d{3} s after eth0 went down", failover);
        var lost = LostPings().Match(failover);
        Assert.True(lost.Success, "the failover step prints no `lost N of M pings` line");
        var lostCount = int.Parse(lost.Groups["lost"].Value, CultureInfo.InvariantCulture);
        var sent = int.Parse(lost.Groups["sent"].Value, CultureInfo.InvariantCulture);
        var lostSeqs = lost.Groups["seqs"].Success
            ? lost.Groups["seqs"].Value.Split(' ').Select(s => int.Parse(s, CultureInfo.InvariantCulture)).ToList()
            : [];
        output.WriteLine($"-- failover: {lostCount} of {sent} pings lost (seq {string.Join(' ', lostSeqs)})");
        Assert.True(lostCount <= MaxLostPings, $"{lostCount} of {sent} pings lost across the failover (at most {MaxLostPings})");
        Assert.Equal(lostCount, lostSeqs.Count);
        // The 10 before the last 5 were answered: traffic flows through lab1 (the last 5 may still be in flight when
        // ping stops: round trips through TCG inside TCG reach 0.8 s).
        Assert.DoesNotContain(lostSeqs, s => s >= sent - 15 && s < sent - 5);
        Assert.Contains("# the 10 pings (2 s) before the last 5 were all answered: traffic flows through lab1", failover);

        // vmnet rm: every VF back and free, untagged.
        var rm = Section(lines, 11);
        Assert.Contains("demo: 2 VFs restored and released", rm);
        var afterRm = rm[rm.IndexOf("$ vmnet host", StringComparison.Ordinal)..];
        Assert.Equal(4, FreeVf().Matches(afterRm).Count);
        Assert.Contains("# 4 of 4 VFs free, all untagged", afterRm);

        Assert.Matches(@"(?m)^demo: all steps passed in \d+ s$", text);
        Assert.Matches(@"(?m)^demo: \[\+\d+ s\] passed; the lab host powered off$", text);
    }

    /// <summary>The text of step <paramref name="step"/>: from its header to the next one (or the end).</summary>
    private static string Section(string[] lines, int step)
    {
        var start = Array.FindIndex(lines, l => Header().Match(l) is { Success: true } m && m.Groups["n"].Value == step.ToString(CultureInfo.InvariantCulture));
        Assert.True(start >= 0, $"no header for step {step}");
        var end = Array.FindIndex(lines, start + 1, l => Header().IsMatch(l));
        return string.Join('\n', lines[start..(end < 0 ? lines.Length : end)]);
    }

    /// <summary>Runs the block with bash -euo pipefail from the repo root, its output streamed to the test output.</summary>
    private async Task<(string Output, int Exit, TimeSpan Elapsed)> Run(string script)
    {
        var psi = new ProcessStartInfo("bash", ["-euo", "pipefail", "-c", script])
        {
            WorkingDirectory = Repo.Root, UseShellExecute = false,
            RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true,
        };
        // Outside any MSBuild that started the tests, so its node settings do not reach dotnet publish.
        foreach (var key in psi.Environment.Keys.Where(k => k.StartsWith("MSBuild", StringComparison.OrdinalIgnoreCase)).ToList())
            psi.Environment.Remove(key);
        var text = new StringBuilder();
        var clock = Stopwatch.StartNew();
        using var process = new Process { StartInfo = psi };
        void OnLine(string? line)
        {
            if (line is null) return;
            lock (text) text.Append(line).Append('\n');
            try { output.WriteLine(line); } catch (InvalidOperationException) { } // the test already ended
        }
        process.OutputDataReceived += (_, e) => OnLine(e.Data);
        process.ErrorDataReceived += (_, e) => OnLine(e.Data);
        process.Start();
        process.StandardInput.Close();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(TestContext.Current.CancellationToken);
        timeout.CancelAfter(Timeout);
        try
        {
            await process.WaitForExitAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            await process.WaitForExitAsync(CancellationToken.None);
            Assert.Fail($"{Command} did not finish within {Timeout.TotalMinutes:0} minutes (output above)");
        }
        process.WaitForExit(); // drains the output events
        lock (text) return (text.ToString(), process.ExitCode, clock.Elapsed);
    }

    [GeneratedRegex(@"^== \[\+(?<s>\d+) s\] (?<n>\d+)\. (?<title>.*)$")]
    private static partial Regex Header();

    [GeneratedRegex(@"(?m)^demo is up \(qemu, [^)]*\): 1 network over 2 VFs in \d+\.\d s; serial log /run/vmnet/vms/demo/serial\.log$")]
    private static partial Regex UpSummary();

    [GeneratedRegex(@"lab0=eth0 vf 0 \(0000:01:10\.0\) mac (?<mac>[0-9a-f:]{17}) vlan 40")]
    private static partial Regex Vf0Mac();

    [GeneratedRegex(@"# failover: lost (?<lost>\d+) of (?<sent>\d+) pings(?: \(seq (?<seqs>[\d ]+)\))?")]
    private static partial Regex LostPings();

    [GeneratedRegex(@"(?m)^  [01] +0000:0[12]:10\.[02] +igbvf +\S+ +\S+ +[0-9a-f:]{17} +- +free$")]
    private static partial Regex FreeVf();
}
