using Engine.Tensors;
using Engine.Tensors.AutoDiff;
using Engine.Tensors.Cpu;
using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;

namespace Engine.Distillation;

/// <summary>
/// Divergences of two linear heads, for large vocabularies: the student's logits are h_s·W_sᵀ and the
/// teacher's h_t·W_tᵀ, and the loss is a divergence of <see cref="Divergences"/> between them, computed
/// <b>without ever holding the [N, V] logits</b>.
/// <para>
/// Chunks of <c>chunkRows</c> rows at a time (the fused form): z_s = h_s[chunk]·W_sᵀ and z_t = h_t[chunk]·W_tᵀ
/// (two [chunk, V] buffers, reused), the fused row routine of the divergence turns z_s into ∂L/∂z_s in place
/// (loss and gradient in one pass over the rows), then ∂L/∂h_s[chunk] = ∂L/∂z_s·W_s and
/// ∂L/∂W_s += (∂L/∂z_s)ᵀ·h_s[chunk] (accumulated through a [2048, H] block, so no [V, H] temporary). Peak extra
/// memory: 2·chunk·V + 2048·H floats, plus the gradients of h_s and W_s (made in the forward; the backward only
/// rescales them by the incoming gradient). Liger's fused linear JSD keeps a (BT, V) fp32 loss buffer; this does not.
/// </para>
/// <para>
/// Math, options and special cases are those of the matching <see cref="Divergences"/> method applied to the
/// logits (argument order: student first). Restrictions: float32 on the CPU; a scalar reduction (the weight
/// gradient mixes rows, so <see cref="Reduction.None"/> has no fused form); gradients flow to the student's hidden
/// states and weight only (the teacher's must not require grad). <see cref="LossImplementation.Composite"/> computes
/// the unfused reference (full logits through MatMul and the composite divergence); a backward with createGraph
/// recomputes through it too.
/// </para>
/// </summary>
public static class FusedLinearDivergences
{
    /// <summary>JSD_β (<see cref="Divergences.Jsd"/>) between softmax(h_t·W_tᵀ / T) and softmax(h_s·W_sᵀ / T).</summary>
    /// <param name="studentHidden">h_s [N, H], float32.</param>
    /// <param name="studentWeight">W_s [V, H] (the lm-head weight, as nn.Linear stores it).</param>
    /// <param name="teacherHidden">h_t [N, H_t].</param>
    /// <param name="teacherWeight">W_t [V, H_t].</param>
    /// <param name="beta">β in [0, 1] (0: forward KL, 1: reverse KL).</param>
    /// <param name="options">Options of <see cref="Divergences"/> (a scalar reduction).</param>
    /// <param name="chunkRows">Rows per chunk (default 128: two 16 MB logit buffers at V = 32000).</param>
    /// <returns>The scalar loss.</returns>
    public static Tensor Jsd(Tensor studentHidden, Tensor studentWeight, Tensor teacherHidden, Tensor teacherWeight,
        double beta = 0.5, DivergenceOptions? options = null, int chunkRows = 128)
    {
        if (!(beta >= 0 && beta <= 1))
            throw new ArgumentOutOfRangeException(nameof(beta), beta, $"fused_linear_jsd: beta must be in [0, 1]; got {beta}.");
        var kind = beta == 0 ? DivergenceKind.ForwardKl : beta == 1 ? DivergenceKind.ReverseKl : DivergenceKind.Jsd;
        return Run("fused_linear_jsd", kind, beta, studentHidden, studentWeight, teacherHidden, teacherWeight, options, chunkRows,
            (s, t, o) => Divergences.Jsd(s, t, beta, o));
    }

    /// <summary>Forward KL (<see cref="Divergences.ForwardKl"/>) between softmax(h_t·W_tᵀ / T) and softmax(h_s·W_sᵀ / T).</summary>
    /// <param name="studentHidden">h_s [N, H], float32.</param>
    /// <param name="studentWeight">W_s [V, H].</param>
    /// <param name="teacherHidden">h_t [N, H_t].</param>
    /// <param name="teacherWeight">W_t [V, H_t].</param>
    /// <param name="options">Options of <see cref="Divergences"/> (a scalar reduction).</param>
    /// <param name="chunkRows">Rows per chunk.</param>
    /// <returns>The scalar loss.</returns>
    public static Tensor ForwardKl(Tensor studentHidden, Tensor studentWeight, Tensor teacherHidden, Tensor teacherWeight,
        DivergenceOptions? options = null, int chunkRows = 128)
        => Run("fused_linear_forward_kl", DivergenceKind.ForwardKl, 0, studentHidden, studentWeight, teacherHidden, teacherWeight, options, chunkRows,
            Divergences.ForwardKl);

    /// <summary>Reverse KL (<see cref="Divergences.ReverseKl"/>) between softmax(h_t·W_tᵀ / T) and softmax(h_s·W_sᵀ / T).</summary>
    /// <param name="studentHidden">h_s [N, H], float32.</param>
    /// <param name="studentWeight">W_s [V, H].</param>
    /// <param name="teacherHidden">h_t [N, H_t].</param>
    /// <param name="teacherWeight">W_t [V, H_t].</param>
    /// <param name="options">Options of <see cref="Divergences"/> (a scalar reduction).</param>
    /// <param name="chunkRows">Rows per chunk.</param>
    /// <returns>The scalar loss.</returns>
    public static Tensor ReverseKl(Tensor studentHidden, Tensor studentWeight, Tensor teacherHidden, Tensor teacherWeight,
        DivergenceOptions? options = null, int chunkRows = 128)
        => Run("fused_linear_reverse_kl", DivergenceKind.ReverseKl, 0, studentHidden, studentWeight, teacherHidden, teacherWeight, options, chunkRows,
            Divergences.ReverseKl);

    /// <summary>Rows of the [V-block, H] buffer through which ∂L/∂W_s accumulates.</summary>
    private const int WeightBlockRows = 2048;

    private static Tensor Run(string op, DivergenceKind kind, double param, Tensor hs, Tensor ws, Tensor ht, Tensor wt,
        DivergenceOptions? options, int chunkRows, Func<Tensor, Tensor, DivergenceOptions, Tensor> unfused)
    {
        ArgumentNullException.ThrowIfNull(hs);
        ArgumentNullException.ThrowIfNull(ws);
        ArgumentNullException.ThrowIfNull(ht);
        ArgumentNullException.ThrowIfNull(wt);
        options ??= DivergenceOptions.Default;
        if (hs.Rank != 2 || ws.Rank != 2 || ht.Rank != 2 || wt.Rank != 2 || ws.Size(1) != hs.Size(1) || wt.Size(1) != ht.Size(1)
            || ht.Size(0) != hs.Size(0) || wt.Size(0) != ws.Size(0))
            throw new ArgumentException($"{op}: expected student hidden [N, H], student weight [V, H], teacher hidden [N, Ht], teacher weight [V, Ht]; got "
                + $"{DivergenceProblem.Fmt(hs.Shape)}, {DivergenceProblem.Fmt(ws.Shape)}, {DivergenceProblem.Fmt(ht.Shape)}, {DivergenceProblem.Fmt(wt.Shape)}.");
        foreach (var x in new[] { hs, ws, ht, wt })
            if (x.DType != DType.Float32 && options.Implementation != LossImplementation.Composite)
                throw new ArgumentException($"{op}: the fused linear form takes float32 tensors; got {x.DType.Name()} (LossImplementation.Composite runs any float dtype).");
        if (options.Reduction == Reduction.None && options.Implementation != LossImplementation.Composite)
            throw new NotSupportedException($"{op}: Reduction.None has no fused linear form (the weight gradient mixes rows); use a scalar reduction, or LossImplementation.Composite.");
        if (options.TeacherInput != TeacherInput.Logits)
            throw new ArgumentException($"{op}: the teacher of a fused linear divergence is its logits h_t·W_tᵀ; TeacherInput must be Logits, not {options.TeacherInput}.");
        if (chunkRows < 1)
            throw new ArgumentOutOfRangeException(nameof(chunkRows), chunkRows, $"{op}: chunkRows must be positive; got {chunkRows}.");
        long n = hs.Size(0), h = hs.Size(1), v = ws.Size(0), htDim = ht.Size(1);
        var pb = DivergenceProblem.Create(op, kind, param, [n, v], options, null);

        if (options.Implementation == LossImplementation.Composite) return Unfused(hs, ws, ht, wt, options, unfused);
        if (GradMode.IsEnabled && (ht.RequiresGrad || wt.RequiresGrad))
            throw new NotSupportedException($"{op}: the fused linear form computes gradients for the student's hidden states and weight only, and a teacher tensor requires grad; detach the teacher or use LossImplementation.Composite.");
        foreach (var x in new[] { hs, ws, ht, wt }) x.RequireCpu(op);

        bool needH = GradMode.IsEnabled && hs.RequiresGrad, needW = GradMode.IsEnabled && ws.RequiresGrad, needGrad = needH || needW;
        using var hsd = hs.Detach();
        using var wsd = ws.Detach();
        using var htd = ht.Detach();
        using var wtd = wt.Detach();
        using var hsc = hsd.Contiguous();
        using var wsc = wsd.Contiguous();
        using var htc = htd.Contiguous();
        using var wtc = wtd.Contiguous();
        var gradH = needH ? Tensor.Allocate([n, h], DType.Float32, zero: false, op) : null;
        var gradW = needW ? Tensor.Zeros([v, h], DType.Float32) : null;
        int chunk = (int)Math.Min(chunkRows, Math.Max(n, 1));
        var rowLoss = new double[n];
        using (var zs = Tensor.Allocate([chunk, v], DType.Float32, zero: false, op))
        using (var zt = Tensor.Allocate([chunk, v], DType.Float32, zero: false, op))
        using (var block = needW ? Tensor.Allocate([Math.Min(WeightBlockRows, v), h], DType.Float32, zero: false, op) : null)
            unsafe
            {
                float* pzs = zs.Ptr<float>(), pzt = zt.Ptr<float>(), phs = hsc.Ptr<float>(), pws = wsc.Ptr<float>(), pht = htc.Ptr<float>(), pwt = wtc.Ptr<float>();
                for (long r0 = 0; r0 < n; r0 += chunk)
                {
                    long c = Math.Min(chunk, n - r0);
                    // z = h[chunk]·Wᵀ: W read through its transpose's strides (no copy).
                    Gemm.Multiply(c, v, h, phs + r0 * h, h, 1, pws, 1, h, pzs, v, parallel: true);
                    Gemm.Multiply(c, v, htDim, pht + r0 * htDim, htDim, 1, pwt, 1, htDim, pzt, v, parallel: true);
                    FusedDivergence.RunRows(pb, r0, c, pzs, pzt, needGrad ? pzs : null, rowLoss);
                    if (!needGrad) continue;
                    // ∂L/∂h[chunk] = ∂L/∂z·W (written straight into its rows).
                    if (needH) Gemm.Multiply(c, h, v, pzs, v, 1, pws, h, 1, gradH!.Ptr<float>() + r0 * h, h, parallel: true);
                    if (!needW) continue;
                    // ∂L/∂W += (∂L/∂z)ᵀ·h[chunk], one block of W's rows at a time.
                    float* pgw = gradW!.Ptr<float>(), pb0 = block!.Ptr<float>();
                    for (long v0 = 0; v0 < v; v0 += WeightBlockRows)
                    {
                        long vb = Math.Min(WeightBlockRows, v - v0);
                        Gemm.Multiply(vb, h, c, pzs + v0, 1, v, phs + r0 * h, h, 1, pb0, h, parallel: true);
                        var dst = new Span<float>(pgw + v0 * h, checked((int)(vb * h)));
                        TensorPrimitives.Add(dst, new ReadOnlySpan<float>(pb0, dst.Length), dst);
                    }
                }
            }

        double total = 0;
        foreach (var x in rowLoss) total += x;
        var result = Tensor.Scalar(total, DType.Float32);
        if (!needGrad) return result;
        var none = Tensor.Scalar(0, DType.Float32); // a placeholder for a gradient not computed
        Graph.Record(result, op, [hs, ws], [gradH ?? none, gradW ?? none, hs, ws, ht, wt], (gOut, saved) =>
        {
            if (GradMode.IsEnabled)
            {
                // createGraph: recompute the unfused loss and differentiate it, recorded.
                using var loss = Unfused(saved[2], saved[3], saved[4], saved[5], options, unfused);
                var wanted = new[] { saved[2], saved[3] }.Where(x => x.RequiresGrad).ToArray();
                var grads = Autograd.Grad([loss], wanted, [gOut], retainGraph: true, createGraph: true, allowUnused: true);
                return [saved[2].RequiresGrad ? grads[0] : null, saved[3].RequiresGrad ? grads[^1] : null];
            }
            bool one = gOut.ToDouble() == 1;
            Tensor? Scaled(Tensor? g) => g is null ? null : one ? g.Alias() : g.Mul(gOut);
            return [Scaled(needH ? saved[0] : null), Scaled(needW ? saved[1] : null)];
        });
        none.Dispose();
        gradH?.Dispose();
        gradW?.Dispose();
        return result;
    }

    /// <summary>The unfused reference: full logits through MatMul, then the composite divergence.</summary>
    private static Tensor Unfused(Tensor hs, Tensor ws, Tensor ht, Tensor wt, DivergenceOptions options,
        Func<Tensor, Tensor, DivergenceOptions, Tensor> divergence)
    {
        using var wsT = ws.T;
        using var wtT = wt.T;
        using var zs = hs.MatMul(wsT);
        using var zt = ht.MatMul(wtT);
        return divergence(zs, zt, options with { Implementation = LossImplementation.Composite });
    }
}
