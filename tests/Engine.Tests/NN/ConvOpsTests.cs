using Engine.Tensors;

namespace Engine.Tests.NN;

public class ConvOpsTests
{
    // (N, Cin, H, W, Cout, kH, kW, sH, sW, pH, pW, dH, dW, groups, bias)
    public static IEnumerable<object[]> ConvCases() => new object[][]
    {
        [1, 1, 5, 5, 1, 3, 3, 1, 1, 0, 0, 1, 1, 1, true],
        [3, 2, 7, 6, 3, 3, 3, 1, 1, 1, 1, 1, 1, 1, true],
        [1, 3, 9, 7, 5, 3, 2, 2, 1, 1, 0, 1, 1, 1, false],
        [3, 4, 8, 9, 2, 2, 3, 1, 2, 0, 1, 2, 1, 2, true],
        [1, 5, 11, 6, 5, 3, 3, 2, 2, 2, 1, 2, 2, 5, true],   // depthwise, dilated, strided, padded
        [3, 4, 6, 5, 4, 1, 1, 1, 1, 0, 0, 1, 1, 4, false],
        [3, 2, 4, 4, 4, 4, 4, 3, 3, 2, 2, 1, 1, 2, true],    // kernel as large as the input
        [1, 3, 13, 1, 2, 3, 1, 2, 1, 1, 0, 3, 1, 1, true],   // width 1
    };

    [Theory]
    [MemberData(nameof(ConvCases))]
    public void Conv2d_MatchesLoopReference(int n, int c, int h, int w, int o, int kh, int kw, int sh, int sw, int ph, int pw, int dh, int dw, int g, bool hasBias)
    {
        var rng = new Random(TestUtil.StableSeed($"conv{n}{c}{h}{w}{o}{kh}{kw}{sh}{sw}{ph}{pw}{dh}{dw}{g}"));
        long[] xs = [n, c, h, w], ws = [o, c / g, kh, kw];
        var xv = TestUtil.RandomValues(rng, TestUtil.ShapeNumEl(xs));
        var wv = TestUtil.RandomValues(rng, TestUtil.ShapeNumEl(ws));
        var bv = hasBias ? TestUtil.RandomValues(rng, o) : null;
        var expected = NNReference.Conv2d(xv, xs, wv, ws, bv, (sh, sw), (ph, pw), (dh, dw), g, out var outShape);
        foreach (var dtype in new[] { DType.Float32, DType.Float64 })
            foreach (bool strided in new[] { false, true })
            {
                using var x0 = TestUtil.FromDoubles(xv, xs, dtype);
                using var x = strided ? TestUtil.NonContiguous(x0) : x0.Alias();
                using var wt = TestUtil.FromDoubles(wv, ws, dtype);
                using var b = bv is null ? null : TestUtil.FromDoubles(bv, [o], dtype);
                using var y = x.Conv2d(wt, b, (sh, sw), (ph, pw), (dh, dw), g);
                Assert.Equal(outShape, y.ShapeArray());
                double tol = dtype == DType.Float32 ? 1e-5 : 1e-12;
                TestUtil.AssertClose(expected, y, tol, tol, $"conv2d {dtype.Name()} strided={strided}");
            }
    }

    [Theory]
    [MemberData(nameof(ConvCases))]
    public void Conv2d_GradCheck_InputWeightBias(int n, int c, int h, int w, int o, int kh, int kw, int sh, int sw, int ph, int pw, int dh, int dw, int g, bool hasBias)
    {
        if (n > 1) n = 2; // keep finite differences cheap
        var rng = new Random(TestUtil.StableSeed($"convgrad{c}{h}{w}{o}{kh}{g}"));
        using var x = TestUtil.Random(rng, [n, c, h, w], DType.Float64).RequiresGrad_();
        using var wt = TestUtil.Random(rng, [o, c / g, kh, kw], DType.Float64).RequiresGrad_();
        using var b = TestUtil.Random(rng, [o], DType.Float64).RequiresGrad_(hasBias);
        GradCheck.Check(t => t[0].Conv2d(t[1], hasBias ? t[2] : null, (sh, sw), (ph, pw), (dh, dw), g), [x, wt, b]);
    }

    [Fact]
    public void Conv2d_SecondOrder()
    {
        var rng = new Random(7);
        using var x = TestUtil.Random(rng, [2, 2, 5, 4], DType.Float64).RequiresGrad_();
        using var w = TestUtil.Random(rng, [4, 1, 3, 2], DType.Float64).RequiresGrad_();
        // Squared so the Hessian is not zero (conv is bilinear in x and w).
        GradCheck.CheckSecondOrder(t => { using var y = t[0].Conv2d(t[1], null, (2, 1), (1, 1), (1, 1), 2); return y.Mul(y); }, [x, w]);
    }

    public static IEnumerable<object[]> WindowCases() => new object[][]
    {
        // N, C, H, W, kH, kW, sH, sW, pH, pW, dH, dW
        [1, 1, 4, 4, 2, 2, 1, 1, 0, 0, 1, 1],
        [3, 2, 7, 5, 3, 2, 2, 1, 1, 1, 1, 2],
        [2, 3, 6, 9, 3, 3, 3, 2, 2, 0, 2, 1],
        [1, 5, 5, 3, 1, 3, 1, 1, 0, 1, 1, 1],
    };

    [Theory]
    [MemberData(nameof(WindowCases))]
    public void Unfold_And_Fold_MatchLoopReference(int n, int c, int h, int w, int kh, int kw, int sh, int sw, int ph, int pw, int dh, int dw)
    {
        var rng = new Random(TestUtil.StableSeed($"unfold{n}{c}{h}{w}{kh}{kw}{sh}{sw}"));
        long[] xs = [n, c, h, w];
        var xv = TestUtil.RandomValues(rng, TestUtil.ShapeNumEl(xs));
        var cols = NNReference.Unfold(xv, xs, (kh, kw), (sh, sw), (ph, pw), (dh, dw), out var colShape);
        var cv = TestUtil.RandomValues(rng, TestUtil.ShapeNumEl(colShape));
        var folded = NNReference.Fold(cv, n, c, h, w, (kh, kw), (sh, sw), (ph, pw), (dh, dw));
        foreach (var dtype in new[] { DType.Float32, DType.Float64 })
        {
            using var x0 = TestUtil.FromDoubles(xv, xs, dtype);
            using var x = TestUtil.NonContiguous(x0);
            using var u = x.Unfold((kh, kw), (sh, sw), (ph, pw), (dh, dw));
            Assert.Equal(colShape, u.ShapeArray());
            double exact = dtype == DType.Float32 ? 1e-7 : 0; // a copy: exact up to the float32 rounding of the input
            TestUtil.AssertClose(cols, u, exact, exact, "unfold");
            using var ct = TestUtil.FromDoubles(cv, colShape, dtype);
            using var f = ct.Fold((h, w), (kh, kw), (sh, sw), (ph, pw), (dh, dw));
            Assert.Equal(xs, f.ShapeArray());
            double tol = dtype == DType.Float32 ? 1e-6 : 1e-14;
            TestUtil.AssertClose(folded, f, tol, tol, "fold");
        }
    }

    [Theory]
    [MemberData(nameof(WindowCases))]
    public void Unfold_And_Fold_GradCheck_FirstAndSecondOrder(int n, int c, int h, int w, int kh, int kw, int sh, int sw, int ph, int pw, int dh, int dw)
    {
        var rng = new Random(TestUtil.StableSeed($"unfoldgrad{n}{c}{h}{w}{kh}{kw}"));
        n = Math.Min(n, 2);
        using var x = TestUtil.Random(rng, [n, c, h, w], DType.Float64).RequiresGrad_();
        GradCheck.Check(t => t[0].Unfold((kh, kw), (sh, sw), (ph, pw), (dh, dw)), [x]);
        GradCheck.CheckSecondOrder(t => { using var u = t[0].Unfold((kh, kw), (sh, sw), (ph, pw), (dh, dw)); return u.Mul(u); }, [x]);
        long oh = NNReference.OutSize(h, kh, sh, ph, dh), ow = NNReference.OutSize(w, kw, sw, pw, dw);
        using var cols = TestUtil.Random(rng, [n, c * kh * kw, oh * ow], DType.Float64).RequiresGrad_();
        GradCheck.Check(t => t[0].Fold((h, w), (kh, kw), (sh, sw), (ph, pw), (dh, dw)), [cols]);
        GradCheck.CheckSecondOrder(t => { using var f = t[0].Fold((h, w), (kh, kw), (sh, sw), (ph, pw), (dh, dw)); return f.Mul(f); }, [cols]);
    }

    [Fact]
    public void Pad2d_MatchesReference_AndGradCheck()
    {
        var rng = new Random(3);
        long[] xs = [2, 3, 4, 5];
        var xv = TestUtil.RandomValues(rng, TestUtil.ShapeNumEl(xs));
        using var x = TestUtil.FromDoubles(xv, xs, DType.Float64);
        using var y = x.Pad2d(1, 2, 0, 3, value: -7);
        Assert.Equal(new long[] { 2, 3, 7, 8 }, y.ShapeArray());
        var yv = y.ToArray<double>();
        for (long i = 0; i < yv.Length; i++)
        {
            var idx = TestUtil.Unravel(i, [2, 3, 7, 8]);
            long r = idx[2] - 0, cc = idx[3] - 1;
            double e = r >= 0 && r < 4 && cc >= 0 && cc < 5 ? xv[((idx[0] * 3 + idx[1]) * 4 + r) * 5 + cc] : -7;
            Assert.Equal(e, yv[i]);
        }
        using var xg = TestUtil.Random(rng, [1, 2, 3, 3], DType.Float64).RequiresGrad_();
        GradCheck.Check(t => t[0].Pad2d(2, 0, 1, 1), [xg]);
        GradCheck.CheckSecondOrder(t => { using var p = t[0].Pad2d(1, 1, 1, 1); return p.Mul(p); }, [xg]);
    }

    [Fact]
    public void EmptyBatch_GivesEmptyOutputs_AndGradients()
    {
        using var x = Tensor.Zeros([0, 2, 5, 5]).RequiresGrad_();
        using var w = Tensor.Ones([3, 2, 3, 3]).RequiresGrad_();
        using var b = Tensor.Ones([3]).RequiresGrad_();
        using var y = x.Conv2d(w, b, padding: (1, 1));
        Assert.Equal(new long[] { 0, 3, 5, 5 }, y.ShapeArray());
        using (var s = y.Sum()) s.Backward();
        Assert.Equal(new long[] { 0, 2, 5, 5 }, x.Grad!.ShapeArray());
        TestUtil.AssertClose(new double[18 * 3], w.Grad!, 0, 0, "empty-batch weight gradient");
        using var mp = x.MaxPool2d((2, 2));
        Assert.Equal(new long[] { 0, 2, 2, 2 }, mp.ShapeArray());
        using var ap = x.AvgPool2d((3, 3), (1, 1), (1, 1));
        Assert.Equal(new long[] { 0, 2, 5, 5 }, ap.ShapeArray());
        using var aap = x.AdaptiveAvgPool2d(2, 3);
        Assert.Equal(new long[] { 0, 2, 2, 3 }, aap.ShapeArray());
    }

    [Fact]
    public void Errors_NameTheOpAndShapes()
    {
        using var x = Tensor.Zeros([2, 3, 5, 5]);
        using var w = Tensor.Zeros([4, 2, 3, 3]);
        var e1 = Assert.Throws<ArgumentException>(() => x.Conv2d(w));
        Assert.Contains("conv2d", e1.Message);
        Assert.Contains("[2, 3, 5, 5]", e1.Message);
        Assert.Contains("[4, 2, 3, 3]", e1.Message);
        using var big = Tensor.Zeros([4, 3, 7, 7]);
        var e2 = Assert.Throws<ArgumentException>(() => x.Conv2d(big));
        Assert.Contains("smaller than the dilated kernel", e2.Message);
        var e3 = Assert.Throws<ArgumentException>(() => x.Unfold((0, 2)));
        Assert.Contains("unfold", e3.Message);
        using var x3 = Tensor.Zeros([3, 5, 5]);
        var e4 = Assert.Throws<ArgumentException>(() => x3.Unfold((2, 2)));
        Assert.Contains("4-D", e4.Message);
        using var cols = Tensor.Zeros([1, 4, 10]);
        var e5 = Assert.Throws<ArgumentException>(() => cols.Fold((4, 4), (2, 2)));
        Assert.Contains("fold", e5.Message);
        var e6 = Assert.Throws<ArgumentException>(() => x.Pad2d(-1, 0, 0, 0));
        Assert.Contains("pad2d", e6.Message);
    }
}
