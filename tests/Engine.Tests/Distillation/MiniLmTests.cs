using Engine.Distillation.LanguageModel;
using Engine.Tensors;
using Engine.Tensors.Optim;

namespace Engine.Tests.Distillation;

/// <summary>
/// MiniLM (<see cref="MiniLm"/>): L_AT and L_VR against float64 references written with plain loops (causal and not,
/// student and teacher of different head dims, odd sizes, N = 1, empty batch, non-contiguous inputs), gradcheck, the
/// documented gradients, zero when student = teacher, causal masking without NaN, shape errors, the attention the
/// models expose, and short training runs (the library class and the LM testbed) whose loss decreases.
/// </summary>
public class MiniLmTests
{
    // ---------------------------------------------------------------- float64 references (plain loops)

    /// <summary>Row-softmax of scores [B·H·N, N] over the visible keys (j ≤ i when causal), 0 on hidden keys.</summary>
    private static double[] SoftmaxRef(double[] scores, int bh, int n, bool causal)
    {
        var p = new double[scores.Length];
        for (int r = 0; r < bh; r++)
            for (int i = 0; i < n; i++)
            {
                int last = causal ? i : n - 1;
                double max = double.NegativeInfinity, z = 0;
                for (int j = 0; j <= last; j++) max = Math.Max(max, scores[(r * n + i) * n + j]);
                for (int j = 0; j <= last; j++) z += Math.Exp(scores[(r * n + i) * n + j] - max);
                for (int j = 0; j <= last; j++) p[(r * n + i) * n + j] = Math.Exp(scores[(r * n + i) * n + j] - max) / z;
            }
        return p;
    }

    /// <summary>1/(B·H·N)·Σ KL(pt ‖ ps) over visible keys, 0·log 0 = 0.</summary>
    private static double AttentionRef(double[] ps, double[] pt, int bh, int n, bool causal)
    {
        double s = 0;
        for (int r = 0; r < bh; r++)
            for (int i = 0; i < n; i++)
                for (int j = 0; j <= (causal ? i : n - 1); j++)
                {
                    double t = pt[(r * n + i) * n + j];
                    if (t > 0) s += t * (Math.Log(t) - Math.Log(ps[(r * n + i) * n + j]));
                }
        return s / (bh * n);
    }

    /// <summary>softmax(V·Vᵀ/√d) per (b, h) for V [B·H, N, d] → [B·H, N, N].</summary>
    private static double[] RelationRef(double[] v, int bh, int n, int d, bool causal)
    {
        var scores = new double[bh * n * n];
        for (int r = 0; r < bh; r++)
            for (int i = 0; i < n; i++)
                for (int j = 0; j < n; j++)
                {
                    double dot = 0;
                    for (int k = 0; k < d; k++) dot += v[(r * n + i) * d + k] * v[(r * n + j) * d + k];
                    scores[(r * n + i) * n + j] = dot / Math.Sqrt(d);
                }
        return SoftmaxRef(scores, bh, n, causal);
    }

    private static double ValueRelationRef(double[] vs, double[] vt, int bh, int n, int ds, int dt, bool causal)
        => AttentionRef(RelationRef(vs, bh, n, ds, causal), RelationRef(vt, bh, n, dt, causal), bh, n, causal);

    private static double[] RandomProbabilities(Random rng, int bh, int n, bool causal, double spread = 2)
        => SoftmaxRef(TestUtil.RandomValues(rng, (long)bh * n * n, -spread, spread), bh, n, causal);

    private static Tensor Leaf(double[] values, long[] shape, DType dtype = DType.Float64) => TestUtil.FromDoubles(values, shape, dtype).RequiresGrad_();

    private static double[] Doubles(Tensor t) => t.DType == DType.Float64 ? t.Contiguous().ToArray<double>() : t.Contiguous().ToArray<float>().Select(x => (double)x).ToArray();

    /// <summary>The causal keep mask [N, N] as a bool tensor (j ≤ i).</summary>
    private static Tensor Keep(int n)
    {
        using var i = Tensor.Arange(n).Reshape(n, 1);
        using var j = Tensor.Arange(n).Reshape(1, n);
        return j.Le(i);
    }

    // ---------------------------------------------------------------- value against the references

    public static TheoryData<int, int, int, int, int, bool> Cases() => new()
    {
        { 2, 2, 5, 3, 4, true },
        { 1, 1, 1, 1, 2, true }, // N = 1: one visible key, KL 0 for the attention
        { 1, 3, 7, 4, 4, true },
        { 3, 2, 4, 2, 6, false },
        { 2, 4, 6, 8, 3, false },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void LossMatchesFloat64Reference(int b, int h, int n, int ds, int dt, bool causal)
    {
        var rng = new Random(TestUtil.StableSeed($"minilm-ref-{b}-{h}-{n}-{ds}-{dt}-{causal}"));
        int bh = b * h;
        var ps = RandomProbabilities(rng, bh, n, causal);
        var pt = RandomProbabilities(rng, bh, n, causal, spread: 4);
        if (n > 2) pt[(0 * n + n - 1) * n + 1] = 0; // a visible key where the teacher has no mass: 0·log 0 = 0
        var vs = TestUtil.RandomValues(rng, (long)bh * n * ds, -2, 2);
        var vt = TestUtil.RandomValues(rng, (long)bh * n * dt, -2, 2);
        double at = AttentionRef(ps, pt, bh, n, causal), vr = ValueRelationRef(vs, vt, bh, n, ds, dt, causal);
        long[] a = [b, h, n, n], ss = [b, h, n, ds], st = [b, h, n, dt];
        foreach (var dtype in new[] { DType.Float64, DType.Float32 })
            foreach (bool strided in new[] { false, true })
            {
                double tol = dtype == DType.Float64 ? 1e-12 : 2e-5;
                Tensor Make(double[] x, long[] shape)
                {
                    var t = TestUtil.FromDoubles(x, shape, dtype);
                    if (!strided) return t;
                    using (t) return TestUtil.NonContiguous(t);
                }
                using var aS = Make(ps, a);
                using var aT = Make(pt, a);
                using var vS = Make(vs, ss);
                using var vT = Make(vt, st);
                using var lat = MiniLm.AttentionLoss(aS, aT, causal);
                using var lvr = MiniLm.ValueRelationLoss(vS, vT, causal);
                using var l = MiniLm.Loss(new AttentionRelations(aS, vS), new AttentionRelations(aT, vT), causal);
                string what = $"{dtype.Name()} strided={strided}";
                Assert.Equal(dtype, l.DType);
                Assert.Equal(0, l.Rank);
                TestUtil.AssertClose([at], [lat.ToDouble()], atol: tol, rtol: tol, what: "L_AT " + what);
                TestUtil.AssertClose([vr], [lvr.ToDouble()], atol: tol, rtol: tol, what: "L_VR " + what);
                TestUtil.AssertClose([at + vr], [l.ToDouble()], atol: tol, rtol: tol, what: "L " + what);
            }
        if (n == 1) Assert.Equal(0.0, at, 15);
    }

    [Fact]
    public void EmptyBatchGivesZero()
    {
        using var a = Tensor.Zeros([0, 2, 3, 3], DType.Float64);
        using var vs = Tensor.Zeros([0, 2, 3, 4], DType.Float64);
        using var vt = Tensor.Zeros([0, 2, 3, 5], DType.Float64);
        using var l = MiniLm.Loss(new AttentionRelations(a, vs), new AttentionRelations(a, vt));
        Assert.Equal(0.0, l.ToDouble());
    }

    // ---------------------------------------------------------------- gradients

    [Fact]
    public void GradCheckWrtStudentAndTeacher()
    {
        var rng = new Random(TestUtil.StableSeed("minilm-gradcheck"));
        const int b = 2, h = 2, n = 4, ds = 3, dt = 5;
        foreach (bool causal in new[] { true, false })
        {
            // Positive probabilities (rows need not sum to 1 for the KL formula; keeps finite differences away from 0).
            var inputs = new[]
            {
                Leaf(TestUtil.RandomValues(rng, b * h * n * n, 0.05, 1), [b, h, n, n]),
                Leaf(TestUtil.RandomValues(rng, b * h * n * ds), [b, h, n, ds]),
                Leaf(TestUtil.RandomValues(rng, b * h * n * n, 0.05, 1), [b, h, n, n]),
                Leaf(TestUtil.RandomValues(rng, b * h * n * dt), [b, h, n, dt]),
            };
            GradCheck.Check(x => MiniLm.Loss(new AttentionRelations(x[0], x[1]), new AttentionRelations(x[2], x[3]), causal), inputs);
            foreach (var x in inputs) x.Dispose();
        }
    }

    [Fact]
    public void GradientsAreTheDocumentedFormulas()
    {
        var rng = new Random(TestUtil.StableSeed("minilm-gradient-formula"));
        const int b = 2, h = 3, n = 5, ds = 4, dt = 2, bh = b * h;
        const double m = bh * n;
        var scores = TestUtil.RandomValues(rng, bh * n * n, -3, 3);
        var pt = RandomProbabilities(rng, bh, n, causal: true);
        var vs = TestUtil.RandomValues(rng, bh * n * ds, -1.5, 1.5);
        var vt = TestUtil.RandomValues(rng, bh * n * dt, -1.5, 1.5);

        // ∂L_AT/∂scores = (A_s − A_t)/M on visible keys, 0 on hidden ones (A_s = causal softmax(scores)).
        using var s = Leaf(scores, [b, h, n, n]);
        using var keep = Keep(n);
        using var masked = Tensor.Where(keep, s, double.NegativeInfinity);
        using var aS = masked.Softmax(-1);
        using var aT = TestUtil.FromDoubles(pt, [b, h, n, n], DType.Float64);
        using (var lat = MiniLm.AttentionLoss(aS, aT)) lat.Backward();
        var ps = SoftmaxRef(scores, bh, n, causal: true);
        TestUtil.AssertClose(ps.Select((p, i) => (p - pt[i]) / m).ToArray(), s.Grad!, atol: 1e-13, rtol: 1e-10, what: "dL_AT/dscores");

        // ∂L_VR/∂V_s = (G + Gᵀ)·V_s/√d_s, G = (VR_s − VR_t)/M.
        using var v = Leaf(vs, [b, h, n, ds]);
        using var vT = TestUtil.FromDoubles(vt, [b, h, n, dt], DType.Float64);
        using (var lvr = MiniLm.ValueRelationLoss(v, vT)) lvr.Backward();
        var rs = RelationRef(vs, bh, n, ds, causal: true);
        var rt = RelationRef(vt, bh, n, dt, causal: true);
        var expected = new double[vs.Length];
        for (int r = 0; r < bh; r++)
            for (int i = 0; i < n; i++)
                for (int k = 0; k < ds; k++)
                {
                    double acc = 0;
                    for (int j = 0; j < n; j++)
                    {
                        double gij = (rs[(r * n + i) * n + j] - rt[(r * n + i) * n + j]) / m, gji = (rs[(r * n + j) * n + i] - rt[(r * n + j) * n + i]) / m;
                        acc += (gij + gji) * vs[(r * n + j) * ds + k];
                    }
                    expected[(r * n + i) * ds + k] = acc / Math.Sqrt(ds);
                }
        TestUtil.AssertClose(expected, v.Grad!, atol: 1e-13, rtol: 1e-10, what: "dL_VR/dV_s");
    }

    [Fact]
    public void ZeroWithZeroGradientWhenStudentEqualsTeacher()
    {
        var rng = new Random(TestUtil.StableSeed("minilm-equal"));
        const int b = 2, h = 2, n = 6, d = 4;
        var scores = TestUtil.RandomValues(rng, b * h * n * n, -4, 4);
        var values = TestUtil.RandomValues(rng, b * h * n * d, -2, 2);
        using var s = Leaf(scores, [b, h, n, n]);
        using var v = Leaf(values, [b, h, n, d]);
        using var keep = Keep(n);
        using var masked = Tensor.Where(keep, s, double.NegativeInfinity);
        using var a = masked.Softmax(-1);
        using var aT = a.Detach();
        using var vT = v.Detach();
        using var l = MiniLm.Loss(new AttentionRelations(a, v), new AttentionRelations(aT, vT));
        Assert.Equal(0.0, l.ToDouble());
        l.Backward();
        TestUtil.AssertClose(new double[scores.Length], s.Grad!, atol: 1e-15, what: "dL/dscores");
        TestUtil.AssertClose(new double[values.Length], v.Grad!, atol: 1e-15, what: "dL/dV");
    }

    // ---------------------------------------------------------------- causal masking

    [Fact]
    public void HiddenKeysContributeExactlyZeroAndNoNaN()
    {
        var rng = new Random(TestUtil.StableSeed("minilm-mask"));
        const int b = 1, h = 2, n = 5, bh = b * h;
        var ps = RandomProbabilities(rng, bh, n, causal: true);
        var pt = RandomProbabilities(rng, bh, n, causal: true);
        // Junk on the hidden keys (j > i): NaN, ∞, negative, large — all must be ignored.
        double[] junk = [double.NaN, double.PositiveInfinity, -3, 7, 0];
        var psJunk = (double[])ps.Clone();
        var ptJunk = (double[])pt.Clone();
        int q = 0;
        for (int r = 0; r < bh; r++)
            for (int i = 0; i < n; i++)
                for (int j = i + 1; j < n; j++)
                {
                    psJunk[(r * n + i) * n + j] = junk[q++ % junk.Length];
                    ptJunk[(r * n + i) * n + j] = junk[q++ % junk.Length];
                }
        foreach (var dtype in new[] { DType.Float64, DType.Float32 })
        {
            using var clean = MiniLm.AttentionLoss(TestUtil.FromDoubles(ps, [b, h, n, n], dtype), TestUtil.FromDoubles(pt, [b, h, n, n], dtype));
            using var aS = Leaf(psJunk, [b, h, n, n], dtype);
            using var aT = Leaf(ptJunk, [b, h, n, n], dtype);
            using var dirty = MiniLm.AttentionLoss(aS, aT);
            Assert.Equal(clean.ToDouble(), dirty.ToDouble());
            Assert.True(double.IsFinite(dirty.ToDouble()));
            dirty.Backward();
            var gs = Doubles(aS.Grad!);
            var gt = Doubles(aT.Grad!);
            for (int r = 0; r < bh; r++)
                for (int i = 0; i < n; i++)
                    for (int j = 0; j < n; j++)
                    {
                        int k = (r * n + i) * n + j;
                        Assert.True(double.IsFinite(gs[k]) && double.IsFinite(gt[k]), $"{dtype.Name()}: non-finite gradient at ({r}, {i}, {j})");
                        if (j > i)
                        {
                            Assert.Equal(0.0, gs[k]);
                            Assert.Equal(0.0, gt[k]);
                        }
                    }
        }

        // The value relation with huge values (scores ~1e6 on hidden and visible keys) stays finite, hidden keys ignored.
        var vs = TestUtil.RandomValues(rng, bh * n * 3, -1e3, 1e3);
        var vt = TestUtil.RandomValues(rng, bh * n * 2, -1e3, 1e3);
        foreach (var dtype in new[] { DType.Float64, DType.Float32 })
        {
            using var v = Leaf(vs, [b, h, n, 3], dtype);
            using var w = Leaf(vt, [b, h, n, 2], dtype);
            using var l = MiniLm.ValueRelationLoss(v, w);
            Assert.True(double.IsFinite(l.ToDouble()), $"{dtype.Name()}: L_VR = {l.ToDouble()}");
            l.Backward();
            Assert.All(Doubles(v.Grad!), g => Assert.True(double.IsFinite(g)));
            Assert.All(Doubles(w.Grad!), g => Assert.True(double.IsFinite(g)));
            double reference = ValueRelationRef(vs, vt, bh, n, 3, 2, causal: true);
            TestUtil.AssertClose([reference], [l.ToDouble()], atol: 1e-6, rtol: dtype == DType.Float64 ? 1e-9 : 1e-3, what: $"L_VR {dtype.Name()}");
        }
    }

    // ---------------------------------------------------------------- bad input

    [Fact]
    public void MismatchedShapesAndDTypesNameTheShapes()
    {
        using var a22 = Tensor.Zeros([2, 2, 5, 5], DType.Float64);
        using var a24 = Tensor.Zeros([2, 4, 5, 5], DType.Float64);
        using var a23 = Tensor.Zeros([2, 2, 5, 6], DType.Float64);
        using var a32 = Tensor.Zeros([2, 2, 5, 5]);
        using var v2 = Tensor.Zeros([2, 2, 5, 3], DType.Float64);
        using var v4 = Tensor.Zeros([2, 4, 5, 8], DType.Float64);
        using var v2n = Tensor.Zeros([2, 2, 6, 8], DType.Float64);
        using var v3d = Tensor.Zeros([2, 5, 3], DType.Float64);

        void Throws(Action act, params string[] parts)
        {
            var e = Assert.Throws<ArgumentException>(act);
            foreach (var p in parts) Assert.Contains(p, e.Message);
        }
        Throws(() => MiniLm.AttentionLoss(a22, a24), "MiniLm.AttentionLoss", "heads", "[2, 2, 5, 5]", "[2, 4, 5, 5]");
        Throws(() => MiniLm.AttentionLoss(a23, a23), "MiniLm.AttentionLoss", "[2, 2, 5, 6]");
        Throws(() => MiniLm.AttentionLoss(a22, a32), "MiniLm.AttentionLoss", "float64", "float32");
        Throws(() => MiniLm.ValueRelationLoss(v2, v4), "MiniLm.ValueRelationLoss", "heads", "[2, 2, 5, 3]", "[2, 4, 5, 8]");
        Throws(() => MiniLm.ValueRelationLoss(v2, v2n), "[2, 2, 5, 3]", "[2, 2, 6, 8]");
        Throws(() => MiniLm.ValueRelationLoss(v3d, v3d), "[2, 5, 3]");
        Throws(() => MiniLm.Loss(new AttentionRelations(a22, v2), new AttentionRelations(a24, v4)), "MiniLm.Loss", "[2, 2, 5, 3]", "[2, 4, 5, 8]");
        Throws(() => MiniLm.Loss(new AttentionRelations(a22, v2n), new AttentionRelations(a22, v2n)), "MiniLm.Loss", "[2, 2, 5, 5]", "[2, 2, 6, 8]");

        using var student = new DecoderTransformer(new TransformerConfig(VocabSize: 8, ContextLength: 4, Width: 8, Layers: 1, Heads: 2), 1);
        using var teacher = new DecoderTransformer(new TransformerConfig(VocabSize: 8, ContextLength: 4, Width: 16, Layers: 2, Heads: 4), 2);
        Throws(() => _ = new MiniLmMethod(student, teacher), "MiniLmMethod", "H=2", "H=4");
        using var bigram = new DecoderTransformer(new TransformerConfig(VocabSize: 8, ContextLength: 4, Width: 8, Layers: 0, Heads: 2), 3);
        using var ids = Tensor.FromArray(new long[] { 1, 2, 3 }, 3);
        Throws(() => bigram.ForwardWithLastAttention(ids), "Layers = 0");
    }

    // ---------------------------------------------------------------- the models' attention

    [Fact]
    public void ModelsExposeTheirLastLayerAttentionAndValues()
    {
        var config = new TransformerConfig(VocabSize: 11, ContextLength: 7, Width: 12, Layers: 2, Heads: 3, InitStd: 0.3);
        using var model = new DecoderTransformer(config, 5);
        using var ids = Tensor.RandInt(0, 11, [2, 7], new Generator(9));
        using var plain = model.Forward(ids);
        var (logits, attention) = model.ForwardWithLastAttention(ids);
        using (logits)
        using (attention)
        {
            TestUtil.AssertClose(Doubles(plain), logits, atol: 1e-5, rtol: 1e-5, what: "logits");
            Assert.Equal([2L, 3, 7, 7], attention.Probabilities.ShapeArray());
            Assert.Equal([2L, 3, 7, 4], attention.Values.ShapeArray());
            var p = Doubles(attention.Probabilities);
            for (int r = 0; r < 6; r++)
                for (int i = 0; i < 7; i++)
                {
                    double sum = 0;
                    for (int j = 0; j < 7; j++)
                    {
                        double x = p[(r * 7 + i) * 7 + j];
                        if (j > i) Assert.Equal(0.0, x);
                        sum += x;
                    }
                    Assert.Equal(1.0, sum, 5);
                }
            // The values are the last block's v_proj rows split into heads.
            var block = model.Blocks[^1];
            using var embedded = model.TokenEmbedding.Forward(ids).Add(model.PositionEmbedding.Forward(Tensor.Arange(7)));
            using var x1 = model.Blocks[0].Forward(embedded);
            var (y, own) = block.ForwardWithAttention(x1);
            using (y)
            using (own)
            {
                TestUtil.AssertClose(Doubles(attention.Values), own.Values, atol: 1e-6, what: "values");
                TestUtil.AssertClose(Doubles(attention.Probabilities), own.Probabilities, atol: 1e-6, what: "probabilities");
                using var direct = block.Forward(x1);
                TestUtil.AssertClose(Doubles(direct), y, atol: 1e-5, rtol: 1e-5, what: "block output");
            }
            // A model against itself: exactly 0.
            using var self = MiniLm.Loss(attention, attention);
            Assert.Equal(0.0, self.ToDouble());
        }
    }

    // ---------------------------------------------------------------- training

    [Fact]
    public void MiniLmMethodTrainingLowersTheRelationLoss()
    {
        var teacherConfig = new TransformerConfig(VocabSize: 12, ContextLength: 6, Width: 16, Layers: 2, Heads: 2, InitStd: 0.3);
        using var teacher = new DecoderTransformer(teacherConfig, 11);
        teacher.RequiresGrad_(false);
        using var student = new DecoderTransformer(new TransformerConfig(VocabSize: 12, ContextLength: 6, Width: 8, Layers: 1, Heads: 2), 12);
        var method = new MiniLmMethod(student, teacher); // the paper's MiniLM: relations only
        Assert.Equal("minilm", method.Name);
        using var ids = Tensor.RandInt(0, 12, [8, 6], new Generator(13));
        var parameters = student.Parameters().ToList();
        using var optimizer = new AdamW(parameters, 1e-2);
        var losses = new List<double>();
        for (int step = 0; step < 40; step++)
        {
            using var scope = Tensor.NewDisposeScope();
            var l = method.Loss(ids);
            optimizer.ZeroGrad();
            l.Backward();
            optimizer.Step();
            losses.Add(l.ToDouble());
        }
        Assert.All(losses, x => Assert.True(double.IsFinite(x)));
        Assert.True(losses[^1] < 0.5 * losses[0], $"MiniLM loss {losses[0]} → {losses[^1]}");
    }

    [Fact]
    public void TestbedMiniLmRunGetsCloserToTheOracle()
    {
        var settings = new LmTestbedSettings
        {
            Oracle = new(VocabSize: 16, ContextLength: 6, Width: 16, Layers: 1, Heads: 2, InitStd: 0.25),
            Teacher = new(VocabSize: 16, ContextLength: 6, Width: 16, Layers: 1, Heads: 4),
            Student = new(VocabSize: 16, ContextLength: 6, Width: 8, Layers: 1, Heads: 2),
            TeacherSteps = 60,
            TeacherSequences = 256,
            Steps = 24,
            BatchSize = 16,
            EvalSequences = 32,
            EvalPoints = 2,
            Seeds = 1,
            LearningRate = 1e-2,
            TeacherLearningRate = 1e-2,
            Methods = [LmMethod.MiniLm],
            Regimes = [LmRegime.Online],
        };
        Assert.Equal(4, LmTestbed.StudentConfig(settings, LmMethod.MiniLm).Heads); // the teacher's heads
        Assert.Equal(2, LmTestbed.StudentConfig(settings, LmMethod.ForwardKl).Heads);
        Assert.Equal(LmMethod.MiniLm, LmDistillationLoss.Parse("MiniLM"));
        var result = LmTestbed.Run(settings);
        var run = Assert.Single(result.Runs);
        Assert.True(run.Curve[^1].KlToOracle < run.Curve[0].KlToOracle, $"KL(oracle‖student) {run.Curve[0].KlToOracle} → {run.Curve[^1].KlToOracle}");
        Assert.True(double.IsFinite(run.FinalLoss));
        Assert.Contains("| minilm |", result.ToMarkdown());
        var bad = Assert.Throws<ArgumentException>(() => (settings with { Student = settings.Student with { Width = 6, Heads = 2 } }).Validate());
        Assert.Contains("4 heads", bad.Message);
    }
}
