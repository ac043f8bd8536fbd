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
/// gradient with respect to the tempered student logits s/T is then a − q·Σa (through the softmax), or
/// a itself when <see cref="Projects"/> is false (forward KL: a is already q − p).
/// </summary>
internal interface IDivergenceElement
{
    static abstract bool Projects { get; }

    static abstract TV Eval<TV, TS>(TV lq, TV q, TV lp, TV p, in RowConstants k, out TV a)
        where TV : struct where TS : ISimd<TV>;
}

/// <summary>KL(p‖q): D += p·(log p − log q) (0 where p = 0); gradient wrt s/T: q − p.</summary>
internal readonly struct ForwardKlElement : IDivergenceElement
{
    public static bool Projects => false;

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
    public static bool Projects => true;

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
    public static bool Projects => true;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TV Eval<TV, TS>(TV lq, TV q, TV lp, TV p, in RowConstants k, out TV a) where TV : struct where TS : ISimd<TV>
    {
        var vb = TS.Splat(k.B);
        var lm = TS.Log(TS.Fma(TS.Splat(k.A), p, TS.Mul(vb, q)));
        var tp = TS.IfPositive(p, TS.Mul(p, TS.Sub(lp, lm)));
        var tq = TS.IfPositive(q, TS.Mul(q, TS.Sub(lq, lm)));
        a = TS.Mul(vb, tq);
        return TS.Fma(TS.Splat(k.A), tp, a);
    }
}

/// <summary>Total variation: D += ½|p − q|; a = ½·q·sign(q − p) (sign 0 where equal).</summary>
internal readonly struct TotalVariationElement : IDivergenceElement
{
    public static bool Projects => true;

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
    public static bool Projects => true;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TV Eval<TV, TS>(TV lq, TV q, TV lp, TV p, in RowConstants k, out TV a) where TV : struct where TS : ISimd<TV>
    {
        var m = TS.Fma(TS.Splat(k.A), p, TS.Mul(TS.Splat(k.B), q));
        a = TS.IfPositive(m, TS.Div(TS.Mul(TS.Splat(-k.B), TS.Mul(p, q)), m));
        return TS.IfPositive(p, TS.Mul(p, TS.Sub(lp, TS.Log(m))));
    }
}

/// <summary>Skew reverse KL, A = 1 − λ, B = λ: M = (1−λ)p + λq; D += q(log q − log M); a = q(log q − log M) − λ·q²/M.</summary>
internal readonly struct SkewReverseKlElement : IDivergenceElement
{
    public static bool Projects => true;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TV Eval<TV, TS>(TV lq, TV q, TV lp, TV p, in RowConstants k, out TV a) where TV : struct where TS : ISimd<TV>
    {
        var vb = TS.Splat(k.B);
        var m = TS.Fma(TS.Splat(k.A), p, TS.Mul(vb, q));
        var term = TS.IfPositive(q, TS.Mul(q, TS.Sub(lq, TS.Log(m))));
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
    public static bool Projects => true;

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
    public static bool Projects => true;

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
/// <para>Passes over the row (only the first reads main memory; the row, 4·V bytes per tensor, then sits in L2):</para>
/// <list type="number">
/// <item>max of s and of t (teacher logits only);</item>
/// <item>e_s = exp((s − max s)/T) written to the gradient row, e_t = exp((t − max t)/T) to a per-thread buffer,
///   Z_s = Σ e_s, Z_t = Σ e_t: the only exps of the two softmaxes (2 per class, never recomputed);</item>
/// <item>log q = (s − max)/T − log Z_s, q = e_s/Z_s (and the same for p); the divergence's per-class term summed
///   into D, and its a = q ⊙ ∂D/∂q written over e_t (forward KL writes the final gradient k·(q − p) here instead);</item>
/// <item>(not for forward KL) gradient = k·(a − q·Σa), in place.</item>
/// </list>
/// <para>Memory traffic per class: read s and t once, write the gradient once (12 bytes); everything else is
/// L1/L2. Numerics: exps and per-class terms in float32 (the fast exp of <see cref="FastExp"/>, ≤ ~1 ulp); sums
/// (Z, D, Σa) in float32 lanes over chunks of <see cref="Chunk"/> classes, the chunk totals in double, so a sum's
/// error stays ~(Chunk/lanes)·ε relative; log Z, 1/Z and the row's D in double. A teacher given as
/// log-probabilities uses max 0, T 1 and Z 1 (it is used as given, not renormalized).</para>
/// </summary>
internal static unsafe class FusedRows
{
    /// <summary>Classes per partial sum (a multiple of every vector width).</summary>
    private const int Chunk = 1024;

    /// <summary>Computes one row; returns its divergence D (not yet scaled). <paramref name="g"/> receives gcoef·∂D/∂s.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static double Run<TK>(float* s, float* t, float* g, float* buf, int v, float invT, bool teacherLogits, in RowConstants k, float gcoef)
        where TK : IDivergenceElement
    {
        if (Vector512.IsHardwareAccelerated) return Run<Vector512<float>, Simd512, TK>(s, t, g, buf, v, invT, teacherLogits, k, gcoef);
        if (Vector256.IsHardwareAccelerated) return Run<Vector256<float>, Simd256, TK>(s, t, g, buf, v, invT, teacherLogits, k, gcoef);
        return Run<float, Simd1, TK>(s, t, g, buf, v, invT, teacherLogits, k, gcoef);
    }

    private static double Run<TV, TS, TK>(float* s, float* t, float* g, float* buf, int v, float invT, bool teacherLogits, in RowConstants k, float gcoef)
        where TV : struct where TS : ISimd<TV> where TK : IDivergenceElement
    {
        int vec = v - v % TS.Count;

        // Pass 1: the maxima.
        float ms = MaxOf<TV, TS>(s, vec), mt = 0;
        for (int i = vec; i < v; i++) ms = MathF.Max(ms, s[i]);
        if (teacherLogits)
        {
            mt = MaxOf<TV, TS>(t, vec);
            for (int i = vec; i < v; i++) mt = MathF.Max(mt, t[i]);
        }
        float invTt = teacherLogits ? invT : 1f;

        // Pass 2: the exps and their sums.
        double zs = 0, zt = 0;
        Exps<TV, TS>(s, t, g, buf, 0, vec, ms, mt, invT, invTt, ref zs, ref zt);
        Exps<float, Simd1>(s, t, g, buf, vec, v, ms, mt, invT, invTt, ref zs, ref zt);
        double lzt = teacherLogits ? Math.Log(zt) : 0, rzt = teacherLogits ? 1 / zt : 1;
        var norm = new Normalizers(ms, mt, invT, invTt, (float)Math.Log(zs), (float)lzt, (float)(1 / zs), (float)rzt);

        // Pass 3: the divergence and a (or, forward KL, the gradient).
        double d = 0, sumA = 0;
        Terms<TV, TS, TK>(s, t, g, buf, 0, vec, norm, k, gcoef, ref d, ref sumA);
        Terms<float, Simd1, TK>(s, t, g, buf, vec, v, norm, k, gcoef, ref d, ref sumA);

        // Pass 4: through the softmax.
        if (TK.Projects)
        {
            float c1 = gcoef, c2 = (float)(-gcoef * sumA) * norm.Rzs;
            Project<TV, TS>(g, buf, 0, vec, c1, c2);
            Project<float, Simd1>(g, buf, vec, v, c1, c2);
        }
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
    private static void Exps<TV, TS>(float* s, float* t, float* g, float* buf, int from, int to, float ms, float mt, float invT, float invTt,
        ref double zs, ref double zt) where TV : struct where TS : ISimd<TV>
    {
        TV vms = TS.Splat(ms), vmt = TS.Splat(mt), vit = TS.Splat(invT), vitt = TS.Splat(invTt);
        for (int c0 = from; c0 < to; c0 += Chunk)
        {
            int c1 = Math.Min(to, c0 + Chunk);
            TV accS = TS.Splat(0), accT = TS.Splat(0);
            for (int i = c0; i < c1; i += TS.Count)
            {
                var es = TS.Exp(TS.Mul(TS.Sub(TS.Load(s + i), vms), vit));
                TS.Store(g + i, es);
                accS = TS.Add(accS, es);
                var et = TS.Exp(TS.Mul(TS.Sub(TS.Load(t + i), vmt), vitt));
                TS.Store(buf + i, et);
                accT = TS.Add(accT, et);
            }
            zs += TS.Sum(accS);
            zt += TS.Sum(accT);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Terms<TV, TS, TK>(float* s, float* t, float* g, float* buf, int from, int to, in Normalizers n, in RowConstants k, float gcoef,
        ref double d, ref double sumA) where TV : struct where TS : ISimd<TV> where TK : IDivergenceElement
    {
        TV vms = TS.Splat(n.Ms), vmt = TS.Splat(n.Mt), vit = TS.Splat(n.InvT), vitt = TS.Splat(n.InvTt);
        TV vlzs = TS.Splat(n.Lzs), vlzt = TS.Splat(n.Lzt), vrzs = TS.Splat(n.Rzs), vrzt = TS.Splat(n.Rzt), vg = TS.Splat(gcoef);
        for (int c0 = from; c0 < to; c0 += Chunk)
        {
            int c1 = Math.Min(to, c0 + Chunk);
            TV accD = TS.Splat(0), accA = TS.Splat(0);
            for (int i = c0; i < c1; i += TS.Count)
            {
                var lq = TS.Sub(TS.Mul(TS.Sub(TS.Load(s + i), vms), vit), vlzs);
                var lp = TS.Sub(TS.Mul(TS.Sub(TS.Load(t + i), vmt), vitt), vlzt);
                var q = TS.Mul(TS.Load(g + i), vrzs);
                var p = TS.Mul(TS.Load(buf + i), vrzt);
                accD = TS.Add(accD, TK.Eval<TV, TS>(lq, q, lp, p, k, out var a));
                if (TK.Projects)
                {
                    TS.Store(buf + i, a);
                    accA = TS.Add(accA, a);
                }
                else
                {
                    TS.Store(g + i, TS.Mul(a, vg));
                }
            }
            d += TS.Sum(accD);
            if (TK.Projects) sumA += TS.Sum(accA);
        }
    }

    /// <summary>g = c1·a + c2·e_s, i.e. gcoef·(a − q·Σa) with q = e_s/Z_s (c2 = −gcoef·Σa/Z_s).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Project<TV, TS>(float* g, float* buf, int from, int to, float c1, float c2) where TV : struct where TS : ISimd<TV>
    {
        TV v1 = TS.Splat(c1), v2 = TS.Splat(c2);
        for (int i = from; i < to; i += TS.Count)
            TS.Store(g + i, TS.Fma(TS.Load(buf + i), v1, TS.Mul(TS.Load(g + i), v2)));
    }
}
