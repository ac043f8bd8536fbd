using System.Reflection;
using Engine.Distillation;
using Engine.Runtime;
using Engine.Runtime.Kernels;
using Engine.Tensors;
using Engine.Tensors.AutoDiff;
using Device = Engine.Runtime.Device;

namespace Engine.Tests.Distillation;

/// <summary>
/// The logit losses' kernels (kernels/Divergence: BD-KD's balanced KL through the divergence kernel, DkdKernels,
/// TaidKernels, MultiTeacherKernels, TopKSparseKernels, PlackettLuceKernels) through the public losses (<see cref="Divergences.BdKd"/>,
/// <see cref="LogitLoss.Dkd"/>, <see cref="LogitLoss.Taid(Tensor, Tensor, double, Tensor?, long, Reduction, TeacherInput, LossImplementation)"/>,
/// <see cref="LogitLoss.MultiTeacher"/>, <see cref="LogitLoss.TopKSparse"/>, <see cref="LogitLoss.PlackettLuce"/>) on the emulator and on OpenCL (PoCL):
/// each case runs the loss three ways on the same float32 values — the CPU fused form (float32), the device
/// (<see cref="LossImplementation.Fused"/>: the kernel or an exception, never a silent fallback; a per-thread launch
/// counter must grow by exactly one) and the float64 reference (the composite form on float64 CPU tensors, itself
/// checked against plain-loop float64 transcriptions and gradchecked in LogitLosses/*Tests and DivergenceTests) —
/// and compares value and student gradient (after a backward with a non-trivial incoming gradient): every reduction,
/// ignored rows holding NaN/∞ garbage, [B, L, V] rows (batchmean over dim 0), odd V, V = 1, −∞ masked classes,
/// per-row temperatures, teachers as logits / log-probabilities / probabilities.
/// </summary>
public class DeviceLogitLossTests
{
    private static readonly Device Emulator = Device.Parse("emulator");
    private static readonly Device OpenCL = Device.Parse("opencl:0");

    private static readonly Reduction[] Reductions = [Reduction.None, Reduction.Sum, Reduction.Mean, Reduction.BatchMean, Reduction.TokenMean];

    // ------------------------------------------------------------------ launch counters (internal, read by reflection)

    private static Func<long> Counter(string type)
    {
        var p = typeof(Divergences).Assembly.GetType("Engine.Distillation." + type, throwOnError: true)!
            .GetProperty("LaunchesOnThisThread", BindingFlags.Static | BindingFlags.NonPublic)
            ?? throw new InvalidOperationException(type + ".LaunchesOnThisThread not found");
        return () => (long)p.GetValue(null)!;
    }

    private static readonly Func<long> LogitLaunches = Counter("DeviceLogitLoss");
    private static readonly Func<long> DivergenceLaunches = Counter("DeviceFusedDivergence");

    // ------------------------------------------------------------------ the comparison

    /// <summary>A loss on the given student logits (its other inputs made on the student's device, in its dtype).</summary>
    private delegate Tensor LossCall(Tensor student, LossImplementation implementation);

    private static double[] Values(Tensor x) => x.DType == DType.Float64 ? x.ToArray<double>() : x.ToArray<float>().Select(v => (double)v).ToArray();

    private static double[] F32(double[] x) => x.Select(v => (double)(float)v).ToArray();

    /// <summary>Host values as a tensor in <paramref name="like"/>'s dtype on its device.</summary>
    private static Tensor Like(double[] values, long[] shape, Tensor like)
    {
        var host = TestUtil.FromDoubles(values, shape, like.DType);
        return like.Device == Device.Cpu ? host : host.To(like.Device);
    }

    private static Tensor Longs(long[] values, long[] shape, Tensor like)
    {
        var host = Tensor.FromArray(values, shape);
        return like.Device == Device.Cpu ? host : host.To(like.Device);
    }

    /// <summary>
    /// <paramref name="call"/> on the CPU (Fused, float32), on <paramref name="device"/> (Fused: exactly one kernel launch) and
    /// on the CPU in float64 (Composite, the reference); value and gradient compared.
    /// </summary>
    private static void Compare(Device device, string label, LossCall call, double[] s, long[] shape, Reduction reduction, Func<long> launches,
        double tolerance = 1)
    {
        s = F32(s);
        var rows = shape[..^1];
        var rng = new Random(TestUtil.StableSeed(label));
        var gValues = reduction == Reduction.None ? TestUtil.RandomValues(rng, TestUtil.ShapeNumEl(rows), 0.5, 1.5) : [0.75];
        label = $"{label} {reduction} on {device}";

        (double[] Loss, double[] Grad) Run(Device on, DType dtype, LossImplementation impl)
        {
            using var scope = Tensor.NewDisposeScope();
            var host = TestUtil.FromDoubles(s, shape, dtype);
            var st = (on == Device.Cpu ? host : host.To(on)).Detach().RequiresGrad_();
            var loss = call(st, impl);
            Assert.Equal(on, loss.Device);
            Assert.Equal(dtype, loss.DType);
            Assert.Equal(reduction == Reduction.None ? rows : [], loss.ShapeArray());
            var gHost = reduction == Reduction.None ? TestUtil.FromDoubles(gValues, rows, dtype) : Tensor.Scalar(gValues[0], dtype);
            loss.Backward(on == Device.Cpu ? gHost : gHost.To(on));
            Assert.NotNull(st.Grad);
            Assert.Equal(on, st.Grad!.Device);
            return (Values(loss), Values(st.Grad!));
        }

        var (cpuLoss, cpuGrad) = Run(Device.Cpu, DType.Float32, LossImplementation.Fused);
        long before = launches();
        var (devLoss, devGrad) = Run(device, DType.Float32, LossImplementation.Fused);
        Assert.Equal(before + 1, launches()); // exactly one kernel launch for loss and gradient
        var (refLoss, refGrad) = Run(Device.Cpu, DType.Float64, LossImplementation.Composite);

        Assert.All(devLoss, x => Assert.False(double.IsNaN(x), $"{label}: NaN loss"));
        Assert.All(devGrad, x => Assert.True(double.IsFinite(x), $"{label}: gradient {x}"));
        double scaleL = Math.Max(refLoss.Select(Math.Abs).DefaultIfEmpty(0).Max(), 1e-2);
        double unit = Math.Max(refGrad.Select(Math.Abs).DefaultIfEmpty(0).Max(), scaleL);
        // float32 on the device and on the CPU, different summation orders (the kernel: per-thread partials and a tree in
        // float; the CPU: float64 rows): ~ε times the loss-sized terms. The float64 reference: float32 rounding of the math.
        TestUtil.AssertClose(cpuLoss, devLoss, tolerance * 5e-5 * scaleL, tolerance * 1e-4, label + ": loss vs CPU fused");
        TestUtil.AssertClose(cpuGrad, devGrad, tolerance * 5e-5 * unit, tolerance * 1e-3, label + ": gradient vs CPU fused");
        TestUtil.AssertClose(refLoss, devLoss, tolerance * 1e-4 * scaleL, tolerance * 2e-4, label + ": loss vs float64");
        TestUtil.AssertClose(refGrad, devGrad, tolerance * 1e-4 * unit, tolerance * 2e-3, label + ": gradient vs float64");
    }

    /// <summary>Row-wise log-softmax of host values (for teachers given as log-probabilities or probabilities).</summary>
    private static double[] LogSoftmaxRows(double[] x, int v)
    {
        var y = new double[x.Length];
        for (int r = 0; r < x.Length / v; r++)
        {
            double m = double.NegativeInfinity;
            for (int j = 0; j < v; j++) m = Math.Max(m, x[r * v + j]);
            double z = 0;
            for (int j = 0; j < v; j++) z += Math.Exp(x[r * v + j] - m);
            for (int j = 0; j < v; j++) y[r * v + j] = x[r * v + j] - m - Math.Log(z);
        }
        return F32(y);
    }

    private static double[] Exp(double[] x) => F32(x.Select(Math.Exp).ToArray());

    /// <summary>Random logits; row <paramref name="garbageRow"/> (an ignored row) holds NaN and ±∞.</summary>
    private static double[] Logits(Random rng, long n, double spread = 3, int garbageRow = -1, int v = 0)
    {
        var x = F32(TestUtil.RandomValues(rng, n, -spread, spread));
        if (garbageRow >= 0)
            for (int j = 0; j < v; j++) x[garbageRow * v + j] = j % 3 == 0 ? double.NaN : j % 3 == 1 ? double.PositiveInfinity : double.NegativeInfinity;
        return x;
    }

    // ------------------------------------------------------------------ BD-KD (the divergence kernel's balanced KL)

    private static void BdKdCases(Device device)
    {
        var rng = new Random(TestUtil.StableSeed("bdkd device"));
        long[] flat = [5, 37];
        var s = Logits(rng, 185, garbageRow: 1, v: 37);
        var t = Logits(rng, 185);
        double[] w = [0.3, 0.5, 0, 1, 0.8];
        long[] labels = [2, -100, 0, 5, 36];
        long[] blv = [2, 3, 9];
        var s3 = Logits(rng, 54, 4);
        var t3 = Logits(rng, 54, 4);
        double[] w3 = [0.1, 0.9, 0.5, 0.5, 0.25, 0.75];
        double[] temps = [0.5, 1, 2, 3, 4, 8];
        foreach (var red in Reductions)
        {
            Compare(device, "bd_kd ignored rows, T 2, T²", (x, impl) => Divergences.BdKd(x, Like(t, flat, x), Like(w, [5], x),
                new DivergenceOptions { Reduction = red, Temperature = 2, ScaleByTemperatureSquared = true, Labels = Longs(labels, [5], x), Implementation = impl }),
                s, flat, red, DivergenceLaunches);
            Compare(device, "bd_kd [B, L, V], per-row T", (x, impl) => Divergences.BdKd(x, Like(t3, blv, x), Like(w3, [2, 3], x),
                new DivergenceOptions { Reduction = red, RowTemperature = Like(temps, [2, 3], x), Implementation = impl }),
                s3, blv, red, DivergenceLaunches);
        }
        // −∞ masked in both (class 4 of every row), teacher as log-probabilities; V = 1.
        var sm = (double[])s3.Clone();
        var tm = (double[])t3.Clone();
        for (int r = 0; r < 6; r++) sm[r * 9 + 4] = tm[r * 9 + 4] = double.NegativeInfinity;
        var lp = LogSoftmaxRows(tm, 9);
        Compare(device, "bd_kd masked class, teacher log-probabilities", (x, impl) => Divergences.BdKd(x, Like(lp, blv, x), Like(w3, [2, 3], x),
            new DivergenceOptions { TeacherInput = TeacherInput.LogProbabilities, Implementation = impl }), sm, blv, Reduction.BatchMean, DivergenceLaunches);
        Compare(device, "bd_kd V = 1", (x, impl) => Divergences.BdKd(x, Like(t[..4], [4, 1], x), Like(w[..4], [4], x),
            new DivergenceOptions { Reduction = Reduction.Sum, Implementation = impl }), s[..4], [4, 1], Reduction.Sum, DivergenceLaunches);
    }

    // ------------------------------------------------------------------ DKD

    private static void DkdCases(Device device)
    {
        var rng = new Random(TestUtil.StableSeed("dkd device"));
        long[] flat = [6, 37];
        var s = Logits(rng, 222, garbageRow: 2, v: 37);
        var t = Logits(rng, 222);
        long[] labels = [3, 0, -100, 36, 17, 9];
        long[] blv = [2, 3, 9];
        var s3 = Logits(rng, 54, 4);
        var t3 = Logits(rng, 54, 4);
        long[] labels3 = [1, 8, -7, 0, 4, 4];
        double[] temps = [0.5, 1, 2, 3, 4, 8];
        foreach (var red in Reductions)
        {
            Compare(device, "dkd ignored rows, T 4, warm-up", (x, impl) => LogitLoss.Dkd(x, Like(t, flat, x), Longs(labels, [6], x), 1.0, 8.0, 4.0,
                epoch: 5, warmupEpochs: 20, reduction: red, implementation: impl), s, flat, red, LogitLaunches);
            Compare(device, "dkd [B, L, V], per-row T, ignore -7", (x, impl) => LogitLoss.Dkd(x, Like(t3, blv, x), Longs(labels3, [2, 3], x), 1.5, 6.0,
                temperatures: Like(temps, [2, 3], x), reduction: red, ignoreIndex: -7, implementation: impl), s3, blv, red, LogitLaunches);
        }
        // −∞ masked in both (a non-target class), teacher as log-probabilities and as probabilities (one zero class).
        var sm = (double[])s3.Clone();
        var tm = (double[])t3.Clone();
        for (int r = 0; r < 6; r++) sm[r * 9 + 5] = tm[r * 9 + 5] = double.NegativeInfinity;
        var lp = LogSoftmaxRows(tm, 9);
        var pr = Exp(lp);
        long[] labels4 = [1, 8, 2, 0, 4, 4];
        Compare(device, "dkd masked class, teacher log-probabilities", (x, impl) => LogitLoss.Dkd(x, Like(lp, blv, x), Longs(labels4, [2, 3], x),
            temperature: 2, teacherInput: TeacherInput.LogProbabilities, implementation: impl), sm, blv, Reduction.BatchMean, LogitLaunches);
        Compare(device, "dkd teacher probabilities", (x, impl) => LogitLoss.Dkd(x, Like(pr, blv, x), Longs(labels4, [2, 3], x),
            temperature: 1, scaleByTemperatureSquared: false, reduction: Reduction.Sum, teacherInput: TeacherInput.Probabilities, implementation: impl), sm, blv, Reduction.Sum, LogitLaunches);
        // V = 1 (loss 0, gradient 0) and V = 2.
        Compare(device, "dkd V = 1", (x, impl) => LogitLoss.Dkd(x, Like(t[..4], [4, 1], x), Longs([0, 0, 0, 0], [4], x), implementation: impl),
            s[..4], [4, 1], Reduction.BatchMean, LogitLaunches);
        Compare(device, "dkd V = 2", (x, impl) => LogitLoss.Dkd(x, Like(t[..8], [4, 2], x), Longs([0, 1, 1, 0], [4], x), implementation: impl),
            s[..8], [4, 2], Reduction.BatchMean, LogitLaunches);
    }

    // ------------------------------------------------------------------ TAID

    private static void TaidCases(Device device)
    {
        var rng = new Random(TestUtil.StableSeed("taid device"));
        long[] flat = [6, 37];
        var s = Logits(rng, 222, garbageRow: 4, v: 37);
        var t = Logits(rng, 222);
        long[] labels = [3, 0, 1, 36, -100, 9];
        long[] blv = [2, 3, 9];
        var s3 = Logits(rng, 54, 4);
        var t3 = Logits(rng, 54, 4);
        foreach (var red in Reductions)
        {
            Compare(device, "taid u 0.4, ignored rows", (x, impl) => LogitLoss.Taid(x, Like(t, flat, x), 0.4, Longs(labels, [6], x), reduction: red, implementation: impl),
                s, flat, red, LogitLaunches);
            Compare(device, "taid [B, L, V] u 0.7", (x, impl) => LogitLoss.Taid(x, Like(t3, blv, x), 0.7, reduction: red, implementation: impl), s3, blv, red, LogitLaunches);
        }
        foreach (var u in new[] { 0.0, 1.0 })
            Compare(device, $"taid u {u}", (x, impl) => LogitLoss.Taid(x, Like(t3, blv, x), u, implementation: impl), s3, blv, Reduction.TokenMean, LogitLaunches);
        // Student-masked classes (−∞ in s only: left out of the sum; at u = 1 the teacher's mass there makes R < 1).
        var sm = (double[])s3.Clone();
        for (int r = 0; r < 6; r++) sm[r * 9 + (r % 9)] = double.NegativeInfinity;
        foreach (var u in new[] { 0.5, 1.0 })
            Compare(device, $"taid student-masked class u {u}", (x, impl) => LogitLoss.Taid(x, Like(t3, blv, x), u, implementation: impl), sm, blv, Reduction.Sum, LogitLaunches);
        var pr = Exp(LogSoftmaxRows(t3, 9));
        Compare(device, "taid teacher probabilities", (x, impl) => LogitLoss.Taid(x, Like(pr, blv, x), 0.6, teacherInput: TeacherInput.Probabilities, implementation: impl),
            s3, blv, Reduction.BatchMean, LogitLaunches);
        Compare(device, "taid V = 1", (x, impl) => LogitLoss.Taid(x, Like(t[..4], [4, 1], x), 0.5, implementation: impl), s[..4], [4, 1], Reduction.Mean, LogitLaunches);
    }

    // ------------------------------------------------------------------ multi-teacher

    private static void MultiTeacherCases(Device device)
    {
        var rng = new Random(TestUtil.StableSeed("multi-teacher device"));
        long[] flat = [6, 37];
        var s = Logits(rng, 222, garbageRow: 0, v: 37);
        var ts = Enumerable.Range(0, 3).Select(_ => Logits(rng, 222, 4)).ToArray();
        long[] labels = [-100, 0, 1, 36, 5, 9];
        long[] blv = [2, 3, 9];
        var s3 = Logits(rng, 54, 4);
        var t3 = Enumerable.Range(0, 2).Select(_ => Logits(rng, 54, 4)).ToArray();
        double[] temps = [0.5, 1, 2, 3, 4, 8];
        foreach (var red in Reductions)
        {
            Compare(device, "multi-teacher KL, weights, ignored rows", (x, impl) => LogitLoss.MultiTeacher(x, ts.Select(t => Like(t, flat, x)).ToArray(), 2.0,
                teacherWeights: [1, 2, 1], labels: Longs(labels, [6], x), reduction: red, implementation: impl), s, flat, red, LogitLaunches);
            Compare(device, "multi-teacher CE, per-teacher T, per-row T", (x, impl) => LogitLoss.MultiTeacher(x, t3.Select(t => Like(t, blv, x)).ToArray(), 1.0,
                teacherTemperatures: [1.0, 3.0], loss: SoftTargetLoss.CrossEntropy, temperatures: Like(temps, [2, 3], x), reduction: red, implementation: impl),
                s3, blv, red, LogitLaunches);
        }
        // A class masked in the student and every teacher; teachers as probabilities (a zero class); one teacher; V = 1.
        var sm = (double[])s3.Clone();
        var tm = t3.Select(t => (double[])t.Clone()).ToArray();
        for (int r = 0; r < 6; r++) sm[r * 9 + 2] = tm[0][r * 9 + 2] = tm[1][r * 9 + 2] = double.NegativeInfinity;
        Compare(device, "multi-teacher masked class", (x, impl) => LogitLoss.MultiTeacher(x, tm.Select(t => Like(t, blv, x)).ToArray(), 2.0, implementation: impl),
            sm, blv, Reduction.BatchMean, LogitLaunches);
        var pr = tm.Select(t => Exp(LogSoftmaxRows(t, 9))).ToArray();
        Compare(device, "multi-teacher probabilities", (x, impl) => LogitLoss.MultiTeacher(x, pr.Select(t => Like(t, blv, x)).ToArray(), 1.0,
            teacherInput: TeacherInput.Probabilities, loss: SoftTargetLoss.CrossEntropy, implementation: impl), sm, blv, Reduction.Sum, LogitLaunches);
        Compare(device, "multi-teacher one teacher", (x, impl) => LogitLoss.MultiTeacher(x, [Like(ts[0], flat, x)], 4.0, labels: Longs(labels, [6], x), implementation: impl),
            s, flat, Reduction.TokenMean, LogitLaunches);
        Compare(device, "multi-teacher V = 1", (x, impl) => LogitLoss.MultiTeacher(x, [Like(ts[0][..4], [4, 1], x), Like(ts[1][..4], [4, 1], x)], 2.0, implementation: impl),
            s[40..44], [4, 1], Reduction.BatchMean, LogitLaunches);
    }

    // ------------------------------------------------------------------ top-k sparse teacher

    /// <summary>k distinct classes per row and their probabilities (90 % of the mass), log-probabilities and logits.</summary>
    private static (long[] Idx, double[] Probs) TopK(Random rng, int rows, int v, int k, double mass = 0.9)
    {
        var idx = new long[rows * k];
        var probs = new double[rows * k];
        for (int i = 0; i < rows; i++)
        {
            var perm = Enumerable.Range(0, v).OrderBy(_ => rng.Next()).Take(k).ToArray();
            var raw = perm.Select(_ => rng.NextDouble() + 0.05).ToArray();
            double scale = mass / raw.Sum();
            for (int a = 0; a < k; a++) { idx[i * k + a] = perm[a]; probs[i * k + a] = (float)(raw[a] * scale); }
        }
        return (idx, probs);
    }

    private static void TopKCases(Device device)
    {
        var rng = new Random(TestUtil.StableSeed("top-k device"));
        long[] flat = [6, 37];
        var s = Logits(rng, 222, garbageRow: 3, v: 37);
        long[] labels = [0, 1, 2, -100, 5, 9];
        var (idx, probs) = TopK(rng, 6, 37, 5);
        var logProbs = F32(probs.Select(x => Math.Log(x)).ToArray());
        long[] blv = [2, 3, 9];
        var s3 = Logits(rng, 54, 4);
        var (idx3, probs3) = TopK(rng, 6, 9, 3);
        var logits3 = F32(TestUtil.RandomValues(rng, 18, -3, 3));
        double[] temps = [0.5, 1, 2, 3, 4, 8];
        foreach (var red in Reductions)
        {
            foreach (var rest in new[] { TopKRest.Renormalize, TopKRest.Uniform })
                Compare(device, $"top-k {rest} probabilities, ignored rows", (x, impl) => LogitLoss.TopKSparse(x, Longs(idx, [6, 5], x), Like(probs, [6, 5], x), rest,
                    temperature: 2, labels: Longs(labels, [6], x), reduction: red, implementation: impl), s, flat, red, LogitLaunches);
            Compare(device, "top-k renormalize logits, per-row T", (x, impl) => LogitLoss.TopKSparse(x, Longs(idx3, [2, 3, 3], x), Like(logits3, [2, 3, 3], x),
                TopKRest.Renormalize, temperatures: Like(temps, [2, 3], x), reduction: red, teacherInput: TeacherInput.Logits, implementation: impl), s3, blv, red, LogitLaunches);
        }
        Compare(device, "top-k uniform log-probabilities", (x, impl) => LogitLoss.TopKSparse(x, Longs(idx, [6, 5], x), Like(logProbs, [6, 5], x), TopKRest.Uniform,
            teacherInput: TeacherInput.LogProbabilities, labels: Longs(labels, [6], x), implementation: impl), s, flat, Reduction.TokenMean, LogitLaunches);
        Compare(device, "top-k renormalize log-probabilities", (x, impl) => LogitLoss.TopKSparse(x, Longs(idx, [6, 5], x), Like(logProbs, [6, 5], x), TopKRest.Renormalize,
            teacherInput: TeacherInput.LogProbabilities, labels: Longs(labels, [6], x), implementation: impl), s, flat, Reduction.Sum, LogitLaunches);
        // k = 1, k = V (with a mass below 1: P ≠ 1), V = 1.
        var (idx1, probs1) = TopK(rng, 6, 9, 1);
        Compare(device, "top-k k = 1 uniform", (x, impl) => LogitLoss.TopKSparse(x, Longs(idx1, [2, 3, 1], x), Like(probs1, [2, 3, 1], x), TopKRest.Uniform, implementation: impl),
            s3, blv, Reduction.BatchMean, LogitLaunches);
        var (idx9, probs9) = TopK(rng, 6, 9, 9, mass: 0.95);
        foreach (var rest in new[] { TopKRest.Renormalize, TopKRest.Uniform })
            Compare(device, $"top-k k = V {rest}", (x, impl) => LogitLoss.TopKSparse(x, Longs(idx9, [2, 3, 9], x), Like(probs9, [2, 3, 9], x), rest, implementation: impl),
                s3, blv, Reduction.TokenMean, LogitLaunches);
        Compare(device, "top-k V = 1", (x, impl) => LogitLoss.TopKSparse(x, Longs([0, 0, 0, 0], [4, 1], x), Like([1, 1, 1, 1], [4, 1], x), TopKRest.Uniform, implementation: impl),
            s[..4], [4, 1], Reduction.Sum, LogitLaunches);
        // A student class masked (−∞) off the stored classes: renormalize gives it 0 target mass.
        var sm = (double[])s3.Clone();
        for (int r = 0; r < 6; r++)
            for (int j = 0; j < 9; j++)
                if (!idx3.Skip(r * 3).Take(3).Contains(j)) { sm[r * 9 + j] = double.NegativeInfinity; break; }
        Compare(device, "top-k renormalize, masked student class off K", (x, impl) => LogitLoss.TopKSparse(x, Longs(idx3, [2, 3, 3], x), Like(probs3, [2, 3, 3], x),
            TopKRest.Renormalize, implementation: impl), sm, blv, Reduction.TokenMean, LogitLaunches);
    }

    // ------------------------------------------------------------------ PLD (Plackett–Luce)

    private static void PldCases(Device device)
    {
        var rng = new Random(TestUtil.StableSeed("pld device"));
        long[] flat = [6, 37];
        var s = Logits(rng, 222, garbageRow: 5, v: 37);
        var t = Logits(rng, 222);
        long[] labels = [3, 0, 1, 36, 17, -100];
        long[] blv = [2, 3, 9];
        var s3 = Logits(rng, 54, 4);
        var t3 = Logits(rng, 54, 4);
        long[] labels3 = [1, 8, -7, 0, 4, 4];
        double[] temps = [0.5, 1, 2, 3, 4, 8];
        foreach (var red in Reductions)
        {
            Compare(device, "pld ignored rows, T 2", (x, impl) => LogitLoss.PlackettLuce(x, Like(t, flat, x), Longs(labels, [6], x), 2.0, reduction: red, implementation: impl),
                s, flat, red, LogitLaunches);
            Compare(device, "pld [B, L, V], per-row T, ignore -7", (x, impl) => LogitLoss.PlackettLuce(x, Like(t3, blv, x), Longs(labels3, [2, 3], x),
                temperatures: Like(temps, [2, 3], x), ignoreIndex: -7, reduction: red, implementation: impl), s3, blv, red, LogitLaunches);
        }
        // Ties in the teacher (equal values: ranked by class index), a teacher-masked class (w = 0) and teacher probabilities.
        var tt = (double[])t3.Clone();
        for (int r = 0; r < 6; r++) { tt[r * 9 + 2] = tt[r * 9 + 6] = tt[r * 9 + 7]; tt[r * 9 + 4] = double.NegativeInfinity; }
        long[] labels4 = [1, 8, 2, 0, 5, 3];
        Compare(device, "pld ties and a teacher-masked class", (x, impl) => LogitLoss.PlackettLuce(x, Like(tt, blv, x), Longs(labels4, [2, 3], x), implementation: impl),
            s3, blv, Reduction.BatchMean, LogitLaunches);
        var pr = Exp(LogSoftmaxRows(tt, 9));
        Compare(device, "pld teacher probabilities", (x, impl) => LogitLoss.PlackettLuce(x, Like(pr, blv, x), Longs(labels4, [2, 3], x),
            teacherInput: TeacherInput.Probabilities, reduction: Reduction.Sum, implementation: impl), s3, blv, Reduction.Sum, LogitLaunches);
        // Logits spanning far more than float32's exp range (linear suffix sums would underflow): the log-space scans.
        var wide = s3.Select((x, i) => (double)(float)(x * (i % 9 == 0 ? 60 : 1))).ToArray();
        Compare(device, "pld wide logits", (x, impl) => LogitLoss.PlackettLuce(x, Like(t3, blv, x), Longs(labels4, [2, 3], x), implementation: impl),
            wide, blv, Reduction.TokenMean, LogitLaunches);
        // V = 1 and a V that is not a power of two with several rows per group.
        Compare(device, "pld V = 1", (x, impl) => LogitLoss.PlackettLuce(x, Like(t[..4], [4, 1], x), Longs([0, 0, 0, 0], [4], x), implementation: impl),
            s[..4], [4, 1], Reduction.Sum, LogitLaunches);
        var s5 = Logits(rng, 50);
        var t5 = Logits(rng, 50);
        Compare(device, "pld V = 5", (x, impl) => LogitLoss.PlackettLuce(x, Like(t5, [10, 5], x), Longs([0, 1, 2, 3, 4, 4, 3, 2, 1, 0], [10], x), implementation: impl),
            s5, [10, 5], Reduction.BatchMean, LogitLaunches);
    }

    // ------------------------------------------------------------------ emulator and OpenCL

    [Fact] public void Emulator_BdKd_MatchesCpuFusedAndFloat64() => BdKdCases(Emulator);
    [Fact] public void Emulator_Dkd_MatchesCpuFusedAndFloat64() => DkdCases(Emulator);
    [Fact] public void Emulator_Taid_MatchesCpuFusedAndFloat64() => TaidCases(Emulator);
    [Fact] public void Emulator_MultiTeacher_MatchesCpuFusedAndFloat64() => MultiTeacherCases(Emulator);
    [Fact] public void Emulator_TopKSparse_MatchesCpuFusedAndFloat64() => TopKCases(Emulator);
    [Fact] public void Emulator_PlackettLuce_MatchesCpuFusedAndFloat64() => PldCases(Emulator);
    [Fact] public void Emulator_PathsAndFallbacks() => Paths(Emulator);

    [BackendFact("opencl")] public void OpenCL_BdKd_MatchesCpuFusedAndFloat64() => BdKdCases(OpenCL);
    [BackendFact("opencl")] public void OpenCL_Dkd_MatchesCpuFusedAndFloat64() => DkdCases(OpenCL);
    [BackendFact("opencl")] public void OpenCL_Taid_MatchesCpuFusedAndFloat64() => TaidCases(OpenCL);
    [BackendFact("opencl")] public void OpenCL_MultiTeacher_MatchesCpuFusedAndFloat64() => MultiTeacherCases(OpenCL);
    [BackendFact("opencl")] public void OpenCL_TopKSparse_MatchesCpuFusedAndFloat64() => TopKCases(OpenCL);
    [BackendFact("opencl")] public void OpenCL_PlackettLuce_MatchesCpuFusedAndFloat64() => PldCases(OpenCL);
    [BackendFact("opencl")] public void OpenCL_PathsAndFallbacks() => Paths(OpenCL);

    /// <summary>
    /// Auto on a device runs the kernel (one launch, bit-identical to Fused); every row ignored gives 0 and a zero gradient;
    /// a teacher that requires grad falls back to the composite form under Auto (no launch) and throws under Fused; float64
    /// logits on a device throw under Fused; createGraph recomputes through the composite form (Hessian-vector product = CPU's).
    /// </summary>
    private static void Paths(Device device)
    {
        using var scope = Tensor.NewDisposeScope();
        var rng = new Random(TestUtil.StableSeed("device logit paths"));
        var s = TestUtil.Random(rng, [4, 7], lo: -3, hi: 3).To(device);
        var t = TestUtil.Random(rng, [4, 7], lo: -3, hi: 3).To(device);
        var y = Tensor.FromArray(new long[] { 1, 0, 6, 3 }, 4).To(device);

        long before = LogitLaunches();
        var auto = LogitLoss.Dkd(s, t, y);
        Assert.Equal(before + 1, LogitLaunches());
        var fused = LogitLoss.Dkd(s, t, y, implementation: LossImplementation.Fused);
        Assert.Equal(Values(fused), Values(auto));
        before = LogitLaunches();
        _ = LogitLoss.Taid(s, t, 0.3);
        _ = LogitLoss.MultiTeacher(s, [t, s]);
        _ = LogitLoss.TopKSparse(s, Tensor.FromArray(new long[] { 0, 1, 2, 3, 4, 5, 6, 0 }, 4, 2).To(device), Tensor.Full([4, 2], 0.25f, DType.Float32).To(device));
        _ = LogitLoss.PlackettLuce(s, t, y);
        Assert.Equal(before + 4, LogitLaunches());
        before = DivergenceLaunches();
        _ = Divergences.BdKd(s, t, Tensor.Full([4], 0.5f, DType.Float32).To(device));
        Assert.Equal(before + 1, DivergenceLaunches());

        // Every row ignored: 0 and a zero gradient (no NaN from an empty mean).
        var ignored = Tensor.FromArray(new long[] { -100, -100, -100, -100 }, 4).To(device);
        foreach (var red in Reductions)
        {
            var sg = s.Detach().RequiresGrad_();
            var losses = new[]
            {
                LogitLoss.Dkd(sg, t, ignored, reduction: red, implementation: LossImplementation.Fused),
                LogitLoss.Taid(sg, t, 0.5, ignored, reduction: red, implementation: LossImplementation.Fused),
                LogitLoss.MultiTeacher(sg, [t], labels: ignored, reduction: red, implementation: LossImplementation.Fused),
            };
            foreach (var loss in losses)
            {
                Assert.All(Values(loss), x => Assert.Equal(0.0, x));
                (red == Reduction.None ? loss.Sum() : loss).Backward();
            }
            Assert.All(Values(sg.Grad!), g => Assert.Equal(0.0, g));
        }

        // A teacher that requires grad: composite under Auto (its gradient reaches the teacher), an error under Fused.
        var tg = t.Detach().RequiresGrad_();
        var e = Assert.Throws<InvalidOperationException>(() => LogitLoss.Taid(s, tg, 0.5, implementation: LossImplementation.Fused));
        Assert.Contains("taid_loss", e.Message);
        before = LogitLaunches();
        var composite = LogitLoss.MultiTeacher(s, [tg, t]);
        Assert.Equal(before, LogitLaunches());
        composite.Backward();
        Assert.NotNull(tg.Grad);

        // float64 on a device: no kernel.
        var s64 = TestUtil.Random(rng, [4, 7], DType.Float64).To(device);
        e = Assert.Throws<InvalidOperationException>(() => LogitLoss.Taid(s64, s64, 0.5, implementation: LossImplementation.Fused));
        Assert.Contains("float32", e.Message);

        // createGraph: the first-order gradient is differentiable and equals the CPU fused form's, as does H·v.
        var sc = TestUtil.Random(rng, [3, 6], lo: -2, hi: 2);
        var tc = TestUtil.Random(rng, [3, 6], lo: -2, hi: 2);
        var vc = TestUtil.Random(rng, [3, 6]);
        var yc = Tensor.FromArray(new long[] { 0, 5, 2 }, 3);
        (double[] First, double[] Second) Run(Device on)
        {
            var st = sc.To(on).Detach().RequiresGrad_();
            var loss = LogitLoss.MultiTeacher(st, [tc.To(on), tc.To(on).Mul(0.5)], temperature: 2, labels: yc.To(on), implementation: LossImplementation.Fused);
            var g = Autograd.Grad([loss], [st], createGraph: true)[0]!;
            var hv = Autograd.Grad([g.Mul(vc.To(on)).Sum()], [st])[0]!;
            Assert.Equal(on, hv.Device);
            return (Values(g), Values(hv));
        }
        var (c1, c2) = Run(Device.Cpu);
        var (d1, d2) = Run(device);
        TestUtil.AssertClose(c1, d1, 1e-6, 1e-4, $"multi-teacher first-order gradient (createGraph) on {device}");
        TestUtil.AssertClose(c2, d2, 1e-6, 1e-4, $"multi-teacher Hessian-vector product on {device}");
    }

    // ------------------------------------------------------------------ NVRTC

    /// <summary>The architectures every new kernel must compile for.</summary>
    public static TheoryData<int> Architectures => new() { 70, 80, 90 };

    /// <summary>The logit-loss kernels (and BD-KD's instance of the divergence kernel) compile for sm_70/80/90 with no stack frame and no spills.</summary>
    [BackendTheory("nvrtc")]
    [MemberData(nameof(Architectures))]
    public void LogitLossKernels_CompileWithNvrtc_WithoutSpills(int arch)
    {
        System.Runtime.CompilerServices.RuntimeHelpers.RunModuleConstructor(typeof(Tensor).Module.ModuleHandle);
        string[] names = ["Divergence__BalancedKLOp", "Dkd", "Taid", "MultiTeacher", "TopKSparse", "PlackettLuce"];
        foreach (var name in names)
        {
            var kernel = Assert.Single(KernelRegistry.All, k => k.EntryPoint == name && k.DeclaringType.StartsWith("Engine.Tensors.Kernels"));
            NvrtcModule module;
            try { module = Nvrtc.Compile(kernel.CudaSource, $"sm_{arch}", programName: kernel.EntryPoint + ".cu"); }
            catch (NvrtcException ex) { throw new Xunit.Sdk.XunitException($"{kernel.Name} failed for sm_{arch}:\n{ex.Message}"); }
            var usage = Assert.Single(module.Kernels, k => k.Kernel == kernel.EntryPoint);
            Assert.True(usage.StackFrameBytes == 0 && usage.SpillBytes == 0, $"{kernel.Name} on sm_{arch}: {usage}");
        }
    }
}
