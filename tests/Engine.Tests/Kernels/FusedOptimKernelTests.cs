using Engine.Tensors;
using Engine.Tensors.Kernels;
using Engine.Tensors.Optim;
using Device = Engine.Runtime.Device;

namespace Engine.Tests.Kernels;

/// <summary>
/// The one-launch optimizer step (kernels/Optim/FusedOptimKernels.cs, Optim/FlatParameters.cs): three
/// optimizers step copies of the same many parameters of odd sizes (1 element up to several 2048-element
/// chunks, two groups with their own lr and weight decay) with the same gradients for several steps — the
/// CPU optimizer, the device optimizer with one launch per parameter (FusedDeviceStep = false) and the fused
/// device optimizer. Some parameters get no gradient on some steps (skipped, state untouched). The fused
/// one gets its gradients from a backward on even steps (autograd writes them into the flat slots: no copy)
/// and set by hand on odd steps (copied into the slots). Fused = per-parameter kernel bitwise on every
/// backend (one kernel function holds the element math); = CPU bitwise on the emulator, within a few ulps
/// on OpenCL (FMA contraction). Launch counters prove one optimizer launch per step.
/// </summary>
public class FusedOptimKernelTests
{
    private static readonly long[][] Shapes = [[1], [7], [33, 5], [2048], [2049], [300], [3, 1, 2], [4097], [31], [64, 2]];

    private static readonly (string Name, Func<IEnumerable<ParamGroup>, Optimizer> Make)[] Optimizers =
    [
        ("SGD", gs => new SGD(gs, learningRate: 0.1)),
        ("SGD momentum dampening wd", gs => new SGD(gs, learningRate: 0.05, momentum: 0.9, dampening: 0.1, weightDecay: 0.01)),
        ("SGD nesterov wd", gs => new SGD(gs, learningRate: 0.05, momentum: 0.8, weightDecay: 1e-3, nesterov: true)),
        ("Adam", gs => new Adam(gs, learningRate: 1e-2)),
        ("Adam L2 amsgrad", gs => new Adam(gs, learningRate: 1e-2, weightDecay: 0.1, amsgrad: true)),
        ("AdamW", gs => new AdamW(gs, learningRate: 1e-2, weightDecay: 0.05, beta1: 0.8, beta2: 0.99, eps: 1e-6)),
        ("AdamW amsgrad", gs => new AdamW(gs, learningRate: 3e-3, amsgrad: true)),
    ];

    /// <summary>Two groups: the first with the optimizer's options, the second with its own lr and weight decay (0 for half the cases).</summary>
    private static ParamGroup[] Groups(List<Tensor> ps, string name)
        => [new ParamGroup(ps.Take(6)), new ParamGroup(ps.Skip(6), learningRate: 0.02, weightDecay: name.Contains("wd") ? 0 : 0.03)];

    private static bool HasGrad(int parameter, int step) => (parameter + step) % 4 != 0;

    private static void Check(Device device, bool bitwiseWithCpu)
    {
        const int steps = 4;
        foreach (var (name, make) in Optimizers)
        {
            var rng = new Random(TestUtil.StableSeed("fused optim " + name));
            var cpu = Shapes.Select(s => TestUtil.Random(rng, s, DType.Float32, -2, 2)).ToList();
            var single = cpu.Select(p => p.To(device)).ToList();
            var fused = cpu.Select(p => p.To(device).RequiresGrad_()).ToList();
            using var cpuOpt = make(Groups(cpu, name));
            using var singleOpt = make(Groups(single, name));
            using var fusedOpt = make(Groups(fused, name));
            singleOpt.FusedDeviceStep = false;
            try
            {
                for (int step = 0; step < steps; step++)
                {
                    var grads = new List<Tensor?>();
                    for (int i = 0; i < cpu.Count; i++)
                    {
                        if (!HasGrad(i, step)) { grads.Add(null); continue; }
                        var values = TestUtil.RandomValues(rng, cpu[i].NumEl).Select(v => (float)(step % 2 == 0 ? v : v * 1e-3)).ToArray();
                        values[0] = 0; // the moments decay there
                        grads.Add(Tensor.FromArray(values, cpu[i].ShapeArray()));
                    }
                    bool viaBackward = step % 2 == 0;
                    for (int i = 0; i < cpu.Count; i++)
                    {
                        if (grads[i] is not { } g) continue;
                        cpu[i].Grad = g.Clone();
                        single[i].Grad = g.To(device);
                        if (!viaBackward) fused[i].Grad = g.To(device);
                    }
                    if (viaBackward)
                    {
                        // loss = Σ_i Σ (p_i · c_i): the gradient of p_i is c_i exactly.
                        Tensor? loss = null;
                        for (int i = 0; i < cpu.Count; i++)
                        {
                            if (grads[i] is not { } g) continue;
                            using var c = g.To(device);
                            var term = fused[i].Mul(c).Sum();
                            loss = loss is null ? term : loss.Add(term);
                        }
                        loss!.Backward();
                    }
                    if (step == 2) foreach (var group in cpuOpt.ParamGroups.Concat(singleOpt.ParamGroups).Concat(fusedOpt.ParamGroups)) group.LearningRate *= 0.5;

                    long launches = KernelDispatch.OptimizerLaunchesOnThisThread, copies = FlatParameters.GradCopiesOnThisThread;
                    fusedOpt.Step();
                    Assert.Equal(1, KernelDispatch.OptimizerLaunchesOnThisThread - launches); // every parameter in one launch
                    Assert.Equal(viaBackward ? 0 : grads.Count(g => g is not null), FlatParameters.GradCopiesOnThisThread - copies);
                    launches = KernelDispatch.OptimizerLaunchesOnThisThread;
                    singleOpt.Step();
                    Assert.Equal(grads.Count(g => g is not null), KernelDispatch.OptimizerLaunchesOnThisThread - launches);
                    cpuOpt.Step();

                    for (int i = 0; i < cpu.Count; i++)
                    {
                        Assert.Equal(device, fused[i].Device);
                        var f = fused[i].ToArray<float>();
                        OptimCompare.Same(single[i].ToArray<float>(), f, bitwise: true, 0, $"{name} on {device}: fused vs per-parameter kernel, parameter {i} after step {step + 1}");
                        OptimCompare.Same(cpu[i].ToArray<float>(), f, bitwiseWithCpu, 2e-7, $"{name} on {device}: fused vs CPU, parameter {i} after step {step + 1}");
                    }
                    foreach (var g in grads) g?.Dispose();
                    cpuOpt.ZeroGrad();
                    singleOpt.ZeroGrad();
                    fusedOpt.ZeroGrad();
                }
                var cpuState = cpuOpt.StateDict();
                var fusedState = fusedOpt.StateDict();
                Assert.Equal(cpuState.Tensors.Keys.Order(), fusedState.Tensors.Keys.Order());
                Assert.Equal(cpuState.Scalars, fusedState.Scalars);
                foreach (var (key, t) in cpuState.Tensors)
                {
                    using (t)
                    using (var d = fusedState.Tensors[key])
                        OptimCompare.Same(t.ToArray<float>(), d.ToArray<float>(), bitwiseWithCpu, 1e-6, $"{name} on {device}: state {key}");
                }
            }
            finally
            {
                foreach (var t in cpu.Concat(single).Concat(fused)) t.Dispose();
            }
        }
    }

    [Fact]
    public void FusedStep_OnEmulator_EqualsPerParameterKernelAndCpuBitwise() => Check(Device.Parse("emulator"), bitwiseWithCpu: true);

    [BackendFact("opencl")]
    public void FusedStep_OnOpenCL_EqualsPerParameterKernelBitwise() => Check(Device.Parse("opencl:0"), bitwiseWithCpu: false);

    [BackendFact("cuda")]
    public void FusedStep_OnCuda_EqualsPerParameterKernelBitwise() => Check(Device.Parse("cuda:0"), bitwiseWithCpu: false);

    /// <summary>
    /// Parameters are views of one flat buffer after the first step, with their values unchanged; gradients from
    /// a backward live in the flat gradient buffer; a parameter that shares its memory with another tensor is
    /// not flattened and steps with its own launch (2 launches then), with the same result.
    /// </summary>
    [Fact]
    public void FlatLayout_ParametersAndGradientsShareOneBuffer_SharedParameterStepsAlone()
    {
        var device = Device.Parse("emulator");
        var rng = new Random(TestUtil.StableSeed("flat layout"));
        using var a = TestUtil.Random(rng, [5, 3]).To(device).RequiresGrad_();
        using var b = TestUtil.Random(rng, [40]).To(device).RequiresGrad_();
        using var big = TestUtil.Random(rng, [2, 9]).To(device);
        using var shared = big.Narrow(0, 1, 1).RequiresGrad_(); // a view: its storage is shared with big
        var before = new[] { a, b, shared }.Select(t => t.ToArray<float>()).ToArray();
        using var opt = new SGD([a, b, shared], learningRate: 0.5, momentum: 0.9);
        using (var loss = a.Sum().Add(b.Mul(2.0).Sum()).Add(shared.Sum())) loss.Backward();
        long launches = KernelDispatch.OptimizerLaunchesOnThisThread;
        opt.Step();
        Assert.Equal(2, KernelDispatch.OptimizerLaunchesOnThisThread - launches);
        Assert.Same(a.Storage, b.Storage);
        Assert.NotSame(a.Storage, shared.Storage);
        Assert.Same(shared.Storage, big.Storage);
        Assert.Equal(0, a.Offset % FusedOptimKernels.FlatAlignment);
        Assert.Equal(0, b.Offset % FusedOptimKernels.FlatAlignment);
        float[][] expected = [before[0].Select(v => v - 0.5f * 1f).ToArray(), before[1].Select(v => v - 0.5f * 2f).ToArray(), before[2].Select(v => v - 0.5f * 1f).ToArray()];
        Assert.Equal(expected[0], a.ToArray<float>());
        Assert.Equal(expected[1], b.ToArray<float>());
        Assert.Equal(expected[2], shared.ToArray<float>());
        Assert.Equal(expected[2], big.Narrow(0, 1, 1).ToArray<float>()); // the view still writes through to big
        opt.ZeroGrad();
        using (var loss = a.Sum().Add(b.Sum())) loss.Backward();
        Assert.Same(a.Grad!.Storage, b.Grad!.Storage); // both gradients in the flat gradient buffer
        Assert.NotSame(a.Storage, a.Grad.Storage);
        Assert.Equal(Enumerable.Repeat(1f, 15), a.Grad.ToArray<float>());
    }

    /// <summary>LoadStateDict into a fused optimizer (state copied into the flat state buffers) continues exactly as the CPU optimizer.</summary>
    [Fact]
    public void LoadStateDict_IntoFusedOptimizer_ContinuesAsCpu()
    {
        var device = Device.Parse("emulator");
        var rng = new Random(TestUtil.StableSeed("fused load state"));
        var cpu = new[] { TestUtil.Random(rng, [9]), TestUtil.Random(rng, [4, 3]) };
        var dev = cpu.Select(p => p.To(device)).ToArray();
        using var cpuOpt = new AdamW(cpu, learningRate: 0.01, amsgrad: true);
        using var devOpt = new AdamW(dev, learningRate: 0.01, amsgrad: true);
        try
        {
            for (int step = 0; step < 3; step++)
            {
                for (int i = 0; i < cpu.Length; i++)
                {
                    var g = TestUtil.Random(rng, cpu[i].ShapeArray());
                    if (step < 2) { cpu[i].Grad = g; continue; } // the device optimizer starts from the CPU's state at step 2
                    dev[i].Grad = g.To(device);
                    cpu[i].Grad = g;
                }
                if (step == 2)
                {
                    for (int i = 0; i < cpu.Length; i++) using (var v = cpu[i].To(device)) dev[i].CopyFrom_(v);
                    var state = cpuOpt.StateDict();
                    devOpt.LoadStateDict(state);
                    foreach (var t in state.Tensors.Values) t.Dispose();
                    devOpt.Step();
                }
                cpuOpt.Step();
            }
            for (int i = 0; i < cpu.Length; i++) Assert.Equal(cpu[i].ToArray<float>(), dev[i].ToArray<float>());
            devOpt.LoadStateDict(cpuOpt.StateDict()); // a second load replaces the flat state again
            for (int i = 0; i < cpu.Length; i++) dev[i].Grad = cpu[i].Grad!.To(device);
            cpuOpt.Step();
            devOpt.Step();
            for (int i = 0; i < cpu.Length; i++) Assert.Equal(cpu[i].ToArray<float>(), dev[i].ToArray<float>());
        }
        finally
        {
            foreach (var t in cpu.Concat(dev)) t.Dispose();
        }
    }
}

/// <summary>The comparison of optimizer results shared by the optimizer kernel tests.</summary>
internal static class OptimCompare
{
    /// <summary>
    /// Bitwise, or within 1e-6·|e| + <paramref name="normwise"/>·max|e| (an FMA rounds once where the CPU
    /// rounds twice; see OptimKernelTests).
    /// </summary>
    public static void Same(float[] expected, float[] actual, bool bitwise, double normwise, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        double max = expected.Length == 0 ? 0 : expected.Max(v => Math.Abs((double)v));
        for (int i = 0; i < expected.Length; i++)
        {
            if (bitwise)
                Assert.True(BitConverter.SingleToInt32Bits(expected[i]) == BitConverter.SingleToInt32Bits(actual[i]), $"{what}[{i}]: {actual[i]:R}, expected {expected[i]:R}");
            else
                Assert.True(Math.Abs(expected[i] - actual[i]) <= 1e-6 * Math.Abs(expected[i]) + normwise * max, $"{what}[{i}]: {actual[i]:R}, expected {expected[i]:R}");
        }
    }
}
