using System.Globalization;
using System.Text.Json;
using Engine.Tensors;
using Engine.Tensors.Serialization;
using Engine.Tests.Cli;

namespace Engine.Tests.DeviceTensors;

/// <summary>
/// End to end: <c>engine train</c> and <c>engine distill</c> with <c>--device opencl</c> run every op of
/// the training step from our kernels (conv, batch norm, max-pool, dropout, linear, cross-entropy,
/// KD loss, SGD) and follow the CPU run with the same seed: the per-epoch losses and accuracies agree
/// within float32 rounding (the kernels sum in another order than the CPU), and so do the weights.
/// Data: the tiny synthetic Fashion-MNIST of <see cref="CliFixture"/>.
/// </summary>
public class DeviceTrainingCliTests(CliFixture fx) : IClassFixture<CliFixture>
{
    internal sealed record Run(double[] Loss, double[] TrainAcc, double[] TestAcc, Dictionary<string, Tensor> Weights);

    private Run Train(string device, params string[] args) => Train(fx, device, args);

    /// <summary>Runs <paramref name="args"/> with <c>--device</c> <paramref name="device"/>, <c>--metrics</c> and <c>--out</c>; returns the curve and the saved weights.</summary>
    internal static Run Train(CliFixture fx, string device, params string[] args)
    {
        string ckpt = fx.NewPath(device.Replace(':', '-') + ".safetensors"), metrics = fx.NewPath("m.jsonl");
        var (rc, output, err) = fx.Run([.. args, "--device", device, "--threads", "2", "--out", ckpt, "--metrics", metrics]);
        Assert.True(rc == 0, $"{string.Join(' ', args)} --device {device} failed: {err}\n{output}");
        var records = File.ReadAllLines(metrics).Select(l => JsonDocument.Parse(l).RootElement).ToList();
        double[] Field(string name) => records.Select(r => r.GetProperty(name).GetDouble()).ToArray();
        return new Run(Field("train_loss"), Field("train_acc"), Field("test_acc"), SafeTensors.Load(ckpt, out _));
    }

    internal static void SameCurve(Run cpu, Run dev, int trainImages, int testImages, string what)
    {
        Assert.Equal(cpu.Loss.Length, dev.Loss.Length);
        for (int e = 0; e < cpu.Loss.Length; e++)
        {
            Assert.True(Math.Abs(cpu.Loss[e] - dev.Loss[e]) <= 2e-3 * Math.Max(1, cpu.Loss[e]),
                string.Create(CultureInfo.InvariantCulture, $"{what} epoch {e + 1}: loss {dev.Loss[e]:R} on the device, {cpu.Loss[e]:R} on the CPU"));
            // At most one image may flip when two logits are within rounding of each other.
            Assert.True(Math.Abs(cpu.TrainAcc[e] - dev.TrainAcc[e]) * trainImages <= 1.01, $"{what} epoch {e + 1}: train accuracy {dev.TrainAcc[e]} vs {cpu.TrainAcc[e]}");
            Assert.True(Math.Abs(cpu.TestAcc[e] - dev.TestAcc[e]) * testImages <= 1.01, $"{what} epoch {e + 1}: test accuracy {dev.TestAcc[e]} vs {cpu.TestAcc[e]}");
        }
        Assert.Equal(cpu.Weights.Keys.Order(), dev.Weights.Keys.Order());
        foreach (var (name, w) in cpu.Weights)
        {
            var d = dev.Weights[name];
            Assert.Equal(Engine.Runtime.Device.Cpu, d.Device);
            if (w.DType != DType.Float32) { Assert.Equal(w.ToArray<long>(), d.ToArray<long>()); continue; }
            using var w64 = w.To(DType.Float64);
            using var d64 = d.To(DType.Float64);
            TestUtil.AssertClose(w64.ToArray<double>(), d64, 2e-3, 2e-3, $"{what}: weight {name}");
        }
        foreach (var t in cpu.Weights.Values.Concat(dev.Weights.Values)) t.Dispose();
    }

    [BackendFact("opencl")]
    public void TrainStudent_OnOpenCL_FollowsTheCpuLossCurve()
    {
        string[] args = ["train", "--model", "student", "--epochs", "3", "--limit", "96", "--test-limit", "40", "--batch-size", "16", "--lr", "0.05", "--seed", "5"];
        SameCurve(Train("cpu", args), Train("opencl", args), 96, 40, "student");
    }

    [BackendFact("opencl")]
    public void DistillStudent_OnOpenCL_FollowsTheCpuLossCurve()
    {
        // The teacher's forward (batch norm in eval mode) runs on the device for the cached logits, and
        // with --augment on every augmented batch.
        string[] args = ["distill", "--teacher", fx.TeacherPath, "--epochs", "2", "--limit", "64", "--test-limit", "40", "--batch-size", "16", "--seed", "9"];
        SameCurve(Train("cpu", args), Train("opencl", args), 64, 40, "kd student");
        string[] augmented = [.. args, "--augment", "true"];
        SameCurve(Train("cpu", augmented), Train("opencl", augmented), 64, 40, "kd student (augmented)");
    }

    [BackendFact("opencl")]
    public void TrainTeacher_OnOpenCL_FollowsTheCpuLossCurve()
    {
        // Batch norm in training mode (Welford statistics, running averages) and dropout (Philox masks,
        // equal to the CPU's bit for bit) on the device.
        string[] args = ["train", "--model", "teacher", "--epochs", "1", "--limit", "32", "--test-limit", "20", "--batch-size", "16", "--seed", "2", "--augment", "false"];
        SameCurve(Train("cpu", args), Train("opencl", args), 32, 20, "teacher");
    }

    [Fact]
    public void TrainStudent_OnTheEmulator_FollowsTheCpuLossCurve()
    {
        string[] args = ["train", "--model", "student", "--epochs", "1", "--limit", "8", "--test-limit", "4", "--batch-size", "4", "--seed", "4"];
        SameCurve(Train("cpu", args), Train("emulator", args), 8, 4, "student on the emulator");
    }
}
