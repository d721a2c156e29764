using System.Text;
using YamlDotNet.Core;
using YamlDotNet.Core.Events;
using YamlDotNet.RepresentationModel;

namespace VmNet.Spec;

/// <summary>
/// Reads and parses the YAML a user hands vmnet (a spec, host.yaml) within bounds: at most <see cref="MaxBytes"/>
/// bytes from the file (so `/dev/zero` or a runaway generator is refused, not read until memory runs out), at most
/// <see cref="MaxDepth"/> nested collections and <see cref="MaxEvents"/> parser events (YamlDotNet's node model loads
/// nested collections recursively: 40,000 `[` overflowed the stack). Every refusal is a <see cref="SpecException"/>
/// (exit 2) naming the line and column where one is known.
/// </summary>
public static class YamlInput
{
    /// <summary>A spec is a few KB; the largest sensible one (many networks, long cmdlines, keys) stays far below.</summary>
    public const int MaxBytes = 1 << 20;
    public const int MaxDepth = 32;
    public const int MaxEvents = 100_000;

    /// <summary>
    /// The file's text; a <see cref="SpecException"/> naming <paramref name="source"/> when it is too large or not
    /// UTF-8. An <see cref="IOException"/> or <see cref="UnauthorizedAccessException"/> goes to the caller, which words
    /// what to do about an unreadable file.
    /// </summary>
    public static string ReadFile(string path, string source)
    {
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite, 1, FileOptions.None);
        var buffer = new byte[MaxBytes + 1];
        var length = 0;
        int n;
        while (length < buffer.Length && (n = stream.Read(buffer, length, buffer.Length - length)) > 0) length += n;
        if (length > MaxBytes)
            throw new SpecException(source, [new SpecError("(file)", $"is larger than {MaxBytes >> 20} MiB; a spec or host.yaml is a few KB (is this the right file?)")]);
        try
        {
            return new UTF8Encoding(false, throwOnInvalidBytes: true).GetString(buffer, 0, length).TrimStart('\uFEFF');
        }
        catch (DecoderFallbackException e)
        {
            throw new SpecException(source, [new SpecError("(file)", $"is not UTF-8 text (invalid bytes at byte {e.Index + 1}); save it as UTF-8")]);
        }
    }

    /// <summary>Parses <paramref name="text"/> into YamlDotNet's node model, after checking depth and size in one streaming pass.</summary>
    public static YamlStream Parse(string text, string source)
    {
        try
        {
            CheckShape(text, source);
            var stream = new YamlStream();
            stream.Load(new StringReader(text));
            return stream;
        }
        catch (YamlException e)
        {
            var message = e.InnerException is not null && e.Message.StartsWith("(Line", StringComparison.Ordinal) ? e.InnerException.Message : e.Message;
            throw new SpecException(source, [new SpecError("(yaml)", $"not valid YAML: {StripMark(message)}", (int)e.Start.Line, (int)e.Start.Column)]);
        }
    }

    /// <summary>YamlDotNet's parser is a state machine (no recursion): walk its events before the node model recurses.</summary>
    private static void CheckShape(string text, string source)
    {
        var parser = new Parser(new StringReader(text));
        var depth = 0;
        var events = 0;
        while (parser.MoveNext())
        {
            var current = parser.Current!;
            if (++events > MaxEvents)
                throw new SpecException(source, [new SpecError("(yaml)", $"holds more than {MaxEvents} YAML nodes; a spec or host.yaml has a few dozen", (int)current.Start.Line, (int)current.Start.Column)]);
            if (current is MappingStart or SequenceStart && ++depth > MaxDepth)
                throw new SpecException(source, [new SpecError("(yaml)", $"nests lists and mappings more than {MaxDepth} deep; a spec nests at most 5", (int)current.Start.Line, (int)current.Start.Column)]);
            if (current is MappingEnd or SequenceEnd) depth--;
        }
    }

    private static string StripMark(string message)
    {
        // "(Line: 1, Col: 2, Idx: 1) - (Line: 1, Col: 3, Idx: 2): what" -> "what"
        var at = message.IndexOf("): ", StringComparison.Ordinal);
        return message.StartsWith("(Line: ", StringComparison.Ordinal) && at > 0 ? message[(at + 3)..].Trim() : message.Trim();
    }
}
