namespace Engine.Tensors.NN;

/// <summary>
/// Multi-head attention with linear projections (torch.nn.MultiheadAttention with batch_first=True, no
/// dropout), usable as a decoder's causal self-attention.
/// <para>
/// For query [B, Nq, E], key [B, Nk, kdim], value [B, Nk, vdim] (or the same without the batch dim):
/// Q = q_proj(query), K = k_proj(key), V = v_proj(value), each [B, N, E] viewed as H heads
/// [B, H, N, E/H] (a permuted view, not a copy); O_h = <see cref="Tensor.ScaledDotProductAttention"/>(Q_h, K_h, V_h,
/// mask, causal) with scale 1/√(E/H); output = out_proj(concat_h O_h) [B, Nq, E].
/// </para>
/// <para>
/// The mask follows <see cref="Tensor.ScaledDotProductAttention"/>: bool (true = attend) or additive float,
/// broadcastable to [B, H, Nq, Nk]; a key-padding mask is [B, 1, 1, Nk]. <see cref="Causal"/> (set at
/// construction, overridable per call) hides later keys, for decoders. Parameters: four <see cref="Linear"/>
/// layers named q_proj, k_proj, v_proj, out_proj with Linear's default (PyTorch) initialization.
/// </para>
/// <para>
/// <see cref="ForwardWithProbabilities"/> also returns the per-head attention probabilities [B, H, Nq, Nk]
/// (differentiable; materialized), e.g. for MiniLM-style attention distillation.
/// </para>
/// </summary>
public sealed class MultiheadAttention : Module
{
    /// <summary>An attention layer of <paramref name="numHeads"/> heads over <paramref name="embedDim"/> features.</summary>
    /// <param name="embedDim">Model width E (query features and output features); a multiple of <paramref name="numHeads"/>.</param>
    /// <param name="numHeads">Number of heads H.</param>
    /// <param name="bias">Whether the four projections have biases.</param>
    /// <param name="causal">Default for hiding key j from query i when j &gt; i (decoder self-attention).</param>
    /// <param name="kdim">Key features (default E).</param>
    /// <param name="vdim">Value features (default E).</param>
    /// <param name="generator">Random source for the projections' initialization.</param>
    public MultiheadAttention(long embedDim, long numHeads, bool bias = true, bool causal = false, long? kdim = null, long? vdim = null, Generator? generator = null)
    {
        if (embedDim < 1 || numHeads < 1 || embedDim % numHeads != 0)
            throw new ArgumentException($"MultiheadAttention: embed_dim must be a positive multiple of num_heads, got embed_dim={embedDim}, num_heads={numHeads}.");
        EmbedDim = embedDim;
        NumHeads = numHeads;
        HeadDim = embedDim / numHeads;
        KDim = kdim ?? embedDim;
        VDim = vdim ?? embedDim;
        Causal = causal;
        QProj = RegisterModule("q_proj", new Linear(embedDim, embedDim, bias, generator));
        KProj = RegisterModule("k_proj", new Linear(KDim, embedDim, bias, generator));
        VProj = RegisterModule("v_proj", new Linear(VDim, embedDim, bias, generator));
        OutProj = RegisterModule("out_proj", new Linear(embedDim, embedDim, bias, generator));
    }

    /// <summary>Model width E.</summary>
    public long EmbedDim { get; }

    /// <summary>Number of heads H.</summary>
    public long NumHeads { get; }

    /// <summary>Features per head, E / H.</summary>
    public long HeadDim { get; }

    /// <summary>Key features.</summary>
    public long KDim { get; }

    /// <summary>Value features.</summary>
    public long VDim { get; }

    /// <summary>Whether calls that do not say otherwise hide later keys (decoder self-attention).</summary>
    public bool Causal { get; }

    /// <summary>Query projection E → E.</summary>
    public Linear QProj { get; }

    /// <summary>Key projection kdim → E.</summary>
    public Linear KProj { get; }

    /// <summary>Value projection vdim → E.</summary>
    public Linear VProj { get; }

    /// <summary>Output projection E → E.</summary>
    public Linear OutProj { get; }

    /// <summary>Self-attention: query, key and value are all <paramref name="input"/> [B, N, E] (or [N, E]).</summary>
    public override Tensor Forward(Tensor input) => Forward(input, input, input);

    /// <summary>
    /// Attention of <paramref name="query"/> [B, Nq, E] over <paramref name="key"/> [B, Nk, kdim] and
    /// <paramref name="value"/> [B, Nk, vdim] (all three without B for one sequence) → [B, Nq, E].
    /// </summary>
    /// <param name="query">Queries.</param>
    /// <param name="key">Keys.</param>
    /// <param name="value">Values.</param>
    /// <param name="mask">Bool (true = attend) or additive mask broadcastable to [B, H, Nq, Nk]; null for none.</param>
    /// <param name="causal">Overrides <see cref="Causal"/> for this call.</param>
    public Tensor Forward(Tensor query, Tensor key, Tensor value, Tensor? mask = null, bool? causal = null)
        => Run(query, key, value, mask, causal, probabilities: false).Output;

    /// <summary>
    /// <see cref="Forward(Tensor, Tensor, Tensor, Tensor?, bool?)"/> that also returns the attention
    /// probabilities [B, H, Nq, Nk] ([H, Nq, Nk] without a batch dim). Uses the composite (materialized)
    /// attention, so both results are differentiable.
    /// </summary>
    public (Tensor Output, Tensor Probabilities) ForwardWithProbabilities(Tensor query, Tensor key, Tensor value, Tensor? mask = null, bool? causal = null)
    {
        var (output, p) = Run(query, key, value, mask, causal, probabilities: true);
        return (output, p!);
    }

    private (Tensor Output, Tensor? Probabilities) Run(Tensor query, Tensor key, Tensor value, Tensor? mask, bool? causal, bool probabilities)
    {
        ArgumentNullException.ThrowIfNull(query);
        ArgumentNullException.ThrowIfNull(key);
        ArgumentNullException.ThrowIfNull(value);
        bool batched = query.Rank == 3;
        if (query.Rank is not (2 or 3) || key.Rank != query.Rank || value.Rank != query.Rank
            || query.Shape[^1] != EmbedDim || key.Shape[^1] != KDim || value.Shape[^1] != VDim
            || key.Shape[^2] != value.Shape[^2] || (batched && (key.Shape[0] != query.Shape[0] || value.Shape[0] != query.Shape[0])))
            throw new ArgumentException(
                $"{Describe()}: expected query [B, Nq, {EmbedDim}], key [B, Nk, {KDim}], value [B, Nk, {VDim}] (or all without B); got query {ShapeUtil.Format(query.Shape)}, key {ShapeUtil.Format(key.Shape)}, value {ShapeUtil.Format(value.Shape)}.");
        using var q = SplitHeads(QProj, query);
        using var k = SplitHeads(KProj, key);
        using var v = SplitHeads(VProj, value);
        bool isCausal = causal ?? Causal;
        Tensor heads;
        Tensor? p = null;
        if (probabilities) (heads, p) = Tensor.ScaledDotProductAttentionWithProbabilities(q, k, v, mask, isCausal);
        else heads = Tensor.ScaledDotProductAttention(q, k, v, mask, isCausal);
        // [B, H, Nq, Dh] → [B, Nq, H, Dh] → [B, Nq, E] (one copy), then the output projection.
        using (heads)
        using (var swapped = heads.Transpose(-3, -2))
        using (var merged = swapped.Reshape([.. swapped.Shape[..^2], EmbedDim]))
            return (OutProj.Forward(merged), p);
    }

    /// <summary>projection(x) [..., N, E] viewed as [..., H, N, E/H] (a permuted view).</summary>
    private Tensor SplitHeads(Linear projection, Tensor x)
    {
        using var projected = projection.Forward(x);
        using var split = projected.View([.. projected.Shape[..^1], NumHeads, HeadDim]);
        return split.Transpose(-3, -2);
    }

    /// <inheritdoc/>
    protected override string ExtraRepr()
        => $"embed_dim={EmbedDim}, num_heads={NumHeads}, causal={(Causal ? "True" : "False")}" + (KDim != EmbedDim || VDim != EmbedDim ? $", kdim={KDim}, vdim={VDim}" : "");
}
