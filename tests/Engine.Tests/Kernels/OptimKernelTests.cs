using Engine.Tensors;
using Engine.Tensors.Kernels;
using Engine.Tensors.Optim;
using Device = Engine.Runtime.Device;

namespace Engine.Tests.Kernels;

/// <summary>
/// kernels/Optim through the optimizers themselves: SGD (plain, momentum with dampening and weight decay,
/// Nesterov) and Adam / AdamW (L2, decoupled decay, AMSGrad) stepping parameters on the emulator and on
/// OpenCL, against the same optimizer stepping CPU copies with the same gradients for several steps.
/// The emulator runs the kernels' C#, which does the CPU loops' operations in the same order: equal
/// bitwise. OpenCL C may contract a·b + c into an FMA: within a few ulps per step.
/// </summary>
public class OptimKernelTests
{
    private static readonly long[][] Shapes = [[7], [33, 5], [300]];

    private static readonly (string Name, Func<IEnumerable<Tensor>, Optimizer> Make)[] Optimizers =
    [
        ("SGD", ps => new SGD(ps, learningRate: 0.1)),
        ("SGD momentum dampening wd", ps => new SGD(ps, learningRate: 0.05, momentum: 0.9, dampening: 0.1, weightDecay: 0.01)),
        ("SGD nesterov wd", ps => new SGD(ps, learningRate: 0.05, momentum: 0.8, weightDecay: 1e-3, nesterov: true)),
        ("Adam", ps => new Adam(ps, learningRate: 1e-2)),
        ("Adam L2 amsgrad", ps => new Adam(ps, learningRate: 1e-2, weightDecay: 0.1, amsgrad: true)),
        ("AdamW", ps => new AdamW(ps, learningRate: 1e-2, weightDecay: 0.05, beta1: 0.8, beta2: 0.99, eps: 1e-6)),
        ("AdamW amsgrad", ps => new AdamW(ps, learningRate: 3e-3, amsgrad: true)),
    ];

    private static void Check(Device device, bool bitwise)
    {
        const int steps = 4;
        foreach (var (name, make) in Optimizers)
        {
            var rng = new Random(TestUtil.StableSeed("optim kernel " + name));
            var cpu = Shapes.Select(s => TestUtil.Random(rng, s, DType.Float32, -2, 2)).ToList();
            var dev = cpu.Select(p => p.To(device)).ToList();
            using var cpuOpt = make(cpu);
            using var devOpt = make(dev);
            try
            {
                for (int step = 0; step < steps; step++)
                {
                    for (int i = 0; i < cpu.Count; i++)
                    {
                        // Gradients of mixed scales, some exactly 0 (the moments decay there).
                        var g = TestUtil.Random(rng, cpu[i].ShapeArray(), DType.Float32, -1, 1);
                        using (Tensor.NoGrad())
                        using (var scaled = g.Mul(step % 2 == 0 ? 1.0 : 1e-3))
                        {
                            var values = scaled.ToArray<float>();
                            values[0] = 0;
                            g.Dispose();
                            g = Tensor.FromArray(values, cpu[i].ShapeArray());
                        }
                        dev[i].Grad = g.To(device);
                        cpu[i].Grad = g;
                    }
                    if (step == 2) foreach (var group in cpuOpt.ParamGroups.Concat(devOpt.ParamGroups)) group.LearningRate *= 0.5; // a schedule's change
                    cpuOpt.Step();
                    devOpt.Step();
                    for (int i = 0; i < cpu.Count; i++)
                    {
                        Assert.Equal(device, dev[i].Device);
                        Same(cpu[i].ToArray<float>(), dev[i].ToArray<float>(), bitwise, 2e-7, $"{name} on {device}: parameter {i} after step {step + 1}");
                    }
                }
                var cpuState = cpuOpt.StateDict();
                var devState = devOpt.StateDict();
                Assert.Equal(cpuState.Tensors.Keys.Order(), devState.Tensors.Keys.Order());
                Assert.Equal(cpuState.Scalars, devState.Scalars);
                foreach (var (key, t) in cpuState.Tensors)
                {
                    using (t)
                    using (var d = devState.Tensors[key])
                        Same(t.ToArray<float>(), d.ToArray<float>(), bitwise, 1e-6, $"{name} on {device}: state {key}");
                }
            }
            finally
            {
                foreach (var t in cpu.Concat(dev)) t.Dispose();
            }
        }
    }

    /// <summary>
    /// Bitwise, or within 1e-6·|e| + <paramref name="normwise"/>·max|e|: an FMA rounds once where the CPU
    /// rounds twice, and where terms cancel (b = momentum·b + (1 − dampening)·d, m + (1 − β1)(g − m)) that
    /// ulp of the terms is large relative to the result; the parameters (|p| ≈ 2, no cancellation
    /// beyond p − lr·d) get a tighter 2e-7·max|p|, a few ulps.
    /// </summary>
    private static void Same(float[] expected, float[] actual, bool bitwise, double normwise, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        double max = expected.Length == 0 ? 0 : expected.Max(v => Math.Abs((double)v));
        for (int i = 0; i < expected.Length; i++)
        {
            if (bitwise)
                Assert.True(BitConverter.SingleToInt32Bits(expected[i]) == BitConverter.SingleToInt32Bits(actual[i]), $"{what}[{i}]: {actual[i]:R}, CPU {expected[i]:R}");
            else
                Assert.True(Math.Abs(expected[i] - actual[i]) <= 1e-6 * Math.Abs(expected[i]) + normwise * max, $"{what}[{i}]: {actual[i]:R}, CPU {expected[i]:R}");
        }
    }

    [Fact]
    public void Optimizers_OnEmulatorParameters_MatchCpuBitwise() => Check(Device.Parse("emulator"), bitwise: true);

    [BackendFact("opencl")]
    public void Optimizers_OnOpenCLParameters_MatchCpu() => Check(Device.Parse("opencl:0"), bitwise: false);

    [BackendFact("cuda")]
    public void Optimizers_OnCudaParameters_MatchCpu() => Check(Device.Parse("cuda:0"), bitwise: false);

    [Fact]
    public void Dispatch_RejectsMismatchedOperands()
    {
        var device = Device.Parse("emulator");
        using var p = Tensor.Zeros([4], DType.Float32, device);
        using var g = Tensor.Zeros([5], DType.Float32, device);
        using var cpu = Tensor.Zeros([4]);
        using var m = Tensor.Zeros([4], DType.Float32, device);
        Assert.Contains("SGD step", Assert.Throws<ArgumentException>(() => KernelDispatch.SgdStep(p, g, null, 0.1, 0, 0, 0, false, false)).Message);
        Assert.Throws<ArgumentException>(() => KernelDispatch.SgdStep(p, cpu, null, 0.1, 0, 0, 0, false, false));
        Assert.Throws<ArgumentNullException>(() => KernelDispatch.SgdStep(p, m, null, 0.1, 0, 0.9, 0, false, false));
        Assert.Throws<NotSupportedException>(() => KernelDispatch.SgdStep(cpu, cpu, null, 0.1, 0, 0, 0, false, false));
        Assert.Contains("Adam step", Assert.Throws<ArgumentException>(() => KernelDispatch.AdamStep(p, m, g, m, null, 1, 0, 0.9, 0.999, 1e-3, 1, 1e-8)).Message);
    }
}
