using System.Globalization;
using YamlDotNet.RepresentationModel;

namespace VmNet.Spec;

/// <summary>Collects spec errors with their field path and position; every problem is reported, not only the first.</summary>
internal sealed class Problems
{
    private readonly List<SpecError> _errors = [];
    private readonly HashSet<string> _refused = new(StringComparer.Ordinal);
    public IReadOnlyList<SpecError> Errors => _errors;
    public bool Any => _errors.Count > 0;

    /// <summary>When set, every field the readers look at is declared to it (the spec's JSON Schema is made so).</summary>
    public SchemaRecorder? Recorder { get; init; }

    /// <summary>Records a problem, unless the field's value was already refused as a whole (<see cref="Refuse"/>).</summary>
    public void Add(string path, string message, YamlNode? at = null)
    {
        if (message.StartsWith("is required", StringComparison.Ordinal) && !message.StartsWith("is required with", StringComparison.Ordinal))
            Recorder?.Required(path);
        if (_refused.Contains(path)) return;
        _errors.Add(at is null
            ? new SpecError(path, message)
            : new SpecError(path, message, (int)at.Start.Line, (int)at.Start.Column));
    }

    /// <summary>A value no check should look at further (control characters, too long): its one problem is this one.</summary>
    public void Refuse(string path, string message, YamlNode at)
    {
        Add(path, message, at);
        _refused.Add(path);
    }

    /// <summary>A list one of whose items was refused: the list itself gets no further problem (such as "is required").</summary>
    public void Silence(string path) => _refused.Add(path);
}

/// <summary>
/// Reads one YAML mapping by key, recording which keys were read, so that the rest can be reported as unknown with a
/// did-you-mean. Works on YamlDotNet's node model (no reflection), which keeps every node's line and column.
/// </summary>
internal sealed class MapReader
{
    private readonly YamlMappingNode _node;
    private readonly HashSet<string> _known = new(StringComparer.Ordinal);
    public string Path { get; }
    public Problems Problems { get; }
    public YamlNode Node => _node;

    public MapReader(YamlMappingNode node, string path, Problems problems)
    {
        _node = node;
        Path = path;
        Problems = problems;
    }

    public string Child(string key) => Path.Length == 0 ? key : $"{Path}.{key}";

    /// <summary>The node under <paramref name="key"/>, or null when absent or written as null (~).</summary>
    public YamlNode? Get(string key)
    {
        _known.Add(key);
        foreach (var (k, v) in _node.Children)
        {
            if (k is YamlScalarNode s && s.Value == key)
                return IsNull(v) ? null : v;
        }
        return null;
    }

    public string? String(string key)
    {
        Problems.Recorder?.Declare(Child(key), new FieldShape("string"));
        var node = Get(key);
        if (node is null) return null;
        if (node is YamlScalarNode s) return Text(Child(key), s.Value ?? "", s);
        Problems.Add(Child(key), $"must be a string, got {Describe(node)}", node);
        return null;
    }

    /// <summary>The longest string any field takes (a kernel command line is the longest the spec has).</summary>
    public const int MaxString = 4096;

    /// <summary>
    /// Every string of a spec or host.yaml reaches a file, a command line or a log: none may hold a control character
    /// (a newline ends a unit file's line, an escape rewrites a terminal) or be longer than <see cref="MaxString"/>.
    /// Null when refused; the field's other checks then stay silent.
    /// </summary>
    private string? Text(string path, string value, YamlNode at)
    {
        var bad = value.AsSpan().IndexOfAnyInRange('\u0000', '\u001f');
        if (bad < 0) bad = value.AsSpan().IndexOfAnyInRange('\u007f', '\u009f');
        if (bad >= 0)
        {
            Problems.Refuse(path, $"must not contain control characters (newlines, tabs, escapes): U+{(int)value[bad]:X4} at character {bad + 1} of {Quote(value)}", at);
            return null;
        }
        if (value.Length > MaxString)
        {
            Problems.Refuse(path, $"must be at most {MaxString} characters, got {value.Length}", at);
            return null;
        }
        return value;
    }

    public int? Int(string key, int min, int max, string? unit = null)
    {
        Problems.Recorder?.Declare(Child(key), new FieldShape("integer") { Minimum = min, Maximum = max });
        var node = Get(key);
        if (node is null) return null;
        var text = (node as YamlScalarNode)?.Value;
        if (text is null || !int.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var value))
        {
            Problems.Add(Child(key), $"must be a whole number{(unit is null ? "" : " of " + unit)}, got {Describe(node)}", node);
            return null;
        }
        if (value < min || value > max)
        {
            Problems.Add(Child(key), $"must be {min}..{max}{(unit is null ? "" : " " + unit)}, got {value}", node);
            return null;
        }
        return value;
    }

    public bool? Bool(string key)
    {
        Problems.Recorder?.Declare(Child(key), new FieldShape("boolean"));
        var node = Get(key);
        if (node is null) return null;
        switch ((node as YamlScalarNode)?.Value)
        {
            case "true": return true;
            case "false": return false;
            default:
                Problems.Add(Child(key), $"must be true or false, got {Describe(node)}", node);
                return null;
        }
    }

    /// <summary>A value from a fixed set; the message lists the choices.</summary>
    public T? Choice<T>(string key, IReadOnlyDictionary<string, T> choices, Func<string, string?>? explainRefusal = null)
        where T : struct
    {
        var text = String(key);
        Problems.Recorder?.Declare(Child(key), new FieldShape("string") { Enum = [.. choices.Keys] });
        if (text is null) return null;
        if (choices.TryGetValue(text, out var value)) return value;
        var node = Get(key);
        var why = explainRefusal?.Invoke(text);
        Problems.Add(Child(key), why ?? $"must be one of {string.Join(", ", choices.Keys)}, got {Quote(text)}", node);
        return null;
    }

    public IReadOnlyList<string>? StringList(string key)
    {
        Problems.Recorder?.Declare(Child(key), new FieldShape("array") { Items = new FieldShape("string") });
        var node = Get(key);
        if (node is null) return null;
        if (node is not YamlSequenceNode seq)
        {
            Problems.Add(Child(key), $"must be a list, got {Describe(node)}", node);
            return null;
        }
        var list = new List<string>();
        var (i, refused) = (0, false);
        foreach (var item in seq.Children)
        {
            if (item is YamlScalarNode s && !IsNull(s))
            {
                if (Text($"{Child(key)}[{i}]", s.Value ?? "", s) is { } text) list.Add(text);
                else refused = true;
            }
            else Problems.Add($"{Child(key)}[{i}]", $"must be a string, got {Describe(item)}", item);
            i++;
        }
        if (refused)
        {
            Problems.Silence(Child(key));
            return null;
        }
        return list;
    }

    public MapReader? Map(string key)
    {
        Problems.Recorder?.Declare(Child(key), new FieldShape("object"));
        var node = Get(key);
        if (node is null) return null;
        if (node is YamlMappingNode m) return new MapReader(m, Child(key), Problems);
        Problems.Add(Child(key), $"must be a mapping (key: value lines), got {Describe(node)}", node);
        return null;
    }

    public IReadOnlyList<MapReader>? MapList(string key)
    {
        Problems.Recorder?.Declare(Child(key), new FieldShape("array") { Items = new FieldShape("object") });
        var node = Get(key);
        if (node is null) return null;
        if (node is not YamlSequenceNode seq)
        {
            Problems.Add(Child(key), $"must be a list, got {Describe(node)}", node);
            return null;
        }
        var list = new List<MapReader>();
        var i = 0;
        foreach (var item in seq.Children)
        {
            if (item is YamlMappingNode m) list.Add(new MapReader(m, $"{Child(key)}[{i}]", Problems));
            else Problems.Add($"{Child(key)}[{i}]", $"must be a mapping (key: value lines), got {Describe(item)}", item);
            i++;
        }
        return list;
    }

    /// <summary>Reports every key that was never read as unknown, with the closest known key as a suggestion.</summary>
    public void RejectUnknownKeys()
    {
        Problems.Recorder?.Closed(Path);
        foreach (var (k, _) in _node.Children)
        {
            var name = (k as YamlScalarNode)?.Value ?? "";
            if (_known.Contains(name)) continue;
            var hint = DidYouMean(name, _known);
            Problems.Add(Child(name), hint is null
                ? $"unknown key; known keys here: {string.Join(", ", _known.Order(StringComparer.Ordinal))}"
                : $"unknown key; did you mean {Quote(hint)}?", k);
        }
    }

    internal static string? DidYouMean(string name, IEnumerable<string> known)
    {
        string? best = null;
        var bestDistance = int.MaxValue;
        foreach (var candidate in known)
        {
            var d = string.Equals(candidate, name, StringComparison.OrdinalIgnoreCase)
                ? 0
                : Levenshtein(candidate.ToLowerInvariant(), name.ToLowerInvariant());
            if (d < bestDistance) (best, bestDistance) = (candidate, d);
        }
        return bestDistance <= Math.Max(2, name.Length / 3) ? best : null;
    }

    private static int Levenshtein(string a, string b)
    {
        var prev = new int[b.Length + 1];
        var cur = new int[b.Length + 1];
        for (var j = 0; j <= b.Length; j++) prev[j] = j;
        for (var i = 1; i <= a.Length; i++)
        {
            cur[0] = i;
            for (var j = 1; j <= b.Length; j++)
                cur[j] = Math.Min(Math.Min(cur[j - 1] + 1, prev[j] + 1), prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1));
            (prev, cur) = (cur, prev);
        }
        return prev[b.Length];
    }

    private static bool IsNull(YamlNode node) =>
        node is YamlScalarNode { Style: YamlDotNet.Core.ScalarStyle.Plain, Value: null or "" or "~" or "null" };

    internal static string Describe(YamlNode node) => node switch
    {
        YamlScalarNode s => Quote(s.Value ?? ""),
        YamlSequenceNode => "a list",
        YamlMappingNode => "a mapping",
        _ => "an alias",
    };

    /// <summary>Quotes a user value for a message, with control characters made visible.</summary>
    internal static string Quote(string value)
    {
        var shown = value.Length > 80 ? value[..77] + "..." : value;
        var sb = new System.Text.StringBuilder("\"");
        foreach (var c in shown)
        {
            if (c == '"' || c == '\\') sb.Append('\\').Append(c);
            else if (char.IsControl(c)) sb.Append(c switch { '\n' => "\\n", '\t' => "\\t", '\r' => "\\r", _ => $"\\u{(int)c:x4}" });
            else sb.Append(c);
        }
        return sb.Append('"').ToString();
    }
}
