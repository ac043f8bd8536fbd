using Engine.Runtime;
using Engine.Runtime.Kernels;

namespace Engine.Tensors.Kernels;

internal static partial class KernelDispatch
{
    /// <summary>
    /// Whether the flash-attention kernels (kernels/Attention) take this call: float32 on an accelerator,
    /// D and Dv ≤ 128, at most 65535 batch indices and 32-bit sizes. The op runs its composite form otherwise.
    /// </summary>
    public static bool AttentionFits(Tensor q, Tensor? mask, long[] batch, long nq, long nk, long d, long dv)
        => IsAccelerated(q) && q.DType == DType.Float32 && (mask is null || mask.DType is DType.Bool or DType.Float32)
           && AttentionPlan.Fits(ShapeUtil.NumEl(batch), nq, nk, d, dv);

    /// <summary>
    /// The operands of one attention call on a device as the kernels read them: the layout (sizes, options,
    /// strides) and the tensors to bind (an operand whose batch dims do not fold is replaced by a contiguous
    /// copy of its broadcast, which the caller disposes through <see cref="AttentionOperands.Dispose"/>).
    /// </summary>
    internal sealed class AttentionOperands : IDisposable
    {
        private readonly List<Tensor> _copies = [];

        /// <summary>Sizes, options and strides.</summary>
        public AttentionLayout Layout;

        /// <summary>Query, key, value and mask as bound (copies where needed).</summary>
        public Tensor Q = null!, K = null!, V = null!;

        /// <summary>The mask as bound, or null.</summary>
        public Tensor? Mask;

        /// <summary>Number of batch indices.</summary>
        public int Batch;

        /// <summary>Reads <paramref name="t"/> as <paramref name="full"/>, copying it when its batch dims do not fold.</summary>
        public Tensor Bind(Tensor t, long[] full, out int offset, out int outer, out int inner, out int row, out int col)
        {
            if (AttentionPlan.TryOperand(t, full, out offset, out outer, out inner, out row, out col)) return t;
            Tensor copy;
            using (Tensor.NoGrad())
            using (var expanded = t.Expand(full))
                copy = expanded.Contiguous();
            _copies.Add(copy);
            if (!AttentionPlan.TryOperand(copy, full, out offset, out outer, out inner, out row, out col))
                throw new ArgumentException($"scaled_dot_product_attention kernel: an operand of {ShapeUtil.Format(full)} exceeds the kernels' 32-bit indexing.");
            return copy;
        }

        /// <summary>Disposes the copies made by <see cref="Bind"/>.</summary>
        public void Dispose()
        {
            foreach (var c in _copies) c.Dispose();
            _copies.Clear();
        }
    }

    /// <summary>Folds the operands of one call into an <see cref="AttentionOperands"/>.</summary>
    internal static AttentionOperands AttentionBind(Tensor q, Tensor k, Tensor v, Tensor? mask, bool causal, double scale, long[] batch,
        long nq, long nk, long d, long dv)
    {
        var ops = new AttentionOperands { Batch = (int)ShapeUtil.NumEl(batch) };
        var p = new AttentionLayout
        {
            Nq = (int)nq, Nk = (int)nk, D = (int)d, Dv = (int)dv,
            Heads = batch.Length > 0 ? (int)Math.Max(batch[^1], 1) : 1,
            Scale = (float)scale, Causal = causal ? 1 : 0,
            MaskKind = mask is null ? 0 : mask.DType == DType.Bool ? 1 : 2,
        };
        ops.Q = ops.Bind(q, [.. batch, nq, d], out p.QOffset, out p.QOuter, out p.QInner, out p.QRow, out p.QCol);
        ops.K = ops.Bind(k, [.. batch, nk, d], out p.KOffset, out p.KOuter, out p.KInner, out p.KRow, out p.KCol);
        ops.V = ops.Bind(v, [.. batch, nk, dv], out p.VOffset, out p.VOuter, out p.VInner, out p.VRow, out p.VCol);
        if (mask is not null)
            ops.Mask = ops.Bind(mask, [.. batch, nq, nk], out p.MOffset, out p.MOuter, out p.MInner, out p.MRow, out p.MCol);
        ops.Layout = p;
        return ops;
    }

    private static ArrayView<byte> BoolMaskView(Tensor? mask) => mask is not null && mask.DType == DType.Bool ? mask.Storage.Buffer.View<byte>() : default;

    private static ArrayView<float> FloatMaskView(Tensor? mask) => mask is not null && mask.DType != DType.Bool ? Whole(mask) : default;

    /// <summary>
    /// Flash-attention forward on the device (kernels/Attention, <c>Forward</c>): O [batch..., Nq, Dv] and the
    /// per-row logsumexp L [batch..., Nq] (−∞ for a fully masked row, whose O is 0), both contiguous float32.
    /// No graph is recorded (Tensor.ScaledDotProductAttention records the node). The caller checked the shapes
    /// (CheckAttention) and <see cref="AttentionFits"/>.
    /// </summary>
    public static (Tensor Output, Tensor Lse) AttentionForward(Tensor q, Tensor k, Tensor v, Tensor? mask, bool causal, double scale,
        long[] batch, long nq, long nk, long d, long dv)
    {
        const string op = "scaled_dot_product_attention";
        var o = Output([.. batch, nq, dv], q, op);
        var lse = Output([.. batch, nq], q, op);
        using var ops = AttentionBind(q, k, v, mask, causal, scale, batch, nq, nk, d, dv);
        if (ops.Batch == 0 || nq == 0) return (o, lse);
        AttentionKernels.Launch.Forward(Accelerator(q), AttentionPlan.ForwardGrid(ops.Layout, ops.Batch), AttentionPlan.ForwardGroup,
            Whole(ops.Q), Whole(ops.K), Whole(ops.V), BoolMaskView(ops.Mask), FloatMaskView(ops.Mask), Whole(o), Whole(lse), ops.Layout);
        return (o, lse);
    }

    /// <summary>
    /// Flash-attention backward on the device (kernels/Attention: <c>RowDot</c> for Δ = rowsum(dO ⊙ O), then
    /// <c>BackwardKeyValue</c> and <c>BackwardQuery</c>, deterministic): dQ [batch..., Nq, D], dK [batch..., Nk, D],
    /// dV [batch..., Nk, Dv] over the full broadcast batch (the caller sums them to the inputs' shapes), from the
    /// forward's contiguous output <paramref name="o"/> and logsumexp <paramref name="lse"/> and the output
    /// gradient <paramref name="grad"/> (any strides; copied to contiguous when needed).
    /// </summary>
    public static (Tensor Dq, Tensor Dk, Tensor Dv) AttentionBackward(Tensor q, Tensor k, Tensor v, Tensor? mask, bool causal, double scale,
        long[] batch, long nq, long nk, long d, long dv, Tensor o, Tensor lse, Tensor grad)
    {
        const string op = "scaled_dot_product_attention backward";
        var dq = Output([.. batch, nq, d], q, op);
        var dk = Output([.. batch, nk, d], q, op);
        var dvv = Output([.. batch, nk, dv], q, op);
        using var ops = AttentionBind(q, k, v, mask, causal, scale, batch, nq, nk, d, dv);
        if (ops.Batch == 0) return (dq, dk, dvv);
        var acc = Accelerator(q);
        if (nq == 0 || nk == 0)
        {
            // Nothing is seen: dK and dV are 0 (dQ too; it has no elements when Nq = 0).
            using (Tensor.NoGrad()) { dq.Fill_(0); dk.Fill_(0); dvv.Fill_(0); }
            return (dq, dk, dvv);
        }
        using var g = grad.IsContiguous ? grad.Alias() : grad.Contiguous();
        using var delta = Output([.. batch, nq], q, op);
        long rows = ops.Batch * nq;
        AttentionKernels.Launch.RowDot(acc, AttentionPlan.RowGrid(rows), AttentionPlan.Group, Elements(o), Elements(g), Whole(delta), (int)rows, (int)dv);
        var (mb, mf) = (BoolMaskView(ops.Mask), FloatMaskView(ops.Mask));
        AttentionKernels.Launch.BackwardKeyValue(acc, AttentionPlan.KeyGrid(ops.Layout, ops.Batch), AttentionPlan.Group,
            Whole(ops.Q), Whole(ops.K), Whole(ops.V), mb, mf, Elements(g), Elements(lse), Whole(delta), Whole(dk), Whole(dvv), ops.Layout);
        AttentionKernels.Launch.BackwardQuery(acc, AttentionPlan.QueryGrid(ops.Layout, ops.Batch), AttentionPlan.Group,
            Whole(ops.Q), Whole(ops.K), Whole(ops.V), mb, mf, Elements(g), Elements(lse), Whole(delta), Whole(dq), ops.Layout);
        return (dq, dk, dvv);
    }

    /// <summary>
    /// The attention probabilities on the device (kernels/Attention, <c>Probabilities</c>): P [batch..., Nq, Nk]
    /// = exp(scale·Q·Kᵀ + M − L) from the forward's logsumexp <paramref name="lse"/> (0 where a key is hidden and
    /// on fully masked rows). No graph is recorded.
    /// </summary>
    public static Tensor AttentionProbabilities(Tensor q, Tensor k, Tensor v, Tensor? mask, bool causal, double scale,
        long[] batch, long nq, long nk, long d, long dv, Tensor lse)
    {
        const string op = "scaled_dot_product_attention probabilities";
        var prob = Output([.. batch, nq, nk], q, op);
        using var ops = AttentionBind(q, k, v, mask, causal, scale, batch, nq, nk, d, dv);
        if (ops.Batch == 0 || nq == 0 || nk == 0) return prob;
        AttentionKernels.Launch.Probabilities(Accelerator(q), AttentionPlan.QueryGrid(ops.Layout, ops.Batch), AttentionPlan.Group,
            Whole(ops.Q), Whole(ops.K), BoolMaskView(ops.Mask), FloatMaskView(ops.Mask), Elements(lse), Whole(prob), ops.Layout);
        return prob;
    }
}
