namespace VmNet.Planning;

/// <summary>One change to the host, in the words an operator knows (the sysfs write or the ip command).</summary>
public abstract record HostStep(string Pci)
{
    /// <summary>The step as a shell line an operator could type.</summary>
    public abstract string Describe();
}

/// <summary>Reads and keeps the VF's current settings and driver, so teardown can give it back as found.</summary>
public sealed record RecordState(string Pci, string Pf, int Vf) : HostStep(Pci)
{
    public override string Describe() => $"# record VF {Vf} of {Pf} ({Pci}): MAC, VLAN, qos, proto, spoofchk, trust, link-state, rates, driver";
}

/// <summary>A write of one value to a sysfs file.</summary>
public sealed record SysfsWrite(string Pci, string Path, string Value) : HostStep(Pci)
{
    public override string Describe() => $"echo {Value} > {Path}";
}

/// <summary><c>ip link set dev PF vf N ...</c>: VF settings through the PF (netlink).</summary>
public sealed record IpLinkVf(string Pci, string Pf, int Vf, IReadOnlyList<string> Settings) : HostStep(Pci)
{
    public IReadOnlyList<string> Argv => ["ip", "link", "set", "dev", Pf, "vf", Vf.ToString(System.Globalization.CultureInfo.InvariantCulture), .. Settings];
    public override string Describe() => string.Join(' ', Argv);
}

/// <summary>Waits until a path exists (the vfio group node after binding).</summary>
public sealed record WaitForPath(string Pci, string Path, int TimeoutMs) : HostStep(Pci)
{
    public override string Describe() => $"# wait up to {TimeoutMs / 1000.0:0.#} s for {Path}";
}
