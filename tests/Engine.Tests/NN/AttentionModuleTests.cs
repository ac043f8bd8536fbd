using Engine.Tensors;
using Engine.Tensors.NN;

namespace Engine.Tests.NN;

public class AttentionModuleTests
{
    private static double[] Values(Tensor t) => t.To(DType.Float64).ToArray<double>();

    /// <summary>y[r, o] = b[o] + Σ_e W[o, e]·x[r, e] in float64.</summary>
    private static double[] Project(double[] x, long rows, Linear lin)
    {
        var w = Values(lin.Weight);
        var b = lin.Bias is null ? null : Values(lin.Bias);
        long inF = lin.InFeatures, outF = lin.OutFeatures;
        var y = new double[rows * outF];
        for (long r = 0; r < rows; r++)
            for (long o = 0; o < outF; o++)
            {
                double acc = b?[o] ?? 0;
                for (long e = 0; e < inF; e++) acc += w[o * inF + e] * x[r * inF + e];
                y[r * outF + o] = acc;
            }
        return y;
    }

    /// <summary>
    /// float64 multi-head attention with the module's weights: projections, per-head softmax(QKᵀ/√Dh) with
    /// causal and key-padding masks (keep[b, j]), concatenation, output projection. Also returns P [B, H, Nq, Nk].
    /// </summary>
    private static (double[] Y, double[] P) Reference(MultiheadAttention m, double[] xq, double[] xk, double[] xv, long b, long nq, long nk, bool causal, bool[]? keep)
    {
        long e = m.EmbedDim, h = m.NumHeads, dh = m.HeadDim;
        var q = Project(xq, b * nq, m.QProj);
        var k = Project(xk, b * nk, m.KProj);
        var v = Project(xv, b * nk, m.VProj);
        var concat = new double[b * nq * e];
        var p = new double[b * h * nq * nk];
        for (long bi = 0; bi < b; bi++)
            for (long hi = 0; hi < h; hi++)
                for (long i = 0; i < nq; i++)
                {
                    var s = new double[nk];
                    double max = double.NegativeInfinity;
                    for (long j = 0; j < nk; j++)
                    {
                        double dot = 0;
                        for (long d = 0; d < dh; d++) dot += q[(bi * nq + i) * e + hi * dh + d] * k[(bi * nk + j) * e + hi * dh + d];
                        bool visible = !(causal && j > i) && (keep is null || keep[bi * nk + j]);
                        s[j] = visible ? dot / Math.Sqrt(dh) : double.NegativeInfinity;
                        max = Math.Max(max, s[j]);
                    }
                    double sum = s.Sum(x => Math.Exp(x - max));
                    long row = ((bi * h + hi) * nq + i) * nk;
                    for (long j = 0; j < nk; j++) p[row + j] = Math.Exp(s[j] - max) / sum;
                    for (long d = 0; d < dh; d++)
                    {
                        double acc = 0;
                        for (long j = 0; j < nk; j++) acc += p[row + j] * v[(bi * nk + j) * e + hi * dh + d];
                        concat[(bi * nq + i) * e + hi * dh + d] = acc;
                    }
                }
        return (Project(concat, b * nq, m.OutProj), p);
    }

    [Fact]
    public void CrossAttention_WithKeyPaddingMask_MatchesReference()
    {
        var rng = new Random(TestUtil.StableSeed(nameof(CrossAttention_WithKeyPaddingMask_MatchesReference)));
        using var m = new MultiheadAttention(6, 2, kdim: 3, vdim: 4, generator: new Generator(7));
        long b = 2, nq = 5, nk = 7;
        var xq = TestUtil.RandomValues(rng, b * nq * 6);
        var xk = TestUtil.RandomValues(rng, b * nk * 3);
        var xv = TestUtil.RandomValues(rng, b * nk * 4);
        var keep = Enumerable.Range(0, (int)(b * nk)).Select(i => i % 7 < 5 || i >= 7 && i % 7 < 6).ToArray();
        using var q = TestUtil.FromDoubles(xq, [b, nq, 6]);
        using var k = TestUtil.FromDoubles(xk, [b, nk, 3]);
        using var v = TestUtil.FromDoubles(xv, [b, nk, 4]);
        using var keepF = TestUtil.FromDoubles(keep.Select(x => x ? 1.0 : 0).ToArray(), [b, 1, 1, nk]);
        using var mask = keepF.Ne(0);
        var (want, wantP) = Reference(m, xq, xk, xv, b, nq, nk, false, keep);
        using var y = m.Forward(q, k, v, mask);
        Assert.Equal([b, nq, 6], y.ShapeArray());
        TestUtil.AssertClose(want, y, 1e-5, 1e-4, "cross attention");
        var (y2, p) = m.ForwardWithProbabilities(q, k, v, mask);
        using (y2)
        using (p)
        {
            Assert.Equal([b, 2, nq, nk], p.ShapeArray());
            TestUtil.AssertClose(want, y2, 1e-5, 1e-4, "cross attention (with probabilities)");
            TestUtil.AssertClose(wantP, p, 1e-6, 1e-4, "probabilities");
        }
    }

    [Fact]
    public void CausalSelfAttention_MatchesReference_AndIgnoresFutureTokens()
    {
        var rng = new Random(TestUtil.StableSeed(nameof(CausalSelfAttention_MatchesReference_AndIgnoresFutureTokens)));
        using var m = new MultiheadAttention(8, 4, causal: true, generator: new Generator(3));
        long b = 2, n = 6;
        var x = TestUtil.RandomValues(rng, b * n * 8);
        using var xt = TestUtil.FromDoubles(x, [b, n, 8]);
        using var y = m.Forward(xt);
        TestUtil.AssertClose(Reference(m, x, x, x, b, n, n, true, null).Y, y, 1e-5, 1e-4, "causal self-attention");

        // Changing tokens 4.. leaves outputs 0..3 unchanged.
        var changed = (double[])x.Clone();
        for (long bi = 0; bi < b; bi++)
            for (long i = 4; i < n; i++)
                for (long e = 0; e < 8; e++) changed[(bi * n + i) * 8 + e] += 5;
        using var xc = TestUtil.FromDoubles(changed, [b, n, 8]);
        using var yc = m.Forward(xc);
        var before = Values(y);
        var after = Values(yc);
        for (long bi = 0; bi < b; bi++)
            for (long i = 0; i < n; i++)
                for (long e = 0; e < 8; e++)
                {
                    long at = (bi * n + i) * 8 + e;
                    if (i < 4) Assert.Equal(before[at], after[at]);
                }
        Assert.NotEqual(before, after);

        // One sequence without a batch dim equals the batched result's first sequence.
        using var first = xt.Select(0, 0);
        using var y1 = m.Forward(first);
        Assert.Equal([n, 8], y1.ShapeArray());
        TestUtil.AssertClose(before.Take((int)(n * 8)).ToArray(), y1, 1e-6, 1e-5, "unbatched");

        // Overriding causal per call.
        using var yFull = m.Forward(xt, xt, xt, causal: false);
        TestUtil.AssertClose(Reference(m, x, x, x, b, n, n, false, null).Y, yFull, 1e-5, 1e-4, "causal overridden");
    }

    [Fact]
    public void Gradients_ReachInputAndEveryParameter_GradCheckFloat64()
    {
        using var m = new MultiheadAttention(4, 2, causal: true, generator: new Generator(11));
        m.To(DType.Float64);
        var rng = new Random(5);
        using var x = TestUtil.Random(rng, [2, 3, 4], DType.Float64).RequiresGrad_();
        GradCheck.Check(t => m.Forward(t[0]), [x]);
        using (var y = m.Forward(x))
        using (var s = y.Sum())
            s.Backward();
        foreach (var (name, p) in m.NamedParameters())
        {
            Assert.True(p.Grad is not null, name);
            Assert.Contains(Values(p.Grad!), g => g != 0);
        }
        Assert.Equal(["q_proj.weight", "q_proj.bias", "k_proj.weight", "k_proj.bias", "v_proj.weight", "v_proj.bias", "out_proj.weight", "out_proj.bias"],
            m.NamedParameters().Select(p => p.Name).ToArray());
    }

    [Fact]
    public void MultiheadAttention_BadArguments_Throw()
    {
        Assert.Contains("multiple of num_heads", Assert.Throws<ArgumentException>(() => new MultiheadAttention(6, 4)).Message);
        using var m = new MultiheadAttention(6, 2);
        using var x = Tensor.Zeros([2, 3, 5]);
        var e = Assert.Throws<ArgumentException>(() => m.Forward(x));
        Assert.Contains("MultiheadAttention", e.Message);
        Assert.Contains("[2, 3, 5]", e.Message);
    }

    // ------------------------------------------------------------------ Embedding

    [Fact]
    public void Embedding_LooksUpRows_AndAccumulatesGradientsOfRepeatedIds()
    {
        using var emb = new Embedding(5, 3, generator: new Generator(2));
        var w = Values(emb.Weight);
        long[] ids = [4, 0, 4, 2, 4, 1];
        foreach (var dtype in new[] { DType.Int64, DType.Int32 })
        {
            using var idx64 = Tensor.FromArray(ids, 2, 3);
            using var idx = idx64.To(dtype);
            using var y = emb.Forward(idx);
            Assert.Equal([2, 3, 3], y.ShapeArray());
            var expected = ids.SelectMany(i => w.Skip((int)i * 3).Take(3)).ToArray();
            TestUtil.AssertClose(expected, y, 0, 0, "lookup");
            using (var s = y.Sum()) s.Backward();
            var g = Values(emb.Weight.Grad!);
            for (int row = 0; row < 5; row++)
                for (int c = 0; c < 3; c++)
                    Assert.Equal(ids.Count(i => i == row), g[row * 3 + c]);
            emb.ZeroGrad();
        }
        using var scalar = Tensor.FromArray(new long[] { 3 });
        using var one = scalar.Reshape();
        using var y0 = emb.Forward(one);
        Assert.Equal([3L], y0.ShapeArray());
    }

    [Fact]
    public void Embedding_PaddingIdx_StartsAtZero_AndGetsNoGradient()
    {
        using var emb = new Embedding(4, 2, paddingIdx: -1, generator: new Generator(1));
        Assert.Equal(3, emb.PaddingIdx);
        Assert.Equal(new double[2], Values(emb.Weight).Skip(6).ToArray());
        using var ids = Tensor.FromArray(new long[] { 3, 1, 3, 0 }, 4);
        using var y = emb.Forward(ids);
        using (var s = y.Sum()) s.Backward();
        var g = Values(emb.Weight.Grad!);
        Assert.Equal(new double[] { 1, 1, 1, 1, 0, 0, 0, 0 }, g);
    }

    [Fact]
    public void Embedding_BadIds_Throw()
    {
        using var emb = new Embedding(4, 2);
        using var f = Tensor.Zeros([3]);
        Assert.Contains("int64 or int32", Assert.Throws<ArgumentException>(() => emb.Forward(f)).Message);
        using var ids = Tensor.FromArray(new long[] { 1, 4 }, 2);
        var e = Assert.ThrowsAny<ArgumentException>(() => emb.Forward(ids));
        Assert.Contains("Embedding", e.Message);
        Assert.Contains("[0, 4)", e.Message);
    }
}
