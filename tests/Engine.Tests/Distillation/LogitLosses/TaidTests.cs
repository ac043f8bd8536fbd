using Engine.Distillation;
using Engine.Tensors;

namespace Engine.Tests.Distillation.LogitLosses;

public class TaidTests
{
    // r = softmax((1−u)·s0 + u·t) from the un-perturbed student s0 (the stop-gradient), row = −Σ_{s finite} r log softmax(s).
    private static double[] Rows(double[] s, double[] s0, double[] t, int rows, int v, double u)
    {
        var result = new double[rows];
        for (int i = 0; i < rows; i++)
        {
            var mixed = new double[v];
            for (int j = 0; j < v; j++) mixed[j] = (u == 1 ? 0 : (1 - u) * s0[i * v + j]) + (u == 0 ? 0 : u * t[i * v + j]);
            var r = LogitRef.Softmax(mixed, 0, v);
            var logQ = LogitRef.LogSoftmax(s, i * v, v);
            for (int j = 0; j < v; j++)
                if (double.IsFinite(s[i * v + j]) && r[j] > 0) result[i] -= r[j] * logQ[j];
        }
        return result;
    }

    [Theory]
    [InlineData(DType.Float64, 6, 10, 0.4, Reduction.TokenMean, false)]
    [InlineData(DType.Float64, 5, 17, 0.0, Reduction.Sum, true)]
    [InlineData(DType.Float64, 7, 9, 1.0, Reduction.TokenMean, true)]
    [InlineData(DType.Float32, 8, 33, 0.7, Reduction.BatchMean, true)]
    [InlineData(DType.Float32, 4, 1, 0.5, Reduction.Mean, false)]
    public void MatchesFloat64Reference(DType dtype, int rows, int v, double u, Reduction reduction, bool ignore)
    {
        var rng = new Random(TestUtil.StableSeed($"taid{dtype}{rows}{v}{u}{reduction}{ignore}"));
        var s = TestUtil.RandomValues(rng, rows * v, -3, 3);
        var t = TestUtil.RandomValues(rng, rows * v, -3, 3);
        var y = LogitRef.Labels(rng, rows, v, ignore);
        var counted = y.Select(l => l >= 0).ToArray();
        double expected = LogitRef.Reduce(Rows(s, s, t, rows, v, u), counted, reduction, v);
        var expectedGrad = LogitRef.FiniteDifferences(x => LogitRef.Reduce(Rows(x, s, t, rows, v, u), counted, reduction, v), s);
        using var tt = TestUtil.FromDoubles(t, [rows, v], dtype);
        using var yt = Tensor.FromArray(y, rows);
        foreach (var impl in new[] { LossImplementation.Fused, LossImplementation.Composite })
        {
            var (value, grad) = LogitRef.Run(x => LogitLoss.Taid(x, tt, u, yt, reduction: reduction, implementation: impl), s, [rows, v], dtype);
            double tol = dtype == DType.Float32 ? 2e-5 : 1e-10;
            Assert.Equal(expected, value[0], tol * Math.Max(1, Math.Abs(expected)));
            TestUtil.AssertClose(expectedGrad, grad, atol: dtype == DType.Float32 ? 1e-5 : 1e-7, rtol: 1e-4, what: $"{impl} grad");
        }
    }

    [Fact]
    public void TeacherInputsGiveTheSameTarget()
    {
        var rng = new Random(2);
        const int rows = 5, v = 12;
        var s = TestUtil.RandomValues(rng, rows * v, -3, 3);
        using var logits = TestUtil.Random(rng, [rows, v], DType.Float64, -3, 3);
        using var logp = logits.LogSoftmax(-1);
        using var prob = logits.Softmax(-1);
        using var st = TestUtil.FromDoubles(s, [rows, v], DType.Float64);
        using var a = LogitLoss.Taid(st, logits, 0.6);
        using var b = LogitLoss.Taid(st, logp, 0.6, teacherInput: TeacherInput.LogProbabilities);
        using var c = LogitLoss.Taid(st, prob, 0.6, teacherInput: TeacherInput.Probabilities);
        Assert.Equal(a.ToDouble(), b.ToDouble(), 1e-12);
        Assert.Equal(a.ToDouble(), c.ToDouble(), 1e-12);
        foreach (var (input, teacher) in new[] { (TeacherInput.LogProbabilities, logp), (TeacherInput.Probabilities, prob) })
            LogitRef.AssertFormsAgree((x, impl) => LogitLoss.Taid(x, teacher, 0.6, teacherInput: input, implementation: impl), s, [rows, v], DType.Float64, 1e-12, 1e-10, $"{input}");
    }

    [Fact]
    public void RankThreeReductionNoneAndSchedule()
    {
        var rng = new Random(12);
        const int b = 2, l = 3, v = 5;
        var s = TestUtil.RandomValues(rng, b * l * v, -2, 2);
        var t = TestUtil.RandomValues(rng, b * l * v, -2, 2);
        var y = new long[] { 1, -100, 4, 0, -100, 2 };
        var expected = Rows(s, s, t, b * l, v, 0.4);
        expected[1] = expected[4] = 0;
        using var tt = TestUtil.FromDoubles(t, [b, l, v], DType.Float64);
        using var yt = Tensor.FromArray(y, b, l);
        var schedule = new TaidSchedule(100);
        foreach (var impl in new[] { LossImplementation.Fused, LossImplementation.Composite })
        {
            var (value, grad) = LogitRef.Run(x => LogitLoss.Taid(x, tt, schedule, yt, reduction: Reduction.None, implementation: impl), s, [b, l, v], DType.Float64);
            TestUtil.AssertClose(expected, value, 1e-12, 1e-10, $"{impl}");
            for (int j = 0; j < v; j++) Assert.Equal(0.0, grad[4 * v + j]);
        }
    }

    [Fact]
    public void GradCheckCompositeAndSecondOrderThroughFused()
    {
        // Finite differences see through the stop-gradient, autograd does not: the student is checked at
        // u = 1 (where r does not depend on s); u < 1 is covered by the frozen-r reference above. The teacher
        // (composite only) is checked at u = 0.3.
        var rng = new Random(13);
        using var s = TestUtil.Random(rng, [3, 5], DType.Float64, -2, 2).RequiresGrad_();
        using var t = TestUtil.Random(rng, [3, 5], DType.Float64, -2, 2).RequiresGrad_();
        using var sFixed = TestUtil.Random(rng, [3, 5], DType.Float64, -2, 2);
        GradCheck.Check(x => LogitLoss.Taid(x[0], x[1], 1.0, implementation: LossImplementation.Composite), [s, t]);
        GradCheck.CheckSecondOrder(x => LogitLoss.Taid(x[0], x[1], 1.0, implementation: LossImplementation.Composite), [s, t]);
        GradCheck.Check(x => LogitLoss.Taid(sFixed, x[0], 0.3, implementation: LossImplementation.Composite), [t]);
        GradCheck.CheckSecondOrder(x => LogitLoss.Taid(sFixed, x[0], 0.3, implementation: LossImplementation.Composite), [t]);
        using var sOnly = TestUtil.Random(rng, [4, 6], DType.Float64, -2, 2).RequiresGrad_();
        using var tFixed = TestUtil.Random(rng, [4, 6], DType.Float64, -2, 2);
        GradCheck.Check(x => LogitLoss.Taid(x[0], tFixed, 1.0, implementation: LossImplementation.Fused), [sOnly]);
        GradCheck.CheckSecondOrder(x => LogitLoss.Taid(x[0], tFixed, 1.0, implementation: LossImplementation.Fused), [sOnly]);
        // u < 1 through the fused node with createGraph: the Hessian-vector product equals the composite's.
        using var sA = TestUtil.Random(rng, [4, 6], DType.Float64, -2, 2).RequiresGrad_();
        using var dir = TestUtil.Random(rng, [4, 6], DType.Float64, -1, 1);
        double[] Hvp(LossImplementation impl)
        {
            using var loss = LogitLoss.Taid(sA, tFixed, 0.6, implementation: impl);
            var g = Autograd.Grad(loss, sA, createGraph: true);
            using var dot = g.Mul(dir).Sum();
            return Autograd.Grad(dot, sA).ToArray<double>();
        }
        TestUtil.AssertClose(Hvp(LossImplementation.Composite), Hvp(LossImplementation.Fused), 1e-12, 1e-10, "hvp");
    }

    [Theory]
    [InlineData(DType.Float32)]
    [InlineData(DType.Float64)]
    public void EdgeCases(DType dtype)
    {
        var rng = new Random(31);
        const int rows = 4, v = 9;
        var big = TestUtil.RandomValues(rng, rows * v, -1, 1).Select(x => x * 1e4).ToArray();
        using (var tt = TestUtil.Random(rng, [rows, v], dtype, -1e4, 1e4))
            LogitRef.AssertFormsAgree((x, impl) => LogitLoss.Taid(x, tt, 0.5, implementation: impl), big, [rows, v], dtype, 1e-2, 1e-4, "±1e4");
        // Masked vocabulary: −∞ student classes are left out (also at u = 1 where the teacher has mass there).
        var s = TestUtil.RandomValues(rng, rows * v, -3, 3);
        s[2] = s[v + 7] = double.NegativeInfinity;
        using (var tt = TestUtil.Random(rng, [rows, v], dtype, -3, 3))
            foreach (double u in new[] { 0.5, 1.0 })
                LogitRef.AssertFormsAgree((x, impl) => LogitLoss.Taid(x, tt, u, implementation: impl), s, [rows, v], dtype, 1e-5, 1e-4, $"-inf u={u}");
    }

    [Theory]
    [InlineData(LossImplementation.Fused)]
    [InlineData(LossImplementation.Composite)]
    public void ZeroGradientCases(LossImplementation impl)
    {
        var rng = new Random(8);
        var s = TestUtil.RandomValues(rng, 5 * 11, -5, 5);
        // Teacher equal to student: r = q for every u, so the gradient is 0 (the loss is the entropy of q).
        using (var tt = TestUtil.FromDoubles(s, [5, 11], DType.Float64))
        {
            var (value, grad) = LogitRef.Run(x => LogitLoss.Taid(x, tt, 0.7, implementation: impl), s, [5, 11], DType.Float64);
            double entropy = 0;
            for (int i = 0; i < 5; i++) entropy += LogitRef.Softmax(s, i * 11, 11).Sum(p => p > 0 ? -p * Math.Log(p) : 0);
            Assert.Equal(entropy / 5, value[0], 1e-12);
            Assert.All(grad, g => Assert.Equal(0, g, 1e-12));
        }
        using (var tt = TestUtil.Random(rng, [5, 11], DType.Float32))
        using (var ignored = Tensor.FromArray(Enumerable.Repeat(-1L, 5).ToArray(), 5))
        {
            var (value, grad) = LogitRef.Run(x => LogitLoss.Taid(x, tt, 0.7, ignored, ignoreIndex: -1, implementation: impl), s, [5, 11], DType.Float32);
            Assert.Equal(0.0, value[0]);
            Assert.All(grad, g => Assert.Equal(0.0, g));
        }
    }

    [Fact]
    public void BadInputsNameTheLoss()
    {
        using var s = Tensor.Zeros([2, 3]);
        using var t = Tensor.Zeros([3, 3]);
        var e = Assert.Throws<ArgumentException>(() => LogitLoss.Taid(s, t, 0.5));
        Assert.Contains("taid_loss", e.Message);
        Assert.Contains("[3, 3]", e.Message);
        Assert.Contains("taid_loss", Assert.Throws<ArgumentOutOfRangeException>(() => LogitLoss.Taid(s, s, 1.5)).Message);
    }

    // ------------------------------------------------------------------ the schedule

    [Fact]
    public void ScheduleFollowsHandComputedSequence()
    {
        // total 10, start 0.2, end 0.9, α 0.3, β 0.5. By hand for step 2 (loss 5 → 4):
        // rel = (5 − 4)/5 = 0.2; m = 0.5·0 + 0.5·0.2 = 0.1; Δ = 0.3·sigmoid(0.1)·(1 − 0.2) = 0.3·0.524979·0.8 = 0.125995;
        // linear target = 0.2 + 0.7·2/10 = 0.34 > 0.2 + Δ = 0.325995, so u = 0.34.
        // Step 3 (4 → 4.5): rel = −0.125, m = 0.05 − 0.0625 = −0.0125, Δ = 0.3·sigmoid(−0.0125)·0.66 = 0.0983813,
        // target 0.41 < 0.34 + Δ, so u = 0.4383813. The rest continue the same rule (values from the same arithmetic).
        var schedule = new TaidSchedule(10, start: 0.2, end: 0.9, alpha: 0.3, beta: 0.5);
        double[] losses = [5.0, 4.0, 4.5, 2.0, 1.0, 1.0, 0.5, 0.25];
        double[] expectedU = [0.2, 0.34, 0.43838125805651473, 0.5339914461564863, 0.6172106749966207, 0.6801494557799395, 0.7363556013095857, 0.7841480265140446];
        double[] expectedM = [0.0, 0.1, -0.0125, 0.27152777777777776, 0.3857638888888888, 0.1928819444444444, 0.3464409722222219, 0.42322048611111046];
        for (int k = 0; k < losses.Length; k++)
        {
            double u = schedule.Update(losses[k], k + 1);
            Assert.Equal(expectedU[k], u, 1e-12);
            Assert.Equal(expectedU[k], schedule.Value, 1e-12);
            Assert.Equal(expectedM[k], schedule.Momentum, 1e-12);
            Assert.Equal(losses[k], schedule.PreviousLoss);
        }
    }

    [Fact]
    public void ScheduleClampsAtEndAndCanBeLinearOnly()
    {
        var fast = new TaidSchedule(1000, start: 0.1, end: 0.5, alpha: 1.0);
        fast.Update(1.0, 1);
        for (int k = 2; k < 50; k++) fast.Update(1.0 / k, k);
        Assert.Equal(0.5, fast.Value);
        var linear = new TaidSchedule(4, start: 0.2, end: 1.0, alpha: 1.0, adaptive: false);
        linear.Update(3.0, 1);
        Assert.Equal(0.2, linear.Value); // the first call only records the loss
        Assert.Equal(0.6, linear.Update(1.0, 2), 1e-15);
        Assert.Equal(0.8, linear.Update(5.0, 3), 1e-15); // no adaptive step, and a loss increase does not matter
        Assert.Equal(1.0, linear.Update(5.0, 4), 1e-15);
    }

    [Fact]
    public void ScheduleValidates()
    {
        Assert.Contains("TaidSchedule", Assert.Throws<ArgumentOutOfRangeException>(() => new TaidSchedule(0)).Message);
        Assert.Contains("TaidSchedule", Assert.Throws<ArgumentOutOfRangeException>(() => new TaidSchedule(10, start: 1.0)).Message);
        Assert.Contains("TaidSchedule", Assert.Throws<ArgumentOutOfRangeException>(() => new TaidSchedule(10, end: 0)).Message);
        Assert.Contains("TaidSchedule", Assert.Throws<ArgumentOutOfRangeException>(() => new TaidSchedule(10, alpha: 2)).Message);
        Assert.Contains("TaidSchedule", Assert.Throws<ArgumentOutOfRangeException>(() => new TaidSchedule(10).Update(double.NaN, 1)).Message);
    }
}
