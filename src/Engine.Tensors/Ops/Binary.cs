using System.Numerics;
using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Engine.Tensors.AutoDiff;
using Engine.Tensors.Cpu;

namespace Engine.Tensors;

/// <summary>
/// Two-input elementwise math with broadcasting and PyTorch's type promotion: pow, maximum,
/// minimum, and clamp (which is maximum then minimum with the bounds).
/// </summary>
public sealed partial class Tensor
{
    /// <summary>
    /// thisᵉˣᵖᵒⁿᵉⁿᵗ elementwise (broadcast). Floats follow IEEE pow (e.g. (−8)^(1/3) = NaN, 0^−1 = +∞).
    /// Integers use exact repeated squaring (wrapping on overflow); a negative integer exponent gives
    /// 0 except for bases 1 and −1 (PyTorch's rule).
    /// <para>Gradients: d/dbase = g·b·a^(b−1), taken as 0 where b = 0; d/dexponent = g·y·log(a), taken as 0 where a = 0 and
    /// b ≥ 0 (the limit, as PyTorch; log(0) = −∞ would otherwise give NaN). Saves a, b and y.</para>
    /// </summary>
    public Tensor Pow(Tensor exponent)
    {
        var y = Dispatch.NumericBinary<PowOp>("pow", this, exponent);
        bool ga = RequiresGrad, gb = exponent.RequiresGrad;
        var (sa, sb) = (_shape, exponent._shape);
        return Graph.Record(y, "pow", [this, exponent], [this, exponent, y], (g, s) =>
        {
            Tensor? da = null, db = null;
            if (ga)
            {
                using var bMinus1 = s[1].Sub(1.0);
                using var p = s[0].Pow(bMinus1);
                using var bp = s[1].Mul(p);
                using var bZero = s[1].Eq(0.0);
                using var zero = ScalarLike(0, bp.DType, bp.Device);
                using var safe = Where(bZero, zero, bp); // b = 0: d/da a⁰ = 0, not 0·0⁻¹ = NaN
                using var full = g.Mul(safe);
                da = full.SumToShape(sa);
                if (ReferenceEquals(da, full)) da = full.Alias();
            }
            if (gb)
            {
                using var logA = s[0].Log();
                using var yLog = s[2].Mul(logA);
                using var aZero = s[0].Eq(0.0);
                using var bNonNeg = s[1].Ge(0.0);
                using var limit = aZero.LogicalAnd(bNonNeg);
                using var zero = ScalarLike(0, yLog.DType, yLog.Device);
                using var safe = Where(limit, zero, yLog);
                using var full = g.Mul(safe);
                db = full.SumToShape(sb);
                if (ReferenceEquals(db, full)) db = full.Alias();
            }
            return [da, db];
        });
    }

    /// <summary>
    /// this^<paramref name="exponent"/> for a number. An integer tensor with an integral exponent stays
    /// integer; a fractional exponent gives float32 (as PyTorch). Gradient g·e·x^(e−1) (saves x).
    /// </summary>
    public Tensor Pow(double exponent)
    {
        Tensor y;
        using (var e = ScalarOf(exponent))
        using (NoGrad())
            y = Dispatch.NumericBinary<PowOp>("pow", this, e);
        return Graph.Record(y, "pow", [this], [this], (g, s) =>
        {
            if (exponent == 0) return [ZerosLike(g)];
            using var p = s[0].Pow(exponent - 1);
            using var ep = p.Mul(exponent);
            return [g.Mul(ep)];
        });
    }

    /// <summary>
    /// Elementwise maximum (broadcast; NaN propagates). Gradient: g to the larger input; on ties each
    /// input gets g/2 (PyTorch's rule), so the sum of the two gradients is always g.
    /// </summary>
    public Tensor Maximum(Tensor other) => MinMax(other, "maximum", max: true);

    /// <summary>Elementwise minimum (broadcast; NaN propagates). Gradient: g to the smaller input, g/2 each on ties.</summary>
    public Tensor Minimum(Tensor other) => MinMax(other, "minimum", max: false);

    /// <summary>Maximum with a number (converted as in <see cref="Add(double)"/>).</summary>
    public Tensor Maximum(double other) { using var s = ScalarOf(other); return Maximum(s); }

    /// <summary>Minimum with a number (converted as in <see cref="Add(double)"/>).</summary>
    public Tensor Minimum(double other) { using var s = ScalarOf(other); return Minimum(s); }

    private Tensor MinMax(Tensor other, string name, bool max)
    {
        var y = max ? Dispatch.NumericBinary<MaxOp>(name, this, other) : Dispatch.NumericBinary<MinOp>(name, this, other);
        bool ga = RequiresGrad, gb = other.RequiresGrad;
        var (sa, sb) = (_shape, other._shape);
        return Graph.Record(y, name, [this, other], [this, other], (g, s) =>
        {
            // Weight of input a: 1 where a wins, ½ on ties, 0 where b wins; b gets the complement.
            using var wins = max ? s[0].Gt(s[1]) : s[0].Lt(s[1]);
            using var ties = s[0].Eq(s[1]);
            using var winsF = wins.To(g.DType);
            using var tiesF = ties.To(g.DType);
            using var halfTies = tiesF.Mul(0.5);
            using var wa = winsF.Add(halfTies);
            Tensor? da = null, db = null;
            if (ga)
            {
                using var full = g.Mul(wa);
                da = full.SumToShape(sa);
                if (ReferenceEquals(da, full)) da = full.Alias();
            }
            if (gb)
            {
                using var wb = 1.0 - wa;
                using var full = g.Mul(wb);
                db = full.SumToShape(sb);
                if (ReferenceEquals(db, full)) db = full.Alias();
            }
            return [da, db];
        });
    }

    /// <summary>
    /// min(max(x, <paramref name="min"/>), <paramref name="max"/>); either bound may be omitted. As in
    /// PyTorch, min &gt; max gives max everywhere, and a NaN input stays NaN. An integer tensor with a
    /// fractional bound gives float32.
    /// Gradient: g where min ≤ x ≤ max, 0 outside (saves x).
    /// </summary>
    /// <exception cref="ArgumentException">Both bounds are null.</exception>
    public Tensor Clamp(double? min = null, double? max = null)
    {
        if (min is null && max is null)
            throw new ArgumentException($"clamp: at least one of min and max must be given (tensor of shape {ShapeUtil.Format(Shape)}).");
        Tensor y;
        using (NoGrad())
        {
            Tensor lower = min is null ? Alias() : Maximum(min.Value);
            if (max is null) y = lower;
            else
            {
                y = lower.Minimum(max.Value);
                lower.Dispose();
            }
        }
        return Graph.Record(y, "clamp", [this], [this], (g, s) =>
        {
            using var inside = InBounds(s[0], min, max);
            using var mask = inside.To(g.DType);
            return [g.Mul(mask)];
        });
    }

    /// <summary>
    /// Clamp with tensor bounds (broadcast with x; either may be null): Minimum(Maximum(x, min), max).
    /// Gradients flow to x and to the bounds as in <see cref="Maximum(Tensor)"/> and
    /// <see cref="Minimum(Tensor)"/> (ties between x and a bound split g in halves).
    /// </summary>
    /// <exception cref="ArgumentException">Both bounds are null.</exception>
    public Tensor Clamp(Tensor? min, Tensor? max)
    {
        if (min is null && max is null)
            throw new ArgumentException($"clamp: at least one of min and max must be given (tensor of shape {ShapeUtil.Format(Shape)}).");
        if (min is null) return Minimum(max!);
        if (max is null) return Maximum(min);
        using var lower = Maximum(min);
        return lower.Minimum(max);
    }

    private static Tensor InBounds(Tensor x, double? min, double? max)
    {
        Tensor? lo = min is null ? null : x.Ge(min.Value);
        Tensor? hi = max is null ? null : x.Le(max.Value);
        if (lo is null) return hi!;
        if (hi is null) return lo;
        var both = lo.LogicalAnd(hi);
        lo.Dispose();
        hi.Dispose();
        return both;
    }

    // ---------------------------------------------------------------- op structs

    internal readonly struct PowOp : INumericBinary
    {
        public static T Invoke<T>(T a, T b) where T : INumber<T>
        {
            if (typeof(T) == typeof(double)) return (T)(object)Math.Pow((double)(object)a, (double)(object)b);
            if (typeof(T) == typeof(float)) return (T)(object)MathF.Pow((float)(object)a, (float)(object)b);
            return IntPow(a, b);
        }

        public static void Invoke<T>(ReadOnlySpan<T> a, ReadOnlySpan<T> b, Span<T> y) where T : INumber<T>
        {
            if (typeof(T) == typeof(float)) TensorPrimitives.Pow(Cast<T, float>(a), Cast<T, float>(b), Cast<T, float>(y));
            else if (typeof(T) == typeof(double)) TensorPrimitives.Pow(Cast<T, double>(a), Cast<T, double>(b), Cast<T, double>(y));
            else for (int i = 0; i < a.Length; i++) y[i] = IntPow(a[i], b[i]);
        }

        public static void Invoke<T>(ReadOnlySpan<T> a, T b, Span<T> y) where T : INumber<T>
        {
            if (typeof(T) == typeof(float)) TensorPrimitives.Pow(Cast<T, float>(a), (float)(object)b, Cast<T, float>(y));
            else if (typeof(T) == typeof(double)) TensorPrimitives.Pow(Cast<T, double>(a), (double)(object)b, Cast<T, double>(y));
            else for (int i = 0; i < a.Length; i++) y[i] = IntPow(a[i], b);
        }

        public static void Invoke<T>(T a, ReadOnlySpan<T> b, Span<T> y) where T : INumber<T>
        {
            if (typeof(T) == typeof(float)) TensorPrimitives.Pow((float)(object)a, Cast<T, float>(b), Cast<T, float>(y));
            else if (typeof(T) == typeof(double)) TensorPrimitives.Pow((double)(object)a, Cast<T, double>(b), Cast<T, double>(y));
            else for (int i = 0; i < b.Length; i++) y[i] = IntPow(a, b[i]);
        }

        public static bool HasVectorForm => true;

        private static T IntPow<T>(T a, T b) where T : INumber<T>
        {
            if (T.IsNegative(b))
            {
                if (a == T.One) return T.One;
                if (a == -T.One) return T.IsEvenInteger(b) ? T.One : -T.One;
                return T.Zero;
            }
            T result = T.One, power = a;
            while (b > T.Zero)
            {
                if (T.IsOddInteger(b)) result *= power; // wraps on overflow (unchecked)
                b /= T.CreateTruncating(2);
                if (b > T.Zero) power *= power;
            }
            return result;
        }

        // Reinterprets a span of T as the float type T is (checked by the callers' typeof tests).
        private static ReadOnlySpan<TTo> Cast<TFrom, TTo>(ReadOnlySpan<TFrom> s)
            => MemoryMarshal.CreateReadOnlySpan(ref Unsafe.As<TFrom, TTo>(ref MemoryMarshal.GetReference(s)), s.Length);
        private static Span<TTo> Cast<TFrom, TTo>(Span<TFrom> s)
            => MemoryMarshal.CreateSpan(ref Unsafe.As<TFrom, TTo>(ref MemoryMarshal.GetReference(s)), s.Length);
    }

    internal readonly struct MaxOp : INumericBinary
    {
        public static T Invoke<T>(T a, T b) where T : INumber<T> => T.Max(a, b); // NaN-propagating for floats
        public static void Invoke<T>(ReadOnlySpan<T> a, ReadOnlySpan<T> b, Span<T> y) where T : INumber<T> => TensorPrimitives.Max(a, b, y);
        public static void Invoke<T>(ReadOnlySpan<T> a, T b, Span<T> y) where T : INumber<T> => TensorPrimitives.Max(a, b, y);
        public static void Invoke<T>(T a, ReadOnlySpan<T> b, Span<T> y) where T : INumber<T> => TensorPrimitives.Max(b, a, y);
        public static bool HasVectorForm => true;
    }

    internal readonly struct MinOp : INumericBinary
    {
        public static T Invoke<T>(T a, T b) where T : INumber<T> => T.Min(a, b);
        public static void Invoke<T>(ReadOnlySpan<T> a, ReadOnlySpan<T> b, Span<T> y) where T : INumber<T> => TensorPrimitives.Min(a, b, y);
        public static void Invoke<T>(ReadOnlySpan<T> a, T b, Span<T> y) where T : INumber<T> => TensorPrimitives.Min(a, b, y);
        public static void Invoke<T>(T a, ReadOnlySpan<T> b, Span<T> y) where T : INumber<T> => TensorPrimitives.Min(b, a, y);
        public static bool HasVectorForm => true;
    }
}
