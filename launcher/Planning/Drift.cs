using System.Globalization;
using System.Text.Json.Serialization;
using VmNet.Spec;

namespace VmNet.Planning;

/// <summary>
/// One field of the spec that differs between the VM as it runs and the spec given now: its path in the spec
/// (<c>networks[0].vlan</c>), the value it runs with and the new one (as the spec writes them; <c>(none)</c> when
/// unset), and whether VmNet can change it while the VM runs (<see cref="Live"/>: a setting the PF holds for the VF)
/// or only by a restart (what the guest was booted with: CPUs, memory, disk, the VFs themselves, the guest config).
/// </summary>
public sealed record SpecChange(string Field, string Was, string Now, bool Live)
{
    public override string ToString() => $"{Field}: {Was} -> {Now}";
}

/// <summary>
/// What a VM was last launched with, kept in its directory (<c>launched.json</c>) beside the seed it matches: the
/// spec, field by field (<see cref="SpecFields.Flatten"/>). A running VM's drift is the new spec's difference from it.
/// </summary>
public sealed record LaunchRecord(int Version, IReadOnlyDictionary<string, string> Spec)
{
    public const int CurrentVersion = 1;

    public static LaunchRecord Of(VmSpec spec) => new(CurrentVersion, SpecFields.Flatten(spec));
}

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase, WriteIndented = true)]
[JsonSerializable(typeof(LaunchRecord))]
internal sealed partial class LaunchRecordJson : JsonSerializerContext;

/// <summary>
/// The facts about a VM that runs now, for the planner: what it was launched with (null when its directory holds no
/// launch record, e.g. a VM launched by a vmnet before 0.2; then nothing can be told about what needs a restart).
/// </summary>
public sealed record RunningVm(LaunchRecord? Record);

/// <summary>The difference between a running VM and a new spec, and which part of it can change live.</summary>
public static class Drift
{
    /// <summary>The spec fields a VF's PF holds (<c>ip link set PF vf N ...</c>), which change while the guest runs.</summary>
    public static readonly IReadOnlySet<string> LiveFields = new HashSet<string>(StringComparer.Ordinal)
        { "vlan", "qos", "vlanProtocol", "spoofCheck", "trust", "linkState", "maxTxRate", "minTxRate" };

    /// <summary>
    /// Every field of <paramref name="now"/> that differs from what the VM was launched with, in the spec's order; a
    /// network added or removed is one change (<c>networks[2]</c>), not one per field.
    /// </summary>
    public static IReadOnlyList<SpecChange> Compare(LaunchRecord was, VmSpec now)
    {
        var after = SpecFields.Flatten(now);
        var changes = new List<SpecChange>();
        var networksBefore = Count(was.Spec);
        foreach (var key in Keys(was.Spec, after))
        {
            var (network, field) = Split(key);
            if (network is { } i && (i >= networksBefore || i >= now.Networks.Count))
            {
                if (field != "name") continue;
                var added = i >= networksBefore;
                changes.Add(new SpecChange($"networks[{i}]", added ? "(none)" : $"network {Get(was.Spec, key)}", added ? $"network {Get(after, key)}" : "(none)", Live: false));
                continue;
            }
            var (a, b) = (Get(was.Spec, key), Get(after, key));
            if (a != b) changes.Add(new SpecChange(key, a, b, Live: network is not null && LiveFields.Contains(field)));
        }
        return changes;
    }

    /// <summary>Both key sets in the spec's order: the new one's, each key only the old one has after the key before it there.</summary>
    private static List<string> Keys(IReadOnlyDictionary<string, string> was, IReadOnlyDictionary<string, string> now)
    {
        var keys = now.Keys.ToList();
        string? previous = null;
        foreach (var key in was.Keys)
        {
            if (!now.ContainsKey(key)) keys.Insert(previous is null ? 0 : keys.IndexOf(previous) + 1, key);
            previous = key;
        }
        return keys;
    }

    private static string Get(IReadOnlyDictionary<string, string> fields, string key) =>
        fields.TryGetValue(key, out var v) ? v : AddedLater.GetValueOrDefault(key, "(none)");

    /// <summary>Fields added after launch records were first written: a record without one was launched with its default.</summary>
    private static readonly Dictionary<string, string> AddedLater = new(StringComparer.Ordinal)
    {
        ["placement.numa"] = SpecNames.Of(PlacementSpec.Default.Numa),
        ["placement.cpuPinning"] = SpecNames.Of(PlacementSpec.Default.CpuPinning),
        ["placement.hugepages"] = PlacementSpec.Default.Hugepages,
    };

    private static int Count(IReadOnlyDictionary<string, string> fields) =>
        fields.Keys.Select(k => Split(k).Network).Where(n => n is not null).Select(n => n!.Value + 1).DefaultIfEmpty(0).Max();

    /// <summary><c>networks[3].bond.miimon</c> -> (3, <c>bond.miimon</c>); a top-level key -> (null, key).</summary>
    private static (int? Network, string Field) Split(string key)
    {
        if (!key.StartsWith("networks[", StringComparison.Ordinal)) return (null, key);
        var close = key.IndexOf(']', StringComparison.Ordinal);
        return (int.Parse(key.AsSpan(9, close - 9), CultureInfo.InvariantCulture), key[(close + 2)..]);
    }
}

/// <summary>
/// A spec as a flat list of fields: each key is the field's path as <c>vmnet validate</c> names it
/// (<c>networks[0].bond.miimon</c>), each value as the spec writes it. Every key of <c>templates/vm.reference.yaml</c>
/// is here (a test holds the two together), so a field added to the spec and not here fails that test.
/// </summary>
public static class SpecFields
{
    public static IReadOnlyDictionary<string, string> Flatten(VmSpec spec)
    {
        var f = new OrderedFields();
        f.Add("name", spec.Name);
        f.Add("cpus", Num(spec.Cpus));
        f.Add("memory", $"{Num(spec.MemoryMiB)}MiB");
        f.Add("backend", SpecNames.Of(spec.Backend));
        f.Add("accel", SpecNames.Of(spec.Accel));
        f.Add("autostart", Bool(spec.Autostart));
        f.Add("disk.image", spec.Disk.Image);
        f.Add("disk.size", spec.Disk.SizeMiB is { } size ? $"{Num(size)}MiB" : null);
        f.Add("boot.kernel", spec.Boot?.Kernel);
        f.Add("boot.initrd", spec.Boot?.Initrd);
        f.Add("boot.cmdline", spec.Boot?.Cmdline);
        f.Add("placement.numa", SpecNames.Of(spec.Placement.Numa));
        f.Add("placement.cpuPinning", SpecNames.Of(spec.Placement.CpuPinning));
        f.Add("placement.hugepages", spec.Placement.Hugepages);
        for (var i = 0; i < spec.Networks.Count; i++)
        {
            var n = spec.Networks[i];
            var p = $"networks[{i}].";
            f.Add(p + "name", n.Name);
            f.Add(p + "ports", List(n.Ports));
            f.Add(p + "address", n.Address.ToString());
            f.Add(p + "gateway", n.Gateway);
            f.Add(p + "dns", List(n.Dns));
            f.Add(p + "mtu", n.Mtu is { } mtu ? Num(mtu) : null);
            var vlan = n.Vlan ?? VlanTag.Untagged;
            f.Add(p + "vlan", vlan.IsTagged ? Num(vlan.Id) : null);
            f.Add(p + "qos", Num(vlan.Qos));
            f.Add(p + "vlanProtocol", SpecNames.Of(vlan.Protocol));
            f.Add(p + "macs", n.Macs is null ? null : List(n.Macs));
            f.Add(p + "spoofCheck", Bool(n.SpoofCheck));
            f.Add(p + "trust", Bool(n.Trust));
            f.Add(p + "linkState", SpecNames.Of(n.LinkState));
            f.Add(p + "maxTxRate", Num(n.Rates?.MaxMbps ?? 0));
            f.Add(p + "minTxRate", Num(n.Rates?.MinMbps ?? 0));
            f.Add(p + "bond.mode", BondSpec.Mode);
            f.Add(p + "bond.failOverMac", BondSpec.FailOverMac);
            f.Add(p + "bond.miimon", Num(n.Bond.Miimon));
            f.Add(p + "bond.arpInterval", Num(n.Bond.ArpInterval));
            f.Add(p + "bond.arpTargets", List(n.Bond.ArpTargets));
            f.Add(p + "bond.primary", n.Bond.Primary);
            f.Add(p + "bond.primaryReselect", SpecNames.Of(n.Bond.PrimaryReselect));
            f.Add(p + "bond.upDelay", Num(n.Bond.UpDelay));
            f.Add(p + "bond.downDelay", Num(n.Bond.DownDelay));
            f.Add(p + "bond.gratuitousArp", Num(n.Bond.GratuitousArp));
        }
        f.Add("guest.hostname", spec.Guest.Hostname);
        f.Add("guest.user", spec.Guest.User);
        f.Add("guest.sshAuthorizedKeys", List(spec.Guest.SshAuthorizedKeys));
        return f.Fields;
    }

    private static string Num(long n) => n.ToString(CultureInfo.InvariantCulture);

    private static string Bool(bool b) => b ? "true" : "false";

    /// <summary>A list as YAML's flow form writes it.</summary>
    private static string List(IEnumerable<string> items) => "[" + string.Join(", ", items) + "]";

    private sealed class OrderedFields
    {
        /// <summary>In insertion order (the spec's), for a stable report.</summary>
        public OrderedDictionary<string, string> Fields { get; } = new(StringComparer.Ordinal);

        /// <summary>A null value is a field not set: no key.</summary>
        public void Add(string key, string? value)
        {
            if (value is not null) Fields.Add(key, value);
        }
    }
}
