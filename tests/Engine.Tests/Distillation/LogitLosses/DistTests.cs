using Engine.Distillation;
using Engine.Tensors;

namespace Engine.Tests.Distillation.LogitLosses;

public class DistTests
{
    // torchdistill's DISTLoss in float64 plain loops (rows = counted rows only).
    private static double Reference(double[] s, double[] t, bool[] counted, int rows, int v, double beta, double gamma, double tau, double eps = 1e-8)
    {
        var keep = Enumerable.Range(0, rows).Where(i => counted[i]).ToArray();
        int n = keep.Length;
        if (n == 0) return 0;
        var ys = new double[n, v];
        var yt = new double[n, v];
        for (int a = 0; a < n; a++)
        {
            var ps = LogitRef.Softmax(s, keep[a] * v, v, tau);
            var pt = LogitRef.Softmax(t, keep[a] * v, v, tau);
            for (int j = 0; j < v; j++) { ys[a, j] = ps[j]; yt[a, j] = pt[j]; }
        }
        double Pearson(Func<int, double> x, Func<int, double> y, int len)
        {
            double mx = 0, my = 0;
            for (int i = 0; i < len; i++) { mx += x(i); my += y(i); }
            mx /= len; my /= len;
            double dot = 0, nx = 0, ny = 0;
            for (int i = 0; i < len; i++)
            {
                double dx = x(i) - mx, dy = y(i) - my;
                dot += dx * dy; nx += dx * dx; ny += dy * dy;
            }
            return dot / (Math.Sqrt(nx) * Math.Sqrt(ny) + eps);
        }
        double inter = 0, intra = 0;
        for (int a = 0; a < n; a++) inter += Pearson(j => ys[a, j], j => yt[a, j], v);
        for (int j = 0; j < v; j++) intra += Pearson(a => ys[a, j], a => yt[a, j], n);
        return beta * tau * tau * (1 - inter / n) + gamma * tau * tau * (1 - intra / v);
    }

    [Theory]
    [InlineData(DType.Float64, 8, 10, 1.0, 1.0, 1.0, false)]
    [InlineData(DType.Float64, 6, 17, 2.0, 0.5, 4.0, true)]
    [InlineData(DType.Float32, 16, 33, 1.0, 2.0, 1.0, true)]
    [InlineData(DType.Float64, 5, 3, 1.0, 1.0, 0.05, false)]
    [InlineData(DType.Float64, 5, 3, 1.0, 1.0, 20.0, false)]
    public void MatchesTorchdistillReference(DType dtype, int rows, int v, double beta, double gamma, double tau, bool ignore)
    {
        var rng = new Random(TestUtil.StableSeed($"dist{dtype}{rows}{v}{beta}{gamma}{tau}{ignore}"));
        var s = TestUtil.RandomValues(rng, rows * v, -3, 3);
        var t = TestUtil.RandomValues(rng, rows * v, -3, 3);
        var y = LogitRef.Labels(rng, rows, v, ignore);
        var counted = y.Select(l => l >= 0).ToArray();
        double expected = Reference(s, t, counted, rows, v, beta, gamma, tau);
        var expectedGrad = LogitRef.FiniteDifferences(x => Reference(x, t, counted, rows, v, beta, gamma, tau), s);
        using var tt = TestUtil.FromDoubles(t, [rows, v], dtype);
        using var yt = Tensor.FromArray(y, rows);
        var (value, grad) = LogitRef.Run(x => LogitLoss.Dist(x, tt, beta, gamma, tau, labels: yt), s, [rows, v], dtype);
        double tol = dtype == DType.Float32 ? 2e-5 : 1e-10;
        Assert.Equal(expected, value[0], tol * Math.Max(1, Math.Abs(expected)));
        TestUtil.AssertClose(expectedGrad, grad, atol: dtype == DType.Float32 ? 1e-5 : 1e-7, rtol: 1e-4, what: "grad");
        if (ignore) for (int i = 0; i < rows; i++) if (!counted[i]) for (int j = 0; j < v; j++) Assert.Equal(0.0, grad[i * v + j]);
    }

    [Fact]
    public void TeacherInputsRankThreeAndGradCheck()
    {
        var rng = new Random(61);
        using var s = TestUtil.Random(rng, [2, 3, 7], DType.Float64, -2, 2);
        using var t = TestUtil.Random(rng, [2, 3, 7], DType.Float64, -2, 2);
        using var logp = t.LogSoftmax(-1, 2.0);
        using var prob = t.Softmax(-1, 2.0);
        using var a = LogitLoss.Dist(s, t, temperature: 2.0, scaleByTemperatureSquared: false);
        using var b = LogitLoss.Dist(s, logp, temperature: 2.0, scaleByTemperatureSquared: false, teacherInput: TeacherInput.LogProbabilities);
        using var c = LogitLoss.Dist(s, prob, temperature: 2.0, scaleByTemperatureSquared: false, teacherInput: TeacherInput.Probabilities);
        using var s2 = s.Reshape(6, 7);
        using var t2 = t.Reshape(6, 7);
        using var flat = LogitLoss.Dist(s2, t2, temperature: 2.0, scaleByTemperatureSquared: false);
        Assert.Equal(a.ToDouble(), b.ToDouble(), 1e-12);
        Assert.Equal(a.ToDouble(), c.ToDouble(), 1e-12);
        Assert.Equal(a.ToDouble(), flat.ToDouble(), 1e-12);
        using var sg = TestUtil.Random(rng, [4, 5], DType.Float64, -2, 2).RequiresGrad_();
        using var tg = TestUtil.Random(rng, [4, 5], DType.Float64, -2, 2).RequiresGrad_();
        GradCheck.Check(x => LogitLoss.Dist(x[0], x[1], 1.5, 0.5, 2.0), [sg, tg]);
        GradCheck.CheckSecondOrder(x => LogitLoss.Dist(x[0], x[1]), [sg, tg]);
    }

    [Theory]
    [InlineData(DType.Float32)]
    [InlineData(DType.Float64)]
    public void EdgeCases(DType dtype)
    {
        var rng = new Random(67);
        // ±1e4 logits (one-hot-like softmaxes) and −∞ masked classes: finite value and gradient.
        foreach (var (lo, hi, mask) in new[] { (-1e4, 1e4, false), (-3.0, 3.0, true) })
        {
            var s = TestUtil.RandomValues(rng, 5 * 9, lo, hi);
            var t = TestUtil.RandomValues(rng, 5 * 9, lo, hi);
            if (mask) { s[3] = t[3] = double.NegativeInfinity; s[9 + 4] = double.NegativeInfinity; }
            using var tt = TestUtil.FromDoubles(t, [5, 9], dtype);
            var (value, grad) = LogitRef.Run(x => LogitLoss.Dist(x, tt), s, [5, 9], dtype);
            Assert.True(double.IsFinite(value[0]));
            Assert.All(grad, g => Assert.True(double.IsFinite(g)));
            double expected = Reference(s, t, Enumerable.Repeat(true, 5).ToArray(), 5, 9, 1, 1, 1);
            Assert.Equal(expected, value[0], 1e-5);
        }
        // Teacher equal to the student: ~0, gradient ~0.
        var same = TestUtil.RandomValues(rng, 6 * 8, -3, 3);
        using (var tt = TestUtil.FromDoubles(same, [6, 8], dtype))
        {
            var (value, grad) = LogitRef.Run(x => LogitLoss.Dist(x, tt), same, [6, 8], dtype);
            Assert.Equal(0, value[0], 1e-5);
            Assert.All(grad, g => Assert.Equal(0, g, 1e-4));
        }
        // V = 1 and a single row: constant vectors, ρ = 0 with no gradient; every row ignored: 0.
        using (var t1 = Tensor.Ones([3, 1], dtype))
        {
            var (value, grad) = LogitRef.Run(x => LogitLoss.Dist(x, t1), [0.5, -2, 3], [3, 1], dtype);
            Assert.Equal(2.0, value[0], 1e-6); // Y ≡ 1: every centred row and column is 0, so both ρ are 0: 1 + 1
            Assert.All(grad, g => Assert.Equal(0.0, g));
        }
        using (var t3 = TestUtil.Random(rng, [3, 4], dtype))
        using (var ignored = Tensor.FromArray(Enumerable.Repeat(-100L, 3).ToArray(), 3))
        {
            var (value, grad) = LogitRef.Run(x => LogitLoss.Dist(x, t3, labels: ignored), TestUtil.RandomValues(rng, 12), [3, 4], dtype);
            Assert.Equal(0.0, value[0]);
            Assert.All(grad, g => Assert.Equal(0.0, g));
        }
    }

    [Fact]
    public void BadInputsNameTheLoss()
    {
        using var s = Tensor.Zeros([2, 3]);
        using var t = Tensor.Zeros([2, 5]);
        var e = Assert.Throws<ArgumentException>(() => LogitLoss.Dist(s, t));
        Assert.Contains("dist_loss", e.Message);
        Assert.Contains("[2, 5]", e.Message);
        Assert.Contains("dist_loss", Assert.Throws<InvalidOperationException>(() => LogitLoss.Dist(s, s, implementation: LossImplementation.Fused)).Message);
        Assert.Contains("dist_loss", Assert.Throws<ArgumentOutOfRangeException>(() => LogitLoss.Dist(s, s, temperature: -1)).Message);
    }
}
