using Engine.Distillation.Methods;
using Engine.Tensors;

namespace Engine.Tests.Distillation.Methods;

/// <summary>The feature and relation losses against float64 references written with plain loops, and their gradients.</summary>
public class FeatureLossTests
{
    // ---------------------------------------------------------------- float64 references

    private static double SmoothL1Ref(double[] a, double[] b)
    {
        double s = 0;
        for (int i = 0; i < a.Length; i++)
        {
            double x = Math.Abs(a[i] - b[i]);
            s += x < 1 ? 0.5 * x * x : x - 0.5;
        }
        return s / a.Length;
    }

    // a(F) for F [n, c, h, w]: normalize(mean_c F^p) per row, flattened.
    private static double[] AttentionRef(double[] f, int n, int c, int h, int w, double p)
    {
        var a = new double[n * h * w];
        for (int i = 0; i < n; i++)
        {
            double norm = 0;
            for (int q = 0; q < h * w; q++)
            {
                double m = 0;
                for (int k = 0; k < c; k++) m += Math.Pow(f[((i * c) + k) * h * w + q], p);
                a[i * h * w + q] = m / c;
                norm += (m / c) * (m / c);
            }
            norm = Math.Max(Math.Sqrt(norm), 1e-12);
            for (int q = 0; q < h * w; q++) a[i * h * w + q] /= norm;
        }
        return a;
    }

    // Adaptive average pooling when the size divides (bins of equal size).
    private static double[] PoolRef(double[] f, int n, int c, int h, int w, int oh, int ow)
    {
        var r = new double[n * c * oh * ow];
        int kh = h / oh, kw = w / ow;
        for (int i = 0; i < n * c; i++)
            for (int y = 0; y < oh; y++)
                for (int x = 0; x < ow; x++)
                {
                    double s = 0;
                    for (int dy = 0; dy < kh; dy++)
                        for (int dx = 0; dx < kw; dx++) s += f[i * h * w + (y * kh + dy) * w + x * kw + dx];
                    r[(i * oh + y) * ow + x] = s / (kh * kw);
                }
        return r;
    }

    private static double[] DistancesRef(double[] e, int b, int d)
    {
        var r = new double[b * b];
        for (int i = 0; i < b; i++)
            for (int j = 0; j < b; j++)
            {
                if (i == j) continue;
                double s = 0;
                for (int k = 0; k < d; k++) s += (e[i * d + k] - e[j * d + k]) * (e[i * d + k] - e[j * d + k]);
                r[i * b + j] = Math.Sqrt(s);
            }
        double sum = 0;
        int count = 0;
        foreach (var v in r) if (v > 0) { sum += v; count++; }
        for (int i = 0; i < r.Length; i++) r[i] /= sum / count;
        return r;
    }

    // The direct definition: normalized difference vectors n_ij = (e_j − e_i)/‖·‖ (0 when j = i), cos_ijk = n_ij·n_ik.
    private static double[] AnglesRef(double[] e, int b, int d)
    {
        var n = new double[b * b * d];
        for (int i = 0; i < b; i++)
            for (int j = 0; j < b; j++)
            {
                double s = 0;
                for (int k = 0; k < d; k++) s += Math.Pow(e[j * d + k] - e[i * d + k], 2);
                double norm = Math.Max(Math.Sqrt(s), 1e-12);
                for (int k = 0; k < d; k++) n[(i * b + j) * d + k] = (e[j * d + k] - e[i * d + k]) / norm;
            }
        var r = new double[b * b * b];
        for (int i = 0; i < b; i++)
            for (int j = 0; j < b; j++)
                for (int k = 0; k < b; k++)
                {
                    double s = 0;
                    for (int q = 0; q < d; q++) s += n[(i * b + j) * d + q] * n[(i * b + k) * d + q];
                    r[(i * b + j) * b + k] = s;
                }
        return r;
    }

    // ---------------------------------------------------------------- tests

    [Theory]
    [InlineData(DType.Float64)]
    [InlineData(DType.Float32)]
    public void MseAndSmoothL1MatchTheReference(DType dtype)
    {
        var rng = new Random(1);
        var a = TestUtil.RandomValues(rng, 35, -3, 3);
        var b = TestUtil.RandomValues(rng, 35, -3, 3);
        using var ta = TestUtil.FromDoubles(a, [5, 7], dtype);
        using var tb = TestUtil.FromDoubles(b, [5, 7], dtype);
        double tol = dtype == DType.Float32 ? 1e-5 : 1e-12;
        using var mse = FeatureLosses.Mse(ta, tb);
        Assert.Equal(a.Zip(b, (x, y) => (x - y) * (x - y)).Average(), mse.ToDouble(), tol);
        using var sl1 = FeatureLosses.SmoothL1(ta, tb);
        Assert.Equal(SmoothL1Ref(a, b), sl1.ToDouble(), tol);
    }

    [Fact]
    public void SmoothL1GradientIsZeroAtEqualInputsAndChecksElsewhere()
    {
        using var a = Tensor.FromArray(new double[] { 0.5, -2, 0, 3 }, 4).RequiresGrad_();
        using var b = Tensor.FromArray(new double[] { 0.5, 0, 0.3, -1 }, 4);
        using (var loss = FeatureLosses.SmoothL1(a, b)) loss.Backward();
        TestUtil.AssertClose([0, -0.25, -0.3 / 4, 0.25], a.Grad!, atol: 1e-12);
        var rng = new Random(2);
        using var x = TestUtil.Random(rng, [3, 4], DType.Float64, -2, 2).RequiresGrad_();
        using var y = TestUtil.Random(rng, [3, 4], DType.Float64, -2, 2).RequiresGrad_();
        GradCheck.Check(t => FeatureLosses.SmoothL1(t[0], t[1]), [x, y]);
        GradCheck.Check(t => FeatureLosses.Mse(t[0], t[1]), [x, y]);
    }

    [Theory]
    [InlineData(2, 3, 4, 4, 5, 2, 2, DType.Float64)] // the student's map is pooled to the teacher's 2×2
    [InlineData(3, 4, 3, 3, 2, 3, 3, DType.Float64)] // equal sizes, different channels
    [InlineData(1, 2, 2, 2, 3, 4, 4, DType.Float32)] // the teacher's map is pooled
    public void AttentionTransferMatchesTheReference(int n, int cs, int hs, int ws, int ct, int ht, int wt, DType dtype)
    {
        var rng = new Random(TestUtil.StableSeed($"at{n}{cs}{hs}{ct}{ht}{dtype}"));
        var fs = TestUtil.RandomValues(rng, n * cs * hs * ws, -2, 2);
        var ft = TestUtil.RandomValues(rng, n * ct * ht * wt, -2, 2);
        int h = Math.Min(hs, ht), w = Math.Min(ws, wt);
        var ps = PoolRef(fs, n, cs, hs, ws, h, w);
        var pt = PoolRef(ft, n, ct, ht, wt, h, w);
        var a = AttentionRef(ps, n, cs, h, w, 2);
        var b = AttentionRef(pt, n, ct, h, w, 2);
        double expected = a.Zip(b, (x, y) => (x - y) * (x - y)).Average();

        using var ts = TestUtil.FromDoubles(fs, [n, cs, hs, ws], dtype);
        using var tt = TestUtil.FromDoubles(ft, [n, ct, ht, wt], dtype);
        using var loss = FeatureLosses.AttentionTransfer(ts, tt);
        Assert.Equal(expected, loss.ToDouble(), dtype == DType.Float32 ? 1e-6 : 1e-13);
        using var map = FeatureLosses.AttentionMap(ts);
        if (hs == h && ws == w) TestUtil.AssertClose(AttentionRef(fs, n, cs, hs, ws, 2), map, atol: dtype == DType.Float32 ? 1e-6 : 1e-13);
    }

    [Fact]
    public void AttentionTransferGradCheckWrtStudentFeatures()
    {
        var rng = new Random(3);
        using var fs = TestUtil.Random(rng, [2, 3, 4, 4], DType.Float64, -1, 1).RequiresGrad_();
        using var ft = TestUtil.Random(rng, [2, 5, 2, 2], DType.Float64, -1, 1);
        GradCheck.Check(x => FeatureLosses.AttentionTransfer(x[0], ft), [fs]);
        // A map that is all zero (a dead stage) gives a finite gradient, not NaN.
        using var zero = Tensor.Zeros([1, 2, 2, 2], DType.Float64).RequiresGrad_();
        using var t1 = TestUtil.Random(rng, [1, 2, 2, 2], DType.Float64);
        using (var loss = FeatureLosses.AttentionTransfer(zero, t1)) loss.Backward();
        Assert.All(zero.Grad!.ToArray<double>(), g => Assert.True(double.IsFinite(g)));
    }

    [Theory]
    [InlineData(2, 3, 4, DType.Float64)]
    [InlineData(5, 4, 6, DType.Float64)]
    [InlineData(7, 9, 3, DType.Float32)]
    public void RkdDistanceAndAngleMatchTheDirectDefinition(int b, int ds, int dt, DType dtype)
    {
        var rng = new Random(TestUtil.StableSeed($"rkd{b}{ds}{dt}{dtype}"));
        var es = TestUtil.RandomValues(rng, b * ds, -2, 2);
        var et = TestUtil.RandomValues(rng, b * dt, -2, 2);
        double expectedD = SmoothL1Ref(DistancesRef(es, b, ds), DistancesRef(et, b, dt));
        double expectedA = SmoothL1Ref(AnglesRef(es, b, ds), AnglesRef(et, b, dt));
        using var ts = TestUtil.FromDoubles(es, [b, ds], dtype);
        using var tt = TestUtil.FromDoubles(et, [b, dt], dtype);
        double tol = dtype == DType.Float32 ? 2e-5 : 1e-12;
        using var d = FeatureLosses.RkdDistance(ts, tt);
        using var a = FeatureLosses.RkdAngle(ts, tt);
        Assert.Equal(expectedD, d.ToDouble(), tol);
        Assert.Equal(expectedA, a.ToDouble(), tol);
        using var angles = FeatureLosses.Angles(ts);
        TestUtil.AssertClose(AnglesRef(es, b, ds), angles, atol: dtype == DType.Float32 ? 1e-5 : 1e-12);
        using var rkd = FeatureLosses.Rkd(ts, tt);
        Assert.Equal(25 * expectedD + 50 * expectedA, rkd.ToDouble(), tol * 100);
    }

    [Fact]
    public void RkdGradCheckWrtStudentEmbedding()
    {
        var rng = new Random(4);
        using var es = TestUtil.Random(rng, [4, 3], DType.Float64, -1, 1).RequiresGrad_();
        using var et = TestUtil.Random(rng, [4, 5], DType.Float64, -1, 1);
        GradCheck.Check(x => FeatureLosses.RkdDistance(x[0], et), [es]);
        GradCheck.Check(x => FeatureLosses.RkdAngle(x[0], et), [es]);
    }

    [Fact]
    public void SoftCrossEntropyMatchesTheReference()
    {
        var rng = new Random(5);
        var z = TestUtil.RandomValues(rng, 12, -3, 3);
        var t = new double[] { 0.2, 0.3, 0.5, 0, 1, 0, 0.25, 0.25, 0.5, 0.1, 0.1, 0.8 };
        double expected = 0;
        const double temp = 2;
        for (int i = 0; i < 4; i++)
        {
            double m = Enumerable.Range(0, 3).Max(j => z[i * 3 + j] / temp);
            double lse = m + Math.Log(Enumerable.Range(0, 3).Sum(j => Math.Exp(z[i * 3 + j] / temp - m)));
            for (int j = 0; j < 3; j++) expected -= t[i * 3 + j] * (z[i * 3 + j] / temp - lse);
        }
        using var tz = TestUtil.FromDoubles(z, [4, 3], DType.Float64).RequiresGrad_();
        using var tt = TestUtil.FromDoubles(t, [4, 3], DType.Float64);
        using var loss = FeatureLosses.SoftCrossEntropy(tz, tt, temp);
        Assert.Equal(expected / 4, loss.ToDouble(), 1e-13);
        GradCheck.Check(x => FeatureLosses.SoftCrossEntropy(x[0], tt, temp), [tz]);
    }

    [Fact]
    public void BadInputsNameTheLoss()
    {
        using var a = Tensor.Zeros([2, 3]);
        using var b = Tensor.Zeros([3, 2]);
        using var c = Tensor.Zeros([3, 4]);
        using var f = Tensor.Zeros([2, 1, 3, 3]);
        using var g = Tensor.Zeros([3, 1, 3, 3]);
        Assert.Contains("mse_loss", Assert.Throws<ArgumentException>(() => FeatureLosses.Mse(a, b)).Message);
        Assert.Contains("smooth_l1_loss", Assert.Throws<ArgumentException>(() => FeatureLosses.SmoothL1(a, b)).Message);
        Assert.Contains("attention_map", Assert.Throws<ArgumentException>(() => FeatureLosses.AttentionMap(a)).Message);
        Assert.Contains("attention_transfer", Assert.Throws<ArgumentException>(() => FeatureLosses.AttentionTransfer(f, g)).Message);
        Assert.Contains("rkd_distance", Assert.Throws<ArgumentException>(() => FeatureLosses.RkdDistance(a, c)).Message);
        Assert.Contains("rkd_angle", Assert.Throws<ArgumentException>(() => FeatureLosses.RkdAngle(a, f)).Message);
        Assert.Contains("soft_cross_entropy", Assert.Throws<ArgumentException>(() => FeatureLosses.SoftCrossEntropy(a, b)).Message);
    }
}
