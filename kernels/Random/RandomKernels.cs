// Random numbers on a device from the CPU's counter-based generator (Random/Philox.cs, Samplers.cs):
// Philox-4x32-10 keyed by the seed, counter = (block, generator offset), so element e of a draw
// depends only on (seed, offset, e) and a seed gives the same numbers on every device, bit for bit.
//
// Math      Philox4x32-10: 10 rounds of (c0, c1, c2, c3) ← (hi(M1·c2) ⊕ c1 ⊕ k0, lo(M1·c2),
//           hi(M0·c0) ⊕ c3 ⊕ k1, lo(M0·c0)), key bumped by (W0, W1) before every round but the first;
//           counter (c0, c1) = block, (c2, c3) = offset, key = seed (low word first), as Philox.Compute.
//           Bernoulli: element 2b takes the low 64-bit half (X1:X0) of block b, element 2b+1 the high
//           half (X3:X2); the sample is 1 when u = (bits >> 11)·2^-53 < p, else 0 (Samplers.BernoulliScalar).
//           The host passes threshold = ⌈p·2^53⌉ and the kernel tests (bits >> 11) < threshold, the
//           same comparison in integers (p·2^53 is exact in float64), so no float64 is needed on the device.
//           No gradient (random draws are constants).
// Layout    y contiguous float32 [n]; the host reserves ⌈n / PerBlock⌉ blocks of the generator (advancing
//           its offset exactly as the CPU draw does, so CPU and device draws can be interleaved).
// Bytes     4 B written per element; ~10 × (2 64-bit multiplies + 4 xors) per block: compute bound on
//           the integer pipes, a few µs for a million elements on a GPU.
// Launch    1-D, group RandomKernels.GroupSize (256), one thread per Philox block (2 Bernoulli
//           elements), grid = ceil(blocks / 256). Block indices are 64-bit (no 2^31 limit).
using Engine.Runtime.Kernels;

namespace Engine.Tensors.Kernels;

/// <summary>One Philox-4x32 output block (four 32-bit words).</summary>
internal struct PhiloxWords
{
    /// <summary>Word 0 (low half of the low 64 bits).</summary>
    public uint X0;
    /// <summary>Word 1.</summary>
    public uint X1;
    /// <summary>Word 2 (low half of the high 64 bits).</summary>
    public uint X2;
    /// <summary>Word 3.</summary>
    public uint X3;
}

/// <summary>Device samplers over the CPU's Philox stream (see the file header).</summary>
internal static partial class RandomKernels
{
    /// <summary>Threads per group.</summary>
    public const int GroupSize = 256;

    private const uint M0 = 0xD2511F53, M1 = 0xCD9E8D57;
    private const uint W0 = 0x9E3779B9, W1 = 0xBB67AE85;

    /// <summary>Philox4x32-10 of counter (block, offset) under key seed: Philox.Compute(seed, offset, block).</summary>
    [KernelFunction]
    public static PhiloxWords Philox(ulong seed, ulong offset, ulong block)
    {
        uint c0 = (uint)block, c1 = (uint)(block >> 32), c2 = (uint)offset, c3 = (uint)(offset >> 32);
        uint k0 = (uint)seed, k1 = (uint)(seed >> 32);
        for (int round = 0; round < 10; round++)
        {
            if (round > 0)
            {
                k0 += W0;
                k1 += W1;
            }
            ulong p0 = (ulong)M0 * c0, p1 = (ulong)M1 * c2;
            uint hi0 = (uint)(p0 >> 32), lo0 = (uint)p0;
            uint hi1 = (uint)(p1 >> 32), lo1 = (uint)p1;
            uint n0 = hi1 ^ c1 ^ k0;
            uint n2 = hi0 ^ c3 ^ k1;
            c0 = n0;
            c1 = lo1;
            c2 = n2;
            c3 = lo0;
        }
        return new PhiloxWords { X0 = c0, X1 = c1, X2 = c2, X3 = c3 };
    }

    /// <summary>y[e] = 1 if the 53-bit uniform of element e is below p (bits &gt;&gt; 11 &lt; threshold), else 0; one thread per block of 2 elements.</summary>
    [Kernel]
    public static void Bernoulli(ArrayView<float> y, ulong seed, ulong offset, ulong threshold, long n)
    {
        long b = (long)Grid.IdxX * Group.DimX + Group.IdxX;
        long e = b * 2;
        if (e >= n) return;
        var r = Philox(seed, offset, (ulong)b);
        ulong low = ((ulong)r.X1 << 32) | r.X0;
        ulong high = ((ulong)r.X3 << 32) | r.X2;
        y[e] = (low >> 11) < threshold ? 1f : 0f;
        if (e + 1 < n) y[e + 1] = (high >> 11) < threshold ? 1f : 0f;
    }
}
