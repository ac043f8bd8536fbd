using Engine.Distillation.DatasetDistillation;
using Engine.Tensors;

namespace Engine.Tests.Distillation.DatasetDistillation;

/// <summary>
/// The dataset-distillation objectives: values against float64 references written with plain loops,
/// and float64 gradient checks with respect to the synthetic images on a tiny ConvNet (for gradient and
/// trajectory matching these differentiate through a gradient: the higher-order path).
/// </summary>
public class ObjectiveTests
{
    /// <summary>Tiny ConvNet: 1×4×4 images, 2 classes, one conv block of width 2 → 8 features.</summary>
    private static ConvNetSpec Tiny(ConvNetNorm norm) => new(Channels: 1, ImageSize: 4, Classes: 2, Width: 2, Depth: 1, Norm: norm);

    private static double[] Values(Random rng, int n, double lo = -1, double hi = 1) => TestUtil.RandomValues(rng, n, lo, hi);

    /// <summary>Zhao et al.'s distance_wb summed over tensors, in plain double loops.</summary>
    private static double ReferenceDistance(IReadOnlyList<(double[] Real, double[] Syn, long[] Shape)> grads)
    {
        double total = 0;
        foreach (var (r, s, shape) in grads)
        {
            if (shape.Length <= 1) continue;
            long rows = shape[0], cols = r.Length / rows;
            for (long i = 0; i < rows; i++)
            {
                double dot = 0, rr = 0, ss = 0;
                for (long j = 0; j < cols; j++)
                {
                    double a = r[i * cols + j], b = s[i * cols + j];
                    dot += a * b;
                    rr += a * a;
                    ss += b * b;
                }
                double nr = Math.Sqrt(rr + GradientMatching.NormEps), ns = Math.Sqrt(ss + GradientMatching.NormEps);
                total += 1 - dot / (nr * ns + GradientMatching.DenominatorEps);
            }
        }
        return total;
    }

    [Theory]
    [InlineData(DType.Float64)]
    [InlineData(DType.Float32)]
    public void GradientMatchingDistance_MatchesFloat64Reference(DType dtype)
    {
        var rng = new Random(TestUtil.StableSeed(nameof(GradientMatchingDistance_MatchesFloat64Reference)));
        long[][] shapes = [[3, 2, 3, 3], [3], [5, 7], [1, 1], [4, 1, 1, 1]];
        var data = shapes.Select(sh => (Real: Values(rng, (int)TestUtil.ShapeNumEl(sh)), Syn: Values(rng, (int)TestUtil.ShapeNumEl(sh)), Shape: sh)).ToList();
        // A zero row in a synthetic gradient (a dead unit): the norm epsilon keeps everything finite.
        for (int j = 0; j < 7; j++) data[2].Syn[7 + j] = 0;
        var real = data.Select(d => TestUtil.FromDoubles(d.Real, d.Shape, dtype)).ToArray();
        var syn = data.Select(d => TestUtil.FromDoubles(d.Syn, d.Shape, dtype).RequiresGrad_()).ToArray();
        using var dist = GradientMatching.Distance(real, syn);
        double tol = dtype == DType.Float64 ? 1e-12 : 1e-5;
        Assert.Equal(ReferenceDistance(data), dist.ToDouble(), tol);
        Assert.Equal(0, dist.Rank);

        // Its gradient is finite even at the zero row (where √ of a plain sum of squares would give NaN).
        var g = Autograd.Grad([dist], syn, allowUnused: true);
        Assert.Null(g[1]); // a bias: contributes nothing
        foreach (var t in g.Where(t => t is not null))
        {
            using var t64 = t!.To(DType.Float64);
            Assert.All(t64.ToArray<double>(), v => Assert.True(double.IsFinite(v)));
        }
        foreach (var t in real.Concat(syn).Concat(g.OfType<Tensor>())) t.Dispose();
    }

    [Fact]
    public void GradientMatchingDistance_IsZeroForProportionalGradientsAndRejectsMismatchedShapes()
    {
        using var a = Tensor.FromArray(new double[] { 1, 2, 3, -4, 5, 6 }, 2, 3);
        using var b = a.Mul(3.0);
        using var d = GradientMatching.Distance([a], [b]);
        Assert.Equal(0, d.ToDouble(), 1e-6); // 2 rows × (1 − cos) with cos → 1 up to the 1e-6 epsilon
        using var c = Tensor.Zeros([3, 2], DType.Float64);
        var e = Assert.Throws<ArgumentException>(() => GradientMatching.Distance([a], [c]));
        Assert.Contains("[2, 3]", e.Message);
        Assert.Contains("[3, 2]", e.Message);
    }

    [Theory]
    [InlineData(DType.Float64)]
    [InlineData(DType.Float32)]
    public void DistributionMatchingLoss_MatchesFloat64Reference(DType dtype)
    {
        var rng = new Random(TestUtil.StableSeed(nameof(DistributionMatchingLoss_MatchesFloat64Reference)));
        int n = 7, m = 3, d = 5;
        var r = Values(rng, n * d);
        var s = Values(rng, m * d);
        double expected = 0;
        for (int j = 0; j < d; j++)
        {
            double mr = 0, ms = 0;
            for (int i = 0; i < n; i++) mr += r[i * d + j];
            for (int i = 0; i < m; i++) ms += s[i * d + j];
            double diff = mr / n - ms / m;
            expected += diff * diff;
        }
        using var tr = TestUtil.FromDoubles(r, [n, d], dtype);
        using var ts = TestUtil.FromDoubles(s, [m, d], dtype);
        using var loss = DistributionMatching.MatchLoss(tr, ts);
        Assert.Equal(expected, loss.ToDouble(), dtype == DType.Float64 ? 1e-12 : 1e-5);
        Assert.Throws<ArgumentException>(() => DistributionMatching.MatchLoss(tr, tr.Narrow(1, 0, 2)));
    }

    [Theory]
    [InlineData(ConvNetNorm.None)]
    [InlineData(ConvNetNorm.Instance)]
    public void DistributionMatchingObjective_GradCheck(ConvNetNorm norm)
    {
        var spec = Tiny(norm);
        var rng = new Random(21);
        var net = DistillConvNet.Init(spec, new Generator(3), DType.Float64);
        foreach (var p in net) p.RequiresGrad = false;
        using var real = TestUtil.Random(rng, [5, 1, 4, 4], DType.Float64);
        using var syn = TestUtil.Random(rng, [2, 1, 4, 4], DType.Float64).RequiresGrad_();
        GradCheck.Check(x => DistributionMatching.ClassObjective(spec, net, real, x[0]), [syn]);
        foreach (var p in net) p.Dispose();
    }

    [Theory]
    [InlineData(ConvNetNorm.None)]
    [InlineData(ConvNetNorm.Instance)]
    public void GradientMatchingObjective_GradCheck_ThroughTheNetworkGradient(ConvNetNorm norm)
    {
        var spec = Tiny(norm);
        var rng = new Random(22);
        var net = DistillConvNet.Init(spec, new Generator(4), DType.Float64); // requires grad: DC differentiates wrt it
        using var real = TestUtil.Random(rng, [4, 1, 4, 4], DType.Float64);
        using var realY = Tensor.FromArray(new long[] { 0, 1, 1, 0 }, 4);
        using var syn = TestUtil.Random(rng, [2, 1, 4, 4], DType.Float64).RequiresGrad_();
        using var synY = Tensor.FromArray(new long[] { 0, 1 }, 2);
        // The objective depends on the synthetic images only through ∇_θ CE(f_θ(syn)): its gradient is a
        // mixed second derivative (through conv = unfold + matmul, norm, ReLU, avg-pool, linear).
        GradCheck.Check(x => GradientMatching.ClassObjective(spec, net, real, realY, x[0], synY), [syn], atol: 1e-6, rtol: 1e-4);
        foreach (var p in net) p.Dispose();
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void TrajectoryMatchingObjective_GradCheck_ThroughUnrolledSteps(bool minibatches)
    {
        var spec = Tiny(ConvNetNorm.Instance);
        var rng = new Random(23);
        var start = DistillConvNet.Init(spec, new Generator(5), DType.Float64);
        var target = DistillConvNet.Init(spec, new Generator(6), DType.Float64);
        foreach (var p in start.Concat(target)) p.RequiresGrad = false;
        using var syn = TestUtil.Random(rng, [4, 1, 4, 4], DType.Float64).RequiresGrad_();
        using var synY = Tensor.FromArray(new long[] { 0, 0, 1, 1 }, 4);
        using var lr = Tensor.Scalar(0.5, DType.Float64).RequiresGrad_();
        long[][]? batches = minibatches ? [[0, 2], [3, 1], [1, 2]] : null;
        int steps = minibatches ? 3 : 2;
        // Gradients with respect to the images and the learning rate pass through every inner step's
        // gradient (createGraph), i.e. through second derivatives of the cross-entropy.
        GradCheck.Check(x => TrajectoryMatching.Objective(spec, start, target, x[0], synY, x[1], steps, batches), [syn, lr], atol: 1e-6, rtol: 1e-4);
        foreach (var p in start.Concat(target)) p.Dispose();
    }

    [Fact]
    public void TrajectoryMatchingObjective_IsOneWithoutStepsEffectAndLeavesStartUnchanged()
    {
        // With learning rate 0 the network stays at θ*_t, so L = ‖θ*_t − θ*_target‖² / ‖θ*_t − θ*_target‖² = 1.
        var spec = Tiny(ConvNetNorm.None);
        var start = DistillConvNet.Init(spec, new Generator(7), DType.Float64);
        var target = DistillConvNet.Init(spec, new Generator(8), DType.Float64);
        var before = start.Select(p => p.ToArray<double>()).ToArray();
        using var syn = TestUtil.Random(new Random(1), [2, 1, 4, 4], DType.Float64).RequiresGrad_();
        using var synY = Tensor.FromArray(new long[] { 0, 1 }, 2);
        using var lr = Tensor.Scalar(0.0, DType.Float64);
        using var loss = TrajectoryMatching.Objective(spec, start, target, syn, synY, lr, 3);
        Assert.Equal(1.0, loss.ToDouble(), 1e-12);
        for (int i = 0; i < start.Length; i++) Assert.Equal(before[i], start[i].ToArray<double>());
        foreach (var p in start.Concat(target)) p.Dispose();
    }
}
