using System.Text.Encodings.Web;
using System.Text.Json;
using CsCheck;
using VmNet.Rendering;

namespace VmNet.Tests.Rendering;

/// <summary>The <c>json</c>/<c>yaml</c> filter writes what System.Text.Json's relaxed encoder writes, by a fast path for ASCII.</summary>
public sealed class FilterTests
{
    private static string Relaxed(string s) => "\"" + JsonEncodedText.Encode(s, JavaScriptEncoder.UnsafeRelaxedJsonEscaping).Value + "\"";

    [Fact]
    public void Every_ascii_character_is_escaped_as_the_relaxed_encoder_does()
    {
        for (var c = 0; c < 128; c++)
        {
            var s = $"a{(char)c}b";
            Assert.Equal(Relaxed(s), Filters.Quoted(s));
        }
    }

    [Fact]
    public void Any_string_is_escaped_as_the_relaxed_encoder_does()
    {
        var ascii = Gen.Char[(char)0, (char)0x7F].Array[0, 60].Select(a => new string(a));
        var any = Gen.Char.Array[0, 60].Select(a => new string(a));
        Gen.OneOf(ascii, any).Sample(s => Assert.Equal(Relaxed(s), Filters.Quoted(s)), iter: 5_000);
    }
}
