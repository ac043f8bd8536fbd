// Row reductions beside sum/max/min: argmin (the twin of IndexingKernels.ArgMaxRows) and logsumexp.
//
// Math      ArgMinRows     y[r] = the first j minimizing x[r, j]; a NaN counts as the smallest (the first
//                          NaN wins), as Tensor.ArgMin (torch.argmin).
//           LogSumExpRows  y[r] = m + log Σ_j exp(x[r, j] − m), m = max_j x[r, j] (NaN-propagating): never
//                          overflows. A row whose max is not finite gives that max: all −∞ (or −∞ and
//                          nothing else) → −∞, a +∞ → +∞, a NaN → NaN (as the CPU's RowLogSumExp).
//                          Gradient (Ops/Reductions.cs, tensor ops): g · softmax over the reduced dims.
// Layout    x contiguous [rows, n] (the host permutes the reduced dims last and makes them contiguous,
//           as for ArgMaxRows); y contiguous [rows] (int64 for argmin, float32 for logsumexp).
// Numerics  LogSumExpRows: Σ exp(x − m) has terms in [0, 1], at least one equal to 1; each thread sums
//           ⌈n/G⌉ terms in float, then a pairwise tree (log2 G levels): error ≲ (n/G + log2 G)·ε relative,
//           then one log. The CPU (float chunks of 1024, float64 across chunks) can differ by that much.
// Bytes     ArgMinRows 4 B read per element, 8 B written per row; LogSumExpRows 8 B read per element
//           (two passes over the row: max, then the sum; the second mostly from cache) + 4 B per row;
//           ~1 exp per element: memory bound.
// Launch    ArgMinRows: 1-D, RowReduceKernels.GroupSize (256) threads, one thread per row (rows are short —
//           class scores — one sequential scan keeps the first-min rule simple). LogSumExpRows: one group
//           per row, group = n rounded up to a power of two in [32, 256] (ReducePlan's row shape), static
//           shared memory 256 floats (1 KiB), 2·log2(G) barriers.
using Engine.Runtime.Kernels;

namespace Engine.Tensors.Kernels;

/// <summary>Argmin and logsumexp along the last dim of contiguous rows (see the file header).</summary>
internal static partial class RowReduceKernels
{
    /// <summary>Threads per group of ArgMinRows.</summary>
    public const int GroupSize = 256;

    /// <summary>y[r] = argmin_j x[r·n + j] (first minimum; the first NaN wins); one thread per row.</summary>
    [Kernel]
    public static void ArgMinRows(ArrayView<float> x, ArrayView<long> y, int rows, int n)
    {
        int r = Grid.GlobalIndexX;
        if (r >= rows) return;
        long start = (long)r * n;
        int best = 0;
        float bestValue = x[start];
        if (!float.IsNaN(bestValue))
        {
            for (int j = 1; j < n; j++)
            {
                float v = x[start + j];
                if (float.IsNaN(v))
                {
                    best = j;
                    break;
                }
                if (v < bestValue)
                {
                    best = j;
                    bestValue = v;
                }
            }
        }
        y[r] = best;
    }

    /// <summary>y[o] = log Σ_j exp(x[o·n + j]) computed as m + log Σ exp(x − m): one group per row.</summary>
    [Kernel]
    public static void LogSumExpRows(ArrayView<float> x, ArrayView<float> y, int n)
    {
        var shared = SharedMemory.Allocate<float>(ReduceKernels.MaxRowGroup);
        long start = (long)Grid.IdxX * n;
        float m = float.NegativeInfinity;
        for (int j = Group.IdxX; j < n; j += Group.DimX) m = MathF.Max(m, x[start + j]);
        m = ReduceKernels.GroupReduce<MaxReduce>(shared, m);
        float sum = 0f;
        bool finite = m > float.NegativeInfinity && m < float.PositiveInfinity; // false for NaN too
        if (finite)
            for (int j = Group.IdxX; j < n; j += Group.DimX) sum += XMath.Exp(x[start + j] - m);
        sum = ReduceKernels.GroupReduce<SumReduce>(shared, sum);
        if (Group.IdxX == 0) y[Grid.IdxX] = finite ? m + XMath.Log(sum) : m;
    }
}
