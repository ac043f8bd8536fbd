using Engine.Tensors;
using Engine.Tensors.Kernels;
using Engine.Tensors.Optim;
using Device = Engine.Runtime.Device;

namespace Engine.Tests.Kernels;

/// <summary>
/// One knowledge-distillation step of a linear student entirely on a device, the way the fused loss
/// wires the divergence kernel in: logits = x·W (Sgemm), the Divergence kernel gives the row losses and
/// ∂L/∂logits (T²/B folded into its scale, an ignored row), logits.Backward(that gradient) runs the
/// matmul backward on the device, and SGD with momentum steps W through the SgdStep kernel. Compared
/// with the same step on the CPU built from composite tensor ops (log_softmax, exp, products, sums).
/// </summary>
public class DistillationStepKernelTests
{
    private static void Step(Device device, int maxGroup)
    {
        const int b = 6, h = 5, v = 11;
        const double temperature = 2;
        var rng = new Random(TestUtil.StableSeed("kd step on device"));
        using var x = TestUtil.Random(rng, [b, h], DType.Float32, -1, 1);
        using var teacher = TestUtil.Random(rng, [b, v], DType.Float32, -3, 3);
        using var w0 = TestUtil.Random(rng, [h, v], DType.Float32, -1, 1);
        long[] labels = [3, 0, -100, 7, 10, 2];
        int counted = labels.Count(l => l != -100);

        // CPU, composite: L = T²/B · Σ_rows mask_r · Σ_j p (log p − log q).
        using var w = w0.Clone().RequiresGrad_();
        using var opt = new SGD([w], learningRate: 0.1, momentum: 0.9);
        float cpuLoss;
        using (var logits = x.MatMul(w))
        using (var logQ = logits.LogSoftmax(-1, temperature))
        using (var logP = teacher.LogSoftmax(-1, temperature))
        using (var p = logP.Exp())
        using (var diff = logP.Sub(logQ))
        using (var terms = p.Mul(diff))
        using (var rows = terms.Sum(-1, keepDim: true))
        using (var mask = Tensor.FromArray(labels.Select(l => l == -100 ? 0f : 1f).ToArray(), b, 1))
        using (var masked = rows.Mul(mask))
        using (var total = masked.Sum())
        using (var loss = total.Mul(temperature * temperature / counted))
        {
            cpuLoss = loss.Item<float>();
            loss.Backward();
        }
        var cpuGrad = w.Grad!.ToArray<float>();
        opt.Step();

        // Device: the same step from kernels only.
        using var xd = x.To(device);
        using var td = teacher.To(device);
        using var labelsD = Tensor.FromArray(labels, b).To(device);
        using var wd = w0.To(device).RequiresGrad_();
        using var optD = new SGD([wd], learningRate: 0.1, momentum: 0.9);
        float deviceLoss;
        using (var logits = xd.MatMul(wd))
        {
            var (rowLoss, grad) = KernelDispatch.Divergence(logits, td, DivergenceKind.ForwardKL, 0, temperature, labels: labelsD,
                scale: 1.0 / counted, scaleByTemperatureSquared: true, maxGroup: maxGroup);
            using (rowLoss)
            using (grad)
            {
                Assert.Equal(device, grad.Device);
                using var sum = rowLoss.Sum();
                deviceLoss = sum.Item<float>();
                logits.Backward(grad);
            }
        }
        Assert.Equal(device, wd.Grad!.Device);
        using (var gradOnCpu = wd.Grad!.To(Device.Cpu))
            TestUtil.AssertClose(cpuGrad.Select(g => (double)g).ToArray(), gradOnCpu, 1e-5, 1e-4, $"∂L/∂W on {device}");
        optD.Step();

        Assert.True(Math.Abs(cpuLoss - deviceLoss) <= 1e-5 * Math.Abs(cpuLoss) + 1e-6, $"loss on {device} {deviceLoss:R}, CPU composite {cpuLoss:R}");
        using var wAfter = wd.To(Device.Cpu);
        TestUtil.AssertClose(w.ToArray<float>().Select(g => (double)g).ToArray(), wAfter, 1e-6, 1e-5, $"W after the SGD step on {device}");
    }

    [Fact]
    public void KdStep_OnEmulator_MatchesCpuComposite() => Step(Device.Parse("emulator"), maxGroup: 16);

    [BackendFact("opencl")]
    public void KdStep_OnOpenCL_MatchesCpuComposite() => Step(Device.Parse("opencl:0"), DivergenceKernels.MaxGroup);
}
