namespace VmNet.GuestAgent.Net;

/// <summary>A MAC address as the agent compares them.</summary>
public static class Mac
{
    /// <summary>Lower-case, colon-separated; what sysfs prints.</summary>
    public static bool TryNormalize(string? text, out string mac)
    {
        mac = "";
        if (text is null) return false;
        var parts = text.Trim().Split(':', '-');
        if (parts.Length != 6 || parts.Any(p => p.Length != 2 || !p.All(char.IsAsciiHexDigit))) return false;
        mac = string.Join(':', parts).ToLowerInvariant();
        return true;
    }
}
