using CsCheck;

namespace VmNet.Tests;

/// <summary>VmNet's SHA-256 (BouncyCastle's managed digest) gives the system's SHA-256, so derived MACs and UUIDs never change.</summary>
public sealed class Sha256Tests
{
    [Fact]
    public void It_equals_the_systems_sha256_for_any_input()
    {
        Gen.Byte.Array[0, 300].Sample(bytes =>
            Assert.Equal(System.Security.Cryptography.SHA256.HashData(bytes), Sha256.Hash(bytes)), iter: 2_000);
    }

    [Fact]
    public void A_known_answer()
    {
        // FIPS 180-2, appendix B.1.
        Assert.Equal("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", Convert.ToHexStringLower(Sha256.Hash("abc")));
    }
}
