namespace Engine.Tensors.NN;

/// <summary>
/// torch.nn.Linear: y = x·Wᵀ + b for x [..., in_features], weight W [out_features, in_features], bias b
/// [out_features]. Initialized as PyTorch does: W and b uniform on ±1/√in_features.
/// </summary>
public sealed class Linear : Module
{
    /// <summary>A layer with freshly initialized parameters (float32), drawn from <paramref name="generator"/>.</summary>
    public Linear(long inFeatures, long outFeatures, bool bias = true, Generator? generator = null)
    {
        if (inFeatures < 0 || outFeatures < 0)
            throw new ArgumentException($"Linear: feature counts must be ≥ 0, got in_features={inFeatures}, out_features={outFeatures}.");
        InFeatures = inFeatures;
        OutFeatures = outFeatures;
        var w = RegisterParameter("weight", Tensor.Empty([outFeatures, inFeatures]))!;
        var b = RegisterParameter("bias", bias ? Tensor.Empty([outFeatures]) : null);
        Init.DefaultLayerInit(w, b, generator);
    }

    /// <summary>Size of each input sample.</summary>
    public long InFeatures { get; }

    /// <summary>Size of each output sample.</summary>
    public long OutFeatures { get; }

    /// <summary>Weight [out_features, in_features].</summary>
    public Tensor Weight => GetParameter("weight")!;

    /// <summary>Bias [out_features], or null.</summary>
    public Tensor? Bias => GetParameter("bias");

    /// <inheritdoc/>
    public override Tensor Forward(Tensor input)
    {
        ArgumentNullException.ThrowIfNull(input);
        if (input.Rank < 1 || input.Shape[^1] != InFeatures)
            throw new ArgumentException($"{Describe()}: expected input of shape [..., {InFeatures}], got {ShapeUtil.Format(input.Shape)}.");
        if (input.DType != Weight.DType)
            throw new ArgumentException($"{Describe()}: input is {input.DType.Name()} but the weight is {Weight.DType.Name()}; convert one of them (Module.To or Tensor.To).");
        using var wt = Weight.T;
        var y = input.MatMul(wt);
        if (Bias is null) return y;
        using (y) return y.Add(Bias);
    }

    /// <inheritdoc/>
    protected override string ExtraRepr() => $"in_features={InFeatures}, out_features={OutFeatures}, bias={(Bias is null ? "False" : "True")}";
}
