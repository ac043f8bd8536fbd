using System.Numerics;
using System.Numerics.Tensors;
using System.Runtime.Intrinsics;

namespace Engine.Tensors.Cpu;

/// <summary>
/// Backward of the fused attention (FlashAttention-2's algorithm on the CPU).
/// <para>
/// Math, with P = softmax(S), S = scale·Q·Kᵀ (+ mask), dO the output gradient and Δ_i = Σ_e dO[i, e]·O[i, e]
/// (= Σ_j P[i, j]·dP[i, j]): dV = Pᵀ·dO; dP = dO·Vᵀ; dS = P ⊙ (dP − Δ); dQ = scale·dS·K; dK = scale·dSᵀ·Q.
/// Nothing of size [Nq, Nk] is saved: each P tile is recomputed from Q, K and the saved per-row logsumexp
/// L as exp(S − L): one extra Q·Kᵀ, so the backward is five tile products, 2·Nq·Nk·(3D + 2Dv) flops.
/// </para>
/// <para>
/// Work items are (batch index, chunk of key tiles). An item packs scale·Q [Nq, D], dO [Nq, Dv] and Δ
/// for its batch index, and Kᵀ, K and Vᵀ for its keys; for each key tile it walks every query tile
/// (under causal, only those with a row that sees the tile), accumulating that key tile's dK and dV in
/// registers-and-L1 tiles, and its share of dQ in the item's own dQ buffer. dK and dV rows belong to one
/// item, so there are no races; dQ partials of the chunks of one batch index are summed in chunk order
/// at the end. The number of chunks depends only on the shape (enough items for 8 workers), so the
/// summation order, and with it every result, is the same for any thread count.
/// </para>
/// <para>
/// Numerics: element-type accumulation as in the forward. A row with logsumexp −∞ (fully masked) gets
/// P = 0, hence zero gradients, and never exp(−∞ − (−∞)) = NaN.
/// </para>
/// </summary>
internal static unsafe partial class Attention
{
    /// <summary>Work items the backward aims for (a constant: the split decides dQ's summation order).</summary>
    private const long BackwardSplits = 8;

    /// <summary>
    /// dQ [batch..., Nq, D], dK [batch..., Nk, D] and dV [batch..., Nk, Dv] (contiguous, full batch: the caller
    /// sums broadcast batch dims) from the forward's output <paramref name="o"/>, its gradient
    /// <paramref name="dO"/> (both read as [batch..., Nq, Dv]) and logsumexp (contiguous [batch..., Nq]).
    /// Every element of the three outputs is written.
    /// </summary>
    public static void Backward<T>(Problem p, Operand o, Operand dO, T* lse, T* dq, T* dk, T* dv)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        switch (Width)
        {
            case 512: Backward<T, Vector512<T>, Simd512<T>>(p, o, dO, lse, dq, dk, dv); break;
            case 256: Backward<T, Vector256<T>, Simd256<T>>(p, o, dO, lse, dq, dk, dv); break;
            default: Backward<T, Vector128<T>, Simd128<T>>(p, o, dO, lse, dq, dk, dv); break;
        }
    }

    private static void Backward<T, TVec, TS>(Problem p, Operand o, Operand dO, T* lse, T* dq, T* dk, T* dv)
        where T : unmanaged, IFloatingPointIeee754<T> where TVec : unmanaged where TS : ISimd<T, TVec>
    {
        long batch = p.BatchCount;
        if (batch == 0) return;
        int w = TS.Count, bc = 4 * w;
        int d = (int)p.D, dp = RoundUp(d, w);
        long kTiles = (p.Nk + bc - 1) / bc;
        long parts = Math.Clamp((BackwardSplits + batch - 1) / batch, 1, Math.Max(kTiles, 1));
        long tilesPerPart = Math.Max(1, (kTiles + parts - 1) / parts);
        parts = Math.Max(1, (kTiles + tilesPerPart - 1) / tilesPerPart);

        using var scratch = new Scratch();
        long partial = p.Nq * dp;
        T* dqPartial = scratch.Get<T>(batch * parts * partial); // each item's share of dQ (unscaled)
        nint pq = (nint)dqPartial, pl = (nint)lse, pk = (nint)dk, pv = (nint)dv, pdq = (nint)dq;
        double work = (double)batch * Math.Max(p.Nq, 1) * Math.Max(p.Nk, 1) * (p.D + p.Dv + 1);
        bool parallel = work >= Gemm.ParallelThreshold;
        Parallelism.For(batch * parts, parallel, item =>
        {
            long b = item / parts, part = item % parts;
            long k0 = part * tilesPerPart * bc, k1 = Math.Min(p.Nk, k0 + tilesPerPart * bc);
            BackwardItem<T, TVec, TS>(p, o, dO, b, k0, k1, (T*)pl + b * p.Nq, (T*)pq + item * partial,
                (T*)pk + b * p.Nk * p.D, (T*)pv + b * p.Nk * p.Dv);
        });

        // dQ = scale · Σ over the chunks of a batch index, in chunk order.
        T scale = T.CreateTruncating(p.Scale);
        Parallelism.For(batch, parallel, b =>
        {
            T* src = (T*)pq + b * parts * partial;
            T* dst = (T*)pdq + b * p.Nq * d;
            for (long r = 0; r < p.Nq; r++)
            {
                var row = new Span<T>(dst + r * d, d);
                TensorPrimitives.Multiply(new ReadOnlySpan<T>(src + r * dp, d), scale, row);
                for (long part = 1; part < parts; part++)
                    TensorPrimitives.MultiplyAdd(new ReadOnlySpan<T>(src + part * partial + r * dp, d), scale, row, row);
            }
        });
    }

    /// <summary>
    /// Keys [k0, k1) of batch index <paramref name="b"/>: writes their rows of dK and dV and this chunk's
    /// (unscaled) dQ share into <paramref name="dqAcc"/> [Nq, Dp].
    /// </summary>
    private static void BackwardItem<T, TVec, TS>(Problem p, Operand o, Operand dO, long b, long k0, long k1, T* lse, T* dqAcc, T* dkOut, T* dvOut)
        where T : unmanaged, IFloatingPointIeee754<T> where TVec : unmanaged where TS : ISimd<T, TVec>
    {
        int w = TS.Count, bc = 4 * w;
        int nq = (int)p.Nq, d = (int)p.D, dv = (int)p.Dv, dp = RoundUp(d, w), dvP = RoundUp(dv, w);
        int nc = (int)(k1 - k0), ncP = RoundUp(nc, bc);
        T scale = T.CreateTruncating(p.Scale);
        new Span<T>(dqAcc, nq * dp).Clear();

        using var scratch = new Scratch();
        T* qs = scratch.Get<T>((long)nq * dp);       // scale·Q [Nq, Dp]
        T* gO = scratch.Get<T>((long)nq * dvP);      // dO [Nq, DvP]
        T* delta = scratch.Get<T>(nq);               // Δ_i = dO_i · O_i
        T* kt = scratch.Get<T>((long)d * ncP);       // Kᵀ [D, ncP] (for S)
        T* kp = scratch.Get<T>((long)ncP * dp);      // K [ncP, Dp] (for dQ)
        T* vt = scratch.Get<T>((long)dv * ncP);      // Vᵀ [Dv, ncP] (for dP)
        T* s = scratch.Get<T>((long)BlockRows * bc); // P tile
        T* ds = scratch.Get<T>((long)BlockRows * bc); // dP, then dS tile
        T* dkAcc = scratch.Get<T>((long)bc * dp);
        T* dvAcc = scratch.Get<T>((long)bc * dvP);

        T* qb = (T*)p.Q.Data + p.Q.Offset(b);
        T* ob = (T*)o.Data + o.Offset(b);
        T* gb = (T*)dO.Data + dO.Offset(b);
        PackRows(qb, p.Q.RowStride, p.Q.ColStride, nq, d, qs, dp, nq, scale);
        PackRows(gb, dO.RowStride, dO.ColStride, nq, dv, gO, dvP, nq, T.One);
        for (int i = 0; i < nq; i++)
        {
            T* orow = ob + i * o.RowStride;
            T sum = T.Zero;
            if (o.ColStride == 1) sum = TensorPrimitives.Dot(new ReadOnlySpan<T>(gO + (long)i * dvP, dv), new ReadOnlySpan<T>(orow, dv));
            else for (int e = 0; e < dv; e++) sum += gO[(long)i * dvP + e] * orow[e * o.ColStride];
            delta[i] = sum;
        }
        T* kb = (T*)p.K.Data + p.K.Offset(b) + k0 * p.K.RowStride;
        T* vb = (T*)p.V.Data + p.V.Offset(b) + k0 * p.V.RowStride;
        PackTransposed(kb, p.K.RowStride, p.K.ColStride, nc, d, kt, ncP);
        PackRows(kb, p.K.RowStride, p.K.ColStride, nc, d, kp, dp, ncP, T.One);
        PackTransposed(vb, p.V.RowStride, p.V.ColStride, nc, dv, vt, ncP);
        long maskOffset = p.Mask?.Offset(b) ?? 0;

        for (long j0 = k0; j0 < k1; j0 += bc)
        {
            int cols = (int)Math.Min(bc, k1 - j0), jl = (int)(j0 - k0);
            new Span<T>(dkAcc, bc * dp).Clear();
            new Span<T>(dvAcc, bc * dvP).Clear();
            // Under causal, rows before j0 see none of this tile's keys.
            long iStart = p.Causal ? j0 / BlockRows * BlockRows : 0;
            for (long i0 = iStart; i0 < nq; i0 += BlockRows)
            {
                int rows = (int)Math.Min(BlockRows, nq - i0);
                T* qi = qs + i0 * dp;
                T* gi = gO + i0 * dvP;
                // P = exp(S − L), recomputed.
                MatMulTile<T, TVec, TS>(rows, d, qi, dp, 1, kt + jl, ncP, bc, s, bc, accumulate: false);
                ApplyMask(p, maskOffset, s, rows, i0, j0, cols, bc);
                for (int r = 0; r < rows; r++)
                {
                    T lr = lse[i0 + r];
                    T* row = s + (long)r * bc;
                    // A fully masked row (L = −∞) gets P = 0 (exp(−∞)), never exp(−∞ − (−∞)) = NaN.
                    if (T.IsNegativeInfinity(lr)) new Span<T>(row, bc).Fill(T.NegativeInfinity);
                    else AddToRow(row, bc, -lr);
                }
                TensorPrimitives.Exp(new ReadOnlySpan<T>(s, rows * bc), new Span<T>(s, rows * bc));
                // dV_tile += Pᵀ·dO_i (A(c, r) = P[r, c]).
                MatMulTile<T, TVec, TS>(cols, rows, s, 1, bc, gi, dvP, dvP, dvAcc, dvP, accumulate: true);
                // dP = dO_i·Vᵀ_tile, then dS = P ⊙ (dP − Δ).
                MatMulTile<T, TVec, TS>(rows, dv, gi, dvP, 1, vt + jl, ncP, bc, ds, bc, accumulate: false);
                for (int r = 0; r < rows; r++)
                    SoftmaxGradRow(ds + (long)r * bc, s + (long)r * bc, bc, delta[i0 + r]);
                // dQ_i += dS·K_tile (scaled at the end); dK_tile += dSᵀ·(scale·Q_i).
                MatMulTile<T, TVec, TS>(rows, cols, ds, bc, 1, kp + (long)jl * dp, dp, dp, dqAcc + i0 * dp, dp, accumulate: true);
                MatMulTile<T, TVec, TS>(cols, rows, ds, 1, bc, qi, dp, dp, dkAcc, dp, accumulate: true);
            }
            for (int c = 0; c < cols; c++)
            {
                new ReadOnlySpan<T>(dkAcc + (long)c * dp, d).CopyTo(new Span<T>(dkOut + (j0 + c) * d, d));
                new ReadOnlySpan<T>(dvAcc + (long)c * dvP, dv).CopyTo(new Span<T>(dvOut + (j0 + c) * dv, dv));
            }
        }
    }
}
