using Engine.Distillation;
using Engine.Tensors;

namespace Engine.Tests.Distillation.LogitLosses;

public class TopKSparseTests
{
    // Dense target from (indices, probabilities) with plain loops, then T²·KL(p ‖ softmax(s/T)).
    private static double[] Rows(double[] s, long[] idx, double[] probs, int rows, int v, int k, TopKRest rest, double temp)
    {
        var result = new double[rows];
        for (int i = 0; i < rows; i++)
        {
            var p = new double[v];
            double mass = 0;
            for (int a = 0; a < k; a++) mass += probs[i * k + a];
            double rho = rest == TopKRest.Uniform && v > k ? Math.Max(0, 1 - mass) / (v - k) : 0;
            for (int j = 0; j < v; j++) p[j] = rho;
            for (int a = 0; a < k; a++) p[idx[i * k + a]] = rest == TopKRest.Renormalize ? probs[i * k + a] / mass : probs[i * k + a];
            result[i] = temp * temp * LogitRef.Kl(p, LogitRef.LogSoftmax(s, i * v, v, temp));
        }
        return result;
    }

    private static (long[] Idx, double[] Probs) TopK(Random rng, int rows, int v, int k)
    {
        var idx = new long[rows * k];
        var probs = new double[rows * k];
        for (int i = 0; i < rows; i++)
        {
            var perm = Enumerable.Range(0, v).OrderBy(_ => rng.Next()).Take(k).ToArray();
            var raw = perm.Select(_ => rng.NextDouble() + 0.05).ToArray();
            double scale = 0.9 / raw.Sum(); // 90 % of the mass on the k classes
            for (int a = 0; a < k; a++) { idx[i * k + a] = perm[a]; probs[i * k + a] = raw[a] * scale; }
        }
        return (idx, probs);
    }

    [Theory]
    [InlineData(DType.Float64, 6, 37, 5, TopKRest.Renormalize, Reduction.TokenMean, 1.0)]
    [InlineData(DType.Float64, 6, 37, 5, TopKRest.Uniform, Reduction.Sum, 2.0)]
    [InlineData(DType.Float64, 4, 9, 1, TopKRest.Uniform, Reduction.BatchMean, 0.5)]
    [InlineData(DType.Float64, 4, 9, 9, TopKRest.Uniform, Reduction.TokenMean, 1.0)]
    [InlineData(DType.Float32, 8, 33, 4, TopKRest.Renormalize, Reduction.Mean, 3.0)]
    [InlineData(DType.Float32, 8, 33, 4, TopKRest.Uniform, Reduction.TokenMean, 1.0)]
    public void MatchesFloat64Reference(DType dtype, int rows, int v, int k, TopKRest rest, Reduction reduction, double temp)
    {
        var rng = new Random(TestUtil.StableSeed($"topk{dtype}{rows}{v}{k}{rest}{reduction}{temp}"));
        var s = TestUtil.RandomValues(rng, rows * v, -3, 3);
        var (idx, probs) = TopK(rng, rows, v, k);
        var y = LogitRef.Labels(rng, rows, v, withIgnored: true);
        var counted = y.Select(l => l >= 0).ToArray();
        double expected = LogitRef.Reduce(Rows(s, idx, probs, rows, v, k, rest, temp), counted, reduction, v);
        var expectedGrad = LogitRef.FiniteDifferences(x => LogitRef.Reduce(Rows(x, idx, probs, rows, v, k, rest, temp), counted, reduction, v), s);
        using var it = Tensor.FromArray(idx, rows, k);
        using var pt = TestUtil.FromDoubles(probs, [rows, k], dtype);
        using var lpt = TestUtil.FromDoubles(probs.Select(x => Math.Log(x)).ToArray(), [rows, k], dtype);
        using var yt = Tensor.FromArray(y, rows);
        foreach (var (input, values) in new[] { (TeacherInput.Probabilities, pt), (TeacherInput.LogProbabilities, lpt) })
            foreach (var impl in new[] { LossImplementation.Fused, LossImplementation.Composite })
            {
                var (value, grad) = LogitRef.Run(x => LogitLoss.TopKSparse(x, it, values, rest, temp, labels: yt, reduction: reduction, teacherInput: input, implementation: impl), s, [rows, v], dtype);
                double tol = dtype == DType.Float32 ? 2e-5 : 1e-10;
                Assert.Equal(expected, value[0], tol * Math.Max(1, Math.Abs(expected)));
                TestUtil.AssertClose(expectedGrad, grad, atol: dtype == DType.Float32 ? 1e-5 : 1e-7, rtol: 1e-4, what: $"{input} {impl} grad");
            }
    }

    [Fact]
    public void FullTopKEqualsDenseKdAndLogitsRenormalize()
    {
        var rng = new Random(5);
        const int rows = 5, v = 8;
        using var s = TestUtil.Random(rng, [rows, v], DType.Float64, -3, 3);
        using var t = TestUtil.Random(rng, [rows, v], DType.Float64, -3, 3);
        using var y = Tensor.FromArray(new long[] { 0, 1, 2, 3, 4 }, rows);
        using var kd = Losses.KnowledgeDistillation(s, t, y, 2.0, alpha: 1.0);
        using var idx = Tensor.Arange(v).Reshape(1, v).Expand(rows, v).Contiguous();
        using var p = t.Softmax(-1, 2.0);
        using var viaProbs = LogitLoss.TopKSparse(s, idx, p, temperature: 2.0, reduction: Reduction.BatchMean);
        using var viaLogits = LogitLoss.TopKSparse(s, idx, t, temperature: 2.0, reduction: Reduction.BatchMean, teacherInput: TeacherInput.Logits);
        Assert.Equal(kd.ToDouble(), viaProbs.ToDouble(), 1e-12);
        Assert.Equal(kd.ToDouble(), viaLogits.ToDouble(), 1e-12);
    }

    [Fact]
    public void GradCheckCompositeAndSecondOrderThroughFused()
    {
        var rng = new Random(19);
        const int rows = 3, v = 7, k = 3;
        var (idx, probs) = TopK(rng, rows, v, k);
        using var it = Tensor.FromArray(idx, rows, k);
        using var s = TestUtil.Random(rng, [rows, v], DType.Float64, -2, 2).RequiresGrad_();
        using var pv = TestUtil.FromDoubles(probs, [rows, k], DType.Float64).RequiresGrad_();
        using var temps = Tensor.FromArray(new[] { 1.5, 3.0, 0.7 }, rows).RequiresGrad_();
        foreach (var rest in new[] { TopKRest.Renormalize, TopKRest.Uniform })
        {
            GradCheck.Check(x => LogitLoss.TopKSparse(x[0], it, x[1], rest, temperatures: x[2], implementation: LossImplementation.Composite), [s, pv, temps]);
            GradCheck.CheckSecondOrder(x => LogitLoss.TopKSparse(x[0], it, x[1], rest, 2.0, implementation: LossImplementation.Composite), [s, pv]);
        }
        using var pFixed = TestUtil.FromDoubles(probs, [rows, k], DType.Float64);
        using var sOnly = TestUtil.Random(rng, [rows, v], DType.Float64, -2, 2).RequiresGrad_();
        GradCheck.Check(x => LogitLoss.TopKSparse(x[0], it, pFixed, TopKRest.Uniform, 2.0, implementation: LossImplementation.Fused), [sOnly]);
        GradCheck.CheckSecondOrder(x => LogitLoss.TopKSparse(x[0], it, pFixed, TopKRest.Uniform, 2.0, reduction: Reduction.None, implementation: LossImplementation.Fused), [sOnly]);
    }

    [Theory]
    [InlineData(DType.Float32)]
    [InlineData(DType.Float64)]
    public void EdgeCases(DType dtype)
    {
        var rng = new Random(23);
        const int rows = 4, v = 11, k = 3;
        var (idx, probs) = TopK(rng, rows, v, k);
        using var it = Tensor.FromArray(idx, rows, k);
        using var pt = TestUtil.FromDoubles(probs, [rows, k], dtype);
        var big = TestUtil.RandomValues(rng, rows * v, -1, 1).Select(x => x * 1e4).ToArray();
        foreach (var rest in new[] { TopKRest.Renormalize, TopKRest.Uniform })
            LogitRef.AssertFormsAgree((x, impl) => LogitLoss.TopKSparse(x, it, pt, rest, implementation: impl), big, [rows, v], dtype, 1e-1, 1e-4, $"±1e4 {rest}");
        // A student class masked to −∞ off the teacher's top k (renormalize: the target has no mass there).
        var s = TestUtil.RandomValues(rng, rows * v, -3, 3);
        for (int i = 0; i < rows; i++)
        {
            int off = Enumerable.Range(0, v).First(j => !idx.Skip(i * k).Take(k).Contains(j));
            s[i * v + off] = double.NegativeInfinity;
        }
        foreach (double temp in new[] { 0.05, 1.0, 20.0 })
            LogitRef.AssertFormsAgree((x, impl) => LogitLoss.TopKSparse(x, it, pt, temperature: temp, implementation: impl), s, [rows, v], dtype, 1e-4, 1e-4, $"-inf T={temp}");
    }

    [Theory]
    [InlineData(LossImplementation.Fused)]
    [InlineData(LossImplementation.Composite)]
    public void ZeroCases(LossImplementation impl)
    {
        var rng = new Random(8);
        const int rows = 5, v = 6;
        var s = TestUtil.RandomValues(rng, rows * v, -5, 5);
        // Teacher equal to the student (all classes stored): 0 and gradient 0.
        var probs = Enumerable.Range(0, rows).SelectMany(i => LogitRef.Softmax(s, i * v, v)).ToArray();
        using var idx = Tensor.Arange(v).Reshape(1, v).Expand(rows, v).Contiguous();
        using (var pt = TestUtil.FromDoubles(probs, [rows, v], DType.Float64))
            foreach (var rest in new[] { TopKRest.Renormalize, TopKRest.Uniform })
            {
                var (value, grad) = LogitRef.Run(x => LogitLoss.TopKSparse(x, idx, pt, rest, implementation: impl), s, [rows, v], DType.Float64);
                Assert.Equal(0, value[0], 1e-12);
                Assert.All(grad, g => Assert.Equal(0, g, 1e-12));
            }
        using (var pt = TestUtil.FromDoubles(probs, [rows, v], DType.Float32))
        using (var ignored = Tensor.FromArray(Enumerable.Repeat(-100L, rows).ToArray(), rows))
        {
            var (value, grad) = LogitRef.Run(x => LogitLoss.TopKSparse(x, idx, pt, TopKRest.Uniform, labels: ignored, implementation: impl), s, [rows, v], DType.Float32);
            Assert.Equal(0.0, value[0]);
            Assert.All(grad, g => Assert.Equal(0.0, g));
        }
        // V = 1 (k = 1): the only class holds all the mass.
        using (var i1 = Tensor.Zeros([3, 1], DType.Int64))
        using (var p1 = Tensor.Ones([3, 1], DType.Float64))
        {
            var (value, grad) = LogitRef.Run(x => LogitLoss.TopKSparse(x, i1, p1, implementation: impl), [0.5, -2, 3], [3, 1], DType.Float64);
            Assert.Equal(0.0, value[0]);
            Assert.All(grad, g => Assert.Equal(0.0, g));
        }
    }

    [Fact]
    public void BadInputsNameTheLoss()
    {
        using var s = Tensor.Zeros([2, 5]);
        using var idx = Tensor.FromArray(new long[] { 0, 1, 2, 2 }, 2, 2);
        using var p = Tensor.Full([2, 2], 0.25);
        var dup = Assert.Throws<ArgumentException>(() => LogitLoss.TopKSparse(s, idx, p));
        Assert.Contains("topk_kd_loss", dup.Message);
        Assert.Contains("twice", dup.Message);
        using var far = Tensor.FromArray(new long[] { 0, 5, 1, 2 }, 2, 2);
        Assert.Contains("outside [0, 5)", Assert.Throws<ArgumentException>(() => LogitLoss.TopKSparse(s, far, p)).Message);
        using var ok = Tensor.FromArray(new long[] { 0, 1, 1, 2 }, 2, 2);
        using var p3 = Tensor.Full([2, 3], 0.25);
        var shape = Assert.Throws<ArgumentException>(() => LogitLoss.TopKSparse(s, ok, p3));
        Assert.Contains("[2, 3]", shape.Message);
        Assert.Contains("topk_kd_loss", Assert.Throws<ArgumentException>(() => LogitLoss.TopKSparse(s, ok, p, TopKRest.Uniform, teacherInput: TeacherInput.Logits)).Message);
        using var neg = Tensor.Full([2, 2], -0.25);
        Assert.Contains("negative", Assert.Throws<ArgumentException>(() => LogitLoss.TopKSparse(s, ok, neg)).Message);
    }
}
