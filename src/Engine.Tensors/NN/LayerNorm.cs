using System.Globalization;

namespace Engine.Tensors.NN;

/// <summary>
/// torch.nn.LayerNorm: normalizes over the last dims given by normalized_shape,
/// y = (x − mean) / √(var + eps) · weight + bias (biased variance); weight (ones) and bias (zeros) have
/// normalized_shape when elementwise_affine. The same computation in training and evaluation.
/// </summary>
public sealed class LayerNorm : Module
{
    /// <summary>A layer normalizing over the trailing dims <paramref name="normalizedShape"/>.</summary>
    public LayerNorm(long[] normalizedShape, double eps = 1e-5, bool elementwiseAffine = true, bool bias = true)
    {
        ArgumentNullException.ThrowIfNull(normalizedShape);
        if (normalizedShape.Length == 0 || normalizedShape.Any(d => d < 1))
            throw new ArgumentException($"LayerNorm: normalized_shape must be non-empty with positive sizes, got {ShapeUtil.Format(normalizedShape)}.");
        NormalizedShape = (long[])normalizedShape.Clone();
        Eps = eps;
        ElementwiseAffine = elementwiseAffine;
        RegisterParameter("weight", elementwiseAffine ? Tensor.Ones(normalizedShape) : null);
        RegisterParameter("bias", elementwiseAffine && bias ? Tensor.Zeros(normalizedShape) : null);
    }

    /// <summary>A layer normalizing over the last dim of size <paramref name="normalizedSize"/>.</summary>
    public LayerNorm(long normalizedSize, double eps = 1e-5, bool elementwiseAffine = true, bool bias = true)
        : this([normalizedSize], eps, elementwiseAffine, bias)
    {
    }

    /// <summary>The trailing dims normalized over.</summary>
    public IReadOnlyList<long> NormalizedShape { get; }

    /// <summary>Added to the variance before the square root.</summary>
    public double Eps { get; }

    /// <summary>Whether the layer has a weight (and a bias, unless created without).</summary>
    public bool ElementwiseAffine { get; }

    /// <summary>Scale of normalized_shape, or null.</summary>
    public Tensor? Weight => GetParameter("weight");

    /// <summary>Shift of normalized_shape, or null.</summary>
    public Tensor? Bias => GetParameter("bias");

    /// <inheritdoc/>
    public override Tensor Forward(Tensor input)
    {
        ArgumentNullException.ThrowIfNull(input);
        int k = NormalizedShape.Count;
        bool fits = input.Rank >= k;
        for (int i = 0; fits && i < k; i++) fits = input.Shape[input.Rank - k + i] == NormalizedShape[i];
        if (!fits)
            throw new ArgumentException($"{Describe()}: expected input of shape [..., {string.Join(", ", NormalizedShape)}], got {ShapeUtil.Format(input.Shape)}.");
        if (!input.DType.IsFloatingPoint() || (Weight is not null && input.DType != Weight.DType))
            throw new ArgumentException($"{Describe()}: input is {input.DType.Name()} but the layer is {Weight?.DType.Name() ?? "float"}; convert one of them.");
        var dims = Enumerable.Range(input.Rank - k, k).ToArray();
        using var mean = input.Mean(dims, keepDim: true);
        using var variance = input.Var(dims, keepDim: true, correction: 0);
        using var centered = input.Sub(mean);
        using var veps = variance.Add(Eps);
        using var invStd = veps.Rsqrt();
        var y = centered.Mul(invStd);
        if (Weight is not null) { using var t = y; y = t.Mul(Weight); }
        if (Bias is not null) { using var t = y; y = t.Add(Bias); }
        return y;
    }

    /// <inheritdoc/>
    protected override string ExtraRepr()
        => $"({string.Join(", ", NormalizedShape)}{(NormalizedShape.Count == 1 ? "," : "")}), eps={Eps.ToString("G", CultureInfo.InvariantCulture)}, elementwise_affine={(ElementwiseAffine ? "True" : "False")}";
}
