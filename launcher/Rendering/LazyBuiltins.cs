using Scriban;
using Scriban.Functions;
using Scriban.Parsing;
using Scriban.Runtime;

namespace VmNet.Rendering;

/// <summary>
/// Scriban's builtins (string.*, array.*, date.* ...), imported only when a template looks up a name that nothing
/// above them in the context defines. Building them (BuiltinFunctions' static constructor, by reflection over every
/// builtin method) costs more than parsing and rendering all the templates; the embedded templates use none.
/// </summary>
internal sealed class LazyBuiltins : ScriptObject
{
    private bool _loaded;

    private void Load()
    {
        if (_loaded) return;
        _loaded = true;
        new BuiltinFunctions().CopyTo(this);
    }

    public override bool TryGetValue(TemplateContext? context, SourceSpan span, string member, out object? value)
    {
        if (base.TryGetValue(context, span, member, out value)) return true;
        if (_loaded) return false;
        Load();
        return base.TryGetValue(context, span, member, out value);
    }

    public override bool Contains(string member)
    {
        if (base.Contains(member)) return true;
        if (_loaded) return false;
        Load();
        return base.Contains(member);
    }
}
