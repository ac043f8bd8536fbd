using System.Numerics;
using System.Numerics.Tensors;
using Engine.Tensors.AutoDiff;
using Engine.Tensors.Cpu;
using Engine.Tensors.Kernels;

namespace Engine.Tensors;

/// <summary>
/// One-input elementwise math: abs, sign, exp, log, log1p, sqrt, rsqrt, relu, sigmoid, tanh, silu,
/// gelu, erf, sin, cos. Float functions of an integer or bool tensor return float32 (as PyTorch);
/// abs, sign and relu keep integer dtypes. Out-of-domain inputs give IEEE results (log(−1) = NaN,
/// log(0) = −∞, rsqrt(0) = +∞), never exceptions.
/// <para>
/// Every backward is written with differentiable tensor ops, so second-order gradients work. Ops
/// whose derivative is a function of their result save the result (exp, sqrt, rsqrt, relu, sigmoid,
/// tanh — PyTorch's choice too: it is needed anyway and frees x); the others save x.
/// </para>
/// </summary>
public sealed partial class Tensor
{
    private const double InvSqrt2 = 0.70710678118654752440;   // 1/√2
    private const double InvSqrt2Pi = 0.39894228040143267794; // 1/√(2π)
    private const double TwoOverSqrtPi = 1.1283791670955125739; // 2/√π
    private const double GeluTanhK = 0.79788456080286535588;  // √(2/π)
    private const double GeluTanhC = 0.044715;

    /// <summary>|x|. Integer dtypes keep their dtype (|int.MinValue| wraps to itself, as in PyTorch).
    /// Gradient g·sign(x) (0 at x = 0, PyTorch's subgradient).</summary>
    public Tensor Abs()
    {
        var y = ElementwiseDispatch.NumericUnary<AbsOp>("abs", this);
        return Graph.Record(y, "abs", [this], [this], (g, s) =>
        {
            using var sign = s[0].Sign();
            return [g.Mul(sign)];
        });
    }

    /// <summary>sign(x): −1, 0 or 1 (NaN stays NaN). Gradient zero everywhere.</summary>
    public Tensor Sign()
    {
        var y = ElementwiseDispatch.NumericUnary<SignOp>("sign", this);
        return Graph.Record(y, "sign", this, g => ZerosLike(g));
    }

    /// <summary>eˣ. Gradient g·y (saves y).</summary>
    public Tensor Exp()
    {
        var y = Dispatch.FloatUnary<ExpOp>("exp", this);
        return Graph.Record(y, "exp", [this], [y], (g, s) => [g.Mul(s[0])]);
    }

    /// <summary>Natural logarithm (log 0 = −∞, log of a negative = NaN). Gradient g/x.</summary>
    public Tensor Log()
    {
        var y = Dispatch.FloatUnary<LogOp>("log", this);
        return Graph.Record(y, "log", [this], [this], (g, s) => [g.Div(s[0])]);
    }

    /// <summary>log(1 + x), accurate for small |x|. Gradient g/(1 + x).</summary>
    /// <remarks>Computed as log(u)·x/(u − 1) with u = 1 + x (exact to a few ulps; <c>T.LogP1</c> is log(x + 1)
    /// in .NET and loses the digits this op exists for).</remarks>
    public Tensor Log1p()
    {
        var y = Dispatch.FloatUnary<Log1pOp>("log1p", this);
        return Graph.Record(y, "log1p", [this], [this], (g, s) =>
        {
            using var u = s[0].Add(1.0);
            return [g.Div(u)];
        });
    }

    /// <summary>√x (negative → NaN). Gradient g/(2y) (saves y).</summary>
    public Tensor Sqrt()
    {
        var y = Dispatch.FloatUnary<SqrtOp>("sqrt", this);
        return Graph.Record(y, "sqrt", [this], [y], (g, s) =>
        {
            using var twoY = s[0].Mul(2.0);
            return [g.Div(twoY)];
        });
    }

    /// <summary>1/√x (0 → +∞, negative → NaN). Gradient −½·g·y³ (saves y).</summary>
    public Tensor Rsqrt()
    {
        var y = Dispatch.FloatUnary<RsqrtOp>("rsqrt", this);
        return Graph.Record(y, "rsqrt", [this], [y], (g, s) =>
        {
            using var y2 = s[0].Mul(s[0]);
            using var y3 = y2.Mul(s[0]);
            using var gy3 = g.Mul(y3);
            return [gy3.Mul(-0.5)];
        });
    }

    /// <summary>max(x, 0) (NaN stays NaN); integer dtypes keep their dtype. Gradient g·[y &gt; 0] (saves y;
    /// 0 at x = 0, as PyTorch).</summary>
    public Tensor Relu()
    {
        var y = ElementwiseDispatch.NumericUnary<ReluOp>("relu", this);
        return Graph.Record(y, "relu", [this], [y], (g, s) =>
        {
            using var mask = s[0].PositiveMask(g.DType);
            return [g.Mul(mask)];
        });
    }

    /// <summary>[x &gt; 0] as 1/0 of <paramref name="dtype"/> (Relu's gradient mask; a constant, not recorded).</summary>
    private Tensor PositiveMask(DType dtype)
    {
        using var _ = NoGrad();
        if (KernelDispatch.IsAccelerated(this)) return ElementwiseDispatch.NumericUnary<Kernels.PositiveMaskOp>("relu backward", this);
        using var positive = Gt(0.0);
        return positive.To(dtype);
    }

    /// <summary>σ(x) = 1/(1 + e⁻ˣ). Gradient g·y·(1 − y) (saves y).</summary>
    /// <remarks>Stable for any |x|: for x → −∞, e⁻ˣ overflows to +∞ and 1/(1 + ∞) = 0; for x → +∞,
    /// e⁻ˣ → 0 and the result is 1. No NaN arises from finite inputs.</remarks>
    public Tensor Sigmoid()
    {
        var y = Dispatch.FloatUnary<SigmoidOp>("sigmoid", this);
        return Graph.Record(y, "sigmoid", [this], [y], (g, s) =>
        {
            using var oneMinus = 1.0 - s[0];
            using var dy = s[0].Mul(oneMinus);
            return [g.Mul(dy)];
        });
    }

    /// <summary>tanh(x). Gradient g·(1 − y²) (saves y).</summary>
    public Tensor Tanh()
    {
        var y = Dispatch.FloatUnary<TanhOp>("tanh", this);
        return Graph.Record(y, "tanh", [this], [y], (g, s) =>
        {
            using var y2 = s[0].Mul(s[0]);
            using var dy = 1.0 - y2;
            return [g.Mul(dy)];
        });
    }

    /// <summary>
    /// SiLU (swish): x·σ(x), computed as x/(1 + e⁻ˣ) (stable like <see cref="Sigmoid"/>).
    /// Derivative: σ(x)·(1 + x·(1 − σ(x))). Gradient g times that (saves x; σ is recomputed).
    /// </summary>
    public Tensor Silu()
    {
        var y = Dispatch.FloatUnary<SiluOp>("silu", this);
        return Graph.Record(y, "silu", [this], [this], (g, s) =>
        {
            var x = s[0];
            using var sig = x.Sigmoid();
            using var oneMinus = 1.0 - sig;
            using var xTimes = x.Mul(oneMinus);
            using var inner = xTimes.Add(1.0);
            using var dy = sig.Mul(inner);
            return [g.Mul(dy)];
        });
    }

    /// <summary>
    /// GELU. <paramref name="approximate"/> = "none" (default): the exact form x·Φ(x), with
    /// Φ(x) = ½·erfc(−x/√2) the standard normal CDF (erfc keeps the x → −∞ tail accurate).
    /// Derivative: Φ(x) + x·φ(x), φ(x) = e^(−x²/2)/√(2π).
    /// <para>
    /// <paramref name="approximate"/> = "tanh": ½·x·(1 + tanh(u)), u = √(2/π)·(x + 0.044715·x³).
    /// Derivative: ½·(1 + t) + ½·x·(1 − t²)·√(2/π)·(1 + 3·0.044715·x²), t = tanh(u).
    /// </para>
    /// The exact form evaluates erfc in double, element by element (a 24-term Chebyshev series and one
    /// or two exps, see <c>Engine.Runtime/Kernels/SpecialFunctions.cs</c>; ~40 ns per element on one core, not vectorized
    /// yet), so it costs far more than the tanh form, which runs on <c>TensorPrimitives</c> in the
    /// input's own precision for contiguous rows (in double for strided ones).
    /// Gradient g times the derivative (saves x).
    /// </summary>
    /// <exception cref="ArgumentException"><paramref name="approximate"/> is neither "none" nor "tanh".</exception>
    public Tensor Gelu(string approximate = "none")
    {
        if (approximate == "none")
        {
            var y = Dispatch.FloatUnary<GeluOp>("gelu", this);
            return Graph.Record(y, "gelu", [this], [this], (g, s) =>
            {
                var x = s[0];
                using var scaled = x.Mul(InvSqrt2);
                using var erf = scaled.Erf();
                using var onePlus = erf.Add(1.0);
                using var cdf = onePlus.Mul(0.5);
                using var x2 = x.Mul(x);
                using var halfX2 = x2.Mul(-0.5);
                using var e = halfX2.Exp();
                using var pdf = e.Mul(InvSqrt2Pi);
                using var xPdf = x.Mul(pdf);
                using var dy = cdf.Add(xPdf);
                return [g.Mul(dy)];
            });
        }
        if (approximate == "tanh")
        {
            var y = Dispatch.FloatUnary<GeluTanhOp>("gelu", this);
            return Graph.Record(y, "gelu", [this], [this], (g, s) =>
            {
                var x = s[0];
                using var x2 = x.Mul(x);
                using var cx2 = x2.Mul(GeluTanhC);
                using var inner = cx2.Add(1.0);     // 1 + c·x²
                using var poly = x.Mul(inner);       // x + c·x³
                using var u = poly.Mul(GeluTanhK);
                using var t = u.Tanh();
                using var onePlusT = t.Add(1.0);
                using var left = onePlusT.Mul(0.5);  // ½(1 + t)
                using var t2 = t.Mul(t);
                using var sech2 = 1.0 - t2;          // 1 − t²
                using var cx2x3 = x2.Mul(3 * GeluTanhC);
                using var du = cx2x3.Add(1.0);       // 1 + 3c·x²
                using var a = x.Mul(sech2);
                using var b = a.Mul(du);
                using var right = b.Mul(0.5 * GeluTanhK);
                using var dy = left.Add(right);
                return [g.Mul(dy)];
            });
        }
        throw new ArgumentException($"gelu: approximate must be \"none\" or \"tanh\", got \"{approximate}\".", nameof(approximate));
    }

    /// <summary>The error function erf(x) = 2/√π ∫₀ˣ e^(−t²) dt (computed in double; see
    /// <c>Engine.Runtime/Kernels/SpecialFunctions.cs</c>). Gradient g·2/√π·e^(−x²) (saves x).</summary>
    public Tensor Erf()
    {
        var y = Dispatch.FloatUnary<ErfOp>("erf", this);
        return Graph.Record(y, "erf", [this], [this], (g, s) =>
        {
            using var x2 = s[0].Mul(s[0]);
            using var negX2 = x2.Neg();
            using var e = negX2.Exp();
            using var dy = e.Mul(TwoOverSqrtPi);
            return [g.Mul(dy)];
        });
    }

    /// <summary>sin(x). Gradient g·cos(x) (saves x).</summary>
    public Tensor Sin()
    {
        var y = Dispatch.FloatUnary<SinOp>("sin", this);
        return Graph.Record(y, "sin", [this], [this], (g, s) =>
        {
            using var c = s[0].Cos();
            return [g.Mul(c)];
        });
    }

    /// <summary>cos(x). Gradient −g·sin(x) (saves x).</summary>
    public Tensor Cos()
    {
        var y = Dispatch.FloatUnary<CosOp>("cos", this);
        return Graph.Record(y, "cos", [this], [this], (g, s) =>
        {
            using var sin = s[0].Sin();
            using var negSin = sin.Neg();
            return [g.Mul(negSin)];
        });
    }

    // ---------------------------------------------------------------- op structs (scalar + vector form)

    private static bool IsFloat<T>() => typeof(T) == typeof(float) || typeof(T) == typeof(double);

    internal readonly struct AbsOp : INumericUnary
    {
        // Negation wraps for int.MinValue (unchecked), as PyTorch; TensorPrimitives.Abs would throw there,
        // so it is used for floats only.
        public static T Invoke<T>(T x) where T : INumber<T> => T.IsNegative(x) ? -x : x;
        public static void Invoke<T>(ReadOnlySpan<T> x, Span<T> y) where T : INumber<T>
        {
            if (IsFloat<T>()) TensorPrimitives.Abs(x, y);
            else for (int i = 0; i < x.Length; i++) y[i] = Invoke(x[i]);
        }
        public static bool HasVectorForm => true;
    }

    internal readonly struct SignOp : INumericUnary
    {
        public static T Invoke<T>(T x) where T : INumber<T> => x > T.Zero ? T.One : x < T.Zero ? -T.One : x;
    }

    internal readonly struct ReluOp : INumericUnary
    {
        public static T Invoke<T>(T x) where T : INumber<T> => x > T.Zero || T.IsNaN(x) ? x : T.Zero;
        public static void Invoke<T>(ReadOnlySpan<T> x, Span<T> y) where T : INumber<T> => TensorPrimitives.Max(x, T.Zero, y); // NaN-propagating
        public static bool HasVectorForm => true;
    }

    internal readonly struct ExpOp : IFloatUnary
    {
        public static T Invoke<T>(T x) where T : IFloatingPointIeee754<T> => T.Exp(x);
        public static void Invoke<T>(ReadOnlySpan<T> x, Span<T> y) where T : IFloatingPointIeee754<T> => TensorPrimitives.Exp(x, y);
        public static bool HasVectorForm => true;
    }

    internal readonly struct LogOp : IFloatUnary
    {
        public static T Invoke<T>(T x) where T : IFloatingPointIeee754<T> => T.Log(x);
        public static void Invoke<T>(ReadOnlySpan<T> x, Span<T> y) where T : IFloatingPointIeee754<T> => TensorPrimitives.Log(x, y);
        public static bool HasVectorForm => true;
    }

    private readonly struct Log1pOp : IFloatUnary
    {
        public static T Invoke<T>(T x) where T : IFloatingPointIeee754<T>
        {
            T u = T.One + x;
            if (u == T.One) return x;                     // |x| below half an ulp of 1: log1p(x) = x
            if (T.IsPositiveInfinity(u)) return u;
            return T.Log(u) * (x / (u - T.One));         // cancels the rounding error of 1 + x
        }
    }

    internal readonly struct SqrtOp : IFloatUnary
    {
        public static T Invoke<T>(T x) where T : IFloatingPointIeee754<T> => T.Sqrt(x);
        public static void Invoke<T>(ReadOnlySpan<T> x, Span<T> y) where T : IFloatingPointIeee754<T> => TensorPrimitives.Sqrt(x, y);
        public static bool HasVectorForm => true;
    }

    internal readonly struct RsqrtOp : IFloatUnary
    {
        public static T Invoke<T>(T x) where T : IFloatingPointIeee754<T> => T.One / T.Sqrt(x);
        public static void Invoke<T>(ReadOnlySpan<T> x, Span<T> y) where T : IFloatingPointIeee754<T> => TensorPrimitives.ReciprocalSqrt(x, y);
        public static bool HasVectorForm => true;
    }

    internal readonly struct SigmoidOp : IFloatUnary
    {
        public static T Invoke<T>(T x) where T : IFloatingPointIeee754<T> => T.One / (T.One + T.Exp(-x));
        public static void Invoke<T>(ReadOnlySpan<T> x, Span<T> y) where T : IFloatingPointIeee754<T> => TensorPrimitives.Sigmoid(x, y);
        public static bool HasVectorForm => true;
    }

    internal readonly struct TanhOp : IFloatUnary
    {
        public static T Invoke<T>(T x) where T : IFloatingPointIeee754<T> => T.Tanh(x);
        public static void Invoke<T>(ReadOnlySpan<T> x, Span<T> y) where T : IFloatingPointIeee754<T> => TensorPrimitives.Tanh(x, y);
        public static bool HasVectorForm => true;
    }

    internal readonly struct SiluOp : IFloatUnary
    {
        public static T Invoke<T>(T x) where T : IFloatingPointIeee754<T> => x / (T.One + T.Exp(-x));
        public static void Invoke<T>(ReadOnlySpan<T> x, Span<T> y) where T : IFloatingPointIeee754<T>
        {
            // y may alias x only when they are the same span, which both calls allow.
            TensorPrimitives.Sigmoid(x, y);
            TensorPrimitives.Multiply(x, y, y);
        }
        public static bool HasVectorForm => true;
    }

    internal readonly struct GeluOp : IFloatUnary
    {
        public static T Invoke<T>(T x) where T : IFloatingPointIeee754<T>
        {
            double v = double.CreateTruncating(x);
            return T.CreateTruncating(0.5 * v * global::Engine.Runtime.Kernels.SpecialFunctions.Erfc(-v * InvSqrt2));
        }
    }

    internal readonly struct GeluTanhOp : IFloatUnary
    {
        public static T Invoke<T>(T x) where T : IFloatingPointIeee754<T>
        {
            double v = double.CreateTruncating(x);
            return T.CreateTruncating(0.5 * v * (1 + Math.Tanh(GeluTanhK * (v + GeluTanhC * v * v * v))));
        }

        // Contiguous rows: the same formula in T with TensorPrimitives, in place in y (exact overlap is allowed).
        public static void Invoke<T>(ReadOnlySpan<T> x, Span<T> y) where T : IFloatingPointIeee754<T>
        {
            TensorPrimitives.Multiply(x, x, y);                                  // x²
            TensorPrimitives.Multiply(y, T.CreateTruncating(GeluTanhC), y);     // c·x²
            TensorPrimitives.Add(y, T.One, y);                                   // 1 + c·x²
            TensorPrimitives.Multiply(y, x, y);                                  // x + c·x³
            TensorPrimitives.Multiply(y, T.CreateTruncating(GeluTanhK), y);     // u
            TensorPrimitives.Tanh(y, y);                                         // t
            TensorPrimitives.Add(y, T.One, y);                                   // 1 + t
            TensorPrimitives.Multiply(y, x, y);
            TensorPrimitives.Multiply(y, T.CreateTruncating(0.5), y);           // ½·x·(1 + t)
        }
        public static bool HasVectorForm => true;
    }

    internal readonly struct ErfOp : IFloatUnary
    {
        public static T Invoke<T>(T x) where T : IFloatingPointIeee754<T> => T.CreateTruncating(global::Engine.Runtime.Kernels.SpecialFunctions.Erf(double.CreateTruncating(x)));
    }

    internal readonly struct SinOp : IFloatUnary
    {
        public static T Invoke<T>(T x) where T : IFloatingPointIeee754<T> => T.Sin(x);
        public static void Invoke<T>(ReadOnlySpan<T> x, Span<T> y) where T : IFloatingPointIeee754<T> => TensorPrimitives.Sin(x, y);
        public static bool HasVectorForm => true;
    }

    internal readonly struct CosOp : IFloatUnary
    {
        public static T Invoke<T>(T x) where T : IFloatingPointIeee754<T> => T.Cos(x);
        public static void Invoke<T>(ReadOnlySpan<T> x, Span<T> y) where T : IFloatingPointIeee754<T> => TensorPrimitives.Cos(x, y);
        public static bool HasVectorForm => true;
    }
}
