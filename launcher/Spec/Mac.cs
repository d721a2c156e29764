using System.Globalization;
using System.Text;

namespace VmNet.Spec;

/// <summary>MAC addresses: checks and VmNet's stable generated ones.</summary>
public static class Mac
{
    /// <summary>Null when <paramref name="mac"/> is a usable unicast MAC, else what is wrong with it.</summary>
    public static string? Check(string mac)
    {
        if (!TryParse(mac, out var bytes))
            return $"must be a MAC address like 02:00:00:00:40:11, got {MapReader.Quote(mac)}";
        if ((bytes[0] & 1) != 0) return $"must be a unicast MAC (first octet even), got {mac}";
        if (bytes.All(b => b == 0)) return "must not be 00:00:00:00:00:00: a VF with a zero MAC gets a random one at every boot";
        return null;
    }

    public static bool TryParse(string mac, out byte[] bytes)
    {
        bytes = new byte[6];
        var parts = mac.Split(':');
        if (parts.Length != 6) return false;
        for (var i = 0; i < 6; i++)
        {
            if (parts[i].Length != 2 || !byte.TryParse(parts[i], NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out bytes[i]))
                return false;
        }
        return true;
    }

    /// <summary>
    /// A locally administered unicast MAC derived from the VM, network and port: the same inputs give the same MAC on
    /// every run; <paramref name="taken"/> (MACs other VMs and this spec already use) is skipped by re-hashing.
    /// </summary>
    public static string Generate(string vm, string network, int port, Func<string, bool> taken)
    {
        for (var attempt = 0; ; attempt++)
        {
            var input = $"vmnet-mac/v1\0{vm}\0{network}\0{port}\0{attempt}";
            var hash = Sha256.Hash(input);
            hash[0] = (byte)((hash[0] & 0xFC) | 0x02); // locally administered, unicast
            var mac = string.Join(':', hash.Take(6).Select(b => b.ToString("x2", CultureInfo.InvariantCulture)));
            if (!taken(mac)) return mac;
        }
    }
}
