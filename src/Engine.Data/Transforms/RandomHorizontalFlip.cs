using Engine.Tensors;

namespace Engine.Data.Transforms;

/// <summary>
/// Mirrors each image left–right with probability <see cref="P"/> (torchvision's
/// <c>RandomHorizontalFlip(p)</c>).
/// <para>
/// Randomness: <c>u = Tensor.Rand([N], float32, g)</c>, drawn even when p is 0 or 1 so the
/// generator advances the same way; image i is flipped when <c>u[i] &lt; p</c>. Each row is reversed
/// in place with one span call.
/// </para>
/// </summary>
public sealed class RandomHorizontalFlip : IBatchTransform
{
    /// <summary>Flips with probability <paramref name="p"/> in [0, 1].</summary>
    public RandomHorizontalFlip(double p = 0.5)
    {
        if (!(p >= 0 && p <= 1)) throw new ArgumentOutOfRangeException(nameof(p), $"RandomHorizontalFlip: probability {p} is outside [0, 1].");
        P = p;
    }

    /// <summary>The flip probability.</summary>
    public double P { get; }

    /// <inheritdoc />
    public ImageBatch Apply(ImageBatch batch, Generator generator)
    {
        ArgumentNullException.ThrowIfNull(batch);
        ArgumentNullException.ThrowIfNull(generator);
        if (batch.Count == 0) return batch;
        float[] u;
        using (var r = Tensor.Rand([batch.Count], DType.Float32, generator)) u = r.ToArray<float>();
        int w = batch.Width;
        for (int i = 0; i < batch.Count; i++)
        {
            if (!(u[i] < P)) continue;
            for (int c = 0; c < batch.Channels; c++)
            {
                var plane = batch.Plane(i, c);
                for (int y = 0; y < batch.Height; y++) plane.Slice(y * w, w).Reverse();
            }
        }
        return batch;
    }
}
