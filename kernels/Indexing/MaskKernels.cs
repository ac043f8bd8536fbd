// Masks on a device: comparisons that produce bool tensors, and dtype conversions between masks,
// integer tensors and float32 (so `x.Gt(0).To(DType.Float32)`, `OneHot(labels).To(DType.Float32)` and
// `Where(x.Gt(t), a, b)` run on a device).
//
// Math      Compare<TOp>  y[i] = TOp(a[offA(i)], b[offB(i)]) as 1/0 bytes, TOp the CPU's own comparison
//                         structs (Tensor.EqOp, NeOp, LtOp, LeOp, GtOp, GeOp: IEEE semantics, so any
//                         comparison with NaN is false except ne), float32 operands with broadcasting.
//           ToFloat*      y[i] = (float)x[off(i)] from int64 (round to nearest, as the CPU cast), int32,
//                         or bool (0/1).
//           FloatToBool   y[i] = x[off(i)] != 0 (NaN → true), as the CPU's float → bool conversion.
//           No gradient: comparisons and integer → float conversions are constants for autograd (the
//           CPU op records none either).
// Layout    Inputs are any strided view (ElementwiseLayout, as the elementwise kernels); outputs
//           contiguous. Bool tensors are 1 byte per element.
// Bytes     Compare: 8 B read + 1 B written per element; conversions: 1-8 B read + 1-4 B written.
//           Memory bound.
// Indexing  int (32-bit), as ElementwisePlan (it refuses 2^31 elements or more).
// Launch    1-D, group 256 (ElementwisePlan.GroupSize), one thread per output element.
using Engine.Runtime.Kernels;
using Engine.Tensors.Cpu;

namespace Engine.Tensors.Kernels;

/// <summary>Comparisons to bool and conversions between bool, integers and float32 (see the file header).</summary>
internal static partial class MaskKernels
{
    /// <summary>y[i] = TOp(a[offA(i)], b[offB(i)]) ? 1 : 0 with broadcasting.</summary>
    [Kernel]
    [KernelInstance(typeof(Tensor.EqOp)), KernelInstance(typeof(Tensor.NeOp)), KernelInstance(typeof(Tensor.LtOp))]
    [KernelInstance(typeof(Tensor.LeOp)), KernelInstance(typeof(Tensor.GtOp)), KernelInstance(typeof(Tensor.GeOp))]
    public static void Compare<TOp>(ArrayView<float> a, ArrayView<float> b, ArrayView<byte> y, ElementwiseLayout layout) where TOp : IComparison
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
        y[i] = TOp.Invoke(a[ia], b[ib]) ? (byte)1 : (byte)0;
    }

    /// <summary>Element offset in the input of output element <paramref name="i"/> (row-major over layout.Shape).</summary>
    [KernelFunction]
    private static int Offset(ElementwiseLayout layout, int i)
    {
        int rest = i, ix = layout.OffsetA;
        for (int d = ElementwiseKernels.MaxRank - 1; d >= 0; d--)
        {
            if (d >= layout.Rank) continue;
            int c = rest % layout.Shape[d];
            rest /= layout.Shape[d];
            ix += c * layout.StrideA[d];
        }
        return ix;
    }

    /// <summary>y[i] = (float)x[off(i)] for int64 x.</summary>
    [Kernel]
    public static void LongToFloat(ArrayView<long> x, ArrayView<float> y, ElementwiseLayout layout)
    {
        int i = Grid.GlobalIndexX;
        if (i >= y.Length) return;
        y[i] = (float)x[Offset(layout, i)];
    }

    /// <summary>y[i] = (float)x[off(i)] for int32 x.</summary>
    [Kernel]
    public static void IntToFloat(ArrayView<int> x, ArrayView<float> y, ElementwiseLayout layout)
    {
        int i = Grid.GlobalIndexX;
        if (i >= y.Length) return;
        y[i] = (float)x[Offset(layout, i)];
    }

    /// <summary>y[i] = x[off(i)] != 0 ? 1 : 0 for bool x (bytes).</summary>
    [Kernel]
    public static void BoolToFloat(ArrayView<byte> x, ArrayView<float> y, ElementwiseLayout layout)
    {
        int i = Grid.GlobalIndexX;
        if (i >= y.Length) return;
        y[i] = x[Offset(layout, i)] != 0 ? 1f : 0f;
    }

    /// <summary>y[i] = x[off(i)] != 0 (NaN gives true) for float32 x.</summary>
    [Kernel]
    public static void FloatToBool(ArrayView<float> x, ArrayView<byte> y, ElementwiseLayout layout)
    {
        int i = Grid.GlobalIndexX;
        if (i >= y.Length) return;
        y[i] = x[Offset(layout, i)] != 0f ? (byte)1 : (byte)0;
    }
}
