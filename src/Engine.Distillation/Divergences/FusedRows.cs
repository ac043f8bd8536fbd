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
/// The fused row routine: one row of student logits s and teacher t (float32, contiguous, V classes) in,
/// the row's divergence (double) and the gradient with respect to s out.
/// <para>Passes over the row (only the first reads main memory; the row, 4·V bytes per tensor, then sits in L2,
/// with the two row buffers e_s and e_t):</para>
/// <list type="number">
/// <item>max of s and of t (teacher logits only);</item>
/// <item>e_s = exp((s − max s)/T) and e_t = exp((t − max t)/T) into the per-thread row buffers, Z_s = Σ e_s,
///   Z_t = Σ e_t: the only exps of the two softmaxes (2 per class, never recomputed). Forward KL also sums
///   A = Σ e_t·(x̃_t − x̃_s) here (x̃ = (x − max)/T), so its D = A/Z_t − log Z_t + log Z_s needs no pass 3;</item>
/// <item>(not forward KL) log q = x̃_s − log Z_s, q = e_s/Z_s (and the same for p); the divergence's per-class
///   term summed into D, and its a = q ⊙ ∂D/∂q written over e_t;</item>
/// <item>the gradient, written once with non-temporal stores (no read-for-ownership of its cache lines):
///   forward KL k·(q − p) = (k/Z_s)·e_s − (k/Z_t)·e_t; the others k·(a − q·Σa).</item>
/// </list>
/// <para>Memory traffic per class: read s and t once, write the gradient once (12 bytes); everything else is
/// L1/L2. Numerics: exps and per-class terms in float32 (the fast exp of <see cref="FastExp"/>, ≤ ~1 ulp); sums
/// (Z, A, D, Σa) in float32 lanes over chunks of <see cref="Chunk"/> classes, the chunk totals in double, so a
/// sum's error stays ~(Chunk/lanes)·ε relative; log Z, 1/Z and the row's D in double. Forward KL's A/Z_t and
/// log Z_t − log Z_s are each of the size of the logit spread /T, so its D has an absolute error of about
/// ε·(that spread) — exact 0 when s = t. A teacher given as log-probabilities uses max 0, T 1 and Z 1 (it is
/// used as given, not renormalized).</para>
/// </summary>
internal static unsafe class FusedRows
{
    /// <summary>Classes per partial sum (a multiple of every vector width).</summary>
    private const int Chunk = 1024;

    /// <summary>
    /// Computes one row; returns its divergence D (not yet scaled). <paramref name="g"/> receives gcoef·∂D/∂s;
    /// <paramref name="es"/> and <paramref name="et"/> are row-sized scratch buffers.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static double Run<TK>(float* s, float* t, float* g, float* es, float* et, int v, float invT, bool teacherLogits, in RowConstants k, float gcoef)
        where TK : IDivergenceElement
    {
        if (Vector512.IsHardwareAccelerated) return Run<Vector512<float>, Simd512, TK>(s, t, g, es, et, v, invT, teacherLogits, k, gcoef);
        if (Vector256.IsHardwareAccelerated) return Run<Vector256<float>, Simd256, TK>(s, t, g, es, et, v, invT, teacherLogits, k, gcoef);
        return Run<float, Simd1, TK>(s, t, g, es, et, v, invT, teacherLogits, k, gcoef);
    }

    private static double Run<TV, TS, TK>(float* s, float* t, float* g, float* es, float* et, int v, float invT, bool teacherLogits, in RowConstants k, float gcoef)
        where TV : struct where TS : ISimd<TV> where TK : IDivergenceElement
    {
        int vec = v - v % TS.Count;
        bool forwardKl = typeof(TK) == typeof(ForwardKlElement);

        // Pass 1: the maxima.
        float ms = MaxOf<TV, TS>(s, vec), mt = 0;
        for (int i = vec; i < v; i++) ms = MathF.Max(ms, s[i]);
        if (teacherLogits)
        {
            mt = MaxOf<TV, TS>(t, vec);
            for (int i = vec; i < v; i++) mt = MathF.Max(mt, t[i]);
        }
        float invTt = teacherLogits ? invT : 1f;

        // Pass 2: the exps and their sums (and forward KL's A).
        double zs = 0, zt = 0, d = 0;
        Exps<TV, TS>(s, t, es, et, 0, vec, ms, mt, invT, invTt, forwardKl, ref zs, ref zt, ref d);
        Exps<float, Simd1>(s, t, es, et, vec, v, ms, mt, invT, invTt, forwardKl, ref zs, ref zt, ref d);
        double lzs = Math.Log(zs), lzt = teacherLogits ? Math.Log(zt) : 0, rzs = 1 / zs, rzt = teacherLogits ? 1 / zt : 1;

        float c1, c2;
        if (forwardKl)
        {
            d = d * rzt - lzt + lzs;
            c1 = (float)(gcoef * rzs);
            c2 = (float)(-gcoef * rzt);
        }
        else
        {
            // Pass 3: the divergence and a.
            var norm = new Normalizers(ms, mt, invT, invTt, (float)lzs, (float)lzt, (float)rzs, (float)rzt);
            double sumA = 0;
            Terms<TV, TS, TK>(s, t, es, et, 0, vec, norm, k, ref d, ref sumA);
            Terms<float, Simd1, TK>(s, t, es, et, vec, v, norm, k, ref d, ref sumA);
            // gcoef·(a − q·Σa) = gcoef·a − (gcoef·Σa/Z_s)·e_s
            c1 = (float)(-gcoef * sumA * rzs);
            c2 = gcoef;
        }

        // Pass 4: g = c1·e_s + c2·e_t (e_t holds a for the projected kinds), streamed from the first aligned element.
        int head = (int)(((nuint)TS.Count * sizeof(float) - (nuint)g % ((nuint)TS.Count * sizeof(float))) % ((nuint)TS.Count * sizeof(float)) / sizeof(float));
        head = Math.Min(head, v);
        int end = head + (v - head) / TS.Count * TS.Count;
        Combine<float, Simd1>(g, es, et, 0, head, c1, c2);
        Combine<TV, TS>(g, es, et, head, end, c1, c2);
        Combine<float, Simd1>(g, es, et, end, v, c1, c2);
        if (System.Runtime.Intrinsics.X86.Sse.IsSupported) System.Runtime.Intrinsics.X86.Sse.StoreFence();
        return d;
    }

    private readonly record struct Normalizers(float Ms, float Mt, float InvT, float InvTt, float Lzs, float Lzt, float Rzs, float Rzt);

    private static float MaxOf<TV, TS>(float* x, int count) where TV : struct where TS : ISimd<TV>
    {
        var m = TS.Splat(float.NegativeInfinity);
        for (int i = 0; i < count; i += TS.Count) m = TS.Max(m, TS.Load(x + i));
        return count == 0 ? float.NegativeInfinity : TS.MaxAcross(m);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Exps<TV, TS>(float* s, float* t, float* es, float* et, int from, int to, float ms, float mt, float invT, float invTt,
        bool forwardKl, ref double zs, ref double zt, ref double a) where TV : struct where TS : ISimd<TV>
    {
        TV vms = TS.Splat(ms), vmt = TS.Splat(mt), vit = TS.Splat(invT), vitt = TS.Splat(invTt);
        for (int c0 = from; c0 < to; c0 += Chunk)
        {
            int c1 = Math.Min(to, c0 + Chunk);
            TV accS = TS.Splat(0), accT = TS.Splat(0), accA = TS.Splat(0);
            for (int i = c0; i < c1; i += TS.Count)
            {
                var xs = TS.Mul(TS.Sub(TS.Load(s + i), vms), vit);
                var xt = TS.Mul(TS.Sub(TS.Load(t + i), vmt), vitt);
                var eS = TS.Exp(xs);
                var eT = TS.Exp(xt);
                TS.Store(es + i, eS);
                TS.Store(et + i, eT);
                accS = TS.Add(accS, eS);
                accT = TS.Add(accT, eT);
                // e_t·(x̃_t − x̃_s); a class masked in both (−∞ − (−∞) = NaN) or only in the teacher (−∞ − finite) has
                // e_t = 0: SubNoNaN makes the difference finite, so the term is 0·finite = 0, not NaN.
                if (forwardKl) accA = TS.Fma(eT, TS.SubNoNaN(xt, xs), accA);
            }
            zs += TS.Sum(accS);
            zt += TS.Sum(accT);
            if (forwardKl) a += TS.Sum(accA);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Terms<TV, TS, TK>(float* s, float* t, float* es, float* et, int from, int to, in Normalizers n, in RowConstants k,
        ref double d, ref double sumA) where TV : struct where TS : ISimd<TV> where TK : IDivergenceElement
    {
        TV vms = TS.Splat(n.Ms), vmt = TS.Splat(n.Mt), vit = TS.Splat(n.InvT), vitt = TS.Splat(n.InvTt);
        TV vlzs = TS.Splat(n.Lzs), vlzt = TS.Splat(n.Lzt), vrzs = TS.Splat(n.Rzs), vrzt = TS.Splat(n.Rzt);
        for (int c0 = from; c0 < to; c0 += Chunk)
        {
            int c1 = Math.Min(to, c0 + Chunk);
            TV accD = TS.Splat(0), accA = TS.Splat(0);
            for (int i = c0; i < c1; i += TS.Count)
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
