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
    public static FashionMnistNet Teacher(Generator? generator = null) => new("FashionMnistTeacher", new Sequential(
        new Conv2d(1, 32, 3, padding: 1, generator: generator), new BatchNorm2d(32), new ReLU(),
        new Conv2d(32, 64, 3, padding: 1, generator: generator), new BatchNorm2d(64), new ReLU(), new MaxPool2d(2),
        new Conv2d(64, 128, 3, padding: 1, generator: generator), new BatchNorm2d(128), new ReLU(), new MaxPool2d(2),
        new Flatten(), new Linear(128 * 7 * 7, 256, generator: generator), new ReLU(), new Dropout(0.3, generator),
        new Linear(256, 10, generator: generator)));

    /// <summary>Conv(1→8) ReLU MaxPool, Conv(8→16) ReLU MaxPool, Flatten, Linear(784→10); convs 3×3 with padding 1.</summary>
    /// <param name="generator">Seeds the initialization; null: <see cref="Generator.Default"/>.</param>
    public static FashionMnistNet Student(Generator? generator = null) => new("FashionMnistStudent", new Sequential(
        new Conv2d(1, 8, 3, padding: 1, generator: generator), new ReLU(), new MaxPool2d(2),
        new Conv2d(8, 16, 3, padding: 1, generator: generator), new ReLU(), new MaxPool2d(2),
        new Flatten(), new Linear(16 * 7 * 7, 10, generator: generator)));
}

/// <summary>A model whose layers are one <see cref="Sequential"/> named "f" (as the PyTorch Teacher and Student).</summary>
public sealed class FashionMnistNet : Module
{
    internal FashionMnistNet(string name, Sequential layers)
    {
        Name = name;
        F = RegisterModule("f", layers);
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
}
