using Engine.Distillation;
using Engine.Runtime;
using Engine.Tensors;

namespace Engine.Tests.Distillation;

/// <summary>The chunked fused linear divergences equal the unfused ones (full logits, composite, float64) to 1e-4 relative.</summary>
public class FusedLinearDivergenceTests
{
    private static Func<Tensor, Tensor, Tensor, Tensor, DivergenceOptions, int, Tensor> Op(string name) => name switch
    {
        "jsd" => (a, b, c, d, o, k) => FusedLinearDivergences.Jsd(a, b, c, d, 0.5, o, k),
        "jsd(0.1)" => (a, b, c, d, o, k) => FusedLinearDivergences.Jsd(a, b, c, d, 0.1, o, k),
        "forward_kl" => (a, b, c, d, o, k) => FusedLinearDivergences.ForwardKl(a, b, c, d, o, k),
        _ => (a, b, c, d, o, k) => FusedLinearDivergences.ReverseKl(a, b, c, d, o, k),
    };

    [Theory]
    [InlineData("jsd", 37, 19, 53, 8, 1.0)]
    [InlineData("jsd", 5, 7, 1, 2, 1.0)]
    [InlineData("jsd(0.1)", 16, 33, 100, 16, 2.0)]
    [InlineData("forward_kl", 37, 19, 53, 5, 2.0)]
    [InlineData("reverse_kl", 20, 17, 40, 64, 0.5)]
    public void EqualsUnfused_ValueAndGradients(string name, int n, int h, int v, int chunk, double temperature)
    {
        var rng = new Random(TestUtil.StableSeed($"fl{name}{n}{h}{v}{chunk}"));
        var hsv = TestUtil.RandomValues(rng, n * h, -1, 1).Select(x => (double)(float)x).ToArray();
        var wsv = TestUtil.RandomValues(rng, v * h, -0.5, 0.5).Select(x => (double)(float)x).ToArray();
        var htv = TestUtil.RandomValues(rng, n * (h + 3), -1, 1).Select(x => (double)(float)x).ToArray();
        var wtv = TestUtil.RandomValues(rng, v * (h + 3), -0.5, 0.5).Select(x => (double)(float)x).ToArray();
        var labels = Enumerable.Range(0, n).Select(i => i % 4 == 1 ? -100L : i % v).ToArray();
        (double Loss, double[] Gh, double[] Gw) Run(LossImplementation impl, DType dtype)
        {
            using var scope = Tensor.NewDisposeScope();
            var hs = TestUtil.FromDoubles(hsv, [n, h], dtype).RequiresGrad_();
            var ws = TestUtil.FromDoubles(wsv, [v, h], dtype).RequiresGrad_();
            var ht = TestUtil.FromDoubles(htv, [n, h + 3], dtype);
            var wt = TestUtil.FromDoubles(wtv, [v, h + 3], dtype);
            var o = new DivergenceOptions
            {
                Temperature = temperature, ScaleByTemperatureSquared = true, Reduction = Reduction.TokenMean,
                Labels = Tensor.FromArray(labels, n), Implementation = impl,
            };
            var loss = Op(name)(hs, ws, ht, wt, o, chunk);
            loss.Backward(Tensor.Scalar(0.8, dtype));
            double[] D(Tensor x) => x.DType == DType.Float64 ? x.ToArray<double>() : x.ToArray<float>().Select(e => (double)e).ToArray();
            return (loss.ToDouble(), D(hs.Grad!), D(ws.Grad!));
        }
        var reference = Run(LossImplementation.Composite, DType.Float64);
        var fused = Run(LossImplementation.Auto, DType.Float32);
        Assert.True(Math.Abs(fused.Loss - reference.Loss) <= 1e-4 * Math.Abs(reference.Loss) + 1e-7, $"{name}: loss {fused.Loss} vs unfused {reference.Loss}");
        double sh = reference.Gh.Max(Math.Abs), sw = reference.Gw.Max(Math.Abs);
        TestUtil.AssertClose(reference.Gh, fused.Gh, 1e-4 * sh, 1e-3, name + " dL/dh");
        TestUtil.AssertClose(reference.Gw, fused.Gw, 1e-4 * sw, 1e-3, name + " dL/dW");
    }

    [Theory]
    [InlineData(true, false)]
    [InlineData(false, true)]
    public void OnlyTheInputsThatRequireGrad_GetGradients(bool hidden, bool weight)
    {
        double[] Grad(LossImplementation impl)
        {
            using var scope = Tensor.NewDisposeScope();
            var r = new Random(hidden ? 11 : 12);
            var hs = TestUtil.Random(r, [9, 6], DType.Float32).RequiresGrad_(hidden);
            var ws = TestUtil.Random(r, [13, 6], DType.Float32).RequiresGrad_(weight);
            var ht = TestUtil.Random(r, [9, 4], DType.Float32);
            var wt = TestUtil.Random(r, [13, 4], DType.Float32);
            var loss = FusedLinearDivergences.ForwardKl(hs, ws, ht, wt, new DivergenceOptions { Implementation = impl }, chunkRows: 4);
            loss.Backward();
            Assert.Equal(hidden, hs.Grad is not null);
            Assert.Equal(weight, ws.Grad is not null);
            return (hidden ? hs.Grad! : ws.Grad!).ToArray<float>().Select(x => (double)x).ToArray();
        }
        var fused = Grad(LossImplementation.Auto);
        var unfused = Grad(LossImplementation.Composite);
        TestUtil.AssertClose(unfused, fused, 1e-6, 1e-4, hidden ? "dL/dh" : "dL/dW");
    }

    [Fact]
    public void CreateGraph_RecomputesUnfused()
    {
        var rng = new Random(3);
        using var hs = TestUtil.Random(rng, [6, 5], DType.Float32).RequiresGrad_();
        using var ws = TestUtil.Random(rng, [9, 5], DType.Float32).RequiresGrad_();
        using var ht = TestUtil.Random(rng, [6, 4], DType.Float32);
        using var wt = TestUtil.Random(rng, [9, 4], DType.Float32);
        using var loss = FusedLinearDivergences.Jsd(hs, ws, ht, wt);
        var g = Autograd.Grad([loss], [hs, ws], createGraph: true);
        Assert.True(g[0]!.RequiresGrad && g[1]!.RequiresGrad);
        using var lossC = FusedLinearDivergences.Jsd(hs, ws, ht, wt, 0.5, new DivergenceOptions { Implementation = LossImplementation.Composite });
        var gc = Autograd.Grad([lossC], [hs, ws]);
        TestUtil.AssertClose(gc[0]!.ToArray<float>().Select(x => (double)x).ToArray(), g[0]!, 1e-6, 1e-4, "dL/dh");
    }

    [Fact]
    public void BadArguments_ThrowNamingTheOp()
    {
        using var hs = Tensor.Zeros([4, 3]);
        using var ws = Tensor.Zeros([5, 3]);
        using var ws2 = Tensor.Zeros([5, 2]);
        Assert.Contains("fused_linear_jsd", Assert.Throws<ArgumentException>(() => FusedLinearDivergences.Jsd(hs, ws2, hs, ws)).Message);
        Assert.Contains("fused_linear_forward_kl", Assert.Throws<NotSupportedException>(() =>
            FusedLinearDivergences.ForwardKl(hs, ws, hs, ws, new DivergenceOptions { Reduction = Reduction.None })).Message);
        using var wt = Tensor.Zeros([5, 3]).RequiresGrad_();
        using var hs1 = Tensor.Zeros([4, 3]).RequiresGrad_();
        Assert.Contains("teacher", Assert.Throws<NotSupportedException>(() => FusedLinearDivergences.Jsd(hs1, ws, hs, wt)).Message);
        Assert.Contains("beta", Assert.Throws<ArgumentOutOfRangeException>(() => FusedLinearDivergences.Jsd(hs, ws, hs, ws, 2)).Message);
    }
}

/// <summary>
/// Tests that read <see cref="CpuAllocator.Shared"/>'s peak: run alone (no other test class in parallel), since any
/// concurrent allocation on the shared allocator would count toward the peak they bound.
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class SharedAllocatorPeakCollection
{
    public const string Name = "shared CPU allocator peak";
}

/// <summary>The fused linear divergence's peak memory stays far below one [N, V] logits buffer.</summary>
[Collection(SharedAllocatorPeakCollection.Name)]
public class FusedLinearDivergenceMemoryTests
{
    [Fact]
    public void NeverAllocatesTheFullLogits()
    {
        int n = 512, h = 8, v = 20000, chunk = 16;
        using var hs = Tensor.Randn([n, h]).RequiresGrad_();
        using var ws = Tensor.Randn([v, h]).RequiresGrad_();
        using var ht = Tensor.Randn([n, h]);
        using var wt = Tensor.Randn([v, h]);
        long before = CpuAllocator.Shared.CurrentBytes;
        CpuAllocator.Shared.ResetPeak();
        using (var loss = FusedLinearDivergences.Jsd(hs, ws, ht, wt, 0.5, null, chunk)) loss.Backward();
        long extra = CpuAllocator.Shared.PeakBytes - before;
        long logits = 4L * n * v;
        // Gradients (n·h + v·h floats, 0.7 MB) + two chunk buffers (2.6 MB) + the weight block: about 3.3 MB,
        // far below one [N, V] buffer (41 MB). No other test runs meanwhile (the collection), so the peak is this op's.
        Assert.True(extra < logits / 4, $"peak extra {extra} bytes vs full logits {logits}");
        Assert.NotNull(hs.Grad);
        Assert.NotNull(ws.Grad);
    }
}
