using Engine.Distillation.LanguageModel;
using Engine.Tensors;
using Engine.Tensors.NN;

namespace Engine.Tests.Distillation.LanguageModel;

/// <summary>
/// The testbed's transformer: causal (a later token never changes earlier logits), equal to a float64
/// plain-loop reference of the documented architecture, gradients equal to central differences, seeded init.
/// </summary>
public class DecoderTransformerTests
{
    private static readonly TransformerConfig Tiny = new(VocabSize: 7, ContextLength: 6, Width: 8, Layers: 2, Heads: 2, MlpRatio: 2, InitStd: 0.5);

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void ChangingALaterTokenNeverChangesEarlierLogits(bool tied)
    {
        using var model = new DecoderTransformer(Tiny with { TiedHead = tied }, 3);
        var rng = new Random(TestUtil.StableSeed(nameof(ChangingALaterTokenNeverChangesEarlierLogits)));
        int b = 2, n = Tiny.ContextLength, v = Tiny.VocabSize;
        var ids = Enumerable.Range(0, b * n).Select(_ => (long)rng.Next(v)).ToArray();
        float[] baseLogits;
        using (var x = Tensor.FromArray(ids, b, n))
        using (var z = model.Forward(x))
            baseLogits = z.ToArray<float>();
        for (int j = 0; j < n; j++)
        {
            var changed = (long[])ids.Clone();
            for (int s = 0; s < b; s++) changed[s * n + j] = (changed[s * n + j] + 1 + rng.Next(v - 1)) % v;
            float[] logits;
            using (var x = Tensor.FromArray(changed, b, n))
            using (var z = model.Forward(x))
                logits = z.ToArray<float>();
            for (int s = 0; s < b; s++)
            {
                for (int i = 0; i < n; i++)
                {
                    var before = baseLogits.AsSpan((s * n + i) * v, v);
                    var after = logits.AsSpan((s * n + i) * v, v);
                    if (i < j) Assert.True(before.SequenceEqual(after), $"position {i} changed when token {j} changed (sequence {s})");
                    if (i == j) Assert.False(before.SequenceEqual(after), $"position {i} did not react to its own token");
                }
            }
        }
    }

    [Fact]
    public void BlockEqualsItsDefinitionWithMultiheadAttentionForward()
    {
        using var model = new DecoderTransformer(Tiny, 4);
        model.To(DType.Float64);
        var block = model.Blocks[1];
        var rng = new Random(TestUtil.StableSeed(nameof(BlockEqualsItsDefinitionWithMultiheadAttentionForward)));
        using var x = TestUtil.Random(rng, [3, 5, Tiny.Width], DType.Float64);
        using var got = block.Forward(x);
        // x + attn(ln_1(x)), then + fc_2(gelu_tanh(fc_1(ln_2(·)))), with the library's MultiheadAttention.Forward.
        using var h1 = block.Ln1.Forward(x);
        using var a = block.Attention.Forward(h1);
        using var x1 = x.Add(a);
        using var h2 = block.Ln2.Forward(x1);
        using var f1 = block.Fc1.Forward(h2);
        using var g = f1.Gelu("tanh");
        using var f2 = block.Fc2.Forward(g);
        using var expected = x1.Add(f2);
        Assert.Equal(expected.ShapeArray(), got.ShapeArray());
        TestUtil.AssertClose(expected.ToArray<double>(), got.ToArray<double>(), atol: 1e-13, rtol: 1e-12);
    }

    [Theory]
    [InlineData(false, DType.Float64)]
    [InlineData(true, DType.Float64)]
    [InlineData(false, DType.Float32)]
    public void IncrementalDecodingMatchesTheFullForwardAtEveryPosition(bool tied, DType dtype)
    {
        using var model = new DecoderTransformer(Tiny with { TiedHead = tied }, 8);
        model.To(dtype);
        var rng = new Random(TestUtil.StableSeed(nameof(IncrementalDecodingMatchesTheFullForwardAtEveryPosition) + tied + dtype));
        int b = 3, n = Tiny.ContextLength, v = Tiny.VocabSize;
        var ids = Enumerable.Range(0, b * n).Select(_ => (long)rng.Next(v)).ToArray();
        double[] full;
        using (var x = Tensor.FromArray(ids, b, n))
        using (var z = model.Forward(x))
        using (var z64 = z.To(DType.Float64))
            full = z64.ToArray<double>();
        using var cache = new KeyValueCache(Tiny.Layers);
        for (int i = 0; i < n; i++)
        {
            using var column = Tensor.FromArray(Enumerable.Range(0, b).Select(s => ids[s * n + i]).ToArray(), b);
            using var step = model.DecodeStep(column, cache);
            Assert.Equal([b, v], step.ShapeArray());
            Assert.False(step.RequiresGrad);
            var expected = Enumerable.Range(0, b).SelectMany(s => full.Skip((s * n + i) * v).Take(v)).ToArray();
            using var step64 = step.To(DType.Float64);
            double tol = dtype == DType.Float64 ? 1e-12 : 1e-5;
            TestUtil.AssertClose(expected, step64.ToArray<double>(), atol: tol, rtol: tol, what: $"position {i}");
        }
        Assert.Equal(n, cache.Length);
        using var extra = Tensor.Zeros([b], DType.Int64);
        Assert.Throws<ArgumentException>(() => model.DecodeStep(extra, cache));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void ForwardMatchesAFloat64PlainLoopReference(bool tied)
    {
        var config = Tiny with { TiedHead = tied, ContextLength = 5 };
        using var model = new DecoderTransformer(config, 11);
        model.To(DType.Float64);
        // Random values for every parameter (LayerNorm weights and biases included), so each one matters.
        var rng = new Random(TestUtil.StableSeed(nameof(ForwardMatchesAFloat64PlainLoopReference) + tied));
        var state = new Dictionary<string, Tensor>();
        foreach (var (name, p) in model.NamedParameters())
            state[name] = TestUtil.Random(rng, p.ShapeArray(), DType.Float64, -0.8, 0.8);
        model.LoadStateDict(state);
        var w = state.ToDictionary(kv => kv.Key, kv => kv.Value.ToArray<double>());
        foreach (var t in state.Values) t.Dispose();

        int b = 2, n = 4, v = config.VocabSize;
        var ids = Enumerable.Range(0, b * n).Select(_ => (long)rng.Next(v)).ToArray();
        double[] got;
        using (var x = Tensor.FromArray(ids, b, n))
        using (var z = model.Forward(x))
        {
            Assert.Equal([b, n, v], z.ShapeArray());
            Assert.Equal(DType.Float64, z.DType);
            got = z.ToArray<double>();
        }
        var expected = new double[b * n * v];
        for (int s = 0; s < b; s++)
        {
            var logits = Reference(config, w, ids.AsSpan(s * n, n).ToArray());
            Array.Copy(logits, 0, expected, s * n * v, n * v);
        }
        TestUtil.AssertClose(expected, got, atol: 1e-12, rtol: 1e-10);
    }

    /// <summary>The documented architecture, one sequence, plain loops in float64.</summary>
    private static double[] Reference(TransformerConfig c, Dictionary<string, double[]> w, long[] ids)
    {
        int n = ids.Length, d = c.Width, hCount = c.Heads, dh = d / hCount, v = c.VocabSize, f = c.MlpRatio * d;
        var x = new double[n, d];
        for (int i = 0; i < n; i++)
            for (int k = 0; k < d; k++)
                x[i, k] = w["wte.weight"][ids[i] * d + k] + w["wpe.weight"][i * d + k];
        double[,] Ln(double[,] a, string prefix)
        {
            var y = new double[n, d];
            for (int i = 0; i < n; i++)
            {
                double mean = 0, var_ = 0;
                for (int k = 0; k < d; k++) mean += a[i, k];
                mean /= d;
                for (int k = 0; k < d; k++) var_ += (a[i, k] - mean) * (a[i, k] - mean);
                var_ /= d;
                for (int k = 0; k < d; k++)
                    y[i, k] = (a[i, k] - mean) / Math.Sqrt(var_ + 1e-5) * w[prefix + ".weight"][k] + w[prefix + ".bias"][k];
            }
            return y;
        }
        double[,] Lin(double[,] a, string prefix, int inF, int outF, bool bias = true)
        {
            var y = new double[n, outF];
            for (int i = 0; i < n; i++)
                for (int o = 0; o < outF; o++)
                {
                    double acc = bias ? w[prefix + ".bias"][o] : 0;
                    for (int k = 0; k < inF; k++) acc += a[i, k] * w[prefix + ".weight"][o * inF + k];
                    y[i, o] = acc;
                }
            return y;
        }
        for (int l = 0; l < c.Layers; l++)
        {
            string p = $"h.{l}";
            var h = Ln(x, p + ".ln_1");
            var q = Lin(h, p + ".attn.q_proj", d, d);
            var k_ = Lin(h, p + ".attn.k_proj", d, d);
            var val = Lin(h, p + ".attn.v_proj", d, d);
            var o = new double[n, d];
            for (int head = 0; head < hCount; head++)
                for (int i = 0; i < n; i++)
                {
                    var scores = new double[i + 1];
                    double max = double.NegativeInfinity;
                    for (int j = 0; j <= i; j++)
                    {
                        double dot = 0;
                        for (int e = 0; e < dh; e++) dot += q[i, head * dh + e] * k_[j, head * dh + e];
                        scores[j] = dot / Math.Sqrt(dh);
                        max = Math.Max(max, scores[j]);
                    }
                    double sum = 0;
                    for (int j = 0; j <= i; j++) sum += scores[j] = Math.Exp(scores[j] - max);
                    for (int e = 0; e < dh; e++)
                    {
                        double acc = 0;
                        for (int j = 0; j <= i; j++) acc += scores[j] / sum * val[j, head * dh + e];
                        o[i, head * dh + e] = acc;
                    }
                }
            var attn = Lin(o, p + ".attn.out_proj", d, d);
            for (int i = 0; i < n; i++) for (int e = 0; e < d; e++) x[i, e] += attn[i, e];
            var h2 = Ln(x, p + ".ln_2");
            var f1 = Lin(h2, p + ".fc_1", d, f);
            for (int i = 0; i < n; i++)
                for (int e = 0; e < f; e++)
                {
                    double z = f1[i, e];
                    f1[i, e] = 0.5 * z * (1 + Math.Tanh(Math.Sqrt(2 / Math.PI) * (z + 0.044715 * z * z * z)));
                }
            var f2 = Lin(f1, p + ".fc_2", f, d);
            for (int i = 0; i < n; i++) for (int e = 0; e < d; e++) x[i, e] += f2[i, e];
        }
        var hf = Ln(x, "ln_f");
        var head_ = c.TiedHead ? "wte" : "head";
        var outLogits = new double[n * v];
        for (int i = 0; i < n; i++)
            for (int t = 0; t < v; t++)
            {
                double acc = 0;
                for (int e = 0; e < d; e++) acc += hf[i, e] * w[head_ + ".weight"][t * d + e];
                outLogits[i * v + t] = acc;
            }
        return outLogits;
    }

    [Theory]
    [InlineData(LmMethod.CrossEntropy)]
    [InlineData(LmMethod.ForwardKl)]
    [InlineData(LmMethod.ReverseKl)]
    public void LossGradientWrtParametersMatchesCentralDifferences(LmMethod method)
    {
        var config = new TransformerConfig(VocabSize: 5, ContextLength: 3, Width: 4, Layers: 1, Heads: 2, MlpRatio: 1, InitStd: 0.4);
        using var model = new DecoderTransformer(config, 5);
        model.To(DType.Float64);
        var rng = new Random(TestUtil.StableSeed(nameof(LossGradientWrtParametersMatchesCentralDifferences) + method));
        using var ids = Tensor.FromArray(Enumerable.Range(0, 6).Select(_ => (long)rng.Next(5)).ToArray(), 2, 3);
        using var targets = Tensor.FromArray(Enumerable.Range(0, 6).Select(_ => (long)rng.Next(5)).ToArray(), 2, 3);
        using var teacher = TestUtil.Random(rng, [2, 3, 5], DType.Float64, -2, 2);
        var loss = new LmDistillationLoss(method, new LmLossSettings(), 10);
        var parameters = model.NamedParameters().ToDictionary(p => p.Name, p => p.Parameter);
        Tensor[] checkedParameters =
        [
            parameters["wpe.weight"], parameters["h.0.attn.q_proj.weight"], parameters["h.0.attn.v_proj.bias"],
            parameters["h.0.ln_2.weight"], parameters["h.0.fc_2.weight"], parameters["ln_f.bias"], parameters["head.weight"],
        ];
        GradCheck.Check(_ =>
        {
            using var logits = model.Forward(ids);
            return loss.Compute(logits, teacher, targets);
        }, checkedParameters, eps: 1e-6, atol: 1e-7, rtol: 1e-5);
    }

    [Fact]
    public void InitializationIsSeededAndFollowsTheDocumentedScales()
    {
        var config = new TransformerConfig(VocabSize: 64, ContextLength: 16, Width: 64, Layers: 2, Heads: 4, InitStd: 0.1);
        using var a = new DecoderTransformer(config, 42);
        using var b = new DecoderTransformer(config, 42);
        using var c = new DecoderTransformer(config, 43);
        var pa = a.NamedParameters().ToArray();
        var pb = b.NamedParameters().ToArray();
        var pc = c.NamedParameters().ToArray();
        Assert.Equal(pa.Select(p => p.Name), pb.Select(p => p.Name));
        for (int i = 0; i < pa.Length; i++) Assert.Equal(pa[i].Parameter.ToArray<float>(), pb[i].Parameter.ToArray<float>());
        Assert.NotEqual(pa[0].Parameter.ToArray<float>(), pc[0].Parameter.ToArray<float>());
        double Std(string name)
        {
            var x = a.NamedParameters().Single(p => p.Name == name).Parameter.ToArray<float>();
            double m = x.Average(f => (double)f);
            return Math.Sqrt(x.Sum(f => (f - m) * (f - m)) / x.Length);
        }
        Assert.InRange(Std("wte.weight"), 0.09, 0.11);
        Assert.InRange(Std("h.0.fc_1.weight"), 0.09, 0.11);
        Assert.InRange(Std("h.1.fc_2.weight"), 0.1 / 2 * 0.9, 0.1 / 2 * 1.1); // σ/√(2·2)
        Assert.All(a.NamedParameters().Single(p => p.Name == "h.0.attn.q_proj.bias").Parameter.ToArray<float>(), x => Assert.Equal(0f, x));
        Assert.All(a.NamedParameters().Single(p => p.Name == "ln_f.weight").Parameter.ToArray<float>(), x => Assert.Equal(1f, x));
        using var tied = new DecoderTransformer(config with { TiedHead = true }, 42);
        Assert.DoesNotContain(tied.NamedParameters(), p => p.Name.StartsWith("head", StringComparison.Ordinal));
    }

    [Fact]
    public void BadConfigurationsAndInputsAreRejectedWithClearMessages()
    {
        var e = Assert.Throws<ArgumentException>(() => new DecoderTransformer(Tiny with { Width = 9, Heads = 2 }, 0));
        Assert.Contains("Heads = 2", e.Message);
        using var model = new DecoderTransformer(Tiny, 0);
        using var tooLong = Tensor.Zeros([1, Tiny.ContextLength + 1], DType.Int64);
        e = Assert.Throws<ArgumentException>(() => model.Forward(tooLong));
        Assert.Contains("DecoderTransformer", e.Message);
        Assert.Contains($"N ≤ {Tiny.ContextLength}", e.Message);
        using var floats = Tensor.Zeros([1, 2]);
        Assert.Throws<ArgumentException>(() => model.Forward(floats));
        using var outOfRange = Tensor.Full([1, 2], Tiny.VocabSize, DType.Int64);
        Assert.ThrowsAny<ArgumentException>(() => model.Forward(outOfRange));
    }
}
