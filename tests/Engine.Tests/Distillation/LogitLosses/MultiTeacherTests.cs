using Engine.Distillation;
using Engine.Tensors;

namespace Engine.Tests.Distillation.LogitLosses;

public class MultiTeacherTests
{
    private static double[] Rows(double[] s, double[][] ts, int rows, int v, double temp, double[] w, double[]? tks, SoftTargetLoss loss, bool scale)
    {
        var result = new double[rows];
        double wSum = w.Sum();
        for (int i = 0; i < rows; i++)
        {
            var pbar = new double[v];
            for (int k = 0; k < ts.Length; k++)
            {
                var p = LogitRef.Softmax(ts[k], i * v, v, tks?[k] ?? temp);
                for (int j = 0; j < v; j++) pbar[j] += w[k] / wSum * p[j];
            }
            var logQ = LogitRef.LogSoftmax(s, i * v, v, temp);
            double value = loss == SoftTargetLoss.KullbackLeibler ? LogitRef.Kl(pbar, logQ) : -pbar.Select((p, j) => p > 0 ? p * logQ[j] : 0).Sum();
            result[i] = (scale ? temp * temp : 1) * value;
        }
        return result;
    }

    [Theory]
    [InlineData(DType.Float64, SoftTargetLoss.KullbackLeibler, Reduction.BatchMean, false)]
    [InlineData(DType.Float64, SoftTargetLoss.CrossEntropy, Reduction.Sum, true)]
    [InlineData(DType.Float32, SoftTargetLoss.KullbackLeibler, Reduction.TokenMean, true)]
    [InlineData(DType.Float32, SoftTargetLoss.CrossEntropy, Reduction.Mean, false)]
    public void MatchesFloat64Reference(DType dtype, SoftTargetLoss loss, Reduction reduction, bool perTeacherT)
    {
        var rng = new Random(TestUtil.StableSeed($"mt{dtype}{loss}{reduction}{perTeacherT}"));
        const int rows = 7, v = 19;
        const double temp = 2.0;
        var s = TestUtil.RandomValues(rng, rows * v, -3, 3);
        var ts = Enumerable.Range(0, 3).Select(_ => TestUtil.RandomValues(rng, rows * v, -4, 4)).ToArray();
        double[] w = [1, 2, 1];
        double[]? tks = perTeacherT ? [1.0, 3.0, 0.5] : null;
        var y = LogitRef.Labels(rng, rows, v, withIgnored: true);
        var counted = y.Select(l => l >= 0).ToArray();
        double expected = LogitRef.Reduce(Rows(s, ts, rows, v, temp, w, tks, loss, true), counted, reduction, v);
        var expectedGrad = LogitRef.FiniteDifferences(x => LogitRef.Reduce(Rows(x, ts, rows, v, temp, w, tks, loss, true), counted, reduction, v), s);
        var teachers = ts.Select(t => TestUtil.FromDoubles(t, [rows, v], dtype)).ToArray();
        using var yt = Tensor.FromArray(y, rows);
        foreach (var impl in new[] { LossImplementation.Fused, LossImplementation.Composite })
        {
            var (value, grad) = LogitRef.Run(x => LogitLoss.MultiTeacher(x, teachers, temp, w, tks, loss, labels: yt, reduction: reduction, implementation: impl), s, [rows, v], dtype);
            double tol = dtype == DType.Float32 ? 2e-5 : 1e-10;
            Assert.Equal(expected, value[0], tol * Math.Max(1, Math.Abs(expected)));
            TestUtil.AssertClose(expectedGrad, grad, atol: dtype == DType.Float32 ? 1e-5 : 1e-7, rtol: 1e-4, what: $"{impl} grad");
        }
        foreach (var t in teachers) t.Dispose();
    }

    [Fact]
    public void OneTeacherIsHintonKdAndMeanOfProbabilitiesIsMealV2()
    {
        var rng = new Random(3);
        using var s = TestUtil.Random(rng, [6, 10], DType.Float64, -3, 3);
        using var t = TestUtil.Random(rng, [6, 10], DType.Float64, -3, 3);
        using var y = Tensor.FromArray(new long[] { 0, 1, 2, 3, 4, 5 }, 6);
        using var kd = Losses.KnowledgeDistillation(s, t, y, 4.0, alpha: 1.0);
        using var mt = LogitLoss.MultiTeacher(s, [t], 4.0);
        Assert.Equal(kd.ToDouble(), mt.ToDouble(), 1e-12);
        // Two teachers given as probabilities: the target is their mean.
        using var t2 = TestUtil.Random(rng, [6, 10], DType.Float64, -3, 3);
        using var p1 = t.Softmax(-1);
        using var p2 = t2.Softmax(-1);
        using var mean = p1.Add(p2).Mul(0.5);
        using var viaMean = LogitLoss.MultiTeacher(s, [mean], teacherInput: TeacherInput.Probabilities, loss: SoftTargetLoss.CrossEntropy);
        using var viaTwo = LogitLoss.MultiTeacher(s, [t, t2], loss: SoftTargetLoss.CrossEntropy);
        Assert.Equal(viaMean.ToDouble(), viaTwo.ToDouble(), 1e-12);
        using var logp = t.LogSoftmax(-1, 4.0);
        using var viaLogp = LogitLoss.MultiTeacher(s, [logp], 4.0, teacherInput: TeacherInput.LogProbabilities);
        Assert.Equal(kd.ToDouble(), viaLogp.ToDouble(), 1e-12);
    }

    [Fact]
    public void GradCheckCompositeAndSecondOrderThroughFused()
    {
        var rng = new Random(17);
        using var s = TestUtil.Random(rng, [3, 5], DType.Float64, -2, 2).RequiresGrad_();
        using var t1 = TestUtil.Random(rng, [3, 5], DType.Float64, -2, 2).RequiresGrad_();
        using var t2 = TestUtil.Random(rng, [3, 5], DType.Float64, -2, 2).RequiresGrad_();
        using var temps = Tensor.FromArray(new[] { 1.5, 3.0, 0.7 }, 3).RequiresGrad_();
        GradCheck.Check(x => LogitLoss.MultiTeacher(x[0], [x[1], x[2]], teacherWeights: [0.3, 0.7], temperatures: x[3], implementation: LossImplementation.Composite), [s, t1, t2, temps]);
        GradCheck.CheckSecondOrder(x => LogitLoss.MultiTeacher(x[0], [x[1], x[2]], 2.0, implementation: LossImplementation.Composite), [s, t1, t2]);
        using var sOnly = TestUtil.Random(rng, [4, 6], DType.Float64, -2, 2).RequiresGrad_();
        using var a = TestUtil.Random(rng, [4, 6], DType.Float64, -2, 2);
        using var b = TestUtil.Random(rng, [4, 6], DType.Float64, -2, 2);
        GradCheck.Check(x => LogitLoss.MultiTeacher(x[0], [a, b], 2.0, teacherTemperatures: [1, 3], implementation: LossImplementation.Fused), [sOnly]);
        GradCheck.CheckSecondOrder(x => LogitLoss.MultiTeacher(x[0], [a, b], 2.0, reduction: Reduction.None, implementation: LossImplementation.Fused), [sOnly]);
    }

    [Theory]
    [InlineData(DType.Float32)]
    [InlineData(DType.Float64)]
    public void EdgeCases(DType dtype)
    {
        var rng = new Random(31);
        const int rows = 4, v = 9;
        var big = TestUtil.RandomValues(rng, rows * v, -1, 1).Select(x => x * 1e4).ToArray();
        using (var a = TestUtil.Random(rng, [rows, v], dtype, -1e4, 1e4))
        using (var b = TestUtil.Random(rng, [rows, v], dtype, -1e4, 1e4))
            LogitRef.AssertFormsAgree((x, impl) => LogitLoss.MultiTeacher(x, [a, b], implementation: impl), big, [rows, v], dtype, 1e-1, 1e-4, "±1e4");
        var s = TestUtil.RandomValues(rng, rows * v, -3, 3);
        var t = TestUtil.RandomValues(rng, rows * v, -3, 3);
        s[2] = t[2] = double.NegativeInfinity; // a class masked in the student and the teacher
        using (var a = TestUtil.FromDoubles(t, [rows, v], dtype))
        using (var b = TestUtil.FromDoubles(t.Select(x => x * 0.5).ToArray(), [rows, v], dtype))
            foreach (double temp in new[] { 0.05, 1.0, 20.0 })
                LogitRef.AssertFormsAgree((x, impl) => LogitLoss.MultiTeacher(x, [a, b], temp, implementation: impl), s, [rows, v], dtype, 1e-4, 1e-4, $"T={temp}");
    }

    [Theory]
    [InlineData(LossImplementation.Fused)]
    [InlineData(LossImplementation.Composite)]
    public void ZeroCases(LossImplementation impl)
    {
        var rng = new Random(8);
        var s = TestUtil.RandomValues(rng, 5 * 11, -5, 5);
        using (var t = TestUtil.FromDoubles(s, [5, 11], DType.Float64))
        {
            var (value, grad) = LogitRef.Run(x => LogitLoss.MultiTeacher(x, [t, t], 3.0, teacherWeights: [2, 5], implementation: impl), s, [5, 11], DType.Float64);
            Assert.Equal(0, value[0], 1e-12);
            Assert.All(grad, g => Assert.Equal(0, g, 1e-12));
        }
        using (var t = TestUtil.Random(rng, [5, 11], DType.Float32))
        using (var ignored = Tensor.FromArray(Enumerable.Repeat(-100L, 5).ToArray(), 5))
        {
            var (value, grad) = LogitRef.Run(x => LogitLoss.MultiTeacher(x, [t], labels: ignored, implementation: impl), s, [5, 11], DType.Float32);
            Assert.Equal(0.0, value[0]);
            Assert.All(grad, g => Assert.Equal(0.0, g));
        }
        using (var t1 = Tensor.Ones([3, 1], DType.Float64))
        {
            var (value, grad) = LogitRef.Run(x => LogitLoss.MultiTeacher(x, [t1, t1], implementation: impl), [0.5, -2, 3], [3, 1], DType.Float64);
            Assert.Equal(0.0, value[0]);
            Assert.All(grad, g => Assert.Equal(0.0, g));
        }
    }

    [Fact]
    public void BadInputsNameTheLoss()
    {
        using var s = Tensor.Zeros([2, 3]);
        using var t = Tensor.Zeros([2, 4]);
        var e = Assert.Throws<ArgumentException>(() => LogitLoss.MultiTeacher(s, [s, t]));
        Assert.Contains("multi_teacher_loss", e.Message);
        Assert.Contains("teacher 1", e.Message);
        Assert.Contains("[2, 4]", e.Message);
        Assert.Contains("multi_teacher_loss", Assert.Throws<ArgumentException>(() => LogitLoss.MultiTeacher(s, [])).Message);
        Assert.Contains("multi_teacher_loss", Assert.Throws<ArgumentException>(() => LogitLoss.MultiTeacher(s, [s, s], teacherWeights: [1])).Message);
        Assert.Contains("multi_teacher_loss", Assert.Throws<ArgumentException>(() => LogitLoss.MultiTeacher(s, [s], teacherWeights: [-1])).Message);
        Assert.Contains("multi_teacher_loss", Assert.Throws<ArgumentOutOfRangeException>(() => LogitLoss.MultiTeacher(s, [s], teacherTemperatures: [0])).Message);
    }
}
