using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using VmNet.Contract;
using VmNet.GuestAgent.Host;
using VmNet.GuestAgent.Net;

namespace VmNet.GuestAgent.Config;

/// <summary>A config that cannot be used; the message names the source and every problem with its field path.</summary>
public sealed class ConfigException(string message) : Exception(message);

/// <summary>Finds, parses and validates the agent's config.</summary>
public static class ConfigLoader
{
    /// <summary>Sources in order of precedence, relative to the host root; the first that exists wins. After them
    /// comes the NoCloud seed volume (label cidata, file <see cref="SeedFile"/>), read from the block device.</summary>
    public static readonly string[] DefaultSources =
    [
        "etc/vmnet/agent.json",
        "sys/firmware/qemu_fw_cfg/by_name/opt/vmnet/agent.json/raw",
    ];

    /// <summary>The agent's config on the seed volume, as the launcher writes it.</summary>
    public const string SeedFile = "vmnet/agent.json";

    /// <summary>Every place looked in, for the message when none has a config.</summary>
    public static string Described => string.Join(", ", DefaultSources.Select(s => "/" + s)) + $", {SeedFile} on a volume labelled {SeedVolume.Label}";

    /// <summary>Returns the config and where it came from, or null when no source exists. With <paramref name="seedRoot"/>
    /// (the root the block devices are under) the cidata seed is looked at last.</summary>
    public static (AgentConfig Config, string Source)? Load(IHostFiles host, string? explicitFile, string? seedRoot = null)
    {
        if (explicitFile is not null)
        {
            if (!File.Exists(explicitFile)) throw new ConfigException($"config file `{explicitFile}` does not exist");
            return (Parse(File.ReadAllText(explicitFile), explicitFile), explicitFile);
        }
        foreach (var source in DefaultSources)
        {
            var text = host.Read(source);
            if (text is not null) return (Parse(text, "/" + source), "/" + source);
        }
        if (seedRoot is not null && SeedVolume.Find(seedRoot, SeedFile) is { } seed) return (Parse(seed.Content, seed.Source), seed.Source);
        return null;
    }

    /// <summary>The largest config the agent reads (the launcher writes a few KiB; the seed volume holds at most 1 MiB).</summary>
    public const int MaxChars = 1 << 20;

    public static AgentConfig Parse(string json, string source)
    {
        if (json.Length > MaxChars) throw new ConfigException($"config `{source}` is larger than 1 MiB; the launcher writes a few KiB");
        AgentConfig? config;
        try
        {
            config = JsonSerializer.Deserialize(json.TrimEnd('\0'), AgentConfigJsonContext.Default.AgentConfig);
        }
        catch (JsonException e)
        {
            throw new ConfigException($"config `{source}` is not valid JSON for version 1: {e.Message}");
        }
        if (config is null) throw new ConfigException($"config `{source}` is empty (null)");
        Normalize(config);
        var problems = Validate(config);
        if (problems.Count > 0)
            throw new ConfigException($"config `{source}` has {problems.Count} problem(s):\n  " + string.Join("\n  ", problems));
        return config;
    }

    /// <summary>A list written as JSON null reads as an empty list.</summary>
    private static void Normalize(AgentConfig config)
    {
        config.Networks ??= [];
        foreach (var n in config.Networks.OfType<NetworkConfig>())
        {
            n.ArpTargets ??= [];
            n.Members ??= [];
            n.Addresses ??= [];
            n.Dns ??= [];
            n.Mode ??= "";
            n.FailOverMac ??= "";
        }
        config.Networks = config.Networks.Where(n => n is not null).ToList();
    }

    /// <summary>Every problem at once, each with its field path.</summary>
    public static List<string> Validate(AgentConfig config)
    {
        var problems = new List<string>();
        void Add(string field, string must, object? got) =>
            problems.Add($"field `{field}` {must}, got `{got ?? "null"}`");

        if (config.Version != AgentConfig.CurrentVersion) Add("version", $"must be {AgentConfig.CurrentVersion}", config.Version);
        var memberNames = new HashSet<string>(StringComparer.Ordinal);
        var macs = new HashSet<string>(StringComparer.OrdinalIgnoreCase);
        var bondNames = new HashSet<string>(StringComparer.Ordinal);
        for (var i = 0; i < config.Networks.Count; i++)
        {
            var n = config.Networks[i];
            var p = $"networks[{i}]";
            if (!IsInterfaceName(n.Name)) Add($"{p}.name", "must be an interface name of 1 to 15 characters without `/`, `:` or spaces", n.Name);
            else if (!bondNames.Add(n.Name!)) Add($"{p}.name", "must be unique", n.Name);
            if (n.Mode != "active-backup") Add($"{p}.mode", "must be `active-backup` (balance and LACP modes do not work over VFs)", n.Mode);
            if (n.Miimon < 0) Add($"{p}.miimon", "must be 0 or more (ms)", n.Miimon);
            if (n.ArpInterval < 0) Add($"{p}.arpInterval", "must be 0 or more (ms)", n.ArpInterval);
            if (n.Miimon > 0 && n.ArpInterval > 0) Add($"{p}.miimon", "must be 0 when arpInterval is set (the kernel runs one monitor)", n.Miimon);
            if (n.Miimon == 0 && n.ArpInterval == 0) Add($"{p}.miimon", "must be greater than 0 (e.g. 100) unless arpInterval is set; a bond without a monitor never fails over", n.Miimon);
            if (n.ArpInterval > 0 && n.ArpTargets.Count == 0) Add($"{p}.arpTargets", "must hold at least one IPv4 address when arpInterval is set", "[]");
            if (n.ArpTargets.Count > 16) Add($"{p}.arpTargets", "must hold at most 16 addresses", n.ArpTargets.Count);
            for (var t = 0; t < n.ArpTargets.Count; t++)
                if (!IPAddress.TryParse(n.ArpTargets[t], out var a) || a.AddressFamily != AddressFamily.InterNetwork)
                    Add($"{p}.arpTargets[{t}]", "must be an IPv4 address", n.ArpTargets[t]);
            if (n.FailOverMac is not ("none" or "active" or "follow")) Add($"{p}.failOverMac", "must be `none`, `active` or `follow`", n.FailOverMac);
            if (n.UpDelay < 0 || (n.Miimon > 0 && n.UpDelay % n.Miimon != 0)) Add($"{p}.upDelay", "must be 0 or a multiple of miimon", n.UpDelay);
            if (n.DownDelay < 0 || (n.Miimon > 0 && n.DownDelay % n.Miimon != 0)) Add($"{p}.downDelay", "must be 0 or a multiple of miimon", n.DownDelay);
            if (n.NumGratArp is < 0 or > 255) Add($"{p}.numGratArp", "must be between 0 and 255", n.NumGratArp);
            if (n.Mtu is { } mtu && (mtu < 68 || mtu > 65535)) Add($"{p}.mtu", "must be between 68 and 65535", mtu);
            if (n.Members.Count == 0) Add($"{p}.members", "must list at least one member", "[]");
            for (var m = 0; m < n.Members.Count; m++)
            {
                var member = n.Members[m];
                var mp = $"{p}.members[{m}]";
                if (!IsInterfaceName(member.Name)) Add($"{mp}.name", "must be an interface name of 1 to 15 characters without `/`, `:` or spaces", member.Name);
                else if (!memberNames.Add(member.Name!) || bondNames.Contains(member.Name!)) Add($"{mp}.name", "must be unique across all networks and bonds", member.Name);
                if (!Mac.TryNormalize(member.Mac, out var mac)) Add($"{mp}.mac", "must be a MAC address like 02:00:00:00:40:11", member.Mac);
                else if (!macs.Add(mac)) Add($"{mp}.mac", "must be unique: one VF per member", member.Mac);
            }
            if (n.Primary is not null && n.Members.All(m => m.Name != n.Primary)) Add($"{p}.primary", "must name one of the members", n.Primary);
            if (n.Dhcp && n.Addresses.Any(a => Cidr.TryParse(a, out var c) && c.Address.AddressFamily == AddressFamily.InterNetwork))
                Add($"{p}.addresses", "must hold no IPv4 address when dhcp is true: the DHCP server gives it", string.Join(", ", n.Addresses));
            if (n.Dhcp && n.Gateway is not null) Add($"{p}.gateway", "must be empty when dhcp is true: the DHCP server gives the router", n.Gateway);
            for (var a = 0; a < n.Addresses.Count; a++)
                if (!Cidr.TryParse(n.Addresses[a], out _)) Add($"{p}.addresses[{a}]", "must be an address with a prefix length, like 192.168.40.11/24 or fd00::11/64", n.Addresses[a]);
            if (n.Gateway is not null && !IPAddress.TryParse(n.Gateway, out _)) Add($"{p}.gateway", "must be an IP address", n.Gateway);
            for (var d = 0; d < n.Dns.Count; d++)
                if (!IPAddress.TryParse(n.Dns[d], out _)) Add($"{p}.dns[{d}]", "must be an IP address", n.Dns[d]);
        }
        if (config.Hostname is { } h && (h.Length is 0 or > 64 || h.Any(c => !(char.IsAsciiLetterOrDigit(c) || c is '-' or '.'))))
            Add("hostname", "must be 1 to 64 letters, digits, `-` or `.`", h);
        if (config.ReportPort is { } port && (port.Length == 0 || port.Contains('/')))
            Add("reportPort", "must be a virtio-serial port name without `/`", port);
        return problems;
    }

    private static bool IsInterfaceName(string? name) =>
        name is { Length: > 0 and <= 15 } && name != "." && name != ".." && !name.Any(c => c is '/' or ':' || char.IsWhiteSpace(c));
}
