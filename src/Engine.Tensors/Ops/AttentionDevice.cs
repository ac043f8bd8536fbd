using Engine.Tensors.AutoDiff;
using Engine.Tensors.Kernels;

namespace Engine.Tensors;

/// <summary>Scaled dot-product attention on an accelerator: the flash-attention kernels of kernels/Attention.</summary>
public sealed partial class Tensor
{
    /// <summary>float32 on a device, D and Dv ≤ 128 and 32-bit sizes: the kernels run (see <see cref="KernelDispatch.AttentionFits"/>).</summary>
    private static bool DeviceAttentionFits(Tensor q, Tensor? mask, AttentionGeometry g)
        => KernelDispatch.AttentionFits(q, mask, g.Batch, g.Nq, g.Nk, g.D, g.Dv);

    /// <summary>
    /// The device forward (kernel <c>Forward</c>: O and the row logsumexp, no [Nq, Nk] matrix) with its node: the
    /// backward runs the device kernels (Δ, dK/dV, dQ), or, under createGraph, the composite backward (on the
    /// device without a mask; on the host, through recorded copies, with one).
    /// </summary>
    private static Tensor DeviceFusedAttention(Tensor q, Tensor k, Tensor v, Tensor? mask, bool causal, AttentionGeometry g)
    {
        var (y, lse) = KernelDispatch.AttentionForward(q, k, v, mask, causal, g.Scale, g.Batch, g.Nq, g.Nk, g.D, g.Dv);
        using (lse) return RecordDeviceAttention(y, lse, q, k, v, mask, causal, g);
    }

    /// <summary>
    /// The device forward plus P from the kernel <c>Probabilities</c> (exp(S − L) from the forward's logsumexp).
    /// P gets its own node (inputs Q and K; written with differentiable device ops):
    /// dS = P ⊙ (g_P − rowsum(g_P ⊙ P)); dQ = scale·dS·K; dK = scale·dSᵀ·Q.
    /// </summary>
    private static (Tensor Output, Tensor Probabilities) DeviceFusedAttentionWithProbabilities(Tensor q, Tensor k, Tensor v, Tensor? mask, bool causal, AttentionGeometry g)
    {
        var (y, lse) = KernelDispatch.AttentionForward(q, k, v, mask, causal, g.Scale, g.Batch, g.Nq, g.Nk, g.D, g.Dv);
        using (lse)
        {
            var p = KernelDispatch.AttentionProbabilities(q, k, v, mask, causal, g.Scale, g.Batch, g.Nq, g.Nk, g.D, g.Dv, lse);
            var o = RecordDeviceAttention(y, lse, q, k, v, mask, causal, g);
            bool[] needs = [q.RequiresGrad, k.RequiresGrad];
            var (sq, sk) = (q._shape, k._shape);
            double scale = g.Scale;
            var pr = Graph.Record(p, SdpaOp + "_probabilities", [q, k], [p, q, k], (gp, s) =>
            {
                Tensor pp = s[0], qq = s[1], kk = s[2];
                Tensor ds;
                using (var pg = pp.Mul(gp))
                using (var rowSum = pg.Sum(-1, keepDim: true))
                using (var centered = gp.Sub(rowSum))
                using (var dsUnscaled = pp.Mul(centered))
                    ds = dsUnscaled.Mul(scale);
                using (ds)
                {
                    Tensor? dq = needs[0] ? ReduceTo(ds.MatMul(kk), sq, true) : null;
                    Tensor? dk = null;
                    if (needs[1])
                    {
                        using var dst = ds.Transpose(-1, -2);
                        dk = ReduceTo(dst.MatMul(qq), sk, true);
                    }
                    return [dq, dk];
                }
            });
            return (o, pr);
        }
    }

    /// <summary>Records the device attention node of output <paramref name="y"/> (see <see cref="DeviceFusedAttention"/>).</summary>
    private static Tensor RecordDeviceAttention(Tensor y, Tensor lse, Tensor q, Tensor k, Tensor v, Tensor? mask, bool causal, AttentionGeometry g)
    {
        bool[] needs = [q.RequiresGrad, k.RequiresGrad, v.RequiresGrad];
        var (sq, sk, sv) = (q._shape, k._shape, v._shape);
        Tensor[] saved = mask is null ? [q, k, v, y, lse] : [q, k, v, y, lse, mask];
        return Graph.Record(y, SdpaOp, [q, k, v], saved, (grad, s) =>
        {
            Tensor qq = s[0], kk = s[1], vv = s[2], o = s[3], l = s[4];
            Tensor? m = s.Length > 5 ? s[5] : null;
            if (GradMode.IsEnabled) // createGraph: a backward that can itself be differentiated
                return m is null
                    ? AttentionCompositeBackward(qq, kk, vv, null, grad, causal, g.Scale, g.Nk, needs)
                    : AttentionCompositeBackwardOnHost(qq, kk, vv, m, grad, causal, g.Scale, g.Nk, needs);
            var (dq, dk, dv) = KernelDispatch.AttentionBackward(qq, kk, vv, m, causal, g.Scale, g.Batch, g.Nq, g.Nk, g.D, g.Dv, o, l, grad);
            return [ReduceTo(dq, sq, needs[0]), ReduceTo(dk, sk, needs[1]), ReduceTo(dv, sv, needs[2])];
        });
    }

    /// <summary>
    /// The composite backward of a masked device call under createGraph, run on the host (the mask handling
    /// uses ops the composite needs on the host) through recorded copies, so gradients of gradients reach the
    /// device inputs.
    /// </summary>
    private static Tensor?[] AttentionCompositeBackwardOnHost(Tensor q, Tensor k, Tensor v, Tensor mask, Tensor g, bool causal, double scale, long nk, bool[] needs)
    {
        var device = q.Device;
        using var qh = q.To(Runtime.Device.Cpu);
        using var kh = k.To(Runtime.Device.Cpu);
        using var vh = v.To(Runtime.Device.Cpu);
        using var mh = mask.To(Runtime.Device.Cpu);
        using var gh = g.To(Runtime.Device.Cpu);
        var host = AttentionCompositeBackward(qh, kh, vh, mh, gh, causal, scale, nk, needs);
        var result = new Tensor?[host.Length];
        for (int i = 0; i < host.Length; i++)
        {
            if (host[i] is not Tensor h) continue;
            using (h) result[i] = h.To(device);
        }
        return result;
    }
}
