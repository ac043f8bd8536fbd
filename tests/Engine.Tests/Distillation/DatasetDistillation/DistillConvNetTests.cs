using Engine.Distillation.DatasetDistillation;
using Engine.Tensors;

namespace Engine.Tests.Distillation.DatasetDistillation;

/// <summary>The functional ConvNet against a float64 reference written with plain loops.</summary>
public class DistillConvNetTests
{
    /// <summary>conv 3×3 (padding 1) → [instance norm] → ReLU → avg-pool 2×2, for one block, in doubles.</summary>
    private static double[] ReferenceBlock(double[] x, int n, int cin, int h, double[] w, double[] b, int cout, double[]? gamma, double[]? beta, out int hOut)
    {
        var conv = new double[n * cout * h * h];
        for (int i = 0; i < n; i++)
            for (int o = 0; o < cout; o++)
                for (int y = 0; y < h; y++)
                    for (int xx = 0; xx < h; xx++)
                    {
                        double s = b[o];
                        for (int c = 0; c < cin; c++)
                            for (int ky = 0; ky < 3; ky++)
                                for (int kx = 0; kx < 3; kx++)
                                {
                                    int iy = y + ky - 1, ix = xx + kx - 1;
                                    if (iy < 0 || iy >= h || ix < 0 || ix >= h) continue;
                                    s += w[((o * cin + c) * 3 + ky) * 3 + kx] * x[((i * cin + c) * h + iy) * h + ix];
                                }
                        conv[((i * cout + o) * h + y) * h + xx] = s;
                    }
        if (gamma is not null)
            for (int i = 0; i < n; i++)
                for (int o = 0; o < cout; o++)
                {
                    int off = (i * cout + o) * h * h;
                    double mean = 0, var = 0;
                    for (int p = 0; p < h * h; p++) mean += conv[off + p];
                    mean /= h * h;
                    for (int p = 0; p < h * h; p++) var += (conv[off + p] - mean) * (conv[off + p] - mean);
                    var /= h * h;
                    for (int p = 0; p < h * h; p++) conv[off + p] = (conv[off + p] - mean) / Math.Sqrt(var + DistillConvNet.NormEps) * gamma[o] + beta![o];
                }
        hOut = h / 2;
        var pooled = new double[n * cout * hOut * hOut];
        for (int i = 0; i < n * cout; i++)
            for (int y = 0; y < hOut; y++)
                for (int xx = 0; xx < hOut; xx++)
                {
                    double s = 0;
                    for (int dy = 0; dy < 2; dy++)
                        for (int dx = 0; dx < 2; dx++) s += Math.Max(0, conv[(i * h + 2 * y + dy) * h + 2 * xx + dx]);
                    pooled[(i * hOut + y) * hOut + xx] = s / 4;
                }
        return pooled;
    }

    [Theory]
    [InlineData(ConvNetNorm.None, 1)]
    [InlineData(ConvNetNorm.Instance, 1)]
    [InlineData(ConvNetNorm.Instance, 2)]
    public void Forward_MatchesFloat64Reference(ConvNetNorm norm, int depth)
    {
        var spec = new ConvNetSpec(Channels: 2, ImageSize: 7, Classes: 3, Width: 3, Depth: depth, Norm: norm); // 7 → 3 → 1: odd sizes floor
        var rng = new Random(TestUtil.StableSeed($"convnet{norm}{depth}"));
        var ps = DistillConvNet.Init(spec, new Generator(9), DType.Float64);
        if (norm == ConvNetNorm.Instance) // non-trivial scale and shift
            for (int d = 0; d < depth; d++)
                using (Tensor.NoGrad())
                {
                    using var g = TestUtil.Random(rng, [3], DType.Float64, 0.5, 1.5);
                    using var bt = TestUtil.Random(rng, [3], DType.Float64);
                    ps[d * 4 + 2].CopyFrom_(g);
                    ps[d * 4 + 3].CopyFrom_(bt);
                }
        int n = 2;
        var xv = TestUtil.RandomValues(rng, n * 2 * 7 * 7);
        using var x = TestUtil.FromDoubles(xv, [n, 2, 7, 7], DType.Float64);

        var h = xv;
        int size = 7, cin = 2, per = norm == ConvNetNorm.Instance ? 4 : 2;
        for (int d = 0; d < depth; d++)
        {
            var k = d * per;
            h = ReferenceBlock(h, n, cin, size, ps[k].ToArray<double>(), ps[k + 1].ToArray<double>(), 3,
                norm == ConvNetNorm.Instance ? ps[k + 2].ToArray<double>() : null, norm == ConvNetNorm.Instance ? ps[k + 3].ToArray<double>() : null, out size);
            cin = 3;
        }
        Assert.Equal(spec.EmbeddingSize, h.Length / n);
        using var emb = DistillConvNet.Embed(spec, ps, x);
        TestUtil.AssertClose(h, emb, atol: 1e-12, rtol: 1e-12, what: "embedding");

        var fw = ps[^2].ToArray<double>();
        var fb = ps[^1].ToArray<double>();
        long e = spec.EmbeddingSize;
        var logits = new double[n * 3];
        for (int i = 0; i < n; i++)
            for (int o = 0; o < 3; o++)
            {
                double s = fb[o];
                for (int j = 0; j < e; j++) s += fw[o * e + j] * h[i * e + j];
                logits[i * 3 + o] = s;
            }
        using var y = DistillConvNet.Forward(spec, ps, x);
        TestUtil.AssertClose(logits, y, atol: 1e-12, rtol: 1e-12, what: "logits");
        foreach (var p in ps) p.Dispose();
    }

    [Fact]
    public void Init_FollowsPyTorchBoundsAndNames_AndBadInputsAreNamed()
    {
        var spec = new ConvNetSpec(Width: 8, Depth: 2);
        var ps = DistillConvNet.Init(spec, new Generator(1));
        Assert.Equal(DistillConvNet.ParameterCount(spec), ps.Length);
        Assert.Equal(DistillConvNet.ParameterNames(spec).Length, ps.Length);
        Assert.Equal(new long[] { 10, 8 * 7 * 7 }, ps[^2].ShapeArray());
        double bound = 1 / Math.Sqrt(8 * 9); // second conv: fan_in = 8·3·3
        Assert.All(ps[4].ToArray<float>(), v => Assert.InRange(v, -bound, bound));
        Assert.All(ps[2].ToArray<float>(), v => Assert.Equal(1f, v)); // norm scale
        Assert.All(ps, p => Assert.True(p.RequiresGrad));

        using var wrong = Tensor.Zeros([2, 1, 27, 28]);
        Assert.Contains("[2, 1, 27, 28]", Assert.Throws<ArgumentException>(() => DistillConvNet.Forward(spec, ps, wrong)).Message);
        using var f64 = Tensor.Zeros([2, 1, 28, 28], DType.Float64);
        Assert.Contains("float64", Assert.Throws<ArgumentException>(() => DistillConvNet.Forward(spec, ps, f64)).Message);
        Assert.Throws<ArgumentException>(() => DistillConvNet.Forward(spec, ps[..^1], f64));
        Assert.Throws<ArgumentException>(() => new ConvNetSpec(ImageSize: 3, Depth: 2).Validate());
        foreach (var p in ps) p.Dispose();
    }
}
