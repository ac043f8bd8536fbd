using Engine.Tensors;
using Engine.Tensors.NN;
using Reduction = Engine.Tensors.NN.Reduction;

namespace Engine.Tests.NN;

/// <summary>Functional.CrossEntropy against a float64 re-implementation of torch's cross_entropy.</summary>
public class CrossEntropyTests
{
    /// <summary>float64 reference: per-row losses (0 for ignored rows) and the reduced value.</summary>
    private static (double[] PerRow, double Mean, double Sum) Reference(double[] x, long n, long c, long[] t, double eps, long ignore)
    {
        var per = new double[n];
        long count = 0;
        for (long i = 0; i < n; i++)
        {
            if (t[i] == ignore) continue;
            count++;
            double m = double.NegativeInfinity;
            for (long j = 0; j < c; j++) m = Math.Max(m, x[i * c + j]);
            double s = 0;
            for (long j = 0; j < c; j++) s += Math.Exp(x[i * c + j] - m);
            double lse = m + Math.Log(s);
            double nll = lse - x[i * c + t[i]];
            double smooth = 0;
            for (long j = 0; j < c; j++) smooth += lse - x[i * c + j];
            per[i] = (1 - eps) * nll + eps * smooth / c;
        }
        double sum = per.Sum();
        return (per, sum / count, sum); // count 0 -> NaN, as torch
    }

    private static long[] Labels(Random rng, long n, long c, long ignore, double ignoreFraction)
        => Enumerable.Range(0, (int)n).Select(_ => rng.NextDouble() < ignoreFraction ? ignore : rng.NextInt64(c)).ToArray();

    [Theory]
    [InlineData(0.0, -100L)]
    [InlineData(0.1, -100L)]
    [InlineData(1.0, -100L)]
    [InlineData(0.25, 2L)] // the ignore index may be a real class
    public void MatchesReference_AllReductions(double eps, long ignore)
    {
        var rng = new Random(TestUtil.StableSeed($"ce{eps}{ignore}"));
        foreach (var (n, c) in new (long, long)[] { (7, 5), (1, 1), (13, 33), (64, 10) })
            foreach (var dtype in new[] { DType.Float32, DType.Float64 })
                foreach (bool nonContiguous in new[] { false, true })
                {
                    var xs = TestUtil.RandomValues(rng, n * c, -4, 4);
                    var labels = Labels(rng, n, c, ignore, 0.3);
                    if (labels.All(l => l == ignore)) labels[0] = ignore == 0 ? Math.Min(1, c - 1) : 0;
                    if (labels.All(l => l == ignore)) continue; // c == 1 and ignore == 0
                    var (per, mean, sum) = Reference(xs, n, c, labels, eps, ignore);
                    using var x0 = TestUtil.FromDoubles(xs, [n, c], dtype);
                    using var x = nonContiguous ? TestUtil.NonContiguous(x0) : x0.Alias();
                    using var t = Tensor.FromArray(labels, n);
                    double tol = dtype == DType.Float64 ? 1e-12 : 2e-5;
                    string what = $"N={n} C={c} {dtype.Name()} eps={eps} ignore={ignore} nc={nonContiguous}";
                    using (var l = Functional.CrossEntropy(x, t, eps, ignore, Reduction.None)) TestUtil.AssertClose(per, l, tol, tol, what + " none");
                    using (var l = Functional.CrossEntropy(x, t, eps, ignore, Reduction.Sum)) TestUtil.AssertClose([sum], l, tol, tol, what + " sum");
                    using (var l = Functional.CrossEntropy(x, t, eps, ignore)) TestUtil.AssertClose([mean], l, tol, tol, what + " mean");
                }
    }

    [Fact]
    public void Gradient_MatchesSoftmaxMinusSmoothedOneHot()
    {
        var rng = new Random(3);
        long n = 6, c = 4;
        double eps = 0.2;
        var xs = TestUtil.RandomValues(rng, n * c, -2, 2);
        long[] labels = [1, -100, 3, 0, -100, 2];
        using var x = TestUtil.FromDoubles(xs, [n, c], DType.Float64).RequiresGrad_();
        using var t = Tensor.FromArray(labels, n);
        using var loss = Functional.CrossEntropy(x, t, eps);
        loss.Backward();
        var expected = new double[n * c];
        for (int i = 0; i < n; i++)
        {
            if (labels[i] == -100) continue;
            double m = xs.Skip(i * (int)c).Take((int)c).Max();
            double s = Enumerable.Range(0, (int)c).Sum(j => Math.Exp(xs[i * c + j] - m));
            for (int j = 0; j < c; j++)
                expected[i * c + j] = (Math.Exp(xs[i * c + j] - m) / s - (j == labels[i] ? 1 - eps : 0) - eps / c) / 4; // 4 kept rows
        }
        TestUtil.AssertClose(expected, x.Grad!, 1e-12, 1e-10);
    }

    [Theory]
    [InlineData(Reduction.Mean, 0.0)]
    [InlineData(Reduction.Mean, 0.3)]
    [InlineData(Reduction.Sum, 0.1)]
    [InlineData(Reduction.None, 0.1)]
    public void GradCheck_FirstAndSecondOrder(Reduction reduction, double eps)
    {
        var rng = new Random(4);
        using var x = TestUtil.Random(rng, [5, 4], DType.Float64, -2, 2).RequiresGrad_();
        using var t = Tensor.FromArray(new long[] { 3, 0, -100, 1, 3 }, 5);
        GradCheck.Check(a => Functional.CrossEntropy(a[0], t, eps, reduction: reduction), [x]);
        GradCheck.CheckSecondOrder(a => Functional.CrossEntropy(a[0], t, eps, reduction: reduction), [x]);
    }

    [Fact]
    public void AllRowsIgnored_MeanIsNaN_SumIsZero_GradientIsZero()
    {
        using var x = Tensor.FromArray(new[] { 1.0, double.NegativeInfinity, 0.5, 2.0 }, 2, 2).RequiresGrad_();
        using var t = Tensor.FromArray(new long[] { -100, -100 }, 2);
        using (var mean = Functional.CrossEntropy(x, t, 0.1))
        {
            Assert.True(double.IsNaN(mean.ToDouble()));
            mean.Backward();
            TestUtil.AssertClose([0, 0, 0, 0], x.Grad!, 0, 0);
        }
        using (var sum = Functional.CrossEntropy(x, t, reduction: Reduction.Sum)) Assert.Equal(0.0, sum.ToDouble());
        using (var none = Functional.CrossEntropy(x, t, reduction: Reduction.None)) TestUtil.AssertClose([0, 0], none, 0, 0);
        // An empty batch behaves the same (mean NaN, sum 0).
        using var e = Tensor.Zeros([0, 3]);
        using var te = Tensor.Zeros([0], DType.Int64);
        using (var mean = Functional.CrossEntropy(e, te)) Assert.True(double.IsNaN(mean.ToDouble()));
        using (var none = Functional.CrossEntropy(e, te, reduction: Reduction.None)) Assert.Equal([0L], none.ShapeArray());
    }

    [Fact]
    public void IgnoredRowWithInfiniteLogit_DoesNotPoisonTheLoss()
    {
        using var x = Tensor.FromArray(new[] { double.NegativeInfinity, 0.0, 1.0, 2.0 }, 2, 2).RequiresGrad_();
        using var t = Tensor.FromArray(new long[] { -100, 1 }, 2);
        using var loss = Functional.CrossEntropy(x, t);
        var (_, mean, _) = Reference([0, 0, 1, 2], 2, 2, [-100, 1], 0, -100);
        Assert.Equal(mean, loss.ToDouble(), 12);
        loss.Backward();
        Assert.All(x.Grad!.ToArray<double>(), v => Assert.True(double.IsFinite(v)));
    }

    [Fact]
    public void SingleSample_LogitsOfRankOne()
    {
        using var x = Tensor.FromArray([0.5, -1.0, 2.0]);
        using var t = Tensor.FromArray(new long[] { 2 }, []);
        var (per, _, _) = Reference([0.5, -1.0, 2.0], 1, 3, [2], 0.1, -100);
        using var l = Functional.CrossEntropy(x, t, 0.1);
        Assert.Equal(per[0], l.ToDouble(), 12);
        using var none = Functional.CrossEntropy(x, t, 0.1, reduction: Reduction.None);
        Assert.Equal(0, none.Rank);
    }

    [Fact]
    public void BadInputs_Throw_WithClearMessages()
    {
        using var x = Tensor.Zeros([3, 4]);
        using var t = Tensor.FromArray(new long[] { 0, 4, 1 }, 3);
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => Functional.CrossEntropy(x, t));
        Assert.Contains("cross_entropy", ex.Message);
        Assert.Contains("target 4 at row 1", ex.Message);
        Assert.Contains("4 classes", ex.Message);
        using var neg = Tensor.FromArray(new long[] { 0, -1, 1 }, 3);
        Assert.Contains("target -1 at row 1", Assert.Throws<ArgumentOutOfRangeException>(() => Functional.CrossEntropy(x, neg)).Message);
        using var t32 = Tensor.Zeros([3], DType.Int32);
        Assert.Contains("int64", Assert.Throws<ArgumentException>(() => Functional.CrossEntropy(x, t32)).Message);
        using var short_ = Tensor.Zeros([2], DType.Int64);
        Assert.Contains("[3, 4]", Assert.Throws<ArgumentException>(() => Functional.CrossEntropy(x, short_)).Message);
        using var ok = Tensor.Zeros([3], DType.Int64);
        Assert.Contains("labelSmoothing", Assert.Throws<ArgumentOutOfRangeException>(() => Functional.CrossEntropy(x, ok, 1.5)).Message);
        using var xi = Tensor.Zeros([3, 4], DType.Int64);
        Assert.Contains("float32 or float64", Assert.Throws<ArgumentException>(() => Functional.CrossEntropy(xi, ok)).Message);
    }
}
