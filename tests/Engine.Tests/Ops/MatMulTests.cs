using Engine.Tensors;

namespace Engine.Tests.Ops;

public class MatMulTests
{
    /// <summary>
    /// torch.matmul in plain loops over double: 1-D operands promoted (and the added dim removed),
    /// batch dims broadcast. Also returns Σ_p |a||b| per output element (for float32 error bounds) and K.
    /// </summary>
    private static (double[] Values, long[] Shape, double[] AbsSum, long K) Reference(double[] a, long[] sa, double[] b, long[] sb)
    {
        var a2 = sa.Length == 1 ? new long[] { 1, sa[0] } : sa;
        var b2 = sb.Length == 1 ? new long[] { sb[0], 1 } : sb;
        long m = a2[^2], k = a2[^1], n = b2[^1];
        var batchA = a2[..^2];
        var batchB = b2[..^2];
        var batch = TestUtil.BroadcastShape(batchA, batchB);
        long count = TestUtil.ShapeNumEl(batch);
        var values = new double[count * m * n];
        var abs = new double[count * m * n];
        for (long bi = 0; bi < count; bi++)
        {
            var idx = TestUtil.Unravel(bi, batch);
            long offA = FlatBatch(batchA, idx) * m * k, offB = FlatBatch(batchB, idx) * k * n;
            for (long i = 0; i < m; i++)
                for (long j = 0; j < n; j++)
                {
                    double s = 0, t = 0;
                    for (long p = 0; p < k; p++)
                    {
                        double x = a[offA + i * k + p], y = b[offB + p * n + j];
                        s += x * y;
                        t += Math.Abs(x * y);
                    }
                    values[(bi * m + i) * n + j] = s;
                    abs[(bi * m + i) * n + j] = t;
                }
        }
        var shape = batch.ToList();
        if (sa.Length > 1) shape.Add(m);
        if (sb.Length > 1) shape.Add(n);
        return (values, shape.ToArray(), abs, k);
    }

    private static long FlatBatch(long[] shape, long[] outIdx)
    {
        int lead = outIdx.Length - shape.Length;
        long flat = 0;
        for (int d = 0; d < shape.Length; d++) flat = flat * shape[d] + (shape[d] == 1 ? 0 : outIdx[lead + d]);
        return flat;
    }

    private static double[] Values(Tensor t) => t.To(DType.Float64).ToArray<double>();

    /// <summary>Compares with the reference; float32 within K·eps·Σ|a||b| (FMA accumulation in float32).</summary>
    private static void AssertMatches(Tensor a, Tensor b, Tensor y, string what)
    {
        var (expected, shape, abs, k) = Reference(Values(a), a.ShapeArray(), Values(b), b.ShapeArray());
        Assert.Equal(shape, y.ShapeArray());
        Assert.Equal(a.DType, y.DType);
        double eps = a.DType == DType.Float32 ? 6e-8 : 1.2e-16;
        var got = Values(y);
        for (int i = 0; i < expected.Length; i++)
        {
            double tol = 2 * (k + 1) * eps * abs[i] + 1e-30;
            Assert.True(Math.Abs(got[i] - expected[i]) <= tol, $"{what}: element {i}: expected {expected[i]:G10}, got {got[i]:G10} (tol {tol:G3})");
        }
    }

    public static IEnumerable<object[]> ShapePairs()
    {
        long[][][] pairs =
        [
            [[1], [1]], [[7], [7]], [[0], [0]],
            [[5], [5, 3]], [[4, 5], [5]], [[3, 4], [4, 2]],
            [[1, 1], [1, 1]], [[3, 17], [17, 33]], [[33, 65], [65, 130]], [[17, 1], [1, 5]],
            [[6, 32], [32, 32]], [[7, 33], [33, 65]], [[13, 130], [130, 3]],
            [[2, 3, 4], [4]], [[4], [2, 4, 3]], [[2, 3, 4], [4, 5]], [[3, 4], [2, 4, 5]],
            [[2, 1, 3, 4], [5, 4, 6]], [[2, 3, 5], [1, 5, 2]], [[0, 3, 4], [4, 2]], [[2, 0, 4], [2, 4, 3]],
            [[3, 0], [0, 4]], [[2, 3, 0], [2, 0, 5]], [[0, 4], [4, 3]], [[3, 4], [4, 0]],
            [[300, 257], [257, 129]], [[2, 5], [5, 3100]], [[1, 200], [200, 1]],
        ];
        foreach (var p in pairs)
            foreach (var dt in new[] { DType.Float32, DType.Float64 })
                yield return [p[0], p[1], dt];
    }

    [Theory]
    [MemberData(nameof(ShapePairs))]
    public void MatMul_MatchesFloat64Reference(long[] sa, long[] sb, DType dtype)
    {
        var rng = new Random(17);
        using var a = TestUtil.Random(rng, sa, dtype);
        using var b = TestUtil.Random(rng, sb, dtype);
        using var y = a.MatMul(b);
        AssertMatches(a, b, y, $"{Fmt(sa)}·{Fmt(sb)} {dtype}");
        using var y2 = Tensor.MatMul(a, b);
        Assert.Equal(Values(y), Values(y2));
    }

    private static string Fmt(long[] s) => "[" + string.Join(", ", s) + "]";

    [Fact]
    public void MatMul_KZero_GivesZeros()
    {
        using var a = Tensor.Empty([4, 0]);
        using var b = Tensor.Empty([0, 7]);
        using var y = a.MatMul(b);
        Assert.Equal([4, 7], y.ShapeArray());
        Assert.All(y.ToArray<float>(), v => Assert.Equal(0f, v));
        using var d = Tensor.Empty([0], DType.Float64).MatMul(Tensor.Empty([0], DType.Float64));
        Assert.Equal(0, d.Rank);
        Assert.Equal(0.0, d.Item<double>());
    }

    [Theory]
    [InlineData(DType.Float32)]
    [InlineData(DType.Float64)]
    public void MatMul_TransposedAndStridedViews_MatchReference(DType dtype)
    {
        var rng = new Random(5);
        // Aᵀ and Bᵀ views (column-major reads), a non-contiguous (every other element) B, a sliced A.
        using var at = TestUtil.Random(rng, [70, 37], dtype);
        using var a = at.T;
        using var bt = TestUtil.Random(rng, [45, 70], dtype);
        using var b = bt.T;
        using var y = a.MatMul(b);
        AssertMatches(a, b, y, "Aᵀ·Bᵀ");

        using var bc = TestUtil.Random(rng, [70, 45], dtype);
        using var bn = TestUtil.NonContiguous(bc);
        using var y2 = a.MatMul(bn);
        AssertMatches(a, bn, y2, "Aᵀ·strided B");

        // Matrix-vector shapes with transposed and strided operands.
        using var v0 = TestUtil.Random(rng, [70], dtype);
        using var v = TestUtil.NonContiguous(v0);
        using var av = a.MatMul(v);
        AssertMatches(a, v, av, "Aᵀ·strided v");
        using var w = TestUtil.Random(rng, [37], dtype);
        using var wa = w.MatMul(a);
        AssertMatches(w, a, wa, "w·Aᵀ");
        using var wr = w.Unsqueeze(0);
        using var wa2 = wr.MatMul(a);
        AssertMatches(wr, a, wa2, "[1, 37]·Aᵀ");
        using var ac = a.Contiguous();
        using var vc = v.Unsqueeze(1);
        using var av2 = ac.MatMul(vc);
        AssertMatches(ac, vc, av2, "A·[70, 1] strided");

        using var big = TestUtil.Random(rng, [50, 90], dtype);
        using var slice = big.Slice(0, 3, 50, 2).Narrow(1, 5, 70); // row stride 180, column stride 1
        using var y3 = slice.MatMul(bc);
        AssertMatches(slice, bc, y3, "sliced A·B");
    }

    [Theory]
    [InlineData(DType.Float32)]
    [InlineData(DType.Float64)]
    public void MatMul_BatchedPermutedAndExpandedViews_MatchReference(DType dtype)
    {
        var rng = new Random(9);
        // A batch whose matrices are transposed and whose batch dim is not outermost in memory.
        using var raw = TestUtil.Random(rng, [19, 3, 23], dtype);
        using var a = raw.Permute(1, 2, 0);               // [3, 23, 19]
        using var b0 = TestUtil.Random(rng, [19, 11], dtype);
        using var b = b0.Unsqueeze(0).Expand(3, 19, 11);  // batch stride 0
        using var y = a.MatMul(b);
        AssertMatches(a, b, y, "permuted·expanded");

        using var c0 = TestUtil.Random(rng, [4, 1, 6, 9], dtype);
        using var c = TestUtil.NonContiguous(c0);
        using var d = TestUtil.Random(rng, [5, 9, 2], dtype);
        using var y2 = c.MatMul(d);
        Assert.Equal([4, 5, 6, 2], y2.ShapeArray());
        AssertMatches(c, d, y2, "[4,1,6,9]·[5,9,2]");
    }

    [Fact]
    public void MatMul_LargeBatchOfSmallMatrices_MatchesReference()
    {
        var rng = new Random(3);
        using var a = TestUtil.Random(rng, [64, 7, 9]);
        using var b = TestUtil.Random(rng, [64, 9, 13]);
        using var y = a.MatMul(b);
        AssertMatches(a, b, y, "64 batched 7x9x13");
    }

    public static IEnumerable<object[]> GradShapes()
    {
        long[][] shapes = [[3], [2, 3], [2, 2, 3]];
        foreach (var sa in shapes)
            foreach (var sb in new long[][] { [3], [3, 2], [2, 3, 2] })
                yield return [sa, sb];
        yield return [new long[] { 2, 1, 2, 3 }, new long[] { 3, 3, 2 }];
        yield return [new long[] { 2, 3, 4 }, new long[] { 1, 4, 2 }];
    }

    [Theory]
    [MemberData(nameof(GradShapes))]
    public void MatMul_GradCheck(long[] sa, long[] sb)
    {
        var rng = new Random(11);
        using var a = TestUtil.Random(rng, sa, DType.Float64).RequiresGrad_();
        using var b = TestUtil.Random(rng, sb, DType.Float64).RequiresGrad_();
        GradCheck.Check(x => x[0].MatMul(x[1]), [a, b]);
    }

    [Fact]
    public void MatMul_GradCheck_TransposedInputAndOneSideOnly()
    {
        var rng = new Random(12);
        using var a = TestUtil.Random(rng, [4, 3], DType.Float64).RequiresGrad_();
        using var b = TestUtil.Random(rng, [4, 5], DType.Float64);
        GradCheck.Check(x => x[0].T.MatMul(x[1]), [a, b]);
        using var c = TestUtil.Random(rng, [3, 5], DType.Float64).RequiresGrad_();
        GradCheck.Check(x => x[1].MatMul(x[0].T), [c, b]);
    }

    [Fact]
    public void MatMul_SecondOrder()
    {
        var rng = new Random(13);
        using var a = TestUtil.Random(rng, [2, 3, 4], DType.Float64).RequiresGrad_();
        using var b = TestUtil.Random(rng, [4, 2], DType.Float64).RequiresGrad_();
        GradCheck.CheckSecondOrder(x => x[0].MatMul(x[1]), [a, b]);
        using var s = TestUtil.Random(rng, [3, 3], DType.Float64).RequiresGrad_();
        GradCheck.CheckSecondOrder(x => x[0].MatMul(x[0]).MatMul(x[0]), [s]);
        using var v = TestUtil.Random(rng, [3], DType.Float64).RequiresGrad_();
        GradCheck.CheckSecondOrder(x => x[0].MatMul(x[1]).MatMul(x[0]), [v, s]);
    }

    [Fact]
    public void MatMul_Errors_NameTheOpAndShapes()
    {
        using var a = Tensor.Zeros([2, 3]);
        using var b = Tensor.Zeros([4, 5]);
        var ex = Assert.Throws<ArgumentException>(() => a.MatMul(b));
        Assert.Contains("matmul", ex.Message);
        Assert.Contains("[2, 3]", ex.Message);
        Assert.Contains("[4, 5]", ex.Message);

        using var s = Tensor.Scalar(1);
        ex = Assert.Throws<ArgumentException>(() => s.MatMul(a));
        Assert.Contains("matmul", ex.Message);

        using var d = Tensor.Zeros([3, 2], DType.Float64);
        ex = Assert.Throws<ArgumentException>(() => a.MatMul(d));
        Assert.Contains("float64", ex.Message);

        using var i = Tensor.Zeros([2, 3], DType.Int64);
        using var j = Tensor.Zeros([3, 2], DType.Int64);
        ex = Assert.Throws<ArgumentException>(() => i.MatMul(j));
        Assert.Contains("int64", ex.Message);

        using var x = Tensor.Zeros([2, 2, 3]);
        using var y = Tensor.Zeros([3, 3, 4]);
        ex = Assert.Throws<ArgumentException>(() => x.MatMul(y));
        Assert.Contains("batch", ex.Message);
        Assert.Contains("[2, 2, 3]", ex.Message);
    }
}
