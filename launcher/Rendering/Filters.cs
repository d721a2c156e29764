using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using Scriban;
using Scriban.Runtime;
using Scriban.Syntax;

namespace VmNet.Rendering;

/// <summary>
/// The escaping filters the templates use on every value that comes from a spec: <c>xml</c> (attribute and text),
/// <c>yaml</c> and <c>json</c> (a double-quoted scalar, JSON's escapes, which YAML's double-quoted style reads the
/// same), <c>qemu</c> (a value inside QEMU's option syntax: commas doubled; one argv element, so no newline),
/// <c>qemu_arg</c> (a whole argument QEMU takes literally, as <c>-kernel</c>, <c>-initrd</c>, <c>-pidfile</c> and
/// <c>-append</c> do: as it is, no newline). Implemented as
/// <see cref="IScriptCustomFunction"/> so no reflection is needed (NativeAOT).
/// </summary>
internal static class Filters
{
    public static void Register(ScriptObject globals)
    {
        globals.SetValue("xml", new Filter(Xml), true);
        globals.SetValue("yaml", new Filter(Quoted), true);
        globals.SetValue("json", new Filter(Quoted), true);
        globals.SetValue("qemu", new Filter(Qemu), true);
        globals.SetValue("qemu_arg", new Filter(QemuArg), true);
    }

    public static string Xml(string value)
    {
        var sb = new StringBuilder(value.Length);
        foreach (var c in value)
        {
            sb.Append(c switch
            {
                '&' => "&amp;",
                '<' => "&lt;",
                '>' => "&gt;",
                '\'' => "&apos;",
                '"' => "&quot;",
                _ when char.IsControl(c) => throw new TemplateValueException($"a control character cannot be written to XML: {Spec.MapReader.Quote(value)}"),
                _ => c.ToString(),
            });
        }
        return sb.ToString();
    }

    public static string Quoted(string value)
    {
        // ASCII the way JavaScriptEncoder.UnsafeRelaxedJsonEscaping writes it; anything else goes to the encoder,
        // whose tables cost about a million instructions to set up on first use (a test holds the two to each other).
        foreach (var c in value)
            if (c > 0x7E) return "\"" + JsonEncodedText.Encode(value, JavaScriptEncoder.UnsafeRelaxedJsonEscaping).Value + "\"";
        var sb = new StringBuilder(value.Length + 8).Append('"');
        foreach (var c in value)
        {
            switch (c)
            {
                case '"': sb.Append("\\\""); break;
                case '\\': sb.Append("\\\\"); break;
                case '\b': sb.Append("\\b"); break;
                case '\t': sb.Append("\\t"); break;
                case '\n': sb.Append("\\n"); break;
                case '\f': sb.Append("\\f"); break;
                case '\r': sb.Append("\\r"); break;
                case < ' ': sb.Append("\\u00").Append(((int)c).ToString("X2", System.Globalization.CultureInfo.InvariantCulture)); break;
                default: sb.Append(c); break;
            }
        }
        return sb.Append('"').ToString();
    }

    public static string Qemu(string value)
    {
        if (value.Any(char.IsControl))
            throw new TemplateValueException($"a control character cannot be written to a QEMU argument: {Spec.MapReader.Quote(value)}");
        return value.Replace(",", ",,", StringComparison.Ordinal);
    }

    /// <summary>A whole argv element QEMU does not parse as options (a file name after -kernel): only newlines and other control characters are refused.</summary>
    public static string QemuArg(string value) => value.Any(char.IsControl)
        ? throw new TemplateValueException($"a control character cannot be written to a QEMU argument: {Spec.MapReader.Quote(value)}")
        : value;

    private sealed class Filter(Func<string, string> apply) : IScriptCustomFunction
    {
        public int RequiredParameterCount => 1;
        public int ParameterCount => 1;
        public ScriptVarParamKind VarParamKind => ScriptVarParamKind.None;
        public Type ReturnType => typeof(string);
        public ScriptParameterInfo GetParameterInfo(int index) => new(typeof(object), "value");

        public object? Invoke(TemplateContext context, ScriptNode? callerContext, ScriptArray arguments, ScriptBlockStatement? blockStatement) =>
            apply(arguments.Count > 0 ? context.ObjectToString(arguments[0]) ?? "" : "");

        public ValueTask<object?> InvokeAsync(TemplateContext context, ScriptNode? callerContext, ScriptArray arguments, ScriptBlockStatement? blockStatement) =>
            ValueTask.FromResult(Invoke(context, callerContext, arguments, blockStatement));
    }
}

/// <summary>A value that cannot be written safely into an artifact; validation should have refused it first.</summary>
public sealed class TemplateValueException(string message) : VmNetException(message, ExitCodes.InvalidInput);
