using Engine.Tensors;

namespace Engine.Data.Transforms;

/// <summary>
/// Random crop with zero padding (torchvision's <c>RandomCrop(size, padding)</c>): each image is
/// padded by <see cref="Padding"/> zeros on every side, then a <see cref="Size"/>×<see cref="Size"/>
/// window at a random (top, left) is kept.
/// <para>
/// Randomness, in this order: <c>tops = Tensor.RandInt(0, H + 2p − size + 1, [N], g)</c>, then
/// <c>lefts = Tensor.RandInt(0, W + 2p − size + 1, [N], g)</c>; image i takes output pixel (y, x) from
/// input (tops[i] + y − p, lefts[i] + x − p), zero outside the image. The padded image is never
/// built: each output row is one span copy plus zero fills.
/// </para>
/// <para>The zeros are in the values the transform sees: put it before <see cref="Normalize"/> to pad
/// with black (torchvision's order), after it to pad with the mean.</para>
/// </summary>
public sealed class RandomCrop : IBatchTransform
{
    /// <summary>Crops <paramref name="size"/>×<paramref name="size"/> windows from images padded by <paramref name="padding"/> zeros.</summary>
    public RandomCrop(int size, int padding = 0)
    {
        if (size <= 0) throw new ArgumentOutOfRangeException(nameof(size), $"RandomCrop: size {size} must be positive.");
        if (padding < 0) throw new ArgumentOutOfRangeException(nameof(padding), $"RandomCrop: padding {padding} must be non-negative.");
        Size = size;
        Padding = padding;
    }

    /// <summary>The output height and width.</summary>
    public int Size { get; }

    /// <summary>Zeros added on each side before cropping.</summary>
    public int Padding { get; }

    /// <inheritdoc />
    public ImageBatch Apply(ImageBatch batch, Generator generator)
    {
        ArgumentNullException.ThrowIfNull(batch);
        ArgumentNullException.ThrowIfNull(generator);
        int h = batch.Height, w = batch.Width, p = Padding, s = Size;
        if (s > h + 2 * p || s > w + 2 * p)
            throw new ArgumentException($"RandomCrop: a {s}×{s} crop does not fit images of {h}×{w} padded by {p}.");
        int n = batch.Count;
        long[] tops, lefts;
        using (var t = Tensor.RandInt(0, h + 2 * p - s + 1, [n], generator)) tops = t.ToArray<long>();
        using (var l = Tensor.RandInt(0, w + 2 * p - s + 1, [n], generator)) lefts = l.ToArray<long>();

        var output = new ImageBatch(new float[(long)n * batch.Channels * s * s], n, batch.Channels, s, s);
        for (int i = 0; i < n; i++)
        {
            int y0 = (int)tops[i] - p, x0 = (int)lefts[i] - p;
            // Output columns [xa, xb) come from input columns [x0 + xa, x0 + xb); the rest are zero.
            int xa = Math.Max(0, -x0), xb = Math.Min(s, w - x0);
            for (int c = 0; c < batch.Channels; c++)
            {
                var src = batch.Plane(i, c);
                var dst = output.Plane(i, c); // new float[] is zero already
                for (int y = 0; y < s; y++)
                {
                    int sy = y0 + y;
                    if (sy < 0 || sy >= h || xa >= xb) continue;
                    src.Slice(sy * w + x0 + xa, xb - xa).CopyTo(dst.Slice(y * s + xa, xb - xa));
                }
            }
        }
        return output;
    }
}
