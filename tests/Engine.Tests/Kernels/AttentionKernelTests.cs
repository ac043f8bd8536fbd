using Engine.Runtime;
using Engine.Runtime.Kernels;
using Engine.Tensors;
using Engine.Tensors.Kernels;
using Engine.Tests.Ops;
using Device = Engine.Runtime.Device;
using Case = Engine.Tests.Ops.AttentionTests.Case;
using MaskKind = Engine.Tests.Ops.AttentionTests.MaskKind;

namespace Engine.Tests.Kernels;

/// <summary>
/// kernels/Attention (flash-attention forward, the deterministic backward, the probabilities) through
/// Tensor.ScaledDotProductAttention / ScaledDotProductAttentionWithProbabilities on a device: output, dQ, dK,
/// dV and P against the float64 reference of AttentionTests (plain loops, materialized softmax) and against
/// the CPU-native fused op on the same float32 inputs. Cases: odd N and D, Nq ≠ Nk, several query blocks
/// and key tiles, causal (Nq &lt; Nk and Nq &gt; Nk), bool and additive masks with fully masked rows, key and
/// value shared over heads (broadcast batch), rank 2, D and Dv up to 128 (the wide path), Nk = 0; inputs as
/// contiguous leaves, transposed views ([..., D, N] storage) and the heads-transposed layout ([B, N, H, D]
/// storage). Shapes stay small: the emulator runs one OS thread per GPU thread.
/// </summary>
internal static class AttentionKernelChecks
{
    // float32 kernels vs the float64 reference and vs the CPU's float32 (another summation order).
    private const double RefTol = 1e-4;
    private const double CpuTol = 3e-5;

    public static IEnumerable<Case> Cases()
    {
        yield return new([2, 3, 5, 4], [2, 3, 7, 4], [2, 3, 7, 6]);                                       // Nq ≠ Nk, D ≠ Dv, odd
        yield return new([1, 37, 8], [1, 45, 8], [1, 45, 3]);                                              // 3 query blocks, 2 key tiles (tails)
        yield return new([2, 19, 5], [2, 19, 5], [2, 19, 5], Causal: true);                               // causal across blocks
        yield return new([1, 9, 4], [1, 5, 4], [1, 5, 2], Causal: true, Scale: 0.7);                      // causal, Nq > Nk
        yield return new([1, 5, 4], [1, 21, 4], [1, 21, 3], Causal: true);                                // causal, Nq < Nk
        yield return new([2, 2, 6, 8], [2, 1, 9, 8], [2, 1, 9, 5]);                                       // key/value shared over heads
        yield return new([3, 5], [7, 5], [7, 2]);                                                         // rank 2
        yield return new([2, 6, 3], [2, 6, 3], [2, 6, 4], MaskKind.Bool, [6, 6]);                         // bool mask, fully masked rows
        yield return new([2, 2, 5, 3], [2, 2, 8, 3], [2, 2, 8, 3], MaskKind.Bool, [2, 1, 1, 8], true);     // key padding + causal
        yield return new([2, 5, 3], [2, 8, 3], [2, 8, 4], MaskKind.Additive, [2, 5, 8]);                  // additive mask with −∞
        yield return new([1, 2, 17, 6], [1, 2, 33, 6], [1, 2, 33, 6], MaskKind.Additive, [33], Scale: 0.3); // additive over keys only
        yield return new([1, 18, 97], [1, 35, 97], [1, 35, 128]);                                          // wide heads: D odd > 64, Dv = 128
        yield return new([1, 7, 128], [1, 9, 128], [1, 9, 65], Causal: true);                              // D = 128, Dv just past 64
        yield return new([2, 4, 3], [2, 0, 3], [2, 0, 2]);                                                 // Nk = 0: output 0, zero gradients
    }

    private static double[] Host(Tensor t)
    {
        using var h = t.To(Device.Cpu);
        using var c = h.Contiguous();
        using var d = c.To(DType.Float64);
        return d.ToArray<double>();
    }

    /// <summary>A device input in one of three layouts: the leaf that receives the gradient and the view the op reads.</summary>
    private sealed class Input : IDisposable
    {
        public Tensor Leaf = null!;
        public Tensor View = null!;
        public int Layout;

        public double[] Gradient()
        {
            var g = Leaf.Grad ?? throw new InvalidOperationException("no gradient");
            if (Layout == 0) return Host(g);
            using var back = Layout == 1 ? g.Transpose(-1, -2) : g.Transpose(-3, -2);
            return Host(back);
        }

        public void Dispose()
        {
            if (!ReferenceEquals(View, Leaf)) View.Dispose();
            Leaf.Dispose();
        }
    }

    /// <summary>
    /// Layout 0: a contiguous leaf; 1: the values stored as [..., D, N] and read through a transpose;
    /// 2 (rank ≥ 3): stored as [..., N, H, D] and read through a permute (the heads-transposed layout).
    /// </summary>
    private static Input MakeInput(double[] values, long[] shape, Device device, int layout)
    {
        if (layout == 2 && shape.Length < 3) layout = 1;
        using var x = TestUtil.FromDoubles(values, shape, DType.Float32);
        if (layout == 0)
        {
            var leaf = x.To(device).RequiresGrad_();
            return new Input { Leaf = leaf, View = leaf, Layout = 0 };
        }
        using var swapped = layout == 1 ? x.Transpose(-1, -2) : x.Transpose(-3, -2);
        using var stored = swapped.Contiguous();
        var l = stored.To(device).RequiresGrad_();
        var view = layout == 1 ? l.Transpose(-1, -2) : l.Transpose(-3, -2);
        Assert.False(view.IsContiguous && shape[^1] > 1 && shape[^2] > 1 && layout == 1);
        return new Input { Leaf = l, View = view, Layout = layout };
    }

    /// <summary>Forward and backward (autograd) on the device vs the float64 reference and the CPU op, in every layout.</summary>
    public static void ForwardBackward(Device device, int layouts = 3)
    {
        int index = 0;
        foreach (var c in Cases())
        {
            int layout = index++ % layouts;
            var x = AttentionTests.MakeData(c, TestUtil.StableSeed("attention-kernel-" + c));
            var batch = AttentionTests.BatchOf(c);
            long nq = c.Q[^2], dv = c.V[^1];
            var rng = new Random(TestUtil.StableSeed("attention-kernel-g-" + c));
            var g = TestUtil.RandomValues(rng, TestUtil.ShapeNumEl([.. batch, nq, dv]), -1, 1);
            var want = AttentionTests.Reference(c, x, g);

            // The CPU-native fused op on the same float32 inputs.
            using var qc = TestUtil.FromDoubles(x.Q, c.Q).RequiresGrad_();
            using var kc = TestUtil.FromDoubles(x.K, c.K).RequiresGrad_();
            using var vc = TestUtil.FromDoubles(x.V, c.V).RequiresGrad_();
            using var mc = AttentionTests.MaskTensor(c, x, DType.Float32);
            using var gc = TestUtil.FromDoubles(g, [.. batch, nq, dv]);
            using (var yc = Tensor.ScaledDotProductAttention(qc, kc, vc, mc, c.Causal, c.Scale)) yc.Backward(gc);

            using var q = MakeInput(x.Q, c.Q, device, layout);
            using var k = MakeInput(x.K, c.K, device, layout);
            using var v = MakeInput(x.V, c.V, device, layout);
            using var m = mc?.To(device);
            using var gd = gc.To(device);
            string what = $"{c} on {device}, layout {layout}";
            using var y = Tensor.ScaledDotProductAttention(q.View, k.View, v.View, m, c.Causal, c.Scale);
            Assert.Equal(device, y.Device);
            Assert.Equal("scaled_dot_product_attention", y.GradFn?.Name); // the kernels' node, not the composite's matmul
            y.Backward(gd);
            var got = new[] { Host(y), q.Gradient(), k.Gradient(), v.Gradient() };
            var reference = new[] { want.O, want.DQ, want.DK, want.DV };
            var cpu = new[] { CpuOutput(qc, kc, vc, mc, c), Host(qc.Grad!), Host(kc.Grad!), Host(vc.Grad!) };
            string[] names = ["output", "dQ", "dK", "dV"];
            for (int i = 0; i < 4; i++)
            {
                Assert.All(got[i], value => Assert.False(double.IsNaN(value), $"{what}: NaN in {names[i]}"));
                TestUtil.AssertClose(reference[i], got[i], RefTol, RefTol, $"{what}: {names[i]} vs float64");
                TestUtil.AssertClose(cpu[i], got[i], CpuTol, CpuTol, $"{what}: {names[i]} vs CPU op");
            }
        }
    }

    private static double[] CpuOutput(Tensor q, Tensor k, Tensor v, Tensor? m, Case c)
    {
        using var _ = Tensor.NoGrad();
        using var y = Tensor.ScaledDotProductAttention(q, k, v, m, c.Causal, c.Scale);
        return Host(y);
    }

    /// <summary>
    /// The kernels' logsumexp directly (KernelDispatch.AttentionForward): L_i = log Σ_j exp(S_ij) against
    /// float64, −∞ on fully masked rows (with output 0 there).
    /// </summary>
    public static void LogSumExp(Device device)
    {
        var c = new Case([2, 6, 5], [2, 40, 5], [2, 40, 3], MaskKind.Bool, [6, 40]);
        var x = AttentionTests.MakeData(c, TestUtil.StableSeed("attention-kernel-lse"));
        using var q = TestUtil.FromDoubles(x.Q, c.Q);
        using var k = TestUtil.FromDoubles(x.K, c.K);
        using var v = TestUtil.FromDoubles(x.V, c.V);
        using var mask = AttentionTests.MaskTensor(c, x, DType.Float32)!;
        using var qd = q.To(device);
        using var kd = k.To(device);
        using var vd = v.To(device);
        using var md = mask.To(device);
        double scale = 1 / Math.Sqrt(5);
        var (o, lse) = KernelDispatch.AttentionForward(qd, kd, vd, md, causal: false, scale, [2], 6, 40, 5, 3);
        using (o)
        using (lse)
        {
            var l = Host(lse);
            for (int b = 0; b < 2; b++)
                for (int i = 0; i < 6; i++)
                {
                    double max = double.NegativeInfinity;
                    var s = new double[40];
                    for (int j = 0; j < 40; j++)
                    {
                        double dot = 0;
                        for (int e = 0; e < 5; e++) dot += x.Q[(b * 6 + i) * 5 + e] * x.K[(b * 40 + j) * 5 + e];
                        s[j] = x.Mask![i * 40 + j] != 0 ? scale * dot : double.NegativeInfinity;
                        max = Math.Max(max, s[j]);
                    }
                    double want = double.IsNegativeInfinity(max) ? max : max + Math.Log(s.Sum(t => Math.Exp(t - max)));
                    if (double.IsNegativeInfinity(want)) Assert.Equal(want, l[b * 6 + i]);
                    else Assert.Equal(want, l[b * 6 + i], 1e-5);
                }
            Assert.True(double.IsNegativeInfinity(l[0]), "row 0 of the mask is fully masked");
            Assert.All(Host(o)[..3], value => Assert.Equal(0, value));
        }
    }

    /// <summary>
    /// ScaledDotProductAttentionWithProbabilities on the device (kernel Probabilities from the forward's L): P and O
    /// against float64, and the gradients of a loss on both results (Σ w_P ⊙ P + Σ g ⊙ O) against the CPU op.
    /// </summary>
    public static void Probabilities(Device device)
    {
        Case[] cases =
        [
            new([2, 2, 7, 6], [2, 2, 37, 6], [2, 2, 37, 5], MaskKind.Bool, [7, 37], true),
            new([1, 20, 4], [1, 9, 4], [1, 9, 4], MaskKind.Additive, [20, 9]),
            new([1, 2, 5, 3], [1, 1, 6, 3], [1, 1, 6, 2]),
        ];
        foreach (var c in cases)
        {
            var x = AttentionTests.MakeData(c, TestUtil.StableSeed("attention-kernel-p-" + c));
            var batch = AttentionTests.BatchOf(c);
            long nq = c.Q[^2], nk = c.K[^2], dv = c.V[^1];
            var rng = new Random(TestUtil.StableSeed("attention-kernel-pg-" + c));
            var wp = TestUtil.RandomValues(rng, TestUtil.ShapeNumEl([.. batch, nq, nk]), -1, 1);
            var g = TestUtil.RandomValues(rng, TestUtil.ShapeNumEl([.. batch, nq, dv]), -1, 1);
            var want = AttentionTests.Reference(c, x, null);

            double[][] Run(Device dev)
            {
                using var q = TestUtil.FromDoubles(x.Q, c.Q);
                using var k = TestUtil.FromDoubles(x.K, c.K);
                using var v = TestUtil.FromDoubles(x.V, c.V);
                using var m0 = AttentionTests.MaskTensor(c, x, DType.Float32);
                using var qd = q.To(dev).RequiresGrad_();
                using var kd = k.To(dev).RequiresGrad_();
                using var vd = v.To(dev).RequiresGrad_();
                using var md = m0?.To(dev);
                using var wpt = TestUtil.FromDoubles(wp, [.. batch, nq, nk]);
                using var gt = TestUtil.FromDoubles(g, [.. batch, nq, dv]);
                using var wpd = wpt.To(dev);
                using var gd = gt.To(dev);
                var (o, p) = Tensor.ScaledDotProductAttentionWithProbabilities(qd, kd, vd, md, c.Causal, c.Scale);
                using (o)
                using (p)
                {
                    Assert.Equal(dev, p.Device);
                    if (dev.Type != DeviceType.Cpu) Assert.Equal("scaled_dot_product_attention_probabilities", p.GradFn?.Name);
                    using var lp = p.Mul(wpd);
                    using var lo = o.Mul(gd);
                    using var sp = lp.Sum();
                    using var so = lo.Sum();
                    using var loss = sp.Add(so);
                    loss.Backward();
                    return [Host(o), Host(p), Host(qd.Grad!), Host(kd.Grad!), Host(vd.Grad!)];
                }
            }

            var got = Run(device);
            var cpu = Run(Device.Cpu);
            string what = $"{c} on {device}";
            TestUtil.AssertClose(want.O, got[0], RefTol, RefTol, what + ": output vs float64");
            TestUtil.AssertClose(want.P, got[1], RefTol, RefTol, what + ": P vs float64");
            string[] names = ["output", "P", "dQ", "dK", "dV"];
            for (int i = 0; i < 5; i++) TestUtil.AssertClose(cpu[i], got[i], CpuTol, CpuTol, $"{what}: {names[i]} vs CPU op");
        }
    }

    /// <summary>
    /// Forward and backward of a [1, 512, 16] self-attention on the device never hold an [Nq, Nk] buffer: the
    /// allocator's peak over the call stays below half of P's 1 MiB (O, L, Δ, dQ, dK, dV are ~150 KiB).
    /// </summary>
    public static void NoQuadraticMemory(Device device)
    {
        const int n = 512, d = 16;
        var rng = new Random(TestUtil.StableSeed("attention-kernel-memory"));
        using var q0 = TestUtil.Random(rng, [1, n, d]);
        using var k0 = TestUtil.Random(rng, [1, n, d]);
        using var v0 = TestUtil.Random(rng, [1, n, d]);
        using var g0 = TestUtil.Random(rng, [1, n, d]);
        using var q = q0.To(device).RequiresGrad_();
        using var k = k0.To(device).RequiresGrad_();
        using var v = v0.To(device).RequiresGrad_();
        using var g = g0.To(device);
        var memory = DeviceRegistry.Get(device).Allocator;
        long before = memory.CurrentBytes;
        memory.ResetPeak();
        using (var y = Tensor.ScaledDotProductAttention(q, k, v, causal: true))
            y.Backward(g);
        long peak = memory.PeakBytes - before;
        Assert.True(peak < (long)n * n * sizeof(float) / 2, $"peak {peak} B over the call on {device}");
        Assert.NotNull(q.Grad);
    }

    /// <summary>createGraph on the device (composite backward; on the host for a masked call): the second-order gradient equals the CPU's.</summary>
    public static void SecondOrder(Device device)
    {
        foreach (bool masked in new[] { false, true })
        {
            var c = new Case([1, 5, 3], [1, 6, 3], [1, 6, 2], masked ? MaskKind.Bool : MaskKind.None, masked ? [5, 6] : null, Causal: !masked);
            var x = AttentionTests.MakeData(c, TestUtil.StableSeed("attention-kernel-2nd-" + masked));
            double[][] Run(Device dev)
            {
                using var q0 = TestUtil.FromDoubles(x.Q, c.Q);
                using var k0 = TestUtil.FromDoubles(x.K, c.K);
                using var v0 = TestUtil.FromDoubles(x.V, c.V);
                using var m0 = AttentionTests.MaskTensor(c, x, DType.Float32);
                using var q = q0.To(dev).RequiresGrad_();
                using var k = k0.To(dev).RequiresGrad_();
                using var v = v0.To(dev).RequiresGrad_();
                using var m = m0?.To(dev);
                using var y = Tensor.ScaledDotProductAttention(q, k, v, m, c.Causal);
                using var y2 = y.Mul(y);
                using var loss = y2.Sum();
                var grads = Autograd.Grad([loss], [q], createGraph: true);
                using var gq = grads[0]!;
                using var gq2 = gq.Mul(gq);
                using var second = gq2.Sum();
                second.Backward();
                return [Host(gq), Host(k.Grad!), Host(v.Grad!)];
            }
            var got = Run(device);
            var cpu = Run(Device.Cpu);
            for (int i = 0; i < 3; i++) TestUtil.AssertClose(cpu[i], got[i], CpuTol, CpuTol, $"second order, masked={masked}, result {i} on {device}");
        }
    }
}

/// <summary>The attention kernels on the kernel emulator (always available).</summary>
public class EmulatorAttentionKernelTests
{
    private static readonly Device Emulator = Device.Parse("emulator");

    [Fact] public void ForwardBackward_MatchFloat64AndCpu() => AttentionKernelChecks.ForwardBackward(Emulator);
    [Fact] public void LogSumExp_MatchesFloat64_FullyMaskedRowIsNegativeInfinity() => AttentionKernelChecks.LogSumExp(Emulator);
    [Fact] public void Probabilities_MatchFloat64AndCpu_WithGradients() => AttentionKernelChecks.Probabilities(Emulator);
    [Fact] public void CreateGraph_SecondOrderMatchesCpu() => AttentionKernelChecks.SecondOrder(Emulator);

    [Fact]
    public void HeadsPast128_RunTheCompositePath_AndMatchCpu()
    {
        var rng = new Random(TestUtil.StableSeed("attention-kernel-d130"));
        using var q = TestUtil.Random(rng, [1, 3, 130]);
        using var k = TestUtil.Random(rng, [1, 4, 130]);
        using var v = TestUtil.Random(rng, [1, 4, 2]);
        using var want = Tensor.ScaledDotProductAttention(q, k, v);
        using var qd = q.To(Emulator);
        using var kd = k.To(Emulator);
        using var vd = v.To(Emulator);
        using var got = Tensor.ScaledDotProductAttention(qd, kd, vd);
        using var wd = want.To(DType.Float64);
        TestUtil.AssertClose(wd.ToArray<double>(), got.To(Device.Cpu), 3e-5, 3e-5, "D = 130");
        Assert.False(KernelDispatch.AttentionFits(qd, null, [1], 3, 4, 130, 2));
        Assert.True(KernelDispatch.AttentionFits(qd, null, [1], 3, 4, 128, 128));
    }

    [Fact]
    public void Backward_IsDeterministic()
    {
        var rng = new Random(TestUtil.StableSeed("attention-kernel-determinism"));
        double[][] Run()
        {
            using var q = TestUtil.Random(rng = new Random(7), [1, 20, 6]);
            using var k = TestUtil.Random(rng, [1, 40, 6]);
            using var v = TestUtil.Random(rng, [1, 40, 6]);
            using var qd = q.To(Emulator).RequiresGrad_();
            using var kd = k.To(Emulator).RequiresGrad_();
            using var vd = v.To(Emulator).RequiresGrad_();
            using var y = Tensor.ScaledDotProductAttention(qd, kd, vd, causal: true);
            using var s = y.Sum();
            s.Backward();
            return [qd.Grad!.ToArray<float>().Select(f => (double)f).ToArray(), kd.Grad!.ToArray<float>().Select(f => (double)f).ToArray()];
        }
        var a = Run();
        var b = Run();
        Assert.Equal(a[0], b[0]);
        Assert.Equal(a[1], b[1]);
    }

    [Fact]
    public void LaunchShapeOfTheReport_IsThePlansGroup()
    {
        System.Runtime.CompilerServices.RuntimeHelpers.RunModuleConstructor(typeof(Tensor).Module.ModuleHandle);
        var kernels = KernelRegistry.All.Where(k => k.DeclaringType == "Engine.Tensors.Kernels.AttentionKernels").ToList();
        Assert.Equal(5, kernels.Count);
        foreach (var kernel in kernels)
            Assert.Equal(kernel.Name == "Forward" ? AttentionPlan.ForwardGroup.Size : AttentionPlan.Group.Size,
                (long)Engine.Cli.KernelsCommand.LaunchShape(kernel).ThreadsPerBlock);
    }
}

/// <summary>The attention kernels on OpenCL (PoCL in CI): the translated OpenCL C, run.</summary>
public class OpenCLAttentionKernelTests
{
    private static readonly Device OpenCL = Device.Parse("opencl:0");

    [BackendFact("opencl")] public void ForwardBackward_MatchFloat64AndCpu() => AttentionKernelChecks.ForwardBackward(OpenCL);
    [BackendFact("opencl")] public void LogSumExp_MatchesFloat64_FullyMaskedRowIsNegativeInfinity() => AttentionKernelChecks.LogSumExp(OpenCL);
    [BackendFact("opencl")] public void Probabilities_MatchFloat64AndCpu_WithGradients() => AttentionKernelChecks.Probabilities(OpenCL);
    [BackendFact("opencl")] public void CreateGraph_SecondOrderMatchesCpu() => AttentionKernelChecks.SecondOrder(OpenCL);
    [BackendFact("opencl")] public void ForwardBackward_NeverHoldAnNqByNkBuffer() => AttentionKernelChecks.NoQuadraticMemory(OpenCL);
}

/// <summary>The attention kernels on a CUDA GPU (where one exists; skipped with the reason elsewhere).</summary>
public class CudaAttentionKernelTests
{
    private static readonly Device Cuda = Device.Parse("cuda:0");

    [BackendFact("cuda")] public void ForwardBackward_MatchFloat64AndCpu() => AttentionKernelChecks.ForwardBackward(Cuda);
    [BackendFact("cuda")] public void Probabilities_MatchFloat64AndCpu_WithGradients() => AttentionKernelChecks.Probabilities(Cuda);
}

/// <summary>NVRTC compiles every attention kernel for sm_70/80/90 with no spills and no stack frame.</summary>
public class AttentionKernelBuildTests
{
    public static TheoryData<int> Architectures => new() { 70, 80, 90 };

    [BackendTheory("nvrtc")]
    [MemberData(nameof(Architectures))]
    public void AttentionKernels_CompileWithNvrtc_WithoutSpills(int arch)
    {
        System.Runtime.CompilerServices.RuntimeHelpers.RunModuleConstructor(typeof(Tensor).Module.ModuleHandle);
        var kernels = KernelRegistry.All.Where(k => k.DeclaringType == "Engine.Tensors.Kernels.AttentionKernels").ToList();
        Assert.Equal(5, kernels.Count); // Forward, RowDot, BackwardKeyValue, BackwardQuery, Probabilities
        foreach (var kernel in kernels)
        {
            NvrtcModule module;
            try { module = Nvrtc.Compile(kernel.CudaSource, $"sm_{arch}", programName: kernel.EntryPoint + ".cu"); }
            catch (NvrtcException e) { throw new Xunit.Sdk.XunitException($"{kernel.Name} failed for sm_{arch}:\n{e.Message}"); }
            var usage = Assert.Single(module.Kernels, k => k.Kernel == kernel.EntryPoint);
            Assert.True(usage.StackFrameBytes == 0 && usage.SpillBytes == 0, $"{kernel.Name} on sm_{arch}: {usage}");
            Assert.True(usage.SharedMemoryBytes <= 48 * 1024, $"{kernel.Name} on sm_{arch}: {usage}");
        }
    }
}
