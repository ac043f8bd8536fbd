using Engine.Tensors;
using Engine.Tensors.NN;
using Engine.Tensors.Optim;

namespace Engine.Distillation.DatasetDistillation;

/// <summary>
/// How a fresh network is trained on a small (synthetic or real) set to judge it, after the evaluation
/// protocol of the dataset-condensation papers: SGD with momentum 0.9 and weight decay 5e-4, the learning
/// rate divided by 10 after half of the epochs, mini-batches of <see cref="BatchSize"/> in a shuffled
/// order. (No DSA augmentation.)
/// </summary>
/// <param name="Epochs">Passes over the set (the papers: 1000 for sets of 10 to 500 images).</param>
/// <param name="BatchSize">Images per step (256: one step per epoch for 10 images per class).</param>
/// <param name="LearningRate">Initial learning rate (0.01; trajectory matching uses its learned one).</param>
/// <param name="Momentum">SGD momentum.</param>
/// <param name="WeightDecay">L2 weight decay.</param>
public sealed record EvaluationOptions(int Epochs = 300, int BatchSize = 256, double LearningRate = 0.01, double Momentum = 0.9, double WeightDecay = 5e-4);

/// <summary>Trains fresh networks on a set and measures their test accuracy.</summary>
public static class SetEvaluation
{
    /// <summary>
    /// Trains a fresh <see cref="DistillConvNet"/> (initialized from <paramref name="seed"/>) on
    /// <paramref name="images"/> [n, C, H, W] with int64 <paramref name="labels"/> [n] as
    /// <see cref="EvaluationOptions"/> says, and returns its parameters (the caller disposes them).
    /// The images are detached: training does not touch a synthetic set's gradient.
    /// </summary>
    public static Tensor[] Train(ConvNetSpec spec, Tensor images, Tensor labels, EvaluationOptions options, ulong seed)
    {
        ArgumentNullException.ThrowIfNull(images);
        ArgumentNullException.ThrowIfNull(labels);
        ArgumentNullException.ThrowIfNull(options);
        if (options.Epochs < 1 || options.BatchSize < 1 || !(options.LearningRate > 0))
            throw new ArgumentException($"SetEvaluation: expected epochs ≥ 1, batch ≥ 1 and a positive learning rate; got {options}.");
        long n = images.Size(0);
        if (labels.Rank != 1 || labels.Size(0) != n)
            throw new ArgumentException($"SetEvaluation: {n} images but labels of shape {DistillConvNet.ShapeText(labels)}.");
        var net = DistillConvNet.Init(spec, new Generator(seed), images.DType);
        var rng = new Random(unchecked((int)seed) ^ 0x1B873593);
        using var x = images.Detach();
        using var optimizer = new SGD(net, options.LearningRate, momentum: options.Momentum, weightDecay: options.WeightDecay);
        for (int e = 0; e < options.Epochs; e++)
        {
            if (e == options.Epochs / 2 && e > 0) optimizer.ParamGroups[0].LearningRate = options.LearningRate * 0.1;
            var order = Enumerable.Range(0, (int)n).Select(i => (long)i).ToArray();
            rng.Shuffle(order);
            for (int start = 0; start < n; start += options.BatchSize)
            {
                using var scope = Tensor.NewDisposeScope();
                Tensor bx = x, by = labels;
                if (n > options.BatchSize)
                {
                    var pick = order[start..(int)Math.Min(n, start + options.BatchSize)];
                    var idx = Tensor.FromArray(pick, pick.Length);
                    bx = x.IndexSelect(0, idx);
                    by = labels.IndexSelect(0, idx);
                }
                var loss = Functional.CrossEntropy(DistillConvNet.Forward(spec, net, bx), by);
                loss.Backward();
                optimizer.Step();
                optimizer.ZeroGrad();
            }
        }
        return net;
    }

    /// <summary>
    /// Fraction of <paramref name="testImages"/> [n, C, H, W] whose arg-max logit equals
    /// <paramref name="testLabels"/>, in batches of <paramref name="batchSize"/>, without a graph.
    /// </summary>
    public static double Accuracy(ConvNetSpec spec, IReadOnlyList<Tensor> parameters, Tensor testImages, IReadOnlyList<long> testLabels, int batchSize = 500)
    {
        ArgumentNullException.ThrowIfNull(testImages);
        ArgumentNullException.ThrowIfNull(testLabels);
        long n = testImages.Size(0);
        if (n != testLabels.Count) throw new ArgumentException($"SetEvaluation.Accuracy: {n} images but {testLabels.Count} labels.");
        if (n == 0) return 0;
        long correct = 0;
        using (Tensor.NoGrad())
            for (long start = 0; start < n; start += batchSize)
            {
                using var scope = Tensor.NewDisposeScope();
                long len = Math.Min(batchSize, n - start);
                var logits = DistillConvNet.Forward(spec, parameters, testImages.Narrow(0, start, len));
                var pred = logits.ArgMax(1).ToArray<long>();
                for (int i = 0; i < len; i++) if (pred[i] == testLabels[(int)(start + i)]) correct++;
            }
        return (double)correct / n;
    }

    /// <summary><see cref="Train"/> then <see cref="Accuracy"/> (the network is disposed).</summary>
    public static double TrainAndTest(ConvNetSpec spec, Tensor images, Tensor labels, Tensor testImages, IReadOnlyList<long> testLabels, EvaluationOptions options, ulong seed)
    {
        var net = Train(spec, images, labels, options, seed);
        try
        {
            return Accuracy(spec, net, testImages, testLabels);
        }
        finally
        {
            foreach (var p in net) p.Dispose();
        }
    }

    /// <summary>
    /// A random real subset of the same size as a synthetic set: <paramref name="ipc"/> distinct random
    /// images of each class of <paramref name="real"/>, class-major, with their labels.
    /// </summary>
    public static (Tensor Images, Tensor Labels) RandomRealSubset(ClassImages real, int ipc, Random rng)
    {
        ArgumentNullException.ThrowIfNull(real);
        var idx = new List<long>();
        var labels = new List<long>();
        for (int c = 0; c < real.Classes; c++)
        {
            var pick = real.SampleIndices(c, ipc, rng);
            idx.AddRange(pick);
            labels.AddRange(Enumerable.Repeat((long)c, pick.Length));
        }
        Tensor images;
        using (Tensor.NoGrad()) images = real.Gather([.. idx]);
        return (images, Tensor.FromArray(labels.ToArray(), labels.Count));
    }
}
