using System.Diagnostics;
using System.Globalization;
using Engine.Data;
using Engine.Data.Transforms;
using Engine.Tensors;
using Engine.Tensors.NN;
using Engine.Tensors.Optim;

namespace Engine.Distillation.Methods;

/// <summary>The optimization settings of a <see cref="MethodTrainer"/> run (the defaults of <c>engine train</c>).</summary>
public sealed record MethodTrainSettings
{
    /// <summary>Epochs.</summary>
    public int Epochs { get; init; } = 10;

    /// <summary>Images per step.</summary>
    public int BatchSize { get; init; } = 128;

    /// <summary>Peak learning rate of SGD.</summary>
    public double LearningRate { get; init; } = 0.05;

    /// <summary>Epochs of linear warmup from 0.1× the peak (capped at a fifth of the steps; 0: none), then cosine to 0 per step.</summary>
    public double WarmupEpochs { get; init; } = 1;

    /// <summary>SGD momentum.</summary>
    public double Momentum { get; init; } = 0.9;

    /// <summary>L2 weight decay.</summary>
    public double WeightDecay { get; init; } = 5e-4;

    /// <summary>Seeds the shuffling and the augmentation (the models are seeded by whoever builds them).</summary>
    public ulong Seed { get; init; }

    /// <summary>Random 28×28 crops of images padded by 2.</summary>
    public bool Augment { get; init; }

    /// <summary>Random horizontal flips.</summary>
    public bool Flip { get; init; }

    /// <summary>The normalization every image goes through (default: Fashion-MNIST's mean and std).</summary>
    public IBatchTransform Normalization { get; init; } = new Normalize(FashionMnist.Mean, FashionMnist.Std);

    /// <summary>Images per evaluation batch.</summary>
    public int EvalBatchSize { get; init; } = 500;

    /// <summary>
    /// Where the step runs (default the CPU). On an accelerator (<c>emulator</c>, <c>opencl:N</c>, <c>cuda:N</c>) the
    /// trainer moves the student, the teachers and the method's extra modules there for the run, puts every batch
    /// (and the cached teacher logits) there, and moves the modules back to where they were afterwards, so every op of
    /// the method's loss, its backward and the SGD step run as kernels on the device.
    /// </summary>
    public Engine.Runtime.Device Device { get; init; } = Engine.Runtime.Device.Cpu;
}

/// <summary>One epoch of a method's training.</summary>
/// <param name="Epoch">1-based epoch.</param>
/// <param name="TrainLoss">Mean loss of update 0 (the student's) over the epoch, weighted by batch size.</param>
/// <param name="TrainAccuracy">Fraction of training images the student classified right during the epoch.</param>
/// <param name="TestAccuracy">Test accuracy after the epoch (eval mode).</param>
/// <param name="Seconds">Wall time of the epoch's training steps (evaluation excluded).</param>
/// <param name="ImagesPerSecond">Training images per second.</param>
/// <param name="LearningRate">The learning rate at the end of the epoch.</param>
public sealed record MethodEpoch(int Epoch, double TrainLoss, double TrainAccuracy, double TestAccuracy, double Seconds, double ImagesPerSecond, double LearningRate);

/// <summary>A finished run.</summary>
/// <param name="Epochs">Per-epoch numbers.</param>
/// <param name="TestAccuracy">Test accuracy after the last epoch.</param>
/// <param name="Seconds">Total wall time (teacher-logit cache, training and evaluation).</param>
public sealed record MethodRunResult(IReadOnlyList<MethodEpoch> Epochs, double TestAccuracy, double Seconds)
{
    /// <summary>Mean training seconds per epoch (evaluation excluded).</summary>
    public double SecondsPerEpoch => Epochs.Count == 0 ? 0 : Epochs.Average(e => e.Seconds);
}

/// <summary>Receives a run's progress (the CLI draws bars; tests print lines or nothing).</summary>
public interface ITrainingObserver
{
    /// <summary>Runs <paramref name="body"/>, which reports (done, status) over <paramref name="total"/> steps titled <paramref name="title"/>.</summary>
    T WithProgress<T>(string title, int total, Func<Action<int, string>, T> body);

    /// <summary>An epoch finished (<paramref name="label"/> names the run).</summary>
    void EpochDone(string label, int epochs, MethodEpoch epoch);
}

/// <summary>An observer that prints one line per finished epoch to a writer (or nothing, with <see cref="Silent"/>).</summary>
public sealed class TextTrainingObserver(TextWriter? output) : ITrainingObserver
{
    /// <summary>Prints nothing.</summary>
    public static TextTrainingObserver Silent { get; } = new(null);

    /// <inheritdoc/>
    public T WithProgress<T>(string title, int total, Func<Action<int, string>, T> body)
    {
        ArgumentNullException.ThrowIfNull(body);
        return body((_, _) => { });
    }

    /// <inheritdoc/>
    public void EpochDone(string label, int epochs, MethodEpoch epoch)
    {
        ArgumentNullException.ThrowIfNull(epoch);
        output?.WriteLine(MethodTrainer.EpochLine(label, epochs, epoch));
    }
}

/// <summary>The loss of a run stopped being finite.</summary>
public sealed class TrainingDivergedException(string message) : Exception(message);

/// <summary>
/// Trains any <see cref="IDistillationMethod"/>: SGD (momentum, weight decay) per update group with a
/// per-step linear warmup and cosine schedule to 0, the student evaluated on the test set after each
/// epoch. When the method needs only its teachers' logits and the images are not augmented, the
/// teachers' logits are computed once over the training set (eval mode, no grad) and gathered per
/// batch by sample index (the loss is the same as running the teachers at every step).
/// </summary>
public static class MethodTrainer
{
    /// <summary>The per-epoch line ("kd epoch 2/10: loss ..., train acc ..., test acc ..., s, img/s").</summary>
    public static string EpochLine(string label, int epochs, MethodEpoch m)
    {
        ArgumentNullException.ThrowIfNull(m);
        return string.Create(CultureInfo.InvariantCulture,
            $"{label} epoch {m.Epoch}/{epochs}: loss {m.TrainLoss:F4}, train acc {m.TrainAccuracy * 100:F2}%, test acc {m.TestAccuracy * 100:F2}%, {m.Seconds:F1} s, {m.ImagesPerSecond:F0} img/s");
    }

    /// <summary>
    /// Fraction of <paramref name="test"/> that <paramref name="model"/> classifies right (eval mode, no grad), on the
    /// device the model's parameters are on.
    /// </summary>
    public static double Evaluate(Module model, ImageDataset test, IBatchTransform normalization, int batchSize = 500)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(test);
        model.Eval();
        var device = DeviceOf(model);
        var loader = new DataLoader(test, batchSize, shuffle: false, transform: normalization);
        long correct = 0;
        using (Tensor.NoGrad())
            foreach (var batch in loader)
                using (batch)
                using (Tensor.NewDisposeScope())
                    correct += CountCorrect(model.Forward(batch.Images.To(device)), batch.Labels);
        return test.Count == 0 ? 0 : (double)correct / test.Count;
    }

    /// <summary>
    /// Trains <paramref name="method"/> on <paramref name="train"/> with <paramref name="settings"/>,
    /// evaluating its student on <paramref name="test"/> after each epoch; reports to
    /// <paramref name="observer"/> under <paramref name="label"/> (default: the method's name).
    /// The student is left in eval mode.
    /// </summary>
    /// <exception cref="TrainingDivergedException">The loss became NaN or infinite (the message names the batch and the learning rate).</exception>
    /// <exception cref="NotSupportedException">On an accelerator (<see cref="MethodTrainSettings.Device"/>), an op of the
    /// method has no kernel there: the message names the method, the device and the op.</exception>
    public static MethodRunResult Train(IDistillationMethod method, MethodTrainSettings settings, ImageDataset train, ImageDataset test,
        ITrainingObserver? observer = null, string? label = null)
    {
        ArgumentNullException.ThrowIfNull(method);
        ArgumentNullException.ThrowIfNull(settings);
        ArgumentNullException.ThrowIfNull(train);
        ArgumentNullException.ThrowIfNull(test);
        if (settings.Epochs < 1) throw new ArgumentOutOfRangeException(nameof(settings), $"MethodTrainer: epochs must be at least 1; got {settings.Epochs}.");
        if (settings.BatchSize < 1) throw new ArgumentOutOfRangeException(nameof(settings), $"MethodTrainer: batch size must be at least 1; got {settings.BatchSize}.");
        var device = settings.Device;
        if (device.Type == Engine.Runtime.DeviceType.Cpu) return TrainOn(method, settings, train, test, observer, label);

        // Every module the method runs goes to the device for the run and back to where it was afterwards (the
        // caller's modules stay the caller's: a checkpoint saved after the run reads host memory). Module.To
        // replaces the parameter tensors, so the update groups are read after the move (TrainOn does).
        var modules = new[] { method.Student }.Concat(method.ExtraModules).Concat(method.Teachers).Distinct().ToList();
        var homes = modules.Select(DeviceOf).ToList();
        try
        {
            foreach (var m in modules) m.To(device);
            return TrainOn(method, settings, train, test, observer, label);
        }
        catch (NotSupportedException e)
        {
            throw new NotSupportedException($"MethodTrainer: method '{method.Name}' cannot run on {device}: {e.Message}", e);
        }
        finally
        {
            for (int i = 0; i < modules.Count; i++) modules[i].To(homes[i]);
        }
    }

    /// <summary>The device of <paramref name="model"/>'s first parameter (the CPU for a model without parameters).</summary>
    public static Engine.Runtime.Device DeviceOf(Module model)
    {
        ArgumentNullException.ThrowIfNull(model);
        return model.Parameters().FirstOrDefault()?.Device ?? Engine.Runtime.Device.Cpu;
    }

    private static MethodRunResult TrainOn(IDistillationMethod method, MethodTrainSettings settings, ImageDataset train, ImageDataset test,
        ITrainingObserver? observer, string? label)
    {
        var device = settings.Device;
        bool onDevice = device.Type != Engine.Runtime.DeviceType.Cpu;
        observer ??= TextTrainingObserver.Silent;
        label ??= method.Name;
        var total = Stopwatch.StartNew();

        foreach (var t in method.Teachers) t.Eval();
        bool augmented = settings.Augment || settings.Flip;
        float[][]? cache = null;
        int classes = train.NumClasses;
        if (method.UsesTeacherLogitsOnly && !augmented && method.Teachers.Count > 0)
            cache = method.Teachers.Select((t, i) => CacheLogits(t, train, settings, observer, $"{label}: teacher {i} logits", out classes)).ToArray();

        var transforms = new List<IBatchTransform>();
        if (settings.Augment) transforms.Add(new RandomCrop(FashionMnist.ImageSize, padding: 2));
        if (settings.Flip) transforms.Add(new RandomHorizontalFlip());
        transforms.Add(settings.Normalization);
        var loader = new DataLoader(train, settings.BatchSize, shuffle: true, seed: settings.Seed, transform: new Compose([.. transforms]));
        var groups = method.UpdateGroups;
        var optimizers = groups.Select(g => new SGD(g, settings.LearningRate, momentum: settings.Momentum, weightDecay: settings.WeightDecay)).ToList();
        try
        {
            long totalSteps = (long)settings.Epochs * loader.BatchCount;
            long warmupSteps = Math.Min((long)Math.Round(settings.WarmupEpochs * loader.BatchCount), totalSteps / 5);
            var schedules = optimizers.Select(o => warmupSteps >= 1
                ? (LRScheduler)LRScheduler.WarmupCosine(o, warmupSteps, totalSteps, warmupStartFactor: 0.1)
                : new CosineAnnealingLR(o, tMax: Math.Max(totalSteps, 1))).ToList();
            method.BeginTraining(new TrainingPlan(train.Count, train.NumClasses, settings.Epochs, loader.BatchCount, FixedInputs: !augmented));
            var epochs = new List<MethodEpoch>();
            long globalStep = 0;
            for (int epoch = 0; epoch < settings.Epochs; epoch++)
            {
                method.Student.Train();
                foreach (var m in method.ExtraModules) m.Train();
                foreach (var t in method.Teachers) t.Eval();
                method.BeginEpoch(epoch);
                var order = loader.Order(epoch);
                double lossSum = 0;
                long correct = 0, seen = 0;
                var clock = Stopwatch.StartNew();
                string title = $"{label} epoch {epoch + 1}/{settings.Epochs}";
                observer.WithProgress(title, loader.BatchCount, report =>
                {
                    int step = 0;
                    foreach (var batch in loader.Batches(epoch))
                    {
                        using (batch)
                        using (Tensor.NewDisposeScope())
                        {
                            int n = (int)batch.Labels.Size(0);
                            var indices = order.AsSpan(step * settings.BatchSize, n).ToArray();
                            var teacherLogits = cache?.Select(c => Gather(c, classes, indices).To(device)).ToArray();
                            var images = onDevice ? batch.Images.To(device) : batch.Images;
                            var labels = onDevice ? batch.Labels.To(device) : batch.Labels;
                            var b = new DistillationBatch(images, labels, indices, epoch, step, globalStep, teacherLogits);
                            for (int u = 0; u < optimizers.Count; u++)
                            {
                                optimizers[u].ZeroGrad();
                                var (loss, logits) = method.Loss(b, u);
                                loss.Backward();
                                optimizers[u].Step();
                                schedules[u].Step();
                                if (u != 0) continue;
                                double value = loss.ToDouble();
                                if (!double.IsFinite(value))
                                    throw new TrainingDivergedException($"{title}: the loss became {value} at batch {step + 1}; lower the learning rate (now {optimizers[0].ParamGroups[0].LearningRate:G3}).");
                                lossSum += value * n;
                                using (Tensor.NoGrad()) correct += CountCorrect(logits, batch.Labels);
                            }
                            seen += n;
                        }
                        step++;
                        globalStep++;
                        report(step, string.Create(CultureInfo.InvariantCulture,
                            $"loss {lossSum / seen:F4}  acc {(double)correct / seen * 100:F1}%  {seen / clock.Elapsed.TotalSeconds:F0} img/s"));
                    }
                    return 0;
                });
                double seconds = clock.Elapsed.TotalSeconds;
                method.EndEpoch(epoch);
                double testAcc = Evaluate(method.Student, test, settings.Normalization, settings.EvalBatchSize);
                var metrics = new MethodEpoch(epoch + 1, seen == 0 ? 0 : lossSum / seen, seen == 0 ? 0 : (double)correct / seen, testAcc,
                    seconds, seen / Math.Max(seconds, 1e-9), optimizers[0].ParamGroups[0].LearningRate);
                epochs.Add(metrics);
                observer.EpochDone(label, settings.Epochs, metrics);
            }
            method.Student.Eval();
            return new MethodRunResult(epochs, epochs[^1].TestAccuracy, total.Elapsed.TotalSeconds);
        }
        finally
        {
            foreach (var o in optimizers) o.Dispose();
        }
    }

    private static float[] CacheLogits(Module teacher, ImageDataset data, MethodTrainSettings settings, ITrainingObserver observer, string title, out int classes)
    {
        teacher.Eval();
        var device = DeviceOf(teacher);
        var loader = new DataLoader(data, settings.EvalBatchSize, shuffle: false, transform: settings.Normalization);
        float[]? all = null;
        int c = 0, row = 0;
        observer.WithProgress(title, loader.BatchCount, report =>
        {
            int done = 0;
            using (Tensor.NoGrad())
                foreach (var batch in loader)
                    using (batch)
                    using (Tensor.NewDisposeScope())
                    {
                        var logits = teacher.Forward(batch.Images.To(device)).To(DType.Float32).Contiguous();
                        c = (int)logits.Size(1);
                        all ??= new float[(long)data.Count * c];
                        logits.ToArray<float>().CopyTo(all, (long)row * c);
                        row += (int)logits.Size(0);
                        report(++done, $"{row} images");
                    }
            return 0;
        });
        classes = c;
        return all ?? [];
    }

    private static Tensor Gather(float[] cache, int classes, long[] indices)
    {
        var data = new float[indices.Length * classes];
        for (int i = 0; i < indices.Length; i++) Array.Copy(cache, indices[i] * classes, data, (long)i * classes, classes);
        return Tensor.FromArray(data, indices.Length, classes);
    }

    internal static long CountCorrect(Tensor logits, Tensor labels)
    {
        using var predicted = logits.ArgMax(1);
        var p = predicted.ToArray<long>();
        var y = labels.ToArray<long>();
        long correct = 0;
        for (int i = 0; i < p.Length; i++) if (p[i] == y[i]) correct++;
        return correct;
    }
}
