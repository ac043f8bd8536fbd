using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;
using Engine.Tensors;

namespace Engine.Data.Transforms;

/// <summary>
/// Per-channel standardization, <c>x = (x − mean[c]) / std[c]</c>, in float32 as torchvision's
/// Normalize computes it (subtract, then divide; not a multiply by 1/std, which would differ in the
/// last bit). Vectorized over each channel plane. Draws no random numbers.
/// </summary>
public sealed class Normalize : IBatchTransform
{
    private readonly float[] _mean;
    private readonly float[] _std;

    /// <summary>Normalizes channel c with <paramref name="mean"/>[c] and <paramref name="std"/>[c] (one value each for all channels when a single value is given).</summary>
    public Normalize(float[] mean, float[] std)
    {
        ArgumentNullException.ThrowIfNull(mean);
        ArgumentNullException.ThrowIfNull(std);
        if (mean.Length == 0 || mean.Length != std.Length)
            throw new ArgumentException($"Normalize: {mean.Length} means and {std.Length} standard deviations; expected the same non-zero number.");
        foreach (var s in std)
            if (!(s > 0) || !float.IsFinite(s))
                throw new ArgumentException($"Normalize: standard deviation {s} is not a positive finite number.");
        _mean = (float[])mean.Clone();
        _std = (float[])std.Clone();
    }

    /// <summary>Normalizes every channel with <paramref name="mean"/> and <paramref name="std"/>.</summary>
    public Normalize(float mean, float std) : this([mean], [std]) { }

    /// <summary>Fashion-MNIST's statistics: mean <see cref="FashionMnist.Mean"/>, std <see cref="FashionMnist.Std"/>.</summary>
    public static Normalize FashionMnist() => new(Data.FashionMnist.Mean, Data.FashionMnist.Std);

    /// <summary>The per-channel means.</summary>
    public IReadOnlyList<float> Mean => _mean;

    /// <summary>The per-channel standard deviations.</summary>
    public IReadOnlyList<float> Std => _std;

    /// <inheritdoc />
    public ImageBatch Apply(ImageBatch batch, Generator generator)
    {
        ArgumentNullException.ThrowIfNull(batch);
        if (_mean.Length != 1 && _mean.Length != batch.Channels)
            throw new ArgumentException($"Normalize: {_mean.Length} channel statistics for images of {batch.Channels} channels.");
        for (int n = 0; n < batch.Count; n++)
            for (int c = 0; c < batch.Channels; c++)
            {
                var plane = batch.Plane(n, c);
                int k = _mean.Length == 1 ? 0 : c;
                TensorPrimitives.Subtract(plane, _mean[k], plane);
                TensorPrimitives.Divide(plane, _std[k], plane);
            }
        return batch;
    }
}
