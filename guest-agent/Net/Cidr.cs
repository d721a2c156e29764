using System.Globalization;
using System.Net;
using System.Net.Sockets;

namespace VmNet.GuestAgent.Net;

/// <summary>An address with a prefix length.</summary>
public readonly record struct Cidr(IPAddress Address, int PrefixLength)
{
    public static bool TryParse(string? text, out Cidr cidr)
    {
        cidr = default;
        var slash = text?.IndexOf('/') ?? -1;
        if (text is null || slash < 0) return false;
        if (!IPAddress.TryParse(text.AsSpan(0, slash), out var address)) return false;
        if (!int.TryParse(text.AsSpan(slash + 1), NumberStyles.None, CultureInfo.InvariantCulture, out var prefix)) return false;
        var max = address.AddressFamily == AddressFamily.InterNetwork ? 32 : 128;
        if (prefix > max) return false;
        cidr = new Cidr(address, prefix);
        return true;
    }

    public override string ToString() => $"{Address}/{PrefixLength}";
}
