using Engine.Tensors;

namespace Engine.Tests.NN;

public class PoolOpsTests
{
    public static IEnumerable<object[]> MaxCases() => new object[][]
    {
        // N, C, H, W, kH, kW, sH, sW, pH, pW, dH, dW
        [1, 1, 4, 4, 2, 2, 2, 2, 0, 0, 1, 1],
        [3, 2, 7, 5, 3, 2, 2, 1, 1, 1, 1, 1],
        [2, 3, 9, 8, 3, 3, 1, 2, 1, 0, 2, 2],
        [1, 5, 5, 1, 2, 1, 1, 1, 1, 0, 1, 1],
        [3, 4, 28, 28, 2, 2, 2, 2, 0, 0, 1, 1],
    };

    [Theory]
    [MemberData(nameof(MaxCases))]
    public void MaxPool2d_MatchesReference_ValuesIndicesAndGradient(int n, int c, int h, int w, int kh, int kw, int sh, int sw, int ph, int pw, int dh, int dw)
    {
        var rng = new Random(TestUtil.StableSeed($"maxpool{n}{c}{h}{w}{kh}{kw}{sh}{sw}{ph}{pw}{dh}{dw}"));
        long[] xs = [n, c, h, w];
        var xv = TestUtil.RandomValues(rng, TestUtil.ShapeNumEl(xs));
        var (ev, ei) = NNReference.MaxPool(xv, xs, (kh, kw), (sh, sw), (ph, pw), (dh, dw), out var outShape);
        foreach (var dtype in new[] { DType.Float32, DType.Float64 })
        {
            using var x0 = TestUtil.FromDoubles(xv, xs, dtype);
            using var x = TestUtil.NonContiguous(x0).RequiresGrad_();
            var (y, idx) = x.MaxPool2dWithIndices((kh, kw), (sh, sw), (ph, pw), (dh, dw));
            using (y)
            using (idx)
            {
                Assert.Equal(outShape, y.ShapeArray());
                TestUtil.AssertClose(ev, y, 1e-7, 0, "max_pool2d values");
                Assert.Equal(ei, idx.ToArray<long>());
                // Gradient: each output's g lands on its argmax (summed where windows share one).
                var gv = TestUtil.RandomValues(rng, ev.Length);
                using var g = TestUtil.FromDoubles(gv, outShape, dtype);
                y.Backward(g);
                var expected = new double[xv.Length];
                long plane = (long)h * w, outPlane = outShape[2] * outShape[3];
                for (long k = 0; k < ei.Length; k++) expected[k / outPlane * plane + ei[k]] += gv[k];
                TestUtil.AssertClose(expected, x.Grad!, 1e-6, 1e-6, "max_pool2d gradient");
            }
        }
    }

    [Fact]
    public void MaxPool2d_NaNIsTheMaximum()
    {
        using var x = Tensor.FromArray([1.0, double.NaN, 3.0, 2.0], 1, 1, 2, 2);
        var (y, idx) = x.MaxPool2dWithIndices((2, 2));
        Assert.True(double.IsNaN(y.ToDouble()));
        Assert.Equal(1L, idx.Item<long>());
        y.Dispose();
        idx.Dispose();
    }

    /// <summary>The max-pool cases small enough for finite differences (the 28×28 one is covered by the reference test).</summary>
    public static IEnumerable<object[]> MaxGradCases() => MaxCases().Where(c => (int)c[2] <= 10);

    [Theory]
    [MemberData(nameof(MaxGradCases))]
    public void MaxPool2d_GradCheck_FirstAndSecondOrder(int n, int c, int h, int w, int kh, int kw, int sh, int sw, int ph, int pw, int dh, int dw)
    {
        var rng = new Random(TestUtil.StableSeed($"maxpoolgrad{n}{c}{h}{w}"));
        using var x = TestUtil.Random(rng, [Math.Min(n, 2), c, h, w], DType.Float64).RequiresGrad_();
        GradCheck.Check(t => t[0].MaxPool2d((kh, kw), (sh, sw), (ph, pw), (dh, dw)), [x]);
        GradCheck.CheckSecondOrder(t => { using var y = t[0].MaxPool2d((kh, kw), (sh, sw), (ph, pw), (dh, dw)); return y.Mul(y); }, [x]);
    }

    public static IEnumerable<object[]> AvgCases() => new object[][]
    {
        // N, C, H, W, kH, kW, sH, sW, pH, pW
        [1, 1, 4, 4, 2, 2, 2, 2, 0, 0],
        [3, 2, 7, 5, 3, 2, 2, 1, 1, 1],
        [2, 3, 9, 8, 3, 3, 1, 2, 1, 0],
        [1, 5, 6, 3, 2, 3, 3, 3, 1, 1],
    };

    [Theory]
    [MemberData(nameof(AvgCases))]
    public void AvgPool2d_MatchesReference_AndGradCheck(int n, int c, int h, int w, int kh, int kw, int sh, int sw, int ph, int pw)
    {
        var rng = new Random(TestUtil.StableSeed($"avgpool{n}{c}{h}{w}{kh}{kw}{sh}{sw}{ph}{pw}"));
        long[] xs = [n, c, h, w];
        var xv = TestUtil.RandomValues(rng, TestUtil.ShapeNumEl(xs));
        foreach (bool includePad in new[] { true, false })
        {
            var expected = NNReference.AvgPool(xv, xs, (kh, kw), (sh, sw), (ph, pw), includePad, out var outShape);
            foreach (var dtype in new[] { DType.Float32, DType.Float64 })
            {
                using var x0 = TestUtil.FromDoubles(xv, xs, dtype);
                using var x = TestUtil.NonContiguous(x0);
                using var y = x.AvgPool2d((kh, kw), (sh, sw), (ph, pw), includePad);
                Assert.Equal(outShape, y.ShapeArray());
                double tol = dtype == DType.Float32 ? 1e-6 : 1e-13;
                TestUtil.AssertClose(expected, y, tol, tol, $"avg_pool2d countIncludePad={includePad}");
            }
            using var xg = TestUtil.Random(rng, [Math.Min(n, 2), c, h, w], DType.Float64).RequiresGrad_();
            GradCheck.Check(t => t[0].AvgPool2d((kh, kw), (sh, sw), (ph, pw), includePad), [xg]);
        }
    }

    [Theory]
    [InlineData(1, 1, 4, 4, 2, 2)]
    [InlineData(3, 2, 7, 5, 3, 2)]   // windows overlap (7/3, 5/2 not integral)
    [InlineData(2, 3, 5, 9, 5, 4)]
    [InlineData(1, 2, 6, 6, 1, 1)]   // global average
    [InlineData(1, 1, 3, 2, 5, 4)]   // output larger than input
    public void AdaptiveAvgPool2d_MatchesReference_AndGradCheck(int n, int c, int h, int w, int oh, int ow)
    {
        var rng = new Random(TestUtil.StableSeed($"adaptive{n}{c}{h}{w}{oh}{ow}"));
        long[] xs = [n, c, h, w];
        var xv = TestUtil.RandomValues(rng, TestUtil.ShapeNumEl(xs));
        var expected = NNReference.AdaptiveAvgPool(xv, xs, oh, ow);
        foreach (var dtype in new[] { DType.Float32, DType.Float64 })
        {
            using var x0 = TestUtil.FromDoubles(xv, xs, dtype);
            using var x = TestUtil.NonContiguous(x0);
            using var y = x.AdaptiveAvgPool2d(oh, ow);
            Assert.Equal(new long[] { n, c, oh, ow }, y.ShapeArray());
            double tol = dtype == DType.Float32 ? 1e-6 : 1e-13;
            TestUtil.AssertClose(expected, y, tol, tol, "adaptive_avg_pool2d");
        }
        using var xg = TestUtil.Random(rng, [Math.Min(n, 2), c, h, w], DType.Float64).RequiresGrad_();
        GradCheck.Check(t => t[0].AdaptiveAvgPool2d(oh, ow), [xg]);
    }

    [Fact]
    public void Errors_NameTheOp()
    {
        using var x = Tensor.Zeros([1, 1, 4, 4]);
        var e1 = Assert.Throws<ArgumentException>(() => x.MaxPool2d((2, 2), padding: (2, 2)));
        Assert.Contains("max_pool2d", e1.Message);
        Assert.Contains("half the kernel", e1.Message);
        using var x3 = Tensor.Zeros([4, 4]);
        var e2 = Assert.Throws<ArgumentException>(() => x3.AvgPool2d((2, 2)));
        Assert.Contains("avg_pool2d", e2.Message);
        Assert.Contains("[4, 4]", e2.Message);
        var e3 = Assert.Throws<ArgumentException>(() => x.AdaptiveAvgPool2d(0, 1));
        Assert.Contains("adaptive_avg_pool2d", e3.Message);
        var e4 = Assert.Throws<ArgumentException>(() => x.MaxPool2d((5, 5)));
        Assert.Contains("max_pool2d", e4.Message);
    }
}
