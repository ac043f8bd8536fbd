// Elementwise kernels: y = op(x) and y = op(a, b) over float32, with NumPy broadcasting and
// arbitrary (non-contiguous) input views.
//
// Math      y[i] = TOp.Invoke(x[off_x(i)])            unary  (exp, log, tanh, sigmoid, sin, cos, silu;
//                                                       relu, neg, sign)
//           y[i] = TOp.Invoke(a[off_a(i)], b[off_b(i)]) binary (add, sub, mul, div, maximum, minimum —
//                                                       NaN-propagating, the CPU's T.Max/T.Min; clamp is both)
//           y[off_y(i)] = x[off_x(i)]                   StridedCopy (the only kernel with a strided output)
//           PositiveMaskOp [x > 0] and TieMaskOp [a = b] build the Relu / Max gradient masks on a device.
//           The op structs are Engine.Tensors' own CPU op structs (Tensor.AddOp, Tensor.ExpOp, ...:
//           `static T Invoke<T>(T x)` in .NET generic math), so the scalar math is written once and
//           the CPU path and these kernels run the same C#. Only NegOp is defined here (the CPU
//           Neg multiplies by −1 through MulOp, which gives the same values).
//           No gradient here: the backward formulas are tensor ops (Ops/Arithmetic.cs, Ops/Unary.cs).
// Layout    y is contiguous row-major of `Shape` (the broadcast output shape). Each input is
//           any strided view of its storage: offset + Σ_d c_d·stride_d, strides in elements, 0 on a
//           broadcast dim. Shape and strides travel by value in ElementwiseLayout ([InlineArray(8)]:
//           rank ≤ 8 after coalescing). Thread i unravels i over Shape (innermost dim last) and
//           accumulates each operand's offset; one thread per output element. The dim loop runs a
//           constant 8 times (dims ≥ Rank skipped), so NVRTC unrolls it and reads the layout from
//           the parameter space: with a Rank-bound loop ptxas copied it to a 112-byte stack frame.
// Indexing  int (32-bit): the host plan refuses tensors of 2^31 or more elements or offsets
//           (64-bit division is several times slower on GPUs; split the launch beyond that).
// Bytes     unary 8 B/element (read 4, write 4), binary 12 B/element, when the inputs are not
//           broadcast (a broadcast operand is read once per use but mostly hits cache).
// Flops     1 per element for add/sub/mul/div/neg/relu; exp/log/tanh/sigmoid are a few tens of
//           instructions (SFU + polynomial). All are memory bound.
// Launch    1-D: group = ElementwisePlan.GroupSize (256) threads, grid = ceil(n / 256) groups;
//           threads past n return at once. No shared memory, no barriers.
using System.Numerics;
using System.Runtime.CompilerServices;
using Engine.Runtime.Kernels;
using Engine.Tensors.Cpu;

namespace Engine.Tensors.Kernels;

/// <summary>Eight ints by value: a shape or a stride vector in a kernel's launch arguments.</summary>
[InlineArray(8)]
internal struct Dims8
{
    private int _element;
}

/// <summary>The index map of an elementwise launch: output shape and each input's offset and strides (elements).</summary>
internal struct ElementwiseLayout
{
    /// <summary>Output shape after coalescing (dims [0, Rank)).</summary>
    public Dims8 Shape;
    /// <summary>Element strides of the first input (0 on broadcast dims).</summary>
    public Dims8 StrideA;
    /// <summary>Element strides of the second input (unused by unary kernels).</summary>
    public Dims8 StrideB;
    /// <summary>Element offset of the first input's [0, ..., 0] in its buffer.</summary>
    public int OffsetA;
    /// <summary>Element offset of the second input.</summary>
    public int OffsetB;
    /// <summary>Number of dims used (0 for a scalar).</summary>
    public int Rank;
}

/// <summary>−x, as an operator struct (the CPU Neg multiplies by −1 with MulOp, which gives the same values).</summary>
internal readonly struct NegOp : INumericUnary
{
    /// <summary>−x.</summary>
    public static T Invoke<T>(T x) where T : INumber<T> => -x;
}

/// <summary>[x &gt; 0] as 1 or 0: the mask of Relu's gradient on a device (the CPU builds it with Gt and a cast).</summary>
internal readonly struct PositiveMaskOp : INumericUnary
{
    /// <summary>1 where x &gt; 0, else 0 (NaN gives 0).</summary>
    public static T Invoke<T>(T x) where T : INumber<T> => x > T.Zero ? T.One : T.Zero;
}

/// <summary>
/// [a = b] as 1 or 0, with NaN equal to NaN: marks the elements equal to their row's max, for the
/// gradient of Max on a device (the CPU's TieWeights does the same in one pass).
/// </summary>
internal readonly struct TieMaskOp : INumericBinary
{
    /// <summary>1 where a = b or both are NaN, else 0.</summary>
    public static T Invoke<T>(T a, T b) where T : INumber<T> => a == b || (T.IsNaN(a) && T.IsNaN(b)) ? T.One : T.Zero;
}

/// <summary>Strided, broadcasting elementwise kernels over Engine.Tensors' operator structs (see the file header).</summary>
internal static partial class ElementwiseKernels
{
    /// <summary>Most dims of a launch (after coalescing): the length of <see cref="Dims8"/>.</summary>
    public const int MaxRank = 8;

    /// <summary>Element offset in operand A of output element <paramref name="i"/> (row-major over layout.Shape).</summary>
    [KernelFunction]
    private static int OffsetA(ElementwiseLayout layout, int i)
    {
        int rest = i, ix = layout.OffsetA;
        for (int d = MaxRank - 1; d >= 0; d--) // constant trip count: unrolled, no local-memory copy of layout
        {
            if (d >= layout.Rank) continue;
            int c = rest % layout.Shape[d];
            rest /= layout.Shape[d];
            ix += c * layout.StrideA[d];
        }
        return ix;
    }

    /// <summary>y[i] = TOp(x[offset(i)]) for a float math function (exp, log, tanh, sigmoid).</summary>
    [Kernel]
    [KernelInstance(typeof(Tensor.ExpOp)), KernelInstance(typeof(Tensor.LogOp))]
    [KernelInstance(typeof(Tensor.TanhOp)), KernelInstance(typeof(Tensor.SigmoidOp))]
    [KernelInstance(typeof(Tensor.SinOp)), KernelInstance(typeof(Tensor.CosOp)), KernelInstance(typeof(Tensor.SiluOp))]
    public static void FloatUnary<TOp>(ArrayView<float> x, ArrayView<float> y, ElementwiseLayout layout) where TOp : IFloatUnary
    {
        int i = Grid.GlobalIndexX;
        if (i >= y.Length) return;
        y[i] = TOp.Invoke(x[OffsetA(layout, i)]);
    }

    /// <summary>y[i] = TOp(x[offset(i)]) for an op defined on every number type (relu, neg).</summary>
    [Kernel, KernelInstance(typeof(Tensor.ReluOp)), KernelInstance(typeof(NegOp)), KernelInstance(typeof(PositiveMaskOp))]
    [KernelInstance(typeof(Tensor.SignOp))]
    public static void NumericUnary<TOp>(ArrayView<float> x, ArrayView<float> y, ElementwiseLayout layout) where TOp : INumericUnary
    {
        int i = Grid.GlobalIndexX;
        if (i >= y.Length) return;
        y[i] = TOp.Invoke(x[OffsetA(layout, i)]);
    }

    /// <summary>y[i] = TOp(a[offsetA(i)], b[offsetB(i)]) with broadcasting (add, sub, mul, div).</summary>
    [Kernel]
    [KernelInstance(typeof(Tensor.AddOp)), KernelInstance(typeof(Tensor.SubOp))]
    [KernelInstance(typeof(Tensor.MulOp)), KernelInstance(typeof(Tensor.DivOp)), KernelInstance(typeof(TieMaskOp))]
    [KernelInstance(typeof(Tensor.MaxOp)), KernelInstance(typeof(Tensor.MinOp))]
    public static void Binary<TOp>(ArrayView<float> a, ArrayView<float> b, ArrayView<float> y, ElementwiseLayout layout) where TOp : INumericBinary
    {
        int i = Grid.GlobalIndexX;
        if (i >= y.Length) return;
        int rest = i, ia = layout.OffsetA, ib = layout.OffsetB;
        for (int d = MaxRank - 1; d >= 0; d--)
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

    /// <summary>
    /// y[offB(i)] = x[offA(i)] for i &lt; count: a strided (and broadcasting) copy into a strided
    /// destination (Contiguous, Clone, CopyFrom_, Fill_ from a broadcast 0-d tensor). The layout's
    /// A operand is the source, its B operand the destination; the destination must not overlap the
    /// source with another layout (each element is read and written once, in no defined order).
    /// </summary>
    [Kernel]
    public static void StridedCopy(ArrayView<float> x, ArrayView<float> y, ElementwiseLayout layout, int count)
    {
        int i = Grid.GlobalIndexX;
        if (i >= count) return;
        int rest = i, ia = layout.OffsetA, ib = layout.OffsetB;
        for (int d = MaxRank - 1; d >= 0; d--)
        {
            if (d >= layout.Rank) continue;
            int extent = layout.Shape[d];
            int c = rest % extent;
            rest /= extent;
            ia += c * layout.StrideA[d];
            ib += c * layout.StrideB[d];
        }
        y[ib] = x[ia];
    }
}
