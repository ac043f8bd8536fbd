using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Engine.Distillation;

/// <summary>
/// Per-kind constants of one row: the mixture weights and scale factors each divergence reads
/// (see each <see cref="IDivergenceElement"/>); BD-KD's weight changes per row.
/// </summary>
internal struct RowConstants
{
    public float A, B, C, D;
}

/// <summary>
/// One divergence, per class: from log q, q, log p, p (tempered, normalized) the class's contribution to
/// the row's divergence D and the class's a = q ⊙ ∂D/∂q (the gradient with respect to log q). The
/// gradient with respect to the tempered student logits s/T is then a − q·Σa (through the softmax).
/// Forward KL is the exception: <see cref="FusedRows"/> sums its loss in the exps pass and writes q − p
/// directly, so <see cref="ForwardKlElement"/> only states its per-class form (a = q − p, already projected).
/// </summary>
internal interface IDivergenceElement
{
    static abstract TV Eval<TV, TS>(TV lq, TV q, TV lp, TV p, in RowConstants k, out TV a)
        where TV : struct where TS : ISimd<TV>;
}

/// <summary>KL(p‖q): D += p·(log p − log q) (0 where p = 0); gradient wrt s/T: q − p.</summary>
internal readonly struct ForwardKlElement : IDivergenceElement
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TV Eval<TV, TS>(TV lq, TV q, TV lp, TV p, in RowConstants k, out TV a) where TV : struct where TS : ISimd<TV>
    {
        a = TS.Sub(q, p);
        return TS.IfPositive(p, TS.Mul(p, TS.Sub(lp, lq)));
    }
}

/// <summary>KL(q‖p): D += q·(log q − log p); a = the same term (Σa = D).</summary>
internal readonly struct ReverseKlElement : IDivergenceElement
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TV Eval<TV, TS>(TV lq, TV q, TV lp, TV p, in RowConstants k, out TV a) where TV : struct where TS : ISimd<TV>
    {
        a = TS.IfPositive(q, TS.Mul(q, TS.Sub(lq, lp)));
        return a;
    }
}

/// <summary>JSD_β, A = β, B = 1 − β: M = βp + (1−β)q; D += β·p(log p − log M) + (1−β)·q(log q − log M); a = (1−β)·q(log q − log M).</summary>
internal readonly struct JsdElement : IDivergenceElement
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TV Eval<TV, TS>(TV lq, TV q, TV lp, TV p, in RowConstants k, out TV a) where TV : struct where TS : ISimd<TV>
    {
        var vb = TS.Splat(k.B);
        var lm = LogMix.Of<TV, TS>(TS.Fma(TS.Splat(k.A), p, TS.Mul(vb, q)), lp, lq, k.A, k.B);
        var tp = TS.IfPositive(p, TS.Mul(p, TS.Sub(lp, lm)));
        var tq = TS.IfPositive(q, TS.Mul(q, TS.Sub(lq, lm)));
        a = TS.Mul(vb, tq);
        return TS.Fma(TS.Splat(k.A), tp, a);
    }
}

/// <summary>
/// log M for a mixture M = a·p + b·q (a, b &gt; 0). Where every lane's M is at least <see cref="Tiny"/> this is
/// log M of the probabilities (one log). Otherwise — both probabilities denormal or 0 in float32 while log p and
/// log q are finite, as for most classes of ±1e4 logits — log(a·p + b·q) would be −∞ or inexact and
/// p·(log p − log M) 0·∞ or ∞ instead of a tiny finite term, so that vector takes the log domain:
/// max + log(a·e^(log p − max) + b·e^(log q − max)) (two exps more). Where both are −∞ (a masked class) the
/// result is −∞ or NaN; every caller multiplies it by a probability that is 0 there and masks it with IfPositive.
/// </summary>
internal static class LogMix
{
    /// <summary>Below this M the probability form is not trusted (far above float32's denormals, 1.2e−38).</summary>
    public const float Tiny = 1e-30f;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TV Of<TV, TS>(TV m, TV lp, TV lq, float a, float b) where TV : struct where TS : ISimd<TV>
    {
        if (!TS.AnyBelow(m, Tiny)) return TS.Log(m);
        var mx = TS.Max(lp, lq);
        var sum = TS.Fma(TS.Splat(a), TS.Exp(TS.Sub(lp, mx)), TS.Mul(TS.Splat(b), TS.Exp(TS.Sub(lq, mx))));
        return TS.Add(mx, TS.Log(sum));
    }
}

/// <summary>Total variation: D += ½|p − q|; a = ½·q·sign(q − p) (sign 0 where equal).</summary>
internal readonly struct TotalVariationElement : IDivergenceElement
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TV Eval<TV, TS>(TV lq, TV q, TV lp, TV p, in RowConstants k, out TV a) where TV : struct where TS : ISimd<TV>
    {
        var half = TS.Splat(0.5f);
        a = TS.Mul(TS.Mul(half, q), TS.SignOfDifference(q, p));
        return TS.Mul(half, TS.Abs(TS.Sub(p, q)));
    }
}

/// <summary>Skew KL, A = λ, B = 1 − λ: M = λp + (1−λ)q; D += p(log p − log M); a = −(1−λ)·p·q/M.</summary>
internal readonly struct SkewKlElement : IDivergenceElement
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TV Eval<TV, TS>(TV lq, TV q, TV lp, TV p, in RowConstants k, out TV a) where TV : struct where TS : ISimd<TV>
    {
        var m = TS.Fma(TS.Splat(k.A), p, TS.Mul(TS.Splat(k.B), q));
        a = TS.IfPositive(m, TS.Div(TS.Mul(TS.Splat(-k.B), TS.Mul(p, q)), m));
        return TS.IfPositive(p, TS.Mul(p, TS.Sub(lp, LogMix.Of<TV, TS>(m, lp, lq, k.A, k.B))));
    }
}

/// <summary>Skew reverse KL, A = 1 − λ, B = λ: M = (1−λ)p + λq; D += q(log q − log M); a = q(log q − log M) − λ·q²/M.</summary>
internal readonly struct SkewReverseKlElement : IDivergenceElement
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TV Eval<TV, TS>(TV lq, TV q, TV lp, TV p, in RowConstants k, out TV a) where TV : struct where TS : ISimd<TV>
    {
        var vb = TS.Splat(k.B);
        var m = TS.Fma(TS.Splat(k.A), p, TS.Mul(vb, q));
        var term = TS.IfPositive(q, TS.Mul(q, TS.Sub(lq, LogMix.Of<TV, TS>(m, lp, lq, k.A, k.B))));
        a = TS.Sub(term, TS.IfPositive(m, TS.Div(TS.Mul(vb, TS.Mul(q, q)), m)));
        return term;
    }
}

/// <summary>
/// α-divergence, A = α, B = 1 − α, C = 1/(α(1−α)), D = −1/α: e = exp(α log p + (1−α) log q) (0 where p = q = 0);
/// D += (q − e)·C (Σq = 1, so this is (1 − Σe)/(α(1−α)) without forming 1 − Σe); a = −e/α.
/// </summary>
internal readonly struct AlphaElement : IDivergenceElement
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TV Eval<TV, TS>(TV lq, TV q, TV lp, TV p, in RowConstants k, out TV a) where TV : struct where TS : ISimd<TV>
    {
        var e = TS.IfPositive(TS.Max(p, q), TS.Exp(TS.Fma(TS.Splat(k.A), lp, TS.Mul(TS.Splat(k.B), lq))));
        a = TS.Mul(TS.Splat(k.D), e);
        return TS.Mul(TS.Splat(k.C), TS.Sub(q, e));
    }
}

/// <summary>BD-KD, A = w, B = 1 − w: D += w·p(log p − log q) + (1−w)·q(log q − log p); a = −w·p + (1−w)·q(log q − log p).</summary>
internal readonly struct BdKdElement : IDivergenceElement
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TV Eval<TV, TS>(TV lq, TV q, TV lp, TV p, in RowConstants k, out TV a) where TV : struct where TS : ISimd<TV>
    {
        var diff = TS.Sub(lq, lp);
        var f = TS.IfPositive(p, TS.Mul(p, diff));
        var r = TS.IfPositive(q, TS.Mul(q, diff));
        var vb = TS.Splat(k.B);
        a = TS.Sub(TS.Mul(vb, r), TS.Mul(TS.Splat(k.A), p));
        return TS.Sub(TS.Mul(vb, r), TS.Mul(TS.Splat(k.A), f));
    }
}

/// <summary>
/// Per-thread scratch of <see cref="FusedRows"/>, reused across rows and calls: the row's two exps buffers
/// (e_s, e_t) and per-chunk maxima and sums.
/// </summary>
internal sealed unsafe class RowWorkspace
{
    private float[] _rows = [];
    private double[] _chunks = [];
    private int _stride, _chunkCap;

    /// <summary>Makes room for rows of <paramref name="v"/> classes (keeps the buffers when they are large enough).</summary>
    public void Ensure(int v)
    {
        int stride = (v + 15) / 16 * 16, chunks = FusedRows.MaxChunks(v);
        if (stride > _stride)
        {
            _rows = GC.AllocateUninitializedArray<float>(2 * stride + 16, pinned: true);
            _stride = stride;
        }
        if (chunks > _chunkCap)
        {
            _chunks = GC.AllocateUninitializedArray<double>(FusedRows.ChunkFields * chunks, pinned: true);
            _chunkCap = chunks;
        }
    }

    /// <summary>e_s (64-byte aligned; pinned array).</summary>
    public float* Es => (float*)(((nint)Unsafe.AsPointer(ref _rows[0]) + 63) & ~(nint)63);

    /// <summary>e_t (64-byte aligned).</summary>
    public float* Et => Es + _stride;

    /// <summary>Per-chunk maxima and sums (<see cref="FusedRows.ChunkFields"/> doubles per chunk).</summary>
    public double* Chunks => (double*)Unsafe.AsPointer(ref _chunks[0]);
}

/// <summary>
/// The fused row routine: one row of student logits s and teacher t (float32, contiguous, V classes) in,
/// the row's divergence (double) and the gradient with respect to s out.
/// <para>The row is cut into chunks of <see cref="Chunk"/> classes (the first one also takes the classes before the
/// gradient row's first vector-aligned element). Each chunk is read from main memory once: e_s = 2^((s − r_s)·log2 e/T)
/// and e_t likewise go into the row buffers, with the chunk's sums Z_s, Z_t (and forward KL's A = Σ e_t·(y_t − y_s),
/// y the exponents) — the only exps of the two softmaxes (2 per class, never recomputed). The reference r is the max
/// of the row's first chunk (from a max loop over it), not the row's max: exps above 1 are fine, and only a chunk whose
/// sum exceeds <see cref="RedoAbove"/> (logits far above the reference) is redone against its own max, which then
/// becomes the reference. So there is no separate max pass. The loop prefetches s and t <see cref="PrefetchAhead"/>
/// classes ahead (into the next chunks, and past the row's end into the
/// next row's start), so main memory is read while the exps are computed.</para>
/// <para>Then, in double: the row's reference M (the largest chunk reference among chunks of nonzero sum), chunk weights
/// w_j = e^((r_j − M)/T) (≤ 1; 0 for a chunk of sum 0, e.g. all −∞), Z = Σ w_j Z_j (M + T·log Z is the log-sum-exp
/// whatever M is). Forward KL: D = (1/Z_t)·Σ_j w^t_j·[A_j·ln 2 + Z^t_j·((r^t_j − M_t)/T − (r^s_j − M_s)/T)]
/// − log Z_t + log Z_s, and the gradient k·(q − p) = (k·w^s_j/Z_s)·e_s − (k·w^t_j/Z_t)·e_t. The other kinds run a
/// terms pass (from L2): log q = (s − M_s)/T − log Z_s, q = e_s·w^s_j/Z_s (the same for p), the divergence's
/// per-class term summed into D and its a = q ⊙ ∂D/∂q written over e_t; their gradient is k·(a − q·Σa). The
/// gradient is written last, with non-temporal stores (no read-for-ownership of its cache lines).</para>
/// <para>Memory traffic per class: read s and t once, write the gradient once (12 bytes); everything else is
/// L1/L2. Numerics: exps and per-class terms in float32 (<see cref="ISimd{TV}.Exp2"/>, ≤ ~1 ulp); sums in float32
/// lanes per chunk, the chunk totals, weights, log Z, 1/Z and D in double, so a sum's error stays ~(Chunk/lanes)·ε
/// relative. Forward KL's terms are each of the size of the logit spread /T, so its D has an absolute error of about
/// ε·(that spread) — exactly 0 when s = t. A NaN logit makes its row's loss NaN. A teacher given as log-probabilities
/// uses reference 0, T 1 and Z 1 (it is used as given, not renormalized).</para>
/// </summary>
internal static unsafe class FusedRows
{
    /// <summary>
    /// Classes per chunk (a multiple of every vector width): each float32 lane of a chunk's sums adds 64 terms before
    /// the chunk total goes to double, and the per-chunk work (sums across lanes, bookkeeping) stays a few percent.
    /// </summary>
    private const int Chunk = 1024;

    /// <summary>
    /// How far ahead (classes) the exps loop prefetches s and t: two 4 KB pages of each. The hardware prefetcher does
    /// not cross pages, so without this each page's first lines were waited for (kd-loss [2048, 32000] on 2 threads:
    /// 26.8 ms without against 14–15 ms with, same run); 1024 to 8192 ahead and prefetcht0/t1/t2/nta measured alike.
    /// </summary>
    private const int PrefetchAhead = 2048;

    /// <summary>Doubles per chunk in <see cref="RowWorkspace.Chunks"/>: reference of s and t, Z_s, Z_t, A.</summary>
    internal const int ChunkFields = 5;

    /// <summary>The most chunks a row of <paramref name="v"/> classes is cut into (whatever its alignment).</summary>
    internal static int MaxChunks(int v) => v / Chunk + 2;

    /// <summary>
    /// Computes one row; returns its divergence D (not yet scaled). When <paramref name="g"/> is not null it receives
    /// gcoef·∂D/∂s (it may equal <paramref name="s"/>: the row is read completely before its gradient is written).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static double Run<TK>(RowWorkspace w, float* s, float* t, float* g, int v, float invT, bool teacherLogits, in RowConstants k, float gcoef)
        where TK : IDivergenceElement
    {
        if (Vector512.IsHardwareAccelerated) return Run<Vector512<float>, Simd512, TK>(w, s, t, g, v, invT, teacherLogits, k, gcoef);
        if (Vector256.IsHardwareAccelerated) return Run<Vector256<float>, Simd256, TK>(w, s, t, g, v, invT, teacherLogits, k, gcoef);
        return Run<float, Simd1, TK>(w, s, t, g, v, invT, teacherLogits, k, gcoef);
    }

    /// <summary>Classes before the first element of <paramref name="g"/> aligned to the vector width (≤ v; 0 without g).</summary>
    private static int Head<TV, TS>(float* g, int v) where TV : struct where TS : ISimd<TV>
    {
        if (g == null) return 0;
        nuint bytes = (nuint)TS.Count * sizeof(float);
        return Math.Min(v, (int)((bytes - (nuint)g % bytes) % bytes / sizeof(float)));
    }

    private static int ChunkCount(int v, int head) => v <= head + Chunk ? 1 : 1 + (v - head - 1) / Chunk;

    /// <summary>Chunk j of a row: [b, e), with its vector part [hb, ve) (hb aligned for the gradient's stores).</summary>
    private static void Bounds<TV, TS>(int j, int v, int head, out int b, out int e, out int hb, out int ve) where TV : struct where TS : ISimd<TV>
    {
        b = j == 0 ? 0 : head + j * Chunk;
        e = Math.Min(v, head + (j + 1) * Chunk);
        hb = j == 0 ? head : b;
        ve = hb + (e - hb) / TS.Count * TS.Count;
    }

    private static double Run<TV, TS, TK>(RowWorkspace w, float* s, float* t, float* g, int v, float invT, bool teacherLogits, in RowConstants k, float gcoef)
        where TV : struct where TS : ISimd<TV> where TK : IDivergenceElement
    {
        bool forwardKl = typeof(TK) == typeof(ForwardKlElement);
        float* es = w.Es, et = w.Et;
        double* cd = w.Chunks;
        int head = Head<TV, TS>(g, v), chunks = ChunkCount(v, head);
        float invTt = teacherLogits ? invT : 1f;
        // Exponents in base 2: y = (x − m)·(log2 e/T).
        float cs = (float)(invT * Log2E), ct = (float)(invTt * Log2E);

        // The chunks: exps against a reference (the max of the first chunk that has a finite one; for the chunks up to it,
        // their own max) and their sums, in one read of the chunk. A chunk whose sum exceeds RedoAbove (some exp above
        // it, +∞ or NaN: its logits are far above the reference) is redone against its own max, which then becomes the
        // reference for the chunks after it: rare, as a row's first chunk is usually within a few units of its max.
        float runS = float.NegativeInfinity, runT = teacherLogits ? float.NegativeInfinity : 0f;
        for (int j = 0; j < chunks; j++)
        {
            Bounds<TV, TS>(j, v, head, out int b, out int e, out int hb, out int ve);
            // Nothing finite before: the chunk's own max (0 for a chunk all −∞, whose exps are then exactly 0).
            float rs = runS > float.NegativeInfinity ? runS : MaxOf<TV, TS>(s, b, hb, ve, e);
            float rt = !teacherLogits || runT > float.NegativeInfinity ? runT : MaxOf<TV, TS>(t, b, hb, ve, e);
            runS = Math.Max(runS, rs);
            runT = Math.Max(runT, rt);
            rs = NonInfinite(rs);
            rt = NonInfinite(rt);
            ChunkExps<TV, TS, TK>(s, t, es, et, b, e, hb, ve, rs, rt, cs, ct, out double zs, out double zt, out double a);
            bool redoS = !(zs <= RedoAbove), redoT = teacherLogits && !(zt <= RedoAbove);
            if (redoS || redoT)
            {
                if (redoS) runS = Math.Max(runS, rs = NonInfinite(MaxOf<TV, TS>(s, b, hb, ve, e)));
                if (redoT) runT = Math.Max(runT, rt = NonInfinite(MaxOf<TV, TS>(t, b, hb, ve, e)));
                ChunkExps<TV, TS, TK>(s, t, es, et, b, e, hb, ve, rs, rt, cs, ct, out zs, out zt, out a);
            }
            double* c = cd + ChunkFields * j;
            c[0] = rs;
            c[1] = rt;
            c[2] = zs;
            c[3] = zt;
            c[4] = a;
        }

        // The row's references M: the largest chunk reference among the chunks whose sum is not 0 (the others hold no
        // probability: all −∞, or far below the rest). Chunk weights e^((r_j − M)/T) ≤ 1 (into c[0], c[1]; 0 for a chunk
        // of sum 0), Z; forward KL's per-chunk loss terms (into c[4]). Consecutive chunks mostly share their reference,
        // so a weight is computed once per reference.
        double mS = double.NegativeInfinity, mT = teacherLogits ? double.NegativeInfinity : 0;
        for (int j = 0; j < chunks; j++)
        {
            double* c = cd + ChunkFields * j;
            if (c[2] != 0) mS = Math.Max(mS, c[0]);
            if (teacherLogits && c[3] != 0) mT = Math.Max(mT, c[1]);
        }
        double sumZs = 0, sumZt = 0, lastRs = double.NaN, lastWs = 0, lastRt = double.NaN, lastWt = 0;
        for (int j = 0; j < chunks; j++)
        {
            double* c = cd + ChunkFields * j;
            double refS = c[0], refT = c[1];
            if (refS != lastRs) (lastRs, lastWs) = (refS, Math.Exp((refS - mS) * invT));
            if (teacherLogits && refT != lastRt) (lastRt, lastWt) = (refT, Math.Exp((refT - mT) * invT));
            double ws = c[2] == 0 ? 0 : lastWs;
            double wt = !teacherLogits ? 1 : c[3] == 0 ? 0 : lastWt;
            if (forwardKl)
            {
                // w^t_j·[A_j·ln 2 + Z^t_j·((r^t_j − M_t)/T − (r^s_j − M_s)/T)], 0 for a teacher chunk of sum 0.
                double shift = (teacherLogits ? (refT - mT) * invTt : 0) - (refS - mS) * invT;
                c[4] = wt == 0 ? 0 : wt * (c[4] * Ln2 + c[3] * shift);
            }
            c[0] = ws;
            c[1] = wt;
            sumZs += ws * c[2];
            sumZt += wt * c[3];
        }
        double lzs = Math.Log(sumZs), lzt = teacherLogits ? Math.Log(sumZt) : 0, rzs = 1 / sumZs, rzt = teacherLogits ? 1 / sumZt : 1;

        double d = 0, sumA = 0;
        if (forwardKl)
        {
            for (int j = 0; j < chunks; j++) d += cd[ChunkFields * j + 4];
            d = d * rzt - lzt + lzs;
        }
        else
        {
            // The terms pass: the divergence and a.
            for (int j = 0; j < chunks; j++)
            {
                Bounds<TV, TS>(j, v, head, out int b, out int e, out int hb, out int ve);
                var norm = new Normalizers((float)mS, (float)mT, invT, invTt, (float)lzs, (float)lzt,
                    (float)(cd[ChunkFields * j] * rzs), (float)(cd[ChunkFields * j + 1] * rzt));
                if (hb > b) Terms<float, Simd1, TK>(s, t, es, et, b, hb, norm, k, ref d, ref sumA);
                if (ve > hb) Terms<TV, TS, TK>(s, t, es, et, hb, ve, norm, k, ref d, ref sumA);
                if (e > ve) Terms<float, Simd1, TK>(s, t, es, et, ve, e, norm, k, ref d, ref sumA);
            }
        }
        if (g == null) return d;

        // The gradient, streamed: forward KL k·(q − p) = c1_j·e_s + c2_j·e_t; the others k·(a − q·Σa), a in e_t.
        for (int j = 0; j < chunks; j++)
        {
            Bounds<TV, TS>(j, v, head, out int b, out int e, out int hb, out int ve);
            double ws = cd[ChunkFields * j], wt = cd[ChunkFields * j + 1];
            float c1 = (float)(forwardKl ? gcoef * ws * rzs : -gcoef * sumA * ws * rzs);
            float c2 = (float)(forwardKl ? -gcoef * wt * rzt : gcoef);
            if (hb > b) Combine<float, Simd1>(g, es, et, b, hb, c1, c2);
            if (ve > hb) Combine<TV, TS>(g, es, et, hb, ve, c1, c2);
            if (e > ve) Combine<float, Simd1>(g, es, et, ve, e, c1, c2);
        }
        if (System.Runtime.Intrinsics.X86.Sse.IsSupported) System.Runtime.Intrinsics.X86.Sse.StoreFence();
        return d;
    }

    private const double Log2E = 1.4426950408889634, Ln2 = 0.6931471805599453;

    /// <summary>A chunk's max as its reference: 0 for −∞ (a chunk all masked).</summary>
    private static float NonInfinite(float max) => max == float.NegativeInfinity ? 0f : max;

    /// <summary>
    /// The largest sum of a chunk's exps that is kept (2^64); above it the chunk is redone against its own max. So every
    /// kept exp is at most 2^64, a row's Z at most ~2^80, and the gradient's coefficients k·w/Z stay far from float32's
    /// denormals.
    /// </summary>
    private const double RedoAbove = 18446744073709551616.0;

    /// <summary>One chunk's exps and sums over its scalar head, vector part and scalar tail.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void ChunkExps<TV, TS, TK>(float* s, float* t, float* es, float* et, int b, int e, int hb, int ve, float rs, float rt,
        float cs, float ct, out double zs, out double zt, out double a)
        where TV : struct where TS : ISimd<TV> where TK : IDivergenceElement
    {
        zs = zt = a = 0;
        if (hb > b) Exps<float, Simd1, TK>(s, t, es, et, b, hb, rs, rt, cs, ct, ref zs, ref zt, ref a);
        if (ve > hb) Exps<TV, TS, TK>(s, t, es, et, hb, ve, rs, rt, cs, ct, ref zs, ref zt, ref a);
        if (e > ve) Exps<float, Simd1, TK>(s, t, es, et, ve, e, rs, rt, cs, ct, ref zs, ref zt, ref a);
    }

    private readonly record struct Normalizers(float Ms, float Mt, float InvT, float InvTt, float Lzs, float Lzt, float Rzs, float Rzt);

    /// <summary>Max over [b, e) (vector part [hb, ve)): two running maxima of one-instruction vmaxps, so the loop is not one dependent chain.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static float MaxOf<TV, TS>(float* x, int b, int hb, int ve, int e) where TV : struct where TS : ISimd<TV>
    {
        float m = float.NegativeInfinity;
        for (int i = b; i < hb; i++) m = Simd1.MaxFast(m, x[i]);
        if (ve > hb)
        {
            TV m0 = TS.Load(x + hb), m1 = m0;
            int i = hb + TS.Count;
            for (; i + TS.Count < ve; i += 2 * TS.Count)
            {
                m0 = TS.MaxFast(m0, TS.Load(x + i));
                m1 = TS.MaxFast(m1, TS.Load(x + i + TS.Count));
            }
            if (i < ve) m0 = TS.MaxFast(m0, TS.Load(x + i));
            m = Simd1.MaxFast(m, TS.MaxAcross(TS.MaxFast(m0, m1)));
        }
        for (int i = ve; i < e; i++) m = Simd1.MaxFast(m, x[i]);
        return m;
    }

    /// <summary>
    /// e = 2^((x − r)·c) of s and t over [from, to) into the buffers; their sums (and forward KL's A) added to the refs,
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)] // its own register allocation: the loop keeps every pointer and constant in registers
    private static void Exps<TV, TS, TK>(float* s, float* t, float* es, float* et, int from, int to, float rs, float rt, float cs, float ct,
        ref double zs, ref double zt, ref double a) where TV : struct where TS : ISimd<TV> where TK : IDivergenceElement
    {
        bool forwardKl = typeof(TK) == typeof(ForwardKlElement); // a constant per instantiation
        TV vrs = TS.Splat(rs), vrt = TS.Splat(rt), vcs = TS.Splat(-cs), vct = TS.Splat(-ct);
        TV accS = TS.Splat(0), accT = TS.Splat(0), accA = TS.Splat(0);
        var c = TS.Exp2Setup();
        for (nint i = from; i < to; i += TS.Count)
        {
            if (TS.Count > 1 && System.Runtime.Intrinsics.X86.Sse.IsSupported)
            {
                // One cache line of each per 16 classes; the hardware prefetcher alone leaves each chunk's first read exposed.
                System.Runtime.Intrinsics.X86.Sse.Prefetch0(s + i + PrefetchAhead);
                System.Runtime.Intrinsics.X86.Sse.Prefetch0(t + i + PrefetchAhead);
            }
            // (r − x)·(−c), as (x − r)·c: the load folds into the subtraction as its memory operand.
            var ys = TS.Mul(TS.Sub(vrs, TS.Load(s + i)), vcs);
            var yt = TS.Mul(TS.Sub(vrt, TS.Load(t + i)), vct);
            var eS = TS.Exp2(ys, c);
            var eT = TS.Exp2(yt, c);
            TS.Store(es + i, eS);
            TS.Store(et + i, eT);
            accS = TS.Add(accS, eS);
            accT = TS.Add(accT, eT);
            // e_t·(y_t − y_s); a class masked in both (−∞ − (−∞) = NaN) or only in the teacher (−∞ − finite) has
            // e_t = 0: SubNoNaN makes the difference finite, so the term is 0·finite = 0, not NaN.
            if (forwardKl) accA = TS.Fma(eT, TS.SubNoNaN(yt, ys, c), accA);
        }
        zs += TS.Sum(accS);
        zt += TS.Sum(accT);
        if (forwardKl) a += TS.Sum(accA);
    }

    [MethodImpl(MethodImplOptions.NoInlining)] // its own register allocation: the loop keeps every pointer and constant in registers
    private static void Terms<TV, TS, TK>(float* s, float* t, float* es, float* et, int from, int to, in Normalizers n, in RowConstants k,
        ref double d, ref double sumA) where TV : struct where TS : ISimd<TV> where TK : IDivergenceElement
    {
        if (from >= to) return;
        TV vms = TS.Splat(n.Ms), vmt = TS.Splat(n.Mt), vit = TS.Splat(n.InvT), vitt = TS.Splat(n.InvTt);
        TV vlzs = TS.Splat(n.Lzs), vlzt = TS.Splat(n.Lzt), vrzs = TS.Splat(n.Rzs), vrzt = TS.Splat(n.Rzt);
        TV accD = TS.Splat(0), accA = TS.Splat(0);
        for (int i = from; i < to; i += TS.Count)
        {
            var lq = TS.Sub(TS.Mul(TS.Sub(TS.Load(s + i), vms), vit), vlzs);
            var lp = TS.Sub(TS.Mul(TS.Sub(TS.Load(t + i), vmt), vitt), vlzt);
            var q = TS.Mul(TS.Load(es + i), vrzs);
            var p = TS.Mul(TS.Load(et + i), vrzt);
            accD = TS.Add(accD, TK.Eval<TV, TS>(lq, q, lp, p, k, out var a));
            TS.Store(et + i, a);
            accA = TS.Add(accA, a);
        }
        d += TS.Sum(accD);
        sumA += TS.Sum(accA);
    }

    /// <summary>g = c1·e_s + c2·e_t over [from, to), non-temporal stores (g + from is vector-aligned for the vector call).</summary>
    [MethodImpl(MethodImplOptions.NoInlining)] // its own register allocation: the loop keeps every pointer and constant in registers
    private static void Combine<TV, TS>(float* g, float* es, float* et, int from, int to, float c1, float c2) where TV : struct where TS : ISimd<TV>
    {
        TV v1 = TS.Splat(c1), v2 = TS.Splat(c2);
        for (nint i = from; i < to; i += TS.Count)
            TS.StoreStream(g + i, TS.Fma(TS.Load(es + i), v1, TS.Mul(TS.Load(et + i), v2)));
    }
}
