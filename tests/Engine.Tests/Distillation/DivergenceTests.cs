using Engine.Distillation;
using Engine.Tensors;

namespace Engine.Tests.Distillation;

/// <summary>
/// Every divergence: the fused form (float32), the composite form (float32 and float64) and the float64
/// reference of <see cref="DivergenceReference"/> agree on value and gradient, over shapes, options and
/// edge cases; the composite form passes gradcheck (first and second order).
/// </summary>
public class DivergenceTests
{
    public static TheoryData<string> CaseNames() => [.. DivergenceCase.All.Select(c => c.Name)];

    private static DivergenceCase Find(string name) => DivergenceCase.All.Single(c => c.Name == name);

    private static double[] F32(double[] x) => x.Select(v => (double)(float)v).ToArray();

    /// <summary>
    /// Runs <paramref name="c"/> three ways (fused float32, composite float32, composite float64) and compares each
    /// with the reference: value and gradient wrt the student (backward with a non-trivial incoming gradient).
    /// </summary>
    private static void CheckAll(DivergenceCase c, double[] s, double[] t, long[] shape, DivergenceOptions options, string what,
        double[]? rowTemps = null, long[]? labels = null, bool nonContiguous = false, double tol = 1)
    {
        s = F32(s);
        t = F32(t);
        int v = (int)shape[^1], rows = s.Length / v;
        var rowsShape = shape[..^1];
        var weights = Enumerable.Range(0, rows).Select(r => (r + 1.0) / (rows + 2.0)).ToArray();
        bool[]? ignored = labels?.Select(l => l == options.IgnoreIndex).ToArray();
        var rng = new Random(TestUtil.StableSeed(what));
        var rowGrad = options.Reduction == Reduction.None ? TestUtil.RandomValues(rng, rows, 0.5, 1.5) : [0.75];
        var (expLoss, expGrad) = DivergenceReference.Loss(c.Kind, c.Param, s, t, shape, options, rowTemps, ignored, weights, rowGrad);

        foreach (var (impl, dtype) in new[] { (LossImplementation.Fused, DType.Float32), (LossImplementation.Composite, DType.Float32), (LossImplementation.Composite, DType.Float64) })
        {
            using var scope = Tensor.NewDisposeScope();
            var label = $"{c.Name} {what} {impl} {dtype.Name()}";
            var st = TestUtil.FromDoubles(s, shape, dtype);
            var tt = TestUtil.FromDoubles(t, shape, dtype);
            if (nonContiguous)
            {
                st = TestUtil.NonContiguous(st);
                tt = TestUtil.NonContiguous(tt);
                Assert.False(st.IsContiguous && v > 1);
            }
            st.RequiresGrad = true;
            var o = options with
            {
                Implementation = impl,
                RowTemperature = rowTemps is null ? null : TestUtil.FromDoubles(rowTemps, rowsShape, DType.Float32),
                Labels = labels is null ? null : Tensor.FromArray(labels, rowsShape),
            };
            var w = TestUtil.FromDoubles(weights, [rows], dtype);
            var loss = c.Call(st, tt, w, o);
            Assert.Equal(dtype, loss.DType);
            Assert.Equal(options.Reduction == Reduction.None ? rowsShape : [], loss.ShapeArray());
            var gOut = options.Reduction == Reduction.None ? TestUtil.FromDoubles(rowGrad, rowsShape, dtype) : Tensor.Scalar(rowGrad[0], dtype);
            loss.Backward(gOut);
            bool f32 = dtype == DType.Float32;
            double scaleL = expLoss.Select(Math.Abs).DefaultIfEmpty(0).Max(), scaleG = expGrad.Select(Math.Abs).DefaultIfEmpty(0).Max();
            // float32's absolute error on a gradient element is ~ε times the largest term it is formed from
            // (a − q·Σa cancels terms of the size of D), so the gradient tolerance scales with the loss / T too.
            double tMin = rowTemps?.Min() ?? options.Temperature;
            double unit = Math.Max(scaleG, Math.Max(scaleL, 1e-2) / tMin);
            double atolL = (f32 ? 2e-5 * tol : 1e-10) * Math.Max(scaleL, 1e-2), atolG = (f32 ? 2e-5 * tol : 1e-10) * unit;
            TestUtil.AssertClose(expLoss, loss, atolL, f32 ? 1e-4 * tol : 1e-9, label + " loss");
            Assert.NotNull(st.Grad);
            TestUtil.AssertClose(expGrad, st.Grad!, atolG, f32 ? 1e-3 * tol : 1e-8, label + " grad");
        }
    }

    private static readonly Reduction[] Reductions = [Reduction.BatchMean, Reduction.None, Reduction.Sum, Reduction.Mean, Reduction.TokenMean];

    [Theory]
    [MemberData(nameof(CaseNames))]
    public void MatchesReference_RandomShapesAndOptions(string name)
    {
        var c = Find(name);
        var rng = new Random(TestUtil.StableSeed("div" + name));
        // V = 1, V below / not a multiple of / above the vector widths, [B, L, V] rows.
        long[][] shapes = [[3, 7], [2, 17], [4, 33], [1, 1], [3, 1], [2, 1000], [2, 3, 5], [5], [2, 2, 16]];
        int i = 0;
        foreach (var shape in shapes)
        {
            var n = TestUtil.ShapeNumEl(shape);
            var s = TestUtil.RandomValues(rng, n, -4, 4);
            var t = TestUtil.RandomValues(rng, n, -4, 4);
            var red = Reductions[i % Reductions.Length];
            double temp = new[] { 1.0, 2.0, 0.7 }[i % 3];
            var o = new DivergenceOptions { Temperature = temp, Reduction = red, ScaleByTemperatureSquared = i % 2 == 0 };
            CheckAll(c, s, t, shape, o, $"shape [{string.Join(",", shape)}] T {temp} {red}");
            i++;
        }
    }

    [Theory]
    [MemberData(nameof(CaseNames))]
    public void MatchesReference_ExtremeLogitsAndTemperatures(string name)
    {
        var c = Find(name);
        var rng = new Random(TestUtil.StableSeed("extreme" + name));
        long[] shape = [3, 37];
        // ±1e4 logits at T = 1 and 0.05 (α outside (0, 1) overflows to +∞ there by definition: skipped), and T = 20.
        foreach (var (scale, temp) in new[] { (1e4, 1.0), (1e4, 0.05), (4.0, 0.05), (4.0, 20.0), (1e4, 20.0) })
        {
            if (c.Kind == RefKind.Alpha && c.Param > 1 && (scale > 100 || temp < 1)) continue;
            var s = TestUtil.RandomValues(rng, 3 * 37, -scale, scale);
            var t = TestUtil.RandomValues(rng, 3 * 37, -scale, scale);
            var o = new DivergenceOptions { Temperature = temp, ScaleByTemperatureSquared = true };
            CheckAll(c, s, t, shape, o, $"scale {scale} T {temp}");
        }
    }

    /// <summary>
    /// Rows longer than the fused form's 1024-class chunks (each chunk is exp'd relative to its own max and
    /// reweighted): a whole chunk masked in both, the row maxima in different chunks of s and t, a partial last
    /// chunk, and ±1e4 logits where most chunks' weights underflow to 0.
    /// </summary>
    [Theory]
    [MemberData(nameof(CaseNames))]
    public void LongRows_SeveralChunks_MaskedChunk_MaximaInDifferentChunks(string name)
    {
        var c = Find(name);
        var rng = new Random(TestUtil.StableSeed("chunks" + name));
        const int v = 2600;
        long[] shape = [3, v];
        var s = TestUtil.RandomValues(rng, 3 * v, -3, 3);
        var t = TestUtil.RandomValues(rng, 3 * v, -3, 3);
        for (int k = 0; k < 1024; k++) s[k] = t[k] = double.NegativeInfinity; // row 0: chunk 0 masked
        s[v + 2590] = 25; // row 1: the student's max in the partial last chunk,
        t[v + 5] = 15;    // the teacher's in the first
        s[2 * v + 1500] = 9; t[2 * v + 1501] = 9;
        CheckAll(c, s, t, shape, new DivergenceOptions { Temperature = 2, Reduction = Reduction.None }, "chunks T 2");
        if (c.Kind == RefKind.Alpha && c.Param > 1) return; // overflows to +∞ at this spread by definition
        var sw = TestUtil.RandomValues(rng, 3 * v, -1e4, 1e4);
        var tw = TestUtil.RandomValues(rng, 3 * v, -1e4, 1e4);
        CheckAll(c, sw, tw, shape, new DivergenceOptions { Temperature = 1, Reduction = Reduction.Sum }, "chunks 1e4");
    }

    /// <summary>
    /// Enough rows for the fused form to run them in several blocks of rows in parallel, with V odd so consecutive
    /// gradient rows start at different vector alignments (each row's first chunk absorbs the unaligned head), maxima
    /// that move across chunks, spikes far above a row's running max (the chunk is redone against its own max: its
    /// exps against the running max would overflow), and per-row temperatures.
    /// </summary>
    [Theory]
    [MemberData(nameof(CaseNames))]
    public void ManyRows_ParallelBlocks_EveryRowAlignment_MaxSpikes(string name)
    {
        var c = Find(name);
        var rng = new Random(TestUtil.StableSeed("blocks" + name));
        const int rows = 13, v = 40001;
        var s = TestUtil.RandomValues(rng, rows * v, -3, 3);
        var t = TestUtil.RandomValues(rng, rows * v, -3, 3);
        for (int r = 0; r < rows; r++)
        {
            s[r * v + (r * 3037) % v] += r; // maxima that move across chunks and grow row by row
            t[r * v + (r * 5003) % v] += 13 - r;
        }
        s[2 * v + 30000] = 200;  // far above the running max: (200 − 3)·log2 e / T ≫ 64
        t[5 * v + 20000] = 150;
        s[7 * v + 39999] = 90; t[7 * v + 39998] = 90; // in the last chunk, both
        // α > 1: +∞ at this spread by definition, and at large T its 1 − Σe cancels beyond the float32 composite's tolerance.
        if (c.Kind == RefKind.Alpha && c.Param > 1) return;
        var temps = Enumerable.Range(0, rows).Select(r => 0.5 + r % 4).ToArray();
        CheckAll(c, s, t, [rows, v], new DivergenceOptions { Reduction = Reduction.None }, "blocks", rowTemps: temps);
    }

    /// <summary>A NaN logit makes its own row's loss NaN (it is not dropped by a max or an exp), and only that row's.</summary>
    [Fact]
    public void NaNLogit_MakesItsRowNaN_OnlyThatRow()
    {
        var rng = new Random(TestUtil.StableSeed("nan-logit"));
        const int rows = 4, v = 2100;
        var s = TestUtil.RandomValues(rng, rows * v, -3, 3);
        var t = TestUtil.RandomValues(rng, rows * v, -3, 3);
        s[1 * v + 1500] = double.NaN;
        t[2 * v + 7] = double.NaN;
        using var scope = Tensor.NewDisposeScope();
        var st = TestUtil.FromDoubles(F32(s), [rows, v]).RequiresGrad_();
        var tt = TestUtil.FromDoubles(F32(t), [rows, v]);
        var loss = Divergences.ForwardKl(st, tt, new DivergenceOptions { Reduction = Reduction.None, Implementation = LossImplementation.Fused });
        var values = loss.ToArray<float>();
        Assert.True(float.IsFinite(values[0]) && float.IsFinite(values[3]), $"rows 0 and 3 must stay finite: {string.Join(", ", values)}");
        Assert.True(float.IsNaN(values[1]) && float.IsNaN(values[2]), $"rows 1 and 2 hold a NaN logit: {string.Join(", ", values)}");
    }

    [Theory]
    [MemberData(nameof(CaseNames))]
    public void MaskedClasses_MinusInfinityInBoth_AreRemoved(string name)
    {
        var c = Find(name);
        var rng = new Random(TestUtil.StableSeed("masked" + name));
        long[] shape = [4, 19];
        var s = TestUtil.RandomValues(rng, 4 * 19, -3, 3);
        var t = TestUtil.RandomValues(rng, 4 * 19, -3, 3);
        for (int k = 0; k < s.Length; k++)
            if (k % 19 % 3 == 1) s[k] = t[k] = double.NegativeInfinity;
        CheckAll(c, s, t, shape, new DivergenceOptions { Temperature = 1.5, Reduction = Reduction.None }, "masked");
    }

    [Theory]
    [MemberData(nameof(CaseNames))]
    public void IgnoredRows_CountNowhere_AndAllIgnoredGivesZero(string name)
    {
        var c = Find(name);
        var rng = new Random(TestUtil.StableSeed("ignore" + name));
        long[] shape = [5, 9];
        var s = TestUtil.RandomValues(rng, 45, -3, 3);
        var t = TestUtil.RandomValues(rng, 45, -3, 3);
        // Ignored rows may hold anything (here NaN and ±∞): they must not leak into the loss or the gradient.
        for (int k = 9; k < 18; k++) s[k] = k % 2 == 0 ? double.NaN : double.PositiveInfinity;
        long[] labels = [3, -100, 0, -100, 8];
        foreach (var red in Reductions)
            CheckAll(c, s, t, shape, new DivergenceOptions { Reduction = red, Temperature = 2 }, $"some ignored {red}", labels: labels);
        long[] all = [-100, -100, -100, -100, -100];
        foreach (var red in Reductions)
            foreach (var impl in new[] { LossImplementation.Fused, LossImplementation.Composite })
            {
                using var scope = Tensor.NewDisposeScope();
                var st = TestUtil.FromDoubles(F32(s), shape).RequiresGrad_();
                var tt = TestUtil.FromDoubles(F32(t), shape);
                var o = new DivergenceOptions { Reduction = red, Labels = Tensor.FromArray(all, 5), Implementation = impl };
                var loss = c.Call(st, tt, TestUtil.FromDoubles([0.5, 0.5, 0.5, 0.5, 0.5], [5]), o);
                Assert.All(loss.ToArray<float>(), x => Assert.Equal(0f, x));
                (red == Reduction.None ? loss.Sum() : loss).Backward();
                Assert.All(st.Grad!.ToArray<float>(), x => Assert.Equal(0f, x));
            }
    }

    [Theory]
    [MemberData(nameof(CaseNames))]
    public void TeacherEqualToStudent_GivesZeroAndZeroGradient(string name)
    {
        var c = Find(name);
        var rng = new Random(TestUtil.StableSeed("equal" + name));
        var x = F32(TestUtil.RandomValues(rng, 4 * 50, -5, 5));
        foreach (var impl in new[] { LossImplementation.Fused, LossImplementation.Composite })
        {
            using var scope = Tensor.NewDisposeScope();
            var st = TestUtil.FromDoubles(x, [4, 50]).RequiresGrad_();
            var tt = TestUtil.FromDoubles(x, [4, 50]);
            var o = new DivergenceOptions { Temperature = 2, ScaleByTemperatureSquared = true, Implementation = impl };
            var loss = c.Call(st, tt, TestUtil.FromDoubles([0.1, 0.4, 0.6, 0.9], [4]), o);
            Assert.True(Math.Abs(loss.ToDouble()) < 1e-6, $"{c.Name} {impl}: loss {loss.ToDouble()} for teacher = student");
            loss.Backward();
            Assert.All(st.Grad!.ToArray<float>(), g => Assert.True(Math.Abs(g) < 1e-7, $"{c.Name} {impl}: gradient {g} for teacher = student"));
        }
    }

    [Theory]
    [MemberData(nameof(CaseNames))]
    public void NonContiguousInputs_PerRowTemperature_AndBatchedRows(string name)
    {
        var c = Find(name);
        var rng = new Random(TestUtil.StableSeed("layout" + name));
        long[] shape = [2, 3, 21];
        var s = TestUtil.RandomValues(rng, 126, -3, 3);
        var t = TestUtil.RandomValues(rng, 126, -3, 3);
        var temps = new[] { 0.5, 1, 2, 3, 4, 8.0 };
        CheckAll(c, s, t, shape, new DivergenceOptions { ScaleByTemperatureSquared = true }, "non-contiguous", nonContiguous: true);
        CheckAll(c, s, t, shape, new DivergenceOptions { ScaleByTemperatureSquared = true, Reduction = Reduction.TokenMean }, "per-row T", rowTemps: temps);
        CheckAll(c, s, t, shape, new DivergenceOptions { Reduction = Reduction.None }, "per-row T, none, some ignored", rowTemps: temps, labels: [1, -100, 2, 3, -100, 0]);
    }

    [Theory]
    [MemberData(nameof(CaseNames))]
    public void TeacherAsLogProbabilitiesOrProbabilities(string name)
    {
        var c = Find(name);
        var rng = new Random(TestUtil.StableSeed("teacher" + name));
        int rows = 3, v = 23;
        var s = TestUtil.RandomValues(rng, rows * v, -3, 3);
        var logits = TestUtil.RandomValues(rng, rows * v, -3, 3);
        for (int k = 0; k < s.Length; k++)
            if (k % v == 4) s[k] = logits[k] = double.NegativeInfinity; // a masked class: probability exactly 0
        var logProbs = new double[s.Length];
        for (int r = 0; r < rows; r++)
            DivergenceReference.LogSoftmax(F32(logits).AsSpan(r * v, v), 1).CopyTo(logProbs, r * v);
        var probs = logProbs.Select(Math.Exp).ToArray();
        var o = new DivergenceOptions { Temperature = 2, Reduction = Reduction.Sum };
        CheckAll(c, s, logProbs, [rows, v], o with { TeacherInput = TeacherInput.LogProbabilities }, "teacher log-probs");
        CheckAll(c, s, probs, [rows, v], o with { TeacherInput = TeacherInput.Probabilities }, "teacher probs");
    }

    [Theory]
    [MemberData(nameof(CaseNames))]
    public void Composite_PassesGradCheck_StudentAndTeacher(string name)
    {
        var c = Find(name);
        var rng = new Random(TestUtil.StableSeed("gc" + name));
        var s = TestUtil.Random(rng, [2, 5], DType.Float64, -2, 2).RequiresGrad_();
        var t = TestUtil.Random(rng, [2, 5], DType.Float64, -2, 2).RequiresGrad_();
        using var w = TestUtil.FromDoubles([0.3, 0.8], [2], DType.Float64);
        using var rt = TestUtil.FromDoubles([0.7, 1.9], [2], DType.Float64);
        var o = new DivergenceOptions { RowTemperature = rt, Reduction = Reduction.None, ScaleByTemperatureSquared = true };
        GradCheck.Check(x => c.Call(x[0], x[1], w, o), [s, t]);
        // Auto with a teacher that requires grad runs the composite form: same gradient for the teacher.
        GradCheck.Check(x => c.Call(x[0], x[1], w, o with { Implementation = LossImplementation.Auto }), [s, t]);
        if (c.Kind != RefKind.TotalVariation) // |x| has no second derivative at 0 to check meaningfully
            GradCheck.CheckSecondOrder(x => c.Call(x[0], x[1], w, new DivergenceOptions { Temperature = 1.5 }), [s, t]);
        s.Dispose();
        t.Dispose();
    }

    [Theory]
    [MemberData(nameof(CaseNames))]
    public void Fused_CreateGraphBackward_RecomputesDifferentiably(string name)
    {
        var c = Find(name);
        var rng = new Random(TestUtil.StableSeed("hvp" + name));
        var sv = F32(TestUtil.RandomValues(rng, 3 * 11, -2, 2));
        var tv = F32(TestUtil.RandomValues(rng, 3 * 11, -2, 2));
        var dir = F32(TestUtil.RandomValues(rng, 3 * 11, -1, 1));
        double[] Hvp(LossImplementation impl, out double[] grad)
        {
            using var scope = Tensor.NewDisposeScope();
            var s = TestUtil.FromDoubles(sv, [3, 11]).RequiresGrad_();
            var t = TestUtil.FromDoubles(tv, [3, 11]);
            var o = new DivergenceOptions { Temperature = 1.3, Implementation = impl };
            var loss = c.Call(s, t, TestUtil.FromDoubles([0.2, 0.5, 0.9], [3]), o);
            var g = Autograd.Grad(loss, s, createGraph: true);
            Assert.True(g.RequiresGrad, $"{c.Name} {impl}: the createGraph gradient is not differentiable");
            grad = g.ToArray<float>().Select(x => (double)x).ToArray();
            var dot = (g * TestUtil.FromDoubles(dir, [3, 11])).Sum();
            return Autograd.Grad(dot, s).ToArray<float>().Select(x => (double)x).ToArray();
        }
        var hf = Hvp(LossImplementation.Fused, out var gf);
        var hc = Hvp(LossImplementation.Composite, out var gc);
        TestUtil.AssertClose(gc, gf, 1e-6, 1e-4, c.Name + " gradient");
        TestUtil.AssertClose(hc, hf, 1e-5, 1e-4, c.Name + " Hessian-vector product");
    }

    [Fact]
    public void BadArguments_ThrowNamingTheOp()
    {
        using var s = Tensor.Zeros([2, 3]);
        using var t = Tensor.Zeros([2, 4]);
        using var t3 = Tensor.Zeros([2, 3]);
        using var d = Tensor.Zeros([2, 3], DType.Float64);
        using var i = Tensor.Zeros([2, 3], DType.Int64);
        Assert.Contains("forward_kl", Assert.Throws<ArgumentException>(() => Divergences.ForwardKl(s, t)).Message);
        Assert.Contains("[2, 4]", Assert.Throws<ArgumentException>(() => Divergences.ReverseKl(s, t)).Message);
        Assert.Contains("jsd", Assert.Throws<ArgumentException>(() => Divergences.Jsd(s, d)).Message);
        Assert.Contains("float64", Assert.Throws<ArgumentException>(() => Divergences.Jsd(s, d)).Message);
        Assert.Contains("total_variation", Assert.Throws<ArgumentException>(() => Divergences.TotalVariation(i, i)).Message);
        Assert.Contains("temperature", Assert.Throws<ArgumentOutOfRangeException>(() => Divergences.ForwardKl(s, t3, new DivergenceOptions { Temperature = 0 })).Message);
        Assert.Contains("forward_kl", Assert.Throws<ArgumentOutOfRangeException>(() => Divergences.ForwardKl(s, t3, new DivergenceOptions { Temperature = double.NaN })).Message);
        Assert.Contains("beta", Assert.Throws<ArgumentOutOfRangeException>(() => Divergences.Jsd(s, t3, 1.5)).Message);
        Assert.Contains("skew_kl", Assert.Throws<ArgumentOutOfRangeException>(() => Divergences.SkewKl(s, t3, -0.1)).Message);
        Assert.Contains("skew_reverse_kl", Assert.Throws<ArgumentOutOfRangeException>(() => Divergences.SkewReverseKl(s, t3, 2)).Message);
        Assert.Contains("alpha_divergence", Assert.Throws<ArgumentOutOfRangeException>(() => Divergences.AlphaDivergence(s, t3, double.PositiveInfinity)).Message);
        using var w = Tensor.Full([2], 1.5);
        Assert.Contains("bd_kd", Assert.Throws<ArgumentOutOfRangeException>(() => Divergences.BdKd(s, t3, w)).Message);
        using var w3 = Tensor.Full([3], 0.5);
        Assert.Contains("per-sample weights", Assert.Throws<ArgumentException>(() => Divergences.BdKd(s, t3, w3)).Message);
        using var badT = Tensor.FromArray(new float[] { 1, -2 }, 2);
        Assert.Contains("row 1", Assert.Throws<ArgumentOutOfRangeException>(() => Divergences.ForwardKl(s, t3, new DivergenceOptions { RowTemperature = badT })).Message);
        using var labels = Tensor.FromArray(new long[] { 1, 2, 3 }, 3);
        Assert.Contains("labels", Assert.Throws<ArgumentException>(() => Divergences.ForwardKl(s, t3, new DivergenceOptions { Labels = labels })).Message);
        using var d3 = Tensor.Zeros([2, 3], DType.Float64);
        var e = Assert.Throws<NotSupportedException>(() => Divergences.ForwardKl(d, d3, new DivergenceOptions { Implementation = LossImplementation.Fused }));
        Assert.Contains("forward_kl", e.Message);
        Assert.Contains("float32", e.Message);
        using var empty = Tensor.Zeros([2, 0]);
        Assert.Contains("empty", Assert.Throws<ArgumentException>(() => Divergences.ForwardKl(empty, empty)).Message);
    }

    [Fact]
    public void AutoUsesFused_ForFloat32_AndComposite_ForTeacherGradient()
    {
        using var s = Tensor.Randn([4, 10]).RequiresGrad_();
        using var t = Tensor.Randn([4, 10]);
        using (var loss = Divergences.Jsd(s, t))
            Assert.Equal("jsd", loss.GradFn!.Name); // the fused node (the composite form ends in mul/sum)
        using var t2 = Tensor.Randn([4, 10]).RequiresGrad_();
        using (var loss = Divergences.Jsd(s, t2))
            Assert.NotEqual("jsd", loss.GradFn!.Name);
    }
}
