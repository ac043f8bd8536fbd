using Engine.Tensors;
using Engine.Tensors.Cpu;

namespace Engine.Tests.Ops;

/// <summary>
/// The conv2d kernels of Cpu/ConvKernels.cs, path by path (im2col + GEMM, 1×1 pointwise, depthwise; batch
/// parallel over images or one image at a time with a parallel GEMM), forward and both backward passes
/// against one float64 loop, gradchecks of first and second order, thread-count independence.
/// (tests/Engine.Tests/NN/ConvOpsTests.cs covers the op's general shapes and its errors.)
/// </summary>
public class ConvTests
{
    /// <summary>
    /// Float64 loops: y = conv2d(x, w) + b and, for an output gradient gy, dx, dw and db, accumulated in
    /// one pass over every (image, output channel, output position, tap).
    /// </summary>
    private static (double[] Y, double[] Dx, double[] Dw, double[] Db) Reference(double[] x, long[] xs, double[] w, long[] ws, double[] b, double[] gy,
        (int H, int W) s, (int H, int W) p, (int H, int W) d, int groups, long oh, long ow)
    {
        long n = xs[0], c = xs[1], h = xs[2], wd = xs[3], o = ws[0], cpg = ws[1], kh = ws[2], kw = ws[3], opg = o / groups;
        var y = new double[n * o * oh * ow];
        var dx = new double[x.Length];
        var dw = new double[w.Length];
        var db = new double[o];
        for (long bi = 0; bi < n; bi++)
            for (long oc = 0; oc < o; oc++)
                for (long oy = 0; oy < oh; oy++)
                    for (long ox = 0; ox < ow; ox++)
                    {
                        long yi = ((bi * o + oc) * oh + oy) * ow + ox;
                        double acc = b[oc], g = gy[yi];
                        db[oc] += g;
                        for (long ci = 0; ci < cpg; ci++)
                            for (long i = 0; i < kh; i++)
                                for (long j = 0; j < kw; j++)
                                {
                                    long iy = oy * s.H - p.H + i * d.H, ix = ox * s.W - p.W + j * d.W;
                                    if (iy < 0 || iy >= h || ix < 0 || ix >= wd) continue;
                                    long xi = ((bi * c + oc / opg * cpg + ci) * h + iy) * wd + ix, wi = ((oc * cpg + ci) * kh + i) * kw + j;
                                    acc += x[xi] * w[wi];
                                    dx[xi] += g * w[wi];
                                    dw[wi] += g * x[xi];
                                }
                        y[yi] = acc;
                    }
        return (y, dx, dw, db);
    }

    // (N, Cin, H, W, Cout, kH, kW, sH, sW, pH, pW, dH, dW, groups): one line per path
    public static IEnumerable<object[]> Cases() => new object[][]
    {
        [9, 3, 10, 9, 5, 3, 3, 1, 1, 1, 1, 1, 1, 1],     // im2col + GEMM, parallel over images, chunked dW
        [1, 8, 20, 19, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1],   // one image: parallel GEMM inside
        [2, 6, 11, 13, 4, 3, 2, 2, 3, 1, 0, 2, 1, 2],    // grouped, strided, dilated, asymmetric
        [5, 6, 7, 5, 9, 1, 1, 1, 1, 0, 0, 1, 1, 3],      // 1×1 pointwise (no im2col), grouped
        [4, 16, 9, 8, 24, 1, 1, 1, 1, 0, 0, 1, 1, 1],    // 1×1 pointwise
        [3, 5, 9, 8, 7, 1, 1, 2, 2, 0, 0, 1, 1, 1],      // 1×1 with stride 2: the general path
        [3, 7, 9, 10, 7, 3, 3, 1, 1, 1, 1, 1, 1, 7],     // depthwise, stride 1 (vectorized rows)
        [2, 4, 11, 9, 8, 3, 3, 2, 1, 2, 1, 2, 2, 4],     // depthwise, multiplier 2, strided, dilated, padded
        [10, 3, 6, 6, 6, 5, 5, 1, 1, 2, 2, 1, 1, 3],     // depthwise multiplier 2, kernel 5, batch parallel
        [3, 2, 4, 3, 2, 4, 3, 1, 1, 0, 0, 1, 1, 1],      // kernel as large as the input (1×1 output)
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void ForwardAndBackward_MatchFloat64Loops(int n, int c, int h, int w, int o, int kh, int kw, int sh, int sw, int ph, int pw, int dh, int dw, int g)
    {
        var rng = new Random(TestUtil.StableSeed($"convk{n}{c}{h}{w}{o}{kh}{kw}{sh}{sw}{ph}{pw}{dh}{dw}{g}"));
        long[] xs = [n, c, h, w], ws = [o, c / g, kh, kw];
        long oh = (h + 2 * ph - dh * (kh - 1) - 1) / sh + 1, ow = (w + 2 * pw - dw * (kw - 1) - 1) / sw + 1;
        long[] ys = [n, o, oh, ow];
        var xv = TestUtil.RandomValues(rng, TestUtil.ShapeNumEl(xs));
        var wv = TestUtil.RandomValues(rng, TestUtil.ShapeNumEl(ws));
        var bv = TestUtil.RandomValues(rng, o);
        var gv = TestUtil.RandomValues(rng, TestUtil.ShapeNumEl(ys));
        var (ry, rdx, rdw, rdb) = Reference(xv, xs, wv, ws, bv, gv, (sh, sw), (ph, pw), (dh, dw), g, oh, ow);
        foreach (var dtype in new[] { DType.Float32, DType.Float64 })
            foreach (bool strided in new[] { false, true })
            {
                using var x0 = TestUtil.FromDoubles(xv, xs, dtype);
                using var w0 = TestUtil.FromDoubles(wv, ws, dtype);
                using var x = (strided ? TestUtil.NonContiguous(x0) : x0.Alias()).RequiresGrad_();
                using var wt = (strided ? TestUtil.NonContiguous(w0) : w0.Alias()).RequiresGrad_();
                using var b = TestUtil.FromDoubles(bv, [o], dtype).RequiresGrad_();
                using var gy0 = TestUtil.FromDoubles(gv, ys, dtype);
                using var gy = strided ? TestUtil.NonContiguous(gy0) : gy0.Alias();
                using var y = x.Conv2d(wt, b, (sh, sw), (ph, pw), (dh, dw), g);
                Assert.Equal(ys, y.ShapeArray());
                y.Backward(gy);
                double tol = dtype == DType.Float32 ? 2e-5 : 1e-12;
                string what = $"{dtype.Name()} strided={strided}";
                TestUtil.AssertClose(ry, y, tol, tol, $"conv2d y, {what}");
                TestUtil.AssertClose(rdx, x.Grad!, tol, tol, $"conv2d dx, {what}");
                TestUtil.AssertClose(rdw, wt.Grad!, tol, tol, $"conv2d dw, {what}");
                TestUtil.AssertClose(rdb, b.Grad!, tol, tol, $"conv2d db, {what}");
            }
    }

    // (N, Cin, H, W, Cout, k, stride, pad, dilation, groups): small shapes, one per path
    public static IEnumerable<object[]> GradCases() => new object[][]
    {
        [2, 2, 5, 4, 3, 3, 1, 1, 1, 1],   // im2col + GEMM
        [2, 4, 3, 4, 6, 1, 1, 0, 1, 2],   // pointwise, grouped
        [2, 3, 5, 5, 6, 3, 2, 1, 1, 3],   // depthwise, multiplier 2, strided
        [1, 2, 6, 5, 2, 2, 1, 1, 2, 2],   // depthwise, dilated
    };

    [Theory]
    [MemberData(nameof(GradCases))]
    public void GradCheck_FirstAndSecondOrder(int n, int c, int h, int w, int o, int k, int s, int p, int d, int g)
    {
        var rng = new Random(TestUtil.StableSeed($"convkgrad{n}{c}{h}{w}{o}{k}{s}{p}{d}{g}"));
        using var x = TestUtil.Random(rng, [n, c, h, w], DType.Float64).RequiresGrad_();
        using var wt = TestUtil.Random(rng, [o, c / g, k, k], DType.Float64).RequiresGrad_();
        using var b = TestUtil.Random(rng, [o], DType.Float64).RequiresGrad_();
        GradCheck.Check(t => t[0].Conv2d(t[1], t[2], (s, s), (p, p), (d, d), g), [x, wt, b]);
        // Squared so the second derivatives are not all zero (conv is bilinear in x and w): this runs the
        // gradients of the backward-data and backward-weight ops.
        GradCheck.CheckSecondOrder(t => { using var y = t[0].Conv2d(t[1], null, (s, s), (p, p), (d, d), g); return y.Mul(y); }, [x, wt]);
    }

    [Theory]
    [InlineData(12, 4, 1)]   // parallel over images; dW summed over fixed chunks
    [InlineData(1, 8, 1)]    // one image, parallel GEMM
    [InlineData(12, 8, 8)]   // depthwise
    public void Results_DoNotDependOnTheThreadCount(int n, int c, int g)
    {
        int saved = Parallelism.MaxThreads;
        try
        {
            var rng = new Random(TestUtil.StableSeed($"convthreads{n}{c}{g}"));
            var xv = TestUtil.RandomValues(rng, n * c * 18 * 17);
            var wv = TestUtil.RandomValues(rng, 8 * (c / g) * 9);
            double[][]? first = null;
            foreach (int threads in new[] { 1, 2, 3 })
            {
                Parallelism.MaxThreads = threads;
                using var x = TestUtil.FromDoubles(xv, [n, c, 18, 17]).RequiresGrad_();
                using var w = TestUtil.FromDoubles(wv, [8, c / g, 3, 3]).RequiresGrad_();
                using var y = x.Conv2d(w, padding: (1, 1), groups: g);
                using (var y2 = y.Mul(y))
                using (var loss = y2.Sum())
                    loss.Backward();
                double[][] got = [y.ToArray<float>().Select(v => (double)v).ToArray(), x.Grad!.ToArray<float>().Select(v => (double)v).ToArray(), w.Grad!.ToArray<float>().Select(v => (double)v).ToArray()];
                if (first is null) first = got;
                else for (int i = 0; i < 3; i++) Assert.Equal(first[i], got[i]); // bitwise
            }
        }
        finally { Parallelism.MaxThreads = saved; }
    }

    [Fact]
    public void GradientOfASum_ExpandedOutputGradient_IsReadInPlace_AndMatchesFloat64()
    {
        // y.Sum().Backward() hands conv2d an expanded (all strides 0) gradient, which the kernels read in place.
        var rng = new Random(21);
        long[] xs = [5, 3, 9, 8], ws = [4, 3, 3, 3];
        var xv = TestUtil.RandomValues(rng, TestUtil.ShapeNumEl(xs));
        var wv = TestUtil.RandomValues(rng, TestUtil.ShapeNumEl(ws));
        var ones = Enumerable.Repeat(1.0, 5 * 4 * 9 * 8).ToArray();
        var (_, rdx, rdw, _) = Reference(xv, xs, wv, ws, new double[4], ones, (1, 1), (1, 1), (1, 1), 1, 9, 8);
        using var x = TestUtil.FromDoubles(xv, xs).RequiresGrad_();
        using var w = TestUtil.FromDoubles(wv, ws).RequiresGrad_();
        using (var y = x.Conv2d(w, padding: (1, 1)))
        using (var loss = y.Sum())
            loss.Backward();
        TestUtil.AssertClose(rdx, x.Grad!, 1e-5, 1e-5, "dx of sum(conv2d)");
        TestUtil.AssertClose(rdw, w.Grad!, 1e-5, 1e-5, "dw of sum(conv2d)");
    }

    [Fact]
    public void IntegerInput_Throws_NamingTheOp()
    {
        using var x = Tensor.Zeros([1, 2, 4, 4], DType.Int32);
        using var w = Tensor.Zeros([3, 2, 3, 3], DType.Int32);
        var e = Assert.Throws<ArgumentException>(() => x.Conv2d(w));
        Assert.Contains("conv2d", e.Message);
        Assert.Contains("int32", e.Message);
    }
}
