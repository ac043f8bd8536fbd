using Engine.Tensors;
using Engine.Tensors.NN;

namespace Engine.Distillation.LanguageModel;

/// <summary>
/// A small decoder-only transformer language model (GPT-2's layout) for the distillation testbed:
/// <code>
/// x_0    = wte[ids] + wpe[0..N)             token and learned position embeddings, [B, N, d]
/// x_l    = block_l(x_(l−1))                 l = 1..Layers, <see cref="TransformerBlock"/> (pre-LN, causal)
/// logits = head(ln_f(x_Layers))             [B, N, V]; head = wteᵀ when tied, else a bias-free Linear
/// </code>
/// The logits at position i depend on ids[.., 0..i] only (causal). Parameter names: wte.weight, wpe.weight,
/// h.{l}.ln_1.weight, h.{l}.attn.q_proj.weight, ..., ln_f.weight, head.weight (untied only).
/// <para>
/// Initialization, drawn from <c>new Generator(seed)</c> in parameter order: embeddings and linear weights
/// N(0, σ²) with σ = <see cref="TransformerConfig.InitStd"/>, the two residual projections of each block
/// (attn.out_proj, fc_2) N(0, σ²/(2·Layers)), linear biases 0, LayerNorm weight 1 and bias 0. The same
/// (config, seed) gives the same parameters on every machine.
/// </para>
/// </summary>
public sealed class DecoderTransformer : Module
{
    private readonly TransformerBlock[] _blocks;

    /// <summary>A model of shape <paramref name="config"/> initialized from <paramref name="seed"/> (float32).</summary>
    /// <exception cref="ArgumentException">An invalid configuration.</exception>
    public DecoderTransformer(TransformerConfig config, ulong seed)
    {
        ArgumentNullException.ThrowIfNull(config);
        config.Validate();
        Config = config;
        var generator = new Generator(seed);
        TokenEmbedding = RegisterModule("wte", new Embedding(config.VocabSize, config.Width, generator: generator));
        PositionEmbedding = RegisterModule("wpe", new Embedding(config.ContextLength, config.Width, generator: generator));
        _blocks = new TransformerBlock[config.Layers];
        var h = new Sequential();
        for (int l = 0; l < config.Layers; l++)
            h.Append(_blocks[l] = new TransformerBlock(config.Width, config.Heads, config.MlpRatio, generator));
        RegisterModule("h", h);
        FinalNorm = RegisterModule("ln_f", new LayerNorm(config.Width));
        Head = config.TiedHead ? null : RegisterModule("head", new Linear(config.Width, config.VocabSize, bias: false, generator));
        Initialize(generator);
    }

    /// <summary>The model's shape.</summary>
    public TransformerConfig Config { get; }

    /// <summary>Token embedding wte [V, d] (also the head's weight when tied).</summary>
    public Embedding TokenEmbedding { get; }

    /// <summary>Learned position embedding wpe [ContextLength, d].</summary>
    public Embedding PositionEmbedding { get; }

    /// <summary>The blocks, in order.</summary>
    public IReadOnlyList<TransformerBlock> Blocks => _blocks;

    /// <summary>The final LayerNorm.</summary>
    public LayerNorm FinalNorm { get; }

    /// <summary>The untied head [V, d] (null when tied to <see cref="TokenEmbedding"/>).</summary>
    public Linear? Head { get; }

    /// <summary>
    /// Logits [B, N, V] (or [N, V] for ids [N]) for int64 or int32 token ids [B, N], 1 ≤ N ≤ ContextLength,
    /// each in [0, V). The logits at position i are the model's scores for the token after ids[.., i].
    /// </summary>
    /// <exception cref="ArgumentException">Ids of the wrong rank, dtype or length.</exception>
    /// <exception cref="ArgumentOutOfRangeException">An id outside [0, V).</exception>
    public override Tensor Forward(Tensor input) => ForwardCore(input, captureLastAttention: false, out _);

    /// <summary>
    /// <see cref="Forward(Tensor)"/> that also returns the last block's attention probabilities A [B, H, N, N] and
    /// values V [B, H, N, d/H] (what <see cref="MiniLm"/> distills; [1, H, N, N] and [1, H, N, d/H] for ids [N]).
    /// The logits equal <see cref="Forward(Tensor)"/>'s up to float rounding (the last attention runs in its composite
    /// form, P materialized). Everything returned is differentiable and owned by the caller.
    /// </summary>
    /// <exception cref="ArgumentException">Ids as in <see cref="Forward(Tensor)"/>, or a model without blocks (Layers = 0).</exception>
    public (Tensor Logits, AttentionRelations LastAttention) ForwardWithLastAttention(Tensor input)
    {
        if (_blocks.Length == 0)
            throw new ArgumentException($"DecoderTransformer({Config.Describe()}).ForwardWithLastAttention: the model has no attention layer (Layers = 0).");
        var logits = ForwardCore(input, captureLastAttention: true, out var relations);
        return (logits, relations!);
    }

    private Tensor ForwardCore(Tensor input, bool captureLastAttention, out AttentionRelations? lastAttention)
    {
        ArgumentNullException.ThrowIfNull(input);
        lastAttention = null;
        if (input.Rank is not (1 or 2) || input.DType is not (DType.Int64 or DType.Int32)
            || input.Shape[^1] < 1 || input.Shape[^1] > Config.ContextLength)
            throw new ArgumentException(
                $"DecoderTransformer({Config.Describe()}): expected int64 or int32 token ids [B, N] or [N] with 1 ≤ N ≤ {Config.ContextLength}; got {input.DType.Name()} {LogitLossCore.Fmt(input.Shape)}.");
        long n = input.Shape[^1], b = input.Rank == 2 ? input.Size(0) : 1, d = Config.Width;
        using var positions = Tensor.Arange(n);
        using var tok = TokenEmbedding.Forward(input);
        using var pos = PositionEmbedding.Forward(positions);
        using var embedded = tok.Add(pos);
        // The residual stream as rows [B·N, d]: per-position ops run as single GEMMs (see TransformerBlock.ForwardRows).
        var x = embedded.Reshape(b * n, d);
        for (int l = 0; l < _blocks.Length; l++)
        {
            using var previous = x;
            bool capture = captureLastAttention && l == _blocks.Length - 1;
            x = _blocks[l].ForwardRows(previous, b, n, capture, out var relations);
            if (capture) lastAttention = relations;
        }
        using (x)
        using (var normed = FinalNorm.Forward(x))
        using (var logits = HeadForward(normed))
            return logits.Reshape([.. input.ShapeArray(), Config.VocabSize]);
    }

    /// <summary>The head on rows [R, d] → [R, V].</summary>
    private Tensor HeadForward(Tensor rows)
    {
        if (Head is not null) return Head.Forward(rows);
        using var wt = TokenEmbedding.Weight.T;
        return rows.MatMul(wt);
    }

    /// <summary>
    /// Incremental decoding: the logits [B, V] at position t = <paramref name="cache"/>.Length for the tokens
    /// <paramref name="tokens"/> [B] (int64) at that position, given the earlier positions' keys and values in the
    /// cache (which this call extends; start with an empty <see cref="KeyValueCache"/>(Layers)). The same function
    /// as <see cref="Forward"/>'s row t on the whole prefix, computed in O(t) instead of O(t²) per step; the two agree
    /// up to float rounding. No graph is recorded.
    /// </summary>
    /// <exception cref="ArgumentException">Tokens that are not int64 [B], or a cache already at the context length.</exception>
    public Tensor DecodeStep(Tensor tokens, KeyValueCache cache)
    {
        ArgumentNullException.ThrowIfNull(tokens);
        ArgumentNullException.ThrowIfNull(cache);
        if (tokens.Rank != 1 || tokens.DType != DType.Int64 || cache.Length >= Config.ContextLength)
            throw new ArgumentException(
                $"DecoderTransformer.DecodeStep({Config.Describe()}): expected int64 tokens [B] and a cache shorter than {Config.ContextLength}; got {tokens.DType.Name()} {LogitLossCore.Fmt(tokens.Shape)} at position {cache.Length}.");
        using var noGrad = Tensor.NoGrad();
        using var position = Tensor.Full([1], cache.Length, DType.Int64);
        using var tok = TokenEmbedding.Forward(tokens);
        using var pos = PositionEmbedding.Forward(position);
        var x = tok.Add(pos);
        for (int l = 0; l < _blocks.Length; l++)
        {
            using var previous = x;
            x = _blocks[l].DecodeStep(previous, cache, l);
        }
        cache.Length++;
        using (x)
        using (var normed = FinalNorm.Forward(x))
            return HeadForward(normed);
    }

    /// <summary>The initialization described on the class, in parameter order.</summary>
    private void Initialize(Generator generator)
    {
        double std = Config.InitStd;
        double residualStd = std / Math.Sqrt(2.0 * Math.Max(1, Config.Layers));
        foreach (var (name, module) in NamedModules())
        {
            switch (module)
            {
                case Embedding e:
                    Init.Normal(e.Weight, 0, std, generator);
                    break;
                case Linear linear:
                    bool residual = name.EndsWith(".out_proj", StringComparison.Ordinal) || name.EndsWith(".fc_2", StringComparison.Ordinal);
                    Init.Normal(linear.Weight, 0, residual ? residualStd : std, generator);
                    if (linear.Bias is not null) Init.Zeros(linear.Bias);
                    break;
            }
        }
    }

    /// <inheritdoc/>
    protected override string ExtraRepr() => Config.Describe();
}
