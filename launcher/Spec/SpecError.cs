namespace VmNet.Spec;

/// <summary>One problem in a spec: the field path, what is wrong, and where it is in the file when known.</summary>
public sealed record SpecError(string Path, string Message, int? Line = null, int? Column = null)
{
    public override string ToString() =>
        Line is null ? $"{Path}: {Message}" : $"{Path}: {Message} (line {Line}, column {Column})";
}

/// <summary>A spec that cannot be used; carries every problem found, not only the first.</summary>
public sealed class SpecException(string source, IReadOnlyList<SpecError> errors)
    : VmNetException(Format(source, errors), ExitCodes.InvalidInput)
{
    public IReadOnlyList<SpecError> Errors { get; } = errors;

    private static string Format(string source, IReadOnlyList<SpecError> errors) =>
        $"{source}: {errors.Count} problem{(errors.Count == 1 ? "" : "s")}:\n" +
        string.Join("\n", errors.Select(e => "  " + e));
}
