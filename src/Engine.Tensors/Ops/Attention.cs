using Engine.Tensors.AutoDiff;
using Engine.Tensors.Kernels;

namespace Engine.Tensors;

/// <summary>Scaled dot-product attention: a fused (flash-attention style) op and its composite form.</summary>
public sealed partial class Tensor
{
    private const string SdpaOp = "scaled_dot_product_attention";

    /// <summary>
    /// torch.nn.functional.scaled_dot_product_attention (without dropout):
    /// O = softmax(scale·Q·Kᵀ + M)·V, with Q = <paramref name="query"/> [..., Nq, D],
    /// K = <paramref name="key"/> [..., Nk, D], V = <paramref name="value"/> [..., Nk, Dv] →
    /// O [..., Nq, Dv]. The leading (batch, heads) dims of the three broadcast together.
    /// <para>
    /// <paramref name="mask"/>, broadcastable to [..., Nq, Nk] (it may not enlarge the batch dims): a bool mask
    /// keeps the keys where it is true (false → −∞ before the softmax); a float mask (the inputs' dtype) is
    /// added to the scaled scores. <paramref name="causal"/> hides key j from query i when j &gt; i (the
    /// top-left-aligned lower triangle, as PyTorch's is_causal); unlike PyTorch it may be combined with a
    /// mask (both apply). <paramref name="scale"/> defaults to 1/√D (1 when D = 0) and must be finite.
    /// </para>
    /// <para>
    /// Fully masked rows (every key hidden, or Nk = 0) are defined to give output 0 and zero gradients, never
    /// NaN (PyTorch's math path gives NaN there). float32 and float64; one dtype for query, key and value.
    /// </para>
    /// <para>
    /// CPU: fused FlashAttention-2 forward and backward (<c>Cpu/Attention.cs</c>): tiled over the keys with an
    /// online softmax, the [Nq, Nk] probabilities are never stored; the graph saves Q, K, V, the output and one
    /// logsumexp per query row, and the backward recomputes the probabilities tile by tile. Memory is linear
    /// in Nq and Nk. Accumulation is in the element type.
    /// Gradient (P the probabilities, g the output gradient): dV = Pᵀ·g; dS = P ⊙ (g·Vᵀ − rowsum(g ⊙ O));
    /// dQ = scale·dS·K; dK = scale·dSᵀ·Q (each summed over the batch dims its input was broadcast along).
    /// With createGraph the backward is built from differentiable ops instead (the composite form below,
    /// which materializes P), so gradients of gradients work.
    /// </para>
    /// <para>
    /// Accelerator devices (float32, D and Dv ≤ 128): the flash-attention kernels of kernels/Attention, the same
    /// algorithm and special cases (forward: O and the logsumexp, no [Nq, Nk] matrix; backward: Δ, then dK/dV
    /// and dQ in two deterministic kernels, no atomics), with the same createGraph rule (the composite backward;
    /// for a masked call it runs on the host through recorded copies).
    /// </para>
    /// <para>
    /// The composite form (MatMul, Softmax, Where; P materialized, memory quadratic) is used instead of the fused
    /// kernels when a float mask requires a gradient (its gradient is dS), and on a device for what the kernels
    /// do not take (D or Dv past 128 or 0, float64, sizes past 32-bit indexing); there a masked call runs on the
    /// host (recorded copies there and back).
    /// </para>
    /// </summary>
    /// <exception cref="ArgumentException">Shapes, dtypes or devices that do not fit (the message names the op and the shapes).</exception>
    public static Tensor ScaledDotProductAttention(Tensor query, Tensor key, Tensor value, Tensor? mask = null, bool causal = false, double? scale = null)
    {
        var geometry = CheckAttention(SdpaOp, query, key, value, mask, scale);
        bool device = KernelDispatch.IsAccelerated(query);
        bool maskGrad = mask is not null && mask.RequiresGrad && GradMode.IsEnabled;
        if (device && !maskGrad && DeviceAttentionFits(query, mask, geometry))
            return DeviceFusedAttention(query, key, value, mask, causal, geometry);
        if (device && mask is not null) return AttentionOnHost(query, key, value, mask, causal, scale, probabilities: false)[0];
        if (device || maskGrad)
        {
            var probabilities = AttentionProbabilities(query, key, mask, causal, geometry.Scale, geometry.Nk);
            using (probabilities) return probabilities.MatMul(value);
        }
        return FusedAttention(query, key, value, mask, causal, geometry);
    }

    /// <summary>
    /// <see cref="ScaledDotProductAttention"/> that also returns the attention probabilities
    /// P = softmax(scale·Q·Kᵀ + M) [..., Nq, Nk] (for attention distillation, e.g. MiniLM). Both results are
    /// differentiable (a loss on P reaches Q and K, and the mask when it is a float mask that requires grad).
    /// P is materialized (memory quadratic in N). Fully masked rows give P = 0 and output 0. On the CPU this form
    /// is composite; on an accelerator (where the kernels take the call, see <see cref="ScaledDotProductAttention"/>)
    /// the output comes from the flash-attention forward and P from a kernel that writes exp(S − L) with the
    /// forward's logsumexp L; P's gradient is dS = P ⊙ (g_P − rowsum(g_P ⊙ P)), dQ = scale·dS·K, dK = scale·dSᵀ·Q
    /// (device ops). Arguments and errors as in <see cref="ScaledDotProductAttention"/>.
    /// </summary>
    public static (Tensor Output, Tensor Probabilities) ScaledDotProductAttentionWithProbabilities(
        Tensor query, Tensor key, Tensor value, Tensor? mask = null, bool causal = false, double? scale = null)
    {
        var geometry = CheckAttention(SdpaOp, query, key, value, mask, scale);
        bool maskGrad = mask is not null && mask.RequiresGrad && GradMode.IsEnabled;
        if (KernelDispatch.IsAccelerated(query) && !maskGrad && DeviceAttentionFits(query, mask, geometry))
            return DeviceFusedAttentionWithProbabilities(query, key, value, mask, causal, geometry);
        if (KernelDispatch.IsAccelerated(query) && mask is not null)
        {
            var results = AttentionOnHost(query, key, value, mask, causal, scale, probabilities: true);
            return (results[0], results[1]);
        }
        var probabilities = AttentionProbabilities(query, key, mask, causal, geometry.Scale, geometry.Nk);
        return (probabilities.MatMul(value), probabilities);
    }

    /// <summary>The sizes of one attention call: broadcast batch dims, Nq, Nk, D, Dv and the scale in use.</summary>
    private sealed record AttentionGeometry(long[] Batch, long Nq, long Nk, long D, long Dv, double Scale);

    private static string DescribeAttention(Tensor q, Tensor k, Tensor v, Tensor? mask)
        => $"query {q.DType.Name()} {ShapeUtil.Format(q.Shape)}, key {k.DType.Name()} {ShapeUtil.Format(k.Shape)}, value {v.DType.Name()} {ShapeUtil.Format(v.Shape)}"
           + (mask is null ? "" : $", mask {mask.DType.Name()} {ShapeUtil.Format(mask.Shape)}");

    private static AttentionGeometry CheckAttention(string op, Tensor q, Tensor k, Tensor v, Tensor? mask, double? scale)
    {
        ArgumentNullException.ThrowIfNull(q);
        ArgumentNullException.ThrowIfNull(k);
        ArgumentNullException.ThrowIfNull(v);
        if (q.Rank < 2 || k.Rank < 2 || v.Rank < 2)
            throw new ArgumentException($"{op}: query, key and value need at least 2 dims ([..., N, D]); got {DescribeAttention(q, k, v, mask)}.");
        if (q.DType is not (DType.Float32 or DType.Float64) || k.DType != q.DType || v.DType != q.DType)
            throw new ArgumentException($"{op}: query, key and value must be all float32 or all float64; got {DescribeAttention(q, k, v, mask)}.");
        if (q._shape[^1] != k._shape[^1])
            throw new ArgumentException($"{op}: query and key must have the same last dim D (query [..., Nq, D], key [..., Nk, D]); got {DescribeAttention(q, k, v, mask)}.");
        if (k._shape[^2] != v._shape[^2])
            throw new ArgumentException($"{op}: key and value must have the same number of keys Nk (key [..., Nk, D], value [..., Nk, Dv]); got {DescribeAttention(q, k, v, mask)}.");
        KernelDispatch.CheckSameDevice(op, q, k);
        KernelDispatch.CheckSameDevice(op, q, v);
        long nq = q._shape[^2], nk = k._shape[^2], d = q._shape[^1], dv = v._shape[^1];
        long[] batch;
        try { batch = ShapeUtil.Broadcast(op, ShapeUtil.Broadcast(op, q._shape[..^2], k._shape[..^2]), v._shape[..^2]); }
        catch (ArgumentException)
        {
            throw new ArgumentException($"{op}: the batch dims (all but the last two) of query, key and value do not broadcast together; got {DescribeAttention(q, k, v, mask)}.");
        }
        if (mask is not null)
        {
            if (mask.DType != DType.Bool && mask.DType != q.DType)
                throw new ArgumentException($"{op}: the mask must be bool (true = keep) or an additive mask of the inputs' dtype {q.DType.Name()}; got {DescribeAttention(q, k, v, mask)}.");
            KernelDispatch.CheckSameDevice(op, q, mask);
            long[] full = [.. batch, nq, nk];
            bool fits = mask.Rank <= full.Length;
            for (int i = 0; fits && i < mask.Rank; i++)
            {
                long size = mask._shape[i], target = full[full.Length - mask.Rank + i];
                fits = size == target || size == 1;
            }
            if (!fits)
                throw new ArgumentException($"{op}: the mask must broadcast to [batch..., Nq, Nk] = {ShapeUtil.Format(full)}; got {DescribeAttention(q, k, v, mask)}.");
        }
        if (scale is double sc && !double.IsFinite(sc))
            throw new ArgumentOutOfRangeException(nameof(scale), $"{op}: scale must be finite, got {sc}.");
        if (nq > int.MaxValue || nk > int.MaxValue || d > int.MaxValue || dv > int.MaxValue)
            throw new ArgumentException($"{op}: sizes past 2^31 are not supported; got {DescribeAttention(q, k, v, mask)}.");
        return new AttentionGeometry(batch, nq, nk, d, dv, scale ?? (d == 0 ? 1.0 : 1.0 / Math.Sqrt(d)));
    }

    /// <summary>The CPU kernel's view of the operands (each read through its own broadcast strides).</summary>
    private static Cpu.Attention.Problem AttentionProblem(Tensor q, Tensor k, Tensor v, Tensor? mask, bool causal, AttentionGeometry g)
    {
        long[] b = g.Batch;
        return new Cpu.Attention.Problem
        {
            Batch = b, Nq = g.Nq, Nk = g.Nk, D = g.D, Dv = g.Dv, Scale = g.Scale, Causal = causal,
            Q = new(q, [.. b, g.Nq, g.D]),
            K = new(k, [.. b, g.Nk, g.D]),
            V = new(v, [.. b, g.Nk, g.Dv]),
            Mask = mask is null ? null : new(mask, [.. b, g.Nq, g.Nk]),
        };
    }

    /// <summary>The fused CPU forward; records the fused backward (or the composite one under createGraph).</summary>
    private static unsafe Tensor FusedAttention(Tensor q, Tensor k, Tensor v, Tensor? mask, bool causal, AttentionGeometry g)
    {
        long[] batch = g.Batch;
        var y = Allocate([.. batch, g.Nq, g.Dv], q.DType, zero: false, SdpaOp);
        using var lse = Allocate([.. batch, g.Nq], q.DType, zero: false, SdpaOp);
        var problem = AttentionProblem(q, k, v, mask, causal, g);
        if (q.DType == DType.Float32) Cpu.Attention.Forward(problem, y.Ptr<float>(), lse.Ptr<float>());
        else Cpu.Attention.Forward(problem, y.Ptr<double>(), lse.Ptr<double>());

        bool[] needs = [q.RequiresGrad, k.RequiresGrad, v.RequiresGrad];
        var (sq, sk, sv) = (q._shape, k._shape, v._shape);
        Tensor[] saved = mask is null ? [q, k, v, y, lse] : [q, k, v, y, lse, mask];
        return Graph.Record(y, SdpaOp, [q, k, v], saved, (grad, s) =>
        {
            Tensor qq = s[0], kk = s[1], vv = s[2], o = s[3], l = s[4];
            Tensor? m = s.Length > 5 ? s[5] : null;
            if (GradMode.IsEnabled) // createGraph: a backward that can itself be differentiated
                return AttentionCompositeBackward(qq, kk, vv, m, grad, causal, g.Scale, g.Nk, needs);
            var dq = Allocate([.. batch, g.Nq, g.D], qq.DType, zero: false, SdpaOp);
            var dk = Allocate([.. batch, g.Nk, g.D], qq.DType, zero: false, SdpaOp);
            var dv = Allocate([.. batch, g.Nk, g.Dv], qq.DType, zero: false, SdpaOp);
            var pb = AttentionProblem(qq, kk, vv, m, causal, g);
            long[] outShape = [.. batch, g.Nq, g.Dv];
            var oOp = new Cpu.Attention.Operand(o, outShape);
            var gOp = new Cpu.Attention.Operand(grad, outShape);
            if (qq.DType == DType.Float32) Cpu.Attention.Backward(pb, oOp, gOp, l.Ptr<float>(), dq.Ptr<float>(), dk.Ptr<float>(), dv.Ptr<float>());
            else Cpu.Attention.Backward(pb, oOp, gOp, l.Ptr<double>(), dq.Ptr<double>(), dk.Ptr<double>(), dv.Ptr<double>());
            return [ReduceTo(dq, sq, needs[0]), ReduceTo(dk, sk, needs[1]), ReduceTo(dv, sv, needs[2])];
        });
    }

    /// <summary>A full-batch gradient summed to <paramref name="shape"/> (null, and disposed, when not needed).</summary>
    private static Tensor? ReduceTo(Tensor full, long[] shape, bool needed)
    {
        if (!needed) { full.Dispose(); return null; }
        var reduced = full.SumToShape(shape);
        if (!ReferenceEquals(reduced, full)) full.Dispose();
        return reduced;
    }

    /// <summary>
    /// P = softmax(scale·Q·Kᵀ + M) [..., Nq, Nk] from differentiable ops (MatMul, Mul, Add, Where, Softmax).
    /// Hidden keys get −∞; rows where every key is hidden are set to 0 (their scores to 0 before the softmax,
    /// so no NaN appears in the values or the gradients).
    /// </summary>
    private static Tensor AttentionProbabilities(Tensor q, Tensor k, Tensor? mask, bool causal, double scale, long nk)
    {
        Tensor scores;
        using (var kt = k.Transpose(-1, -2))
        using (var qk = q.MatMul(kt))
            scores = qk.Mul(scale);
        if (mask is not null && mask.DType != DType.Bool)
        {
            using var t = scores;
            scores = t.Add(mask);
        }
        if (mask is not null && mask.DType == DType.Bool)
        {
            using var t = scores;
            scores = Where(mask, t, double.NegativeInfinity);
        }
        if (causal)
        {
            // An additive 0 / −∞ bias (Add has device kernels, Where not yet).
            using var bias = CausalBias(q._shape[^2], nk, q.DType, q.Device);
            using var t = scores;
            scores = t.Add(bias);
        }
        Tensor? dead = null;
        if (mask is not null && nk > 0)
        {
            // A row whose max is −∞ has no visible key: score 0 (finite softmax), probability 0 after.
            using (NoGrad())
            using (var max = scores.Max(-1, keepDim: true))
                dead = max.Eq(double.NegativeInfinity);
            using var t = scores;
            scores = Where(dead, 0.0, t);
        }
        Tensor p;
        using (scores) p = scores.Softmax(-1);
        if (dead is null) return p;
        using (dead)
        using (p)
            return Where(dead, 0.0, p);
    }

    /// <summary>[nq, nk] of <paramref name="dtype"/>: 0 where key j is visible to query i (j ≤ i), −∞ elsewhere.</summary>
    private static Tensor CausalBias(long nq, long nk, DType dtype, Runtime.Device device)
    {
        using var _ = NoGrad();
        using var i = Arange(nq);
        using var j = Arange(nk);
        using var column = i.View(nq, 1);
        using var row = j.View(1, nk);
        using var keep = row.Le(column);
        using var hidden = Full([nq, nk], double.NegativeInfinity, dtype);
        var bias = Where(keep, 0.0, hidden);
        if (device.Type == Runtime.DeviceType.Cpu) return bias;
        using (bias) return bias.To(device);
    }

    /// <summary>
    /// A masked call on a device: the masks need ops (where, max over a dim) that have no device kernels yet,
    /// so the inputs go to the host (recorded copies: gradients flow back), run there, and the results return.
    /// </summary>
    private static Tensor[] AttentionOnHost(Tensor q, Tensor k, Tensor v, Tensor mask, bool causal, double? scale, bool probabilities)
    {
        var device = q.Device;
        using var qh = q.To(Runtime.Device.Cpu);
        using var kh = k.To(Runtime.Device.Cpu);
        using var vh = v.To(Runtime.Device.Cpu);
        using var mh = mask.To(Runtime.Device.Cpu);
        if (!probabilities)
        {
            using var y = ScaledDotProductAttention(qh, kh, vh, mh, causal, scale);
            return [y.To(device)];
        }
        var (o, p) = ScaledDotProductAttentionWithProbabilities(qh, kh, vh, mh, causal, scale);
        using (o)
        using (p)
            return [o.To(device), p.To(device)];
    }

    /// <summary>
    /// The attention gradients from differentiable ops (used under createGraph): P recomputed as in the
    /// composite forward; dV = Pᵀ·g; dS = P ⊙ (g·Vᵀ − rowsum(P ⊙ g·Vᵀ)); dQ = scale·dS·K; dK = scale·dSᵀ·Q.
    /// </summary>
    private static Tensor?[] AttentionCompositeBackward(Tensor q, Tensor k, Tensor v, Tensor? mask, Tensor g, bool causal, double scale, long nk, bool[] needs)
    {
        using var p = AttentionProbabilities(q, k, mask, causal, scale, nk);
        Tensor? dv = null;
        if (needs[2])
        {
            using var pt = p.Transpose(-1, -2);
            dv = ReduceTo(pt.MatMul(g), v._shape, true);
        }
        if (!needs[0] && !needs[1]) return [null, null, dv];
        using var vt = v.Transpose(-1, -2);
        using var dp = g.MatMul(vt);
        using var pdp = p.Mul(dp);
        using var rowSum = pdp.Sum(-1, keepDim: true);
        using var centered = dp.Sub(rowSum);
        using var dsUnscaled = p.Mul(centered);
        using var ds = dsUnscaled.Mul(scale);
        Tensor? dq = needs[0] ? ReduceTo(ds.MatMul(k), q._shape, true) : null;
        Tensor? dk = null;
        if (needs[1])
        {
            using var dst = ds.Transpose(-1, -2);
            dk = ReduceTo(dst.MatMul(q), k._shape, true);
        }
        return [dq, dk, dv];
    }
}
