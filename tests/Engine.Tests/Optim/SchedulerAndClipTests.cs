using Engine.Tensors;
using Engine.Tensors.Optim;

namespace Engine.Tests.Optim;

/// <summary>Learning-rate schedules against torch's closed forms, and ClipGradNorm against a float64 reference.</summary>
public class SchedulerAndClipTests
{
    private static (Tensor A, Tensor B, SGD Opt) TwoGroups()
    {
        var a = Tensor.Zeros([2]);
        var b = Tensor.Zeros([3]);
        return (a, b, new SGD([new ParamGroup([a]), new ParamGroup([b], learningRate: 0.02)], learningRate: 0.1));
    }

    private static void AssertSequence(LRScheduler s, Optimizer opt, int steps, Func<double, long, double> closedForm)
    {
        double[] bases = [0.1, 0.02];
        for (long e = 0; e <= steps; e++)
        {
            if (e > 0) s.Step();
            Assert.Equal(e, s.LastEpoch);
            for (int g = 0; g < 2; g++)
            {
                double want = closedForm(bases[g], e);
                Assert.True(Math.Abs(opt.ParamGroups[g].LearningRate - want) <= 1e-15 * Math.Max(1, Math.Abs(want)),
                    $"{s.GetType().Name} epoch {e} group {g}: got {opt.ParamGroups[g].LearningRate}, expected {want}");
            }
        }
    }

    [Fact]
    public void StepLR_DecaysEveryStepSize()
    {
        var (a, b, opt) = TwoGroups();
        using (a) using (b) using (opt)
            AssertSequence(new StepLR(opt, stepSize: 3, gamma: 0.5), opt, 10, (lr, e) => lr * Math.Pow(0.5, e / 3));
    }

    [Fact]
    public void CosineAnnealingLR_FollowsHalfCosine()
    {
        var (a, b, opt) = TwoGroups();
        using (a) using (b) using (opt)
        {
            var s = new CosineAnnealingLR(opt, tMax: 7, etaMin: 0.001);
            AssertSequence(s, opt, 7, (lr, e) => 0.001 + (lr - 0.001) * (1 + Math.Cos(Math.PI * e / 7)) / 2);
            Assert.Equal(0.001, opt.ParamGroups[0].LearningRate, 15);
        }
    }

    [Fact]
    public void LinearLR_RampsThenHolds()
    {
        var (a, b, opt) = TwoGroups();
        using (a) using (b) using (opt)
            AssertSequence(new LinearLR(opt, 0.25, 1.0, 4), opt, 8, (lr, e) => lr * (0.25 + 0.75 * Math.Min(e, 4) / 4.0));
    }

    [Fact]
    public void WarmupThenCosine_SwitchesAtTheMilestone()
    {
        var (a, b, opt) = TwoGroups();
        using (a) using (b) using (opt)
        {
            var s = LRScheduler.WarmupCosine(opt, warmupSteps: 3, totalSteps: 10, warmupStartFactor: 0.1, etaMin: 0);
            // Epoch 0 is the warmup's start, not the cosine's (the sequence resets what the inner schedules set).
            Assert.Equal(0.01, opt.ParamGroups[0].LearningRate, 15);
            AssertSequence(s, opt, 12, (lr, e) => e < 3
                ? lr * (0.1 + 0.9 * e / 3.0)
                : lr * (1 + Math.Cos(Math.PI * (e - 3) / 7)) / 2);
            Assert.Equal([0.1, 0.02], s.BaseLearningRates);
        }
    }

    [Fact]
    public void Schedulers_BadArguments_Throw()
    {
        var (a, b, opt) = TwoGroups();
        using (a) using (b) using (opt)
        {
            Assert.Contains("StepLR", Assert.Throws<ArgumentOutOfRangeException>(() => new StepLR(opt, 0)).Message);
            Assert.Contains("CosineAnnealingLR", Assert.Throws<ArgumentOutOfRangeException>(() => new CosineAnnealingLR(opt, 0)).Message);
            Assert.Contains("LinearLR", Assert.Throws<ArgumentOutOfRangeException>(() => new LinearLR(opt, 0)).Message);
            var s1 = new LinearLR(opt);
            Assert.Contains("milestones", Assert.Throws<ArgumentException>(() => new SequentialLR(opt, [s1, s1], [])).Message);
        }
    }

    // ------------------------------------------------------------------ ClipGradNorm

    [Theory]
    [InlineData(2.0, 0.5)]
    [InlineData(2.0, 100.0)]
    [InlineData(1.0, 0.5)]
    [InlineData(3.0, 0.5)]
    [InlineData(double.PositiveInfinity, 0.3)]
    public void ClipGradNorm_MatchesReference(double normType, double maxNorm)
    {
        var rng = new Random(21);
        long[][] shapes = [[3, 4], [5], [], [0, 2]];
        foreach (var dtype in new[] { DType.Float32, DType.Float64 })
        {
            var ps = shapes.Select(s => Tensor.Zeros(s, dtype)).ToArray();
            using var none = Tensor.Zeros([2], dtype); // no gradient: skipped
            var grads = shapes.Select(s => TestUtil.RandomValues(rng, TestUtil.ShapeNumEl(s), -1, 1)
                .Select(v => dtype == DType.Float32 ? (double)(float)v : v).ToArray()).ToArray();
            for (int k = 0; k < ps.Length; k++) ps[k].Grad = TestUtil.FromDoubles(grads[k], shapes[k], dtype);

            var all = grads.SelectMany(g => g).ToArray();
            double total = double.IsPositiveInfinity(normType)
                ? all.Max(Math.Abs)
                : Math.Pow(all.Sum(v => Math.Pow(Math.Abs(v), normType)), 1 / normType);
            double coef = Math.Min(1, maxNorm / (total + 1e-6));

            double got = GradClip.ClipGradNorm(ps.Append(none), maxNorm, normType);
            Assert.True(Math.Abs(got - total) <= 1e-12 * total, $"norm {normType}: got {got}, expected {total}");
            for (int k = 0; k < ps.Length; k++)
                TestUtil.AssertClose(grads[k].Select(v => v * coef).ToArray(), ps[k].Grad!, 1e-7, 1e-6, $"clipped grad {k}");
            Assert.Null(none.Grad);
            foreach (var p in ps) p.Dispose();
        }
    }

    [Fact]
    public void ClipGradNorm_NoGradients_ReturnsZero_AndNonfiniteCanThrow()
    {
        using var p = Tensor.Zeros([2]);
        Assert.Equal(0, GradClip.ClipGradNorm([p], 1.0));
        p.Grad = Tensor.FromArray([float.NaN, 1f]);
        Assert.True(double.IsNaN(GradClip.ClipGradNorm([p], 1.0)));
        p.Grad = Tensor.FromArray([float.PositiveInfinity, 1f]);
        var ex = Assert.Throws<InvalidOperationException>(() => GradClip.ClipGradNorm([p], 1.0, errorIfNonfinite: true));
        Assert.Contains("ClipGradNorm", ex.Message);
        Assert.Equal(float.PositiveInfinity, p.Grad!.ToArray<float>()[0]); // left unchanged
    }
}
