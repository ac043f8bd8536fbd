namespace Engine.Tensors.NN.Models;

/// <summary>
/// The Fashion-MNIST teacher and student of <c>../shared/peers/torch_bench.py</c> (<c>fmnist-kd-epoch</c>),
/// layer for layer, so checkpoints and timings compare with PyTorch's. Input [N, 1, 28, 28], output
/// [N, 10] logits. Parameter names match PyTorch's ("f.0.weight", "f.1.running_mean", ...).
/// </summary>
public static class FashionMnistModels
{
    /// <summary>Exact parameter count of <see cref="Teacher"/> (the PyTorch docstring says "about 1.7M").</summary>
    public const long TeacherParameterCount = 1_701_578;

    /// <summary>
    /// Exact parameter count of <see cref="Student"/>. (torch_bench.py's docstring says "about 20k"; its
    /// layers hold 80 + 1,168 + 7,850 = 9,098.)
    /// </summary>
    public const long StudentParameterCount = 9_098;

    /// <summary>
    /// Conv(1→32) BN ReLU, Conv(32→64) BN ReLU MaxPool, Conv(64→128) BN ReLU MaxPool, Flatten,
    /// Linear(6272→256) ReLU Dropout(0.3), Linear(256→10); all convs 3×3 with padding 1.
    /// </summary>
    /// <param name="generator">Seeds the initialization (and the dropout masks); null: <see cref="Generator.Default"/>.</param>
    /// <remarks>
    /// Features (<see cref="FashionMnistNet.ForwardFeatures"/>): "block1" [N, 32, 28, 28] (after the first
    /// ReLU), "block2" [N, 64, 14, 14] and "block3" [N, 128, 7, 7] (after each max-pool), "embedding"
    /// [N, 256] (after the hidden Linear's ReLU, before dropout: the input of the classifier's last layer).
    /// </remarks>
    public static FashionMnistNet Teacher(Generator? generator = null) => new("FashionMnistTeacher", new Sequential(
        new Conv2d(1, 32, 3, padding: 1, generator: generator), new BatchNorm2d(32), new ReLU(),
        new Conv2d(32, 64, 3, padding: 1, generator: generator), new BatchNorm2d(64), new ReLU(), new MaxPool2d(2),
        new Conv2d(64, 128, 3, padding: 1, generator: generator), new BatchNorm2d(128), new ReLU(), new MaxPool2d(2),
        new Flatten(), new Linear(128 * 7 * 7, 256, generator: generator), new ReLU(), new Dropout(0.3, generator),
        new Linear(256, 10, generator: generator)),
        [("block1", 2), ("block2", 6), ("block3", 10), ("embedding", 13)]);

    /// <summary>Conv(1→8) ReLU MaxPool, Conv(8→16) ReLU MaxPool, Flatten, Linear(784→10); convs 3×3 with padding 1.</summary>
    /// <param name="generator">Seeds the initialization; null: <see cref="Generator.Default"/>.</param>
    /// <remarks>
    /// Features (<see cref="FashionMnistNet.ForwardFeatures"/>): "block1" [N, 8, 14, 14] and "block2"
    /// [N, 16, 7, 7] (after each max-pool), "embedding" [N, 784] (the flattened block2: the input of the
    /// classifier). Spatial sizes match the teacher's block2 and block3.
    /// </remarks>
    public static FashionMnistNet Student(Generator? generator = null) => new("FashionMnistStudent", new Sequential(
        new Conv2d(1, 8, 3, padding: 1, generator: generator), new ReLU(), new MaxPool2d(2),
        new Conv2d(8, 16, 3, padding: 1, generator: generator), new ReLU(), new MaxPool2d(2),
        new Flatten(), new Linear(16 * 7 * 7, 10, generator: generator)),
        [("block1", 2), ("block2", 5), ("embedding", 6)]);
}

/// <summary>A model whose layers are one <see cref="Sequential"/> named "f" (as the PyTorch Teacher and Student).</summary>
public sealed class FashionMnistNet : Module, IFeatureModel
{
    private readonly (string Name, int AfterLayer)[] _taps;

    internal FashionMnistNet(string name, Sequential layers, (string Name, int AfterLayer)[] taps)
    {
        Name = name;
        F = RegisterModule("f", layers);
        _taps = taps;
    }

    /// <summary>"FashionMnistTeacher" or "FashionMnistStudent".</summary>
    public string Name { get; }

    /// <summary>The layers.</summary>
    public Sequential F { get; }

    /// <inheritdoc/>
    public override Tensor Forward(Tensor input)
    {
        ArgumentNullException.ThrowIfNull(input);
        if (input.Rank != 4 || input.Shape[1] != 1 || input.Shape[2] != 28 || input.Shape[3] != 28)
            throw new ArgumentException($"{Name}: expected images of shape [N, 1, 28, 28], got {ShapeUtil.Format(input.Shape)}.");
        return F.Forward(input);
    }

    /// <inheritdoc/>
    public IReadOnlyList<string> FeatureNames => _taps.Select(t => t.Name).ToArray();

    /// <inheritdoc/>
    /// <remarks>The same layers and the same result as <see cref="Forward"/>; the tapped activations are kept instead of disposed.</remarks>
    public FeatureOutput ForwardFeatures(Tensor input)
    {
        ArgumentNullException.ThrowIfNull(input);
        if (input.Rank != 4 || input.Shape[1] != 1 || input.Shape[2] != 28 || input.Shape[3] != 28)
            throw new ArgumentException($"{Name}: expected images of shape [N, 1, 28, 28], got {ShapeUtil.Format(input.Shape)}.");
        var features = new List<(string, Tensor)>();
        var x = input.Alias();
        try
        {
            int tap = 0;
            for (int i = 0; i < F.Count; i++)
            {
                var y = F[i].Forward(x);
                bool kept = tap > 0 && _taps[tap - 1].AfterLayer == i - 1;
                if (!kept && !ReferenceEquals(y, x)) x.Dispose();
                x = y;
                if (tap < _taps.Length && _taps[tap].AfterLayer == i) { features.Add((_taps[tap].Name, x)); tap++; }
            }
            return new FeatureOutput(x, features);
        }
        catch
        {
            foreach (var (_, f) in features) f.Dispose();
            throw;
        }
    }
}
