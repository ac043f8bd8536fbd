using System.Numerics;
using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Engine.Runtime;

namespace Engine.Tensors.Cpu;

/// <summary>
/// Fused scaled dot-product attention on the CPU, FlashAttention-2 style (forward in this file, backward
/// in <c>AttentionBackward.cs</c>).
/// <para>
/// Math, per batch index (batch·heads) b: S = scale·Q·Kᵀ (+ additive mask, or −∞ where a bool mask is false,
/// where causal hides key j &gt; query i, and past the last key); P = softmax(S) along the keys; O = P·V.
/// Q [Nq, D], K [Nk, D], V [Nk, Dv], O [Nq, Dv]. Flops: 2·Nq·Nk·(D + Dv) forward (half that, roughly,
/// when causal).
/// </para>
/// <para>
/// Tiling: the forward never forms the [Nq, Nk] matrix. A work item owns a range of query rows of one
/// batch index; it packs Kᵀ [D, Nk] and V [Nk, Dv] once (zero-padded to whole tiles), then walks its
/// query tiles of <see cref="BlockRows"/> rows and, for each, the key tiles of <c>Bc</c> = 4 SIMD vectors
/// (64 float32 keys with AVX-512):
/// S_tile = Q_tile·Kᵀ_tile (register-tiled micro-kernel <see cref="MatMulTile{T, TVec, TS}"/>), masked, and
/// folded into the running output with the online softmax: per query row a running max m and sum l,
/// m' = max(m, max S), P = exp(S − m'), l = l·exp(m − m') + Σ P, O = O·exp(m − m') + P·V_tile. At the end
/// O /= l and logsumexp = m + log l is kept for the backward (the only [Nq]-sized thing saved besides O).
/// Scratch per item: packed K, V (linear in Nk), one Q tile, one S tile and the output accumulator.
/// </para>
/// <para>
/// Numerics: accumulation is in the element type (float32 in float32, as FlashAttention and every BLAS do);
/// Q is multiplied by the scale while it is packed (one rounding: (scale·q)·k instead of scale·(q·k)).
/// The running max makes every exp argument ≤ 0, so nothing overflows. A row whose keys are all masked
/// (or Nk = 0) has l = 0: its output is defined as 0 and its logsumexp as −∞ (PyTorch gives NaN there);
/// the backward then gives it zero gradients. exp is <see cref="TensorPrimitives.Exp{T}(ReadOnlySpan{T}, Span{T})"/>.
/// </para>
/// <para>
/// Parallelism: forward items are (batch index, query chunk); the rows of O do not depend on how the
/// queries are split, so the split may follow the thread count. The backward's split depends on the
/// shape only (see <c>AttentionBackward.cs</c>), so results never change with the thread count.
/// </para>
/// </summary>
internal static unsafe partial class Attention
{
    /// <summary>Query rows per tile.</summary>
    internal const int BlockRows = 64;

    /// <summary>Rows of the micro-kernel's register tile (4 rows × 4 vectors = 16 accumulators).</summary>
    private const int MR = 4;

    /// <summary>
    /// One [batch..., rows, cols] operand read through its strides: element (b, i, j) at
    /// <c>Data + Offset(b) + i·RowStride + j·ColStride</c> (in elements). Broadcast batch dims have stride 0.
    /// </summary>
    internal sealed class Operand
    {
        /// <summary>Reads <paramref name="t"/> as <paramref name="shape"/> = batch + [rows, cols] (a broadcast of its shape).</summary>
        public Operand(Tensor t, long[] shape)
        {
            Data = (nint)(t.DType switch
            {
                DType.Float32 => (byte*)t.Ptr<float>(),
                DType.Float64 => (byte*)t.Ptr<double>(),
                _ => (byte*)t.Ptr<bool>(),
            });
            IsBool = t.DType == DType.Bool;
            var strides = ShapeUtil.BroadcastStrides(t, shape);
            RowStride = strides[^2];
            ColStride = strides[^1];
            BatchStrides = strides[..^2];
            Batch = shape[..^2];
        }

        public nint Data { get; }
        public bool IsBool { get; }
        public long RowStride { get; }
        public long ColStride { get; }
        public long[] BatchStrides { get; }
        public long[] Batch { get; }

        /// <summary>Element offset of batch index <paramref name="index"/> (row-major over the batch shape).</summary>
        public long Offset(long index)
        {
            long offset = 0;
            for (int d = Batch.Length - 1; d >= 0; d--)
            {
                offset += index % Batch[d] * BatchStrides[d];
                index /= Batch[d];
            }
            return offset;
        }
    }

    /// <summary>The sizes and operands of one attention call.</summary>
    internal sealed class Problem
    {
        public required long[] Batch { get; init; }
        public required long Nq { get; init; }
        public required long Nk { get; init; }
        public required long D { get; init; }
        public required long Dv { get; init; }
        public required double Scale { get; init; }
        public required bool Causal { get; init; }
        public required Operand Q { get; init; }
        public required Operand K { get; init; }
        public required Operand V { get; init; }
        /// <summary>Bool (true = keep) or additive float mask, read as [batch..., Nq, Nk]; null when none.</summary>
        public Operand? Mask { get; init; }
        public long BatchCount => ShapeUtil.NumEl(Batch);
    }

    /// <summary>
    /// Tests set this (on the calling thread) to 256 or 128 to run the narrower kernels on an AVX-512 machine;
    /// 0 uses the hardware's widest.
    /// </summary>
    [ThreadStatic] internal static int WidthOverride;

    /// <summary>Which SIMD width the kernels use (the same choice as <see cref="Gemm"/>).</summary>
    private static int Width => WidthOverride != 0 ? WidthOverride
        : Vector512.IsHardwareAccelerated && Avx512F.IsSupported ? 512
        : Vector256.IsHardwareAccelerated && Fma.IsSupported ? 256 : 128;

    /// <summary>
    /// O (contiguous [batch..., Nq, Dv]) and logsumexp (contiguous [batch..., Nq]) of <paramref name="p"/>.
    /// </summary>
    public static void Forward<T>(Problem p, T* o, T* lse) where T : unmanaged, IFloatingPointIeee754<T>
    {
        switch (Width)
        {
            case 512: Forward<T, Vector512<T>, Simd512<T>>(p, o, lse); break;
            case 256: Forward<T, Vector256<T>, Simd256<T>>(p, o, lse); break;
            default: Forward<T, Vector128<T>, Simd128<T>>(p, o, lse); break;
        }
    }

    private static void Forward<T, TVec, TS>(Problem p, T* o, T* lse)
        where T : unmanaged, IFloatingPointIeee754<T> where TVec : unmanaged where TS : ISimd<T, TVec>
    {
        long batch = p.BatchCount;
        if (batch == 0 || p.Nq == 0) return;
        long qTiles = (p.Nq + BlockRows - 1) / BlockRows;
        // Enough items to keep every thread busy (the split does not change any result).
        long chunks = Math.Clamp((4L * Parallelism.MaxThreads + batch - 1) / batch, 1, qTiles);
        long tilesPerChunk = (qTiles + chunks - 1) / chunks;
        chunks = (qTiles + tilesPerChunk - 1) / tilesPerChunk;
        nint po = (nint)o, pl = (nint)lse;
        double work = (double)batch * p.Nq * Math.Max(p.Nk, 1) * (p.D + p.Dv + 1);
        Parallelism.For(batch * chunks, work >= Gemm.ParallelThreshold, item =>
        {
            long b = item / chunks, chunk = item % chunks;
            long q0 = chunk * tilesPerChunk * BlockRows, q1 = Math.Min(p.Nq, q0 + tilesPerChunk * BlockRows);
            ForwardItem<T, TVec, TS>(p, b, q0, q1, (T*)po + b * p.Nq * p.Dv, (T*)pl + b * p.Nq);
        });
    }

    /// <summary>Rows [q0, q1) of batch index <paramref name="b"/>: o and lse point at that batch index's block.</summary>
    private static void ForwardItem<T, TVec, TS>(Problem p, long b, long q0, long q1, T* o, T* lse)
        where T : unmanaged, IFloatingPointIeee754<T> where TVec : unmanaged where TS : ISimd<T, TVec>
    {
        int w = TS.Count, bc = 4 * w;
        int d = (int)p.D, dv = (int)p.Dv, dvP = RoundUp(dv, w);
        // Keys this item can see: under the causal rule row i sees keys 0..i.
        long keys = p.Causal ? Math.Min(p.Nk, q1) : p.Nk;
        int nkP = RoundUp((int)keys, bc);
        using var scratch = new Scratch();
        T* kt = scratch.Get<T>((long)d * nkP);            // Kᵀ [D, nkP]
        T* vp = scratch.Get<T>((long)nkP * dvP);          // V [nkP, DvP]
        T* qs = scratch.Get<T>((long)BlockRows * d);      // scale·Q tile [BlockRows, D]
        T* s = scratch.Get<T>((long)BlockRows * bc);      // S / P tile [BlockRows, Bc]
        T* acc = scratch.Get<T>((long)BlockRows * dvP);   // output accumulator [BlockRows, DvP]
        T* m = scratch.Get<T>(BlockRows);
        T* l = scratch.Get<T>(BlockRows);
        T* alpha = scratch.Get<T>(BlockRows);
        T* kb = (T*)p.K.Data + p.K.Offset(b);
        T* vb = (T*)p.V.Data + p.V.Offset(b);
        T* qb = (T*)p.Q.Data + p.Q.Offset(b);
        PackTransposed(kb, p.K.RowStride, p.K.ColStride, (int)keys, d, kt, nkP);
        PackRows(vb, p.V.RowStride, p.V.ColStride, (int)keys, dv, vp, dvP, nkP, T.One);
        T scale = T.CreateTruncating(p.Scale);
        long maskOffset = p.Mask?.Offset(b) ?? 0;

        for (long i0 = q0; i0 < q1; i0 += BlockRows)
        {
            int rows = (int)Math.Min(BlockRows, q1 - i0);
            PackRows(qb + i0 * p.Q.RowStride, p.Q.RowStride, p.Q.ColStride, rows, d, qs, d, rows, scale);
            for (int r = 0; r < rows; r++) { m[r] = T.NegativeInfinity; l[r] = T.Zero; }
            new Span<T>(acc, rows * dvP).Clear();
            long jEnd = p.Causal ? Math.Min(keys, i0 + rows) : keys;
            for (long j0 = 0; j0 < jEnd; j0 += bc)
            {
                int cols = (int)Math.Min(bc, p.Nk - j0);
                // S = (scale·Q)·Kᵀ for this tile, then the mask.
                MatMulTile<T, TVec, TS>(rows, d, qs, d, 1, kt + j0, nkP, bc, s, bc, accumulate: false);
                ApplyMask(p, maskOffset, s, rows, i0, j0, cols, bc);
                // Online softmax: new running max per row, S − m' in place, one exp over the whole tile.
                for (int r = 0; r < rows; r++)
                {
                    T* row = s + (long)r * bc;
                    T mNew = T.Max(m[r], RowMax(row, bc));
                    // Every key so far masked: leave the −∞ scores (exp gives P = 0), m stays −∞.
                    if (!T.IsNegativeInfinity(mNew)) AddToRow(row, bc, -mNew);
                    alpha[r] = T.IsNegativeInfinity(mNew) ? T.One : T.Exp(m[r] - mNew); // 0 when m was −∞
                    m[r] = mNew;
                }
                TensorPrimitives.Exp(new ReadOnlySpan<T>(s, rows * bc), new Span<T>(s, rows * bc));
                for (int r = 0; r < rows; r++)
                {
                    l[r] = l[r] * alpha[r] + RowSum(s + (long)r * bc, bc);
                    if (alpha[r] != T.One) ScaleRow(acc + (long)r * dvP, dvP, alpha[r]);
                }
                // O += P·V over the valid keys of the tile.
                MatMulTile<T, TVec, TS>(rows, cols, s, bc, 1, vp + j0 * dvP, dvP, dvP, acc, dvP, accumulate: true);
            }
            for (int r = 0; r < rows; r++)
            {
                var dst = new Span<T>(o + (i0 + r) * dv, dv);
                if (l[r] == T.Zero)
                {
                    dst.Clear(); // fully masked row: output 0, logsumexp −∞
                    lse[i0 + r] = T.NegativeInfinity;
                    continue;
                }
                TensorPrimitives.Divide(new ReadOnlySpan<T>(acc + (long)r * dvP, dv), l[r], dst);
                lse[i0 + r] = m[r] + T.Log(l[r]);
            }
        }
    }

    /// <summary>
    /// Masks one S tile (rows i0.., keys j0..; <paramref name="cols"/> of the <paramref name="bc"/> columns are
    /// real keys): −∞ past the last key and where the causal rule hides a key (j &gt; i), then the user's mask:
    /// −∞ where a bool mask is false, or the additive mask's value added.
    /// </summary>
    private static void ApplyMask<T>(Problem p, long maskOffset, T* s, int rows, long i0, long j0, int cols, int bc)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        bool tail = cols < bc, causal = p.Causal && j0 + cols - 1 > i0;
        var mask = p.Mask;
        if (!tail && !causal && mask is null) return;
        for (int r = 0; r < rows; r++)
        {
            T* row = s + (long)r * bc;
            long i = i0 + r;
            int limit = causal ? (int)Math.Clamp(i - j0 + 1, 0, cols) : cols;
            if (limit < bc) new Span<T>(row + limit, bc - limit).Fill(T.NegativeInfinity);
            if (mask is null) continue;
            long at = maskOffset + i * mask.RowStride + j0 * mask.ColStride, cs = mask.ColStride;
            if (mask.IsBool)
            {
                bool* mb = (bool*)mask.Data + at;
                for (int c = 0; c < limit; c++)
                    if (!mb[c * cs]) row[c] = T.NegativeInfinity;
            }
            else
            {
                T* mf = (T*)mask.Data + at;
                if (cs == 1) TensorPrimitives.Add(new ReadOnlySpan<T>(row, limit), new ReadOnlySpan<T>(mf, limit), new Span<T>(row, limit));
                else for (int c = 0; c < limit; c++) row[c] += mf[c * cs];
            }
        }
    }

    // ------------------------------------------------------------------ row operations
    // Short rows (one tile: 4 SIMD vectors): plain Vector<T> loops, which cost less per call than the
    // general TensorPrimitives entry points; the exp runs once over a whole tile instead.

    /// <summary>max of row[0..n) (NaN-propagating as far as Vector.Max allows; −∞ for an all-masked row).</summary>
    private static T RowMax<T>(T* row, int n) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int vc = Vector<T>.Count, i = 0;
        T max = T.NegativeInfinity;
        if (n >= vc)
        {
            var vmax = Vector.Load(row);
            for (i = vc; i + vc <= n; i += vc) vmax = Vector.Max(vmax, Vector.Load(row + i));
            for (int e = 0; e < vc; e++) max = T.Max(max, vmax[e]);
        }
        for (; i < n; i++) max = T.Max(max, row[i]);
        return max;
    }

    /// <summary>Σ row[0..n).</summary>
    private static T RowSum<T>(T* row, int n) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int vc = Vector<T>.Count, i = 0;
        var vsum = Vector<T>.Zero;
        for (; i + vc <= n; i += vc) vsum += Vector.Load(row + i);
        T sum = Vector.Sum(vsum);
        for (; i < n; i++) sum += row[i];
        return sum;
    }

    /// <summary>row[0..n) += value.</summary>
    private static void AddToRow<T>(T* row, int n, T value) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int vc = Vector<T>.Count, i = 0;
        var v = new Vector<T>(value);
        for (; i + vc <= n; i += vc) Vector.Store(Vector.Load(row + i) + v, row + i);
        for (; i < n; i++) row[i] += value;
    }

    /// <summary>row[0..n) *= factor.</summary>
    private static void ScaleRow<T>(T* row, int n, T factor) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int vc = Vector<T>.Count, i = 0;
        var v = new Vector<T>(factor);
        for (; i + vc <= n; i += vc) Vector.Store(Vector.Load(row + i) * v, row + i);
        for (; i < n; i++) row[i] *= factor;
    }

    /// <summary>ds[0..n) = p[0..n) ⊙ (ds[0..n) − delta): softmax backward of one row.</summary>
    private static void SoftmaxGradRow<T>(T* ds, T* p, int n, T delta) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int vc = Vector<T>.Count, i = 0;
        var vd = new Vector<T>(delta);
        for (; i + vc <= n; i += vc) Vector.Store((Vector.Load(ds + i) - vd) * Vector.Load(p + i), ds + i);
        for (; i < n; i++) ds[i] = (ds[i] - delta) * p[i];
    }

    // ------------------------------------------------------------------ packing

    /// <summary>
    /// dst[r·ld + c] = mul·src[r·rs + c·cs] for r &lt; rows, c &lt; cols; zero in columns cols..ld and in rows
    /// rows..paddedRows.
    /// </summary>
    private static void PackRows<T>(T* src, long rs, long cs, int rows, int cols, T* dst, int ld, int paddedRows, T mul)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        for (int r = 0; r < rows; r++)
        {
            T* from = src + r * rs;
            var to = new Span<T>(dst + (long)r * ld, ld);
            if (cs == 1)
            {
                var source = new ReadOnlySpan<T>(from, cols);
                if (mul == T.One) source.CopyTo(to);
                else TensorPrimitives.Multiply(source, mul, to[..cols]);
            }
            else
            {
                for (int c = 0; c < cols; c++) to[c] = mul * from[c * cs];
            }
            to[cols..].Clear();
        }
        if (paddedRows > rows) new Span<T>(dst + (long)rows * ld, (paddedRows - rows) * ld).Clear();
    }

    /// <summary>dst[c·ld + r] = src[r·rs + c·cs] (a transpose) for r &lt; rows, c &lt; cols; zero in columns rows..ld.</summary>
    private static void PackTransposed<T>(T* src, long rs, long cs, int rows, int cols, T* dst, int ld)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        for (int c = 0; c < cols; c++)
        {
            T* from = src + c * cs;
            T* to = dst + (long)c * ld;
            for (int r = 0; r < rows; r++) to[r] = from[r * rs];
            new Span<T>(to + rows, ld - rows).Clear();
        }
    }

    private static int RoundUp(int n, int multiple) => (n + multiple - 1) / multiple * multiple;

    // ------------------------------------------------------------------ micro-kernels

    /// <summary>
    /// C[i, 0..width) (+)= Σ_{p &lt; kLen} A(i, p)·B[p, 0..width) for i &lt; rows, with A(i, p) at
    /// <c>a[i·rsA + p·csA]</c> (any strides: a transposed A is read as it is), B rows at stride
    /// <paramref name="ldb"/> and C rows at stride <paramref name="ldc"/>; <paramref name="width"/> is a
    /// multiple of the vector width (the packed buffers are zero-padded to it). kLen = 0 without
    /// accumulate writes zeros.
    /// </summary>
    internal static void MatMulTile<T, TVec, TS>(int rows, int kLen, T* a, long rsA, long csA, T* b, long ldb, int width, T* c, long ldc, bool accumulate)
        where T : unmanaged, INumber<T> where TVec : unmanaged where TS : ISimd<T, TVec>
    {
        int w = TS.Count;
        for (int i = 0; i < rows; i += MR)
        {
            int r = Math.Min(MR, rows - i);
            T* ai = a + i * rsA;
            T* ci = c + i * ldc;
            int j = 0;
            if (sizeof(TVec) == 64)
                for (; j + 4 * w <= width; j += 4 * w)
                    Kernel4<T, TVec, TS>(r, kLen, ai, rsA, csA, b + j, ldb, ci + j, ldc, accumulate);
            else // 16 vector registers (AVX2, NEON): 4 × 2 accumulators fit, 4 × 4 would spill
                for (; j + 2 * w <= width; j += 2 * w)
                    Kernel2<T, TVec, TS>(r, kLen, ai, rsA, csA, b + j, ldb, ci + j, ldc, accumulate);
            for (; j < width; j += w)
                Kernel1<T, TVec, TS>(r, kLen, ai, rsA, csA, b + j, ldb, ci + j, ldc, accumulate);
        }
    }

    /// <summary>
    /// Up to 4 rows × 4 vectors of C (the AVX-512 kernel: 16 accumulators + 4 B vectors + 1 broadcast of the 32
    /// registers); per step 4 vector loads of B, 4 broadcasts of A, 16 FMAs.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Kernel4<T, TVec, TS>(int rows, int kLen, T* a, long rsA, long csA, T* b, long ldb, T* c, long ldc, bool accumulate)
        where T : unmanaged, INumber<T> where TVec : unmanaged where TS : ISimd<T, TVec>
    {
        int w = TS.Count;
        // Missing rows read row 0 again (valid memory) and are not stored.
        T* a0 = a, a1 = rows > 1 ? a + rsA : a, a2 = rows > 2 ? a + 2 * rsA : a, a3 = rows > 3 ? a + 3 * rsA : a;
        TVec c00 = TS.Zero, c01 = TS.Zero, c02 = TS.Zero, c03 = TS.Zero;
        TVec c10 = TS.Zero, c11 = TS.Zero, c12 = TS.Zero, c13 = TS.Zero;
        TVec c20 = TS.Zero, c21 = TS.Zero, c22 = TS.Zero, c23 = TS.Zero;
        TVec c30 = TS.Zero, c31 = TS.Zero, c32 = TS.Zero, c33 = TS.Zero;
        long off = 0;
        for (int p = 0; p < kLen; p++, off += csA, b += ldb)
        {
            TVec b0 = TS.Load(b), b1 = TS.Load(b + w), b2 = TS.Load(b + 2 * w), b3 = TS.Load(b + 3 * w);
            TVec x = TS.Broadcast(a0[off]);
            c00 = TS.Fma(x, b0, c00); c01 = TS.Fma(x, b1, c01); c02 = TS.Fma(x, b2, c02); c03 = TS.Fma(x, b3, c03);
            x = TS.Broadcast(a1[off]);
            c10 = TS.Fma(x, b0, c10); c11 = TS.Fma(x, b1, c11); c12 = TS.Fma(x, b2, c12); c13 = TS.Fma(x, b3, c13);
            x = TS.Broadcast(a2[off]);
            c20 = TS.Fma(x, b0, c20); c21 = TS.Fma(x, b1, c21); c22 = TS.Fma(x, b2, c22); c23 = TS.Fma(x, b3, c23);
            x = TS.Broadcast(a3[off]);
            c30 = TS.Fma(x, b0, c30); c31 = TS.Fma(x, b1, c31); c32 = TS.Fma(x, b2, c32); c33 = TS.Fma(x, b3, c33);
        }
        Store4<T, TVec, TS>(c, w, c00, c01, c02, c03, accumulate);
        if (rows > 1) Store4<T, TVec, TS>(c + ldc, w, c10, c11, c12, c13, accumulate);
        if (rows > 2) Store4<T, TVec, TS>(c + 2 * ldc, w, c20, c21, c22, c23, accumulate);
        if (rows > 3) Store4<T, TVec, TS>(c + 3 * ldc, w, c30, c31, c32, c33, accumulate);
    }

    /// <summary>Up to 4 rows × 2 vectors of C: the 256- and 128-bit kernel (8 accumulators, 11 registers in use).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Kernel2<T, TVec, TS>(int rows, int kLen, T* a, long rsA, long csA, T* b, long ldb, T* c, long ldc, bool accumulate)
        where T : unmanaged, INumber<T> where TVec : unmanaged where TS : ISimd<T, TVec>
    {
        int w = TS.Count;
        T* a0 = a, a1 = rows > 1 ? a + rsA : a, a2 = rows > 2 ? a + 2 * rsA : a, a3 = rows > 3 ? a + 3 * rsA : a;
        TVec c00 = TS.Zero, c01 = TS.Zero, c10 = TS.Zero, c11 = TS.Zero, c20 = TS.Zero, c21 = TS.Zero, c30 = TS.Zero, c31 = TS.Zero;
        long off = 0;
        for (int p = 0; p < kLen; p++, off += csA, b += ldb)
        {
            TVec b0 = TS.Load(b), b1 = TS.Load(b + w);
            TVec x = TS.Broadcast(a0[off]);
            c00 = TS.Fma(x, b0, c00); c01 = TS.Fma(x, b1, c01);
            x = TS.Broadcast(a1[off]);
            c10 = TS.Fma(x, b0, c10); c11 = TS.Fma(x, b1, c11);
            x = TS.Broadcast(a2[off]);
            c20 = TS.Fma(x, b0, c20); c21 = TS.Fma(x, b1, c21);
            x = TS.Broadcast(a3[off]);
            c30 = TS.Fma(x, b0, c30); c31 = TS.Fma(x, b1, c31);
        }
        Store1<T, TVec, TS>(c, c00, accumulate); Store1<T, TVec, TS>(c + w, c01, accumulate);
        if (rows > 1) { Store1<T, TVec, TS>(c + ldc, c10, accumulate); Store1<T, TVec, TS>(c + ldc + w, c11, accumulate); }
        if (rows > 2) { Store1<T, TVec, TS>(c + 2 * ldc, c20, accumulate); Store1<T, TVec, TS>(c + 2 * ldc + w, c21, accumulate); }
        if (rows > 3) { Store1<T, TVec, TS>(c + 3 * ldc, c30, accumulate); Store1<T, TVec, TS>(c + 3 * ldc + w, c31, accumulate); }
    }

    /// <summary>Up to 4 rows × 1 vector of C (the columns left over after whole 4- or 2-vector blocks).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Kernel1<T, TVec, TS>(int rows, int kLen, T* a, long rsA, long csA, T* b, long ldb, T* c, long ldc, bool accumulate)
        where T : unmanaged, INumber<T> where TVec : unmanaged where TS : ISimd<T, TVec>
    {
        T* a0 = a, a1 = rows > 1 ? a + rsA : a, a2 = rows > 2 ? a + 2 * rsA : a, a3 = rows > 3 ? a + 3 * rsA : a;
        TVec c0 = TS.Zero, c1 = TS.Zero, c2 = TS.Zero, c3 = TS.Zero;
        long off = 0;
        for (int p = 0; p < kLen; p++, off += csA, b += ldb)
        {
            TVec b0 = TS.Load(b);
            c0 = TS.Fma(TS.Broadcast(a0[off]), b0, c0);
            c1 = TS.Fma(TS.Broadcast(a1[off]), b0, c1);
            c2 = TS.Fma(TS.Broadcast(a2[off]), b0, c2);
            c3 = TS.Fma(TS.Broadcast(a3[off]), b0, c3);
        }
        Store1<T, TVec, TS>(c, c0, accumulate);
        if (rows > 1) Store1<T, TVec, TS>(c + ldc, c1, accumulate);
        if (rows > 2) Store1<T, TVec, TS>(c + 2 * ldc, c2, accumulate);
        if (rows > 3) Store1<T, TVec, TS>(c + 3 * ldc, c3, accumulate);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store4<T, TVec, TS>(T* c, int w, TVec v0, TVec v1, TVec v2, TVec v3, bool accumulate)
        where T : unmanaged where TVec : unmanaged where TS : ISimd<T, TVec>
    {
        if (accumulate)
        {
            v0 = TS.Add(v0, TS.Load(c));
            v1 = TS.Add(v1, TS.Load(c + w));
            v2 = TS.Add(v2, TS.Load(c + 2 * w));
            v3 = TS.Add(v3, TS.Load(c + 3 * w));
        }
        TS.Store(v0, c);
        TS.Store(v1, c + w);
        TS.Store(v2, c + 2 * w);
        TS.Store(v3, c + 3 * w);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store1<T, TVec, TS>(T* c, TVec v, bool accumulate)
        where T : unmanaged where TVec : unmanaged where TS : ISimd<T, TVec>
    {
        if (accumulate) v = TS.Add(v, TS.Load(c));
        TS.Store(v, c);
    }

    // ------------------------------------------------------------------ scratch memory

    /// <summary>
    /// Per-item scratch buffers from the host allocator (so they count in its peak bytes), 64-byte aligned,
    /// returned when disposed.
    /// </summary>
    private sealed class Scratch : IDisposable
    {
        private readonly List<CpuBuffer> _buffers = [];

        public T* Get<T>(long count) where T : unmanaged
        {
            var buffer = CpuAllocator.Shared.Allocate(Math.Max(count, 1) * sizeof(T));
            _buffers.Add(buffer);
            return (T*)buffer.Pointer;
        }

        public void Dispose()
        {
            foreach (var buffer in _buffers) buffer.Dispose();
            _buffers.Clear();
        }
    }
}
