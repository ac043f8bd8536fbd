using System.Numerics;
using System.Runtime.CompilerServices;
using Engine.Runtime.Kernels;

namespace Engine.Tests.KernelCompiler;

/// <summary>An operator struct: one place for an op's math, called by generic kernels.</summary>
public interface IUnaryOp
{
    /// <summary>The op on one value.</summary>
    static abstract float Apply(float x);
}

/// <summary>e^x.</summary>
public readonly struct ExpOp : IUnaryOp
{
    /// <inheritdoc />
    public static float Apply(float x) => XMath.Exp(x);
}

/// <summary>max(x, 0) · 0.5 (a leaky-free half relu, to have a second instance).</summary>
public readonly struct HalfReluOp : IUnaryOp
{
    /// <inheritdoc />
    public static float Apply(float x) => x > 0f ? 0.5f * x : 0f;
}

/// <summary>A float function in .NET generic math, the shape of Engine.Tensors' op families (IFloatUnary).</summary>
public interface IFloatUnaryOp
{
    /// <summary>The op for any IEEE float type.</summary>
    static abstract T Invoke<T>(T x) where T : IFloatingPointIeee754<T>;
}

/// <summary>A numeric binary op in .NET generic math (as INumericBinary).</summary>
public interface INumericBinaryOp
{
    /// <summary>The op for any number type.</summary>
    static abstract T Invoke<T>(T a, T b) where T : INumber<T>;
}

/// <summary>1 / (1 + e^-x), written once for the CPU path and the kernels.</summary>
public readonly struct SigmoidOp : IFloatUnaryOp
{
    /// <inheritdoc />
    public static T Invoke<T>(T x) where T : IFloatingPointIeee754<T> => T.One / (T.One + T.Exp(-x));
}

/// <summary>max(a, b) · 2 − b (generic Max, arithmetic and a converted literal).</summary>
public readonly struct MaxTwiceMinusOp : INumericBinaryOp
{
    /// <inheritdoc />
    public static T Invoke<T>(T a, T b) where T : INumber<T> => T.Max(a, b) * T.CreateTruncating(2) - b;
}

/// <summary>Running max and rescaled sum of exponentials (online softmax statistics).</summary>
public struct MaxSum
{
    /// <summary>Largest value seen.</summary>
    public float Max;
    /// <summary>Σ exp(x − Max) over the values seen.</summary>
    public float Sum;
}

/// <summary>An affine map passed to a kernel by value.</summary>
public struct AffineMap
{
    /// <summary>Multiplier.</summary>
    public float Scale;
    /// <summary>Offset.</summary>
    public float Shift;
    /// <summary>Rows to process (a long after two floats: checks the C struct layout).</summary>
    public long Rows;
}

/// <summary>Four ints by value (an inline array: shapes and strides travel in the launch arguments).</summary>
[InlineArray(4)]
public struct Int4
{
    private int _element;
}

/// <summary>Shape of the output and element strides of two broadcast inputs, rank ≤ 4.</summary>
public struct BroadcastLayout
{
    /// <summary>Output shape.</summary>
    public Int4 Shape;
    /// <summary>Strides of a (0 on broadcast dims).</summary>
    public Int4 StrideA;
    /// <summary>Strides of b (0 on broadcast dims).</summary>
    public Int4 StrideB;
    /// <summary>Number of dims used.</summary>
    public int Rank;
}

/// <summary>
/// Kernels written in C# that the end-to-end tests translate and run: on the emulator (as C#), on
/// PoCL (the generated OpenCL C) and through NVRTC (the generated CUDA C).
/// </summary>
public static partial class SampleKernels
{
    /// <summary>Size of the shared-memory reduction group.</summary>
    public const int ReduceGroup = 64;

    /// <summary>y = a + b.</summary>
    [Kernel]
    public static void VectorAdd(ArrayView<float> a, ArrayView<float> b, ArrayView<float> y)
    {
        int i = Grid.GlobalIndexX;
        if (i < y.Length) y[i] = a[i] + b[i];
    }

    /// <summary>One partial sum per group: shared-memory tree reduction with barriers.</summary>
    [Kernel]
    public static void BlockSum(ArrayView<float> x, ArrayView<float> sums)
    {
        var shared = SharedMemory.Allocate<float>(ReduceGroup);
        int t = Group.IdxX;
        int i = Grid.GlobalIndexX;
        shared[t] = i < x.Length ? x[i] : 0f;
        Group.Barrier();
        for (int stride = Group.DimX / 2; stride > 0; stride /= 2)
        {
            if (t < stride) shared[t] += shared[t + stride];
            Group.Barrier();
        }
        if (t == 0) sums[Grid.IdxX] = shared[0];
    }

    /// <summary>log(1 + e^x), computed stably.</summary>
    [KernelFunction]
    public static float Softplus(float x) => x > 20f ? x : XMath.Log(1f + XMath.Exp(x));

    /// <summary>y = scale · softplus(x) through a kernel function.</summary>
    [Kernel]
    public static void SoftplusScaled(ArrayView<float> x, ArrayView<float> y, float scale)
    {
        int i = Grid.GlobalIndexX;
        if (i >= x.Length) return;
        y[i] = scale * Softplus(x[i]);
    }

    /// <summary>Per row of a rows×cols matrix: log Σ exp(x − max) + max (a loop with XMath).</summary>
    [Kernel]
    public static void RowLogSumExp(ArrayView<float> x, ArrayView<float> y, int cols)
    {
        int row = Grid.GlobalIndexX;
        if (row >= y.IntLength) return;
        long start = (long)row * cols;
        float max = float.NegativeInfinity;
        for (int j = 0; j < cols; j++) max = XMath.Max(max, x[start + j]);
        float sum = 0f;
        int k = 0;
        while (k < cols)
        {
            sum += XMath.Exp(x[start + k] - max);
            k++;
        }
        y[row] = XMath.Log(sum) + max;
    }

    /// <summary>Sum of a group's 32-lane warps by xor shuffles, then one float atomic per warp.</summary>
    [Kernel]
    public static void WarpAtomicSum(ArrayView<float> x, ArrayView<float> total, ArrayView<int> count)
    {
        int i = Grid.GlobalIndexX;
        float v = i < x.Length ? x[i] : 0f;
        for (int mask = Warp.WarpSize / 2; mask > 0; mask /= 2) v += Warp.ShuffleXor(v, mask);
        if (Warp.LaneIdx == 0)
        {
            Atomic.Add(ref total[0], v);
            Atomic.Add(ref count[0], 1);
        }
    }

    /// <summary>
    /// Per group: sums[g] = Group.ReduceSum, maxes[g] = Group.ReduceMax over the group's slice
    /// (0 / -inf padding past n); per warp: warpSums[w] = Warp.ReduceSum, warpMaxes[w] = Warp.ReduceMax.
    /// Every thread writes its copy of the group result to groupCopies, so "returned to every thread" is checked.
    /// </summary>
    [Kernel]
    public static void Reductions(ArrayView<float> x, ArrayView<float> sums, ArrayView<float> maxes,
        ArrayView<float> warpSums, ArrayView<float> warpMaxes, ArrayView<float> groupCopies)
    {
        int i = Grid.GlobalIndexX;
        bool inside = i < x.Length;
        float v = inside ? x[i] : 0f;
        float m = inside ? x[i] : float.NegativeInfinity;
        float sum = Group.ReduceSum(v);
        float max = Group.ReduceMax(m);
        float warpSum = Warp.ReduceSum(v);
        float warpMax = Warp.ReduceMax(m);
        groupCopies[i] = sum;
        if (Group.IdxX == 0)
        {
            sums[Grid.IdxX] = sum;
            maxes[Grid.IdxX] = max;
        }
        if (Warp.LaneIdx == 0)
        {
            warpSums[i / Warp.WarpSize] = warpSum;
            warpMaxes[i / Warp.WarpSize] = warpMax;
        }
    }

    /// <summary>y = TOp(x), one generic kernel compiled per declared operator.</summary>
    [Kernel, KernelInstance(typeof(ExpOp)), KernelInstance(typeof(HalfReluOp))]
    public static void Unary<TOp>(ArrayView<float> x, ArrayView<float> y) where TOp : struct, IUnaryOp
    {
        int i = Grid.GlobalIndexX;
        if (i < x.Length) y[i] = TOp.Apply(x[i]);
    }

    /// <summary>Reverses each group's slice through dynamic shared memory (sized at launch).</summary>
    [Kernel]
    public static void GroupReverse(ArrayView<float> x, ArrayView<float> y)
    {
        var buffer = SharedMemory.GetDynamic<float>();
        int t = Group.IdxX, i = Grid.GlobalIndexX;
        buffer[t] = x[i];
        Group.Barrier();
        y[i] = buffer[Group.DimX - 1 - t];
    }

    /// <summary>Number of functions <see cref="MathTable"/> evaluates per input.</summary>
    public const int MathFunctions = 20;

    /// <summary>Every float entry of the intrinsics table on one input: y[i*MathFunctions + f].</summary>
    [Kernel]
    public static void MathTable(ArrayView<float> x, ArrayView<float> y)
    {
        int i = Grid.GlobalIndexX;
        if (i >= x.Length) return;
        float v = x[i], a = XMath.Abs(v) + 0.5f;
        int o = i * MathFunctions;
        y[o + 0] = XMath.Exp(v);
        y[o + 1] = XMath.Exp2(v);
        y[o + 2] = XMath.Log(a);
        y[o + 3] = XMath.Log2(a);
        y[o + 4] = XMath.Sqrt(a);
        y[o + 5] = XMath.Rsqrt(a);
        y[o + 6] = XMath.Tanh(v);
        y[o + 7] = XMath.Fma(v, a, 1f);
        y[o + 8] = XMath.Max(v, 0.25f) + XMath.Min(v, -0.25f);
        y[o + 9] = XMath.Floor(v) + XMath.Abs(-3) + XMath.Max(2, 5) + XMath.Min(2, 5);
        y[o + 10] = XMath.IsNaN(v / 0f) ? 1f : 0f;
        y[o + 11] = XMath.IsInfinity(v / 0f) ? 1f : 0f;
        y[o + 12] = MathF.Sin(v) + MathF.Cos(v) + MathF.Pow(a, 1.5f) + MathF.Ceiling(v);
        y[o + 13] = (float)(Math.Exp((double)v) + Math.Sqrt((double)a)) + v % 0.75f;
        y[o + 14] = float.ExpM1(v / 4f) + float.LogP1(a);
        y[o + 15] = MathF.Tan(v / 4f) + MathF.Sinh(v / 2f) + MathF.Cosh(v / 2f);
        y[o + 16] = MathF.Asin(v / 4f) + MathF.Acos(v / 4f) + MathF.Atan(v) + MathF.Atan2(v, a);
        y[o + 17] = MathF.Cbrt(v) + MathF.CopySign(a, v);
        y[o + 18] = MathF.Round(v * 2f) + MathF.Truncate(v);
        y[o + 19] = MathF.Max(v, 0f) + MathF.Min(v, 0f) + float.Hypot(v, a);
    }

    /// <summary>y = TOp(x) for a generic-math float op.</summary>
    [Kernel, KernelInstance(typeof(SigmoidOp))]
    public static void FloatUnary<TOp>(ArrayView<float> x, ArrayView<float> y) where TOp : IFloatUnaryOp
    {
        int i = Grid.GlobalIndexX;
        if (i < x.Length) y[i] = TOp.Invoke(x[i]);
    }

    /// <summary>y = TOp(a, b) over a generic element type.</summary>
    [Kernel, KernelInstance(typeof(int), typeof(MaxTwiceMinusOp)), KernelInstance(typeof(float), typeof(MaxTwiceMinusOp))]
    public static void Binary<T, TOp>(ArrayView<T> a, ArrayView<T> b, ArrayView<T> y) where T : unmanaged, INumber<T> where TOp : INumericBinaryOp
    {
        int i = Grid.GlobalIndexX;
        if (i < y.Length) y[i] = TOp.Invoke(a[i], b[i]);
    }

    /// <summary>Folds one value into online softmax statistics.</summary>
    [KernelFunction]
    public static MaxSum Push(MaxSum s, float v)
    {
        if (v <= s.Max) return new MaxSum { Max = s.Max, Sum = s.Sum + XMath.Exp(v - s.Max) };
        return new MaxSum { Max = v, Sum = s.Sum * XMath.Exp(s.Max - v) + 1f };
    }

    /// <summary>Per row: log Σ exp(scale·x + shift) by one online pass, with the map passed by value.</summary>
    [Kernel]
    public static void RowLogSumExpOnline(ArrayView<float> x, ArrayView<float> y, int cols, AffineMap map)
    {
        int row = Grid.GlobalIndexX;
        if (row >= map.Rows) return;
        MaxSum s = default;
        s.Max = float.NegativeInfinity;
        for (int j = 0; j < cols; j++) s = Push(s, map.Scale * x[(long)row * cols + j] + map.Shift);
        y[row] = s.Max + XMath.Log(s.Sum);
    }

    /// <summary>Tree-sums a group's shared buffer (every thread calls it); returns the total.</summary>
    [KernelFunction]
    public static float ReduceShared(ArrayView<float> shared, float value)
    {
        int t = Group.IdxX;
        shared[t] = value;
        Group.Barrier();
        for (int stride = Group.DimX / 2; stride > 0; stride /= 2)
        {
            if (t < stride) shared[t] += shared[t + stride];
            Group.Barrier();
        }
        float total = shared[0];
        Group.Barrier(); // the buffer may be reused right after
        return total;
    }

    /// <summary>Each element minus its group's mean, through a kernel function on a shared view.</summary>
    [Kernel]
    public static void CenterPerGroup(ArrayView<float> x, ArrayView<float> y)
    {
        var shared = SharedMemory.Allocate<float>(ReduceGroup);
        int i = Grid.GlobalIndexX;
        float v = i < x.Length ? x[i] : 0f;
        float mean = ReduceShared(shared, v) / Group.DimX;
        if (i < x.Length) y[i] = v - mean;
    }

    /// <summary>y = a + b with NumPy broadcasting through strides passed by value.</summary>
    [Kernel]
    public static void BroadcastAdd(ArrayView<float> a, ArrayView<float> b, ArrayView<float> y, BroadcastLayout layout)
    {
        int i = Grid.GlobalIndexX;
        if (i >= y.Length) return;
        int rest = i, ia = 0, ib = 0;
        for (int d = layout.Rank - 1; d >= 0; d--)
        {
            int c = rest % layout.Shape[d];
            rest /= layout.Shape[d];
            ia += c * layout.StrideA[d];
            ib += c * layout.StrideB[d];
        }
        y[i] = a[ia] + b[ib];
    }
}
