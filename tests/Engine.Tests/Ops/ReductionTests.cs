using Engine.Tensors;

namespace Engine.Tests.Ops;

public class ReductionTests
{
    // ------------------------------------------------------------------ float64 reference

    /// <summary>Groups the row-major <paramref name="values"/> into one row per output element of a
    /// reduction over <paramref name="mask"/> (row elements in row-major order of the reduced dims).</summary>
    private static List<double>[] Rows(double[] values, long[] shape, bool[] mask)
    {
        long outer = 1;
        for (int d = 0; d < shape.Length; d++) if (!mask[d]) outer *= shape[d];
        var rows = Enumerable.Range(0, (int)outer).Select(_ => new List<double>()).ToArray();
        for (long i = 0; i < values.Length; i++)
        {
            var idx = TestUtil.Unravel(i, shape);
            long o = 0;
            for (int d = 0; d < shape.Length; d++) if (!mask[d]) o = o * shape[d] + idx[d];
            rows[o].Add(values[i]);
        }
        return rows;
    }

    private static long[] OutShape(long[] shape, bool[] mask, bool keepDim)
        => keepDim ? shape.Select((s, d) => mask[d] ? 1 : s).ToArray() : shape.Where((_, d) => !mask[d]).ToArray();

    private static bool[] Mask(int rank, int[]? dims)
    {
        var mask = new bool[rank];
        if (dims is null) { Array.Fill(mask, true); return mask; }
        foreach (var d in dims) if (rank > 0) mask[d < 0 ? d + rank : d] = true;
        return mask;
    }

    private static double RefSum(List<double> r) => r.Sum();
    private static double RefMean(List<double> r) => r.Count == 0 ? double.NaN : r.Sum() / r.Count;

    private static double RefVar(List<double> r, double correction)
    {
        double mean = RefMean(r);
        return r.Sum(v => (v - mean) * (v - mean)) / Math.Max(0, r.Count - correction);
    }

    private static double RefLogSumExp(List<double> r)
    {
        if (r.Count == 0) return double.NegativeInfinity;
        double m = r.Max();
        if (double.IsInfinity(m)) return m;
        return m + Math.Log(r.Sum(v => Math.Exp(v - m)));
    }

    private static int RefArg(List<double> r, bool max)
    {
        int best = 0;
        for (int i = 1; i < r.Count; i++) if (max ? r[i] > r[best] : r[i] < r[best]) best = i;
        return best;
    }

    /// <summary>Dim sets for a rank: null (all), every single dim (and its negative form), pairs like {0, 2}.</summary>
    private static IEnumerable<int[]?> DimSets(int rank)
    {
        yield return null;
        for (int d = 0; d < Math.Max(rank, 1); d++) { yield return [d]; yield return [d - Math.Max(rank, 1)]; }
        for (int a = 0; a < rank; a++) for (int b = a + 1; b < rank; b++) yield return [a, b - rank];
    }

    private delegate Tensor? Op(Tensor x, int[]? dims, bool keepDim);

    /// <summary>Runs <paramref name="op"/> on every shape, layout, dtype, dim set and keepDim against
    /// <paramref name="reference"/> applied to each reduced row.</summary>
    private static void CheckAgainstReference(string name, Op op, Func<List<double>, double> reference, bool emptyThrows = false,
        double lo = -1, double hi = 1, double rtol32 = 2e-5, double atol32 = 2e-5)
    {
        var rng = new Random(TestUtil.StableSeed(name));
        foreach (var shape in TestUtil.Shapes())
            foreach (var dtype in new[] { DType.Float32, DType.Float64 })
            {
                var values = TestUtil.RandomValues(rng, TestUtil.ShapeNumEl(shape), lo, hi);
                if (dtype == DType.Float32) values = values.Select(v => (double)(float)v).ToArray();
                var layouts = TestUtil.Layouts(values, shape, dtype).ToList();
                foreach (var dims in DimSets(shape.Length))
                {
                    var mask = Mask(shape.Length, dims);
                    var rows = Rows(values, shape, mask);
                    bool throws = emptyThrows && rows.Length > 0 && rows[0].Count == 0;
                    var expected = throws ? [] : rows.Select(reference).ToArray();
                    foreach (var (layout, x) in layouts)
                        foreach (var keepDim in new[] { false, true })
                        {
                            string what = $"{name} {dtype.Name()} {layout} shape {string.Join("x", shape)} dims [{(dims is null ? "all" : string.Join(",", dims))}] keepDim {keepDim}";
                            if (throws)
                            {
                                var ex = Assert.Throws<ArgumentException>(() => op(x, dims, keepDim));
                                Assert.Contains(name, ex.Message);
                                continue;
                            }
                            using var y = op(x, dims, keepDim);
                            if (y is null) continue; // the op has no form for this dim set
                            Assert.Equal(dims is null && !keepDim ? [] : OutShape(shape, mask, keepDim), y.ShapeArray());
                            if (dtype == DType.Float64) TestUtil.AssertClose(expected, y, 1e-10, 1e-10, what);
                            else
                            {
                                // float32 sums round in an order the reference does not follow: allow
                                // an error proportional to the row's sum of magnitudes (its condition).
                                var got = y.To(DType.Float64).ToArray<double>();
                                for (int i = 0; i < expected.Length; i++)
                                {
                                    double magnitude = rows[i].Sum(Math.Abs);
                                    TestUtil.AssertClose([expected[i]], [got[i]], atol32 + 1e-7 * magnitude, rtol32, $"{what} (row {i})");
                                }
                            }
                        }
                }
                foreach (var (_, x) in layouts) x.Dispose();
            }
    }

    // ------------------------------------------------------------------ values against the reference

    [Fact]
    public void Sum_MatchesReference() => CheckAgainstReference("sum",
        (x, d, k) => d is null ? (k ? x.Sum(Enumerable.Range(0, x.Rank).ToArray(), true) : x.Sum()) : x.Sum(d, k), RefSum);

    [Fact]
    public void Mean_MatchesReference() => CheckAgainstReference("mean",
        (x, d, k) => d is null ? (k ? x.Mean(Enumerable.Range(0, x.Rank).ToArray(), true) : x.Mean()) : d.Length == 1 ? x.Mean(d[0], k) : x.Mean(d, k), RefMean);

    [Fact]
    public void Var_MatchesReference()
    {
        CheckAgainstReference("var", (x, d, k) => d is null && !k ? x.Var() : x.Var(d, k), r => RefVar(r, 1), rtol32: 1e-4);
        CheckAgainstReference("var", (x, d, k) => x.Var(d, k, correction: 0), r => RefVar(r, 0), rtol32: 1e-4);
    }

    [Fact]
    public void Std_MatchesReference()
        => CheckAgainstReference("std", (x, d, k) => d is null ? x.Std(null, k) : d.Length == 1 ? x.Std(d[0], k) : x.Std(d, k), r => Math.Sqrt(RefVar(r, 1)), rtol32: 1e-4);

    [Fact]
    public void Max_MatchesReference() => CheckAgainstReference("max",
        (x, d, k) => d is null && !k ? x.Max() : d is null ? x.Max(Enumerable.Range(0, x.Rank).ToArray(), k) : d.Length == 1 ? x.Max(d[0], k) : x.Max(d, k),
        r => r.Max(), emptyThrows: true);

    [Fact]
    public void Min_MatchesReference() => CheckAgainstReference("min",
        (x, d, k) => d is null && !k ? x.Min() : d is null ? x.Min(Enumerable.Range(0, x.Rank).ToArray(), k) : d.Length == 1 ? x.Min(d[0], k) : x.Min(d, k),
        r => r.Min(), emptyThrows: true);

    [Fact]
    public void LogSumExp_MatchesReference() => CheckAgainstReference("logsumexp",
        (x, d, k) => d is null && !k ? x.LogSumExp() : d is null ? x.LogSumExp(Enumerable.Range(0, x.Rank).ToArray(), k) : d.Length == 1 ? x.LogSumExp(d[0], k) : x.LogSumExp(d, k),
        RefLogSumExp, lo: -30, hi: 30);

    [Fact]
    public void ArgMaxArgMin_AndWithIndices_MatchReference()
    {
        foreach (var max in new[] { true, false })
        {
            string name = max ? "argmax" : "argmin";
            // All dims: a flat row-major index.
            CheckAgainstReference(name, (x, d, k) => d is null && !k ? (max ? x.ArgMax() : x.ArgMin()) : (d is { Length: 1 } ? (max ? x.ArgMax(d[0], k) : x.ArgMin(d[0], k)) : FlatArg(x, d, max, k)),
                r => RefArg(r, max), emptyThrows: true);
            string op = max ? "max" : "min";
            CheckAgainstReference(op, (x, d, k) => d is { Length: 1 } ? Pick(x, d[0], k, max).Indices : FlatArg(x, d, max, k), r => RefArg(r, max), emptyThrows: true);
            CheckAgainstReference(op, (x, d, k) => d is { Length: 1 } ? Pick(x, d[0], k, max).Values : FlatMax(x, d, max, k), r => max ? r.Max() : r.Min(), emptyThrows: true);
        }

        // The API has index forms for one dim and for all dims (flat index, checked through a 1-d view); other dim sets are skipped.
        static Tensor? FlatArg(Tensor x, int[]? dims, bool max, bool keepDim)
        {
            if (dims is not null && dims.Length != x.Rank) return null;
            using var flat = x.Reshape(-1);
            using var a = max ? flat.ArgMax() : flat.ArgMin();
            return keepDim ? a.Reshape(x.Shape.ToArray().Select(_ => 1L).ToArray()) : a.Alias();
        }
        static Tensor? FlatMax(Tensor x, int[]? dims, bool max, bool keepDim) => dims is not null && dims.Length != x.Rank ? null : keepDim
            ? (max ? x.Max(Enumerable.Range(0, x.Rank).ToArray(), true) : x.Min(Enumerable.Range(0, x.Rank).ToArray(), true))
            : (max ? x.Max() : x.Min());
        static (Tensor Values, Tensor Indices) Pick(Tensor x, int dim, bool keepDim, bool max)
            => max ? x.MaxWithIndices(dim, keepDim) : x.MinWithIndices(dim, keepDim);
    }

    [Fact]
    public void IntegerInputs_SumMaxArgMax_AndLogSumExpInFloat32()
    {
        using var x = Tensor.FromArray(new long[] { 3, -7, 9, 9, 0, -1 }, 2, 3);
        Assert.Equal([5L, 8L], x.Sum(1).ToArray<long>());
        Assert.Equal([9L, 9L], x.Max(1).ToArray<long>());
        Assert.Equal([-7L, -1L], x.Min(1).ToArray<long>());
        Assert.Equal([2L, 0L], x.ArgMax(1).ToArray<long>());
        using var i32 = Tensor.FromArray(new int[] { 1, 5, 2, 5 }, 4);
        Assert.Equal(5, i32.Max().Item<int>());
        Assert.Equal(1L, i32.ArgMax().Item<long>());
        using var lse = i32.LogSumExp();
        Assert.Equal(DType.Float32, lse.DType);
        Assert.Equal(Math.Log(Math.Exp(1) + 2 * Math.Exp(5) + Math.Exp(2)), lse.ToDouble(), 5);
    }

    // ------------------------------------------------------------------ fast paths (leading / middle dims)

    [Fact]
    public void LeadingAndMiddleDimFastPath_MatchesReference()
    {
        var rng = new Random(7);
        foreach (var (shape, dims) in new (long[], int[])[]
        {
            ([300, 40], [0]),            // rows > the cascade group, one work item
            ([3, 200, 50], [1]),         // middle dim
            ([2000, 33], [0]),           // parallel, split into row blocks
            ([5, 7, 4100], [0, 1]),      // two leading dims, more than one column block
            ([70000, 17], [0]),          // long float32 column sums
            ([1, 64, 1, 20], [1, 2]),    // size-1 dims around the block
        })
        {
            foreach (var dtype in new[] { DType.Float32, DType.Float64 })
            {
                var values = TestUtil.RandomValues(rng, TestUtil.ShapeNumEl(shape), 0, 1);
                if (dtype == DType.Float32) values = values.Select(v => (double)(float)v).ToArray();
                using var x = TestUtil.FromDoubles(values, shape, dtype);
                var rows = Rows(values, shape, Mask(shape.Length, dims));
                double tol = dtype == DType.Float32 ? 2e-6 : 1e-12;
                using var s = x.Sum(dims);
                TestUtil.AssertClose(rows.Select(RefSum).ToArray(), s, 0, tol, $"sum {string.Join("x", shape)}");
                using var m = x.Mean(dims);
                TestUtil.AssertClose(rows.Select(RefMean).ToArray(), m, 0, tol, $"mean {string.Join("x", shape)}");
                using var mx = x.Max(dims);
                TestUtil.AssertClose(rows.Select(r => r.Max()).ToArray(), mx, 0, 0, $"max {string.Join("x", shape)}");
                using var mn = x.Min(dims);
                TestUtil.AssertClose(rows.Select(r => r.Min()).ToArray(), mn, 0, 0, $"min {string.Join("x", shape)}");
            }
        }
    }

    [Fact]
    public void LeadingDimFastPath_Integers()
    {
        var data = Enumerable.Range(0, 40 * 20).Select(i => (i * 37) % 101 - 50).ToArray();
        using var x = Tensor.FromArray(data, 40, 20);
        var cols = Enumerable.Range(0, 20).Select(c => Enumerable.Range(0, 40).Select(r => data[r * 20 + c]).ToArray()).ToArray();
        Assert.Equal(cols.Select(c => (long)c.Sum()).ToArray(), x.Sum(0).ToArray<long>());
        Assert.Equal(cols.Select(c => c.Max()).ToArray(), x.Max(0).ToArray<int>());
        Assert.Equal(cols.Select(c => c.Min()).ToArray(), x.Min(0).ToArray<int>());
    }

    [Fact]
    public void LongRows_FewOuter_SumIsAccurate()
    {
        var rng = new Random(3);
        long[] shape = [3, 600_000];
        var values = TestUtil.RandomValues(rng, TestUtil.ShapeNumEl(shape), 0, 1).Select(v => (double)(float)v).ToArray();
        using var x = TestUtil.FromDoubles(values, shape);
        var rows = Rows(values, shape, [false, true]);
        TestUtil.AssertClose(rows.Select(RefSum).ToArray(), x.Sum(1), 0, 1e-5);
        TestUtil.AssertClose(rows.Select(RefMean).ToArray(), x.Mean(1), 0, 1e-5);
        TestUtil.AssertClose(rows.Select(r => RefVar(r, 1)).ToArray(), x.Var(1), 0, 1e-5);
    }

    // ------------------------------------------------------------------ special values

    [Fact]
    public void Var_OfLargeOffset_HasNoCancellation()
    {
        // float32 values 1e4 + small noise: E[x²] − E[x]² would lose every digit.
        var rng = new Random(11);
        var values = TestUtil.RandomValues(rng, 4097, -1, 1).Select(v => (double)(float)(1e4 + v)).ToArray();
        using var x = TestUtil.FromDoubles(values, [4097]);
        var row = values.ToList();
        TestUtil.AssertClose([RefVar(row, 1)], x.Var(), 0, 1e-4);
    }

    [Fact]
    public void EmptyAndDegenerate_FollowPyTorch()
    {
        using var e = Tensor.Zeros([0, 3]);
        Assert.Equal([0f, 0f, 0f], e.Sum(0).ToArray<float>());
        Assert.Equal(0f, e.Sum().Item<float>());
        Assert.All(e.Mean(0).ToArray<float>(), v => Assert.True(float.IsNaN(v)));
        Assert.True(float.IsNaN(e.Mean().Item<float>()));
        Assert.Equal(float.NegativeInfinity, e.LogSumExp().Item<float>());
        Assert.Equal([0L], e.Max(1).ShapeArray());
        var ex = Assert.Throws<ArgumentException>(() => e.Max(0));
        Assert.Contains("max", ex.Message);
        Assert.Contains("empty", ex.Message);
        Assert.Contains("argmin", Assert.Throws<ArgumentException>(() => e.ArgMin()).Message);
        Assert.Contains("min", Assert.Throws<ArgumentException>(() => e.MinWithIndices(0)).Message);
        // One element with correction 1: 0/0 = NaN, as torch.var.
        using var one = Tensor.FromArray([5.0], 1);
        Assert.True(double.IsNaN(one.Var().ToDouble()));
        Assert.Equal(0.0, one.Var(0, correction: 0).ToDouble());
    }

    [Fact]
    public void LogSumExp_InfiniteRows()
    {
        var ninf = float.NegativeInfinity;
        using var x = Tensor.FromArray(new[] { ninf, ninf, float.PositiveInfinity, 1f, 1e4f, -1e4f, ninf, 0f }, 4, 2);
        var y = x.LogSumExp(1).ToArray<float>();
        Assert.Equal(ninf, y[0]);
        Assert.Equal(float.PositiveInfinity, y[1]);
        Assert.Equal(1e4f, y[2]);
        Assert.Equal(0f, y[3]);
        using var big = Tensor.FromArray(new[] { 100f, 100f }, 2);
        Assert.Equal(100 + Math.Log(2), big.LogSumExp().ToDouble(), 4);
    }

    [Fact]
    public void Ties_ArgMaxTakesFirst_NaNWins()
    {
        // Row 1: −0 and +0 are equal, so the first of them is the max (TensorPrimitives would pick +0).
        using var x = Tensor.FromArray(new[] { 1f, 3f, 3f, -0f, 0f, -1f, float.NaN, 7f, float.NaN }, 3, 3);
        Assert.Equal([1L, 0L, 0L], x.ArgMax(1).ToArray<long>());
        Assert.Equal([0L, 2L, 0L], x.ArgMin(1).ToArray<long>());
        var (v, i) = x.MaxWithIndices(1);
        Assert.Equal([1L, 0L, 0L], i.ToArray<long>());
        Assert.True(float.IsNaN(v.ToArray<float>()[2]));
        Assert.True(float.IsNaN(x.Max().Item<float>()));
        Assert.Equal(6L, x.ArgMax().Item<long>());

        // Long rows (the vectorized search): ties at 300, 700 and 901 → 300; ±0 ties → the first zero.
        foreach (var dtype in new[] { DType.Float32, DType.Float64, DType.Int32, DType.Int64 })
        {
            var vals = Enumerable.Range(0, 1000).Select(i => (double)(i % 13) - 20).ToArray();
            vals[300] = vals[700] = vals[901] = 5;
            vals[333] = vals[555] = vals[999] = -50;
            using var t = TestUtil.FromDoubles(vals, [1000], dtype);
            Assert.Equal(300L, t.ArgMax().Item<long>());
            Assert.Equal(333L, t.ArgMin().Item<long>());
            using var rows = t.Reshape(2, 500);
            Assert.Equal([300L, 200L], rows.ArgMax(1).ToArray<long>());
            Assert.Equal([333L, 55L], rows.ArgMin(1).ToArray<long>());
        }
        var zeros = Enumerable.Range(0, 600).Select(i => i < 100 ? -1f : i % 2 == 0 ? -0f : 0f).ToArray();
        using var z = Tensor.FromArray(zeros, 600);
        Assert.Equal(100L, z.ArgMax().Item<long>());
    }

    // ------------------------------------------------------------------ gradients

    private static Tensor Input(long[] shape, int seed, double lo = -1, double hi = 1)
        => TestUtil.Random(new Random(seed), shape, DType.Float64, lo, hi).RequiresGrad_();

    private static readonly (long[] Shape, int[]? Dims, bool KeepDim)[] GradCases =
    [
        ([3, 4, 5], [1], false),
        ([3, 4, 5], [0, 2], true),
        ([3, 4, 5], [-1], true),
        ([3, 4, 5], null, false),
        ([6], [0], false),
    ];

    private static int[] AllDims(long[] shape) => Enumerable.Range(0, shape.Length).ToArray();

    [Fact]
    public void GradCheck_Reductions()
    {
        int seed = 0;
        foreach (var (shape, dims, keepDim) in GradCases)
        {
            var d = dims ?? AllDims(shape);
            using var x = Input(shape, seed++);
            GradCheck.Check(t => t[0].Sum(d, keepDim), [x]);
            GradCheck.Check(t => t[0].Mean(d, keepDim), [x]);
            GradCheck.Check(t => t[0].Var(dims, keepDim), [x]);
            GradCheck.Check(t => t[0].Var(dims, keepDim, correction: 0), [x]);
            GradCheck.Check(t => t[0].Std(dims, keepDim), [x]);
            GradCheck.Check(t => t[0].Max(d, keepDim), [x]);
            GradCheck.Check(t => t[0].Min(d, keepDim), [x]);
            GradCheck.Check(t => t[0].LogSumExp(d, keepDim), [x]);
            GradCheck.Check(t => t[0].MaxWithIndices(d[0], keepDim).Values, [x]);
            GradCheck.Check(t => t[0].MinWithIndices(d[0], keepDim).Values, [x]);
        }
        using var nc = Input([4, 3], 99);
        GradCheck.Check(t => t[0].T.LogSumExp(0), [nc]);
        GradCheck.Check(t => t[0].T.Var(1), [nc]);
        GradCheck.Check(t => t[0].T.Max(0), [nc]);
        GradCheck.Check(t => t[0].Mean(), [nc]);
        GradCheck.Check(t => t[0].Max(), [nc]);
        GradCheck.Check(t => t[0].LogSumExp(), [nc]);
    }

    [Theory]
    [InlineData("logsumexp")]
    [InlineData("var")]
    [InlineData("std")]
    [InlineData("mean")]
    public void SecondOrder(string op)
    {
        int seed = 100;
        foreach (var (shape, dims, keepDim) in GradCases)
        {
            var d = dims ?? AllDims(shape);
            using var x = Input(shape, seed++);
            Func<Tensor[], Tensor> f = op switch
            {
                "logsumexp" => t => t[0].LogSumExp(d, keepDim),
                "var" => t => t[0].Var(dims, keepDim),
                "std" => t => t[0].Std(dims, keepDim),
                _ => t => t[0].Mean(d, keepDim).Mul(t[0].Mean(d, keepDim)),
            };
            GradCheck.CheckSecondOrder(f, [x]);
        }
    }

    [Fact]
    public void MaxGradient_SplitsTies_WithIndicesGoesToFirst()
    {
        using var x = Tensor.FromArray([1.0, 3.0, 3.0, 2.0]).RequiresGrad_();
        x.Max().Backward();
        TestUtil.AssertClose([0, 0.5, 0.5, 0], x.Grad!);
        using var x2 = Tensor.FromArray([1.0, 3.0, 3.0, 2.0], 1, 4).RequiresGrad_();
        x2.MaxWithIndices(1).Values.Sum().Backward();
        TestUtil.AssertClose([0, 1, 0, 0], x2.Grad!);
        using var x3 = Tensor.FromArray([1.0, 5.0, 1.0, 2.0], 2, 2).RequiresGrad_();
        x3.Min(0).Sum().Backward();
        TestUtil.AssertClose([0.5, 0, 0.5, 1], x3.Grad!);
    }

    // ------------------------------------------------------------------ errors

    [Fact]
    public void BadDims_NameTheOpAndRank()
    {
        using var x = Tensor.Zeros([2, 3]);
        foreach (var (op, f) in new (string, Action)[]
        {
            ("sum", () => x.Sum(2)), ("mean", () => x.Mean(-3)), ("var", () => x.Var(5)), ("std", () => x.Std(2)),
            ("max", () => x.Max(2)), ("min", () => x.Min([0, 7])), ("argmax", () => x.ArgMax(2)), ("argmin", () => x.ArgMin(-3)),
            ("logsumexp", () => x.LogSumExp(3)), ("max", () => x.MaxWithIndices(2)),
        })
        {
            var ex = Assert.Throws<ArgumentOutOfRangeException>(f);
            Assert.Contains(op, ex.Message);
            Assert.Contains("rank 2", ex.Message);
        }
        foreach (var (op, f) in new (string, Action)[]
        {
            ("sum", () => x.Sum([0, -2])), ("mean", () => x.Mean([1, 1])), ("max", () => x.Max([1, -1])), ("logsumexp", () => x.LogSumExp([0, 0])),
            ("var", () => x.Var([0, -2])),
        })
        {
            var ex = Assert.Throws<ArgumentException>(f);
            Assert.Contains(op, ex.Message);
            Assert.Contains("more than once", ex.Message);
        }
        using var ints = Tensor.FromArray(new[] { 1, 2 }, 2);
        Assert.Contains("mean", Assert.Throws<ArgumentException>(() => ints.Mean()).Message);
        Assert.Contains("int32", Assert.Throws<ArgumentException>(() => ints.Var()).Message);
    }
}
