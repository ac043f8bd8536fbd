using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Engine.Data;
using Engine.Data.Transforms;
using Engine.Distillation;
using Engine.Tensors;
using Engine.Tensors.Cpu;
using Engine.Tensors.NN;
using Engine.Tensors.NN.Models;
using Engine.Tensors.Optim;
using Device = Engine.Runtime.Device;
using DeviceType = Engine.Runtime.DeviceType;

namespace Engine.Cli.Training;

/// <summary>One epoch's numbers (one line of the <c>--metrics</c> file).</summary>
/// <param name="Epoch">1-based epoch.</param>
/// <param name="TrainLoss">Mean training loss over the epoch's batches (weighted by batch size).</param>
/// <param name="TrainAccuracy">Fraction of training images classified right during the epoch (train mode).</param>
/// <param name="TestAccuracy">Fraction of test images classified right after the epoch (eval mode).</param>
/// <param name="Seconds">Wall time of the epoch's training steps (evaluation excluded).</param>
/// <param name="ImagesPerSecond">Training images per second.</param>
/// <param name="LearningRate">The learning rate at the end of the epoch.</param>
public sealed record EpochMetrics(int Epoch, double TrainLoss, double TrainAccuracy, double TestAccuracy, double Seconds, double ImagesPerSecond, double LearningRate);

/// <summary>A finished training run.</summary>
/// <param name="Model">The trained model (in eval mode; the caller disposes it).</param>
/// <param name="Kind">Teacher or student.</param>
/// <param name="Epochs">Per-epoch metrics.</param>
/// <param name="TestAccuracy">Test accuracy after the last epoch.</param>
/// <param name="Seconds">Total wall time (training and evaluation).</param>
public sealed record TrainResult(FashionMnistNet Model, ModelKind Kind, IReadOnlyList<EpochMetrics> Epochs, double TestAccuracy, double Seconds);

/// <summary>
/// Trains the Fashion-MNIST teacher or student, with cross-entropy (<c>train</c>) or with Hinton KD
/// from a frozen teacher (<c>distill</c>): SGD (momentum, weight decay) with a per-step linear warmup
/// and cosine schedule from the peak rate to 0, evaluated on the test set after each epoch.
/// </summary>
public static class Trainer
{
    /// <summary>Images per evaluation batch (fixed, so <c>eval</c> reproduces the accuracy <c>train</c> stored).</summary>
    public const int EvalBatchSize = 500;

    /// <summary>
    /// The ops one training step runs; each has a kernel for accelerator devices (kernels/: im2col and
    /// col2im with the device GEMM, max-pool, Welford batch statistics, Philox dropout masks, gather,
    /// where, log-softmax, argmax, elementwise ops; the SGD update as device tensor ops).
    /// </summary>
    public static readonly IReadOnlyList<string> TrainingOps =
        ["conv2d (forward, input and weight gradients)", "batch_norm2d", "max_pool2d", "relu", "dropout", "linear (matmul)", "log_softmax", "cross_entropy", "kd_loss", "sgd_step"];

    /// <summary>
    /// Parses <c>--device</c> (cpu, emulator, opencl[:N], cuda[:N]) and checks that the device exists
    /// here; an unknown name or a missing backend is a <see cref="CliException"/> saying why.
    /// </summary>
    public static Device ParseDevice(string device)
    {
        Device d;
        try { d = Device.Parse(device); }
        catch (FormatException)
        {
            throw new CliException($"unknown device '{device}'; expected cpu, emulator, cuda[:N] or opencl[:N] (engine devices lists what this machine has).");
        }
        if (d.Type == DeviceType.Cpu) return d;
        if (Engine.Runtime.DeviceRegistry.MissingReason(d) is { } reason)
            throw new CliException($"--device {device}: {reason}. Use --device cpu.");
        return d;
    }

    /// <summary>Applies <c>--device</c>: throws a <see cref="CliException"/> unless the device is usable (see <see cref="ParseDevice"/>).</summary>
    public static void CheckDevice(string device) => ParseDevice(device);

    /// <summary>The device <paramref name="model"/>'s parameters are on (the CPU for a model without parameters).</summary>
    public static Device DeviceOf(Module model) => model.Parameters().FirstOrDefault()?.Device ?? Device.Cpu;

    /// <summary>Applies <c>--threads</c> and <c>--device</c>, and checks the numeric settings.</summary>
    public static void Prepare(TrainSettings s)
    {
        CheckDevice(s.Device);
        if (s.Threads is int t)
        {
            if (t < 1) throw new CliException($"--threads {t}: expected at least 1.");
            Parallelism.MaxThreads = t;
        }
        if (s.Epochs < 1) throw new CliException($"--epochs {s.Epochs}: expected at least 1.");
        if (s.BatchSize < 1) throw new CliException($"--batch-size {s.BatchSize}: expected at least 1.");
        if (!(s.LearningRate > 0) || double.IsInfinity(s.LearningRate)) throw new CliException($"--lr {s.LearningRate}: expected a positive number.");
        if (!(s.WarmupEpochs >= 0)) throw new CliException($"--warmup-epochs {s.WarmupEpochs}: expected a number >= 0.");
        if (s.Limit is < 1) throw new CliException($"--limit {s.Limit}: expected at least 1 image.");
        if (s.TestLimit is < 1) throw new CliException($"--test-limit {s.TestLimit}: expected at least 1 image.");
    }

    /// <summary>Loads the training split (first <c>--limit</c> images) and the test split (first <c>--test-limit</c>).</summary>
    public static (ImageDataset Train, ImageDataset Test) LoadData(TrainSettings s)
    {
        var train = FashionMnist.Load(FashionMnist.Split.Train, s.DataDirectory);
        var test = FashionMnist.Load(FashionMnist.Split.Test, s.DataDirectory);
        if (s.Limit is int n && n < train.Count) train = train.Take(n);
        if (s.TestLimit is int m && m < test.Count) test = test.Take(m);
        return (train, test);
    }

    /// <summary>A freshly initialized model, seeded.</summary>
    public static FashionMnistNet Build(ModelKind kind, ulong seed)
        => kind == ModelKind.Teacher ? FashionMnistModels.Teacher(new Generator(seed)) : FashionMnistModels.Student(new Generator(seed));

    /// <summary>The standardization every image goes through (Fashion-MNIST's mean and std).</summary>
    public static IBatchTransform Normalization { get; } = new Normalize(FashionMnist.Mean, FashionMnist.Std);

    /// <summary>Fraction of <paramref name="test"/> that <paramref name="model"/> classifies right (eval mode, no grad, batches of <see cref="EvalBatchSize"/>, on the model's device).</summary>
    public static double Evaluate(Module model, ImageDataset test)
    {
        model.Eval();
        var device = DeviceOf(model);
        var loader = new DataLoader(test, EvalBatchSize, shuffle: false, transform: Normalization);
        long correct = 0;
        using (Tensor.NoGrad())
            foreach (var batch in loader)
                using (batch)
                using (Tensor.NewDisposeScope())
                    correct += CountCorrect(model.Forward(batch.Images.To(device)), batch.Labels);
        return test.Count == 0 ? 0 : (double)correct / test.Count;
    }

    /// <summary>
    /// Trains a <paramref name="kind"/> model on <paramref name="train"/>; with <paramref name="teacher"/>,
    /// by KD (<paramref name="distill"/>) from that frozen teacher, otherwise by cross-entropy. Writes
    /// progress to <paramref name="console"/>, appends metrics to <c>--metrics</c> and writes <c>--out</c>.
    /// <para>
    /// When the student's images are not augmented, the frozen teacher (eval mode: no dropout, running
    /// batch-norm statistics) gives every image the same logits in every epoch, so they are computed
    /// once (<paramref name="teacherCache"/>, or here) and gathered per batch instead of running the
    /// teacher's forward at every step; the loss is the same. With augmentation the teacher runs on
    /// each augmented batch.
    /// </para>
    /// </summary>
    public static TrainResult Train(ModelKind kind, TrainSettings s, ImageDataset train, ImageDataset test, CliConsole console,
        Module? teacher = null, DistillSettings? distill = null, IReadOnlyDictionary<string, string>? extraMetadata = null, string label = "",
        TeacherLogits? teacherCache = null)
    {
        var total = Stopwatch.StartNew();
        var device = ParseDevice(s.Device);
        bool onDevice = device.Type != DeviceType.Cpu;
        var model = Build(kind, s.Seed);
        // --device: the model (and the teacher, for this run) live on the device; batches move there per
        // step. The model is initialized on the CPU first, so a seed gives the same weights everywhere.
        var teacherHome = teacher is null ? Device.Cpu : DeviceOf(teacher);
        try
        {
            if (onDevice) model.To(device);
            if (onDevice && teacher is not null) teacher.To(device);
            teacher?.Eval();
            bool augmented = s.AugmentFor(kind) || s.Flip;
            if (teacher is not null && !augmented && (teacherCache is null || !ReferenceEquals(teacherCache.Dataset, train)))
                teacherCache = TeacherLogits.Compute(teacher, train, console);
            if (augmented) teacherCache = null;
            var transforms = new List<IBatchTransform>();
            if (s.AugmentFor(kind)) transforms.Add(new RandomCrop(FashionMnist.ImageSize, padding: 2));
            if (s.Flip) transforms.Add(new RandomHorizontalFlip());
            transforms.Add(Normalization);
            var loader = new DataLoader(train, s.BatchSize, shuffle: true, seed: s.Seed, transform: new Compose([.. transforms]));
            using var optimizer = new SGD(model.Parameters(), s.LearningRate, momentum: s.Momentum, weightDecay: s.WeightDecay);
            long totalSteps = (long)s.Epochs * loader.BatchCount;
            long warmupSteps = Math.Min((long)Math.Round(s.WarmupEpochs * loader.BatchCount), totalSteps / 5);
            LRScheduler schedule = warmupSteps >= 1
                ? LRScheduler.WarmupCosine(optimizer, warmupSteps, totalSteps, warmupStartFactor: 0.1)
                : new CosineAnnealingLR(optimizer, tMax: Math.Max(totalSteps, 1));
            string name = string.IsNullOrEmpty(label) ? (teacher is null ? Checkpoint.KindName(kind) : "kd student") : label;
            var epochs = new List<EpochMetrics>();
            for (int epoch = 0; epoch < s.Epochs; epoch++)
            {
                var m = RunEpoch(model, teacher, teacherCache, distill, loader, optimizer, schedule, epoch, console, $"{name} epoch {epoch + 1}/{s.Epochs}");
                double testAcc = Evaluate(model, test);
                var metrics = m with { TestAccuracy = testAcc };
                epochs.Add(metrics);
                console.Out.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"{name} epoch {epoch + 1}/{s.Epochs}: loss {metrics.TrainLoss:F4}, train acc {metrics.TrainAccuracy*100:F2}%, test acc {testAcc*100:F2}%, {metrics.Seconds:F1} s, {metrics.ImagesPerSecond:F0} img/s"));
                if (s.Metrics is not null) AppendMetrics(s.Metrics, kind, teacher is null ? "ce" : "kd", s.Seed, metrics);
            }
            double finalAcc = epochs[^1].TestAccuracy;
            if (onDevice) model.To(Device.Cpu); // the returned model (and the checkpoint) are on the CPU
            if (s.Out is not null)
            {
                var meta = new Dictionary<string, string>
                {
                    ["epoch"] = s.Epochs.ToString(CultureInfo.InvariantCulture),
                    ["test_accuracy"] = Checkpoint.Number(finalAcc),
                    ["test_images"] = test.Count.ToString(CultureInfo.InvariantCulture),
                    ["train_images"] = train.Count.ToString(CultureInfo.InvariantCulture),
                    ["seed"] = s.Seed.ToString(CultureInfo.InvariantCulture),
                    ["method"] = teacher is null ? "ce" : "kd",
                    ["batch_size"] = s.BatchSize.ToString(CultureInfo.InvariantCulture),
                    ["lr"] = Checkpoint.Number(s.LearningRate),
                    ["augment"] = s.AugmentFor(kind) ? (s.Flip ? "crop+flip" : "crop") : (s.Flip ? "flip" : "none"),
                };
                if (distill is not null)
                {
                    meta["temperature"] = Checkpoint.Number(distill.Temperature);
                    meta["alpha"] = Checkpoint.Number(distill.Alpha);
                }
                if (extraMetadata is not null) foreach (var (k, v) in extraMetadata) meta[k] = v;
                Checkpoint.Save(s.Out, model, kind, meta);
            }
            model.Eval();
            return new TrainResult(model, kind, epochs, finalAcc, total.Elapsed.TotalSeconds);
        }
        catch
        {
            model.Dispose();
            throw;
        }
        finally
        {
            if (teacher is not null && DeviceOf(teacher) != teacherHome) teacher.To(teacherHome);
        }
    }

    private static EpochMetrics RunEpoch(FashionMnistNet model, Module? teacher, TeacherLogits? cache, DistillSettings? distill, DataLoader loader,
        Optimizer optimizer, LRScheduler schedule, int epoch, CliConsole console, string title)
    {
        model.Train();
        var device = DeviceOf(model);
        double lossSum = 0;
        long correct = 0, seen = 0;
        var clock = Stopwatch.StartNew();
        return console.WithProgress(title, loader.BatchCount, progress =>
        {
            int done = 0;
            var order = cache is null ? null : loader.Order(epoch);
            foreach (var batch in loader.Batches(epoch))
            {
                using (batch)
                using (Tensor.NewDisposeScope())
                {
                    var images = batch.Images.To(device);
                    var labels = batch.Labels.To(device);
                    var logits = model.Forward(images);
                    Tensor loss;
                    if (teacher is null) loss = Functional.CrossEntropy(logits, labels);
                    else
                    {
                        Tensor teacherLogits;
                        if (cache is not null) teacherLogits = cache.Gather(order!, done * loader.BatchSize, batch.Labels).To(device);
                        else using (Tensor.NoGrad()) teacherLogits = teacher.Forward(images);
                        loss = Losses.KnowledgeDistillation(logits, teacherLogits, labels, distill!.Temperature, distill.Alpha);
                    }
                    optimizer.ZeroGrad();
                    loss.Backward();
                    optimizer.Step();
                    schedule.Step();
                    long n = batch.Labels.Size(0);
                    double value = loss.ToDouble();
                    if (!double.IsFinite(value))
                        throw new CliException($"{title}: the loss became {value} at batch {done + 1}; lower --lr (now {optimizer.ParamGroups[0].LearningRate:G3}).");
                    lossSum += value * n;
                    using (Tensor.NoGrad()) correct += CountCorrect(logits, batch.Labels);
                    seen += n;
                }
                done++;
                progress.Report(done, string.Create(CultureInfo.InvariantCulture,
                    $"loss {lossSum / seen:F4}  acc {(double)correct / seen*100:F1}%  {seen / clock.Elapsed.TotalSeconds:F0} img/s"));
            }
            double seconds = clock.Elapsed.TotalSeconds;
            return new EpochMetrics(epoch + 1, seen == 0 ? 0 : lossSum / seen, seen == 0 ? 0 : (double)correct / seen, double.NaN,
                seconds, seen / Math.Max(seconds, 1e-9), optimizer.ParamGroups[0].LearningRate);
        });
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

    private static void AppendMetrics(string path, ModelKind kind, string method, ulong seed, EpochMetrics m)
    {
        string? dir = Path.GetDirectoryName(Path.GetFullPath(path));
        if (dir is not null) Directory.CreateDirectory(dir);
        var record = new Dictionary<string, object>
        {
            ["model"] = Checkpoint.KindName(kind),
            ["method"] = method,
            ["seed"] = seed,
            ["epoch"] = m.Epoch,
            ["train_loss"] = m.TrainLoss,
            ["train_acc"] = m.TrainAccuracy,
            ["test_acc"] = m.TestAccuracy,
            ["seconds"] = m.Seconds,
            ["images_per_s"] = m.ImagesPerSecond,
            ["lr"] = m.LearningRate,
        };
        File.AppendAllText(path, JsonSerializer.Serialize(record) + "\n");
    }
}

/// <summary>
/// A frozen teacher's logits for every image of a data set (float32 [N, C], normalized images, eval
/// mode), computed once and gathered per batch by sample index.
/// </summary>
public sealed class TeacherLogits
{
    private readonly float[] _logits;
    private readonly int _classes;

    private TeacherLogits(ImageDataset dataset, float[] logits, int classes)
    {
        Dataset = dataset;
        _logits = logits;
        _classes = classes;
    }

    /// <summary>The images the logits belong to.</summary>
    public ImageDataset Dataset { get; }

    /// <summary>Runs <paramref name="teacher"/> (eval mode, no grad, on its device) over <paramref name="dataset"/> in order.</summary>
    public static TeacherLogits Compute(Module teacher, ImageDataset dataset, CliConsole console)
    {
        teacher.Eval();
        var device = Trainer.DeviceOf(teacher);
        var loader = new DataLoader(dataset, Trainer.EvalBatchSize, shuffle: false, transform: Trainer.Normalization);
        float[]? all = null;
        int classes = 0, row = 0;
        return console.WithProgress("teacher logits", loader.BatchCount, progress =>
        {
            int done = 0;
            using (Tensor.NoGrad())
                foreach (var batch in loader)
                    using (batch)
                    using (Tensor.NewDisposeScope())
                    {
                        var logits = teacher.Forward(batch.Images.To(device)).Contiguous();
                        classes = (int)logits.Size(1);
                        all ??= new float[(long)dataset.Count * classes];
                        logits.ToArray<float>().CopyTo(all, (long)row * classes);
                        row += (int)logits.Size(0);
                        progress.Report(++done, $"{row} images");
                    }
            return new TeacherLogits(dataset, all ?? [], classes);
        });
    }

    /// <summary>
    /// The logits [n, C] of the samples <paramref name="order"/>[start .. start + n), n = the batch's
    /// size; checks that their labels are <paramref name="labels"/> (the batch the loader produced).
    /// </summary>
    public Tensor Gather(long[] order, int start, Tensor labels)
    {
        int n = (int)labels.Size(0);
        var y = labels.ToArray<long>();
        var data = new float[n * _classes];
        var datasetLabels = Dataset.Labels;
        for (int i = 0; i < n; i++)
        {
            long index = order[start + i];
            if (datasetLabels[(int)index] != y[i])
                throw new InvalidOperationException($"teacher logits: batch row {i} has label {y[i]} but sample {index} has {datasetLabels[(int)index]}; the loader's order changed.");
            Array.Copy(_logits, index * _classes, data, (long)i * _classes, _classes);
        }
        return Tensor.FromArray(data, n, _classes);
    }
}
