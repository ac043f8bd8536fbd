using Engine.Tensors;

namespace Engine.Tests.Ops;

/// <summary>
/// The direct avg_pool2d kernels (forward and the recorded backward op): the gradient against a float64
/// loop on a batch large enough for the parallel path, and second-order gradchecks (the backward op's own
/// gradient is avg_pool2d). Forward values and first-order gradchecks: tests/Engine.Tests/NN/PoolOpsTests.cs.
/// </summary>
public class PoolTests
{
    [Theory]
    [InlineData(3, 3, 1, 1, 1, 1, true)]
    [InlineData(3, 2, 2, 1, 1, 1, false)]
    [InlineData(2, 2, 2, 2, 0, 0, true)]
    public void AvgPool2d_Gradient_MatchesFloat64Loop(int kh, int kw, int sh, int sw, int ph, int pw, bool includePad)
    {
        const int n = 6, c = 5, h = 17, w = 14;
        var rng = new Random(TestUtil.StableSeed($"avgpoolgrad{kh}{kw}{sh}{sw}{ph}{pw}{includePad}"));
        long oh = (h + 2 * ph - kh) / sh + 1, ow = (w + 2 * pw - kw) / sw + 1;
        var gv = TestUtil.RandomValues(rng, n * c * oh * ow);
        var expected = new double[n * c * h * w];
        for (long plane = 0; plane < n * c; plane++)
            for (long oy = 0; oy < oh; oy++)
                for (long ox = 0; ox < ow; ox++)
                {
                    int count = 0;
                    for (long i = 0; i < kh; i++)
                        for (long j = 0; j < kw; j++)
                        {
                            long iy = oy * sh - ph + i, ix = ox * sw - pw + j;
                            if (iy >= 0 && iy < h && ix >= 0 && ix < w) count++;
                        }
                    double v = gv[(plane * oh + oy) * ow + ox] / (includePad ? kh * kw : count);
                    for (long i = 0; i < kh; i++)
                        for (long j = 0; j < kw; j++)
                        {
                            long iy = oy * sh - ph + i, ix = ox * sw - pw + j;
                            if (iy >= 0 && iy < h && ix >= 0 && ix < w) expected[(plane * h + iy) * w + ix] += v;
                        }
                }
        foreach (var dtype in new[] { DType.Float32, DType.Float64 })
        {
            using var x = Tensor.Zeros([n, c, h, w], dtype).RequiresGrad_();
            using var y = x.AvgPool2d((kh, kw), (sh, sw), (ph, pw), includePad);
            using var g0 = TestUtil.FromDoubles(gv, [n, c, oh, ow], dtype);
            using var g = TestUtil.NonContiguous(g0);
            y.Backward(g);
            double tol = dtype == DType.Float32 ? 1e-6 : 1e-14;
            TestUtil.AssertClose(expected, x.Grad!, tol, tol, $"avg_pool2d gradient {dtype.Name()}");
        }
    }

    [Theory]
    [InlineData(3, 3, 2, 1, true)]
    [InlineData(2, 3, 1, 1, false)]
    public void AvgPool2d_SecondOrderGradCheck(int kh, int kw, int s, int p, bool includePad)
    {
        var rng = new Random(TestUtil.StableSeed($"avgpool2nd{kh}{kw}{s}{p}{includePad}"));
        using var x = TestUtil.Random(rng, [2, 2, 6, 5], DType.Float64).RequiresGrad_();
        GradCheck.CheckSecondOrder(t => { using var y = t[0].AvgPool2d((kh, kw), (s, s), (p, p), includePad); return y.Mul(y); }, [x]);
    }
}
