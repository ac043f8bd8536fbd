using Engine.Distillation;
using Engine.Tensors;
using Engine.Tensors.NN;
using Engine.Tensors.NN.Models;
using Engine.Tensors.Optim;

namespace Engine.Benchmarks.Cases;

/// <summary>
/// <c>fmnist-kd-epoch</c>: one KD epoch's worth of steps (469 batches of 128 random images of the
/// Fashion-MNIST shape, as torch_bench.py's <c>fmnist_kd_epoch</c>): frozen teacher forward (eval mode,
/// no grad), student forward and backward, loss 0.1·CE + 0.9·T²·KL (T = 4, batchmean), SGD step (lr 0.05,
/// momentum 0.9). The teacher runs at every step, as in the peer (no cached teacher logits). On a device
/// (<c>--device</c>) both models, the images and the labels live there and every op of the step runs as kernels;
/// the timed step reads nothing back to the host.
/// </summary>
/// <remarks>
/// Validated before timing: on the first batch, the loss equals a float64 recomputation from the two
/// models' logits, and after one SGD step every student parameter moved by exactly −lr·grad (the first
/// momentum step is the gradient itself). On a device, the logits and parameters are copied to the host for
/// these checks.
/// </remarks>
public sealed class FmnistKdEpoch : BenchCase
{
    /// <inheritdoc />
    public override string Name => "fmnist-kd-epoch";

    /// <inheritdoc />
    public override string Description => "one KD epoch: 469 x [128,1,28,28], teacher fwd + student fwd/bwd + SGD";

    /// <inheritdoc />
    public override string Target => "issue 4: <= 1.0x PyTorch's time";

    private const double Temperature = 4.0, Alpha = 0.9, Lr = 0.05;

    /// <inheritdoc />
    public override bool RunsOnDevices => true;

    /// <inheritdoc />
    public override BenchRun Prepare(BenchOptions options)
    {
        var device = options.Target;
        // --quick on a device: one batch of 8 (PoCL and the emulator run the teacher's convolutions on the CPU,
        // and the emulator one C# thread per GPU thread); --quick on the CPU: 3 batches of 128.
        bool small = options.Quick && !device.IsCpu;
        int batches = small ? 1 : options.Quick ? 3 : 469;
        int batch = small ? 8 : 128;
        var g = new Generator(0);
        var teacher = FashionMnistModels.Teacher(g);
        var student = FashionMnistModels.Student(g);
        teacher.Eval();
        var images = Tensor.Randn([batches, batch, 1, 28, 28], generator: g);
        var labels = Tensor.RandInt(0, 10, [batches, batch], g);
        if (!device.IsCpu)
        {
            // The same initial weights and data as on the CPU, copied to the device (the optimizer is built after
            // the move, over the device's parameters).
            teacher.To(device.Device);
            student.To(device.Device);
            images = device.Place(images);
            labels = device.Place(labels);
        }
        var optimizer = new SGD(student.Parameters(), Lr, momentum: 0.9);

        double lossError = Validate(teacher, student, optimizer, images, labels);

        // Shape: images per timed step (a full epoch's 60000 at the real size) and the batch size.
        var run = new BenchRun([options.Quick ? (long)batches * batch : 60000, batch], () =>
        {
            for (int i = 0; i < batches; i++)
            {
                using var scope = Tensor.NewDisposeScope();
                var x = images.Select(0, i);
                var y = labels.Select(0, i);
                Tensor t;
                using (Tensor.NoGrad()) t = teacher.Forward(x);
                var s = student.Forward(x);
                var loss = Losses.KnowledgeDistillation(s, t, y, Temperature, Alpha);
                optimizer.ZeroGrad();
                loss.Backward();
                optimizer.Step();
            }
        }) { WarmupSteps = 1 };
        run.Own(teacher);
        run.Own(student);
        run.Own(images);
        run.Own(labels);
        run.Extra["temperature"] = Temperature;
        run.Extra["batches"] = batches;
        run.Extra["first_loss_rel_error"] = lossError;
        return run;
    }

    /// <summary>Checks the first batch's loss and SGD step (see the remarks); returns the loss's relative error.</summary>
    private static double Validate(Module teacher, Module student, SGD optimizer, Tensor images, Tensor labels)
    {
        using var scope = Tensor.NewDisposeScope();
        var x = images.Select(0, 0);
        var y = labels.Select(0, 0);
        Tensor t;
        using (Tensor.NoGrad()) t = teacher.Forward(x);
        var s = student.Forward(x);
        var loss = Losses.KnowledgeDistillation(s, t, y, Temperature, Alpha);
        // float32 logits copied to the host (whatever the device), widened there.
        static double[] Host(Tensor x) => Array.ConvertAll(x.Detach().ToArray<float>(), v => (double)v);
        double want = ReferenceLoss(Host(s), Host(t), y.ToArray<long>(), (int)s.Size(1));
        double got = loss.ToDouble();
        if (Math.Abs(got - want) > 1e-4 * Math.Abs(want) + 1e-5)
            throw new BenchValidationException($"fmnist-kd-epoch: first-batch loss {got} differs from the float64 reference {want}");

        var before = student.Parameters().Select(p => p.ToArray<float>()).ToArray();
        optimizer.ZeroGrad();
        loss.Backward();
        var grads = student.Parameters().Select(p => p.Grad!.ToArray<float>()).ToArray();
        optimizer.Step();
        var after = student.Parameters().Select(p => p.ToArray<float>()).ToArray();
        for (int k = 0; k < before.Length; k++)
            for (int i = 0; i < before[k].Length; i++)
            {
                double expected = before[k][i] - Lr * grads[k][i];
                if (Math.Abs(after[k][i] - expected) > 1e-6 + 1e-5 * Math.Abs(expected))
                    throw new BenchValidationException($"fmnist-kd-epoch: SGD step of parameter {k} element {i}: expected {expected}, got {after[k][i]}");
            }
        return Math.Abs(got - want) / Math.Abs(want);
    }

    /// <summary>0.1·CE(s, y) + 0.9·T²·(1/B)·Σ KL(softmax(t/T) ‖ softmax(s/T)) in float64.</summary>
    private static double ReferenceLoss(double[] s, double[] t, long[] y, int classes)
    {
        int rows = y.Length;
        double ce = 0, kl = 0;
        for (int r = 0; r < rows; r++)
        {
            var sr = s.AsSpan(r * classes, classes);
            var tr = t.AsSpan(r * classes, classes);
            ce += LogSumExp(sr, 1) - sr[(int)y[r]];
            double ls = LogSumExp(sr, Temperature), lt = LogSumExp(tr, Temperature);
            for (int c = 0; c < classes; c++)
            {
                double logP = tr[c] / Temperature - lt, logQ = sr[c] / Temperature - ls;
                kl += Math.Exp(logP) * (logP - logQ);
            }
        }
        return (1 - Alpha) * ce / rows + Alpha * Temperature * Temperature * kl / rows;
    }

    private static double LogSumExp(ReadOnlySpan<double> row, double temperature)
    {
        double max = double.NegativeInfinity, sum = 0;
        foreach (var v in row) max = Math.Max(max, v / temperature);
        foreach (var v in row) sum += Math.Exp(v / temperature - max);
        return max + Math.Log(sum);
    }
}
