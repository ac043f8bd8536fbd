using Engine.Distillation;
using Engine.Tensors;

namespace Engine.Tests.Distillation.LogitLosses;

public class DkdTests
{
    // mdistiller's dkd_loss transcribed in float64 plain loops, including the "−1000 on the target" trick.
    private static double[] ReferenceRows(double[] s, double[] t, long[] y, int rows, int v, double[] temps, double alpha, double beta, double warm, bool scale)
    {
        var result = new double[rows];
        for (int i = 0; i < rows; i++)
        {
            if (y[i] < 0) continue;
            int g = (int)y[i];
            double temp = temps[i];
            var ps = LogitRef.Softmax(s, i * v, v, temp);
            var pt = LogitRef.Softmax(t, i * v, v, temp);
            double bs0 = ps[g], bs1 = 0, bt0 = pt[g], bt1 = 0;
            for (int j = 0; j < v; j++) if (j != g) { bs1 += ps[j]; bt1 += pt[j]; }
            double tckd = LogitRef.Kl([bt0, bt1], [Math.Log(bs0), Math.Log(bs1)]);
            var s2 = new double[v];
            var t2 = new double[v];
            for (int j = 0; j < v; j++)
            {
                s2[j] = s[i * v + j] / temp - (j == g ? 1000 : 0);
                t2[j] = t[i * v + j] / temp - (j == g ? 1000 : 0);
            }
            var logQ2 = LogitRef.LogSoftmax(s2, 0, v);
            var p2 = LogitRef.Softmax(t2, 0, v);
            double nckd = LogitRef.Kl(p2, logQ2);
            result[i] = warm * (scale ? temp * temp : 1) * (alpha * tckd + beta * nckd);
        }
        return result;
    }

    private static double Reference(double[] s, double[] t, long[] y, int rows, int v, double[] temps, double alpha, double beta, double warm, bool scale, Reduction reduction)
        => LogitRef.Reduce(ReferenceRows(s, t, y, rows, v, temps, alpha, beta, warm, scale), y.Select(l => l >= 0).ToArray(), reduction, v);

    [Theory]
    [InlineData(DType.Float64, 6, 10, 4.0, Reduction.BatchMean, false, false)]
    [InlineData(DType.Float64, 5, 17, 2.0, Reduction.Sum, true, false)]
    [InlineData(DType.Float64, 7, 9, 1.0, Reduction.TokenMean, true, true)]
    [InlineData(DType.Float32, 8, 33, 4.0, Reduction.BatchMean, true, false)]
    [InlineData(DType.Float32, 4, 2, 3.0, Reduction.Mean, false, true)]
    [InlineData(DType.Float64, 3, 5, 0.05, Reduction.BatchMean, false, false)]
    [InlineData(DType.Float64, 3, 5, 20.0, Reduction.BatchMean, false, false)]
    public void MatchesMdistillerReference(DType dtype, int rows, int v, double temp, Reduction reduction, bool ignore, bool perRowT)
    {
        var rng = new Random(TestUtil.StableSeed($"dkd{dtype}{rows}{v}{temp}{reduction}{ignore}{perRowT}"));
        var s = TestUtil.RandomValues(rng, rows * v, -3, 3);
        var t = TestUtil.RandomValues(rng, rows * v, -3, 3);
        var y = LogitRef.Labels(rng, rows, v, ignore);
        if (ignore) y[0] = 1 % v; // at least one counted row
        var temps = Enumerable.Range(0, rows).Select(_ => perRowT ? 0.5 + 3 * rng.NextDouble() : temp).ToArray();
        const double alpha = 1.5, beta = 6, epoch = 7, warmup = 10;
        double warm = epoch / warmup;
        double expected = Reference(s, t, y, rows, v, temps, alpha, beta, warm, true, reduction);
        var expectedGrad = LogitRef.FiniteDifferences(x => Reference(x, t, y, rows, v, temps, alpha, beta, warm, true, reduction), s);

        using var tt = TestUtil.FromDoubles(t, [rows, v], dtype);
        using var yt = Tensor.FromArray(y, rows);
        using var tempT = perRowT ? Tensor.FromArray(temps, rows) : null;
        foreach (var impl in new[] { LossImplementation.Fused, LossImplementation.Composite })
        {
            var (value, grad) = LogitRef.Run(x => LogitLoss.Dkd(x, tt, yt, alpha, beta, temp, epoch, warmup, temperatures: tempT, reduction: reduction, implementation: impl), s, [rows, v], dtype);
            double tol = dtype == DType.Float32 ? 2e-5 : 1e-9;
            Assert.Equal(expected, value[0], tol * Math.Max(1, Math.Abs(expected)));
            TestUtil.AssertClose(expectedGrad, grad, atol: dtype == DType.Float32 ? 1e-5 : 1e-7, rtol: 1e-4, what: $"{impl} grad");
        }
    }

    [Fact]
    public void ReductionNoneGivesRowsAndZeroAtIgnoredRows()
    {
        var rng = new Random(21);
        const int b = 2, l = 3, v = 6;
        var s = TestUtil.RandomValues(rng, b * l * v, -2, 2);
        var t = TestUtil.RandomValues(rng, b * l * v, -2, 2);
        var y = new long[] { 1, -100, 5, 0, 2, -100 };
        var expected = ReferenceRows(s, t, y, b * l, v, Enumerable.Repeat(4.0, b * l).ToArray(), 1, 8, 1, true);
        using var tt = TestUtil.FromDoubles(t, [b, l, v], DType.Float64);
        using var yt = Tensor.FromArray(y, b, l);
        foreach (var impl in new[] { LossImplementation.Fused, LossImplementation.Composite })
        {
            var (value, grad) = LogitRef.Run(x => LogitLoss.Dkd(x, tt, yt, reduction: Reduction.None, implementation: impl), s, [b, l, v], DType.Float64);
            TestUtil.AssertClose(expected, value, 1e-10, 1e-10, $"{impl}");
            for (int j = 0; j < v; j++) Assert.Equal(0.0, grad[1 * v + j]);
        }
        // BatchMean of rank 3 divides by B (dim 0), whatever is ignored.
        using var st = TestUtil.FromDoubles(s, [b, l, v], DType.Float64);
        using var bm = LogitLoss.Dkd(st, tt, yt);
        Assert.Equal(expected.Sum() / b, bm.ToDouble(), 1e-10);
    }

    [Fact]
    public void FusedAgreesWithCompositeForEveryTeacherInput()
    {
        var rng = new Random(5);
        const int rows = 9, v = 13;
        var s = TestUtil.RandomValues(rng, rows * v, -4, 4);
        var t = TestUtil.RandomValues(rng, rows * v, -4, 4);
        var y = LogitRef.Labels(rng, rows, v, withIgnored: true);
        using var yt = Tensor.FromArray(y, rows);
        using var logits = TestUtil.FromDoubles(t, [rows, v], DType.Float32);
        using var logp = logits.LogSoftmax(-1, 2.0);
        using var prob = logits.Softmax(-1, 2.0);
        foreach (var (input, teacher) in new[] { (TeacherInput.Logits, logits), (TeacherInput.LogProbabilities, logp), (TeacherInput.Probabilities, prob) })
            LogitRef.AssertFormsAgree((x, impl) => LogitLoss.Dkd(x, teacher, yt, temperature: 2, teacherInput: input, implementation: impl), s, [rows, v], DType.Float32, 1e-5, 1e-4, $"{input}");
        // Log-probabilities / probabilities at T = 1 equal logits at temperature 2 (the temperature is not applied to them).
        using var st = TestUtil.FromDoubles(s, [rows, v], DType.Float32);
        using var viaLogits = LogitLoss.Dkd(st, logits, yt, temperature: 2, scaleByTemperatureSquared: false);
        using var viaProbs = LogitLoss.Dkd(st, prob, yt, temperature: 2, scaleByTemperatureSquared: false, teacherInput: TeacherInput.Probabilities);
        Assert.Equal(viaLogits.ToDouble(), viaProbs.ToDouble(), 1e-5);
    }

    [Fact]
    public void GradCheckCompositeAndSecondOrderThroughFused()
    {
        var rng = new Random(11);
        using var s = TestUtil.Random(rng, [3, 5], DType.Float64, -2, 2).RequiresGrad_();
        using var t = TestUtil.Random(rng, [3, 5], DType.Float64, -2, 2).RequiresGrad_();
        using var temps = Tensor.FromArray(new[] { 1.5, 3.0, 0.7 }, 3).RequiresGrad_();
        using var y = Tensor.FromArray(new long[] { 4, -100, 2 }, 3);
        GradCheck.Check(x => LogitLoss.Dkd(x[0], x[1], y, temperatures: x[2], implementation: LossImplementation.Composite), [s, t, temps]);
        GradCheck.CheckSecondOrder(x => LogitLoss.Dkd(x[0], x[1], y, temperature: 2.5, implementation: LossImplementation.Composite), [s, t]);
        // Fused node: first order, and createGraph (the backward recomputes through the composite form).
        using var sOnly = TestUtil.Random(rng, [4, 6], DType.Float64, -2, 2).RequiresGrad_();
        using var tFixed = TestUtil.Random(rng, [4, 6], DType.Float64, -2, 2);
        using var y4 = Tensor.FromArray(new long[] { 0, 5, 3, 1 }, 4);
        GradCheck.Check(x => LogitLoss.Dkd(x[0], tFixed, y4, implementation: LossImplementation.Fused), [sOnly]);
        GradCheck.CheckSecondOrder(x => LogitLoss.Dkd(x[0], tFixed, y4, implementation: LossImplementation.Fused), [sOnly]);
        GradCheck.CheckSecondOrder(x => LogitLoss.Dkd(x[0], tFixed, y4, reduction: Reduction.None, implementation: LossImplementation.Fused), [sOnly]);
    }

    [Fact]
    public void AutoPicksCompositeWhenTheTeacherNeedsAGradient()
    {
        using var s = Tensor.Zeros([2, 3]).RequiresGrad_();
        using var t = Tensor.Ones([2, 3]).RequiresGrad_();
        using var y = Tensor.FromArray(new long[] { 0, 1 }, 2);
        using var loss = LogitLoss.Dkd(s, t, y);
        Assert.NotEqual("dkd_loss", loss.GradFn!.Name);
        using var fused = LogitLoss.Dkd(s, t.Detach(), y);
        Assert.Equal("dkd_loss", fused.GradFn!.Name);
        var ex = Assert.Throws<InvalidOperationException>(() => LogitLoss.Dkd(s, t, y, implementation: LossImplementation.Fused));
        Assert.Contains("dkd_loss", ex.Message);
    }

    [Theory]
    [InlineData(DType.Float32)]
    [InlineData(DType.Float64)]
    public void EdgeCases(DType dtype)
    {
        var rng = new Random(3);
        const int rows = 4, v = 7;
        // ±1e4 logits: finite, forms agree.
        var big = TestUtil.RandomValues(rng, rows * v, -1, 1).Select(x => x * 1e4).ToArray();
        var bigT = TestUtil.RandomValues(rng, rows * v, -1, 1).Select(x => x * 1e4).ToArray();
        using var y = Tensor.FromArray(new long[] { 0, 3, 6, 2 }, rows);
        using (var tt = TestUtil.FromDoubles(bigT, [rows, v], dtype))
            LogitRef.AssertFormsAgree((x, impl) => LogitLoss.Dkd(x, tt, y, implementation: impl), big, [rows, v], dtype, 1e-3, 1e-4, "±1e4");
        // −∞ masked classes (not the target) in student and teacher.
        var s = TestUtil.RandomValues(rng, rows * v, -3, 3);
        var t = TestUtil.RandomValues(rng, rows * v, -3, 3);
        s[1] = t[1] = double.NegativeInfinity;
        t[v + 5] = double.NegativeInfinity;
        using (var tt = TestUtil.FromDoubles(t, [rows, v], dtype))
            LogitRef.AssertFormsAgree((x, impl) => LogitLoss.Dkd(x, tt, y, implementation: impl), s, [rows, v], dtype, 1e-5, 1e-4, "-inf");
        // Extreme temperatures.
        using (var tt = TestUtil.FromDoubles(t, [rows, v], dtype))
            foreach (double temp in new[] { 0.05, 20.0 })
                LogitRef.AssertFormsAgree((x, impl) => LogitLoss.Dkd(x, tt, y, temperature: temp, implementation: impl), s, [rows, v], dtype, 1e-4, 1e-4, $"T={temp}");
    }

    [Theory]
    [InlineData(LossImplementation.Fused)]
    [InlineData(LossImplementation.Composite)]
    public void ZeroCases(LossImplementation impl)
    {
        var rng = new Random(8);
        // Teacher equal to student: 0 and gradient 0.
        var s = TestUtil.RandomValues(rng, 5 * 11, -5, 5);
        using var y = Tensor.FromArray(new long[] { 0, 10, 3, 3, 7 }, 5);
        using (var tt = TestUtil.FromDoubles(s, [5, 11], DType.Float64))
        {
            var (value, grad) = LogitRef.Run(x => LogitLoss.Dkd(x, tt, y, implementation: impl), s, [5, 11], DType.Float64);
            Assert.Equal(0, value[0], 1e-12);
            Assert.All(grad, g => Assert.Equal(0, g, 1e-12));
        }
        // Every row ignored: 0, gradient 0, no NaN.
        using (var tt = TestUtil.Random(rng, [5, 11], DType.Float32))
        using (var ignored = Tensor.FromArray(Enumerable.Repeat(-100L, 5).ToArray(), 5))
        {
            foreach (var reduction in new[] { Reduction.Sum, Reduction.Mean, Reduction.BatchMean, Reduction.TokenMean, Reduction.None })
            {
                var (value, grad) = LogitRef.Run(x => LogitLoss.Dkd(x, tt, ignored, reduction: reduction, implementation: impl), s, [5, 11], DType.Float32);
                Assert.All(value, x => Assert.Equal(0.0, x));
                Assert.All(grad, g => Assert.Equal(0.0, g));
            }
        }
        // V = 1: 0 and gradient 0.
        using (var t1 = Tensor.Ones([3, 1], DType.Float64))
        using (var y1 = Tensor.Zeros([3], DType.Int64))
        {
            var (value, grad) = LogitRef.Run(x => LogitLoss.Dkd(x, t1, y1, implementation: impl), [0.5, -2, 3], [3, 1], DType.Float64);
            Assert.Equal(0.0, value[0]);
            Assert.All(grad, g => Assert.Equal(0.0, g));
        }
    }

    [Fact]
    public void WarmupScalesTheLoss()
    {
        var rng = new Random(4);
        using var s = TestUtil.Random(rng, [3, 6], DType.Float64, -2, 2);
        using var t = TestUtil.Random(rng, [3, 6], DType.Float64, -2, 2);
        using var y = Tensor.FromArray(new long[] { 1, 2, 3 }, 3);
        using var full = LogitLoss.Dkd(s, t, y);
        using var early = LogitLoss.Dkd(s, t, y, epoch: 5);
        using var late = LogitLoss.Dkd(s, t, y, epoch: 40);
        using var off = LogitLoss.Dkd(s, t, y, epoch: 0, warmupEpochs: 0);
        Assert.Equal(full.ToDouble() * 0.25, early.ToDouble(), 1e-12);
        Assert.Equal(full.ToDouble(), late.ToDouble(), 1e-12);
        Assert.Equal(full.ToDouble(), off.ToDouble(), 1e-12);
    }

    [Fact]
    public void WithCrossEntropyAddsMeanCe()
    {
        var rng = new Random(9);
        const int rows = 5, v = 4;
        var s = TestUtil.RandomValues(rng, rows * v, -2, 2);
        var t = TestUtil.RandomValues(rng, rows * v, -2, 2);
        var y = new long[] { 0, -100, 3, 2, 1 };
        double ce = 0;
        for (int i = 0; i < rows; i++) if (y[i] >= 0) ce -= LogitRef.LogSoftmax(s, i * v, v)[y[i]];
        ce /= 4;
        double dkd = Reference(s, t, y, rows, v, Enumerable.Repeat(4.0, rows).ToArray(), 1, 8, 0.5, true, Reduction.BatchMean);
        using var st = TestUtil.FromDoubles(s, [rows, v], DType.Float64);
        using var tt = TestUtil.FromDoubles(t, [rows, v], DType.Float64);
        using var yt = Tensor.FromArray(y, rows);
        using var loss = LogitLoss.DkdWithCrossEntropy(st, tt, yt, epoch: 10, ceWeight: 1.0);
        Assert.Equal(ce + dkd, loss.ToDouble(), 1e-10);
        using var none = Tensor.FromArray(Enumerable.Repeat(-100L, rows).ToArray(), rows);
        using var zero = LogitLoss.DkdWithCrossEntropy(st, tt, none, epoch: 10);
        Assert.Equal(0.0, zero.ToDouble());
    }

    [Fact]
    public void BadInputsNameTheLossAndShapes()
    {
        using var s = Tensor.Zeros([2, 3]);
        using var t = Tensor.Zeros([2, 4]);
        using var y = Tensor.FromArray(new long[] { 0, 1 }, 2);
        var e1 = Assert.Throws<ArgumentException>(() => LogitLoss.Dkd(s, t, y));
        Assert.Contains("dkd_loss", e1.Message);
        Assert.Contains("[2, 3]", e1.Message);
        Assert.Contains("[2, 4]", e1.Message);
        using var y3 = Tensor.FromArray(new long[] { 0, 1, 2 }, 3);
        var e2 = Assert.Throws<ArgumentException>(() => LogitLoss.Dkd(s, s, y3));
        Assert.Contains("dkd_loss", e2.Message);
        Assert.Contains("[3]", e2.Message);
        using var yBad = Tensor.FromArray(new long[] { 0, 3 }, 2);
        Assert.Contains("outside [0, 3)", Assert.Throws<ArgumentException>(() => LogitLoss.Dkd(s, s, yBad)).Message);
        Assert.Contains("dkd_loss", Assert.Throws<ArgumentOutOfRangeException>(() => LogitLoss.Dkd(s, s, y, temperature: 0)).Message);
        using var d = Tensor.Zeros([2, 3], DType.Float64);
        Assert.Contains("dkd_loss", Assert.Throws<ArgumentException>(() => LogitLoss.Dkd(s, d, y)).Message);
        using var badT = Tensor.FromArray(new[] { 1f, -1f }, 2);
        Assert.Contains("dkd_loss", Assert.Throws<ArgumentOutOfRangeException>(() => LogitLoss.Dkd(s, s, y, temperatures: badT)).Message);
    }
}
