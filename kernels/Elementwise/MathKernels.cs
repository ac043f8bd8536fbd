// Elementwise kernels beside ElementwiseKernels' families: a float-only binary family (pow) and the
// logical ops on bool tensors, so pow (tensor^tensor, tensor^scalar), clamp (maximum/minimum, in
// ElementwiseKernels.Binary) and their gradients run on a device.
//
// Math      FloatBinary<TOp>  y[i] = TOp(a[offA(i)], b[offB(i)]) for a math function of two floats:
//                             FloatPowOp = T.Pow(a, b) (IEEE pow: (−8)^(1/3) = NaN, 0^−1 = +∞, x^0 = 1).
//                             The CPU's PowOp picks MathF.Pow / TensorPrimitives.Pow by a run-time type
//                             test the kernel language cannot translate; FloatPowOp is its float case.
//           DeviceUnary<TOp>  y[i] = TOp(x[offA(i)]) for the float32 functions whose CPU op struct the
//                             kernel language cannot translate (T.IsNegative, double-precision erf):
//                             DeviceAbsOp   = |x| (fabsf: abs(−0) = +0, NaN stays NaN; the CPU's AbsOp).
//                             DeviceErfOp   = erf(x) (erff / erf, ≤ 2 ulp; the CPU rounds a double erf).
//                             DeviceGeluOp  = ½·x·erfc(−x/√2) (erfcf: the x → −∞ tail keeps its relative
//                                             accuracy, as the CPU's GeluOp; gelu(−∞) = −∞·0 = NaN as on the CPU).
//                             DeviceGeluTanhOp = x·σ(2u) = x/(1 + e^(−2u)), u = √(2/π)·x·(1 + 0.044715·x²):
//                                             the same function as ½·x·(1 + tanh u) (1 + tanh u = 2σ(2u)), but
//                                             without 1 + tanh u cancelling to 0 in float for x ≲ −5 (the CPU
//                                             computes it in double); x = −∞ gives −∞/∞ = NaN as the CPU's −∞·0.
//                             On the emulator XMath.Erf/Erfc run the CPU's double SpecialFunctions.
//           Logical           y[i] = a[offA(i)] ∘ b[offB(i)] on bool bytes (non-zero = true), ∘ = and (0),
//                             or (1), xor (2); not (3) ignores b. Outputs 0/1.
//           Gradients are tensor ops (Ops/Unary.cs: abs' g·sign(x), erf's g·2/√π·e^(−x²), gelu's Φ + x·φ
//           and the tanh form's derivative, all from ops with kernels; Ops/Binary.cs: pow's g·b·a^(b−1) and g·y·log a with their limits,
//           built from Pow, Mul, Log, Eq, Ge, LogicalAnd, Where); logical ops have none.
// Layout    As ElementwiseKernels.Binary: strided, broadcasting inputs in ElementwiseLayout (rank ≤ 8),
//           contiguous output, 32-bit indexing (ElementwisePlan refuses 2^31 elements or more).
//           DeviceUnary reads one strided input the same way (ElementwisePlan.Unary).
// Bytes     DeviceUnary 8 B/element (erff/erfcf ~20-30 instructions, expf ~10): memory bound.
//           FloatBinary 12 B/element (pow ~20-40 instructions: exp2/log2 with range reduction): memory
//           bound on GPUs. Logical 3 B/element.
// Launch    1-D, ElementwisePlan.GroupSize (256) threads per group, one thread per output element.
using System.Numerics;
using Engine.Runtime.Kernels;

namespace Engine.Tensors.Kernels;

/// <summary>A math function of two floating-point values, for float and double (the kernel twin of INumericBinary for functions INumber lacks).</summary>
internal interface IFloatBinary
{
    /// <summary>The function at (<paramref name="a"/>, <paramref name="b"/>).</summary>
    static abstract T Invoke<T>(T a, T b) where T : IFloatingPointIeee754<T>;
}

/// <summary>a^b (IEEE pow), the float case of Tensor.PowOp.</summary>
internal readonly struct FloatPowOp : IFloatBinary
{
    /// <summary>T.Pow(a, b).</summary>
    public static T Invoke<T>(T a, T b) where T : IFloatingPointIeee754<T> => T.Pow(a, b);
}

/// <summary>A float32 function for <see cref="MathKernels.DeviceUnary{TOp}"/>: the device twin of a CPU op struct the kernel language cannot translate.</summary>
internal interface IDeviceUnary
{
    /// <summary>The function at <paramref name="x"/>.</summary>
    static abstract float Invoke(float x);
}

/// <summary>|x| on a device (Tensor.AbsOp uses T.IsNegative, which has no GPU mapping).</summary>
internal readonly struct DeviceAbsOp : IDeviceUnary
{
    /// <summary>fabsf(x).</summary>
    public static float Invoke(float x) => XMath.Abs(x);
}

/// <summary>erf(x) on a device (Tensor.ErfOp evaluates a double series on the CPU).</summary>
internal readonly struct DeviceErfOp : IDeviceUnary
{
    /// <summary>erff(x).</summary>
    public static float Invoke(float x) => XMath.Erf(x);
}

/// <summary>Exact GELU ½·x·erfc(−x/√2) on a device (Tensor.GeluOp's formula in float32).</summary>
internal readonly struct DeviceGeluOp : IDeviceUnary
{
    private const float InvSqrt2 = 0.70710678118654752440f;

    /// <summary>½·x·erfc(−x/√2).</summary>
    public static float Invoke(float x) => 0.5f * x * XMath.Erfc(-x * InvSqrt2);
}

/// <summary>Tanh-form GELU on a device: x/(1 + e^(−2u)), u = √(2/π)·x·(1 + 0.044715·x²) (see the file header).</summary>
internal readonly struct DeviceGeluTanhOp : IDeviceUnary
{
    private const float TwoK = 2f * 0.79788456080286535588f; // 2·√(2/π)
    private const float C = 0.044715f;

    /// <summary>½·x·(1 + tanh u) written as x·σ(2u).</summary>
    public static float Invoke(float x) => x / (1f + XMath.Exp(-TwoK * x * (1f + C * x * x)));
}

/// <summary>Float-only binary functions and logical ops on bool tensors (see the file header).</summary>
internal static partial class MathKernels
{
    /// <summary>Logical op codes of <see cref="Logical"/>.</summary>
    public const int And = 0, Or = 1, Xor = 2, Not = 3;

    /// <summary>y[i] = TOp(a[offA(i)], b[offB(i)]) with broadcasting (pow).</summary>
    [Kernel, KernelInstance(typeof(FloatPowOp))]
    public static void FloatBinary<TOp>(ArrayView<float> a, ArrayView<float> b, ArrayView<float> y, ElementwiseLayout layout) where TOp : IFloatBinary
    {
        int i = Grid.GlobalIndexX;
        if (i >= y.Length) return;
        int rest = i, ia = layout.OffsetA, ib = layout.OffsetB;
        for (int d = ElementwiseKernels.MaxRank - 1; d >= 0; d--)
        {
            if (d >= layout.Rank) continue;
            int extent = layout.Shape[d];
            int c = rest % extent;
            rest /= extent;
            ia += c * layout.StrideA[d];
            ib += c * layout.StrideB[d];
        }
        y[i] = TOp.Invoke(a[ia], b[ib]);
    }

    /// <summary>y[i] = TOp(x[offA(i)]) for a float32 function with a device-only op struct (abs, erf, gelu).</summary>
    [Kernel, KernelInstance(typeof(DeviceAbsOp)), KernelInstance(typeof(DeviceErfOp))]
    [KernelInstance(typeof(DeviceGeluOp)), KernelInstance(typeof(DeviceGeluTanhOp))]
    public static void DeviceUnary<TOp>(ArrayView<float> x, ArrayView<float> y, ElementwiseLayout layout) where TOp : IDeviceUnary
    {
        int i = Grid.GlobalIndexX;
        if (i >= y.Length) return;
        int rest = i, ix = layout.OffsetA;
        for (int d = ElementwiseKernels.MaxRank - 1; d >= 0; d--) // constant trip count: unrolled
        {
            if (d >= layout.Rank) continue;
            int extent = layout.Shape[d];
            int c = rest % extent;
            rest /= extent;
            ix += c * layout.StrideA[d];
        }
        y[i] = TOp.Invoke(x[ix]);
    }

    /// <summary>y[i] = a[offA(i)] ∘ b[offB(i)] on bool bytes, ∘ by <paramref name="op"/> (And, Or, Xor, Not).</summary>
    [Kernel]
    public static void Logical(ArrayView<byte> a, ArrayView<byte> b, ArrayView<byte> y, ElementwiseLayout layout, int op)
    {
        int i = Grid.GlobalIndexX;
        if (i >= y.Length) return;
        int rest = i, ia = layout.OffsetA, ib = layout.OffsetB;
        for (int d = ElementwiseKernels.MaxRank - 1; d >= 0; d--)
        {
            if (d >= layout.Rank) continue;
            int extent = layout.Shape[d];
            int c = rest % extent;
            rest /= extent;
            ia += c * layout.StrideA[d];
            ib += c * layout.StrideB[d];
        }
        bool x = a[ia] != 0;
        bool z = op == Not ? false : b[ib] != 0;
        bool r = op == And ? x && z : op == Or ? x || z : op == Xor ? x != z : !x;
        y[i] = r ? (byte)1 : (byte)0;
    }
}
