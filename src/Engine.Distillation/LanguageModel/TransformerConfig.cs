using System.Globalization;

namespace Engine.Distillation.LanguageModel;

/// <summary>
/// The shape and initialization of a <see cref="DecoderTransformer"/>. All sizes are validated by
/// <see cref="Validate"/> (called by the model's constructor).
/// </summary>
/// <param name="VocabSize">V: token ids run over [0, V); the head produces V logits per position.</param>
/// <param name="ContextLength">The most positions the model reads (size of the learned position table).</param>
/// <param name="Width">d_model, the residual-stream width; a multiple of <paramref name="Heads"/>.</param>
/// <param name="Layers">Number of transformer blocks (≥ 0; 0 gives an embedding-to-head bigram model).</param>
/// <param name="Heads">Attention heads per block.</param>
/// <param name="MlpRatio">The MLP's hidden width is MlpRatio·Width (GPT-2: 4).</param>
/// <param name="TiedHead">True: the head reuses the token-embedding matrix (logits = h·W_teᵀ, no head parameter);
/// false: a separate bias-free Linear head.</param>
/// <param name="InitStd">Standard deviation σ of the N(0, σ²) initialization of embeddings and linear weights
/// (GPT-2: 0.02). The two residual projections of each block (attention out_proj and the MLP's second
/// layer) use σ/√(2·Layers), as GPT-2 does, so the residual stream's variance does not grow with depth.</param>
public sealed record TransformerConfig(
    int VocabSize = 64,
    int ContextLength = 16,
    int Width = 64,
    int Layers = 2,
    int Heads = 4,
    int MlpRatio = 4,
    bool TiedHead = false,
    double InitStd = 0.02)
{
    /// <summary>Throws <see cref="ArgumentException"/> naming every field that is out of range.</summary>
    public void Validate()
    {
        var problems = new List<string>();
        if (VocabSize < 2) problems.Add($"VocabSize = {VocabSize} (need ≥ 2)");
        if (ContextLength < 1) problems.Add($"ContextLength = {ContextLength} (need ≥ 1)");
        if (Width < 1) problems.Add($"Width = {Width} (need ≥ 1)");
        if (Layers < 0) problems.Add($"Layers = {Layers} (need ≥ 0)");
        if (Heads < 1 || (Width >= 1 && Width % Heads != 0)) problems.Add($"Heads = {Heads} (need ≥ 1 and dividing Width = {Width})");
        if (MlpRatio < 1) problems.Add($"MlpRatio = {MlpRatio} (need ≥ 1)");
        if (!(InitStd > 0 && double.IsFinite(InitStd))) problems.Add($"InitStd = {InitStd} (need a positive finite value)");
        if (problems.Count > 0)
            throw new ArgumentException($"TransformerConfig: {string.Join("; ", problems)}.");
    }

    /// <summary>A short description, e.g. "V=64 ctx=16 d=64 L=2 H=4".</summary>
    public string Describe() => string.Create(CultureInfo.InvariantCulture,
        $"V={VocabSize} ctx={ContextLength} d={Width} L={Layers} H={Heads}{(TiedHead ? " tied" : "")}");
}
