using Engine.Tensors;
using Engine.Tensors.NN;

namespace Engine.Distillation.LanguageModel;

/// <summary>
/// One pre-LayerNorm decoder block (GPT-2's layout) on a residual stream x [B, N, d]:
/// <code>
/// x = x + attn(ln_1(x))                  causal multi-head self-attention, H heads of d/H
/// x = x + mlp(ln_2(x))                   mlp(h) = fc_2(GELU_tanh(fc_1(h))), d → r·d → d
/// </code>
/// Children (parameter-name prefixes): ln_1, attn (<see cref="MultiheadAttention"/>: q_proj, k_proj, v_proj,
/// out_proj), ln_2, fc_1, fc_2. GELU is the tanh approximation (GPT-2's choice),
/// 0.5·h·(1 + tanh(√(2/π)·(h + 0.044715·h³))). Causal: position i never reads a position j &gt; i.
/// attn's parameters and its function are <see cref="MultiheadAttention"/>'s; the block runs the projections on
/// 2-D rows itself for speed (see <see cref="ForwardRows(Tensor, long, long)"/>).
/// </summary>
public sealed class TransformerBlock : Module
{
    /// <summary>A block of width <paramref name="width"/>, <paramref name="heads"/> heads and MLP hidden width mlpRatio·width.</summary>
    /// <param name="width">d.</param>
    /// <param name="heads">H (divides d).</param>
    /// <param name="mlpRatio">r.</param>
    /// <param name="generator">Random source for the layers' default initialization (the owning model re-initializes).</param>
    public TransformerBlock(int width, int heads, int mlpRatio, Generator? generator = null)
    {
        Ln1 = RegisterModule("ln_1", new LayerNorm(width));
        Attention = RegisterModule("attn", new MultiheadAttention(width, heads, bias: true, causal: true, generator: generator));
        Ln2 = RegisterModule("ln_2", new LayerNorm(width));
        Fc1 = RegisterModule("fc_1", new Linear(width, (long)mlpRatio * width, bias: true, generator));
        Fc2 = RegisterModule("fc_2", new Linear((long)mlpRatio * width, width, bias: true, generator));
    }

    /// <summary>LayerNorm before the attention.</summary>
    public LayerNorm Ln1 { get; }

    /// <summary>Causal self-attention.</summary>
    public MultiheadAttention Attention { get; }

    /// <summary>LayerNorm before the MLP.</summary>
    public LayerNorm Ln2 { get; }

    /// <summary>MLP expansion d → r·d.</summary>
    public Linear Fc1 { get; }

    /// <summary>MLP projection r·d → d (a residual projection).</summary>
    public Linear Fc2 { get; }

    /// <summary>The block on x [B, N, d] (or [N, d]) → the same shape.</summary>
    public override Tensor Forward(Tensor input)
    {
        ArgumentNullException.ThrowIfNull(input);
        long d = Attention.EmbedDim;
        if (input.Rank is not (2 or 3) || input.Shape[^1] != d)
            throw new ArgumentException($"TransformerBlock: expected x [B, N, {d}] or [N, {d}]; got {LogitLossCore.Fmt(input.Shape)}.");
        long b = input.Rank == 3 ? input.Size(0) : 1, n = input.Shape[^2];
        using var rows = input.Reshape(b * n, d);
        using var y = ForwardRows(rows, b, n);
        return y.Reshape(input.ShapeArray());
    }

    /// <summary>
    /// The block on the rows [B·N, d] of B sequences of N positions. Every per-position op (LayerNorm, the
    /// projections, the MLP) runs on the 2-D rows, so each Linear is one GEMM (Linear on [B, N, d] would run
    /// B small GEMMs and, in its backward, materialize B weight-shaped products); only the attention sees
    /// [B, H, N, d/H] (permuted views of the projections). The function is attn.Forward's (the tests compare).
    /// </summary>
    internal Tensor ForwardRows(Tensor x, long b, long n) => ForwardRows(x, b, n, capture: false, out _);

    /// <summary>
    /// <see cref="ForwardRows(Tensor, long, long)"/> that, when <paramref name="capture"/> is true, also returns the
    /// attention probabilities [B, H, N, N] and values [B, H, N, d/H] (both in the graph; the caller disposes them).
    /// With capture the attention runs in its composite form (P materialized); the function is the same.
    /// </summary>
    internal Tensor ForwardRows(Tensor x, long b, long n, bool capture, out AttentionRelations? relations)
    {
        using var h1 = Ln1.Forward(x);
        using var a = SelfAttention(h1, b, n, capture, out relations);
        using var x1 = x.Add(a);
        using var f = Mlp(x1);
        return x1.Add(f);
    }

    /// <summary>
    /// The block on x [B, N, d] → (y [B, N, d], the attention probabilities A [B, H, N, N] and values V [B, H, N, d/H]
    /// of its causal self-attention), for attention distillation (<see cref="MiniLm"/>). y equals <see cref="Forward"/>'s
    /// up to float rounding (the attention runs in its composite form); A is causal (A[.., i, j] = 0 for j &gt; i) and
    /// every row over j ≤ i sums to 1. All three are differentiable; the caller disposes them.
    /// </summary>
    /// <exception cref="ArgumentException">x that is not [B, N, d].</exception>
    public (Tensor Output, AttentionRelations Attention) ForwardWithAttention(Tensor input)
    {
        ArgumentNullException.ThrowIfNull(input);
        long d = Attention.EmbedDim;
        if (input.Rank != 3 || input.Shape[^1] != d)
            throw new ArgumentException($"TransformerBlock.ForwardWithAttention: expected x [B, N, {d}]; got {LogitLossCore.Fmt(input.Shape)}.");
        long b = input.Size(0), n = input.Size(1);
        using var rows = input.Reshape(b * n, d);
        using var y = ForwardRows(rows, b, n, capture: true, out var relations);
        return (y.Reshape(input.ShapeArray()), relations!);
    }

    /// <summary>
    /// The block at one new position: x [B, d] → [B, d], attending over the cached positions and itself (the new
    /// keys and values are appended to <paramref name="cache"/>'s entry <paramref name="layer"/>). The same
    /// arithmetic as <see cref="Forward"/> at that position, without recomputing earlier positions. No graph is recorded.
    /// </summary>
    internal Tensor DecodeStep(Tensor x, KeyValueCache cache, int layer)
    {
        using var noGrad = Tensor.NoGrad();
        long b = x.Size(0), heads = Attention.NumHeads, dh = Attention.HeadDim, d = Attention.EmbedDim;
        using var h1 = Ln1.Forward(x);
        // [B, d] rows are [B, H, 1, d/H] as they lie in memory.
        using var qRows = Attention.QProj.Forward(h1);
        using var kRows = Attention.KProj.Forward(h1);
        using var vRows = Attention.VProj.Forward(h1);
        using var q = qRows.View(b, heads, 1, dh);
        using var k = kRows.View(b, heads, 1, dh);
        using var v = vRows.View(b, heads, 1, dh);
        var (keys, values) = cache.Append(layer, k, v);
        // Every cached key precedes (or is) the query position: no mask needed.
        using var o = Tensor.ScaledDotProductAttention(q, keys, values);
        using var merged = o.Reshape(b, d);
        using var a = Attention.OutProj.Forward(merged);
        using var x1 = x.Add(a);
        using var f = Mlp(x1);
        return x1.Add(f);
    }

    /// <summary>fc_2(GELU_tanh(fc_1(ln_2(x)))) on rows [R, d].</summary>
    private Tensor Mlp(Tensor x)
    {
        using var h2 = Ln2.Forward(x);
        using var f1 = Fc1.Forward(h2);
        using var g = f1.Gelu("tanh");
        return Fc2.Forward(g);
    }

    /// <summary>
    /// Causal multi-head self-attention of the rows h [B·N, d] with attn's projections and scale 1/√(d/H), as
    /// <see cref="MultiheadAttention.Forward(Tensor)"/> computes it on [B, N, d]; returns rows [B·N, d]. With
    /// <paramref name="capture"/>, also the probabilities [B, H, N, N] and values [B, H, N, d/H] (owned by the caller).
    /// </summary>
    private Tensor SelfAttention(Tensor h, long b, long n, bool capture, out AttentionRelations? relations)
    {
        long heads = Attention.NumHeads, dh = Attention.HeadDim, d = Attention.EmbedDim;
        using var q = Heads(Attention.QProj, h, b, n, heads, dh);
        using var k = Heads(Attention.KProj, h, b, n, heads, dh);
        var v = Heads(Attention.VProj, h, b, n, heads, dh);
        Tensor o;
        if (capture)
        {
            (o, var p) = Tensor.ScaledDotProductAttentionWithProbabilities(q, k, v, causal: true);
            relations = new AttentionRelations(p, v); // v is handed over, not disposed here
        }
        else
        {
            using (v) o = Tensor.ScaledDotProductAttention(q, k, v, causal: true);
            relations = null;
        }
        using var attended = o;
        // [B, H, N, dh] → [B, N, H, dh] → rows [B·N, d] (one copy), then the output projection.
        using var swapped = o.Transpose(1, 2);
        using var merged = swapped.Reshape(b * n, d);
        return Attention.OutProj.Forward(merged);
    }

    /// <summary>projection(h) [B·N, d] viewed as [B, H, N, d/H] (a permuted view).</summary>
    private static Tensor Heads(Linear projection, Tensor h, long b, long n, long heads, long dh)
    {
        using var p = projection.Forward(h);
        using var split = p.View(b, n, heads, dh);
        return split.Transpose(1, 2);
    }
}
