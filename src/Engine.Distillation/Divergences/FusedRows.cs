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
        var lm = LogMix.Of<TV, TS>(lp, lq, k.A, k.B);
        var tp = TS.IfPositive(p, TS.Mul(p, TS.Sub(lp, lm)));
        var tq = TS.IfPositive(q, TS.Mul(q, TS.Sub(lq, lm)));
        a = TS.Mul(vb, tq);
        return TS.Fma(TS.Splat(k.A), tp, a);
    }
}

/// <summary>
/// log M for a mixture M = a·p + b·q (a, b &gt; 0), from log p and log q in the log domain:
/// max + log(a·e^(log p − max) + b·e^(log q − max)). log(a·p + b·q) on the probabilities would give −∞ where both
/// are denormal or 0 in float32 while log p and log q are finite (logits ±1e4: most classes), and then
/// p·(log p − log M) is 0·∞ or ∞ instead of a tiny finite term. Costs one exp more than the probability form.
/// Where both are −∞ (a masked class) the result is NaN; every caller multiplies it by a probability that is
/// 0 there and masks it with IfPositive.
/// </summary>
internal static class LogMix
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TV Of<TV, TS>(TV lp, TV lq, float a, float b) where TV : struct where TS : ISimd<TV>
    {
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
        return TS.IfPositive(p, TS.Mul(p, TS.Sub(lp, LogMix.Of<TV, TS>(lp, lq, k.A, k.B))));
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
        var term = TS.IfPositive(q, TS.Mul(q, TS.Sub(lq, LogMix.Of<TV, TS>(lp, lq, k.A, k.B))));
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
/// The fused row routine: one row of student logits s and teacher t (float32, contiguous, V classes) in,
/// the row's divergence (double) and the gradient with respect to s out.
/// <para>The row is cut into chunks of <see cref="Chunk"/> classes (4 KB per tensor, L1-sized). Passes:</para>
/// <list type="number">
/// <item>per chunk c, while the chunk is in L1: its maxima m_c of s and of t (teacher logits only), then
///   e'_s = exp((s − m_sc)/T) and e'_t = exp((t − m_tc)/T) into the per-thread row buffers and the chunk's sums
///   Z'_c = Σ e'. These are the only exps of the two softmaxes (2 per class, never recomputed), and the only pass
///   that reads main memory: the exps run on data just loaded, so memory streams while the core computes (a
///   separate max pass over the row would leave the core waiting on memory and then memory idle during the exps).
///   Forward KL also sums A'_c = Σ e'_t·(x'_t − x'_s) (x' = (x − m_c)/T). The row's max M = max m_c; the chunk's
///   weight w_c = exp((m_c − M)/T) turns chunk-relative into row-relative values: e = w_c·e', Z = Σ w_c·Z'_c, and
///   forward KL's A = Σ_c w_tc·(A'_c + Z'_tc·(δ_tc − δ_sc)) with δ_c = (m_c − M)/T;</item>
/// <item>(not forward KL) log q = x'_s + δ_sc − log Z_s, q = w_sc·e'_s/Z_s (and the same for p); the divergence's
///   per-class term summed into D, and its a = q ⊙ ∂D/∂q written over e'_t;</item>
/// <item>the gradient, written once with non-temporal stores (no read-for-ownership of its cache lines):
///   forward KL k·(q − p) = (k·w_sc/Z_s)·e'_s − (k·w_tc/Z_t)·e'_t; the others k·(a − q·Σa).</item>
/// </list>
/// <para>Memory traffic per class: read s and t once, write the gradient once (12 bytes); everything else is
/// L1/L2. Numerics: exps and per-class terms in float32 (the fast exp of <see cref="FastExp"/>, ≤ ~1 ulp); sums
/// (Z', A', D, Σa) in float32 lanes over one chunk, the chunk totals in double, so a sum's error stays
/// ~(Chunk/lanes)·ε relative; w_c, log Z, 1/Z and the row's D in double. Since e' ≤ 1 and w_c ≤ 1, nothing
/// overflows; a chunk whose maximum is −∞ (every class masked) has w_c = 0 and e' = 0. Forward KL's A/Z_t and
/// log Z_t − log Z_s are each of the size of the logit spread /T, so its D has an absolute error of about
/// ε·(that spread) — exact 0 when s = t. A teacher given as log-probabilities uses max 0, T 1 and Z 1 (it is
/// used as given, not renormalized).</para>
/// </summary>
internal static unsafe class FusedRows
{
    /// <summary>Classes per chunk (a multiple of every vector width).</summary>
    private const int Chunk = 1024;

    /// <summary>Doubles per chunk in the chunk table: m_s, m_t, Z'_s, Z'_t, A', w_s, w_t.</summary>
    private const int Entry = 7;

    /// <summary>Per-thread chunk table (<see cref="Entry"/> doubles per chunk), reused across rows and calls.</summary>
    [ThreadStatic] private static double[]? t_chunks;

    /// <summary>
    /// Computes one row; returns its divergence D (not yet scaled). <paramref name="g"/> receives gcoef·∂D/∂s;
    /// <paramref name="es"/> and <paramref name="et"/> are row-sized scratch buffers.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static double Run<TK>(float* s, float* t, float* g, float* es, float* et, int v, float invT, bool teacherLogits, in RowConstants k, float gcoef)
        where TK : IDivergenceElement
    {
        int chunks = (v + Chunk - 1) / Chunk;
        if (t_chunks is null || t_chunks.Length < Entry * chunks) t_chunks = GC.AllocateUninitializedArray<double>(Math.Max(Entry * chunks, 256), pinned: true);
        double* table = (double*)Unsafe.AsPointer(ref t_chunks[0]);
        if (Vector512.IsHardwareAccelerated) return Run<Vector512<float>, Simd512, TK>(s, t, g, es, et, v, invT, teacherLogits, k, gcoef, table);
        if (Vector256.IsHardwareAccelerated) return Run<Vector256<float>, Simd256, TK>(s, t, g, es, et, v, invT, teacherLogits, k, gcoef, table);
        return Run<float, Simd1, TK>(s, t, g, es, et, v, invT, teacherLogits, k, gcoef, table);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static double Run<TV, TS, TK>(float* s, float* t, float* g, float* es, float* et, int v, float invT, bool teacherLogits, in RowConstants k,
        float gcoef, double* table)
        where TV : struct where TS : ISimd<TV> where TK : IDivergenceElement
    {
        bool forwardKl = typeof(TK) == typeof(ForwardKlElement);
        float invTt = teacherLogits ? invT : 1f;
        int chunks = (v + Chunk - 1) / Chunk;

        // Pass 1: per chunk, its maxima, exps and sums; the row's maxima.
        double ms = double.NegativeInfinity, mt = teacherLogits ? double.NegativeInfinity : 0;
        for (int c = 0; c < chunks; c++)
        {
            int c0 = c * Chunk, c1 = Math.Min(v, c0 + Chunk), vec = c0 + (c1 - c0) / TS.Count * TS.Count;
            float cms = MathF.Max(MaxOf<TV, TS>(s, c0, vec), MaxOf<float, Simd1>(s, vec, c1));
            float cmt = teacherLogits ? MathF.Max(MaxOf<TV, TS>(t, c0, vec), MaxOf<float, Simd1>(t, vec, c1)) : 0f;
            // A chunk with every class masked (max −∞) is exp'd relative to 0, so its e' are exp(−∞) = 0, not NaN.
            float os = float.IsNegativeInfinity(cms) ? 0f : cms, ot = float.IsNegativeInfinity(cmt) ? 0f : cmt;
            double zs = 0, zt = 0, a = 0;
            Exps<TV, TS>(s, t, es, et, c0, vec, os, ot, invT, invTt, forwardKl, ref zs, ref zt, ref a);
            Exps<float, Simd1>(s, t, es, et, vec, c1, os, ot, invT, invTt, forwardKl, ref zs, ref zt, ref a);
            double* e = table + Entry * c;
            e[0] = cms; e[1] = cmt; e[2] = zs; e[3] = zt; e[4] = a;
            ms = Math.Max(ms, cms);
            mt = Math.Max(mt, cmt);
        }

        // The row's sums: Z = Σ w_c·Z'_c and forward KL's A; the chunk weights into the table.
        double zsRow = 0, ztRow = 0, aRow = 0;
        for (int c = 0; c < chunks; c++)
        {
            double* e = table + Entry * c;
            double ds = Delta(e[0], ms, invT), dt = teacherLogits ? Delta(e[1], mt, invT) : 0;
            double ws = double.IsNegativeInfinity(ds) ? 0 : Math.Exp(ds), wt = double.IsNegativeInfinity(dt) ? 0 : Math.Exp(dt);
            zsRow += ws * e[2];
            ztRow += wt * e[3];
            if (forwardKl && wt != 0) aRow += wt * (e[4] + e[3] * (dt - ds));
            e[5] = ws; e[6] = wt;
        }
        if (!teacherLogits) ztRow = 1;
        double lzs = Math.Log(zsRow), lzt = teacherLogits ? Math.Log(ztRow) : 0, rzs = 1 / zsRow, rzt = 1 / ztRow;

        double d = 0, sumA = 0;
        if (forwardKl) d = aRow * rzt - lzt + lzs;
        else
        {
            // Pass 2: the divergence and a, chunk by chunk with the chunk's normalizers.
            for (int c = 0; c < chunks; c++)
            {
                double* e = table + Entry * c;
                int c0 = c * Chunk, c1 = Math.Min(v, c0 + Chunk), vec = c0 + (c1 - c0) / TS.Count * TS.Count;
                // log q = x'_s + δ_sc − log Z_s and q = w_sc·e'_s / Z_s, with pass 1's offsets.
                double ds = Delta(e[0], ms, invT), dt = teacherLogits ? Delta(e[1], mt, invT) : 0;
                var norm = new Normalizers(Offset(e[0]), Offset(e[1]), invT, invTt,
                    (float)(lzs - FiniteOr0(ds)), (float)(lzt - FiniteOr0(dt)), (float)(e[5] * rzs), (float)(e[6] * rzt));
                Terms<TV, TS, TK>(s, t, es, et, c0, vec, norm, k, ref d, ref sumA);
                Terms<float, Simd1, TK>(s, t, es, et, vec, c1, norm, k, ref d, ref sumA);
            }
        }

        // Pass 3: g = c1·e'_s + c2·e'_t per chunk (e'_t holds a for the projected kinds), streamed.
        for (int c = 0; c < chunks; c++)
        {
            double* e = table + Entry * c;
            int c0 = c * Chunk, c1 = Math.Min(v, c0 + Chunk);
            float k1, k2;
            if (forwardKl) { k1 = (float)(gcoef * rzs * e[5]); k2 = (float)(-gcoef * rzt * e[6]); }
            else { k1 = (float)(-gcoef * sumA * rzs * e[5]); k2 = gcoef; } // gcoef·(a − q·Σa)
            CombineRange<TV, TS>(g, es, et, c0, c1, k1, k2);
        }
        if (System.Runtime.Intrinsics.X86.Sse.IsSupported) System.Runtime.Intrinsics.X86.Sse.StoreFence();
        return d;
    }

    /// <summary>δ = (m_c − M)/T in double; −∞ for a chunk whose every class is masked.</summary>
    private static double Delta(double chunkMax, double rowMax, float invT)
        => double.IsNegativeInfinity(chunkMax) ? double.NegativeInfinity : (chunkMax - rowMax) * invT;

    private static double FiniteOr0(double x) => double.IsNegativeInfinity(x) ? 0 : x;

    /// <summary>The offset pass 1 subtracted in a chunk: its max, or 0 when every class is −∞.</summary>
    private static float Offset(double chunkMax) => double.IsNegativeInfinity(chunkMax) ? 0f : (float)chunkMax;

    private readonly record struct Normalizers(float Ms, float Mt, float InvT, float InvTt, float Lzs, float Lzt, float Rzs, float Rzt);

    private static float MaxOf<TV, TS>(float* x, int from, int to) where TV : struct where TS : ISimd<TV>
    {
        if (to <= from) return float.NegativeInfinity;
        var m = TS.Splat(float.NegativeInfinity);
        for (int i = from; i < to; i += TS.Count) m = TS.Max(m, TS.Load(x + i));
        return TS.MaxAcross(m);
    }

    /// <summary>Exps of [from, to) relative to the offsets ms and mt; their sums (and forward KL's A') added in double.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Exps<TV, TS>(float* s, float* t, float* es, float* et, int from, int to, float ms, float mt, float invT, float invTt,
        bool forwardKl, ref double zs, ref double zt, ref double a) where TV : struct where TS : ISimd<TV>
    {
        if (to <= from) return;
        TV vms = TS.Splat(ms), vmt = TS.Splat(mt), vit = TS.Splat(invT), vitt = TS.Splat(invTt);
        TV accS = TS.Splat(0), accT = TS.Splat(0), accA = TS.Splat(0);
        for (int i = from; i < to; i += TS.Count)
        {
            var xs = TS.Mul(TS.Sub(TS.Load(s + i), vms), vit);
            var xt = TS.Mul(TS.Sub(TS.Load(t + i), vmt), vitt);
            var eS = TS.Exp(xs);
            var eT = TS.Exp(xt);
            TS.Store(es + i, eS);
            TS.Store(et + i, eT);
            accS = TS.Add(accS, eS);
            accT = TS.Add(accT, eT);
            // e_t·(x'_t − x'_s); a class masked in both (−∞ − (−∞) = NaN) or only in the teacher (−∞ − finite) has
            // e_t = 0: SubNoNaN makes the difference finite, so the term is 0·finite = 0, not NaN.
            if (forwardKl) accA = TS.Fma(eT, TS.SubNoNaN(xt, xs), accA);
        }
        zs += TS.Sum(accS);
        zt += TS.Sum(accT);
        if (forwardKl) a += TS.Sum(accA);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Terms<TV, TS, TK>(float* s, float* t, float* es, float* et, int from, int to, in Normalizers n, in RowConstants k,
        ref double d, ref double sumA) where TV : struct where TS : ISimd<TV> where TK : IDivergenceElement
    {
        if (to <= from) return;
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

    /// <summary>g = c1·e_s + c2·e_t over [from, to): scalar up to the first vector-aligned g, then non-temporal vector stores.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void CombineRange<TV, TS>(float* g, float* es, float* et, int from, int to, float c1, float c2) where TV : struct where TS : ISimd<TV>
    {
        nuint width = (nuint)TS.Count * sizeof(float);
        int head = from + (int)((width - (nuint)(g + from) % width) % width / sizeof(float));
        head = Math.Min(head, to);
        int end = head + (to - head) / TS.Count * TS.Count;
        Combine<float, Simd1>(g, es, et, from, head, c1, c2);
        Combine<TV, TS>(g, es, et, head, end, c1, c2);
        Combine<float, Simd1>(g, es, et, end, to, c1, c2);
    }

    /// <summary>g = c1·e_s + c2·e_t over [from, to), non-temporal stores (g + from is vector-aligned for the vector call).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Combine<TV, TS>(float* g, float* es, float* et, int from, int to, float c1, float c2) where TV : struct where TS : ISimd<TV>
    {
        TV v1 = TS.Splat(c1), v2 = TS.Splat(c2);
        for (int i = from; i < to; i += TS.Count)
            TS.StoreStream(g + i, TS.Fma(TS.Load(es + i), v1, TS.Mul(TS.Load(et + i), v2)));
    }
}
