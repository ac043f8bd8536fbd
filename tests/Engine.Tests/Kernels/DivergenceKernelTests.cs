using Engine.Runtime;
using Engine.Runtime.Kernels;
using Engine.Tensors;
using Engine.Tensors.Kernels;
using Device = Engine.Runtime.Device;

namespace Engine.Tests.Kernels;

/// <summary>
/// kernels/Divergence through <see cref="KernelDispatch.Divergence"/> on the emulator and on OpenCL (PoCL):
/// every divergence's row loss and student gradient against a float64 reference written here (plain
/// loops over the math of /work/shared/LOSSES.md; its gradient checked by central differences), on odd
/// V (1, 7, 33, 1000, 5003), logits at ±1e4, −∞ masked classes, T = 0.05 / 1 / 20 and per-row T,
/// ignored rows (whose logits are garbage: all −∞), teacher = student, the teacher given as log-probabilities
/// or probabilities, non-contiguous inputs.
/// </summary>
public class DivergenceKernelTests
{
    private const long Ignore = -100;

    /// <summary>A divergence and its parameter, as the dispatch takes them.</summary>
    internal readonly record struct Config(DivergenceKind Kind, double Parameter)
    {
        /// <inheritdoc />
        public override string ToString() => $"{Kind}({Parameter})";
    }

    private static readonly Config[] Configs =
    [
        new(DivergenceKind.ForwardKL, 0), new(DivergenceKind.ReverseKL, 0),
        new(DivergenceKind.JensenShannon, 0.5), new(DivergenceKind.JensenShannon, 0.1), new(DivergenceKind.JensenShannon, 0), new(DivergenceKind.JensenShannon, 1),
        new(DivergenceKind.TotalVariation, 0),
        new(DivergenceKind.SkewKL, 0.1), new(DivergenceKind.SkewKL, 0), new(DivergenceKind.SkewReverseKL, 0.1), new(DivergenceKind.SkewReverseKL, 1),
        new(DivergenceKind.Alpha, 0.5), new(DivergenceKind.Alpha, 2), new(DivergenceKind.Alpha, -0.5), new(DivergenceKind.Alpha, 1), new(DivergenceKind.Alpha, 0),
    ];

    // ------------------------------------------------------------------ float64 reference

    /// <summary>log softmax(x/T) of one row in float64 (−∞ entries give −∞).</summary>
    private static double[] LogSoftmax(ReadOnlySpan<float> x, double t)
    {
        double m = double.NegativeInfinity;
        foreach (var v in x) m = Math.Max(m, v);
        double s = 0;
        foreach (var v in x) s += Math.Exp((v - m) / t);
        var y = new double[x.Length];
        for (int j = 0; j < x.Length; j++) y[j] = (x[j] - m) / t - Math.Log(s);
        return y;
    }

    /// <summary>log(w·e^a + (1−w)·e^b) in float64 as a log-sum-exp (w·e^a dropped for w = 0, and so on).</summary>
    private static double LogMix(double a, double b, double w)
    {
        double x = w == 0 ? double.NegativeInfinity : Math.Log(w) + a, y = w == 1 ? double.NegativeInfinity : Math.Log(1 - w) + b;
        double hi = Math.Max(x, y), lo = Math.Min(x, y);
        return hi == double.NegativeInfinity ? hi : hi + Math.Log(1 + Math.Exp(lo - hi));
    }

    /// <summary>
    /// D(p, q) and u_j = q_j·∂D/∂q_j (q free) for one row, straight from the definitions (the ends
    /// JSD β = 0 / 1 and α = 1 / 0 are forward / reverse KL, as the dispatch documents).
    /// </summary>
    private static (double Loss, double[] U) Reference(Config c, double[] lp, double[] lq)
    {
        int n = lp.Length;
        var kind = c.Kind;
        double a = c.Parameter;
        if (kind == DivergenceKind.JensenShannon && a == 0 || kind == DivergenceKind.Alpha && a == 1) kind = DivergenceKind.ForwardKL;
        if (kind == DivergenceKind.JensenShannon && a == 1 || kind == DivergenceKind.Alpha && a == 0) kind = DivergenceKind.ReverseKL;
        var u = new double[n];
        double loss = 0, alphaSum = 0;
        for (int j = 0; j < n; j++)
        {
            double p = Math.Exp(lp[j]), q = Math.Exp(lq[j]);
            if (lp[j] == double.NegativeInfinity && lq[j] == double.NegativeInfinity) continue; // masked on both sides
            switch (kind)
            {
                case DivergenceKind.ForwardKL:
                    if (p > 0) loss += p * (lp[j] - lq[j]);
                    u[j] = -p;
                    break;
                case DivergenceKind.ReverseKL:
                    if (q > 0) loss += q * (lq[j] - lp[j]);
                    u[j] = q > 0 ? q * (lq[j] - lp[j] + 1) : 0;
                    break;
                case DivergenceKind.JensenShannon:
                {
                    double lm = LogMix(lp[j], lq[j], a);
                    if (p > 0) loss += a * p * (lp[j] - lm);
                    if (q > 0) loss += (1 - a) * q * (lq[j] - lm);
                    u[j] = q > 0 ? (1 - a) * q * (lq[j] - lm) : 0;
                    break;
                }
                case DivergenceKind.TotalVariation:
                    loss += 0.5 * Math.Abs(p - q);
                    u[j] = 0.5 * q * Math.Sign(q - p);
                    break;
                case DivergenceKind.SkewKL:
                {
                    double lm = LogMix(lp[j], lq[j], a);
                    if (p > 0) loss += p * (lp[j] - lm);
                    u[j] = -(1 - a) * p * Math.Exp(lq[j] - lm); // q/M, finite where q underflows
                    break;
                }
                case DivergenceKind.SkewReverseKL:
                {
                    double lm = LogMix(lp[j], lq[j], 1 - a);
                    if (q > 0) loss += q * (lq[j] - lm);
                    u[j] = q > 0 ? q * (lq[j] - lm + 1 - a * Math.Exp(lq[j] - lm)) : 0;
                    break;
                }
                case DivergenceKind.Alpha:
                {
                    double w = Math.Exp(a * lp[j] + (1 - a) * lq[j]);
                    alphaSum += w;
                    u[j] = -w / a;
                    break;
                }
            }
        }
        if (kind == DivergenceKind.Alpha) loss = (1 - alphaSum) / (a * (1 - a));
        return (loss, u);
    }

    /// <summary>Row loss and ∂D/∂s (before the scale c) of one row in float64, with a tolerance per value for the float32 kernel.</summary>
    private static (double Loss, double LossTol, double[] Grad, double[] GradTol) ReferenceRow(Config c, float[] s, float[] t, double temperature,
        DivergenceTeacher teacher = DivergenceTeacher.Logits)
    {
        var lq = LogSoftmax(s, temperature);
        var lp = teacher switch
        {
            DivergenceTeacher.Logits => LogSoftmax(t, temperature),
            DivergenceTeacher.LogProbabilities => t.Select(v => (double)v).ToArray(),
            _ => t.Select(v => Math.Log(v)).ToArray(),
        };
        var (loss, u) = Reference(c, lp, lq);
        int n = s.Length;
        // Float32 log-probabilities err by ~ε·(|log p| + log n) (rounding of (x − m)/T and of log Σ);
        // a class's terms move by ≲ S_j times that: (p + q + κ|u_j|)·(1 + |log p − log q|), κ = |α| + |1 − α|
        // for the α-divergence (w = p^α q^(1−α) scales the log errors by α and 1 − α), 1 otherwise.
        double kappa = c.Kind == DivergenceKind.Alpha ? Math.Abs(c.Parameter) + Math.Abs(1 - c.Parameter) : 1;
        var sensitivity = new double[n];
        double sumU = 0, sumAbsU = 0, sumS = 0;
        for (int j = 0; j < n; j++)
        {
            sumU += u[j];
            sumAbsU += Math.Abs(u[j]);
            double p = Math.Exp(lp[j]), q = Math.Exp(lq[j]);
            if (lp[j] == double.NegativeInfinity && lq[j] == double.NegativeInfinity) continue;
            sensitivity[j] = (p + q + kappa * Math.Abs(u[j])) * (1 + Math.Abs(lp[j]) + Math.Abs(lq[j]) + Math.Log(n)) * (1 + Math.Min(Math.Abs(lp[j] - lq[j]), 1e6));
            sumS += sensitivity[j];
        }
        var grad = new double[n];
        var gradTol = new double[n];
        for (int j = 0; j < n; j++)
        {
            double q = Math.Exp(lq[j]), p = Math.Exp(lp[j]);
            grad[j] = (u[j] - q * sumU) / temperature;
            // 2e-38·Σ|u|: q_j below float's normal range (flushed to 0 by GPUs and PoCL) times a huge Σu (α > 1).
            gradTol[j] = (2e-6 * (sensitivity[j] + q * sumS) + 1e-7 * Math.Max(p, q) + 2e-38 * sumAbsU + 1e-12) / temperature;
        }
        double alphaScale = c.Kind == DivergenceKind.Alpha && c.Parameter is not (0 or 1) ? 1 / Math.Abs(c.Parameter * (1 - c.Parameter)) : 1;
        double lossTol = 2e-6 * (Math.Abs(loss) + sumS) * alphaScale + 1e-7 * alphaScale * (1 + Math.Log(n)) + 1e-12;
        return (loss, lossTol, grad, gradTol);
    }

    [Fact]
    public void Reference_Gradient_MatchesCentralDifferencesOfReferenceLoss()
    {
        // The float64 reference's u-based gradient is checked against its own loss, so the kernel is
        // compared with the derivative of the definitions, not with a second copy of its algebra.
        var rng = new Random(TestUtil.StableSeed("divergence reference fd"));
        foreach (var c in Configs)
        foreach (int n in new[] { 1, 2, 7 })
        {
            double temperature = 0.7;
            var s = TestUtil.RandomValues(rng, n, -2, 2);
            var t = TestUtil.RandomValues(rng, n, -2, 2);
            var sf = s.Select(v => (float)v).ToArray();
            var tf = t.Select(v => (float)v).ToArray();
            var lp = LogSoftmax(tf, temperature);
            var (_, u) = Reference(c, lp, LogSoftmax(sf, temperature));
            double sumU = u.Sum();
            for (int j = 0; j < n; j++)
            {
                const double h = 1e-6;
                double Loss(double delta)
                {
                    // log softmax of (s + δ e_j)/T in float64 directly (not through float inputs).
                    var x = s.ToArray();
                    x[j] += delta;
                    double m = x.Max(), sum = x.Sum(v => Math.Exp((v - m) / temperature));
                    return Reference(c, lp, x.Select(v => (v - m) / temperature - Math.Log(sum)).ToArray()).Loss;
                }
                var lqExact = LogSoftmax(sf, temperature);
                double fd = (Loss(h) - Loss(-h)) / (2 * h);
                double analytic = (u[j] - Math.Exp(lqExact[j]) * sumU) / temperature;
                if (c.Kind == DivergenceKind.TotalVariation && Math.Abs(Math.Exp(lp[j]) - Math.Exp(lqExact[j])) < 1e-4) continue; // kink
                Assert.True(Math.Abs(fd - analytic) <= 1e-6 + 1e-5 * Math.Abs(fd), $"{c} n={n} j={j}: finite difference {fd:R}, formula {analytic:R}");
            }
        }
    }

    // ------------------------------------------------------------------ cases

    private sealed record Case(string Label, int Rows, int N, float[] S, float[] T, double Temperature, float[]? Temperatures, long[]? Labels,
        DivergenceTeacher Teacher = DivergenceTeacher.Logits);

    /// <summary>The inputs for one shape: narrow, ±1e4, masked (with an ignored all −∞ row), teacher = student.</summary>
    private static IEnumerable<Case> Cases(Random rng, int rows, int n, double temperature)
    {
        float[] Values(double lo, double hi) => TestUtil.RandomValues(rng, (long)rows * n, lo, hi).Select(v => (float)v).ToArray();
        long[] Labels() => Enumerable.Range(0, rows).Select(r => (long)rng.Next(n)).ToArray();

        yield return new Case("±3", rows, n, Values(-3, 3), Values(-3, 3), temperature, null, null);
        yield return new Case("±1e4", rows, n, Values(-1e4, 1e4), Values(-1e4, 1e4), temperature, null, null);

        // Masked classes at the same places in both (never a whole row), one ignored row whose
        // logits are all −∞ (would be NaN if it were not ignored), per-row temperatures.
        var s = Values(-5, 5);
        var t = Values(-5, 5);
        var labels = Labels();
        for (int r = 0; r < rows; r++)
            for (int j = 1; j < n; j += 3) s[r * n + j] = t[r * n + j] = float.NegativeInfinity;
        if (rows >= 2)
        {
            labels[1] = Ignore;
            for (int j = 0; j < n; j++) s[n + j] = t[n + j] = float.NegativeInfinity;
        }
        var temps = Enumerable.Range(0, rows).Select(r => (float)(temperature * (1 + 0.5 * (r % 3)))).ToArray();
        yield return new Case("−∞ masks, ignored row, per-row T", rows, n, s, t, temperature, temps, labels);

        var same = Values(-4, 4);
        yield return new Case("teacher = student", rows, n, same, same.ToArray(), temperature, null, null);

        // The teacher as log-probabilities (float32 log_softmax at T = 1.3, used as given) and as
        // probabilities, with classes masked on both sides (−∞ / 0 in the teacher, −∞ in the student).
        var s2 = Values(-3, 3);
        var logP = new float[rows * n];
        for (int r = 0; r < rows; r++)
        {
            var row = Values(-3, 3).AsSpan(0, n).ToArray();
            for (int j = 2; j < n; j += 4) row[j] = s2[r * n + j] = float.NegativeInfinity;
            var lp = LogSoftmax(row, 1.3);
            for (int j = 0; j < n; j++) logP[r * n + j] = (float)lp[j];
        }
        yield return new Case("teacher log-probs", rows, n, s2, logP, temperature, null, null, DivergenceTeacher.LogProbabilities);
        yield return new Case("teacher probs", rows, n, s2, logP.Select(v => (float)Math.Exp(v)).ToArray(), temperature, null, null, DivergenceTeacher.Probabilities);
    }

    private static void Check(Device device, Config c, Case k, int maxGroup, double scale, bool squareT)
    {
        string what = $"{c} {k.Label} [{k.Rows}, {k.N}] T={k.Temperature} scale={scale}{(squareT ? "·T²" : "")} on {device}";
        using var s = Tensor.FromArray(k.S, k.Rows, k.N);
        using var t = Tensor.FromArray(k.T, k.Rows, k.N);
        using var sd = s.To(device);
        using var td = t.To(device);
        using var temps = k.Temperatures is null ? null : Tensor.FromArray(k.Temperatures, k.Rows).To(device);
        using var labels = k.Labels is null ? null : Tensor.FromArray(k.Labels, k.Rows).To(device);
        var (lossD, gradD) = KernelDispatch.Divergence(sd, td, c.Kind, c.Parameter, k.Temperature, temps, labels, Ignore, scale, squareT, k.Teacher, maxGroup);
        using (lossD)
        using (gradD)
        {
            Assert.Equal(device, lossD.Device);
            Assert.Equal([(long)k.Rows], lossD.ShapeArray());
            Assert.Equal([(long)k.Rows, k.N], gradD.ShapeArray());
            var loss = lossD.ToArray<float>();
            var grad = gradD.ToArray<float>();
            for (int r = 0; r < k.Rows; r++)
            {
                if (k.Labels is not null && k.Labels[r] == Ignore)
                {
                    Assert.True(loss[r] == 0, $"{what}: ignored row {r} has loss {loss[r]}");
                    for (int j = 0; j < k.N; j++) Assert.True(grad[r * k.N + j] == 0, $"{what}: ignored row {r} has gradient {grad[r * k.N + j]} at {j}");
                    continue;
                }
                double temperature = k.Temperatures is null ? (float)k.Temperature : k.Temperatures[r];
                double factor = scale * (squareT ? temperature * temperature : 1);
                var (refLoss, lossTol, refGrad, gradTol) = ReferenceRow(c, k.S.AsSpan(r * k.N, k.N).ToArray(), k.T.AsSpan(r * k.N, k.N).ToArray(), temperature, k.Teacher);
                if (!double.IsFinite(refLoss) || Math.Max(Math.Abs(refLoss), Math.Abs(factor * refLoss)) > 1e35)
                {
                    // Near or past float32's range (α ∉ [0, 1] with z spreads of ~100: w = p^α q^(1−α) ≈ e^100):
                    // the kernel must say so (+∞ or NaN once a float32 term overflows), or be right.
                    bool overflowed = !float.IsFinite(loss[r]) && (!double.IsFinite(refLoss) || Math.Abs(refLoss) > 1e37);
                    Assert.True(overflowed || Math.Abs(loss[r] - factor * refLoss) <= 1e-3 * Math.Abs(factor * refLoss), $"{what}: row {r} loss {loss[r]}, expected {factor * refLoss:G3} or an overflow");
                    continue;
                }
                Assert.True(Same(loss[r], factor * refLoss) || Math.Abs(loss[r] - factor * refLoss) <= Math.Abs(factor) * lossTol,
                    $"{what}: row {r} loss {loss[r]:R}, expected {factor * refLoss:R} (tolerance {Math.Abs(factor) * lossTol:G3})");
                for (int j = 0; j < k.N; j++)
                {
                    double e = factor * refGrad[j], a = grad[r * k.N + j];
                    Assert.True(Same(a, e) || Math.Abs(a - e) <= Math.Abs(factor) * gradTol[j],
                        $"{what}: row {r} gradient[{j}] {a:R}, expected {e:R} (tolerance {Math.Abs(factor) * gradTol[j]:G3})");
                }
                if (k.Label == "teacher = student")
                {
                    double alphaScale = c.Kind == DivergenceKind.Alpha && c.Parameter is not (0 or 1) ? 1 / Math.Abs(c.Parameter * (1 - c.Parameter)) : 1;
                    Assert.True(Math.Abs(loss[r]) <= 1e-6 * Math.Abs(factor) * alphaScale, $"{what}: row {r} loss {loss[r]} should be 0");
                }
            }
        }
    }

    /// <summary>Equal, or both NaN (an infinite divergence: α ∉ [0, 1] where one side underflows, in float and in double alike).</summary>
    private static bool Same(double actual, double expected) => actual == expected || double.IsNaN(actual) && double.IsNaN(expected);

    private static void RunAll(Device device, (int Rows, int N)[] shapes, double[] temperatures, int maxGroup, bool everyTemperature)
    {
        int i = 0, launches = 0;
        foreach (var (rows, n) in shapes)
        foreach (var c in Configs)
        {
            var rng = new Random(TestUtil.StableSeed($"divergence {c} {rows}x{n}"));
            var temps = everyTemperature ? temperatures : [temperatures[i++ % temperatures.Length]];
            foreach (var temperature in temps)
            foreach (var k in Cases(rng, rows, n, temperature))
            {
                bool squareT = launches++ % 5 == 1; // 5 is coprime with the 6 cases: every case kind meets scale 0.5·T² and 1
                Check(device, c, k, maxGroup, squareT ? 0.5 : 1, squareT);
            }
        }
    }

    [Fact]
    public void EveryDivergence_Emulator_MatchesFloat64()
        // Small groups (one OS thread per GPU thread): DimX ≤ 16 strides over the longer rows; V = 1 and 7 put several rows in a group.
        => RunAll(Device.Parse("emulator"), [(3, 1), (5, 7), (3, 33), (2, 1000)], [0.05, 1, 20], maxGroup: 16, everyTemperature: false);

    [BackendFact("opencl")]
    public void EveryDivergence_OpenCL_MatchesFloat64()
        => RunAll(Device.Parse("opencl:0"), [(3, 1), (9, 7), (17, 33), (6, 1000), (3, 5003)], [0.05, 1, 20], DivergenceKernels.MaxGroup, everyTemperature: true);

    [BackendFact("cuda")]
    public void EveryDivergence_Cuda_MatchesFloat64()
        => RunAll(Device.Parse("cuda:0"), [(3, 1), (9, 7), (17, 33), (6, 1000), (3, 5003), (4, 32000)], [0.05, 1, 20], DivergenceKernels.MaxGroup, everyTemperature: true);

    [Fact]
    public void NonContiguousInputs_AreCopied_AndScalarTemperatureTensorBroadcasts()
    {
        var device = Device.Parse("emulator");
        var rng = new Random(TestUtil.StableSeed("divergence strided"));
        using var sBig = TestUtil.Random(rng, [9, 4], DType.Float32, -3, 3);
        using var t = TestUtil.Random(rng, [4, 9], DType.Float32, -3, 3);
        using var sOnDevice = sBig.To(device);
        using var sView = sOnDevice.Transpose(0, 1); // [4, 9], not contiguous
        using var tOnDevice = t.To(device);
        using var temp = Tensor.FromArray(new[] { 2f }, 1).To(device);
        var (loss, grad) = KernelDispatch.Divergence(sView, tOnDevice, DivergenceKind.JensenShannon, 0.5, temperatures: temp, maxGroup: 8);
        using (loss)
        using (grad)
        {
            using var sT = sBig.Transpose(0, 1);
            using var sRows = sT.Contiguous();
            var sf = sRows.ToArray<float>();
            var tf = t.ToArray<float>();
            var got = loss.ToArray<float>();
            var g = grad.ToArray<float>();
            for (int r = 0; r < 4; r++)
            {
                var (refLoss, lossTol, refGrad, gradTol) = ReferenceRow(new Config(DivergenceKind.JensenShannon, 0.5), sf[(r * 9)..(r * 9 + 9)], tf[(r * 9)..(r * 9 + 9)], 2);
                Assert.True(Math.Abs(got[r] - refLoss) <= lossTol, $"row {r}: {got[r]} vs {refLoss}");
                for (int j = 0; j < 9; j++) Assert.True(Math.Abs(g[r * 9 + j] - refGrad[j]) <= gradTol[j], $"row {r} [{j}]: {g[r * 9 + j]} vs {refGrad[j]}");
            }
        }
    }

    [Fact]
    public void BadInputs_Throw_NamingTheKernel()
    {
        var device = Device.Parse("emulator");
        using var s = Tensor.Zeros([2, 3], DType.Float32, device);
        using var t = Tensor.Zeros([2, 4], DType.Float32, device);
        using var cpu = Tensor.Zeros([2, 3]);
        using var intLabels = Tensor.Zeros([2], DType.Int32, device);
        using var shortLabels = Tensor.Zeros([3], DType.Int64, device);
        Assert.Contains("divergence kernel", Assert.Throws<ArgumentException>(() => KernelDispatch.Divergence(s, t, DivergenceKind.ForwardKL, 0)).Message);
        Assert.Contains("[2, 4]", Assert.Throws<ArgumentException>(() => KernelDispatch.Divergence(s, t, DivergenceKind.ForwardKL, 0)).Message);
        Assert.Throws<NotSupportedException>(() => KernelDispatch.Divergence(cpu, cpu, DivergenceKind.ForwardKL, 0));
        Assert.Throws<ArgumentException>(() => KernelDispatch.Divergence(s, cpu, DivergenceKind.ForwardKL, 0));
        Assert.Contains("int64", Assert.Throws<ArgumentException>(() => KernelDispatch.Divergence(s, s, DivergenceKind.ForwardKL, 0, labels: intLabels)).Message);
        Assert.Contains("one element per row", Assert.Throws<ArgumentException>(() => KernelDispatch.Divergence(s, s, DivergenceKind.ForwardKL, 0, labels: shortLabels)).Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => KernelDispatch.Divergence(s, s, DivergenceKind.JensenShannon, 1.5));
        Assert.Throws<ArgumentOutOfRangeException>(() => KernelDispatch.Divergence(s, s, DivergenceKind.SkewKL, -0.1));
        Assert.Throws<ArgumentOutOfRangeException>(() => KernelDispatch.Divergence(s, s, DivergenceKind.ForwardKL, 0, temperature: 0));
    }

    [Fact]
    public void Plan_FillsGroupsWithRowsForSmallVocabularies()
    {
        Assert.Equal((new Dim3(1), new Dim3(1, 256)), DivergencePlan.For(5, 1));
        Assert.Equal((new Dim3(2), new Dim3(4, 64)), DivergencePlan.For(65, 7));
        Assert.Equal((new Dim3(3), new Dim3(32, 8)), DivergencePlan.For(17, 33));
        Assert.Equal((new Dim3(5), new Dim3(256, 1)), DivergencePlan.For(5, 32000));
        Assert.Equal((new Dim3(5), new Dim3(16, 1)), DivergencePlan.For(5, 1000, 16));
        Assert.Equal(DivergenceKind.ForwardKL, DivergencePlan.Resolve(DivergenceKind.JensenShannon, 0));
        Assert.Equal(DivergenceKind.ReverseKL, DivergencePlan.Resolve(DivergenceKind.JensenShannon, 1));
        Assert.Equal(DivergenceKind.ForwardKL, DivergencePlan.Resolve(DivergenceKind.Alpha, 1));
        Assert.Equal(DivergenceKind.ReverseKL, DivergencePlan.Resolve(DivergenceKind.Alpha, 0));
        Assert.Equal(DivergenceKind.Alpha, DivergencePlan.Resolve(DivergenceKind.Alpha, 2));
    }

    /// <summary>The architectures every new kernel must compile for.</summary>
    public static TheoryData<int> Architectures => new() { 70, 80, 90 };

    [BackendTheory("nvrtc")]
    [MemberData(nameof(Architectures))]
    public void DivergenceAndOptimKernels_CompileWithNvrtc_WithoutSpills(int arch)
    {
        System.Runtime.CompilerServices.RuntimeHelpers.RunModuleConstructor(typeof(Tensor).Module.ModuleHandle);
        var kernels = KernelRegistry.All.Where(k => k.DeclaringType.EndsWith("DivergenceKernels") || k.DeclaringType.EndsWith("OptimKernels")).ToList();
        Assert.Equal(12, kernels.Count); // 8 divergence instances (BD-KD's balanced KL included), SgdStep, AdamStep, SgdStepMulti, AdamStepMulti (FusedOptimKernels)
        foreach (var kernel in kernels)
        {
            NvrtcModule module;
            try { module = Nvrtc.Compile(kernel.CudaSource, $"sm_{arch}", programName: kernel.EntryPoint + ".cu"); }
            catch (NvrtcException e) { throw new Xunit.Sdk.XunitException($"{kernel.Name} failed for sm_{arch}:\n{e.Message}"); }
            var usage = Assert.Single(module.Kernels, k => k.Kernel == kernel.EntryPoint);
            Assert.True(usage.StackFrameBytes == 0 && usage.SpillBytes == 0, $"{kernel.Name} on sm_{arch}: {usage}");
        }
    }
}
