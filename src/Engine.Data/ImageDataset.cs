using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;
using Engine.Tensors;

namespace Engine.Data;

/// <summary>
/// A labelled image data set held in memory as unsigned bytes: <see cref="Count"/> images of
/// <see cref="Channels"/>×<see cref="Height"/>×<see cref="Width"/> pixels (row-major, channel-first)
/// and one class label per image.
/// <para>
/// Memory and speed: pixels stay uint8 (Fashion-MNIST's 60000 training images take 47 MB instead of
/// 188 MB as float32) and are converted to float32 per batch by <see cref="GatherImages"/>:
/// <c>value / 255f</c>, the same float32 division as torchvision's ToTensor (exact integer to float,
/// then one correctly rounded division), vectorized with TensorPrimitives over each image.
/// <see cref="ImagesTensor"/> converts a whole split when wanted (evaluation).
/// </para>
/// </summary>
public sealed class ImageDataset
{
    private readonly ReadOnlyMemory<byte> _pixels;
    private readonly ReadOnlyMemory<byte> _labels;

    /// <summary>
    /// A data set over <paramref name="pixels"/> (<c>count·channels·height·width</c> bytes) and
    /// <paramref name="labels"/> (<c>count</c> bytes, each below the number of classes). The memory is
    /// referenced, not copied.
    /// </summary>
    public ImageDataset(string name, ReadOnlyMemory<byte> pixels, ReadOnlyMemory<byte> labels,
        int channels, int height, int width, IReadOnlyList<string> classNames)
    {
        ArgumentNullException.ThrowIfNull(name);
        ArgumentNullException.ThrowIfNull(classNames);
        if (channels <= 0 || height <= 0 || width <= 0)
            throw new ArgumentException($"ImageDataset '{name}': image shape [{channels}, {height}, {width}] must be positive.");
        long sample = (long)channels * height * width;
        if (pixels.Length != labels.Length * sample)
            throw new ArgumentException($"ImageDataset '{name}': {labels.Length} labels need {labels.Length * sample} pixel bytes " +
                $"([{channels}, {height}, {width}] each), got {pixels.Length}.");
        if (classNames.Count is < 1 or > 256)
            throw new ArgumentException($"ImageDataset '{name}': {classNames.Count} class names; expected 1 to 256.");
        var l = labels.Span;
        for (int i = 0; i < l.Length; i++)
            if (l[i] >= classNames.Count)
                throw new ArgumentException($"ImageDataset '{name}': label {l[i]} of sample {i} is not below the {classNames.Count} classes.");
        Name = name;
        _pixels = pixels;
        _labels = labels;
        Channels = channels;
        Height = height;
        Width = width;
        ClassNames = classNames;
    }

    /// <summary>A short name for messages (e.g. <c>fashion-mnist/train</c>).</summary>
    public string Name { get; }

    /// <summary>The number of samples.</summary>
    public int Count => _labels.Length;

    /// <summary>Channels per image (1 for Fashion-MNIST).</summary>
    public int Channels { get; }

    /// <summary>Image height in pixels.</summary>
    public int Height { get; }

    /// <summary>Image width in pixels.</summary>
    public int Width { get; }

    /// <summary>Pixels per image: <c>Channels·Height·Width</c>.</summary>
    public int SampleSize => Channels * Height * Width;

    /// <summary>The class names, indexed by label.</summary>
    public IReadOnlyList<string> ClassNames { get; }

    /// <summary>The number of classes.</summary>
    public int NumClasses => ClassNames.Count;

    /// <summary>All pixels as bytes, <c>[Count, Channels, Height, Width]</c> row-major.</summary>
    public ReadOnlySpan<byte> Pixels => _pixels.Span;

    /// <summary>All labels, one byte per sample.</summary>
    public ReadOnlySpan<byte> Labels => _labels.Span;

    /// <summary>The first <paramref name="count"/> samples (no copy), for short runs.</summary>
    public ImageDataset Take(int count)
    {
        if (count < 0 || count > Count)
            throw new ArgumentOutOfRangeException(nameof(count), $"ImageDataset '{Name}': cannot take {count} of {Count} samples.");
        if (count == Count) return this;
        return new ImageDataset($"{Name}[:{count}]", _pixels[..(count * SampleSize)], _labels[..count],
            Channels, Height, Width, ClassNames);
    }

    /// <summary>How many samples each class has (index = label).</summary>
    public int[] LabelHistogram()
    {
        var h = new int[NumClasses];
        foreach (byte b in Labels) h[b]++;
        return h;
    }

    /// <summary>
    /// Writes the images of samples <paramref name="indices"/> as float32 in [0, 1] to
    /// <paramref name="destination"/> (<c>indices.Length·SampleSize</c> floats, row-major) and their
    /// labels to <paramref name="labels"/> (<c>indices.Length</c> values).
    /// </summary>
    public void GatherImages(ReadOnlySpan<long> indices, Span<float> destination, Span<long> labels)
    {
        int size = SampleSize;
        if (destination.Length != (long)indices.Length * size || labels.Length != indices.Length)
            throw new ArgumentException($"GatherImages: {indices.Length} samples need {(long)indices.Length * size} floats and {indices.Length} labels; " +
                $"got {destination.Length} and {labels.Length}.");
        var pixels = Pixels;
        var allLabels = Labels;
        for (int s = 0; s < indices.Length; s++)
        {
            long idx = indices[s];
            if ((ulong)idx >= (ulong)Count)
                throw new ArgumentOutOfRangeException(nameof(indices), $"GatherImages: index {idx} is outside '{Name}' ({Count} samples).");
            ToUnitFloat(pixels.Slice((int)idx * size, size), destination.Slice(s * size, size));
            labels[s] = allLabels[(int)idx];
        }
    }

    /// <summary>All images as a float32 tensor <c>[Count, Channels, Height, Width]</c> in [0, 1] (the caller disposes it).</summary>
    public Tensor ImagesTensor()
    {
        var data = GC.AllocateUninitializedArray<float>(checked(Count * SampleSize));
        ToUnitFloat(Pixels, data);
        return Tensor.FromArray(data, Count, Channels, Height, Width);
    }

    /// <summary>All labels as an int64 tensor <c>[Count]</c> (the caller disposes it).</summary>
    public Tensor LabelsTensor()
    {
        var data = new long[Count];
        var labels = Labels;
        for (int i = 0; i < data.Length; i++) data[i] = labels[i];
        return Tensor.FromArray(data, Count);
    }

    /// <inheritdoc />
    public override string ToString() => $"ImageDataset({Name}, {Count} × [{Channels}, {Height}, {Width}], {NumClasses} classes)";

    /// <summary><c>dst[i] = src[i] / 255f</c> (bytes to float32 in [0, 1]).</summary>
    private static void ToUnitFloat(ReadOnlySpan<byte> src, Span<float> dst)
    {
        TensorPrimitives.ConvertTruncating<byte, float>(src, dst); // exact: every byte is a float
        TensorPrimitives.Divide(dst, 255f, dst);
    }
}
