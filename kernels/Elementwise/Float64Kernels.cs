// float64 on a device: the elementwise families, comparisons, conversions to and from float32/bool, and
// the sum/max/min reductions, for double tensors (gradcheck-style work and references on an accelerator).
//
// Math      The same operator structs as the float32 kernels, instantiated at double (the kernel language's
//           generic path: `TOp.Invoke<T>` is written once in .NET generic math, and the translator emits it
//           for T = double with the double entries of its intrinsics table — exp, log, pow, sqrt, ...):
//             Binary64<TOp>       add, sub, mul, div, maximum, minimum (NaN-propagating), the max tie mask
//             FloatBinary64<TOp>  pow
//             FloatUnary64<TOp>   exp, log, tanh, sigmoid, sqrt, rsqrt, silu. Not sin/cos: CUDA's double
//                                 sin/cos argument reduction (Payne-Hanek slow path) keeps a 48-byte local
//                                 stack frame on sm_70/80/90, which the no-stack-frame bar refuses.
//             NumericUnary64<TOp> relu, neg, sign, the relu gradient mask
//             Compare64<TOp>      eq, ne, lt, le, gt, ge → bool
//             Where64             cond ? a : b
//             FloatToDouble, DoubleToFloat (round to nearest), BoolToDouble, DoubleToBool (x ≠ 0, NaN → true)
//             ReduceRows64<TOp>, ReduceColumns64<TOp>: sum (identity 0), max (−∞), min (+∞) along one dim
//           No gradients here: the backward formulas are the same tensor ops (Ops/*.cs), which dispatch here
//           for double tensors.
// Layout    As the float32 kernels: strided broadcasting inputs in ElementwiseLayout / WhereLayout (rank ≤ 8),
//           contiguous outputs; reductions over a contiguous [outer, n, inner] view (ReducePlan).
// Numerics  Double accumulation in the reductions: each thread sums ⌈n/G⌉ values sequentially, then a
//           pairwise tree — error ≲ (n/G + log2 G)·2^-53 relative to Σ|x|. The CPU's double loops sum in
//           another order: the tests allow a few ulps of Σ|x|. Device libm (CUDA's, PoCL's) and .NET's
//           Math.Exp/Log/Pow/... are each within 1-2 ulps of the exact result, not necessarily equal.
//           OpenCL needs cl_khr_fp64 (the translator enables it when a kernel uses double; PoCL has it).
// Bytes     Twice the float32 kernels' (8 B per element read or written): memory bound. double
//           arithmetic is 1/2 (H100, A100) to 1/64 (consumer GPUs) of the float rate, still memory bound for
//           these ops except pow/exp/tanh on consumer parts.
// Launch    Elementwise: 1-D, ElementwisePlan.GroupSize (256), one thread per output element. Reductions as
//           ReduceKernels (rows: one group per row, 32..256 threads, 256 doubles = 2 KiB of shared memory;
//           columns: 32×8 groups, 2 KiB).
using System.Numerics;
using Engine.Runtime.Kernels;
using Engine.Tensors.Cpu;

namespace Engine.Tensors.Kernels;

/// <summary>An associative, commutative fold of doubles with an identity (the float64 reductions' math).</summary>
internal interface IReduceOp64
{
    /// <summary>The identity.</summary>
    static abstract double Identity();

    /// <summary>a ⊕ b.</summary>
    static abstract double Combine(double a, double b);
}

/// <summary>Sum of doubles.</summary>
internal readonly struct SumReduce64 : IReduceOp64
{
    /// <inheritdoc />
    public static double Identity() => 0.0;

    /// <inheritdoc />
    public static double Combine(double a, double b) => a + b;
}

/// <summary>NaN-propagating max of doubles.</summary>
internal readonly struct MaxReduce64 : IReduceOp64
{
    /// <inheritdoc />
    public static double Identity() => double.NegativeInfinity;

    /// <inheritdoc />
    public static double Combine(double a, double b) => Math.Max(a, b);
}

/// <summary>NaN-propagating min of doubles.</summary>
internal readonly struct MinReduce64 : IReduceOp64
{
    /// <inheritdoc />
    public static double Identity() => double.PositiveInfinity;

    /// <inheritdoc />
    public static double Combine(double a, double b) => Math.Min(a, b);
}

/// <summary>The float64 kernels (see the file header).</summary>
internal static partial class Float64Kernels
{
    /// <summary>Element offset in operand A of output element <paramref name="i"/> (row-major over layout.Shape).</summary>
    [KernelFunction]
    private static int OffsetA(ElementwiseLayout layout, int i)
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

    /// <summary>Element offset in operand B of output element <paramref name="i"/>.</summary>
    [KernelFunction]
    private static int OffsetB(ElementwiseLayout layout, int i)
    {
        int rest = i, ix = layout.OffsetB;
        for (int d = ElementwiseKernels.MaxRank - 1; d >= 0; d--)
        {
            if (d >= layout.Rank) continue;
            int c = rest % layout.Shape[d];
            rest /= layout.Shape[d];
            ix += c * layout.StrideB[d];
        }
        return ix;
    }

    /// <summary>y[i] = TOp(a[offA(i)], b[offB(i)]) for doubles, with broadcasting.</summary>
    [Kernel]
    [KernelInstance(typeof(Tensor.AddOp)), KernelInstance(typeof(Tensor.SubOp)), KernelInstance(typeof(Tensor.MulOp)), KernelInstance(typeof(Tensor.DivOp))]
    [KernelInstance(typeof(Tensor.MaxOp)), KernelInstance(typeof(Tensor.MinOp)), KernelInstance(typeof(TieMaskOp))]
    public static void Binary64<TOp>(ArrayView<double> a, ArrayView<double> b, ArrayView<double> y, ElementwiseLayout layout) where TOp : INumericBinary
    {
        int i = Grid.GlobalIndexX;
        if (i >= y.Length) return;
        y[i] = TOp.Invoke(a[OffsetA(layout, i)], b[OffsetB(layout, i)]);
    }

    /// <summary>y[i] = TOp(a[offA(i)], b[offB(i)]) for a math function of two doubles (pow).</summary>
    [Kernel, KernelInstance(typeof(FloatPowOp))]
    public static void FloatBinary64<TOp>(ArrayView<double> a, ArrayView<double> b, ArrayView<double> y, ElementwiseLayout layout) where TOp : IFloatBinary
    {
        int i = Grid.GlobalIndexX;
        if (i >= y.Length) return;
        y[i] = TOp.Invoke(a[OffsetA(layout, i)], b[OffsetB(layout, i)]);
    }

    /// <summary>y[i] = TOp(x[off(i)]) for a double math function.</summary>
    [Kernel]
    [KernelInstance(typeof(Tensor.ExpOp)), KernelInstance(typeof(Tensor.LogOp)), KernelInstance(typeof(Tensor.TanhOp)), KernelInstance(typeof(Tensor.SigmoidOp))]
    [KernelInstance(typeof(Tensor.SqrtOp)), KernelInstance(typeof(Tensor.RsqrtOp))]
    [KernelInstance(typeof(Tensor.SiluOp))]
    public static void FloatUnary64<TOp>(ArrayView<double> x, ArrayView<double> y, ElementwiseLayout layout) where TOp : IFloatUnary
    {
        int i = Grid.GlobalIndexX;
        if (i >= y.Length) return;
        y[i] = TOp.Invoke(x[OffsetA(layout, i)]);
    }

    /// <summary>y[i] = TOp(x[off(i)]) for an op on every number type, at double.</summary>
    [Kernel]
    [KernelInstance(typeof(Tensor.ReluOp)), KernelInstance(typeof(NegOp)), KernelInstance(typeof(PositiveMaskOp)), KernelInstance(typeof(Tensor.SignOp))]
    public static void NumericUnary64<TOp>(ArrayView<double> x, ArrayView<double> y, ElementwiseLayout layout) where TOp : INumericUnary
    {
        int i = Grid.GlobalIndexX;
        if (i >= y.Length) return;
        y[i] = TOp.Invoke(x[OffsetA(layout, i)]);
    }

    /// <summary>y[i] = TOp(a[offA(i)], b[offB(i)]) ? 1 : 0 for doubles.</summary>
    [Kernel]
    [KernelInstance(typeof(Tensor.EqOp)), KernelInstance(typeof(Tensor.NeOp)), KernelInstance(typeof(Tensor.LtOp))]
    [KernelInstance(typeof(Tensor.LeOp)), KernelInstance(typeof(Tensor.GtOp)), KernelInstance(typeof(Tensor.GeOp))]
    public static void Compare64<TOp>(ArrayView<double> a, ArrayView<double> b, ArrayView<byte> y, ElementwiseLayout layout) where TOp : IComparison
    {
        int i = Grid.GlobalIndexX;
        if (i >= y.Length) return;
        y[i] = TOp.Invoke(a[OffsetA(layout, i)], b[OffsetB(layout, i)]) ? (byte)1 : (byte)0;
    }

    /// <summary>y[i] = cond[offC(i)] ≠ 0 ? a[offA(i)] : b[offB(i)] for doubles.</summary>
    [Kernel]
    public static void Where64(ArrayView<byte> cond, ArrayView<double> a, ArrayView<double> b, ArrayView<double> y, WhereLayout layout)
    {
        int i = Grid.GlobalIndexX;
        if (i >= y.Length) return;
        int rest = i, ic = layout.OffsetC, ia = layout.OffsetA, ib = layout.OffsetB;
        for (int d = ElementwiseKernels.MaxRank - 1; d >= 0; d--)
        {
            if (d >= layout.Rank) continue;
            int c = rest % layout.Shape[d];
            rest /= layout.Shape[d];
            ic += c * layout.StrideC[d];
            ia += c * layout.StrideA[d];
            ib += c * layout.StrideB[d];
        }
        y[i] = cond[ic] != 0 ? a[ia] : b[ib];
    }

    /// <summary>y[i] = (double)x[off(i)].</summary>
    [Kernel]
    public static void FloatToDouble(ArrayView<float> x, ArrayView<double> y, ElementwiseLayout layout)
    {
        int i = Grid.GlobalIndexX;
        if (i >= y.Length) return;
        y[i] = x[OffsetA(layout, i)];
    }

    /// <summary>y[i] = (float)x[off(i)] (round to nearest even).</summary>
    [Kernel]
    public static void DoubleToFloat(ArrayView<double> x, ArrayView<float> y, ElementwiseLayout layout)
    {
        int i = Grid.GlobalIndexX;
        if (i >= y.Length) return;
        y[i] = (float)x[OffsetA(layout, i)];
    }

    /// <summary>y[i] = x[off(i)] ≠ 0 ? 1 : 0 for bool x.</summary>
    [Kernel]
    public static void BoolToDouble(ArrayView<byte> x, ArrayView<double> y, ElementwiseLayout layout)
    {
        int i = Grid.GlobalIndexX;
        if (i >= y.Length) return;
        y[i] = x[OffsetA(layout, i)] != 0 ? 1.0 : 0.0;
    }

    /// <summary>y[i] = x[off(i)] ≠ 0 (NaN gives true).</summary>
    [Kernel]
    public static void DoubleToBool(ArrayView<double> x, ArrayView<byte> y, ElementwiseLayout layout)
    {
        int i = Grid.GlobalIndexX;
        if (i >= y.Length) return;
        y[i] = x[OffsetA(layout, i)] != 0.0 ? (byte)1 : (byte)0;
    }

    /// <summary>y[o] = ⊕_j x[o·n + j] for doubles: one group per row, strided partials, then a shared-memory tree.</summary>
    [Kernel, KernelInstance(typeof(SumReduce64)), KernelInstance(typeof(MaxReduce64)), KernelInstance(typeof(MinReduce64))]
    public static void ReduceRows64<TOp>(ArrayView<double> x, ArrayView<double> y, int n) where TOp : IReduceOp64
    {
        var shared = SharedMemory.Allocate<double>(ReduceKernels.MaxRowGroup);
        long start = (long)Grid.IdxX * n;
        double acc = TOp.Identity();
        for (int j = Group.IdxX; j < n; j += Group.DimX) acc = TOp.Combine(acc, x[start + j]);
        int t = Group.IdxX;
        shared[t] = acc;
        Group.Barrier();
        for (int stride = Group.DimX / 2; stride > 0; stride /= 2)
        {
            if (t < stride) shared[t] = TOp.Combine(shared[t], shared[t + stride]);
            Group.Barrier();
        }
        if (t == 0) y[Grid.IdxX] = shared[0];
    }

    /// <summary>y[o, i] = ⊕_j x[o, j, i] for doubles with inner &gt; 1 (ReduceKernels.ReduceColumns' shape).</summary>
    [Kernel, KernelInstance(typeof(SumReduce64)), KernelInstance(typeof(MaxReduce64)), KernelInstance(typeof(MinReduce64))]
    public static void ReduceColumns64<TOp>(ArrayView<double> x, ArrayView<double> y, int n, int inner) where TOp : IReduceOp64
    {
        var shared = SharedMemory.Allocate<double>(ReduceKernels.ColumnsX * ReduceKernels.ColumnsY);
        int blocks = (inner + ReduceKernels.ColumnsX - 1) / ReduceKernels.ColumnsX;
        int o = Grid.IdxX / blocks;
        int column = Grid.IdxX % blocks * ReduceKernels.ColumnsX + Group.IdxX;
        int slot = Group.IdxY * ReduceKernels.ColumnsX + Group.IdxX;
        double acc = TOp.Identity();
        if (column < inner)
        {
            long start = (long)o * n * inner + column;
            for (int j = Group.IdxY; j < n; j += ReduceKernels.ColumnsY) acc = TOp.Combine(acc, x[start + (long)j * inner]);
        }
        shared[slot] = acc;
        Group.Barrier();
        for (int stride = ReduceKernels.ColumnsY / 2; stride > 0; stride /= 2)
        {
            if (Group.IdxY < stride) shared[slot] = TOp.Combine(shared[slot], shared[slot + stride * ReduceKernels.ColumnsX]);
            Group.Barrier();
        }
        if (Group.IdxY == 0 && column < inner) y[(long)o * inner + column] = shared[Group.IdxX];
    }
}
