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

    /// <summary>The block on x [B, N, d] → [B, N, d].</summary>
    public override Tensor Forward(Tensor input)
    {
        ArgumentNullException.ThrowIfNull(input);
        using var h1 = Ln1.Forward(input);
        using var a = Attention.Forward(h1);
        using var x1 = input.Add(a);
        using var h2 = Ln2.Forward(x1);
        using var f1 = Fc1.Forward(h2);
        using var g = f1.Gelu("tanh");
        using var f2 = Fc2.Forward(g);
        return x1.Add(f2);
    }

    /// <summary>
    /// The block at one new position: x [B, 1, d] → [B, 1, d], attending over the cached positions and itself
    /// (the new keys and values are appended to <paramref name="cache"/>'s entry <paramref name="layer"/>). The same
    /// arithmetic as <see cref="Forward"/> at that position, without recomputing earlier positions. No graph is recorded.
    /// </summary>
    internal Tensor DecodeStep(Tensor x, KeyValueCache cache, int layer)
    {
        using var noGrad = Tensor.NoGrad();
        long b = x.Size(0), heads = Attention.NumHeads, dh = Attention.HeadDim, d = Attention.EmbedDim;
        using var h1 = Ln1.Forward(x);
        using var q = SplitHeads(Attention.QProj, h1, b, heads, dh);
        using var k = SplitHeads(Attention.KProj, h1, b, heads, dh);
        using var v = SplitHeads(Attention.VProj, h1, b, heads, dh);
        var (keys, values) = cache.Append(layer, k, v);
        // Every cached key precedes (or is) the query position: no mask needed.
        using var o = Tensor.ScaledDotProductAttention(q, keys, values);
        using var merged = o.Reshape(b, 1, d); // [B, H, 1, dh] → [B, 1, H·dh] (the same order as [B, 1, H, dh])
        using var a = Attention.OutProj.Forward(merged);
        using var x1 = x.Add(a);
        using var h2 = Ln2.Forward(x1);
        using var f1 = Fc1.Forward(h2);
        using var g = f1.Gelu("tanh");
        using var f2 = Fc2.Forward(g);
        return x1.Add(f2);
    }

    private static Tensor SplitHeads(Linear projection, Tensor h, long b, long heads, long dh)
    {
        using var p = projection.Forward(h);
        using var split = p.View(b, 1, heads, dh);
        using var t = split.Transpose(1, 2);
        return t.Contiguous();
    }
}
