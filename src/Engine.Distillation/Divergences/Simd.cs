using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Engine.Distillation;

/// <summary>
/// The float operations the fused divergence rows need, over one vector type: 512-bit
/// (<see cref="Simd512"/>), 256-bit (<see cref="Simd256"/>) and one lane (<see cref="Simd1"/>, the
/// tails and machines without SIMD). The row code is written once, generic over this interface; the JIT
/// specializes it per struct and inlines every call, so there is no dispatch in the inner loops.
/// </summary>
internal unsafe interface ISimd<TV> where TV : struct
{
    static abstract int Count { get; }
    static abstract TV Load(float* p);
    static abstract void Store(float* p, TV v);

    /// <summary>Non-temporal store to a vector-aligned address (bypasses the caches: no read-for-ownership of the line).</summary>
    static abstract void StoreStream(float* p, TV v);

    static abstract TV Splat(float x);
    static abstract TV Add(TV a, TV b);
    static abstract TV Sub(TV a, TV b);
    static abstract TV Mul(TV a, TV b);
    static abstract TV Div(TV a, TV b);
    static abstract TV Max(TV a, TV b);

    /// <summary>
    /// max(a, b) in one instruction (vmaxps: b where either is NaN; IEEE <see cref="Max"/> is three, in a dependent
    /// chain). For running maxima whose NaNs need not survive: a NaN logit makes its exp NaN anyway.
    /// </summary>
    static abstract TV MaxFast(TV a, TV b);
    static abstract TV Abs(TV a);

    /// <summary>a·b + c.</summary>
    static abstract TV Fma(TV a, TV b, TV c);

    /// <summary>x where c &gt; 0, else 0 (NaN-free: the unselected x is never used).</summary>
    static abstract TV IfPositive(TV c, TV x);

    /// <summary>
    /// a − b, with NaN (from −∞ − (−∞)) and −∞ (a − b with only a = −∞: a class only the teacher masks) replaced by
    /// −float.MaxValue (finite, so 0·it is 0); +∞ is kept (a class only the student masks: an infinite forward KL).
    /// </summary>
    static abstract TV SubNoNaN(TV a, TV b);

    /// <summary><see cref="SubNoNaN(TV, TV)"/> with the constants of <paramref name="c"/> (fewer instructions in the exps loop).</summary>
    static abstract TV SubNoNaN(TV a, TV b, in Exp2Poly<TV> c);

    /// <summary>+1 where a &gt; b, −1 where a &lt; b, 0 where equal.</summary>
    static abstract TV SignOfDifference(TV a, TV b);

    /// <summary>exp(x), <see cref="FastExp"/>'s algorithm (x ≤ 0 in every use here).</summary>
    static abstract TV Exp(TV x);

    /// <summary>
    /// 2^y (−∞ gives exactly 0, NaN stays NaN, +∞ past 2^128): the softmaxes' exps, with log2 e folded into the
    /// caller's scale; <see cref="FastExp2"/>'s polynomial on every width (≤ ~1 ulp; AVX-512 keeps denormals, the
    /// others give 0 below 2^−126).
    /// </summary>
    static abstract TV Exp2(TV y, in Exp2Poly<TV> c);

    /// <summary>The constants of <see cref="Exp2"/>, made once before a loop (so they stay in registers).</summary>
    static abstract Exp2Poly<TV> Exp2Setup();

    /// <summary>Natural log (AVX-512: Cephes logf on vgetexpps/vgetmantps; otherwise the runtime's vectorized log).</summary>
    static abstract TV Log(TV x);

    static abstract float Sum(TV v);
    /// <summary>Largest lane, by one-instruction maxima (a NaN lane may be dropped; see <see cref="MaxFast"/>).</summary>
    static abstract float MaxAcross(TV v);

    /// <summary>True when some lane of <paramref name="v"/> is below <paramref name="x"/> (or NaN).</summary>
    static abstract bool AnyBelow(TV v, float x);
}

/// <summary>
/// exp for float32 (Cephes <c>expf</c>): x = n·ln2 + r with n = round(x·log2 e) and r from a two-part ln2
/// (exact first part), e^r by a degree-6 polynomial, 2^n added to the exponent bits. Max error about 1 ulp
/// on [−87.3, 88.7]. Inputs are clamped to [−88, 88.38] (so n ≥ −127); below about −87.34 the 2^n factor's bits are 0,
/// so the result is exactly 0 there (and for −∞). The AVX-512 path applies 2^n with vscalefps instead (denormals
/// between −104 and −87.3, exactly 0 below −104 and for −∞).
/// About 15 vector instructions per vector, against ~40 for the runtime's Exp (which widens to double).
/// </summary>
internal static class FastExp
{
    public const float Lower = -88.0f, Upper = 88.3762626647949f, ScaleLower = -104.0f;
    public const float Log2E = 1.44269504088896341f, C1 = 0.693359375f, C2 = -2.12194440e-4f;
    public const float P0 = 1.9875691500e-4f, P1 = 1.3981999507e-3f, P2 = 8.3334519073e-3f,
        P3 = 4.1665795894e-2f, P4 = 1.6666665459e-1f, P5 = 5.0000001201e-1f;
}

/// <summary>
/// 2^y on AVX-512: y = ⌊y⌋ + f with f = y − ⌊y⌋ in [0, 1) from one vreduceps, 2^f by a degree-6
/// polynomial (Chebyshev fit; 0.53 ulp with float32 Horner steps, checked over [0, 1) at 200 001 points), and
/// p·2^⌊y⌋ by one vscalefps. No clamp is needed: vreduceps gives 0 for −∞ and vscalefps then 1·2^−∞ = 0 (a masked
/// class gets probability exactly 0); below −149 the product underflows to 0, from 128 on it overflows to +∞; NaN
/// stays NaN. Eight vector instructions, against fifteen for <see cref="FastExp"/>.
/// </summary>
internal static class FastExp2
{
    /// <summary>The 256-bit and scalar forms raise y to this first: 2^⌊y⌋'s exponent bits are then 0 (the result 0) for every y below −126.</summary>
    public const float Flush = -127f;

    /// <summary>Above this the 256-bit and scalar forms return +∞ (2^⌊y⌋ has no float32 exponent bits past 2^127).</summary>
    public const float Overflow = 127f;

    public const float P0 = 1.0000000000e+00f, P1 = 6.9314694405e-01f, P2 = 2.4023045599e-01f, P3 = 5.5480629206e-02f,
        P4 = 9.6841864288e-03f, P5 = 1.2391331838e-03f, P6 = 2.1865784947e-04f;
}

/// <summary>The constants of <see cref="ISimd{TV}.Exp2"/> as vectors, made once before a loop.</summary>
internal readonly struct Exp2Poly<TV>(TV p0, TV p1, TV p2, TV p3, TV p4, TV p5, TV p6, TV maxNeg) where TV : struct
{
    public readonly TV P0 = p0, P1 = p1, P2 = p2, P3 = p3, P4 = p4, P5 = p5, P6 = p6;

    /// <summary>2^f for f in [0, 1): <see cref="FastExp2"/>'s polynomial, Horner's scheme in fused multiply-adds.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TV Horner<TS>(TV f, in Exp2Poly<TV> c) where TS : ISimd<TV>
        => TS.Fma(TS.Fma(TS.Fma(TS.Fma(TS.Fma(TS.Fma(c.P6, f, c.P5), f, c.P4), f, c.P3), f, c.P2), f, c.P1), f, c.P0);

    /// <summary>−float.MaxValue, for <see cref="Simd512.SubNoNaN(Vector512{float}, Vector512{float}, in Exp2Poly{Vector512{float}})"/>.</summary>
    public readonly TV MaxNeg = maxNeg;
}

internal readonly unsafe struct Simd512 : ISimd<Vector512<float>>
{
    public static int Count => Vector512<float>.Count;
    public static Vector512<float> Load(float* p) => Vector512.Load(p);
    public static void Store(float* p, Vector512<float> v) => v.Store(p);
    public static void StoreStream(float* p, Vector512<float> v) => v.StoreAlignedNonTemporal(p);
    public static Vector512<float> Splat(float x) => Vector512.Create(x);
    public static Vector512<float> Add(Vector512<float> a, Vector512<float> b) => a + b;
    public static Vector512<float> Sub(Vector512<float> a, Vector512<float> b) => a - b;
    public static Vector512<float> Mul(Vector512<float> a, Vector512<float> b) => a * b;
    public static Vector512<float> Div(Vector512<float> a, Vector512<float> b) => a / b;
    public static Vector512<float> Max(Vector512<float> a, Vector512<float> b) => Vector512.Max(a, b);
    public static Vector512<float> MaxFast(Vector512<float> a, Vector512<float> b) => Vector512.MaxNative(a, b);
    public static Vector512<float> Abs(Vector512<float> a) => Vector512.Abs(a);
    public static Vector512<float> Fma(Vector512<float> a, Vector512<float> b, Vector512<float> c) => Vector512.FusedMultiplyAdd(a, b, c);
    public static Vector512<float> IfPositive(Vector512<float> c, Vector512<float> x)
        => Vector512.ConditionalSelect(Vector512.GreaterThan(c, Vector512<float>.Zero), x, Vector512<float>.Zero);
    public static Vector512<float> SubNoNaN(Vector512<float> a, Vector512<float> b)
        => Vector512.ConditionalSelect(Vector512.GreaterThanOrEqual(a - b, Vector512.Create(-float.MaxValue)), a - b, Vector512.Create(-float.MaxValue));
    public static Vector512<float> SignOfDifference(Vector512<float> a, Vector512<float> b)
        => Vector512.ConditionalSelect(Vector512.GreaterThan(a, b), Vector512<float>.One, Vector512<float>.Zero)
           - Vector512.ConditionalSelect(Vector512.LessThan(a, b), Vector512<float>.One, Vector512<float>.Zero);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Exp(Vector512<float> x)
    {
        if (Avx512F.IsSupported)
        {
            // The same polynomial; 2^n applied by vscalefps (one instruction instead of convert, add, shift,
            // multiply). Clamped at −104 (not −88): results below 2^−126 are denormals, and below −103.97 the
            // product rounds to exactly 0, so −∞ (a masked class) still gives exactly 0.
            x = Vector512.Min(Vector512.Max(x, Vector512.Create(FastExp.ScaleLower)), Vector512.Create(FastExp.Upper));
            var m = Vector512.Round(x * Vector512.Create(FastExp.Log2E));
            var r = Vector512.FusedMultiplyAdd(m, Vector512.Create(-FastExp.C1), x);
            r = Vector512.FusedMultiplyAdd(m, Vector512.Create(-FastExp.C2), r);
            var z = Vector512.FusedMultiplyAdd(Vector512.Create(FastExp.P0), r, Vector512.Create(FastExp.P1));
            z = Vector512.FusedMultiplyAdd(z, r, Vector512.Create(FastExp.P2));
            z = Vector512.FusedMultiplyAdd(z, r, Vector512.Create(FastExp.P3));
            z = Vector512.FusedMultiplyAdd(z, r, Vector512.Create(FastExp.P4));
            z = Vector512.FusedMultiplyAdd(z, r, Vector512.Create(FastExp.P5));
            z = Vector512.FusedMultiplyAdd(z, r * r, r + Vector512<float>.One);
            return Avx512F.Scale(z, m);
        }
        x = Vector512.Min(Vector512.Max(x, Vector512.Create(FastExp.Lower)), Vector512.Create(FastExp.Upper));
        var n = Vector512.Round(x * Vector512.Create(FastExp.Log2E));
        x = Vector512.FusedMultiplyAdd(n, Vector512.Create(-FastExp.C1), x);
        x = Vector512.FusedMultiplyAdd(n, Vector512.Create(-FastExp.C2), x);
        var y = Vector512.FusedMultiplyAdd(Vector512.Create(FastExp.P0), x, Vector512.Create(FastExp.P1));
        y = Vector512.FusedMultiplyAdd(y, x, Vector512.Create(FastExp.P2));
        y = Vector512.FusedMultiplyAdd(y, x, Vector512.Create(FastExp.P3));
        y = Vector512.FusedMultiplyAdd(y, x, Vector512.Create(FastExp.P4));
        y = Vector512.FusedMultiplyAdd(y, x, Vector512.Create(FastExp.P5));
        y = Vector512.FusedMultiplyAdd(y, x * x, x + Vector512<float>.One);
        var bits = Vector512.ShiftLeft(Vector512.ConvertToInt32(n) + Vector512.Create(127), 23);
        return y * bits.AsSingle();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Exp2(Vector512<float> y, in Exp2Poly<Vector512<float>> c)
    {
        if (!Avx512DQ.IsSupported)
        {
            var c256 = Simd256.Exp2Setup();
            return Vector512.Create(Simd256.Exp2(y.GetLower(), c256), Simd256.Exp2(y.GetUpper(), c256));
        }
        // y − ⌊y⌋ (imm: 0 fraction bits, round down, precision exception suppressed); 0 for ±∞, NaN for NaN.
        var f = Avx512DQ.Reduce(y, 0x09);
        return Avx512F.Scale(Exp2Poly<Vector512<float>>.Horner<Simd512>(f, c), y); // p·2^⌊y⌋
    }

    public static Exp2Poly<Vector512<float>> Exp2Setup() => new(Vector512.Create(FastExp2.P0), Vector512.Create(FastExp2.P1),
        Vector512.Create(FastExp2.P2), Vector512.Create(FastExp2.P3), Vector512.Create(FastExp2.P4), Vector512.Create(FastExp2.P5),
        Vector512.Create(FastExp2.P6), Vector512.Create(-float.MaxValue));

    /// <summary><see cref="SubNoNaN(Vector512{float}, Vector512{float})"/> in two instructions: vmaxps returns its second operand (−MaxValue) for a NaN.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> SubNoNaN(Vector512<float> a, Vector512<float> b, in Exp2Poly<Vector512<float>> c)
        => Avx512F.IsSupported ? Avx512F.Max(a - b, c.MaxNeg) : SubNoNaN(a, b);

    /// <summary>
    /// log for float32: with AVX-512, Cephes <c>logf</c> on vgetexpps / vgetmantps (x = m·2^e, m in [1, 2), moved to
    /// [√½, √2), a degree-8 polynomial of m − 1; about 1 ulp, 0 → −∞, denormals exact); otherwise the runtime's log.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Log(Vector512<float> x)
    {
        if (!Avx512F.IsSupported) return Vector512.Log(x);
        var e = Avx512F.GetExponent(x);
        var m = Avx512F.GetMantissa(x, 0); // [1, 2), sign of the source (x > 0 here)
        var high = Vector512.GreaterThan(m, Vector512.Create(1.41421356237f));
        var f = Vector512.ConditionalSelect(high, m * Vector512.Create(0.5f), m) - Vector512<float>.One;
        e += Vector512.ConditionalSelect(high, Vector512<float>.One, Vector512<float>.Zero);
        var z = f * f;
        var y = Vector512.FusedMultiplyAdd(Vector512.Create(7.0376836292E-2f), f, Vector512.Create(-1.1514610310E-1f));
        y = Vector512.FusedMultiplyAdd(y, f, Vector512.Create(1.1676998740E-1f));
        y = Vector512.FusedMultiplyAdd(y, f, Vector512.Create(-1.2420140846E-1f));
        y = Vector512.FusedMultiplyAdd(y, f, Vector512.Create(1.4249322787E-1f));
        y = Vector512.FusedMultiplyAdd(y, f, Vector512.Create(-1.6668057665E-1f));
        y = Vector512.FusedMultiplyAdd(y, f, Vector512.Create(2.0000714765E-1f));
        y = Vector512.FusedMultiplyAdd(y, f, Vector512.Create(-2.4999993993E-1f));
        y = Vector512.FusedMultiplyAdd(y, f, Vector512.Create(3.3333331174E-1f));
        y = y * f * z;
        y = Vector512.FusedMultiplyAdd(e, Vector512.Create(FastExp.C2), y);
        y = Vector512.FusedMultiplyAdd(z, Vector512.Create(-0.5f), y);
        return Vector512.FusedMultiplyAdd(e, Vector512.Create(FastExp.C1), f + y);
    }
    public static float Sum(Vector512<float> v) => Vector512.Sum(v);
    public static bool AnyBelow(Vector512<float> v, float x) => !Vector512.GreaterThanOrEqualAll(v, Vector512.Create(x));
    public static float MaxAcross(Vector512<float> v) => Simd256.MaxAcross(Vector256.MaxNative(v.GetLower(), v.GetUpper()));
}

internal readonly unsafe struct Simd256 : ISimd<Vector256<float>>
{
    public static int Count => Vector256<float>.Count;
    public static Vector256<float> Load(float* p) => Vector256.Load(p);
    public static void Store(float* p, Vector256<float> v) => v.Store(p);
    public static void StoreStream(float* p, Vector256<float> v) => v.StoreAlignedNonTemporal(p);
    public static Vector256<float> Splat(float x) => Vector256.Create(x);
    public static Vector256<float> Add(Vector256<float> a, Vector256<float> b) => a + b;
    public static Vector256<float> Sub(Vector256<float> a, Vector256<float> b) => a - b;
    public static Vector256<float> Mul(Vector256<float> a, Vector256<float> b) => a * b;
    public static Vector256<float> Div(Vector256<float> a, Vector256<float> b) => a / b;
    public static Vector256<float> Max(Vector256<float> a, Vector256<float> b) => Vector256.Max(a, b);
    public static Vector256<float> MaxFast(Vector256<float> a, Vector256<float> b) => Vector256.MaxNative(a, b);
    public static Vector256<float> Abs(Vector256<float> a) => Vector256.Abs(a);
    public static Vector256<float> Fma(Vector256<float> a, Vector256<float> b, Vector256<float> c) => Vector256.FusedMultiplyAdd(a, b, c);
    public static Vector256<float> IfPositive(Vector256<float> c, Vector256<float> x)
        => Vector256.ConditionalSelect(Vector256.GreaterThan(c, Vector256<float>.Zero), x, Vector256<float>.Zero);
    public static Vector256<float> SubNoNaN(Vector256<float> a, Vector256<float> b)
        => Vector256.ConditionalSelect(Vector256.GreaterThanOrEqual(a - b, Vector256.Create(-float.MaxValue)), a - b, Vector256.Create(-float.MaxValue));
    public static Vector256<float> SignOfDifference(Vector256<float> a, Vector256<float> b)
        => Vector256.ConditionalSelect(Vector256.GreaterThan(a, b), Vector256<float>.One, Vector256<float>.Zero)
           - Vector256.ConditionalSelect(Vector256.LessThan(a, b), Vector256<float>.One, Vector256<float>.Zero);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Exp(Vector256<float> x)
    {
        x = Vector256.Min(Vector256.Max(x, Vector256.Create(FastExp.Lower)), Vector256.Create(FastExp.Upper));
        var n = Vector256.Round(x * Vector256.Create(FastExp.Log2E));
        x = Vector256.FusedMultiplyAdd(n, Vector256.Create(-FastExp.C1), x);
        x = Vector256.FusedMultiplyAdd(n, Vector256.Create(-FastExp.C2), x);
        var y = Vector256.FusedMultiplyAdd(Vector256.Create(FastExp.P0), x, Vector256.Create(FastExp.P1));
        y = Vector256.FusedMultiplyAdd(y, x, Vector256.Create(FastExp.P2));
        y = Vector256.FusedMultiplyAdd(y, x, Vector256.Create(FastExp.P3));
        y = Vector256.FusedMultiplyAdd(y, x, Vector256.Create(FastExp.P4));
        y = Vector256.FusedMultiplyAdd(y, x, Vector256.Create(FastExp.P5));
        y = Vector256.FusedMultiplyAdd(y, x * x, x + Vector256<float>.One);
        var bits = Vector256.ShiftLeft(Vector256.ConvertToInt32(n) + Vector256.Create(127), 23);
        return y * bits.AsSingle();
    }

    /// <summary><see cref="FastExp2"/>'s polynomial on y − ⌊y⌋, 2^⌊y⌋ through the exponent bits (0 below −126: no denormals).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Exp2(Vector256<float> y, in Exp2Poly<Vector256<float>> c)
    {
        // IEEE max/min: NaN stays NaN; −∞ → −127, whose 2^⌊y⌋ bits are 0; above 127 the result is +∞.
        var overflow = Vector256.GreaterThan(y, Vector256.Create(FastExp2.Overflow));
        y = Vector256.Min(Vector256.Max(y, Vector256.Create(FastExp2.Flush)), Vector256.Create(FastExp2.Overflow));
        var n = Vector256.Floor(y);
        var r = Exp2Poly<Vector256<float>>.Horner<Simd256>(y - n, c) * Vector256.ShiftLeft(Vector256.ConvertToInt32(n) + Vector256.Create(127), 23).AsSingle();
        return Vector256.ConditionalSelect(overflow, Vector256.Create(float.PositiveInfinity), r);
    }
    public static Exp2Poly<Vector256<float>> Exp2Setup() => new(Vector256.Create(FastExp2.P0), Vector256.Create(FastExp2.P1),
        Vector256.Create(FastExp2.P2), Vector256.Create(FastExp2.P3), Vector256.Create(FastExp2.P4), Vector256.Create(FastExp2.P5),
        Vector256.Create(FastExp2.P6), Vector256.Create(-float.MaxValue));
    public static Vector256<float> SubNoNaN(Vector256<float> a, Vector256<float> b, in Exp2Poly<Vector256<float>> c) => SubNoNaN(a, b);
    public static Vector256<float> Log(Vector256<float> x) => Vector256.Log(x);
    public static float Sum(Vector256<float> v) => Vector256.Sum(v);
    public static bool AnyBelow(Vector256<float> v, float x) => !Vector256.GreaterThanOrEqualAll(v, Vector256.Create(x));
    public static float MaxAcross(Vector256<float> v)
    {
        var m = Vector128.MaxNative(v.GetLower(), v.GetUpper());
        m = Vector128.MaxNative(m, Vector128.Shuffle(m, Vector128.Create(2, 3, 0, 1)));
        m = Vector128.MaxNative(m, Vector128.Shuffle(m, Vector128.Create(1, 0, 3, 2)));
        return m.ToScalar();
    }
}

internal readonly unsafe struct Simd1 : ISimd<float>
{
    public static int Count => 1;
    public static float Load(float* p) => *p;
    public static void Store(float* p, float v) => *p = v;
    public static void StoreStream(float* p, float v) => *p = v;
    public static float Splat(float x) => x;
    public static float Add(float a, float b) => a + b;
    public static float Sub(float a, float b) => a - b;
    public static float Mul(float a, float b) => a * b;
    public static float Div(float a, float b) => a / b;
    public static float Max(float a, float b) => MathF.Max(a, b);
    public static float MaxFast(float a, float b) => a > b ? a : b;
    public static float Abs(float a) => MathF.Abs(a);
    public static float Fma(float a, float b, float c) => MathF.FusedMultiplyAdd(a, b, c);
    public static float IfPositive(float c, float x) => c > 0 ? x : 0f;
    public static float SubNoNaN(float a, float b) => a - b >= -float.MaxValue ? a - b : -float.MaxValue;
    public static float SignOfDifference(float a, float b) => a > b ? 1f : a < b ? -1f : 0f;

    public static float Exp(float x)
    {
        x = MathF.Min(MathF.Max(x, FastExp.Lower), FastExp.Upper);
        float n = MathF.Round(x * FastExp.Log2E);
        x = MathF.FusedMultiplyAdd(n, -FastExp.C1, x);
        x = MathF.FusedMultiplyAdd(n, -FastExp.C2, x);
        float y = MathF.FusedMultiplyAdd(FastExp.P0, x, FastExp.P1);
        y = MathF.FusedMultiplyAdd(y, x, FastExp.P2);
        y = MathF.FusedMultiplyAdd(y, x, FastExp.P3);
        y = MathF.FusedMultiplyAdd(y, x, FastExp.P4);
        y = MathF.FusedMultiplyAdd(y, x, FastExp.P5);
        y = MathF.FusedMultiplyAdd(y, x * x, x + 1f);
        return y * BitConverter.Int32BitsToSingle(((int)n + 127) << 23);
    }

    /// <summary><see cref="FastExp2"/>'s polynomial on y − ⌊y⌋, 2^⌊y⌋ through the exponent bits (0 below −126: no denormals).</summary>
    public static float Exp2(float y, in Exp2Poly<float> c)
    {
        if (float.IsNaN(y)) return y;
        if (y > FastExp2.Overflow) return float.PositiveInfinity;
        y = MathF.Max(y, FastExp2.Flush);
        float n = MathF.Floor(y);
        return Exp2Poly<float>.Horner<Simd1>(y - n, c) * BitConverter.Int32BitsToSingle(((int)n + 127) << 23);
    }
    public static Exp2Poly<float> Exp2Setup() => new(FastExp2.P0, FastExp2.P1, FastExp2.P2, FastExp2.P3, FastExp2.P4, FastExp2.P5, FastExp2.P6, -float.MaxValue);
    public static float SubNoNaN(float a, float b, in Exp2Poly<float> c) => SubNoNaN(a, b);
    public static float Log(float x) => MathF.Log(x);
    public static float Sum(float v) => v;
    public static float MaxAcross(float v) => v;
    public static bool AnyBelow(float v, float x) => !(v >= x);
}
