// Elementwise kernels beside ElementwiseKernels' families: a float-only binary family (pow) and the
// logical ops on bool tensors, so pow (tensor^tensor, tensor^scalar), clamp (maximum/minimum, in
// ElementwiseKernels.Binary) and their gradients run on a device.
//
// Math      FloatBinary<TOp>  y[i] = TOp(a[offA(i)], b[offB(i)]) for a math function of two floats:
//                             FloatPowOp = T.Pow(a, b) (IEEE pow: (−8)^(1/3) = NaN, 0^−1 = +∞, x^0 = 1).
//                             The CPU's PowOp picks MathF.Pow / TensorPrimitives.Pow by a run-time type
//                             test the kernel language cannot translate; FloatPowOp is its float case.
//           Logical           y[i] = a[offA(i)] ∘ b[offB(i)] on bool bytes (non-zero = true), ∘ = and (0),
//                             or (1), xor (2); not (3) ignores b. Outputs 0/1.
//           Gradients are tensor ops (Ops/Binary.cs: pow's g·b·a^(b−1) and g·y·log a with their limits,
//           built from Pow, Mul, Log, Eq, Ge, LogicalAnd, Where); logical ops have none.
// Layout    As ElementwiseKernels.Binary: strided, broadcasting inputs in ElementwiseLayout (rank ≤ 8),
//           contiguous output, 32-bit indexing (ElementwisePlan refuses 2^31 elements or more).
// Bytes     FloatBinary 12 B/element (pow ~20-40 instructions: exp2/log2 with range reduction): memory
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
