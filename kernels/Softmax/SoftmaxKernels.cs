// Softmax and log-softmax with temperature T along the last dim, forward and backward, float32.
//
// Math      z_i = (x_i − m)·(1/T), m = max_j x_j (so the largest z is exactly 0: exp never
//           overflows, at |x| = 1e4 and T = 0.05 as at T = 20); s = Σ_j exp(z_j) ∈ [1, n].
//           softmax      y_i = exp(z_i) / s              backward dx_i = y_i·(g_i − Σ_j g_j·y_j) / T
//           log_softmax  y_i = z_i − log s               backward dx_i = (g_i − exp(y_i)·Σ_j g_j) / T
//           The backward takes the saved output y (not x), as Tensor.Softmax's graph node does.
//           Special rows behave as the CPU op (SoftmaxRows.cs): −∞ entries give 0 (log: −∞); a row of
//           only −∞, or with +∞ or NaN, gives NaN (x − m is NaN there).
// Layout    x, y, g, dx contiguous [rows, n] (the host makes the dim last and contiguous, as the CPU
//           op does for a narrow inner part); one group per row.
// Numerics  (x − m) first, then ·(1/T) in float, as the CPU op: z's relative error is ~ε, so for
//           the terms that matter (z > −100) exp(z) is within ~1e-5 relative. m is a group max
//           (exact); s and the backward dot products are float sums, each thread folding ⌈n/G⌉
//           terms then a pairwise tree: terms of s lie in [0, 1] with one equal to 1, so s's
//           relative error is ≲ (n/G + log2 G)·ε.
// Bytes     forward: x read 3× (max, sum, write pass; rows up to ~10^5 floats stay in L2) + y
//           written once: 16 B/element from L2/DRAM, 8 B/element from DRAM for cached rows.
//           backward: softmax reads g, y twice and writes dx (20 B); log-softmax the same.
// Flops     forward ~4 + one exp per element per pass that needs it (2 exps); backward ~4 (+1 exp
//           for log-softmax). Memory bound.
// Launch    SoftmaxPlan: grid = rows, group = G = n rounded up to a power of two, clamped to
//           [32, 256] (the shared-memory tree halves G each step). Static shared memory: 256 floats.
using Engine.Runtime.Kernels;

namespace Engine.Tensors.Kernels;

/// <summary>Max and sum of exponentials of one row (the forward's two statistics).</summary>
internal struct RowStats
{
    /// <summary>m = max_j x_j.</summary>
    public float Max;

    /// <summary>s = Σ_j exp((x_j − m)/T).</summary>
    public float Sum;
}

/// <summary>Softmax / log-softmax forward and backward along contiguous rows (see the file header).</summary>
internal static partial class SoftmaxKernels
{
    /// <summary>Largest group (the shared-memory tree's size).</summary>
    public const int MaxGroup = 256;

    /// <summary>The row's max m and Σ exp((x − m)·invT), each thread striding over the row.</summary>
    [KernelFunction]
    public static RowStats Stats(ArrayView<float> x, ArrayView<float> shared, long start, int n, float invT)
    {
        float m = float.NegativeInfinity;
        for (int j = Group.IdxX; j < n; j += Group.DimX) m = MathF.Max(m, x[start + j]);
        m = ReduceKernels.GroupReduce<MaxReduce>(shared, m);
        float s = 0f;
        for (int j = Group.IdxX; j < n; j += Group.DimX) s += XMath.Exp((x[start + j] - m) * invT);
        s = ReduceKernels.GroupReduce<SumReduce>(shared, s);
        return new RowStats { Max = m, Sum = s };
    }

    /// <summary>y = softmax(x/T) of row Grid.IdxX: exp((x − m)·invT) / s.</summary>
    [Kernel]
    public static void SoftmaxForward(ArrayView<float> x, ArrayView<float> y, int n, float invT)
    {
        var shared = SharedMemory.Allocate<float>(MaxGroup);
        long start = (long)Grid.IdxX * n;
        RowStats stats = Stats(x, shared, start, n, invT);
        for (int j = Group.IdxX; j < n; j += Group.DimX) y[start + j] = XMath.Exp((x[start + j] - stats.Max) * invT) / stats.Sum;
    }

    /// <summary>y = log_softmax(x/T) of row Grid.IdxX: (x − m)·invT − log s.</summary>
    [Kernel]
    public static void LogSoftmaxForward(ArrayView<float> x, ArrayView<float> y, int n, float invT)
    {
        var shared = SharedMemory.Allocate<float>(MaxGroup);
        long start = (long)Grid.IdxX * n;
        RowStats stats = Stats(x, shared, start, n, invT);
        float logSum = XMath.Log(stats.Sum);
        for (int j = Group.IdxX; j < n; j += Group.DimX) y[start + j] = (x[start + j] - stats.Max) * invT - logSum;
    }

    /// <summary>dx = y·(g − Σ g·y)·invT for the softmax output y and upstream gradient g.</summary>
    [Kernel]
    public static void SoftmaxBackward(ArrayView<float> y, ArrayView<float> g, ArrayView<float> dx, int n, float invT)
    {
        var shared = SharedMemory.Allocate<float>(MaxGroup);
        long start = (long)Grid.IdxX * n;
        float dot = 0f;
        for (int j = Group.IdxX; j < n; j += Group.DimX) dot += g[start + j] * y[start + j];
        dot = ReduceKernels.GroupReduce<SumReduce>(shared, dot);
        for (int j = Group.IdxX; j < n; j += Group.DimX) dx[start + j] = y[start + j] * (g[start + j] - dot) * invT;
    }

    /// <summary>dx = (g − exp(y)·Σ g)·invT for the log-softmax output y and upstream gradient g.</summary>
    [Kernel]
    public static void LogSoftmaxBackward(ArrayView<float> y, ArrayView<float> g, ArrayView<float> dx, int n, float invT)
    {
        var shared = SharedMemory.Allocate<float>(MaxGroup);
        long start = (long)Grid.IdxX * n;
        float total = 0f;
        for (int j = Group.IdxX; j < n; j += Group.DimX) total += g[start + j];
        total = ReduceKernels.GroupReduce<SumReduce>(shared, total);
        for (int j = Group.IdxX; j < n; j += Group.DimX) dx[start + j] = (g[start + j] - XMath.Exp(y[start + j]) * total) * invT;
    }
}
