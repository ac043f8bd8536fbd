using Engine.Distillation;
using Engine.Tensors;

namespace Engine.Tests.Distillation.LogitLosses;

public class PlackettLuceTests
{
    // Direct O(V²) transcription: π = (y, others by descending w, ties by index); −Σ_k w_πk (s_πk − log Σ_{j≥k} e^{s_πj}).
    private static double[] Rows(double[] s, double[] t, long[] y, int rows, int v, double[] temps)
    {
        var result = new double[rows];
        for (int i = 0; i < rows; i++)
        {
            if (y[i] < 0) continue;
            var w = LogitRef.Softmax(t, i * v, v, temps[i]);
            var others = Enumerable.Range(0, v).Where(j => j != y[i]).OrderByDescending(j => w[j]).ThenBy(j => j);
            var pi = new[] { (int)y[i] }.Concat(others).ToArray();
            for (int k = 0; k < v; k++)
            {
                if (w[pi[k]] == 0) continue;
                double m = double.NegativeInfinity;
                for (int j = k; j < v; j++) m = Math.Max(m, s[i * v + pi[j]]);
                double z = 0;
                for (int j = k; j < v; j++) z += Math.Exp(s[i * v + pi[j]] - m);
                result[i] -= w[pi[k]] * (s[i * v + pi[k]] - (m + Math.Log(z)));
            }
        }
        return result;
    }

    [Theory]
    [InlineData(DType.Float64, 6, 10, 1.0, Reduction.BatchMean, false, false)]
    [InlineData(DType.Float64, 5, 17, 4.0, Reduction.Sum, true, false)]
    [InlineData(DType.Float64, 7, 9, 1.0, Reduction.TokenMean, true, true)]
    [InlineData(DType.Float32, 8, 33, 2.0, Reduction.BatchMean, true, false)]
    [InlineData(DType.Float32, 4, 2, 1.0, Reduction.Mean, false, true)]
    public void MatchesFloat64Reference(DType dtype, int rows, int v, double temp, Reduction reduction, bool ignore, bool perRowT)
    {
        var rng = new Random(TestUtil.StableSeed($"pld{dtype}{rows}{v}{temp}{reduction}{ignore}{perRowT}"));
        var s = TestUtil.RandomValues(rng, rows * v, -3, 3);
        var t = TestUtil.RandomValues(rng, rows * v, -3, 3);
        var y = LogitRef.Labels(rng, rows, v, ignore);
        var temps = Enumerable.Range(0, rows).Select(_ => perRowT ? 0.5 + 3 * rng.NextDouble() : temp).ToArray();
        var counted = y.Select(l => l >= 0).ToArray();
        double expected = LogitRef.Reduce(Rows(s, t, y, rows, v, temps), counted, reduction, v);
        var expectedGrad = LogitRef.FiniteDifferences(x => LogitRef.Reduce(Rows(x, t, y, rows, v, temps), counted, reduction, v), s);
        using var tt = TestUtil.FromDoubles(t, [rows, v], dtype);
        using var yt = Tensor.FromArray(y, rows);
        using var tempT = perRowT ? Tensor.FromArray(temps, rows) : null;
        foreach (var impl in new[] { LossImplementation.Fused, LossImplementation.Composite })
        {
            var (value, grad) = LogitRef.Run(x => LogitLoss.PlackettLuce(x, tt, yt, temp, tempT, reduction: reduction, implementation: impl), s, [rows, v], dtype);
            double tol = dtype == DType.Float32 ? 2e-5 : 1e-10;
            Assert.Equal(expected, value[0], tol * Math.Max(1, Math.Abs(expected)));
            TestUtil.AssertClose(expectedGrad, grad, atol: dtype == DType.Float32 ? 1e-5 : 1e-7, rtol: 1e-4, what: $"{impl} grad");
        }
    }

    [Theory]
    [InlineData(LossImplementation.Fused)]
    [InlineData(LossImplementation.Composite)]
    public void InvariantToAddingAConstantToTheStudent(LossImplementation impl)
    {
        var rng = new Random(41);
        const int rows = 5, v = 12;
        using var s = TestUtil.Random(rng, [rows, v], DType.Float64, -3, 3);
        using var t = TestUtil.Random(rng, [rows, v], DType.Float64, -3, 3);
        using var y = Tensor.FromArray(new long[] { 0, 11, 5, 5, 2 }, rows);
        using var shift = Tensor.FromArray(new[] { 100.0, -37.5, 0.25, 1e3, -1e3 }, rows, 1);
        using var shifted = s.Add(shift);
        using var a = LogitLoss.PlackettLuce(s, t, y, reduction: Reduction.None, implementation: impl);
        using var b = LogitLoss.PlackettLuce(shifted, t, y, reduction: Reduction.None, implementation: impl);
        TestUtil.AssertClose(a.ToArray<double>(), b, 1e-10, 1e-10, "shift");
    }

    [Fact]
    public void TeacherInputsAndTiesGiveOneRanking()
    {
        var rng = new Random(43);
        const int rows = 6, v = 7;
        var s = TestUtil.RandomValues(rng, rows * v, -3, 3);
        // Teacher with ties (integers): the tie order (ascending class) must be the same in both forms.
        var t = Enumerable.Range(0, rows * v).Select(_ => (double)rng.Next(3)).ToArray();
        using var tt = TestUtil.FromDoubles(t, [rows, v], DType.Float64);
        using var y = Tensor.FromArray(LogitRef.Labels(rng, rows, v, false), rows);
        LogitRef.AssertFormsAgree((x, impl) => LogitLoss.PlackettLuce(x, tt, y, implementation: impl), s, [rows, v], DType.Float64, 1e-12, 1e-10, "ties");
        using var st = TestUtil.FromDoubles(s, [rows, v], DType.Float64);
        using var logp = tt.LogSoftmax(-1, 2.0);
        using var prob = tt.Softmax(-1, 2.0);
        using var a = LogitLoss.PlackettLuce(st, tt, y, 2.0);
        using var b = LogitLoss.PlackettLuce(st, logp, y, teacherInput: TeacherInput.LogProbabilities);
        using var c = LogitLoss.PlackettLuce(st, prob, y, teacherInput: TeacherInput.Probabilities);
        Assert.Equal(a.ToDouble(), b.ToDouble(), 1e-12);
        Assert.Equal(a.ToDouble(), c.ToDouble(), 1e-12);
    }

    [Fact]
    public void GradCheckCompositeAndSecondOrderThroughFused()
    {
        var rng = new Random(47);
        using var s = TestUtil.Random(rng, [3, 5], DType.Float64, -2, 2).RequiresGrad_();
        using var t = TestUtil.Random(rng, [3, 5], DType.Float64, -2, 2).RequiresGrad_();
        using var temps = Tensor.FromArray(new[] { 1.5, 3.0, 0.7 }, 3).RequiresGrad_();
        using var y = Tensor.FromArray(new long[] { 4, -100, 2 }, 3);
        GradCheck.Check(x => LogitLoss.PlackettLuce(x[0], x[1], y, temperatures: x[2], implementation: LossImplementation.Composite), [s, t, temps]);
        GradCheck.CheckSecondOrder(x => LogitLoss.PlackettLuce(x[0], x[1], y, 2.0, implementation: LossImplementation.Composite), [s, t]);
        using var sOnly = TestUtil.Random(rng, [4, 6], DType.Float64, -2, 2).RequiresGrad_();
        using var tFixed = TestUtil.Random(rng, [4, 6], DType.Float64, -2, 2);
        using var y4 = Tensor.FromArray(new long[] { 0, 5, 3, 1 }, 4);
        GradCheck.Check(x => LogitLoss.PlackettLuce(x[0], tFixed, y4, implementation: LossImplementation.Fused), [sOnly]);
        GradCheck.CheckSecondOrder(x => LogitLoss.PlackettLuce(x[0], tFixed, y4, reduction: Reduction.None, implementation: LossImplementation.Fused), [sOnly]);
    }

    [Theory]
    [InlineData(DType.Float32)]
    [InlineData(DType.Float64)]
    public void EdgeCases(DType dtype)
    {
        var rng = new Random(53);
        const int rows = 4, v = 9;
        using var y = Tensor.FromArray(new long[] { 0, 3, 8, 2 }, rows);
        var big = TestUtil.RandomValues(rng, rows * v, -1, 1).Select(x => x * 1e4).ToArray();
        using (var tt = TestUtil.Random(rng, [rows, v], dtype, -1e4, 1e4))
            LogitRef.AssertFormsAgree((x, impl) => LogitLoss.PlackettLuce(x, tt, y, implementation: impl), big, [rows, v], dtype, 1e-1, 1e-4, "±1e4");
        // A class masked in the student and the teacher (w = 0 there, ranked last).
        var s = TestUtil.RandomValues(rng, rows * v, -3, 3);
        var t = TestUtil.RandomValues(rng, rows * v, -3, 3);
        s[1] = t[1] = double.NegativeInfinity;
        s[v + 6] = t[v + 6] = double.NegativeInfinity;
        using (var tt = TestUtil.FromDoubles(t, [rows, v], dtype))
            foreach (double temp in new[] { 0.05, 1.0, 20.0 })
                LogitRef.AssertFormsAgree((x, impl) => LogitLoss.PlackettLuce(x, tt, y, temp, implementation: impl), s, [rows, v], dtype, 1e-4, 1e-4, $"-inf T={temp}");
        // Teacher equal to the student: finite, forms agree (PLD is not a divergence: not 0 there).
        using (var same = TestUtil.FromDoubles(s, [rows, v], dtype))
            LogitRef.AssertFormsAgree((x, impl) => LogitLoss.PlackettLuce(x, same, y, implementation: impl), s, [rows, v], dtype, 1e-5, 1e-4, "t = s");
    }

    [Theory]
    [InlineData(LossImplementation.Fused)]
    [InlineData(LossImplementation.Composite)]
    public void ZeroCases(LossImplementation impl)
    {
        var rng = new Random(8);
        var s = TestUtil.RandomValues(rng, 5 * 11, -5, 5);
        using (var t = TestUtil.Random(rng, [5, 11], DType.Float32))
        using (var ignored = Tensor.FromArray(Enumerable.Repeat(-100L, 5).ToArray(), 5))
            foreach (var reduction in new[] { Reduction.BatchMean, Reduction.None })
            {
                var (value, grad) = LogitRef.Run(x => LogitLoss.PlackettLuce(x, t, ignored, reduction: reduction, implementation: impl), s, [5, 11], DType.Float32);
                Assert.All(value, x => Assert.Equal(0.0, x));
                Assert.All(grad, g => Assert.Equal(0.0, g));
            }
        using (var t1 = Tensor.Ones([3, 1], DType.Float64))
        using (var y1 = Tensor.Zeros([3], DType.Int64))
        {
            var (value, grad) = LogitRef.Run(x => LogitLoss.PlackettLuce(x, t1, y1, implementation: impl), [0.5, -2, 3], [3, 1], DType.Float64);
            Assert.Equal(0.0, value[0]);
            Assert.All(grad, g => Assert.Equal(0.0, g));
        }
    }

    [Fact]
    public void BadInputsNameTheLoss()
    {
        using var s = Tensor.Zeros([2, 3]);
        using var y = Tensor.FromArray(new long[] { 0, 1 }, 2);
        using var t = Tensor.Zeros([2, 3], DType.Float64);
        var e = Assert.Throws<ArgumentException>(() => LogitLoss.PlackettLuce(s, t, y));
        Assert.Contains("pld_loss", e.Message);
        Assert.Contains("float64", e.Message);
        Assert.Contains("pld_loss", Assert.Throws<ArgumentNullException>(() => LogitLoss.PlackettLuce(s, s, null!)).Message);
        using var y32 = Tensor.FromArray(new[] { 0, 1 }, 2);
        Assert.Contains("int64", Assert.Throws<ArgumentException>(() => LogitLoss.PlackettLuce(s, s, y32)).Message);
    }
}
