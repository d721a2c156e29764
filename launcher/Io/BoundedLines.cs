using System.Text;

namespace VmNet.Io;

/// <summary>
/// Reads newline-ended lines from a stream someone else writes (a guest's report port): a line longer than
/// <see cref="MaxLine"/> bytes is skipped whole, without holding more than that, and a reader stops after
/// <see cref="MaxTotal"/> bytes. Invalid UTF-8 becomes U+FFFD.
/// </summary>
public sealed class BoundedLines(Stream stream, int maxLine = BoundedLines.DefaultMaxLine, long maxTotal = BoundedLines.DefaultMaxTotal)
{
    /// <summary>The longest report line taken: a report of 16 bonds with 4 members and 16 addresses each is under 8 KiB.</summary>
    public const int DefaultMaxLine = 64 * 1024;
    /// <summary>What one reader takes in all before it stops (<see cref="Exhausted"/>).</summary>
    public const long DefaultMaxTotal = 16L * 1024 * 1024;

    private static readonly UTF8Encoding Utf8 = new(false, false);
    private readonly byte[] _buffer = new byte[8192];
    private readonly MemoryStream _line = new();
    private int _start, _end;
    private bool _skipping;
    private long _total;

    public int MaxLine { get; } = maxLine;
    public long MaxTotal { get; } = maxTotal;

    /// <summary>Bytes read from the stream so far.</summary>
    public long Read => _total;

    /// <summary>Lines skipped for their length so far.</summary>
    public int Skipped { get; private set; }

    /// <summary>True once <see cref="MaxTotal"/> bytes were read: <see cref="ReadLineAsync"/> returns null from then on.</summary>
    public bool Exhausted => _total >= MaxTotal;

    /// <summary>The next line without its newline (and a CR before it), or null at the end of the stream or of the budget.</summary>
    public async ValueTask<string?> ReadLineAsync(CancellationToken ct)
    {
        while (true)
        {
            if (_start == _end)
            {
                if (Exhausted) return null;
                var n = await stream.ReadAsync(_buffer.AsMemory(0, (int)Math.Min(_buffer.Length, MaxTotal - _total)), ct).ConfigureAwait(false);
                if (n == 0)
                {
                    // The last line, if it ended without a newline and was not too long.
                    if (_line.Length == 0 || _skipping) { _line.SetLength(0); _skipping = false; return null; }
                    return Take();
                }
                _total += n;
                (_start, _end) = (0, n);
            }
            var newline = Array.IndexOf(_buffer, (byte)'\n', _start, _end - _start);
            var chunk = (newline < 0 ? _end : newline) - _start;
            if (!_skipping)
            {
                if (_line.Length + chunk > MaxLine) { _skipping = true; _line.SetLength(0); Skipped++; }
                else _line.Write(_buffer, _start, chunk);
            }
            _start += chunk;
            if (newline < 0) continue;
            _start++;                                   // the newline
            if (_skipping) { _skipping = false; continue; }
            return Take();
        }
    }

    private string Take()
    {
        var bytes = _line.GetBuffer().AsSpan(0, (int)_line.Length);
        if (bytes.Length > 0 && bytes[^1] == '\r') bytes = bytes[..^1];
        var text = Utf8.GetString(bytes);
        _line.SetLength(0);
        return text;
    }
}
