using Engine.Tensors;

namespace Engine.Data.Transforms;

/// <summary>
/// A batch of float32 images being transformed: <see cref="Count"/>×<see cref="Channels"/>×
/// <see cref="Height"/>×<see cref="Width"/> values in <see cref="Data"/>, row-major, with no padding
/// (<c>Data.Length</c> is exactly that product, so it becomes a tensor with one copy).
/// </summary>
public sealed class ImageBatch
{
    /// <summary>A batch over <paramref name="data"/> (not copied); its length must be the product of the shape.</summary>
    public ImageBatch(float[] data, int count, int channels, int height, int width)
    {
        ArgumentNullException.ThrowIfNull(data);
        if (count < 0 || channels <= 0 || height <= 0 || width <= 0 || data.Length != (long)count * channels * height * width)
            throw new ArgumentException($"ImageBatch: shape [{count}, {channels}, {height}, {width}] does not match {data.Length} values.");
        Data = data;
        Count = count;
        Channels = channels;
        Height = height;
        Width = width;
    }

    /// <summary>The values, <c>[Count, Channels, Height, Width]</c> row-major.</summary>
    public float[] Data { get; }

    /// <summary>Images in the batch.</summary>
    public int Count { get; }

    /// <summary>Channels per image.</summary>
    public int Channels { get; }

    /// <summary>Rows per image.</summary>
    public int Height { get; }

    /// <summary>Columns per image.</summary>
    public int Width { get; }

    /// <summary>The values of one channel plane: <c>Height·Width</c> floats.</summary>
    public Span<float> Plane(int image, int channel)
    {
        int plane = Height * Width;
        return Data.AsSpan((image * Channels + channel) * plane, plane);
    }

    /// <summary>The batch as a float32 tensor <c>[Count, Channels, Height, Width]</c> (a copy; the caller disposes it).</summary>
    public Tensor ToTensor() => Tensor.FromArray(Data, Count, Channels, Height, Width);

    /// <summary>A batch holding a copy of a float32 tensor of shape <c>[N, C, H, W]</c>.</summary>
    public static ImageBatch FromTensor(Tensor images)
    {
        ArgumentNullException.ThrowIfNull(images);
        if (images.Rank != 4 || images.DType != DType.Float32)
            throw new ArgumentException($"ImageBatch.FromTensor: expected a float32 tensor [N, C, H, W], got {images.DType.Name()} of rank {images.Rank}.");
        var s = images.Shape;
        return new ImageBatch(images.ToArray<float>(), checked((int)s[0]), checked((int)s[1]), checked((int)s[2]), checked((int)s[3]));
    }
}

/// <summary>
/// A transform of a whole batch of images. Implementations loop over spans (rows, planes), never
/// call anything per pixel, and draw their randomness from the <see cref="Generator"/> they are
/// given, in a documented order, so a (seed, epoch) gives the same augmentation everywhere.
/// </summary>
public interface IBatchTransform
{
    /// <summary>
    /// Transforms <paramref name="batch"/>; may change it in place and return it, or return a new
    /// batch (e.g. of another size).
    /// </summary>
    ImageBatch Apply(ImageBatch batch, Generator generator);
}

/// <summary>Helpers to apply batch transforms to tensors.</summary>
public static class BatchTransformExtensions
{
    /// <summary>
    /// Applies <paramref name="transform"/> to a float32 tensor <c>[N, C, H, W]</c> and returns a new
    /// tensor (the caller disposes it; the input is unchanged).
    /// </summary>
    public static Tensor Apply(this IBatchTransform transform, Tensor images, Generator generator)
    {
        ArgumentNullException.ThrowIfNull(transform);
        return transform.Apply(ImageBatch.FromTensor(images), generator).ToTensor();
    }
}

/// <summary>Several transforms applied in order (like torchvision's Compose).</summary>
public sealed class Compose : IBatchTransform
{
    private readonly IBatchTransform[] _transforms;

    /// <summary>Applies <paramref name="transforms"/> first to last.</summary>
    public Compose(params IBatchTransform[] transforms)
    {
        ArgumentNullException.ThrowIfNull(transforms);
        foreach (var t in transforms) ArgumentNullException.ThrowIfNull(t, nameof(transforms));
        _transforms = (IBatchTransform[])transforms.Clone();
    }

    /// <summary>The transforms, in application order.</summary>
    public IReadOnlyList<IBatchTransform> Transforms => _transforms;

    /// <inheritdoc />
    public ImageBatch Apply(ImageBatch batch, Generator generator)
    {
        foreach (var t in _transforms) batch = t.Apply(batch, generator);
        return batch;
    }
}
