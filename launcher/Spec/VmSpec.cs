namespace VmNet.Spec;

/// <summary>A vm.yaml after loading, defaulting and validation: every field has its final value.</summary>
/// <remarks>
/// Precedence of values, lowest first: the built-in defaults in <see cref="Defaults"/>, then the spec file.
/// <c>templates/vm.reference.yaml</c> documents every key with its built-in default.
/// </remarks>
public sealed record VmSpec(
    string Name,
    int Cpus,
    int MemoryMiB,
    DiskSpec Disk,
    IReadOnlyList<NetworkSpec> Networks,
    GuestSpec Guest,
    Backend Backend,
    Accel Accel,
    bool Autostart,
    BootSpec? Boot = null)
{
    /// <summary>Where the VM runs on the host: NUMA node, CPU pinning, hugepages (<c>placement:</c>).</summary>
    public PlacementSpec Placement { get; init; } = PlacementSpec.Default;
}

/// <summary>
/// <c>placement:</c> the VM's shape for line rate. <see cref="Numa"/>: vCPUs and memory on the node of the VM's VFs;
/// <see cref="CpuPinning"/>: dedicated host CPUs, leased like VFs; <see cref="HugepageKiB"/>: guest memory from that
/// node's hugepages of this size (0: ordinary pages).
/// </summary>
public sealed record PlacementSpec(NumaPolicy Numa, CpuPinning CpuPinning, long HugepageKiB)
{
    public static readonly PlacementSpec Default = new(NumaPolicy.Nic, CpuPinning.Shared, 0);

    public bool Dedicated => CpuPinning == CpuPinning.Dedicated;

    /// <summary>"none", "2MiB", "1GiB": as the spec writes it.</summary>
    public string Hugepages => HugepageKiB switch { 0 => "none", 2048 => "2MiB", _ => "1GiB" };
}

public sealed record DiskSpec(string Image, long? SizeMiB);

/// <summary>Direct kernel boot (QEMU <c>-kernel</c>, libvirt <c>&lt;os&gt;&lt;kernel&gt;</c>): the firmware loads this kernel instead of booting the disk.</summary>
public sealed record BootSpec(string Kernel, string? Initrd, string? Cmdline);

public sealed record NetworkSpec(
    string Name,
    VlanTag? Vlan,
    IReadOnlyList<string> Ports,
    GuestAddress Address,
    string? Gateway,
    IReadOnlyList<string> Dns,
    int? Mtu,
    IReadOnlyList<string>? Macs,
    bool SpoofCheck,
    bool Trust,
    LinkState LinkState,
    TxRates? Rates,
    BondSpec Bond)
{
    /// <summary>The guest's name for the member on port <paramref name="port"/>: the network name and the port index.</summary>
    public string MemberName(int port) => $"{Name}{port}";

    /// <summary>The host network (host.yaml <c>networks:</c>) this network's ports and VF settings come from, or null.</summary>
    public string? HostNetwork { get; init; }
}

/// <summary>
/// The VLAN a VF's traffic carries (VST: the PF tags and untags it): the VLAN ID, the 802.1p priority (qos) and the tag
/// protocol. <see cref="Untagged"/> (ID 0) is no VLAN. The same value travels from the spec to the VF setting, the
/// lease and the domain's metadata.
/// </summary>
public sealed record VlanTag(int Id, int Qos = 0, VlanProtocol Protocol = VlanProtocol.Dot1Q)
{
    public static readonly VlanTag Untagged = new(0);

    [System.Text.Json.Serialization.JsonIgnore]
    public bool IsTagged => Id != 0;

    /// <summary>As an operator reads it: "vlan 40", "vlan 40 qos 3 802.1ad", or "untagged".</summary>
    public override string ToString() => !IsTagged ? "untagged"
        : FormattableString.Invariant($"vlan {Id}{(Qos != 0 ? $" qos {Qos}" : "")}{(Protocol != VlanProtocol.Dot1Q ? " " + SpecNames.Of(Protocol) : "")}");
}

/// <summary>A VF's transmit rate limits in Mbit/s; 0 means no limit (max) or no guarantee (min).</summary>
public readonly record struct TxRates(int MaxMbps, int MinMbps);

/// <summary>An address in CIDR form, or DHCP.</summary>
public sealed record GuestAddress(bool Dhcp, string? Cidr)
{
    public static readonly GuestAddress DhcpAddress = new(true, null);
    public bool IsIPv6 => Cidr?.Contains(':') == true;
    public override string ToString() => Dhcp ? "dhcp" : Cidr!;
}

public sealed record BondSpec(
    int Miimon,
    int ArpInterval,
    IReadOnlyList<string> ArpTargets,
    string Primary,
    PrimaryReselect PrimaryReselect,
    int UpDelay,
    int DownDelay,
    int GratuitousArp)
{
    /// <summary>Active-backup is the only mode that works over VFs; see the reference file for why.</summary>
    public const string Mode = "active-backup";

    /// <summary>Each VF keeps its own admin MAC; the bond follows the active one.</summary>
    public const string FailOverMac = "active";
}

public sealed record GuestSpec(string Hostname, string User, IReadOnlyList<string> SshAuthorizedKeys);

public enum Backend { Libvirt, Qemu }

public enum Accel { Kvm, Tcg }

public enum VlanProtocol
{
    [System.Text.Json.Serialization.JsonStringEnumMemberName("802.1Q")] Dot1Q,
    [System.Text.Json.Serialization.JsonStringEnumMemberName("802.1ad")] Dot1Ad,
}

public enum LinkState
{
    [System.Text.Json.Serialization.JsonStringEnumMemberName("auto")] Auto,
    [System.Text.Json.Serialization.JsonStringEnumMemberName("enable")] Enable,
    [System.Text.Json.Serialization.JsonStringEnumMemberName("disable")] Disable,
}

public enum PrimaryReselect { Always, Better, Failure }

/// <summary>Nova's PCI NUMA policies: required (nic), preferred, legacy (any).</summary>
public enum NumaPolicy
{
    [System.Text.Json.Serialization.JsonStringEnumMemberName("nic")] Nic,
    [System.Text.Json.Serialization.JsonStringEnumMemberName("preferred")] Preferred,
    [System.Text.Json.Serialization.JsonStringEnumMemberName("any")] Any,
}

public enum CpuPinning
{
    [System.Text.Json.Serialization.JsonStringEnumMemberName("shared")] Shared,
    [System.Text.Json.Serialization.JsonStringEnumMemberName("dedicated")] Dedicated,
}

public static class SpecNames
{
    public static string Of(VlanProtocol p) => p == VlanProtocol.Dot1Q ? "802.1Q" : "802.1ad";
    public static string Of(LinkState s) => s switch { LinkState.Auto => "auto", LinkState.Enable => "enable", _ => "disable" };
    public static string Of(PrimaryReselect p) => p switch { PrimaryReselect.Always => "always", PrimaryReselect.Better => "better", _ => "failure" };
    public static string Of(Backend b) => b == Backend.Libvirt ? "libvirt" : "qemu";
    public static string Of(Accel a) => a == Accel.Kvm ? "kvm" : "tcg";
    public static string Of(NumaPolicy n) => n switch { NumaPolicy.Nic => "nic", NumaPolicy.Preferred => "preferred", _ => "any" };
    public static string Of(CpuPinning c) => c == CpuPinning.Shared ? "shared" : "dedicated";
}

/// <summary>The built-in defaults, named once.</summary>
public static class Defaults
{
    public const int Cpus = 2;
    public const int MemoryMiB = 2048;
    public const int Miimon = 100;
    public const int GratuitousArp = 3;
    public const bool SpoofCheck = true;
    public const bool Trust = false;
    public const LinkState VfLinkState = LinkState.Auto;
    public const VlanProtocol Protocol = VlanProtocol.Dot1Q;
    public const Backend VmBackend = Backend.Libvirt;
    public const Accel VmAccel = Accel.Kvm;
    public const string User = "vmnet";

    /// <summary>Up-delay is a multiple of the link monitor interval, so a flapping primary is not taken back at once.</summary>
    public static int UpDelay(int monitorInterval) => 2 * monitorInterval;
}
