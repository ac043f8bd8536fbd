using Engine.Tensors;

namespace Engine.Tests.Ops;

public class AttentionTests
{
    internal enum MaskKind { None, Bool, Additive }

    /// <summary>One attention problem: shapes (batch dims may broadcast), mask and options.</summary>
    internal sealed record Case(long[] Q, long[] K, long[] V, MaskKind Mask = MaskKind.None, long[]? MaskShape = null, bool Causal = false, double? Scale = null)
    {
        public override string ToString()
            => $"q{Fmt(Q)} k{Fmt(K)} v{Fmt(V)} mask={Mask}{(MaskShape is null ? "" : Fmt(MaskShape))} causal={Causal} scale={Scale?.ToString() ?? "default"}";

        private static string Fmt(long[] s) => "[" + string.Join(",", s) + "]";
    }

    /// <summary>Inputs of a case as float64 arrays (row-major in their own shapes).</summary>
    internal sealed record Data(double[] Q, double[] K, double[] V, double[]? Mask);

    private static IEnumerable<Case> Cases()
    {
        yield return new([2, 3, 5, 4], [2, 3, 7, 4], [2, 3, 7, 6]);                                   // Nq ≠ Nk, D ≠ Dv, odd sizes
        yield return new([1, 70, 8], [1, 131, 8], [1, 131, 3]);                                         // several query and key tiles
        yield return new([2, 67, 5], [2, 67, 5], [2, 67, 5], Causal: true);                             // causal, tile edges
        yield return new([1, 9, 4], [1, 5, 4], [1, 5, 2], Causal: true, Scale: 0.7);                    // causal, Nq > Nk
        yield return new([1, 5, 4], [1, 9, 4], [1, 9, 3], Causal: true);                                // causal, Nq < Nk
        yield return new([2, 4, 6, 8], [2, 1, 9, 8], [2, 1, 9, 5]);                                     // key/value shared over heads
        yield return new([3, 5], [7, 5], [7, 2]);                                                       // rank 2
        yield return new([1, 1, 1], [1, 1, 1], [1, 1, 1]);                                              // size 1
        yield return new([2, 6, 3], [2, 6, 3], [2, 6, 4], MaskKind.Bool, [6, 6]);                       // bool mask, broadcast over batch
        yield return new([2, 2, 5, 3], [2, 2, 8, 3], [2, 2, 8, 3], MaskKind.Bool, [2, 1, 1, 8], true);   // key-padding mask + causal
        yield return new([2, 5, 3], [2, 8, 3], [2, 8, 4], MaskKind.Additive, [2, 5, 8]);                // additive mask (with −∞ entries)
        yield return new([2, 3, 70, 8], [2, 3, 80, 8], [2, 3, 80, 8], MaskKind.Additive, [80], Scale: 0.3); // additive mask over keys only
        yield return new([1, 2, 130, 16], [1, 2, 130, 16], [1, 2, 130, 16], MaskKind.Bool, [130, 130], true); // several tiles, mask + causal
        yield return new([0, 4, 3], [0, 5, 3], [0, 5, 2]);                                              // empty batch
        yield return new([2, 0, 3], [2, 5, 3], [2, 5, 2]);                                              // Nq = 0
        yield return new([2, 4, 3], [2, 0, 3], [2, 0, 2]);                                              // Nk = 0: every row fully masked
        yield return new([2, 4, 0], [2, 5, 0], [2, 5, 3]);                                              // D = 0: uniform attention
        yield return new([2, 4, 3], [2, 5, 3], [2, 5, 0]);                                              // Dv = 0
    }

    internal static Data MakeData(Case c, int seed)
    {
        var rng = new Random(seed);
        double[]? mask = null;
        if (c.Mask != MaskKind.None)
        {
            long n = TestUtil.ShapeNumEl(c.MaskShape!);
            mask = new double[n];
            for (long i = 0; i < n; i++)
            {
                double u = rng.NextDouble();
                mask[i] = c.Mask == MaskKind.Bool ? (u < 0.7 ? 1 : 0) : (u < 0.2 ? double.NegativeInfinity : 3 * (rng.NextDouble() - 0.5));
            }
            // Make the first row of every mask block fully masked (where the mask has rows).
            if (c.MaskShape!.Length >= 2 && c.MaskShape[^2] > 1)
            {
                long nk = c.MaskShape[^1], rows = c.MaskShape[^2];
                for (long b = 0; b < n / (nk * rows); b++)
                    for (long j = 0; j < nk; j++) mask[b * rows * nk + j] = c.Mask == MaskKind.Bool ? 0 : double.NegativeInfinity;
            }
        }
        return new Data(
            TestUtil.RandomValues(rng, TestUtil.ShapeNumEl(c.Q), -2, 2),
            TestUtil.RandomValues(rng, TestUtil.ShapeNumEl(c.K), -2, 2),
            TestUtil.RandomValues(rng, TestUtil.ShapeNumEl(c.V), -2, 2),
            mask);
    }

    internal static long[] BatchOf(Case c) => TestUtil.BroadcastShape(TestUtil.BroadcastShape(c.Q[..^2], c.K[..^2]), c.V[..^2]);

    /// <summary>
    /// float64 reference with the materialized softmax: output O [batch, Nq, Dv], probabilities P [batch, Nq, Nk],
    /// and, for an output gradient <paramref name="g"/>, dQ, dK, dV summed to the inputs' own shapes.
    /// Fully masked rows: P = 0, O = 0.
    /// </summary>
    internal static (double[] O, double[] P, double[] DQ, double[] DK, double[] DV) Reference(Case c, Data x, double[]? g)
    {
        var batch = BatchOf(c);
        long nq = c.Q[^2], nk = c.K[^2], d = c.Q[^1], dv = c.V[^1];
        double scale = c.Scale ?? (d == 0 ? 1 : 1 / Math.Sqrt(d));
        long nb = TestUtil.ShapeNumEl(batch);
        var o = new double[nb * nq * dv];
        var p = new double[nb * nq * nk];
        var dq = new double[x.Q.Length];
        var dk = new double[x.K.Length];
        var dvv = new double[x.V.Length];
        long Flat(long[] shape, long[] idx)
        {
            int lead = idx.Length - shape.Length;
            long f = 0;
            for (int i = 0; i < shape.Length; i++) f = f * shape[i] + (shape[i] == 1 ? 0 : idx[lead + i]);
            return f;
        }
        for (long b = 0; b < nb; b++)
        {
            var bi = TestUtil.Unravel(b, batch);
            long Q(long i, long e) => Flat(c.Q, [.. bi, i, e]);
            long K(long j, long e) => Flat(c.K, [.. bi, j, e]);
            long V(long j, long e) => Flat(c.V, [.. bi, j, e]);
            var s = new double[nk];
            var visible = new bool[nk];
            for (long i = 0; i < nq; i++)
            {
                double max = double.NegativeInfinity;
                for (long j = 0; j < nk; j++)
                {
                    double dot = 0;
                    for (long e = 0; e < d; e++) dot += x.Q[Q(i, e)] * x.K[K(j, e)];
                    s[j] = scale * dot;
                    visible[j] = !(c.Causal && j > i);
                    if (x.Mask is not null)
                    {
                        double m = x.Mask[Flat(c.MaskShape!, [.. bi, i, j])];
                        if (c.Mask == MaskKind.Bool) visible[j] &= m != 0;
                        else s[j] += m;
                    }
                    if (!visible[j]) s[j] = double.NegativeInfinity;
                    max = Math.Max(max, s[j]);
                }
                long row = (b * nq + i) * nk;
                if (double.IsNegativeInfinity(max)) continue; // fully masked: P = 0, O = 0, no gradient
                double sum = 0;
                for (long j = 0; j < nk; j++) sum += Math.Exp(s[j] - max);
                for (long j = 0; j < nk; j++) p[row + j] = Math.Exp(s[j] - max) / sum;
                for (long e = 0; e < dv; e++)
                {
                    double acc = 0;
                    for (long j = 0; j < nk; j++) acc += p[row + j] * x.V[V(j, e)];
                    o[(b * nq + i) * dv + e] = acc;
                }
                if (g is null) continue;
                // dP_j = g_i·v_j; dS_j = P_j (dP_j − Σ P dP).
                var dp = new double[nk];
                double dot2 = 0;
                for (long j = 0; j < nk; j++)
                {
                    for (long e = 0; e < dv; e++) dp[j] += g[(b * nq + i) * dv + e] * x.V[V(j, e)];
                    dot2 += p[row + j] * dp[j];
                }
                for (long j = 0; j < nk; j++)
                {
                    double ds = p[row + j] * (dp[j] - dot2) * scale;
                    for (long e = 0; e < d; e++)
                    {
                        dq[Q(i, e)] += ds * x.K[K(j, e)];
                        dk[K(j, e)] += ds * x.Q[Q(i, e)];
                    }
                    for (long e = 0; e < dv; e++) dvv[V(j, e)] += p[row + j] * g[(b * nq + i) * dv + e];
                }
            }
        }
        return (o, p, dq, dk, dvv);
    }

    internal static Tensor? MaskTensor(Case c, Data x, DType dtype)
    {
        if (x.Mask is null) return null;
        if (c.Mask == MaskKind.Additive) return TestUtil.FromDoubles(x.Mask, c.MaskShape!, dtype);
        using var f = TestUtil.FromDoubles(x.Mask, c.MaskShape!, DType.Float64);
        return f.Ne(0);
    }

    /// <summary>
    /// The layouts tested: contiguous; every other element of the last dim; and the "heads transposed" layout
    /// of a [batch, N, H, D] buffer permuted to [batch, H, N, D] (rank ≥ 3).
    /// </summary>
    private static IEnumerable<(string Name, Tensor X)> Layouts(double[] values, long[] shape, DType dtype)
    {
        yield return ("contiguous", TestUtil.FromDoubles(values, shape, dtype));
        using (var c = TestUtil.FromDoubles(values, shape, dtype)) yield return ("strided", TestUtil.NonContiguous(c));
        if (shape.Length >= 3)
        {
            int r = shape.Length;
            var perm = Enumerable.Range(0, r).ToArray();
            (perm[r - 3], perm[r - 2]) = (perm[r - 2], perm[r - 3]);
            using var c = TestUtil.FromDoubles(values, shape, dtype);
            using var swapped = c.Permute(perm);
            using var buffer = swapped.Contiguous();
            yield return ("heads-transposed", buffer.Permute(perm));
        }
    }

    [Fact]
    public void Forward_MatchesFloat64Reference_AllLayoutsAndDTypes()
    {
        int seed = TestUtil.StableSeed(nameof(Forward_MatchesFloat64Reference_AllLayoutsAndDTypes));
        foreach (var c in Cases())
        {
            var x = MakeData(c, seed++);
            var (o, _, _, _, _) = Reference(c, x, null);
            foreach (var dtype in new[] { DType.Float32, DType.Float64 })
            {
                var layouts = Layouts(x.Q, c.Q, dtype).Zip(Layouts(x.K, c.K, dtype), Layouts(x.V, c.V, dtype));
                using var mask = MaskTensor(c, x, dtype);
                foreach (var ((name, q), (_, k), (_, v)) in layouts)
                    using (q)
                    using (k)
                    using (v)
                    using (var y = Tensor.ScaledDotProductAttention(q, k, v, mask, c.Causal, c.Scale))
                    {
                        Assert.Equal([.. BatchOf(c), c.Q[^2], c.V[^1]], y.ShapeArray());
                        double tol = dtype == DType.Float32 ? 2e-5 : 1e-12;
                        TestUtil.AssertClose(o, y, tol, tol, $"{c} {dtype.Name()} {name}");
                    }
            }
        }
    }

    [Fact]
    public void Backward_MatchesFloat64Reference_AllLayoutsAndDTypes()
    {
        int seed = TestUtil.StableSeed(nameof(Backward_MatchesFloat64Reference_AllLayoutsAndDTypes));
        foreach (var c in Cases())
        {
            var x = MakeData(c, seed++);
            var rng = new Random(seed++);
            long outNumEl = TestUtil.ShapeNumEl([.. BatchOf(c), c.Q[^2], c.V[^1]]);
            var g = TestUtil.RandomValues(rng, outNumEl);
            var (_, _, dq, dk, dv) = Reference(c, x, g);
            foreach (var dtype in new[] { DType.Float32, DType.Float64 })
            {
                var layouts = Layouts(x.Q, c.Q, dtype).Zip(Layouts(x.K, c.K, dtype), Layouts(x.V, c.V, dtype));
                using var mask = MaskTensor(c, x, dtype);
                foreach (var ((name, q), (_, k), (_, v)) in layouts)
                    using (q)
                    using (k)
                    using (v)
                    {
                        q.RequiresGrad = k.RequiresGrad = v.RequiresGrad = true;
                        using var y = Tensor.ScaledDotProductAttention(q, k, v, mask, c.Causal, c.Scale);
                        using var gt = TestUtil.FromDoubles(g, y.ShapeArray(), dtype);
                        y.Backward(gt);
                        double tol = dtype == DType.Float32 ? 1e-4 : 1e-11;
                        string what = $"{c} {dtype.Name()} {name}";
                        TestUtil.AssertClose(dq, q.Grad!, tol, tol, what + " dQ");
                        TestUtil.AssertClose(dk, k.Grad!, tol, tol, what + " dK");
                        TestUtil.AssertClose(dv, v.Grad!, tol, tol, what + " dV");
                    }
            }
        }
    }

    [Theory]
    [InlineData(256)]
    [InlineData(128)]
    public void NarrowSimdKernels_MatchFloat64Reference(int width)
    {
        // The 256- and 128-bit kernels (other key-tile widths, the 4×2 micro-kernel), forced on this machine.
        int seed = TestUtil.StableSeed($"sdpa-width-{width}");
        Engine.Tensors.Cpu.Attention.WidthOverride = width;
        try
        {
            foreach (var c in Cases().Where(c => TestUtil.ShapeNumEl(c.Q) > 0 && TestUtil.ShapeNumEl(c.K) > 0))
            {
                var x = MakeData(c, seed++);
                var g = TestUtil.RandomValues(new Random(seed++), TestUtil.ShapeNumEl([.. BatchOf(c), c.Q[^2], c.V[^1]]));
                var (o, _, dq, dk, dv) = Reference(c, x, g);
                foreach (var dtype in new[] { DType.Float32, DType.Float64 })
                {
                    using var q = TestUtil.FromDoubles(x.Q, c.Q, dtype).RequiresGrad_();
                    using var k = TestUtil.FromDoubles(x.K, c.K, dtype).RequiresGrad_();
                    using var v = TestUtil.FromDoubles(x.V, c.V, dtype).RequiresGrad_();
                    using var mask = MaskTensor(c, x, dtype);
                    using var y = Tensor.ScaledDotProductAttention(q, k, v, mask, c.Causal, c.Scale);
                    using var gt = TestUtil.FromDoubles(g, y.ShapeArray(), dtype);
                    y.Backward(gt);
                    double tol = dtype == DType.Float32 ? 1e-4 : 1e-11;
                    string what = $"width {width} {c} {dtype.Name()}";
                    TestUtil.AssertClose(o, y, tol, tol, what + " output");
                    TestUtil.AssertClose(dq, q.Grad!, tol, tol, what + " dQ");
                    TestUtil.AssertClose(dk, k.Grad!, tol, tol, what + " dK");
                    TestUtil.AssertClose(dv, v.Grad!, tol, tol, what + " dV");
                }
            }
        }
        finally { Engine.Tensors.Cpu.Attention.WidthOverride = 0; }
    }

    [Fact]
    public void FullyMaskedRows_GiveZeroOutputAndZeroGradients_NoNaN()
    {
        // Row 1 masks every key; row 0 keeps some. Key count 0 masks every row.
        using var q = Tensor.Randn([1, 3, 4], DType.Float64, generator: new Generator(1)).RequiresGrad_();
        using var k = Tensor.Randn([1, 5, 4], DType.Float64, generator: new Generator(2)).RequiresGrad_();
        using var v = Tensor.Randn([1, 5, 2], DType.Float64, generator: new Generator(3)).RequiresGrad_();
        using var keepF = Tensor.FromArray(new double[] { 1, 0, 1, 1, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1 }, 3, 5);
        using var keep = keepF.Ne(0);
        using var additive = Tensor.Where(keep, 0.0, Tensor.Full([3, 5], double.NegativeInfinity, DType.Float64));
        foreach (var mask in new[] { keep, additive })
        {
            using var y = Tensor.ScaledDotProductAttention(q, k, v, mask);
            using var s = y.Sum();
            s.Backward();
            var values = y.ToArray<double>();
            Assert.All(values, e => Assert.True(double.IsFinite(e)));
            Assert.Equal(0.0, values[2]);
            Assert.Equal(0.0, values[3]);
            var dq = q.Grad!.ToArray<double>();
            Assert.All(dq, e => Assert.True(double.IsFinite(e)));
            Assert.Equal(new double[4], dq.Skip(4).Take(4).ToArray());
            var (o2, p2) = Tensor.ScaledDotProductAttentionWithProbabilities(q, k, v, mask);
            using (o2)
            using (p2)
            {
                TestUtil.AssertClose(values, o2, 1e-12, 1e-12, "composite output");
                Assert.Equal(new double[5], p2.ToArray<double>().Skip(5).Take(5).ToArray());
            }
            q.Grad = null; k.Grad = null; v.Grad = null;
        }
    }

    [Theory]
    [InlineData(false, false)]
    [InlineData(true, false)]
    [InlineData(false, true)]
    [InlineData(true, true)]
    public void GradCheck_Float64_AllThreeInputs(bool causal, bool masked)
    {
        var rng = new Random(TestUtil.StableSeed($"sdpa-gradcheck-{causal}-{masked}"));
        using var q = TestUtil.Random(rng, [2, 5, 3], DType.Float64).RequiresGrad_();
        using var k = TestUtil.Random(rng, [2, 6, 3], DType.Float64).RequiresGrad_();
        using var v = TestUtil.Random(rng, [2, 6, 4], DType.Float64).RequiresGrad_();
        using var mf = TestUtil.Random(rng, [5, 6], DType.Float64);
        using var mask = masked ? mf.Gt(-0.5) : null;
        GradCheck.Check(t => Tensor.ScaledDotProductAttention(t[0], t[1], t[2], mask, causal, 0.8), [q, k, v]);
    }

    [Fact]
    public void GradCheck_Float64_SeveralTilesAndBroadcastHeads()
    {
        // 70 queries and 67 keys cross the tile edges (64 rows, 4 vectors of keys); key/value broadcast over 2 heads.
        var rng = new Random(TestUtil.StableSeed(nameof(GradCheck_Float64_SeveralTilesAndBroadcastHeads)));
        using var q = TestUtil.Random(rng, [2, 70, 2], DType.Float64).RequiresGrad_();
        using var k = TestUtil.Random(rng, [1, 67, 2], DType.Float64).RequiresGrad_();
        using var v = TestUtil.Random(rng, [1, 67, 1], DType.Float64).RequiresGrad_();
        GradCheck.Check(t => Tensor.ScaledDotProductAttention(t[0], t[1], t[2], causal: true), [q, k, v]);
    }

    [Fact]
    public void CreateGraph_UsesCompositeBackward_SecondOrderGradCheck()
    {
        var rng = new Random(TestUtil.StableSeed(nameof(CreateGraph_UsesCompositeBackward_SecondOrderGradCheck)));
        using var q = TestUtil.Random(rng, [2, 4, 3], DType.Float64).RequiresGrad_();
        using var k = TestUtil.Random(rng, [2, 5, 3], DType.Float64).RequiresGrad_();
        using var v = TestUtil.Random(rng, [2, 5, 2], DType.Float64).RequiresGrad_();
        using var mf = TestUtil.Random(rng, [4, 5], DType.Float64);
        using var mask = mf.Gt(-0.6);
        GradCheck.CheckSecondOrder(t => Tensor.ScaledDotProductAttention(t[0], t[1], t[2], mask, causal: true), [q, k, v]);

        // The createGraph gradients equal the fused ones.
        using var y = Tensor.ScaledDotProductAttention(q, k, v, mask, causal: true);
        using var loss = y.Sum();
        var composite = Autograd.Grad([loss], [q, k, v], createGraph: true);
        var fused = Autograd.Grad([loss], [q, k, v]);
        for (int i = 0; i < 3; i++)
        {
            Assert.NotNull(composite[i]!.GradFn);
            TestUtil.AssertClose(fused[i]!.ToArray<double>(), composite[i]!, 1e-12, 1e-12, $"input {i}");
            composite[i]!.Dispose();
            fused[i]!.Dispose();
        }
    }

    [Fact]
    public void Probabilities_MatchReference_AndAreDifferentiable()
    {
        int seed = TestUtil.StableSeed(nameof(Probabilities_MatchReference_AndAreDifferentiable));
        foreach (var c in Cases())
        {
            var x = MakeData(c, seed++);
            var (o, p, _, _, _) = Reference(c, x, null);
            foreach (var dtype in new[] { DType.Float32, DType.Float64 })
            {
                using var q = TestUtil.FromDoubles(x.Q, c.Q, dtype);
                using var k = TestUtil.FromDoubles(x.K, c.K, dtype);
                using var v = TestUtil.FromDoubles(x.V, c.V, dtype);
                using var mask = MaskTensor(c, x, dtype);
                var (y, probs) = Tensor.ScaledDotProductAttentionWithProbabilities(q, k, v, mask, c.Causal, c.Scale);
                using (y)
                using (probs)
                {
                    Assert.Equal([.. BatchOf(c), c.Q[^2], c.K[^2]], probs.ShapeArray());
                    double tol = dtype == DType.Float32 ? 2e-5 : 1e-12;
                    TestUtil.AssertClose(o, y, tol, tol, $"{c} {dtype.Name()} output");
                    TestUtil.AssertClose(p, probs, tol, tol, $"{c} {dtype.Name()} probabilities");
                }
            }
        }

        // A loss on the probabilities and the output reaches q, k (through P) and v.
        var rng = new Random(seed);
        using var q2 = TestUtil.Random(rng, [2, 4, 3], DType.Float64).RequiresGrad_();
        using var k2 = TestUtil.Random(rng, [2, 6, 3], DType.Float64).RequiresGrad_();
        using var v2 = TestUtil.Random(rng, [2, 6, 2], DType.Float64).RequiresGrad_();
        using var mf = TestUtil.Random(rng, [2, 1, 6], DType.Float64);
        using var mask2 = mf.Gt(-0.7);
        GradCheck.Check(t =>
        {
            var (y, probs) = Tensor.ScaledDotProductAttentionWithProbabilities(t[0], t[1], t[2], mask2, causal: true);
            using (y)
            using (probs)
            using (var flat = probs.Flatten())
            using (var yFlat = y.Flatten())
                return Tensor.Cat([flat, yFlat]);
        }, [q2, k2, v2]);
    }

    [Fact]
    public void AdditiveMaskRequiringGrad_GetsItsGradient()
    {
        var rng = new Random(TestUtil.StableSeed(nameof(AdditiveMaskRequiringGrad_GetsItsGradient)));
        using var q = TestUtil.Random(rng, [2, 4, 3], DType.Float64).RequiresGrad_();
        using var k = TestUtil.Random(rng, [2, 5, 3], DType.Float64).RequiresGrad_();
        using var v = TestUtil.Random(rng, [2, 5, 2], DType.Float64).RequiresGrad_();
        using var bias = TestUtil.Random(rng, [4, 5], DType.Float64).RequiresGrad_();
        GradCheck.Check(t => Tensor.ScaledDotProductAttention(t[0], t[1], t[2], t[3]), [q, k, v, bias]);
    }

    [Fact]
    public void LargeShape_FusedMatchesComposite_AndThreadCountDoesNotChangeResults()
    {
        // Several work items per batch index in the backward (batch 1 < 8 splits), causal, float32.
        var rng = new Random(TestUtil.StableSeed(nameof(LargeShape_FusedMatchesComposite_AndThreadCountDoesNotChangeResults)));
        using var q = TestUtil.Random(rng, [1, 300, 32]).RequiresGrad_();
        using var k = TestUtil.Random(rng, [1, 520, 32]).RequiresGrad_();
        using var v = TestUtil.Random(rng, [1, 520, 24]).RequiresGrad_();
        using var g = TestUtil.Random(rng, [1, 300, 24]);
        float[][] Run(int threads, bool composite)
        {
            int saved = Engine.Tensors.Cpu.Parallelism.MaxThreads;
            Engine.Tensors.Cpu.Parallelism.MaxThreads = threads;
            try
            {
                q.Grad = null; k.Grad = null; v.Grad = null;
                Tensor y;
                if (composite) { var (o, p) = Tensor.ScaledDotProductAttentionWithProbabilities(q, k, v, causal: true); p.Dispose(); y = o; }
                else y = Tensor.ScaledDotProductAttention(q, k, v, causal: true);
                using (y)
                {
                    y.Backward(g);
                    return [y.ToArray<float>(), q.Grad!.ToArray<float>(), k.Grad!.ToArray<float>(), v.Grad!.ToArray<float>()];
                }
            }
            finally { Engine.Tensors.Cpu.Parallelism.MaxThreads = saved; }
        }
        var one = Run(1, false);
        var two = Run(2, false);
        var reference = Run(2, true);
        for (int i = 0; i < 4; i++)
        {
            Assert.Equal(one[i], two[i]);
            TestUtil.AssertClose(reference[i].Select(f => (double)f).ToArray(), one[i].Select(f => (double)f).ToArray(), 1e-5, 1e-4, $"result {i}");
        }
    }

    [Theory]
    [InlineData(false, false)]
    [InlineData(true, false)]
    [InlineData(true, true)]
    public void EmulatorDevice_MatchesCpuFused(bool causal, bool masked)
    {
        // On a device the op runs the flash-attention kernels (kernels/Attention; tested in depth by
        // Kernels/AttentionKernelTests.cs).
        var device = Engine.Runtime.Device.Parse("emulator");
        var rng = new Random(TestUtil.StableSeed($"sdpa-emulator-{causal}-{masked}"));
        using var q = TestUtil.Random(rng, [2, 5, 3]).RequiresGrad_();
        using var k = TestUtil.Random(rng, [2, 7, 3]).RequiresGrad_();
        using var v = TestUtil.Random(rng, [2, 7, 4]).RequiresGrad_();
        using var mf = TestUtil.Random(rng, [5, 7]);
        using var mask = masked ? mf.Gt(-0.5) : null;
        using var g = TestUtil.Random(rng, [2, 5, 4]);
        using var y = Tensor.ScaledDotProductAttention(q, k, v, mask, causal);
        y.Backward(g);
        var want = new[] { y.ToArray<float>(), q.Grad!.ToArray<float>(), k.Grad!.ToArray<float>(), v.Grad!.ToArray<float>() };
        q.Grad = null; k.Grad = null; v.Grad = null;

        using var qd = q.To(device);
        using var kd = k.To(device);
        using var vd = v.To(device);
        using var md = mask?.To(device);
        using var gd = g.To(device);
        using var yd = Tensor.ScaledDotProductAttention(qd, kd, vd, md, causal);
        Assert.Equal(device, yd.Device);
        yd.Backward(gd);
        var got = new[] { yd.ToArray<float>(), q.Grad!.ToArray<float>(), k.Grad!.ToArray<float>(), v.Grad!.ToArray<float>() };
        for (int i = 0; i < 4; i++)
            TestUtil.AssertClose(want[i].Select(f => (double)f).ToArray(), got[i].Select(f => (double)f).ToArray(), 1e-5, 1e-4, $"result {i}");
    }

    [Fact]
    public void BadInputs_ThrowNamingTheOpAndShapes()
    {
        using var q = Tensor.Zeros([2, 3, 4]);
        using var k = Tensor.Zeros([2, 5, 4]);
        using var v = Tensor.Zeros([2, 5, 6]);
        void Throws(Action a, params string[] parts)
        {
            var e = Assert.ThrowsAny<ArgumentException>(a);
            Assert.Contains("scaled_dot_product_attention", e.Message);
            foreach (var p in parts) Assert.Contains(p, e.Message);
        }
        using var q1 = Tensor.Zeros([4]);
        Throws(() => Tensor.ScaledDotProductAttention(q1, k, v), "[4]", "at least 2 dims");
        using var kd = Tensor.Zeros([2, 5, 3]);
        Throws(() => Tensor.ScaledDotProductAttention(q, kd, v), "[2, 5, 3]", "same last dim");
        using var vn = Tensor.Zeros([2, 4, 6]);
        Throws(() => Tensor.ScaledDotProductAttention(q, k, vn), "[2, 4, 6]", "number of keys");
        using var q64 = Tensor.Zeros([2, 3, 4], DType.Float64);
        Throws(() => Tensor.ScaledDotProductAttention(q64, k, v), "float64", "float32");
        using var qi = Tensor.Zeros([2, 3, 4], DType.Int64);
        Throws(() => Tensor.ScaledDotProductAttention(qi, k, v), "int64");
        using var kb = Tensor.Zeros([3, 5, 4]);
        using var vb = Tensor.Zeros([3, 5, 6]);
        Throws(() => Tensor.ScaledDotProductAttention(q, kb, vb), "[3, 5, 4]", "batch dims");
        using var badMask = Tensor.Zeros([3, 4], DType.Bool);
        Throws(() => Tensor.ScaledDotProductAttention(q, k, v, badMask), "mask bool [3, 4]", "[2, 3, 5]");
        using var bigMask = Tensor.Zeros([4, 2, 3, 5], DType.Bool);
        Throws(() => Tensor.ScaledDotProductAttention(q, k, v, bigMask), "[4, 2, 3, 5]");
        using var intMask = Tensor.Zeros([3, 5], DType.Int32);
        Throws(() => Tensor.ScaledDotProductAttention(q, k, v, intMask), "int32", "bool");
        Throws(() => Tensor.ScaledDotProductAttention(q, k, v, scale: double.NaN), "scale");
        Throws(() => Tensor.ScaledDotProductAttentionWithProbabilities(q, kd, v), "same last dim");
    }
}
