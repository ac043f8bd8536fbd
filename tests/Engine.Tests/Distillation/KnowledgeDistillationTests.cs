using Engine.Distillation;
using Engine.Tensors;

namespace Engine.Tests.Distillation;

public class KnowledgeDistillationTests
{
    // float64 reference: (1 − α)·CE + α·T²·(1/B)·Σ p (log p − log q), and its gradient wrt s.
    private static (double Loss, double[] Grad) Reference(double[] s, double[] t, long[] y, int b, int c, double temp, double alpha, bool scale)
    {
        double ce = 0, kl = 0;
        var grad = new double[b * c];
        double t2 = scale ? temp * temp : 1;
        for (int i = 0; i < b; i++)
        {
            double[] LogSoftmax(double[] x, double tau)
            {
                double m = double.NegativeInfinity;
                for (int j = 0; j < c; j++) m = Math.Max(m, x[i * c + j] / tau);
                double z = 0;
                for (int j = 0; j < c; j++) z += Math.Exp(x[i * c + j] / tau - m);
                var r = new double[c];
                for (int j = 0; j < c; j++) r[j] = x[i * c + j] / tau - m - Math.Log(z);
                return r;
            }
            var ls1 = LogSoftmax(s, 1);
            var lq = LogSoftmax(s, temp);
            var lp = LogSoftmax(t, temp);
            ce -= ls1[y[i]];
            for (int j = 0; j < c; j++)
            {
                kl += Math.Exp(lp[j]) * (lp[j] - lq[j]);
                double g1 = Math.Exp(ls1[j]) - (j == y[i] ? 1 : 0);
                grad[i * c + j] = (1 - alpha) * g1 / b + alpha * t2 / temp * (Math.Exp(lq[j]) - Math.Exp(lp[j])) / b;
            }
        }
        return ((1 - alpha) * ce / b + alpha * t2 * kl / b, grad);
    }

    [Theory]
    [InlineData(DType.Float64, 1, 3, 4.0, 0.9, true)]
    [InlineData(DType.Float64, 7, 10, 4.0, 0.9, true)]
    [InlineData(DType.Float32, 5, 13, 2.0, 0.5, true)]
    [InlineData(DType.Float64, 4, 6, 1.0, 0.0, true)]
    [InlineData(DType.Float64, 4, 6, 3.0, 1.0, false)]
    [InlineData(DType.Float32, 16, 10, 8.0, 0.3, false)]
    public void MatchesFloat64Reference(DType dtype, int b, int c, double temp, double alpha, bool scale)
    {
        var rng = new Random(TestUtil.StableSeed($"kd{b}{c}{temp}{alpha}{scale}{dtype}"));
        var s = TestUtil.RandomValues(rng, b * c, -4, 4);
        var t = TestUtil.RandomValues(rng, b * c, -4, 4);
        var y = Enumerable.Range(0, b).Select(_ => (long)rng.Next(c)).ToArray();
        var (expected, expectedGrad) = Reference(s, t, y, b, c, temp, alpha, scale);

        using var st = TestUtil.FromDoubles(s, [b, c], dtype).RequiresGrad_();
        using var tt = TestUtil.FromDoubles(t, [b, c], dtype);
        using var yt = Tensor.FromArray(y, b);
        using var loss = Losses.KnowledgeDistillation(st, tt, yt, temp, alpha, scale);
        double tol = dtype == DType.Float32 ? 1e-5 : 1e-12;
        Assert.Equal(0, loss.Rank);
        Assert.Equal(expected, loss.ToDouble(), tol * Math.Max(1, Math.Abs(expected)));
        loss.Backward();
        TestUtil.AssertClose(expectedGrad, st.Grad!, atol: tol, rtol: 1e-4);
    }

    [Fact]
    public void NonContiguousLogitsMatchContiguous()
    {
        var rng = new Random(3);
        using var s = TestUtil.Random(rng, [6, 9], DType.Float64, -3, 3);
        using var t = TestUtil.Random(rng, [6, 9], DType.Float64, -3, 3);
        using var sNc = TestUtil.NonContiguous(s);
        using var tNc = TestUtil.NonContiguous(t);
        using var y = Tensor.FromArray(new long[] { 0, 1, 2, 3, 4, 8 }, 6);
        using var a = Losses.KnowledgeDistillation(s, t, y, 4, 0.9);
        using var b = Losses.KnowledgeDistillation(sNc, tNc, y, 4, 0.9);
        Assert.Equal(a.ToDouble(), b.ToDouble(), 1e-12);
    }

    [Fact]
    public void ZeroWhenStudentEqualsTeacherAndAlphaOne()
    {
        var rng = new Random(5);
        using var s = TestUtil.Random(rng, [4, 5], DType.Float64, -50, 50);
        using var y = Tensor.FromArray(new long[] { 0, 1, 2, 3 }, 4);
        using var loss = Losses.KnowledgeDistillation(s, s, y, 0.5, 1.0);
        Assert.Equal(0, loss.ToDouble(), 1e-12);
    }

    [Fact]
    public void GradCheckStudentAndTeacher()
    {
        var rng = new Random(11);
        using var s = TestUtil.Random(rng, [3, 5], DType.Float64, -2, 2).RequiresGrad_();
        using var t = TestUtil.Random(rng, [3, 5], DType.Float64, -2, 2).RequiresGrad_();
        using var y = Tensor.FromArray(new long[] { 4, 0, 2 }, 3);
        GradCheck.Check(x => Losses.KnowledgeDistillation(x[0], x[1], y, 2.5, 0.7), [s, t]);
        GradCheck.CheckSecondOrder(x => Losses.KnowledgeDistillation(x[0], x[1], y, 2.5, 0.7), [s, t]);
    }

    [Fact]
    public void BadInputsNameTheLoss()
    {
        using var s = Tensor.Zeros([2, 3]);
        using var t = Tensor.Zeros([2, 4]);
        using var y = Tensor.FromArray(new long[] { 0, 1 }, 2);
        Assert.Contains("kd_loss", Assert.Throws<ArgumentException>(() => Losses.KnowledgeDistillation(s, t, y, 4, 0.9)).Message);
        Assert.Contains("kd_loss", Assert.Throws<ArgumentOutOfRangeException>(() => Losses.KnowledgeDistillation(s, s, y, 0, 0.9)).Message);
        Assert.Contains("kd_loss", Assert.Throws<ArgumentOutOfRangeException>(() => Losses.KnowledgeDistillation(s, s, y, 4, 1.5)).Message);
        using var y3 = Tensor.FromArray(new long[] { 0, 1, 2 }, 3);
        Assert.Contains("kd_loss", Assert.Throws<ArgumentException>(() => Losses.KnowledgeDistillation(s, s, y3, 4, 0.9)).Message);
        using var d = Tensor.Zeros([2, 3], DType.Float64);
        Assert.Contains("kd_loss", Assert.Throws<ArgumentException>(() => Losses.KnowledgeDistillation(s, d, y, 4, 0.9)).Message);
    }
}
