// Reductions along one dim: y[o, i] = ⊕_{j<n} x[o, j, i] for ⊕ = + (sum), max or min, float32.
//
// Math      sum: Σ_j x[o,j,i] (0 for n = 0). max / min: max_j / min_j x[o,j,i], NaN-propagating as the
//           CPU op (MathF.Max / MathF.Min semantics; the host refuses n = 0, as Tensor.Max/Min do). No gradient here: the
//           backward of Sum/Max is written with tensor ops (Ops/Sum.cs, Ops/Reductions.cs).
// Layout    x contiguous, viewed as [outer, n, inner]; y contiguous [outer, inner]. The host moves the
//           reduced dim into this form (Tensor.Sum(dim) on a contiguous tensor already is).
// Kernels   ReduceRows    (inner = 1): one group per row o; thread t folds x[o, t], x[o, t+G], ...
//                         (coalesced), then a shared-memory tree (GroupReduce, log2 G barriers).
//                         No warp shuffles: on OpenCL the translator emulates them with a helper
//                         function holding two barriers, and on PoCL a ShuffleXor-butterfly version
//                         of this kernel (the helper called in a loop) gave wrong row sums in a few
//                         launches per hundred, while the same code with the exchange written
//                         inline never failed (reported to the kernel compiler). The shared tree
//                         is correct everywhere, and the kernel is memory bound anyway.
//           ReduceColumns (inner > 1): groups of 32×8 threads; the 32 x-threads take 32 adjacent
//                         columns i (coalesced), the 8 y-threads split j; a shared-memory tree over
//                         y combines them. Groups are flattened into grid x: (o, column block).
// Numerics  float accumulation: each thread sums ⌈n/G⌉ values sequentially in float, then the
//           partials are combined pairwise (log2 G levels). Error ≲ (n/G + log2 G)·ε·Σ|x| — for
//           n = 10^6 and G = 256 about 4000·ε ≈ 2.4e-4 relative to Σ|x| in the worst case, typically
//           √ of that. The CPU op (chunked float32 + float64 across chunks) is more accurate; the
//           tests bound the difference by that error. A Kahan/float64 variant is left for later.
// Bytes     4 per input element read + 4 per output: memory bound (1 flop per element).
// Launch    ReducePlan: ReduceRows grid = outer, group = n rounded up to a power of two, clamped to
//           [32, 256]. ReduceColumns grid = outer·⌈inner/32⌉, group = (32, 8). Static shared
//           memory: 256 floats (1 KiB) each.
using Engine.Runtime.Kernels;

namespace Engine.Tensors.Kernels;

/// <summary>An associative, commutative fold with an identity (the reduction's math, for kernels).</summary>
internal interface IReduceOp
{
    /// <summary>The identity: Combine(Identity(), x) = x.</summary>
    static abstract float Identity();

    /// <summary>a ⊕ b.</summary>
    static abstract float Combine(float a, float b);
}

/// <summary>Sum: identity 0, a + b.</summary>
internal readonly struct SumReduce : IReduceOp
{
    /// <inheritdoc />
    public static float Identity() => 0f;

    /// <inheritdoc />
    public static float Combine(float a, float b) => a + b;
}

/// <summary>Max: identity −∞, NaN-propagating max (as Tensor.Max and TensorPrimitives.Max).</summary>
internal readonly struct MaxReduce : IReduceOp
{
    /// <inheritdoc />
    public static float Identity() => float.NegativeInfinity;

    /// <inheritdoc />
    public static float Combine(float a, float b) => MathF.Max(a, b);
}

/// <summary>Min: identity +∞, NaN-propagating min (as Tensor.Min and TensorPrimitives.Min).</summary>
internal readonly struct MinReduce : IReduceOp
{
    /// <inheritdoc />
    public static float Identity() => float.PositiveInfinity;

    /// <inheritdoc />
    public static float Combine(float a, float b) => MathF.Min(a, b);
}

/// <summary>Sum, max and min along one dim (see the file header).</summary>
internal static partial class ReduceKernels
{
    /// <summary>Column-kernel group width (columns per group; one warp).</summary>
    public const int ColumnsX = 32;

    /// <summary>Column-kernel group height (threads splitting the reduced dim).</summary>
    public const int ColumnsY = 8;

    /// <summary>Largest row-kernel group (the size of its shared buffer).</summary>
    public const int MaxRowGroup = 256;

    /// <summary>
    /// Folds every thread's <paramref name="value"/> with TOp over the group through a shared
    /// buffer of at least Group.DimX floats (DimX a power of two: the tree halves it each step);
    /// every thread gets the result. Every thread of the group must call it (barriers). Also used
    /// by SoftmaxKernels.
    /// </summary>
    [KernelFunction]
    public static float GroupReduce<TOp>(ArrayView<float> shared, float value) where TOp : IReduceOp
    {
        int t = Group.IdxX;
        shared[t] = value;
        Group.Barrier();
        for (int stride = Group.DimX / 2; stride > 0; stride /= 2)
        {
            if (t < stride) shared[t] = TOp.Combine(shared[t], shared[t + stride]);
            Group.Barrier();
        }
        float total = shared[0];
        Group.Barrier(); // the buffer may be reused right after
        return total;
    }

    /// <summary>y[o] = ⊕_j x[o·n + j]: one group per row, strided partials, then a shared-memory tree.</summary>
    [Kernel, KernelInstance(typeof(SumReduce)), KernelInstance(typeof(MaxReduce)), KernelInstance(typeof(MinReduce))]
    public static void ReduceRows<TOp>(ArrayView<float> x, ArrayView<float> y, int n) where TOp : IReduceOp
    {
        var shared = SharedMemory.Allocate<float>(MaxRowGroup);
        long start = (long)Grid.IdxX * n;
        float acc = TOp.Identity();
        for (int j = Group.IdxX; j < n; j += Group.DimX) acc = TOp.Combine(acc, x[start + j]);
        acc = GroupReduce<TOp>(shared, acc);
        if (Group.IdxX == 0) y[Grid.IdxX] = acc;
    }

    /// <summary>y[o, i] = ⊕_j x[o, j, i] for inner &gt; 1: 32 adjacent columns per group, the reduced dim split over 8 rows of threads.</summary>
    [Kernel, KernelInstance(typeof(SumReduce)), KernelInstance(typeof(MaxReduce)), KernelInstance(typeof(MinReduce))]
    public static void ReduceColumns<TOp>(ArrayView<float> x, ArrayView<float> y, int n, int inner) where TOp : IReduceOp
    {
        var shared = SharedMemory.Allocate<float>(ColumnsX * ColumnsY);
        int blocks = (inner + ColumnsX - 1) / ColumnsX;
        int o = Grid.IdxX / blocks;
        int column = Grid.IdxX % blocks * ColumnsX + Group.IdxX;
        int slot = Group.IdxY * ColumnsX + Group.IdxX;
        float acc = TOp.Identity();
        if (column < inner)
        {
            long start = (long)o * n * inner + column;
            for (int j = Group.IdxY; j < n; j += ColumnsY) acc = TOp.Combine(acc, x[start + (long)j * inner]);
        }
        shared[slot] = acc;
        Group.Barrier();
        for (int stride = ColumnsY / 2; stride > 0; stride /= 2)
        {
            if (Group.IdxY < stride) shared[slot] = TOp.Combine(shared[slot], shared[slot + stride * ColumnsX]);
            Group.Barrier();
        }
        if (Group.IdxY == 0 && column < inner) y[(long)o * inner + column] = shared[Group.IdxX];
    }
}
