using System.Text;
using Org.BouncyCastle.Crypto.Digests;

namespace VmNet;

/// <summary>
/// SHA-256 of the short names VmNet derives stable identities from (generated MACs, domain UUIDs, the seed's
/// instance-id). The managed digest of BouncyCastle, not <c>System.Security.Cryptography.SHA256</c>: on Linux the
/// latter loads and initialises OpenSSL at its first call, which cost every <c>vmnet up --dry-run</c> some 10 ms.
/// The values are SHA-256's (a test holds them to the system's), so identities stay the same across versions.
/// </summary>
public static class Sha256
{
    public static byte[] Hash(string text) => Hash(Encoding.UTF8.GetBytes(text));

    public static byte[] Hash(ReadOnlySpan<byte> data)
    {
        var digest = new Sha256Digest();
        digest.BlockUpdate(data);
        var result = new byte[digest.GetDigestSize()];
        digest.DoFinal(result);
        return result;
    }
}
