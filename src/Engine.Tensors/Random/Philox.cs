using System.Runtime.CompilerServices;

namespace Engine.Tensors;

/// <summary>
/// Philox4x32-10, the counter-based generator of Salmon, Moraes, Dror and Shaw, "Parallel random
/// numbers: as easy as 1, 2, 3" (SC 2011), the one cuRAND and PyTorch's CUDA generator use.
/// <para>
/// A pure function of a 128-bit counter (four 32-bit words) and a 64-bit key (two words): ten
/// rounds, each multiplying words 0 and 2 by M0 and M1 into 64-bit products and mixing the halves
/// with words 1 and 3 and the key; the key is bumped by the Weyl constants W0, W1 between rounds.
/// Being a function of (counter, key), any block can be computed without computing the ones
/// before it, which is what makes the draws parallel and thread-count independent.
/// Checked against the Random123 known-answer vectors (tests/Engine.Tests/Random/RandomTests.cs).
/// </para>
/// </summary>
internal static class Philox
{
    private const uint M0 = 0xD2511F53, M1 = 0xCD9E8D57;
    private const uint W0 = 0x9E3779B9, W1 = 0xBB67AE85;

    /// <summary>Four 32-bit outputs of one Philox block.</summary>
    public struct Block
    {
        /// <summary>Output words.</summary>
        public uint X0, X1, X2, X3;

        /// <summary>Words 0 and 1 as one 64-bit value (word 1 high).</summary>
        public readonly ulong Low64 => (ulong)X1 << 32 | X0;

        /// <summary>Words 2 and 3 as one 64-bit value (word 3 high).</summary>
        public readonly ulong High64 => (ulong)X3 << 32 | X2;
    }

    /// <summary>Philox4x32-10 of counter (c0, c1, c2, c3) under key (k0, k1).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Block Compute(uint c0, uint c1, uint c2, uint c3, uint k0, uint k1)
    {
        for (int round = 0; round < 10; round++)
        {
            if (round > 0) { k0 += W0; k1 += W1; }
            ulong p0 = (ulong)M0 * c0, p1 = (ulong)M1 * c2;
            uint hi0 = (uint)(p0 >> 32), lo0 = (uint)p0;
            uint hi1 = (uint)(p1 >> 32), lo1 = (uint)p1;
            (c0, c1, c2, c3) = (hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0);
        }
        return new Block { X0 = c0, X1 = c1, X2 = c2, X3 = c3 };
    }

    /// <summary>
    /// The block the engine uses: counter = (block index low/high word, offset low/high word),
    /// key = seed (low word, high word).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Block Compute(ulong seed, ulong offset, ulong block)
        => Compute((uint)block, (uint)(block >> 32), (uint)offset, (uint)(offset >> 32), (uint)seed, (uint)(seed >> 32));
}
