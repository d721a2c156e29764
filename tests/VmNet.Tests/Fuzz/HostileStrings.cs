using System.Globalization;
using System.Text;
using CsCheck;

namespace VmNet.Tests.Fuzz;

/// <summary>
/// Generators of what a hostile or careless user types, and of what a hostile guest sends: control characters,
/// Unicode (bidirectional overrides, zero-width, line separators, astral planes), separators of every consumer
/// (YAML, XML, QEMU's option syntax, shells, systemd, cloud-init's templates), plausible values slightly off, and long
/// values around the limits.
/// </summary>
public static class HostileStrings
{
    /// <summary>Pieces that mean something to one consumer or another.</summary>
    public static readonly string[] Fragments =
    [
        "\n", "\r", "\r\n", "\t", "\0", "\u001b]0;pwned\u0007", "\u001b[2J", "\u001b]52;c;aGk=\u0007", "\u0085", "\u2028", "\u2029",
        "\u202e", "\u200b", "\ufeff", "\u00a0", "é", "ß", "İ", "😀", "\U0001F3F3\uFE0F", "中文",
        "'", "\"", "\\", "`", "$", "$(reboot)", "${HOME}", "%", "%s", "%n", ";", "&", "&&", "|", ">", "<", "*", "?", "~", "#", "!",
        ",", ",,", "=", ":", ": ", "- ", "? ", "[", "]", "{", "}", "{{", "}}", "{%", "%}", "&a", "*a", "!!str", "!!python/object:os.system",
        "<![CDATA[", "]]>", "<!--", "-->", "&amp;", "&#0;", "</cmdline>", "' or '1'='1",
        " ", "  ", "/", "//", "..", "../", "/.", "/etc/shadow", "/dev/zero", "/proc/self/environ",
        "0", "-1", "1e9", "0x10", "010", "4096", "65536", "NaN", "true", "null", "~", "yes", "on",
        "192.168.40.1", "192.168.40.11/24", "010.0.0.1", "0x7f000001", "1", "fe80::1", "fe80::1%eth0", "::ffff:1.2.3.4", "dhcp",
        "enp1s0", "enp2s0", "0000:01:00.0", "0000:01:00.0\n", "02:00:00:00:40:11", "01:00:5e:00:00:01", "lab", "vmnet", "root",
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIH1nYWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXo0 user@host",
        "802.1Q", "802.1ad", "auto", "always", "MiB", "GiB", "256MiB", "-drive", "file=/etc/shadow", "format=raw",
        "[Service]", "ExecStart=/bin/sh", "\nExecStartPre=/bin/evil",
    ];

    private static readonly Gen<string> Fragment = Gen.Int[0, Fragments.Length - 1].Select(i => Fragments[i]);

    /// <summary>Any UTF-16 text without lone surrogates (what a YAML file can hold).</summary>
    private static readonly Gen<string> AnyText = Gen.Frequency(
        (3, Gen.Char[' ', '~'].Array[0, 40].Select(a => new string(a))),
        (2, Gen.Char[(char)0, (char)0x2ff].Array[0, 20].Select(a => new string(a))),
        (1, Gen.Int[0, 0x10ffff].Where(c => c is < 0xd800 or > 0xdfff).Array[0, 8].Select(cs => string.Concat(cs.Select(char.ConvertFromUtf32)))));

    /// <summary>A plausible value mangled: a piece of it, plus fragments around or inside.</summary>
    private static Gen<string> Mangled(string plausible) =>
        Gen.Select(Gen.Int[0, plausible.Length], Fragment, Fragment, Gen.Int[0, 3], (cut, a, b, how) => how switch
        {
            0 => plausible[..cut] + a + plausible[cut..],
            1 => a + plausible + b,
            2 => plausible[..cut] + a,
            _ => plausible + a,
        });

    private static readonly Gen<string> Long = Gen.Frequency(
        (2, Gen.Int[4090, 4100].Select(n => "/" + new string('a', n - 1))),
        (1, Gen.Int[1, 9000].Select(n => new string('x', n))),
        (1, Gen.Int[60, 70].Select(n => new string('a', n))),
        (1, Gen.Int[250, 260].Select(n => "a" + string.Concat(Enumerable.Repeat(".a", n / 2)))));

    /// <summary>Hostile values for a field whose sane value looks like <paramref name="plausible"/>.</summary>
    public static Gen<string> For(string plausible) => Gen.Frequency(
        (4, Mangled(plausible)),
        (3, Fragment.Array[1, 5].Select(string.Concat)),
        (2, AnyText),
        (1, Long),
        (1, Gen.Const(plausible)));

    /// <summary>
    /// <paramref name="value"/> as a YAML double-quoted scalar that reads back as exactly that string: quotes,
    /// backslashes and every character YAML would fold or refuse written as escapes.
    /// </summary>
    public static string YamlQuoted(string value)
    {
        var sb = new StringBuilder("\"");
        foreach (var c in value)
        {
            if (c == '"') sb.Append("\\\"");
            else if (c == '\\') sb.Append("\\\\");
            else if (c < 0x20 || c is >= '\u007f' and <= '\u009f' || c is '\u2028' or '\u2029' or '\ufeff')
                sb.Append("\\u").Append(((int)c).ToString("x4", CultureInfo.InvariantCulture));
            else sb.Append(c);
        }
        return sb.Append('"').ToString();
    }

    /// <summary>How a case reads in a failure message: every character visible.</summary>
    public static string Show(string value) =>
        value.Length > 120 ? Show(value[..60]) + $"...({value.Length} chars)..." + Show(value[^20..])
            : string.Concat(value.Select(c => c < 0x20 || c > 0x7e ? $"\\u{(int)c:x4}" : c.ToString()));
}
