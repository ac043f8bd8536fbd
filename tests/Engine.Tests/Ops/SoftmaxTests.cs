using Engine.Tensors;

namespace Engine.Tests.Ops;

public class SoftmaxTests
{
    /// <summary>float64 reference: softmax or log_softmax of x / T along <paramref name="dim"/>, plain loops.</summary>
    private static double[] Reference(double[] values, long[] shape, int dim, double temperature, bool log)
    {
        var result = new double[values.Length];
        if (shape.Length == 0)
        {
            result[0] = double.IsFinite(values[0]) ? (log ? 0 : 1) : double.NaN;
            return result;
        }
        int d = dim < 0 ? dim + shape.Length : dim;
        long n = shape[d], inner = 1;
        for (int i = d + 1; i < shape.Length; i++) inner *= shape[i];
        long outer = n == 0 || inner == 0 ? 0 : values.Length / (n * inner);
        for (long o = 0; o < outer; o++)
            for (long k = 0; k < inner; k++)
            {
                long At(long j) => (o * n + j) * inner + k;
                double m = double.NegativeInfinity;
                for (long j = 0; j < n; j++) m = Math.Max(m, values[At(j)] / temperature);
                double s = 0;
                for (long j = 0; j < n; j++) s += Math.Exp(values[At(j)] / temperature - m);
                for (long j = 0; j < n; j++)
                {
                    double z = values[At(j)] / temperature - m;
                    result[At(j)] = log ? z - Math.Log(s) : Math.Exp(z) / s;
                }
            }
        return result;
    }

    [Fact]
    public void SoftmaxAndLogSoftmax_MatchReference()
    {
        var rng = new Random(5);
        foreach (var shape in TestUtil.Shapes())
            foreach (var dtype in new[] { DType.Float32, DType.Float64 })
            {
                var values = TestUtil.RandomValues(rng, TestUtil.ShapeNumEl(shape), -5, 5);
                if (dtype == DType.Float32) values = values.Select(v => (double)(float)v).ToArray();
                foreach (var (layout, x) in TestUtil.Layouts(values, shape, dtype))
                    using (x)
                        for (int dim = -Math.Max(shape.Length, 1); dim < Math.Max(shape.Length, 1); dim++)
                            // The large shape (the parallel path) with one temperature only, to keep the test short.
                            foreach (var t in values.Length > 10_000 ? [3.0] : new[] { 1.0, 0.5, 3.0 })
                                foreach (var log in new[] { false, true })
                                {
                                    using var y = log ? x.LogSoftmax(dim, t) : x.Softmax(dim, t);
                                    Assert.Equal(shape, y.ShapeArray());
                                    Assert.Equal(dtype, y.DType);
                                    var what = $"{(log ? "log_softmax" : "softmax")} {dtype.Name()} {layout} shape {string.Join("x", shape)} dim {dim} T {t}";
                                    double tol = dtype == DType.Float32 ? 2e-6 : 1e-13;
                                    TestUtil.AssertClose(Reference(values, shape, dim, t, log), y, tol, log ? tol : 1e-5 * tol, what);
                                }
            }
    }

    [Fact]
    public void ExtremeLogitsAndTemperatures_StayFinite_AndMatchFloat64()
    {
        var rng = new Random(9);
        long[] shape = [8, 37];
        foreach (var dtype in new[] { DType.Float32, DType.Float64 })
        {
            var values = TestUtil.RandomValues(rng, TestUtil.ShapeNumEl(shape), -1e4, 1e4);
            for (int i = 0; i < values.Length; i += 5) values[i] = i % 2 == 0 ? 1e4 : -1e4;
            if (dtype == DType.Float32) values = values.Select(v => (double)(float)v).ToArray();
            using var x = TestUtil.FromDoubles(values, shape, dtype);
            foreach (var t in new[] { 0.05, 1.0, 20.0 })
                foreach (var dim in new[] { 0, 1 })
                {
                    using var p = x.Softmax(dim, t);
                    using var lp = x.LogSoftmax(dim, t);
                    var pv = p.To(DType.Float64).ToArray<double>();
                    var lv = lp.To(DType.Float64).ToArray<double>();
                    Assert.All(pv, v => Assert.True(double.IsFinite(v) && v >= 0 && v <= 1));
                    Assert.All(lv, v => Assert.True(double.IsFinite(v) && v <= 0));
                    // float32: x − m is rounded relative to |x| ~ 1e4, then scaled by 1/T.
                    double atol = dtype == DType.Float32 ? 1e-3 * Math.Max(1, 1 / t) : 1e-9;
                    TestUtil.AssertClose(Reference(values, shape, dim, t, log: false), pv, atol, 1e-5, $"softmax T {t} dim {dim}");
                    TestUtil.AssertClose(Reference(values, shape, dim, t, log: true), lv, atol, 1e-6, $"log_softmax T {t} dim {dim}");
                }
        }
    }

    [Fact]
    public void MaskedEntries_AndAllMaskedRows()
    {
        var ninf = float.NegativeInfinity;
        using var x = Tensor.FromArray(new[] { 1f, ninf, 1f, ninf, ninf, ninf }, 2, 3);
        var p = x.Softmax(1, 0.5).ToArray<float>();
        Assert.Equal([0.5f, 0f, 0.5f], p[..3]);
        Assert.All(p[3..], v => Assert.True(float.IsNaN(v))); // all −∞: NaN, as PyTorch
        var lp = x.LogSoftmax(1).ToArray<float>();
        Assert.Equal(-MathF.Log(2), lp[0], 6);
        Assert.Equal(ninf, lp[1]);
        Assert.All(lp[3..], v => Assert.True(float.IsNaN(v)));

        // The same along dim 0 of a wide tensor (the column kernel): column 0 all −∞, column 1 one −∞.
        var values = new float[3 * 20];
        for (int i = 0; i < values.Length; i++) values[i] = i % 20 == 0 ? ninf : (i % 7) * 0.25f;
        values[20 + 1] = ninf;
        using var w = Tensor.FromArray(values, 3, 20);
        var pw = w.Softmax(0, 2.0).ToArray<float>();
        var lw = w.LogSoftmax(0, 2.0).ToArray<float>();
        for (int r = 0; r < 3; r++)
        {
            Assert.True(float.IsNaN(pw[r * 20]) && float.IsNaN(lw[r * 20]));
            Assert.True(float.IsFinite(pw[r * 20 + 2]) && float.IsFinite(lw[r * 20 + 2]));
        }
        Assert.Equal(0f, pw[21]);
        Assert.Equal(ninf, lw[21]);
        Assert.Equal(1f, pw[1] + pw[41], 6);
    }

    [Fact]
    public void LongRows_Parallel_MatchReference()
    {
        var rng = new Random(2);
        long[] shape = [3, 70_001];
        var values = TestUtil.RandomValues(rng, TestUtil.ShapeNumEl(shape), -20, 20).Select(v => (double)(float)v).ToArray();
        using var x = TestUtil.FromDoubles(values, shape);
        TestUtil.AssertClose(Reference(values, shape, 1, 2.0, log: false), x.Softmax(1, 2.0), 1e-9, 1e-4);
        TestUtil.AssertClose(Reference(values, shape, 1, 2.0, log: true), x.LogSoftmax(1, 2.0), 1e-4, 1e-6);
    }

    [Fact]
    public void GradCheck_BothSoftmaxes()
    {
        int seed = 0;
        foreach (var shape in new long[][] { [3, 5], [2, 3, 4], [6] })
            foreach (var t in new[] { 1.0, 0.5, 3.0 })
                for (int dim = -1; dim < shape.Length; dim++)
                {
                    using var x = TestUtil.Random(new Random(seed++), shape, DType.Float64, -2, 2).RequiresGrad_();
                    int d = dim;
                    GradCheck.Check(a => a[0].Softmax(d, t), [x]);
                    GradCheck.Check(a => a[0].LogSoftmax(d, t), [x]);
                }
        using var m = TestUtil.Random(new Random(77), [4, 3], DType.Float64).RequiresGrad_();
        GradCheck.Check(a => a[0].T.Softmax(1, 0.5), [m]);
        GradCheck.Check(a => a[0].T.LogSoftmax(0, 3), [m]);
    }

    [Fact]
    public void SecondOrder_BothSoftmaxes()
    {
        int seed = 50;
        foreach (var shape in new long[][] { [3, 5], [2, 3, 4] })
            foreach (var t in new[] { 0.5, 3.0 })
                foreach (var dim in new[] { 0, -1 })
                {
                    using var x = TestUtil.Random(new Random(seed++), shape, DType.Float64, -2, 2).RequiresGrad_();
                    GradCheck.CheckSecondOrder(a => a[0].Softmax(dim, t), [x]);
                    GradCheck.CheckSecondOrder(a => a[0].LogSoftmax(dim, t), [x]);
                    // A loss that uses the gradient path non-trivially: Σ softmax · log_softmax (negative entropy).
                    GradCheck.CheckSecondOrder(a => a[0].Softmax(dim, t).Mul(a[0].LogSoftmax(dim, t)), [x]);
                }
    }

    [Fact]
    public void Errors_NameTheOp()
    {
        using var x = Tensor.Zeros([2, 3]);
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => x.Softmax(2));
        Assert.Contains("softmax", ex.Message);
        Assert.Contains("rank 2", ex.Message);
        Assert.Contains("log_softmax", Assert.Throws<ArgumentOutOfRangeException>(() => x.LogSoftmax(-3)).Message);
        Assert.Contains("temperature", Assert.Throws<ArgumentOutOfRangeException>(() => x.Softmax(1, 0)).Message);
        Assert.Contains("log_softmax", Assert.Throws<ArgumentOutOfRangeException>(() => x.LogSoftmax(1, double.NaN)).Message);
        using var ints = Tensor.FromArray(new long[] { 1, 2 }, 2);
        var e2 = Assert.Throws<ArgumentException>(() => ints.Softmax(0));
        Assert.Contains("softmax", e2.Message);
        Assert.Contains("int64", e2.Message);
    }
}
