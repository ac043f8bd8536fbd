using System.Globalization;
using Engine.Tensors;
using Engine.Tensors.Serialization;

namespace Engine.Distillation.DatasetDistillation;

/// <summary>How the synthetic images start.</summary>
public enum SyntheticInit
{
    /// <summary>Random real images of each class (the usual choice: the methods refine them).</summary>
    Real,

    /// <summary>Standard normal noise (in the normalized space the networks see).</summary>
    Noise,
}

/// <summary>
/// A learnable synthetic data set: <see cref="ImagesPerClass"/> images per class, stored class-major
/// (rows c·IPC … c·IPC + IPC − 1 are class c) in one leaf tensor that requires grad, fixed labels, and a
/// learnable learning rate (a 0-d leaf; trajectory matching trains it, the others leave it as given).
/// Images live in the normalized space the networks see (for Fashion-MNIST (pixel − 0.2860) / 0.3530).
/// </summary>
public sealed class SyntheticSet : IDisposable
{
    private SyntheticSet(Tensor images, int classes, int ipc, double learningRate)
    {
        images.DetachFromDisposeScope();
        images.RequiresGrad = true;
        Images = images;
        Classes = classes;
        ImagesPerClass = ipc;
        var labels = new long[classes * ipc];
        for (int i = 0; i < labels.Length; i++) labels[i] = i / ipc;
        Labels = Tensor.FromArray(labels, labels.Length).DetachFromDisposeScope();
        LearningRate = Tensor.Scalar(learningRate, images.DType).DetachFromDisposeScope();
        LearningRate.RequiresGrad = true;
    }

    /// <summary>Images [Classes·IPC, C, H, W], a leaf that requires grad.</summary>
    public Tensor Images { get; }

    /// <summary>Labels [Classes·IPC] (int64): image i has label i / IPC.</summary>
    public Tensor Labels { get; }

    /// <summary>The learnable learning rate of trajectory matching's inner SGD steps (0-d, requires grad).</summary>
    public Tensor LearningRate { get; }

    /// <summary>The number of classes.</summary>
    public int Classes { get; }

    /// <summary>Images per class (IPC).</summary>
    public int ImagesPerClass { get; }

    /// <summary>All images: Classes·IPC.</summary>
    public int Count => Classes * ImagesPerClass;

    /// <summary>
    /// A set whose class-c images are <paramref name="ipc"/> distinct random images of class c of
    /// <paramref name="real"/> (copies), drawn from <paramref name="rng"/>.
    /// </summary>
    /// <exception cref="ArgumentException">A class has fewer than <paramref name="ipc"/> images.</exception>
    public static SyntheticSet FromReal(ClassImages real, int ipc, Random rng, double learningRate = 0.01)
    {
        ArgumentNullException.ThrowIfNull(real);
        CheckIpc(ipc);
        var picks = new List<long>();
        for (int c = 0; c < real.Classes; c++)
        {
            if (real.IndicesOf(c).Count < ipc)
                throw new ArgumentException($"SyntheticSet.FromReal: class {c} has {real.IndicesOf(c).Count} real images, fewer than the {ipc} images per class asked for.");
            picks.AddRange(real.SampleIndices(c, ipc, rng));
        }
        Tensor images;
        using (Tensor.NoGrad()) images = real.Gather([.. picks]);
        return new SyntheticSet(images, real.Classes, ipc, learningRate);
    }

    /// <summary>A set of standard normal images [classes·ipc, <paramref name="imageShape"/>] from <paramref name="generator"/>.</summary>
    public static SyntheticSet FromNoise(int classes, int ipc, long[] imageShape, Generator generator, DType dtype = DType.Float32, double learningRate = 0.01)
    {
        ArgumentNullException.ThrowIfNull(imageShape);
        CheckIpc(ipc);
        if (classes < 1 || imageShape.Length != 3) throw new ArgumentException($"SyntheticSet.FromNoise: expected ≥ 1 class and an image shape [C, H, W], got {classes} and [{string.Join(", ", imageShape)}].");
        var images = Tensor.Randn([classes * ipc, .. imageShape], dtype, generator);
        return new SyntheticSet(images, classes, ipc, learningRate);
    }

    /// <summary>A set over a copy of given images [classes·ipc, C, H, W] (class-major), e.g. for tests.</summary>
    public static SyntheticSet FromImages(Tensor images, int classes, double learningRate = 0.01)
    {
        ArgumentNullException.ThrowIfNull(images);
        if (images.Rank != 4 || classes < 1 || images.Size(0) % classes != 0 || images.Size(0) == 0)
            throw new ArgumentException($"SyntheticSet.FromImages: expected [classes·IPC, C, H, W] with {classes} classes, got {DistillConvNet.ShapeText(images)}.");
        Tensor copy;
        using (Tensor.NoGrad()) copy = images.Detach().Clone();
        return new SyntheticSet(copy, classes, (int)(images.Size(0) / classes), learningRate);
    }

    /// <summary>The images of class <paramref name="c"/> [IPC, C, H, W] (a view: gradients reach <see cref="Images"/>).</summary>
    public Tensor ClassImages(int c) => Images.Narrow(0, (long)c * ImagesPerClass, ImagesPerClass);

    /// <summary>The labels of class <paramref name="c"/> [IPC] (all equal to c).</summary>
    public Tensor ClassLabels(int c) => Labels.Narrow(0, (long)c * ImagesPerClass, ImagesPerClass);

    /// <summary>
    /// Writes the set to a safetensors file: <c>images</c> (float, [Classes·IPC, C, H, W], normalized),
    /// <c>labels</c> (int64) and <c>lr</c> (0-d), with <paramref name="metadata"/> plus <c>classes</c> and
    /// <c>ipc</c>.
    /// </summary>
    public void Save(string path, IReadOnlyDictionary<string, string>? metadata = null)
    {
        var meta = metadata is null ? new Dictionary<string, string>() : new Dictionary<string, string>(metadata);
        meta["classes"] = Classes.ToString(CultureInfo.InvariantCulture);
        meta["ipc"] = ImagesPerClass.ToString(CultureInfo.InvariantCulture);
        using var images = Images.Detach();
        using var lr = LearningRate.Detach();
        SafeTensors.Save(path, new Dictionary<string, Tensor> { ["images"] = images, ["labels"] = Labels, ["lr"] = lr }, meta);
    }

    /// <summary>Reads a set written by <see cref="Save"/>.</summary>
    /// <exception cref="InvalidDataException">The file lacks <c>images</c>, <c>lr</c> or the <c>classes</c> metadata.</exception>
    public static SyntheticSet Load(string path)
    {
        var tensors = SafeTensors.Load(path, out var meta);
        try
        {
            if (!tensors.TryGetValue("images", out var images) || !tensors.TryGetValue("lr", out var lr) ||
                !meta.TryGetValue("classes", out var cs) || !int.TryParse(cs, NumberStyles.Integer, CultureInfo.InvariantCulture, out int classes))
                throw new InvalidDataException($"{path}: not a synthetic set (expected tensors 'images' and 'lr' and metadata 'classes').");
            return FromImages(images, classes, lr.ToDouble());
        }
        finally
        {
            foreach (var t in tensors.Values) t.Dispose();
        }
    }

    private static void CheckIpc(int ipc)
    {
        if (ipc < 1) throw new ArgumentException($"SyntheticSet: images per class must be ≥ 1, got {ipc}.");
    }

    /// <summary>Disposes the images, labels and learning rate.</summary>
    public void Dispose()
    {
        Images.Dispose();
        Labels.Dispose();
        LearningRate.Dispose();
    }
}
