using System.Reflection;
using Engine.Distillation;
using Engine.Runtime;
using Engine.Tensors;
using Device = Engine.Runtime.Device;

namespace Engine.Tests.Distillation;

/// <summary>
/// The fused divergences on an accelerator device (DeviceFusedDivergence: the divergence kernel through
/// <c>Divergences.*</c>) against the CPU fused form on the same float32 inputs, on the emulator and on OpenCL
/// (PoCL): every divergence kind (with the JSD and α ends), every reduction, loss and gradient, with ignored
/// rows (holding NaN/∞ logits), per-row temperatures, [B, L, V] rows, non-contiguous inputs and teachers given
/// as log-probabilities or probabilities. The device side always asks for <see cref="LossImplementation.Fused"/>,
/// which throws instead of falling back, and a per-thread launch counter shows that Auto (and
/// <see cref="Losses.KnowledgeDistillation"/>) ran the kernel. The CPU fused form itself is tested against a
/// float64 reference in <see cref="DivergenceTests"/>.
/// </summary>
public class DeviceFusedDivergenceTests
{
    private static readonly Device Emulator = Device.Parse("emulator");
    private static readonly Device OpenCL = Device.Parse("opencl:0");

    private static readonly Reduction[] Reductions = [Reduction.None, Reduction.Sum, Reduction.Mean, Reduction.BatchMean, Reduction.TokenMean];

    /// <summary>A divergence call by name (the parameterised ones at interior values and at their ends).</summary>
    private static readonly Dictionary<string, Func<Tensor, Tensor, DivergenceOptions, Tensor>> Kinds = new()
    {
        ["forward_kl"] = (s, t, o) => Divergences.ForwardKl(s, t, o),
        ["reverse_kl"] = (s, t, o) => Divergences.ReverseKl(s, t, o),
        ["jsd 0.5"] = (s, t, o) => Divergences.Jsd(s, t, 0.5, o),
        ["jsd 0.1"] = (s, t, o) => Divergences.Jsd(s, t, 0.1, o),
        ["jsd 0"] = (s, t, o) => Divergences.Jsd(s, t, 0, o),
        ["jsd 1"] = (s, t, o) => Divergences.Jsd(s, t, 1, o),
        ["total_variation"] = (s, t, o) => Divergences.TotalVariation(s, t, o),
        ["skew_kl 0.1"] = (s, t, o) => Divergences.SkewKl(s, t, 0.1, o),
        ["skew_reverse_kl 0.1"] = (s, t, o) => Divergences.SkewReverseKl(s, t, 0.1, o),
        ["alpha 0.5"] = (s, t, o) => Divergences.AlphaDivergence(s, t, 0.5, o),
        ["alpha 2"] = (s, t, o) => Divergences.AlphaDivergence(s, t, 2, o),
        ["alpha -0.5"] = (s, t, o) => Divergences.AlphaDivergence(s, t, -0.5, o),
        ["alpha 1"] = (s, t, o) => Divergences.AlphaDivergence(s, t, 1, o),
        ["alpha 0"] = (s, t, o) => Divergences.AlphaDivergence(s, t, 0, o),
    };

    public static TheoryData<string> KindNames() => [.. Kinds.Keys];

    // ------------------------------------------------------------------ launch counter

    private static readonly PropertyInfo LaunchCounter =
        typeof(Divergences).Assembly.GetType("Engine.Distillation.DeviceFusedDivergence", throwOnError: true)!
            .GetProperty("LaunchesOnThisThread", BindingFlags.Static | BindingFlags.NonPublic)
        ?? throw new InvalidOperationException("DeviceFusedDivergence.LaunchesOnThisThread not found");

    /// <summary>Divergence-kernel launches made by this thread through Divergences.* (internal counter, read by reflection).</summary>
    private static long Launches() => (long)LaunchCounter.GetValue(null)!;

    // ------------------------------------------------------------------ the comparison

    /// <summary>A float32 tensor's values (copied to the host when on a device; the tensor itself is left alone).</summary>
    private static double[] Host(Tensor x) => x.ToArray<float>().Select(v => (double)v).ToArray();

    /// <summary><paramref name="x"/>'s values on <paramref name="device"/>, as a strided view (every other element of the last dim) when asked.</summary>
    private static Tensor Place(Tensor x, Device device, bool strided)
    {
        if (!strided) return device == Device.Cpu ? x : x.To(device);
        return TestUtil.StridedOn(x, device);
    }

    /// <summary>
    /// <paramref name="call"/> on CPU (Fused) and on <paramref name="device"/> (Fused: the kernel or an exception) on the
    /// same float32 values: loss and the student's gradient after a backward with a non-trivial incoming gradient.
    /// </summary>
    private static void Compare(Device device, string name, Func<Tensor, Tensor, DivergenceOptions, Tensor> call, double[] s, double[] t, long[] shape,
        DivergenceOptions options, string what, double[]? rowTemps = null, long[]? labels = null, bool nonContiguous = false)
    {
        using var scope = Tensor.NewDisposeScope();
        var rowsShape = shape[..^1];
        long rows = TestUtil.ShapeNumEl(rowsShape);
        var rng = new Random(TestUtil.StableSeed(name + what));
        var gValues = options.Reduction == Reduction.None ? TestUtil.RandomValues(rng, rows, 0.5, 1.5) : [0.75];
        var label = $"{name} {what} {options.Reduction} on {device}";

        (double[] Loss, double[] Grad) Run(Device on, LossImplementation impl)
        {
            var st = Place(TestUtil.FromDoubles(s, shape), on, nonContiguous);
            var tt = Place(TestUtil.FromDoubles(t, shape), on, nonContiguous);
            if (nonContiguous) Assert.False(st.IsContiguous && shape[^1] > 1);
            st = st.Detach().RequiresGrad_();
            var o = options with
            {
                Implementation = impl,
                RowTemperature = rowTemps is null ? null : TestUtil.FromDoubles(rowTemps, rowsShape).To(on),
                Labels = labels is null ? null : Tensor.FromArray(labels, rowsShape).To(on),
            };
            var loss = call(st, tt, o);
            Assert.Equal(on, loss.Device);
            Assert.Equal(DType.Float32, loss.DType);
            Assert.Equal(options.Reduction == Reduction.None ? rowsShape : [], loss.ShapeArray());
            var gOut = (options.Reduction == Reduction.None ? TestUtil.FromDoubles(gValues, rowsShape) : Tensor.Scalar(gValues[0], DType.Float32)).To(on);
            loss.Backward(gOut);
            Assert.NotNull(st.Grad);
            Assert.Equal(on, st.Grad!.Device);
            return (Host(loss), Host(st.Grad!));
        }

        var (cpuLoss, cpuGrad) = Run(Device.Cpu, LossImplementation.Fused);
        long before = Launches();
        var (devLoss, devGrad) = Run(device, LossImplementation.Fused);
        Assert.Equal(before + 1, Launches()); // exactly one kernel launch for loss and gradient

        double scaleL = cpuLoss.Select(Math.Abs).DefaultIfEmpty(0).Max(), scaleG = cpuGrad.Select(Math.Abs).DefaultIfEmpty(0).Max();
        double tMin = rowTemps?.Min() ?? options.Temperature;
        // float32 on both sides, different summation orders (the kernel: per-thread partial sums and a tree in float;
        // the CPU: SIMD lanes, row sums in float64): the error of a term a − q·Σa is ~ε times the loss-sized terms / T.
        double unit = Math.Max(scaleG, Math.Max(scaleL, 1e-2) / tMin);
        TestUtil.AssertClose(cpuLoss, devLoss, 3e-5 * Math.Max(scaleL, 1e-2), 1e-4, label + " loss");
        TestUtil.AssertClose(cpuGrad, devGrad, 3e-5 * unit, 1e-3, label + " grad");
    }

    /// <summary>Every reduction, on [5, 9] rows with ignored rows (NaN / +∞ logits) and on [2, 3, 7] rows with per-row T.</summary>
    private static void AllReductions(Device device, string name)
    {
        var call = Kinds[name];
        var rng = new Random(TestUtil.StableSeed("device-fused " + name));
        long[] flat = [5, 9];
        var s = F32(TestUtil.RandomValues(rng, 45, -3, 3));
        var t = F32(TestUtil.RandomValues(rng, 45, -3, 3));
        for (int k = 9; k < 18; k++) s[k] = k % 2 == 0 ? double.NaN : double.PositiveInfinity; // row 1 is ignored
        long[] labels = [3, -100, 0, -100, 8];

        long[] blv = [2, 3, 7];
        var s3 = F32(TestUtil.RandomValues(rng, 42, -4, 4));
        var t3 = F32(TestUtil.RandomValues(rng, 42, -4, 4));
        var temps = new[] { 0.5, 1, 2, 3, 4, 8.0 };
        long[] labels3 = [1, 4, -7, 3, -7, 0];

        foreach (var red in Reductions)
        {
            Compare(device, name, call, s, t, flat, new DivergenceOptions { Reduction = red, Temperature = 2, ScaleByTemperatureSquared = true }, "ignored rows, T 2, T²", labels: labels);
            Compare(device, name, call, s3, t3, blv, new DivergenceOptions { Reduction = red, IgnoreIndex = -7 }, "[B, L, V], per-row T, ignore -7", rowTemps: temps, labels: labels3);
        }
    }

    /// <summary>Non-contiguous device views, teacher as log-probabilities and as probabilities (with zeros), V = 1, all rows ignored.</summary>
    private static void Layouts(Device device, string name)
    {
        var call = Kinds[name];
        var rng = new Random(TestUtil.StableSeed("device-fused layouts " + name));
        long[] shape = [3, 11];
        var s = F32(TestUtil.RandomValues(rng, 33, -3, 3));
        var t = F32(TestUtil.RandomValues(rng, 33, -3, 3));
        Compare(device, name, call, s, t, shape, new DivergenceOptions { Temperature = 1.5, ScaleByTemperatureSquared = true }, "non-contiguous", nonContiguous: true);

        // Teacher as log-probabilities / probabilities (one class of probability 0 per row).
        var lp = new double[33];
        var pr = new double[33];
        for (int r = 0; r < 3; r++)
        {
            var row = t.AsSpan(r * 11, 11).ToArray();
            row[r] = double.NegativeInfinity;
            double m = row.Max(), z = row.Sum(x => Math.Exp(x - m));
            for (int j = 0; j < 11; j++)
            {
                lp[r * 11 + j] = row[j] - m - Math.Log(z);
                pr[r * 11 + j] = Math.Exp(lp[r * 11 + j]);
            }
        }
        if (name is not ("reverse_kl" or "jsd 1" or "alpha 0" or "alpha -0.5"))
        {
            // A teacher zero where the student has mass makes reverse KL and α < 0 infinite: those compare on positive teachers below.
            Compare(device, name, call, s, F32(lp), shape, new DivergenceOptions { TeacherInput = TeacherInput.LogProbabilities, Reduction = Reduction.TokenMean }, "teacher log-probabilities (a zero class)");
            Compare(device, name, call, s, F32(pr), shape, new DivergenceOptions { TeacherInput = TeacherInput.Probabilities, Reduction = Reduction.Sum, Temperature = 2 }, "teacher probabilities (a zero class)");
        }
        for (int r = 0; r < 3; r++)
        {
            double m = t.Skip(r * 11).Take(11).Max(), z = t.Skip(r * 11).Take(11).Sum(x => Math.Exp(x - m));
            for (int j = 0; j < 11; j++) pr[r * 11 + j] = Math.Exp(t[r * 11 + j] - m) / z;
        }
        Compare(device, name, call, s, F32(pr), shape, new DivergenceOptions { TeacherInput = TeacherInput.Probabilities, Reduction = Reduction.None }, "teacher probabilities");

        // V = 1: loss 0, gradient 0.
        Compare(device, name, call, s[..4], t[..4], [4, 1], new DivergenceOptions { Reduction = Reduction.Mean }, "V = 1");

        // Every row ignored: loss 0 and gradient 0 on the device too (no NaN from a zero divisor).
        foreach (var red in Reductions)
        {
            using var scope = Tensor.NewDisposeScope();
            var st = TestUtil.FromDoubles(s, shape).To(device).RequiresGrad_();
            var tt = TestUtil.FromDoubles(t, shape).To(device);
            var o = new DivergenceOptions { Reduction = red, Labels = Tensor.FromArray(new long[] { -100, -100, -100 }, 3).To(device), Implementation = LossImplementation.Fused };
            var loss = call(st, tt, o);
            Assert.All(Host(loss), x => Assert.Equal(0.0, x));
            (red == Reduction.None ? loss.Sum() : loss).Backward();
            Assert.All(Host(st.Grad!), g => Assert.Equal(0.0, g));
        }
    }

    private static double[] F32(double[] x) => x.Select(v => (double)(float)v).ToArray();

    // ------------------------------------------------------------------ CPU (the comparison's other side)

    /// <summary>
    /// The CPU fused forward KL with a class that only the teacher masks (−∞ teacher logit or log-probability, finite student):
    /// p = 0 there contributes 0 (it gave NaN before: 0·(−∞)), equal to the float64 composite form. Found by the device comparison.
    /// </summary>
    [Fact]
    public void Cpu_FusedForwardKl_ClassMaskedOnlyByTeacher_MatchesComposite64()
    {
        var rng = new Random(TestUtil.StableSeed("teacher-only mask"));
        long[] shape = [3, 37]; // 37: vector lanes and a scalar tail
        var s = F32(TestUtil.RandomValues(rng, 111, -3, 3));
        var logits = F32(TestUtil.RandomValues(rng, 111, -3, 3));
        foreach (int k in new[] { 0, 5, 36, 40, 74, 110 }) logits[k] = double.NegativeInfinity;
        var logProbs = new double[111]; // the same rows normalized: log-probabilities are used as given
        for (int r = 0; r < 3; r++)
        {
            var row = logits.AsSpan(r * 37, 37).ToArray();
            double m = row.Max(), lz = m + Math.Log(row.Sum(x => Math.Exp(x - m)));
            for (int j = 0; j < 37; j++) logProbs[r * 37 + j] = (float)(row[j] - lz);
        }
        foreach (var input in new[] { TeacherInput.Logits, TeacherInput.LogProbabilities })
        {
            using var scope = Tensor.NewDisposeScope();
            var t = input == TeacherInput.Logits ? logits : logProbs;
            var o = new DivergenceOptions { Temperature = 2, ScaleByTemperatureSquared = true, TeacherInput = input };
            var s32 = TestUtil.FromDoubles(s, shape).RequiresGrad_();
            var s64 = TestUtil.FromDoubles(s, shape, DType.Float64).RequiresGrad_();
            var fused = Divergences.ForwardKl(s32, TestUtil.FromDoubles(t, shape), o with { Implementation = LossImplementation.Fused });
            var reference = Divergences.ForwardKl(s64, TestUtil.FromDoubles(t, shape, DType.Float64), o with { Implementation = LossImplementation.Composite });
            Assert.True(double.IsFinite(fused.ToDouble()), $"{input}: fused loss {fused.ToDouble()}");
            TestUtil.AssertClose([reference.ToDouble()], [fused.ToDouble()], 1e-5, 1e-5, $"{input}: loss");
            fused.Backward();
            reference.Backward();
            TestUtil.AssertClose(s64.Grad!.ToArray<double>(), Host(s32.Grad!), 1e-6, 1e-4, $"{input}: gradient");
        }
    }

    // ------------------------------------------------------------------ emulator

    [Theory]
    [MemberData(nameof(KindNames))]
    public void Emulator_AllReductions_MatchCpuFused(string name) => AllReductions(Emulator, name);

    [Theory]
    [MemberData(nameof(KindNames))]
    public void Emulator_LayoutsAndTeacherInputs_MatchCpuFused(string name) => Layouts(Emulator, name);

    [Fact]
    public void Emulator_AutoAndKnowledgeDistillation_RunTheKernel() => AutoRunsKernel(Emulator);

    [Fact]
    public void Emulator_Fallbacks_AreExplicit() => Fallbacks(Emulator);

    [Fact]
    public void Emulator_CreateGraph_RecomputesThroughComposite() => CreateGraph(Emulator);

    // ------------------------------------------------------------------ OpenCL (PoCL)

    [BackendTheory("opencl")]
    [MemberData(nameof(KindNames))]
    public void OpenCL_AllReductions_MatchCpuFused(string name) => AllReductions(OpenCL, name);

    [BackendTheory("opencl")]
    [MemberData(nameof(KindNames))]
    public void OpenCL_LayoutsAndTeacherInputs_MatchCpuFused(string name) => Layouts(OpenCL, name);

    [BackendFact("opencl")]
    public void OpenCL_AutoAndKnowledgeDistillation_RunTheKernel() => AutoRunsKernel(OpenCL);

    [BackendFact("opencl")]
    public void OpenCL_Fallbacks_AreExplicit() => Fallbacks(OpenCL);

    // ------------------------------------------------------------------ the path taken

    /// <summary>Auto on a device runs the kernel (one launch, bit-identical to Fused); so does Losses.KnowledgeDistillation, equal to the CPU.</summary>
    private static void AutoRunsKernel(Device device)
    {
        using var scope = Tensor.NewDisposeScope();
        var rng = new Random(TestUtil.StableSeed("device-fused auto"));
        var s = TestUtil.Random(rng, [6, 10], lo: -3, hi: 3);
        var t = TestUtil.Random(rng, [6, 10], lo: -3, hi: 3);
        var sd = s.To(device);
        var td = t.To(device);
        var auto = new DivergenceOptions { Temperature = 2, ScaleByTemperatureSquared = true };
        long before = Launches();
        var a = Divergences.Jsd(sd, td, 0.3, auto);
        Assert.Equal(before + 1, Launches());
        var f = Divergences.Jsd(sd, td, 0.3, auto with { Implementation = LossImplementation.Fused });
        Assert.Equal(Host(f), Host(a)); // the same kernel, the same bits

        var labels = Tensor.FromArray(new long[] { 3, 0, 9, 3, 1, 7 }, 6);
        var sc = s.Detach().RequiresGrad_();
        var sdev = sd.Detach().RequiresGrad_();
        var cpu = Losses.KnowledgeDistillation(sc, t, labels, 4.0, 0.9);
        before = Launches();
        var dev = Losses.KnowledgeDistillation(sdev, td, labels.To(device), 4.0, 0.9);
        Assert.Equal(before + 1, Launches());
        TestUtil.AssertClose(Host(cpu), Host(dev), 1e-5, 1e-5, $"kd_loss on {device}");
        cpu.Backward();
        dev.Backward();
        TestUtil.AssertClose(Host(sc.Grad!), Host(sdev.Grad!), 1e-6, 1e-4, $"kd_loss gradient on {device}");
    }

    /// <summary>What the kernel does not cover falls back under Auto (no launch) and throws under Fused, naming the reason.</summary>
    private static void Fallbacks(Device device)
    {
        using var scope = Tensor.NewDisposeScope();
        var rng = new Random(TestUtil.StableSeed("device-fused fallbacks"));
        var s = TestUtil.Random(rng, [4, 8], lo: -3, hi: 3).To(device);
        var t = TestUtil.Random(rng, [4, 8], lo: -3, hi: 3).To(device);
        var fused = new DivergenceOptions { Implementation = LossImplementation.Fused };

        // BD-KD runs the divergence kernel (its balanced KL with per-row weights; compared in DeviceLogitLossTests).
        var w = Tensor.FromArray(new[] { 0.2f, 0.5f, 0.7f, 1f }, 4).To(device);
        long before = Launches();
        using (var auto = Divergences.BdKd(s, t, w)) Assert.Equal(device, auto.Device);
        Assert.Equal(before + 1, Launches());

        // A teacher that requires grad: the composite form, whose gradient reaches the teacher.
        var tg = t.Detach().RequiresGrad_();
        var e = Assert.Throws<NotSupportedException>(() => Divergences.ForwardKl(s, tg, fused));
        Assert.Contains("teacher requires grad", e.Message);
        before = Launches();
        var loss = Divergences.ForwardKl(s, tg);
        Assert.Equal(before, Launches());
        loss.Backward();
        Assert.NotNull(tg.Grad);

        // float64 logits.
        var s64 = TestUtil.Random(rng, [4, 8], DType.Float64).To(device);
        var t64 = TestUtil.Random(rng, [4, 8], DType.Float64).To(device);
        e = Assert.Throws<NotSupportedException>(() => Divergences.ReverseKl(s64, t64, fused));
        Assert.Contains("float32", e.Message);
    }

    /// <summary>A createGraph backward through the device fused node is differentiable: second order equals the CPU fused form's.</summary>
    private static void CreateGraph(Device device)
    {
        using var scope = Tensor.NewDisposeScope();
        var rng = new Random(TestUtil.StableSeed("device-fused create-graph"));
        var s = TestUtil.Random(rng, [3, 5], lo: -2, hi: 2);
        var t = TestUtil.Random(rng, [3, 5], lo: -2, hi: 2);
        var v = TestUtil.Random(rng, [3, 5]);
        var o = new DivergenceOptions { Temperature = 2, ScaleByTemperatureSquared = true, Implementation = LossImplementation.Fused };

        (double[] First, double[] Second) Run(Device on)
        {
            var st = s.To(on).Detach().RequiresGrad_();
            var loss = Divergences.ForwardKl(st, t.To(on), o);
            var g = Autograd.Grad([loss], [st], createGraph: true)[0]!;
            var first = Host(g);
            var hv = Autograd.Grad([g.Mul(v.To(on)).Sum()], [st])[0]!; // Hessian-vector product
            Assert.Equal(on, hv.Device);
            return (first, Host(hv));
        }

        var (c1, c2) = Run(Device.Cpu);
        var (d1, d2) = Run(device);
        TestUtil.AssertClose(c1, d1, 1e-6, 1e-4, $"first-order gradient (createGraph) on {device}");
        TestUtil.AssertClose(c2, d2, 1e-6, 1e-4, $"Hessian-vector product on {device}");
    }
}
