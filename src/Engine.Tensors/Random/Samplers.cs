using System.Numerics;
using Engine.Tensors.Cpu;

namespace Engine.Tensors;

/// <summary>
/// Turns Philox blocks into samples. A sampler writes a fixed number of elements per block
/// (<see cref="IBlockSampler{T}.PerBlock"/>), so element i comes from block i / PerBlock of the draw
/// and the draw is split into independent block ranges run in parallel.
/// </summary>
internal unsafe interface IBlockSampler<T> where T : unmanaged
{
    /// <summary>Elements written per Philox block.</summary>
    static abstract int PerBlock { get; }

    /// <summary>Writes elements [block·PerBlock, block·PerBlock + count) of the draw to <paramref name="dst"/>.</summary>
    void Write(ulong seed, ulong offset, ulong block, T* dst, int count);
}

/// <summary>
/// The sampling formulas. Bits to numbers:
/// <list type="bullet">
/// <item>float32 uniform: the high 24 bits of one word times 2^-24, so values are k·2^-24 in [0, 1)
/// (every float32 step of [0.5, 1); 0 and 1-2^-24 both reachable).</item>
/// <item>float64 uniform: the high 53 bits of a 64-bit pair times 2^-53, k·2^-53 in [0, 1).</item>
/// <item>normal: Box–Muller, z0 = r·cos θ, z1 = r·sin θ with r = sqrt(-2 ln u1), θ = 2π u2, from a pair
/// of uniforms where u1 is shifted to (0, 1] ((k+1)·2^-b) so ln u1 is finite; computed in float64
/// (also for float32 output). The smallest u1 bounds |z|: at most 5.77 for float32 (u1 ≥ 2^-24; the
/// normal puts 8e-9 of its mass beyond) and 8.57 for float64 (u1 ≥ 2^-53). Uniforms, integers, Bernoulli and permutations are bit-identical
/// everywhere; normals go through the platform's Math.Log/Sin/Cos, which can differ in the last
/// bit between operating systems (identical on one machine, for any thread count).</item>
/// </list>
/// </summary>
internal static unsafe class Samplers
{
    private const double TwoPi = 2 * Math.PI;
    private const float Scale24 = 1.0f / (1 << 24);
    private const double Scale53 = 1.0 / (1L << 53);

    /// <summary>Elements handed to one parallel work item: 16K blocks, a few hundred KB of output.</summary>
    private const long BlocksPerTask = 1 << 14;

    /// <summary>
    /// Fills <paramref name="n"/> contiguous elements at <paramref name="dst"/> from
    /// <paramref name="generator"/> (reserving the blocks, i.e. advancing its offset).
    /// </summary>
    public static void Run<T, TSampler>(Generator? generator, T* dst, long n, TSampler sampler)
        where T : unmanaged where TSampler : struct, IBlockSampler<T>
    {
        if (n == 0) return;
        int per = TSampler.PerBlock;
        long blocks = (n + per - 1) / per;
        var (seed, offset) = (generator ?? Generator.Default).Reserve((ulong)blocks);
        long tasks = (blocks + BlocksPerTask - 1) / BlocksPerTask;
        nint p = (nint)dst;
        Parallelism.For(tasks, n >= Parallelism.ElementwiseThreshold, t =>
        {
            long first = t * BlocksPerTask, last = Math.Min(blocks, first + BlocksPerTask);
            for (long b = first; b < last; b++)
            {
                long e = b * per;
                sampler.Write(seed, offset, (ulong)b, (T*)p + e, (int)Math.Min(per, n - e));
            }
        });
    }

    public static float Uniform24(uint word) => (word >> 8) * Scale24;

    public static double Uniform53(ulong bits) => (bits >> 11) * Scale53;

    /// <summary>lo + (hi − lo)·u for float32, kept below <paramref name="hi"/> if rounding reaches it.</summary>
    public readonly struct UniformFloat(double lo, double hi) : IBlockSampler<float>
    {
        public static int PerBlock => 4;

        public void Write(ulong seed, ulong offset, ulong block, float* dst, int count)
        {
            var r = Philox.Compute(seed, offset, block);
            ReadOnlySpan<uint> w = [r.X0, r.X1, r.X2, r.X3];
            for (int k = 0; k < count; k++) dst[k] = Map(Uniform24(w[k]));
        }

        private float Map(float u)
        {
            if (lo == 0 && hi == 1) return u;
            float v = (float)(lo + (hi - lo) * u);
            return v >= hi && hi > lo ? MathF.BitDecrement((float)hi) : v;
        }
    }

    /// <summary>lo + (hi − lo)·u for float64.</summary>
    public readonly struct UniformDouble(double lo, double hi) : IBlockSampler<double>
    {
        public static int PerBlock => 2;

        public void Write(ulong seed, ulong offset, ulong block, double* dst, int count)
        {
            var r = Philox.Compute(seed, offset, block);
            dst[0] = Map(Uniform53(r.Low64));
            if (count > 1) dst[1] = Map(Uniform53(r.High64));
        }

        private double Map(double u)
        {
            if (lo == 0 && hi == 1) return u;
            double v = lo + (hi - lo) * u;
            return v >= hi && hi > lo ? Math.BitDecrement(hi) : v;
        }
    }

    /// <summary>Box–Muller: two (u1 in (0,1], u2 in [0,1)) pairs per block → four float32 normals.</summary>
    public readonly struct NormalFloat(double mean, double std) : IBlockSampler<float>
    {
        public static int PerBlock => 4;

        public void Write(ulong seed, ulong offset, ulong block, float* dst, int count)
        {
            var r = Philox.Compute(seed, offset, block);
            var (z0, z1) = BoxMuller(((r.X0 >> 8) + 1) * (double)Scale24, Uniform24(r.X1));
            var (z2, z3) = BoxMuller(((r.X2 >> 8) + 1) * (double)Scale24, Uniform24(r.X3));
            ReadOnlySpan<double> z = [z0, z1, z2, z3];
            for (int k = 0; k < count; k++) dst[k] = (float)(mean + std * z[k]);
        }
    }

    /// <summary>Box–Muller: one (u1 in (0,1], u2 in [0,1)) pair of 53-bit uniforms per block → two float64 normals.</summary>
    public readonly struct NormalDouble(double mean, double std) : IBlockSampler<double>
    {
        public static int PerBlock => 2;

        public void Write(ulong seed, ulong offset, ulong block, double* dst, int count)
        {
            var r = Philox.Compute(seed, offset, block);
            var (z0, z1) = BoxMuller(((r.Low64 >> 11) + 1) * Scale53, Uniform53(r.High64));
            dst[0] = mean + std * z0;
            if (count > 1) dst[1] = mean + std * z1;
        }
    }

    private static (double, double) BoxMuller(double u1, double u2)
    {
        double radius = Math.Sqrt(-2 * Math.Log(u1));
        var (sin, cos) = Math.SinCos(TwoPi * u2);
        return (radius * cos, radius * sin);
    }

    /// <summary>
    /// Integers uniform on [low, low + range), unbiased: Lemire's multiply-shift (the high 64 bits of
    /// x·range for a 64-bit x) with rejection of the low products below (2^64 − range) mod range.
    /// Element e takes one 64-bit half of block e/2; a rejected element (probability below
    /// range/2^64) retries with block 2^63 | attempt·2^40 | e of the same offset, so every element
    /// still depends only on (seed, offset, e) and the draw reserves a fixed number of blocks.
    /// </summary>
    public readonly struct Integer(long low, ulong range) : IBlockSampler<long>
    {
        private const int MaxAttempts = 1 << 23;
        public const long MaxElements = 1L << 40;

        private readonly ulong _threshold = unchecked(0 - range) % range;

        public static int PerBlock => 2;

        public void Write(ulong seed, ulong offset, ulong block, long* dst, int count)
        {
            var r = Philox.Compute(seed, offset, block);
            dst[0] = Map(r.Low64, seed, offset, block * 2);
            if (count > 1) dst[1] = Map(r.High64, seed, offset, block * 2 + 1);
        }

        public long Map(ulong x, ulong seed, ulong offset, ulong element)
        {
            ulong hi = Math.BigMul(x, range, out ulong lo);
            for (ulong attempt = 1; lo < _threshold; attempt++)
            {
                if (attempt >= MaxAttempts) throw new InvalidOperationException("RandInt: rejection sampling did not terminate (unreachable in practice).");
                x = Philox.Compute(seed, offset, 1UL << 63 | attempt << 40 | element).Low64;
                hi = Math.BigMul(x, range, out lo);
            }
            return unchecked(low + (long)hi);
        }
    }

    /// <summary>1 where a 53-bit uniform u &lt; p, else 0 (so p = 0 never and p = 1 always gives 1).</summary>
    public readonly struct BernoulliScalar<T>(double p) : IBlockSampler<T> where T : unmanaged, IFloatingPoint<T>
    {
        public static int PerBlock => 2;

        public void Write(ulong seed, ulong offset, ulong block, T* dst, int count)
        {
            var r = Philox.Compute(seed, offset, block);
            dst[0] = Uniform53(r.Low64) < p ? T.One : T.Zero;
            if (count > 1) dst[1] = Uniform53(r.High64) < p ? T.One : T.Zero;
        }
    }

    /// <summary>Like <see cref="BernoulliScalar{T}"/> with element e's probability read from a contiguous tensor.</summary>
    public readonly struct BernoulliTensor<T>(nint probs) : IBlockSampler<T> where T : unmanaged, IFloatingPoint<T>
    {
        public static int PerBlock => 2;

        public void Write(ulong seed, ulong offset, ulong block, T* dst, int count)
        {
            var r = Philox.Compute(seed, offset, block);
            T* p = (T*)probs + (long)block * 2;
            dst[0] = Uniform53(r.Low64) < double.CreateTruncating(p[0]) ? T.One : T.Zero;
            if (count > 1) dst[1] = Uniform53(r.High64) < double.CreateTruncating(p[1]) ? T.One : T.Zero;
        }
    }
}
