using System.Numerics;
using Engine.Tensors;
using Engine.Tensors.Cpu;

namespace Engine.Tests.Ops;

/// <summary>
/// Cpu/Gemm.cs against a float64 triple loop: every micro-kernel width (512, 256, 128 and scalar), float32
/// and float64, A and B row-major, transposed and strided with gaps, C with a row stride larger than N
/// (the gaps must stay untouched), overwrite and accumulate, and sizes that leave edge tiles and cross the
/// K-slice, row-block and column-block boundaries.
/// </summary>
public class GemmTests
{
    // M, N, K
    public static IEnumerable<object[]> Sizes() => new object[][]
    {
        [1, 1, 1],
        [7, 5, 3],        // smaller than one register tile
        [6, 32, 1],       // exactly one float32 tile, K = 1
        [13, 33, 17],     // edge tiles in both dims
        [37, 70, 129],
        [100, 3, 600],    // K over one slice (512) unevenly
        [263, 65, 1030],  // several row blocks and K slices
        [5, 3100, 4],     // wider than one packed column block (3072)
        [2, 9, 40],       // a matrix-vector-like shape that still uses tiles
        [9, 1, 21],       // N = 1: the GEMV path
        [1, 11, 21],      // M = 1: the vector-matrix path
    };

    private enum Layout { RowMajor, Transposed, Strided }

    /// <summary>Stores an r×c matrix in <paramref name="layout"/>: returns the buffer and (row stride, column stride).</summary>
    private static (double[] Buffer, long Rs, long Cs) Store(double[] v, long r, long c, Layout layout)
    {
        long rs, cs, size;
        switch (layout)
        {
            case Layout.RowMajor: rs = c; cs = 1; size = r * c; break;
            case Layout.Transposed: rs = 1; cs = r; size = r * c; break;
            default: rs = 2 * c + 3; cs = 2; size = r * rs + 1; break;
        }
        var buf = new double[Math.Max(size, 1)];
        Array.Fill(buf, double.NaN); // gaps hold NaN: reading one would poison the result
        for (long i = 0; i < r; i++)
            for (long j = 0; j < c; j++) buf[i * rs + j * cs] = v[i * c + j];
        return (buf, rs, cs);
    }

    private static unsafe double[] Run<T>(int bits, long m, long n, long k, (double[] Buf, long Rs, long Cs) a, (double[] Buf, long Rs, long Cs) b,
        long ldc, double[] cInit, bool accumulate, bool parallel) where T : unmanaged, INumber<T>
    {
        var ta = a.Buf.Select(T.CreateTruncating).ToArray();
        var tb = b.Buf.Select(T.CreateTruncating).ToArray();
        var tc = cInit.Select(T.CreateTruncating).ToArray();
        fixed (T* pa = ta, pb = tb, pc = tc)
        {
            if (bits == Gemm.PreferredBits) Gemm.Multiply(m, n, k, pa, a.Rs, a.Cs, pb, b.Rs, b.Cs, pc, ldc, parallel, accumulate);
            else if (m == 1 || n == 1) return []; // the matrix-vector paths do not depend on the width
            else Gemm.MultiplyWith(bits, m, n, k, pa, a.Rs, a.Cs, pb, b.Rs, b.Cs, pc, ldc, parallel, accumulate);
        }
        return tc.Select(double.CreateTruncating).ToArray();
    }

    [Theory]
    [MemberData(nameof(Sizes))]
    public void Multiply_MatchesFloat64Loop_EveryWidthLayoutAndDType(int m, int n, int k)
    {
        var rng = new Random(TestUtil.StableSeed($"gemm{m}x{n}x{k}"));
        var av = TestUtil.RandomValues(rng, (long)m * k);
        var bv = TestUtil.RandomValues(rng, (long)k * n);
        long ldc = n + 5;
        var cInit = TestUtil.RandomValues(rng, m * ldc);
        var prod = new double[(long)m * n];
        var abs = new double[(long)m * n];
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
                for (int p = 0; p < k; p++)
                {
                    double t = av[i * k + p] * bv[p * n + j];
                    prod[i * n + j] += t;
                    abs[i * n + j] += Math.Abs(t);
                }
        (Layout A, Layout B, bool Acc)[] combos =
        [
            (Layout.RowMajor, Layout.RowMajor, false),
            (Layout.Transposed, Layout.Transposed, true),
            (Layout.Strided, Layout.Transposed, false),
            (Layout.Transposed, Layout.Strided, true),
        ];
        foreach (int bits in new[] { 512, 256, 128, 0 })
            foreach (var dtype in new[] { DType.Float32, DType.Float64 })
                foreach (var (la, lb, acc) in combos)
                {
                    var a = Store(av, m, k, la);
                    var b = Store(bv, k, n, lb);
                    var got = dtype == DType.Float32
                        ? Run<float>(bits, m, n, k, a, b, ldc, cInit, acc, parallel: true)
                        : Run<double>(bits, m, n, k, a, b, ldc, cInit, acc, parallel: true);
                    if (got.Length == 0) continue;
                    double rel = dtype == DType.Float32 ? 1e-5 : 1e-13;
                    for (int i = 0; i < m; i++)
                        for (long j = 0; j < ldc; j++)
                        {
                            double c0 = dtype == DType.Float32 ? (float)cInit[i * ldc + j] : cInit[i * ldc + j];
                            string where = $"{dtype.Name()} width {bits} A {la} B {lb} accumulate {acc}: C[{i},{j}]";
                            if (j >= n)
                            {
                                Assert.True(got[i * ldc + j] == c0, $"{where} is past N and was changed");
                                continue;
                            }
                            double want = prod[i * n + j] + (acc ? c0 : 0);
                            double tol = rel * (abs[i * n + j] + (acc ? Math.Abs(c0) : 0)) + 1e-30;
                            Assert.True(Math.Abs(got[i * ldc + j] - want) <= tol, $"{where} = {got[i * ldc + j]}, float64 loop {want}");
                        }
                }
    }

    [Fact]
    public void Multiply_KZero_WritesZerosOrLeavesCWhenAccumulating()
    {
        var c = new double[] { 1, 2, 3, 4, 5, 6 };
        (double[], long, long) a = (new double[1], 0, 1);
        var got = Run<double>(Gemm.PreferredBits, 2, 3, 0, a, a, 3, c, accumulate: true, parallel: false);
        Assert.Equal(c, got);
        got = Run<double>(Gemm.PreferredBits, 2, 3, 0, a, a, 3, c, accumulate: false, parallel: false);
        Assert.Equal(new double[6], got);
    }

    [Fact]
    public void Multiply_ResultDoesNotDependOnThreading()
    {
        int saved = Parallelism.MaxThreads;
        try
        {
            var rng = new Random(5);
            long m = 301, n = 290, k = 700;
            var a = Store(TestUtil.RandomValues(rng, m * k), m, k, Layout.RowMajor);
            var b = Store(TestUtil.RandomValues(rng, k * n), k, n, Layout.Transposed);
            var c = new double[m * n];
            Parallelism.MaxThreads = 1;
            var one = Run<float>(Gemm.PreferredBits, m, n, k, a, b, n, c, false, parallel: false);
            foreach (int threads in new[] { 2, 3 })
            {
                Parallelism.MaxThreads = threads;
                var many = Run<float>(Gemm.PreferredBits, m, n, k, a, b, n, c, false, parallel: true);
                Assert.Equal(one, many); // bitwise: the K order of every sum is fixed by K alone
            }
        }
        finally { Parallelism.MaxThreads = saved; }
    }

    [Fact]
    public void MatMul_OfTransposedAndSlicedViews_MatchesFloat64()
    {
        // Through the public op: the views reach the GEMM as strides, not as copies.
        var rng = new Random(11);
        using var big = TestUtil.Random(rng, [90, 140], DType.Float32);
        using var at = big.T;                         // [140, 90], column-major
        using var a = at.Slice(0, 3, 140, 2);         // [69, 90], row stride 2, column stride 140
        using var b0 = TestUtil.Random(rng, [77, 90], DType.Float32);
        using var b = b0.T;                           // [90, 77]
        using var y = a.MatMul(b);
        using var ac = a.Contiguous();
        using var bc = b.Contiguous();
        var av = ac.ToArray<float>();
        var bv = bc.ToArray<float>();
        var yv = y.ToArray<float>();
        for (int i = 0; i < 69; i++)
            for (int j = 0; j < 77; j++)
            {
                double s = 0, t = 0;
                for (int p = 0; p < 90; p++) { s += (double)av[i * 90 + p] * bv[p * 77 + j]; t += Math.Abs((double)av[i * 90 + p] * bv[p * 77 + j]); }
                Assert.True(Math.Abs(yv[i * 77 + j] - s) <= 1e-5 * t, $"y[{i},{j}] = {yv[i * 77 + j]}, float64 {s}");
            }
    }
}
