using Engine.Distillation;
using Engine.Tensors;

namespace Engine.Tests.Distillation.LogitLosses;

/// <summary>Layouts and shapes every fused logit loss must handle the same way as its composite form.</summary>
public class LogitLossShapeTests
{
    /// <summary>A loss as a function of (student, teacher, labels, implementation, reduction).</summary>
    public delegate Tensor Loss(Tensor s, Tensor t, Tensor y, LossImplementation impl, Reduction reduction);

    private static readonly Dictionary<string, Loss> Losses = new()
    {
        ["dkd"] = (s, t, y, impl, red) => LogitLoss.Dkd(s, t, y, temperature: 2, reduction: red, implementation: impl),
        ["taid"] = (s, t, y, impl, red) => LogitLoss.Taid(s, t, 0.6, y, reduction: red, implementation: impl),
        ["multi"] = (s, t, y, impl, red) => LogitLoss.MultiTeacher(s, [t, s.Detach()], 2, teacherWeights: [3, 1], labels: y, reduction: red, implementation: impl),
        ["pld"] = (s, t, y, impl, red) => LogitLoss.PlackettLuce(s, t, y, 2, reduction: red, implementation: impl),
        ["topk"] = (s, t, y, impl, red) =>
        {
            // Teacher's top 3 classes (as probabilities) from t, spread-uniform rest.
            long v = t.Size(-1), k = Math.Min(3, v);
            long n = t.NumEl / v;
            using var t64 = t.Detach().To(DType.Float64); // Detach: To(float64) of a float64 tensor is the tensor itself
            var rows = t64.ToArray<double>();
            var idx = new long[n * k];
            var val = new double[n * k];
            for (long i = 0; i < n; i++)
            {
                var p = Enumerable.Range(0, (int)v).Select(j => rows[i * v + j]).ToArray();
                double max = p.Max(), z = p.Sum(x => Math.Exp(x - max));
                var top = Enumerable.Range(0, (int)v).OrderByDescending(j => p[j]).ThenBy(j => j).Take((int)k).ToArray();
                for (int a = 0; a < k; a++) { idx[i * k + a] = top[a]; val[i * k + a] = Math.Exp(p[top[a]] - max) / z; }
            }
            var shape = t.ShapeArray();
            shape[^1] = k;
            using var it = Tensor.FromArray(idx, shape);
            using var vt = TestUtil.FromDoubles(val, shape, t.DType);
            return LogitLoss.TopKSparse(s, it, vt, TopKRest.Uniform, labels: y, reduction: red, implementation: impl);
        },
    };

    public static IEnumerable<object[]> Names() => Losses.Keys.Select(k => new object[] { k });

    [Theory]
    [MemberData(nameof(Names))]
    public void NonContiguousInputsMatchContiguous(string name)
    {
        var rng = new Random(TestUtil.StableSeed("nc" + name));
        using var s = TestUtil.Random(rng, [6, 13], DType.Float32, -3, 3);
        using var t = TestUtil.Random(rng, [6, 13], DType.Float32, -3, 3);
        using var y = Tensor.FromArray(new long[] { 0, 12, -100, 5, 5, 7 }, 6);
        using var sNc = TestUtil.NonContiguous(s);
        using var tNc = TestUtil.NonContiguous(t);
        foreach (var impl in new[] { LossImplementation.Fused, LossImplementation.Composite })
        {
            using var a = Losses[name](s, t, y, impl, Reduction.Sum);
            using var b = Losses[name](sNc, tNc, y, impl, Reduction.Sum);
            Assert.Equal(a.ToDouble(), b.ToDouble(), 1e-6);
        }
    }

    [Theory]
    [MemberData(nameof(Names))]
    public void LargeInputTakesTheParallelPathAndAgrees(string name)
    {
        // [130, 1031]: past the parallel threshold; V not a multiple of any vector width. PLD's composite
        // reference is O(V²) per row, so PLD uses [130, 131] (still past the threshold).
        var rng = new Random(TestUtil.StableSeed("big" + name));
        int rows = 130, v = name == "pld" ? 131 : 1031;
        var s = TestUtil.RandomValues(rng, rows * v, -4, 4);
        using var t = TestUtil.Random(rng, [rows, v], DType.Float32, -4, 4);
        using var y = Tensor.FromArray(LogitRef.Labels(rng, rows, v, withIgnored: true), rows);
        LogitRef.AssertFormsAgree((x, impl) => Losses[name](x, t, y, impl, Reduction.TokenMean), s, [rows, v], DType.Float32, 1e-5, 1e-4, name);
        // Deterministic: the same value twice (the row order of the reduction does not depend on threads).
        using var st = TestUtil.FromDoubles(s, [rows, v], DType.Float32);
        using var a = Losses[name](st, t, y, LossImplementation.Fused, Reduction.Sum);
        using var b = Losses[name](st, t, y, LossImplementation.Fused, Reduction.Sum);
        Assert.Equal(a.ToDouble(), b.ToDouble());
    }

    [Theory]
    [MemberData(nameof(Names))]
    public void EmptyBatchAndSingleRow(string name)
    {
        foreach (var impl in new[] { LossImplementation.Fused, LossImplementation.Composite })
        {
            using var s0 = Tensor.Zeros([0, 5]).RequiresGrad_();
            using var t0 = Tensor.Zeros([0, 5]);
            using var y0 = Tensor.Zeros([0], DType.Int64);
            using (var l = Losses[name](s0, t0, y0, impl, Reduction.TokenMean))
            {
                Assert.Equal(0.0, l.ToDouble());
                l.Backward();
                Assert.Equal(0, s0.Grad!.NumEl);
            }
            using (var none = Losses[name](s0, t0, y0, impl, Reduction.None))
                Assert.Equal([0L], none.ShapeArray());
            // Rank-1 logits [V] with a 0-d label: one row, a 0-d result for every reduction.
            var rng = new Random(3);
            using var s1 = TestUtil.Random(rng, [7], DType.Float64, -2, 2);
            using var t1 = TestUtil.Random(rng, [7], DType.Float64, -2, 2);
            using var y1 = Tensor.FromArray(new long[] { 4 }, []);
            using var s2 = s1.Reshape(1, 7);
            using var t2 = t1.Reshape(1, 7);
            using var y2 = y1.Reshape(1);
            using var one = Losses[name](s1, t1, y1, impl, Reduction.None);
            using var two = Losses[name](s2, t2, y2, impl, Reduction.Sum);
            Assert.Equal(0, one.Rank);
            Assert.Equal(two.ToDouble(), one.ToDouble(), 1e-12);
        }
    }

    [Theory]
    [MemberData(nameof(Names))]
    public void CreateGraphThroughFusedMatchesCompositeForANonLeafStudent(string name)
    {
        var rng = new Random(TestUtil.StableSeed("hvp" + name));
        using var x = TestUtil.Random(rng, [4, 6], DType.Float64, -2, 2).RequiresGrad_();
        using var t = TestUtil.Random(rng, [4, 6], DType.Float64, -2, 2);
        using var y = Tensor.FromArray(new long[] { 1, -100, 5, 0 }, 4);
        using var dir = TestUtil.Random(rng, [4, 6], DType.Float64, -1, 1);
        (double[] G, double[] H) Run(LossImplementation impl)
        {
            using var s = x.Mul(1.5).Tanh().Mul(3.0); // a non-leaf student: the gradient flows on through tanh
            using var loss = Losses[name](s, t, y, impl, Reduction.BatchMean);
            var g = Autograd.Grad(loss, x, createGraph: true);
            using var dot = g.Mul(dir).Sum();
            var h = Autograd.Grad(dot, x);
            return (g.ToArray<double>(), h.ToArray<double>());
        }
        var fused = Run(LossImplementation.Fused);
        var composite = Run(LossImplementation.Composite);
        TestUtil.AssertClose(composite.G, fused.G, 1e-12, 1e-10, "gradient");
        TestUtil.AssertClose(composite.H, fused.H, 1e-12, 1e-10, "Hessian-vector product");
    }
}
