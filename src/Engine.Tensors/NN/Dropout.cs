using System.Globalization;

namespace Engine.Tensors.NN;

/// <summary>
/// torch.nn.Dropout: in training mode each element is kept with probability 1 − p and scaled by 1/(1 − p)
/// (zeroed otherwise; p = 1 zeroes everything), so the expectation is unchanged; in evaluation mode the
/// identity. The Bernoulli mask is drawn from the layer's <see cref="Generator"/> (the default
/// generator when none is given), so a seed fixes every mask. Gradient: g times the same scaled mask.
/// </summary>
public sealed class Dropout : Module
{
    private readonly Generator? _generator;

    /// <summary>A layer dropping with probability <paramref name="p"/> in [0, 1].</summary>
    public Dropout(double p = 0.5, Generator? generator = null)
    {
        if (!(p >= 0 && p <= 1)) throw new ArgumentOutOfRangeException(nameof(p), $"Dropout: probability must be in [0, 1], got {p}.");
        P = p;
        _generator = generator;
    }

    /// <summary>Probability of zeroing an element.</summary>
    public double P { get; }

    /// <summary>The generator masks are drawn from.</summary>
    public Generator Generator => _generator ?? Generator.Default;

    /// <inheritdoc/>
    public override Tensor Forward(Tensor input)
    {
        ArgumentNullException.ThrowIfNull(input);
        if (!Training || P == 0) return input.Alias();
        if (!input.DType.IsFloatingPoint())
            throw new ArgumentException($"{Describe()}: expects a float tensor, got {input.DType.Name()} {ShapeUtil.Format(input.Shape)}.");
        using var mask = Kernels.KernelDispatch.IsAccelerated(input)
            ? Kernels.KernelDispatch.Bernoulli(input.ShapeArray(), 1 - P, input.DType, Generator, input.Device) // same Philox stream: same mask
            : Tensor.Bernoulli(input.ShapeArray(), 1 - P, input.DType, Generator);
        if (P == 1) return input.Mul(mask); // all zeros, graph kept
        using var scaled = mask.Mul(1 / (1 - P)); // the mask requires no grad: nothing is recorded
        return input.Mul(scaled);
    }

    /// <inheritdoc/>
    protected override string ExtraRepr() => $"p={P.ToString("G", CultureInfo.InvariantCulture)}, inplace=False";
}
