using Engine.Tensors;

namespace Engine.Distillation.DatasetDistillation;

/// <summary>
/// Real training images grouped by class, for drawing per-class batches (every dataset-distillation
/// method matches class by class). Holds one float tensor [N, C, H, W] (already normalized as the
/// networks expect it) and, per class, the indices of its images.
/// </summary>
public sealed class ClassImages : IDisposable
{
    private readonly long[][] _byClass;

    /// <summary>
    /// Groups <paramref name="images"/> [N, C, H, W] (float32 or float64; this object takes ownership and
    /// disposes it) by <paramref name="labels"/> (N values in [0, <paramref name="classes"/>)).
    /// </summary>
    /// <exception cref="ArgumentException">Shapes that disagree, a label out of range, or a class with no image.</exception>
    public ClassImages(Tensor images, IReadOnlyList<long> labels, int classes)
    {
        ArgumentNullException.ThrowIfNull(images);
        ArgumentNullException.ThrowIfNull(labels);
        if (images.Rank != 4 || !images.DType.IsFloatingPoint() || images.Size(0) != labels.Count)
            throw new ArgumentException($"ClassImages: expected float images [N, C, H, W] and N labels, got {images.DType.Name()} {DistillConvNet.ShapeText(images)} and {labels.Count} labels.");
        if (classes < 1) throw new ArgumentException($"ClassImages: classes must be ≥ 1, got {classes}.");
        var lists = Enumerable.Range(0, classes).Select(_ => new List<long>()).ToArray();
        for (int i = 0; i < labels.Count; i++)
        {
            long y = labels[i];
            if (y < 0 || y >= classes) throw new ArgumentException($"ClassImages: label {y} of image {i} is not in [0, {classes}).");
            lists[y].Add(i);
        }
        for (int c = 0; c < classes; c++)
            if (lists[c].Count == 0) throw new ArgumentException($"ClassImages: class {c} has no image among the {labels.Count} given.");
        images.DetachFromDisposeScope();
        Images = images;
        Labels = [.. labels];
        Classes = classes;
        _byClass = lists.Select(l => l.ToArray()).ToArray();
    }

    /// <summary>All images [N, C, H, W].</summary>
    public Tensor Images { get; }

    /// <summary>The label of every image.</summary>
    public IReadOnlyList<long> Labels { get; }

    /// <summary>The number of classes.</summary>
    public int Classes { get; }

    /// <summary>The number of images.</summary>
    public int Count => Labels.Count;

    /// <summary>Indices (into <see cref="Images"/>) of the images of class <paramref name="c"/>.</summary>
    public IReadOnlyList<long> IndicesOf(int c) => _byClass[c];

    /// <summary>
    /// <paramref name="count"/> distinct random indices of class <paramref name="c"/> (all of them, shuffled,
    /// when the class has fewer), drawn from <paramref name="rng"/>.
    /// </summary>
    public long[] SampleIndices(int c, int count, Random rng)
    {
        var all = _byClass[c];
        var pick = (long[])all.Clone();
        int n = Math.Min(count, pick.Length);
        for (int i = 0; i < n; i++) // partial Fisher-Yates: the first n entries are a uniform sample
        {
            int j = rng.Next(i, pick.Length);
            (pick[i], pick[j]) = (pick[j], pick[i]);
        }
        return pick[..n];
    }

    /// <summary>A batch [n, C, H, W] of random images of class <paramref name="c"/> (see <see cref="SampleIndices"/>).</summary>
    public Tensor Sample(int c, int count, Random rng) => Gather(SampleIndices(c, count, rng));

    /// <summary>The images at <paramref name="indices"/> as a new tensor [indices.Length, C, H, W].</summary>
    public Tensor Gather(long[] indices)
    {
        using var index = Tensor.FromArray(indices, indices.Length);
        return Images.IndexSelect(0, index);
    }

    /// <summary>Disposes the images.</summary>
    public void Dispose() => Images.Dispose();
}
