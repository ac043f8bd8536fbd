// Flash attention (FlashAttention-2), float32: forward, backward (Δ, dK/dV, dQ) and the probabilities.
//
// Math      per batch index b (batch·heads): S = scale·Q·Kᵀ (+ additive mask; −∞ where a bool mask is
//           false, where causal hides key j > query i, and past the last key); P = softmax(S) along the
//           keys; O = P·V. Q [Nq, D], K [Nk, D], V [Nk, Dv], O [Nq, Dv], L [Nq] = logsumexp of S's row.
//           Backward (dO the output gradient): Δ_i = Σ_e dO[i, e]·O[i, e] (= Σ_j P_ij·dP_ij);
//           P_ij = exp(S_ij − L_i) recomputed from Q, K and L; dP = dO·Vᵀ; dS = P ⊙ (dP − Δ);
//           dV = Pᵀ·dO; dK = scale·dSᵀ·Q; dQ = scale·dS·K. Fully masked rows (every key hidden, or
//           Nk = 0): O = 0, L = −∞, P = 0 and zero gradients (never exp(−∞ − (−∞)) = NaN). The CPU twin
//           is src/Engine.Tensors/Cpu/Attention.cs (+ AttentionBackward.cs); the semantics are the same.
// Layout    Q, K, V and the mask are read through strides: element (b, i, c) of Q is
//           q[QOffset + (b / Heads)·QOuter + (b % Heads)·QInner + i·QRow + c·QCol] (the batch dims are
//           folded by the host into outer × Heads; broadcast dims have stride 0; the mask is [b, Nq, Nk]
//           the same way, bool as bytes (≠ 0 keeps) or additive float). O, L, Δ, dO, dQ, dK, dV and P are
//           contiguous [B, Nq, Dv], [B, Nq], [B, Nq], [B, Nq, Dv], [B, Nq, D], [B, Nk, D], [B, Nk, Dv],
//           [B, Nq, Nk]. D, Dv ≤ 128 (MaxHead; larger heads take the composite path on the host side).
// Forward   a group of 8 warps owns ForwardRows = 32 query rows (4 per warp) and stages scale·Q [32, D]
//           in shared memory once. It walks the key tiles of KeyTile = 32 keys (under causal only those a
//           row of the block sees), staging K [32, D] (rows padded to 129 floats: lane j reads key j's
//           row without bank conflicts), then, once S is done, V [32, Dv] into the same buffer (one more
//           barrier per tile, half the shared memory: 8 warps fit where 4 did with separate buffers, which
//           doubles the rows that share each K/V load). Lane j computes S[i, j] for its warp's 4 rows;
//           the online softmax keeps per row a running max m (a warp max per tile) and a per-lane partial
//           sum l (summed over the warp once at the end): m' = max(m, max_j S), P = exp(S − m'),
//           l = l·exp(m − m') + P, and the output accumulators O[i, lane + 32c] (4 rows × 4 column blocks
//           = 16 registers per thread) are rescaled by exp(m − m') and get P·V through a P tile in shared
//           memory. At the end O /= l and L = m + log l. The [Nq, Nk] matrix never exists.
// Backward  FlashAttention-2's split, deterministic (no atomics): RowDot writes Δ; BackwardKeyValue gives
//           each group KeyBlock = 16 keys (4 per warp, their K and V staged once) and walks the query tiles
//           of 16 rows (causal: from the block's first key on), recomputing P and dS per tile (lane →
//           one query row × 2 of the warp's keys) and accumulating dK and dV (4 keys × 4 column blocks
//           each: 32 registers per thread) in registers; BackwardQuery gives each group 16 query rows and
//           walks the key tiles of 16 keys, recomputing P and dS again (lane → one key × 2 of the warp's
//           rows) and accumulating dQ (4 rows × 4 column blocks) in registers. Recomputing S and dP in both
//           kernels costs 2 extra tile products (7 instead of FlashAttention-2's 5) and buys a fixed
//           summation order: every run, and every backend, adds the same terms in the same order.
// Numerics  float accumulation; Q is scaled while it is staged (one rounding, as the CPU op). The running
//           max makes every exp argument ≤ 0. Sums run over the keys (or rows) in tile order; the forward's
//           row sum is 32 lane partials added by a butterfly. Tolerances against the CPU op: ~1e-5 relative.
// Flops     forward 2·Nq·Nk·(D + Dv) (about half under causal) + one exp per score; backward
//           2·Nq·Nk·(2D + 2Dv) in BackwardKeyValue + 2·Nq·Nk·(2D + Dv) in BackwardQuery.
// Bytes     forward: Q, O once; K and V once per group of 32 rows: 4·Nk·(D + Dv)·⌈Nq/32⌉ from L2 per b
//           (the reuse factor is 32 rows; the inner loops read 1.25 shared floats per fma for S and 0.5 for
//           P·V: shared-memory bandwidth, not the fma units, bounds this first version). Backward: Q, dO,
//           L, Δ once per 16 keys, K, V once per 16 rows.
// Launch    AttentionPlan: Forward group (32, 8), grid (⌈Nq/32⌉, B); the others group (32, 4):
//           BackwardQuery / Probabilities grid (⌈Nq/16⌉, B), BackwardKeyValue grid (⌈Nk/16⌉, B), RowDot
//           grid ⌈B·Nq/4⌉ (B ≤ 65535 along y). Static shared memory: Forward (32·128 + 32·129 + 32·32)·4
//           = 36,992 B; BackwardKeyValue (4·16·129 + 2·16·16 + 2·16)·4 = 35,200 B; BackwardQuery
//           (4·16·129 + 16·16 + 2·16)·4 = 34,176 B; Probabilities (16·128 + 32·129)·4 = 24,704 B (all under
//           the 48 KiB static limit). No spills, no stack frame (32 accumulators at most per thread).
//           Indices are int (the plan checks every reach fits).
using Engine.Runtime.Kernels;

namespace Engine.Tensors.Kernels;

/// <summary>Sizes, options and operand strides (in elements) of one attention launch (see the file header).</summary>
internal struct AttentionLayout
{
    /// <summary>Query rows per batch index.</summary>
    public int Nq;
    /// <summary>Keys per batch index.</summary>
    public int Nk;
    /// <summary>Head dim of Q and K.</summary>
    public int D;
    /// <summary>Head dim of V and O.</summary>
    public int Dv;
    /// <summary>Inner batch extent: batch index b is (b / Heads, b % Heads).</summary>
    public int Heads;
    /// <summary>The score scale.</summary>
    public float Scale;
    /// <summary>1: key j is hidden from query i when j &gt; i.</summary>
    public int Causal;
    /// <summary>0: no mask; 1: bool mask (bytes, nonzero keeps); 2: additive float mask.</summary>
    public int MaskKind;
    /// <summary>Q's element offset.</summary>
    public int QOffset;
    /// <summary>Q's step of the outer batch index.</summary>
    public int QOuter;
    /// <summary>Q's step of the inner batch index.</summary>
    public int QInner;
    /// <summary>Q's row step.</summary>
    public int QRow;
    /// <summary>Q's column step.</summary>
    public int QCol;
    /// <summary>K's element offset.</summary>
    public int KOffset;
    /// <summary>K's step of the outer batch index.</summary>
    public int KOuter;
    /// <summary>K's step of the inner batch index.</summary>
    public int KInner;
    /// <summary>K's row step.</summary>
    public int KRow;
    /// <summary>K's column step.</summary>
    public int KCol;
    /// <summary>V's element offset.</summary>
    public int VOffset;
    /// <summary>V's step of the outer batch index.</summary>
    public int VOuter;
    /// <summary>V's step of the inner batch index.</summary>
    public int VInner;
    /// <summary>V's row step.</summary>
    public int VRow;
    /// <summary>V's column step.</summary>
    public int VCol;
    /// <summary>The mask's element offset.</summary>
    public int MOffset;
    /// <summary>The mask's step of the outer batch index.</summary>
    public int MOuter;
    /// <summary>The mask's step of the inner batch index.</summary>
    public int MInner;
    /// <summary>The mask's row (query) step.</summary>
    public int MRow;
    /// <summary>The mask's column (key) step.</summary>
    public int MCol;
}

/// <summary>Flash-attention forward, backward and probabilities (see the file header).</summary>
internal static partial class AttentionKernels
{
    /// <summary>Threads per warp (the group's x size).</summary>
    public const int Lanes = 32;
    /// <summary>Warps per group (the group's y size) of every kernel but Forward.</summary>
    public const int Warps = 4;
    /// <summary>Query rows (forward, dQ, P) or keys (dK/dV) per warp.</summary>
    public const int PerWarp = 4;
    /// <summary>Warps per group of Forward (the group is (32, 8)).</summary>
    public const int ForwardWarps = 8;
    /// <summary>Query rows per group of Forward.</summary>
    public const int ForwardRows = ForwardWarps * PerWarp;
    /// <summary>Query rows per group in BackwardQuery and Probabilities; keys per group in BackwardKeyValue.</summary>
    public const int BlockRows = Warps * PerWarp;
    /// <summary>Keys per tile of Forward and Probabilities (one per lane).</summary>
    public const int KeyTile = Lanes;
    /// <summary>Rows (keys in BackwardQuery, queries in BackwardKeyValue) per tile of the backward kernels.</summary>
    public const int BackwardTile = 16;
    /// <summary>Largest head dim D and Dv.</summary>
    public const int MaxHead = 128;
    /// <summary>Row length of a staged tile read one row per lane (padded against bank conflicts).</summary>
    public const int PaddedHead = MaxHead + 1;

    /// <summary>Element offset of batch index <paramref name="b"/> of an operand folded to outer × heads.</summary>
    [KernelFunction]
    public static int BatchBase(int b, int heads, int offset, int outer, int inner)
    {
        return offset + b / heads * outer + b % heads * inner;
    }

    /// <summary>
    /// The masked score of query <paramref name="i"/> and key <paramref name="j"/>: −∞ past the last row
    /// or key, where causal hides the key, or where a bool mask is false; + the additive mask's value.
    /// </summary>
    [KernelFunction]
    public static float Masked(ArrayView<byte> maskB, ArrayView<float> maskF, AttentionLayout p, int maskBase, int i, int j, float s)
    {
        if (i >= p.Nq || j >= p.Nk) return float.NegativeInfinity;
        if (p.Causal != 0 && j > i) return float.NegativeInfinity;
        if (p.MaskKind == 1)
        {
            if (maskB[maskBase + i * p.MRow + j * p.MCol] == 0) return float.NegativeInfinity;
        }
        else if (p.MaskKind == 2)
        {
            s += maskF[maskBase + i * p.MRow + j * p.MCol];
        }
        return s;
    }

    /// <summary>exp(s − lse): 0 for a hidden score or a fully masked row (lse = −∞).</summary>
    [KernelFunction]
    public static float Probability(float s, float lse)
    {
        return s == float.NegativeInfinity || lse == float.NegativeInfinity ? 0f : XMath.Exp(s - lse);
    }

    /// <summary>Stages rows [row0, row0 + rows) of an operand as [rows][stride] (·factor; 0 past <paramref name="limit"/>).</summary>
    [KernelFunction]
    public static void Stage(ArrayView<float> src, ArrayView<float> dst, int stride, int baseOffset, int rowStep, int colStep,
        int row0, int rows, int limit, int cols, float factor)
    {
        int t = Group.IdxY * Group.DimX + Group.IdxX, threads = Group.DimX * Group.DimY;
        for (int e = t; e < rows * cols; e += threads)
        {
            int r = e / cols, c = e - r * cols, i = row0 + r;
            dst[r * stride + c] = i < limit ? factor * src[baseOffset + i * rowStep + c * colStep] : 0f;
        }
    }

    /// <summary>Row i of O (columns lane + 32c) = acc / l and L_i = m + log l (0 and −∞ for a fully masked row).</summary>
    [KernelFunction]
    public static void StoreRow(ArrayView<float> o, ArrayView<float> lse, AttentionLayout p, int b, int i, float l, float m,
        float a0, float a1, float a2, float a3)
    {
        if (i >= p.Nq) return;
        int lane = Group.IdxX;
        int row = (b * p.Nq + i) * p.Dv;
        bool dead = l == 0f;
        if (lane < p.Dv) o[row + lane] = dead ? 0f : a0 / l;
        if (lane + 32 < p.Dv) o[row + lane + 32] = dead ? 0f : a1 / l;
        if (lane + 64 < p.Dv) o[row + lane + 64] = dead ? 0f : a2 / l;
        if (lane + 96 < p.Dv) o[row + lane + 96] = dead ? 0f : a3 / l;
        if (lane == 0) lse[b * p.Nq + i] = dead ? float.NegativeInfinity : m + XMath.Log(l);
    }

    /// <summary>Writes columns lane + 32c of one contiguous row of <paramref name="cols"/> (·factor) when <paramref name="valid"/>.</summary>
    [KernelFunction]
    public static void StoreColumns(ArrayView<float> y, int row, int cols, bool valid, float factor, float a0, float a1, float a2, float a3)
    {
        if (!valid) return;
        int lane = Group.IdxX;
        if (lane < cols) y[row + lane] = factor * a0;
        if (lane + 32 < cols) y[row + lane + 32] = factor * a1;
        if (lane + 64 < cols) y[row + lane + 64] = factor * a2;
        if (lane + 96 < cols) y[row + lane + 96] = factor * a3;
    }

    /// <summary>O and L for 32 query rows of batch index Grid.IdxY (see the file header: Forward).</summary>
    [Kernel]
    public static void Forward(ArrayView<float> q, ArrayView<float> k, ArrayView<float> v, ArrayView<byte> maskB, ArrayView<float> maskF,
        ArrayView<float> o, ArrayView<float> lse, AttentionLayout p)
    {
        var qs = SharedMemory.Allocate<float>(ForwardRows * MaxHead);  // scale·Q [32][128]
        var kv = SharedMemory.Allocate<float>(KeyTile * PaddedHead);   // K tile [32][129], then V tile [32][129]
        var ps = SharedMemory.Allocate<float>(ForwardRows * KeyTile);  // P tile [32][32]
        int lane = Group.IdxX, warp = Group.IdxY;
        int b = Grid.IdxY, i0 = Grid.IdxX * ForwardRows;
        int rw = warp * PerWarp, ia = i0 + rw;
        int qBase = BatchBase(b, p.Heads, p.QOffset, p.QOuter, p.QInner);
        int kBase = BatchBase(b, p.Heads, p.KOffset, p.KOuter, p.KInner);
        int vBase = BatchBase(b, p.Heads, p.VOffset, p.VOuter, p.VInner);
        int mBase = BatchBase(b, p.Heads, p.MOffset, p.MOuter, p.MInner);
        Stage(q, qs, MaxHead, qBase, p.QRow, p.QCol, i0, ForwardRows, p.Nq, p.D, p.Scale);
        bool wide = p.Dv > 64;
        float m0 = float.NegativeInfinity, m1 = float.NegativeInfinity, m2 = float.NegativeInfinity, m3 = float.NegativeInfinity;
        float l0 = 0f, l1 = 0f, l2 = 0f, l3 = 0f;
        float a00 = 0f, a01 = 0f, a02 = 0f, a03 = 0f;
        float a10 = 0f, a11 = 0f, a12 = 0f, a13 = 0f;
        float a20 = 0f, a21 = 0f, a22 = 0f, a23 = 0f;
        float a30 = 0f, a31 = 0f, a32 = 0f, a33 = 0f;
        int jEnd = p.Causal != 0 ? Math.Min(p.Nk, i0 + ForwardRows) : p.Nk;
        for (int j0 = 0; j0 < jEnd; j0 += KeyTile)
        {
            Group.Barrier(); // the previous tile's readers of V are done
            Stage(k, kv, PaddedHead, kBase, p.KRow, p.KCol, j0, KeyTile, p.Nk, p.D, 1f);
            Group.Barrier();
            // S[i, j] for key j = j0 + lane and the warp's 4 rows.
            float s0 = 0f, s1 = 0f, s2 = 0f, s3 = 0f;
            int kr = lane * PaddedHead, qr = rw * MaxHead;
            for (int c = 0; c < p.D; c++)
            {
                float kc = kv[kr + c];
                s0 += qs[qr + c] * kc;
                s1 += qs[qr + MaxHead + c] * kc;
                s2 += qs[qr + 2 * MaxHead + c] * kc;
                s3 += qs[qr + 3 * MaxHead + c] * kc;
            }
            int j = j0 + lane;
            s0 = Masked(maskB, maskF, p, mBase, ia, j, s0);
            s1 = Masked(maskB, maskF, p, mBase, ia + 1, j, s1);
            s2 = Masked(maskB, maskF, p, mBase, ia + 2, j, s2);
            s3 = Masked(maskB, maskF, p, mBase, ia + 3, j, s3);
            // Online softmax: the new running max per row (a warp max), P = exp(S − m'), rescale by exp(m − m').
            float n0 = XMath.Max(m0, Warp.ReduceMax(s0));
            float n1 = XMath.Max(m1, Warp.ReduceMax(s1));
            float n2 = XMath.Max(m2, Warp.ReduceMax(s2));
            float n3 = XMath.Max(m3, Warp.ReduceMax(s3));
            float p0 = Probability(s0, n0), p1 = Probability(s1, n1), p2 = Probability(s2, n2), p3 = Probability(s3, n3);
            float f0 = n0 == float.NegativeInfinity ? 1f : XMath.Exp(m0 - n0); // 0 when m was −∞
            float f1 = n1 == float.NegativeInfinity ? 1f : XMath.Exp(m1 - n1);
            float f2 = n2 == float.NegativeInfinity ? 1f : XMath.Exp(m2 - n2);
            float f3 = n3 == float.NegativeInfinity ? 1f : XMath.Exp(m3 - n3);
            m0 = n0; m1 = n1; m2 = n2; m3 = n3;
            l0 = l0 * f0 + p0; l1 = l1 * f1 + p1; l2 = l2 * f2 + p2; l3 = l3 * f3 + p3;
            a00 *= f0; a01 *= f0; a02 *= f0; a03 *= f0;
            a10 *= f1; a11 *= f1; a12 *= f1; a13 *= f1;
            a20 *= f2; a21 *= f2; a22 *= f2; a23 *= f2;
            a30 *= f3; a31 *= f3; a32 *= f3; a33 *= f3;
            int pr = rw * KeyTile + lane;
            ps[pr] = p0; ps[pr + KeyTile] = p1; ps[pr + 2 * KeyTile] = p2; ps[pr + 3 * KeyTile] = p3;
            Group.Barrier(); // every lane is done with the K tile: V takes its place
            Stage(v, kv, PaddedHead, vBase, p.VRow, p.VCol, j0, KeyTile, p.Nk, p.Dv, 1f);
            Group.Barrier();
            // O[i, lane + 32c] += Σ_j P[i, j]·V[j, lane + 32c] over the tile's keys.
            int cols = Math.Min(KeyTile, p.Nk - j0);
            int wr = rw * KeyTile;
            for (int jj = 0; jj < cols; jj++)
            {
                float w0 = ps[wr + jj], w1 = ps[wr + KeyTile + jj], w2 = ps[wr + 2 * KeyTile + jj], w3 = ps[wr + 3 * KeyTile + jj];
                int vr = jj * PaddedHead + lane;
                float v0 = kv[vr], v1 = kv[vr + 32];
                a00 += w0 * v0; a01 += w0 * v1;
                a10 += w1 * v0; a11 += w1 * v1;
                a20 += w2 * v0; a21 += w2 * v1;
                a30 += w3 * v0; a31 += w3 * v1;
                if (wide)
                {
                    float v2 = kv[vr + 64], v3 = kv[vr + 96];
                    a02 += w0 * v2; a03 += w0 * v3;
                    a12 += w1 * v2; a13 += w1 * v3;
                    a22 += w2 * v2; a23 += w2 * v3;
                    a32 += w3 * v2; a33 += w3 * v3;
                }
            }
        }
        l0 = Warp.ReduceSum(l0);
        l1 = Warp.ReduceSum(l1);
        l2 = Warp.ReduceSum(l2);
        l3 = Warp.ReduceSum(l3);
        StoreRow(o, lse, p, b, ia, l0, m0, a00, a01, a02, a03);
        StoreRow(o, lse, p, b, ia + 1, l1, m1, a10, a11, a12, a13);
        StoreRow(o, lse, p, b, ia + 2, l2, m2, a20, a21, a22, a23);
        StoreRow(o, lse, p, b, ia + 3, l3, m3, a30, a31, a32, a33);
    }

    /// <summary>Δ[r] = Σ_e dO[r, e]·O[r, e] over contiguous rows of <paramref name="cols"/>: one warp per row.</summary>
    [Kernel]
    public static void RowDot(ArrayView<float> o, ArrayView<float> g, ArrayView<float> delta, int rows, int cols)
    {
        int row = Grid.IdxX * Warps + Group.IdxY;
        float s = 0f;
        if (row < rows)
            for (int c = Group.IdxX; c < cols; c += Lanes) s += g[row * cols + c] * o[row * cols + c];
        s = Warp.ReduceSum(s);
        if (row < rows && Group.IdxX == 0) delta[row] = s;
    }

    /// <summary>dK and dV of 16 keys of batch index Grid.IdxY (see the file header: Backward).</summary>
    [Kernel]
    public static void BackwardKeyValue(ArrayView<float> q, ArrayView<float> k, ArrayView<float> v, ArrayView<byte> maskB, ArrayView<float> maskF,
        ArrayView<float> g, ArrayView<float> lse, ArrayView<float> delta, ArrayView<float> dk, ArrayView<float> dv, AttentionLayout p)
    {
        var qs = SharedMemory.Allocate<float>(BackwardTile * PaddedHead);  // scale·Q tile [16][129]
        var gs = SharedMemory.Allocate<float>(BackwardTile * PaddedHead);  // dO tile [16][129]
        var ks = SharedMemory.Allocate<float>(BlockRows * PaddedHead);     // the block's K [16][129]
        var vs = SharedMemory.Allocate<float>(BlockRows * PaddedHead);     // the block's V [16][129]
        var ps = SharedMemory.Allocate<float>(BlockRows * BackwardTile);   // P [key][row]
        var dss = SharedMemory.Allocate<float>(BlockRows * BackwardTile);  // dS [key][row]
        var ls = SharedMemory.Allocate<float>(BackwardTile);               // L of the tile's rows
        var deltas = SharedMemory.Allocate<float>(BackwardTile);           // Δ of the tile's rows
        int lane = Group.IdxX, warp = Group.IdxY, t = warp * Lanes + lane;
        int b = Grid.IdxY, k0 = Grid.IdxX * BlockRows;
        int qBase = BatchBase(b, p.Heads, p.QOffset, p.QOuter, p.QInner);
        int kBase = BatchBase(b, p.Heads, p.KOffset, p.KOuter, p.KInner);
        int vBase = BatchBase(b, p.Heads, p.VOffset, p.VOuter, p.VInner);
        int mBase = BatchBase(b, p.Heads, p.MOffset, p.MOuter, p.MInner);
        int gBase = b * p.Nq * p.Dv;
        Stage(k, ks, PaddedHead, kBase, p.KRow, p.KCol, k0, BlockRows, p.Nk, p.D, 1f);
        Stage(v, vs, PaddedHead, vBase, p.VRow, p.VCol, k0, BlockRows, p.Nk, p.Dv, 1f);
        bool wide = p.D > 64 || p.Dv > 64;
        // Accumulators: key kw = warp·4 + x, columns lane + 32c.
        float v00 = 0f, v01 = 0f, v02 = 0f, v03 = 0f, v10 = 0f, v11 = 0f, v12 = 0f, v13 = 0f;
        float v20 = 0f, v21 = 0f, v22 = 0f, v23 = 0f, v30 = 0f, v31 = 0f, v32 = 0f, v33 = 0f;
        float k00 = 0f, k01 = 0f, k02 = 0f, k03 = 0f, k10 = 0f, k11 = 0f, k12 = 0f, k13 = 0f;
        float k20 = 0f, k21 = 0f, k22 = 0f, k23 = 0f, k30 = 0f, k31 = 0f, k32 = 0f, k33 = 0f;
        // Lane → (query row rr of the tile, keys kA and kA + 1 of the warp's 4).
        int rr = lane % BackwardTile, kA = warp * PerWarp + 2 * (lane / BackwardTile);
        int iStart = p.Causal != 0 ? k0 : 0; // rows before the block's first key see none of its keys
        for (int i0 = iStart; i0 < p.Nq; i0 += BackwardTile)
        {
            Group.Barrier();
            Stage(q, qs, PaddedHead, qBase, p.QRow, p.QCol, i0, BackwardTile, p.Nq, p.D, p.Scale);
            Stage(g, gs, PaddedHead, gBase, p.Dv, 1, i0, BackwardTile, p.Nq, p.Dv, 1f);
            if (t < BackwardTile)
            {
                int i = i0 + t;
                ls[t] = i < p.Nq ? lse[b * p.Nq + i] : float.NegativeInfinity;
                deltas[t] = i < p.Nq ? delta[b * p.Nq + i] : 0f;
            }
            Group.Barrier();
            float sA = 0f, sB = 0f, dpA = 0f, dpB = 0f;
            int qr = rr * PaddedHead, ka = kA * PaddedHead;
            for (int c = 0; c < p.D; c++)
            {
                float qv = qs[qr + c];
                sA += qv * ks[ka + c];
                sB += qv * ks[ka + PaddedHead + c];
            }
            for (int e = 0; e < p.Dv; e++)
            {
                float gv = gs[qr + e];
                dpA += gv * vs[ka + e];
                dpB += gv * vs[ka + PaddedHead + e];
            }
            int row = i0 + rr;
            float lr = ls[rr], dr = deltas[rr];
            float pA = Probability(Masked(maskB, maskF, p, mBase, row, k0 + kA, sA), lr);
            float pB = Probability(Masked(maskB, maskF, p, mBase, row, k0 + kA + 1, sB), lr);
            ps[kA * BackwardTile + rr] = pA;
            ps[(kA + 1) * BackwardTile + rr] = pB;
            dss[kA * BackwardTile + rr] = pA * (dpA - dr);
            dss[(kA + 1) * BackwardTile + rr] = pB * (dpB - dr);
            Group.Barrier();
            // dV[key, col] += P[row, key]·dO[row, col]; dK[key, col] += dS[row, key]·(scale·Q)[row, col].
            int rows = Math.Min(BackwardTile, p.Nq - i0);
            int kw = warp * PerWarp * BackwardTile;
            for (int r = 0; r < rows; r++)
            {
                int cr = r * PaddedHead + lane;
                float p0 = ps[kw + r], p1 = ps[kw + BackwardTile + r], p2 = ps[kw + 2 * BackwardTile + r], p3 = ps[kw + 3 * BackwardTile + r];
                float d0 = dss[kw + r], d1 = dss[kw + BackwardTile + r], d2 = dss[kw + 2 * BackwardTile + r], d3 = dss[kw + 3 * BackwardTile + r];
                float g0 = gs[cr], g1 = gs[cr + 32], q0 = qs[cr], q1 = qs[cr + 32];
                v00 += p0 * g0; v01 += p0 * g1; v10 += p1 * g0; v11 += p1 * g1;
                v20 += p2 * g0; v21 += p2 * g1; v30 += p3 * g0; v31 += p3 * g1;
                k00 += d0 * q0; k01 += d0 * q1; k10 += d1 * q0; k11 += d1 * q1;
                k20 += d2 * q0; k21 += d2 * q1; k30 += d3 * q0; k31 += d3 * q1;
                if (wide)
                {
                    float g2 = gs[cr + 64], g3 = gs[cr + 96], q2 = qs[cr + 64], q3 = qs[cr + 96];
                    v02 += p0 * g2; v03 += p0 * g3; v12 += p1 * g2; v13 += p1 * g3;
                    v22 += p2 * g2; v23 += p2 * g3; v32 += p3 * g2; v33 += p3 * g3;
                    k02 += d0 * q2; k03 += d0 * q3; k12 += d1 * q2; k13 += d1 * q3;
                    k22 += d2 * q2; k23 += d2 * q3; k32 += d3 * q2; k33 += d3 * q3;
                }
            }
        }
        int key = k0 + warp * PerWarp;
        int kRow = (b * p.Nk + key) * p.D, vRow = (b * p.Nk + key) * p.Dv;
        StoreColumns(dk, kRow, p.D, key < p.Nk, 1f, k00, k01, k02, k03);
        StoreColumns(dk, kRow + p.D, p.D, key + 1 < p.Nk, 1f, k10, k11, k12, k13);
        StoreColumns(dk, kRow + 2 * p.D, p.D, key + 2 < p.Nk, 1f, k20, k21, k22, k23);
        StoreColumns(dk, kRow + 3 * p.D, p.D, key + 3 < p.Nk, 1f, k30, k31, k32, k33);
        StoreColumns(dv, vRow, p.Dv, key < p.Nk, 1f, v00, v01, v02, v03);
        StoreColumns(dv, vRow + p.Dv, p.Dv, key + 1 < p.Nk, 1f, v10, v11, v12, v13);
        StoreColumns(dv, vRow + 2 * p.Dv, p.Dv, key + 2 < p.Nk, 1f, v20, v21, v22, v23);
        StoreColumns(dv, vRow + 3 * p.Dv, p.Dv, key + 3 < p.Nk, 1f, v30, v31, v32, v33);
    }

    /// <summary>dQ of 16 query rows of batch index Grid.IdxY (see the file header: Backward).</summary>
    [Kernel]
    public static void BackwardQuery(ArrayView<float> q, ArrayView<float> k, ArrayView<float> v, ArrayView<byte> maskB, ArrayView<float> maskF,
        ArrayView<float> g, ArrayView<float> lse, ArrayView<float> delta, ArrayView<float> dq, AttentionLayout p)
    {
        var qs = SharedMemory.Allocate<float>(BlockRows * PaddedHead);     // the block's scale·Q [16][129]
        var gs = SharedMemory.Allocate<float>(BlockRows * PaddedHead);     // the block's dO [16][129]
        var ks = SharedMemory.Allocate<float>(BackwardTile * PaddedHead);  // K tile [16][129]
        var vs = SharedMemory.Allocate<float>(BackwardTile * PaddedHead);  // V tile [16][129]
        var dss = SharedMemory.Allocate<float>(BlockRows * BackwardTile);  // dS [row][key]
        var ls = SharedMemory.Allocate<float>(BlockRows);
        var deltas = SharedMemory.Allocate<float>(BlockRows);
        int lane = Group.IdxX, warp = Group.IdxY, t = warp * Lanes + lane;
        int b = Grid.IdxY, i0 = Grid.IdxX * BlockRows;
        int qBase = BatchBase(b, p.Heads, p.QOffset, p.QOuter, p.QInner);
        int kBase = BatchBase(b, p.Heads, p.KOffset, p.KOuter, p.KInner);
        int vBase = BatchBase(b, p.Heads, p.VOffset, p.VOuter, p.VInner);
        int mBase = BatchBase(b, p.Heads, p.MOffset, p.MOuter, p.MInner);
        Stage(q, qs, PaddedHead, qBase, p.QRow, p.QCol, i0, BlockRows, p.Nq, p.D, p.Scale);
        Stage(g, gs, PaddedHead, b * p.Nq * p.Dv, p.Dv, 1, i0, BlockRows, p.Nq, p.Dv, 1f);
        if (t < BlockRows)
        {
            int i = i0 + t;
            ls[t] = i < p.Nq ? lse[b * p.Nq + i] : float.NegativeInfinity;
            deltas[t] = i < p.Nq ? delta[b * p.Nq + i] : 0f;
        }
        bool wide = p.D > 64;
        float a00 = 0f, a01 = 0f, a02 = 0f, a03 = 0f, a10 = 0f, a11 = 0f, a12 = 0f, a13 = 0f;
        float a20 = 0f, a21 = 0f, a22 = 0f, a23 = 0f, a30 = 0f, a31 = 0f, a32 = 0f, a33 = 0f;
        // Lane → (key kk of the tile, rows rA and rA + 1 of the warp's 4).
        int kk = lane % BackwardTile, rA = warp * PerWarp + 2 * (lane / BackwardTile);
        int jEnd = p.Causal != 0 ? Math.Min(p.Nk, i0 + BlockRows) : p.Nk;
        for (int j0 = 0; j0 < jEnd; j0 += BackwardTile)
        {
            Group.Barrier();
            Stage(k, ks, PaddedHead, kBase, p.KRow, p.KCol, j0, BackwardTile, p.Nk, p.D, 1f);
            Stage(v, vs, PaddedHead, vBase, p.VRow, p.VCol, j0, BackwardTile, p.Nk, p.Dv, 1f);
            Group.Barrier();
            float sA = 0f, sB = 0f, dpA = 0f, dpB = 0f;
            int qa = rA * PaddedHead, kr = kk * PaddedHead;
            for (int c = 0; c < p.D; c++)
            {
                float kv = ks[kr + c];
                sA += qs[qa + c] * kv;
                sB += qs[qa + PaddedHead + c] * kv;
            }
            for (int e = 0; e < p.Dv; e++)
            {
                float vv = vs[kr + e];
                dpA += gs[qa + e] * vv;
                dpB += gs[qa + PaddedHead + e] * vv;
            }
            int j = j0 + kk;
            float pA = Probability(Masked(maskB, maskF, p, mBase, i0 + rA, j, sA), ls[rA]);
            float pB = Probability(Masked(maskB, maskF, p, mBase, i0 + rA + 1, j, sB), ls[rA + 1]);
            dss[rA * BackwardTile + kk] = pA * (dpA - deltas[rA]);
            dss[(rA + 1) * BackwardTile + kk] = pB * (dpB - deltas[rA + 1]);
            Group.Barrier();
            // dQ[row, col] += dS[row, key]·K[key, col] (scale applied at the store).
            int cols = Math.Min(BackwardTile, p.Nk - j0);
            int wr = warp * PerWarp * BackwardTile;
            for (int jj = 0; jj < cols; jj++)
            {
                int cr = jj * PaddedHead + lane;
                float w0 = dss[wr + jj], w1 = dss[wr + BackwardTile + jj], w2 = dss[wr + 2 * BackwardTile + jj], w3 = dss[wr + 3 * BackwardTile + jj];
                float c0 = ks[cr], c1 = ks[cr + 32];
                a00 += w0 * c0; a01 += w0 * c1; a10 += w1 * c0; a11 += w1 * c1;
                a20 += w2 * c0; a21 += w2 * c1; a30 += w3 * c0; a31 += w3 * c1;
                if (wide)
                {
                    float c2 = ks[cr + 64], c3 = ks[cr + 96];
                    a02 += w0 * c2; a03 += w0 * c3; a12 += w1 * c2; a13 += w1 * c3;
                    a22 += w2 * c2; a23 += w2 * c3; a32 += w3 * c2; a33 += w3 * c3;
                }
            }
        }
        int ia = i0 + warp * PerWarp;
        int row = (b * p.Nq + ia) * p.D;
        StoreColumns(dq, row, p.D, ia < p.Nq, p.Scale, a00, a01, a02, a03);
        StoreColumns(dq, row + p.D, p.D, ia + 1 < p.Nq, p.Scale, a10, a11, a12, a13);
        StoreColumns(dq, row + 2 * p.D, p.D, ia + 2 < p.Nq, p.Scale, a20, a21, a22, a23);
        StoreColumns(dq, row + 3 * p.D, p.D, ia + 3 < p.Nq, p.Scale, a30, a31, a32, a33);
    }

    /// <summary>P [B, Nq, Nk] = exp(S − L) for 16 query rows of batch index Grid.IdxY, from the forward's L.</summary>
    [Kernel]
    public static void Probabilities(ArrayView<float> q, ArrayView<float> k, ArrayView<byte> maskB, ArrayView<float> maskF,
        ArrayView<float> lse, ArrayView<float> prob, AttentionLayout p)
    {
        var qs = SharedMemory.Allocate<float>(BlockRows * MaxHead);   // scale·Q [16][128]
        var ks = SharedMemory.Allocate<float>(KeyTile * PaddedHead);  // K tile [32][129]
        int lane = Group.IdxX, warp = Group.IdxY;
        int b = Grid.IdxY, i0 = Grid.IdxX * BlockRows;
        int rw = warp * PerWarp, ia = i0 + rw;
        int qBase = BatchBase(b, p.Heads, p.QOffset, p.QOuter, p.QInner);
        int kBase = BatchBase(b, p.Heads, p.KOffset, p.KOuter, p.KInner);
        int mBase = BatchBase(b, p.Heads, p.MOffset, p.MOuter, p.MInner);
        Stage(q, qs, MaxHead, qBase, p.QRow, p.QCol, i0, BlockRows, p.Nq, p.D, p.Scale);
        float l0 = ia < p.Nq ? lse[b * p.Nq + ia] : 0f;
        float l1 = ia + 1 < p.Nq ? lse[b * p.Nq + ia + 1] : 0f;
        float l2 = ia + 2 < p.Nq ? lse[b * p.Nq + ia + 2] : 0f;
        float l3 = ia + 3 < p.Nq ? lse[b * p.Nq + ia + 3] : 0f;
        for (int j0 = 0; j0 < p.Nk; j0 += KeyTile)
        {
            Group.Barrier();
            Stage(k, ks, PaddedHead, kBase, p.KRow, p.KCol, j0, KeyTile, p.Nk, p.D, 1f);
            Group.Barrier();
            float s0 = 0f, s1 = 0f, s2 = 0f, s3 = 0f;
            int kr = lane * PaddedHead, qr = rw * MaxHead;
            for (int c = 0; c < p.D; c++)
            {
                float kv = ks[kr + c];
                s0 += qs[qr + c] * kv;
                s1 += qs[qr + MaxHead + c] * kv;
                s2 += qs[qr + 2 * MaxHead + c] * kv;
                s3 += qs[qr + 3 * MaxHead + c] * kv;
            }
            int j = j0 + lane;
            if (j < p.Nk)
            {
                int at = (b * p.Nq + ia) * p.Nk + j;
                if (ia < p.Nq) prob[at] = Probability(Masked(maskB, maskF, p, mBase, ia, j, s0), l0);
                if (ia + 1 < p.Nq) prob[at + p.Nk] = Probability(Masked(maskB, maskF, p, mBase, ia + 1, j, s1), l1);
                if (ia + 2 < p.Nq) prob[at + 2 * p.Nk] = Probability(Masked(maskB, maskF, p, mBase, ia + 2, j, s2), l2);
                if (ia + 3 < p.Nq) prob[at + 3 * p.Nk] = Probability(Masked(maskB, maskF, p, mBase, ia + 3, j, s3), l3);
            }
        }
    }
}
