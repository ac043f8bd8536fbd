using Engine.Runtime.Kernels;

namespace Engine.Tensors.Kernels;

/// <summary>How to launch a reduction: which kernel, the grid and the group (see ReduceKernels.cs).</summary>
/// <param name="Columns">True for ReduceColumns (inner &gt; 1), false for ReduceRows.</param>
/// <param name="Grid">Groups (0 in x when the output is empty: nothing to launch).</param>
/// <param name="Group">Threads per group.</param>
/// <param name="Outer">Product of the dims before the reduced one.</param>
/// <param name="N">Length of the reduced dim.</param>
/// <param name="Inner">Product of the dims after it.</param>
internal readonly record struct ReduceLaunch(bool Columns, Dim3 Grid, Dim3 Group, int Outer, int N, int Inner)
{
    /// <summary>False when the output is empty.</summary>
    public bool HasWork => Grid.X > 0;
}

/// <summary>Host side of ReduceKernels: the [outer, n, inner] view of a reduction along one dim and its launch shape.</summary>
internal static class ReducePlan
{
    /// <summary>The launch reducing dim <paramref name="dim"/> of a contiguous tensor of <paramref name="shape"/>.</summary>
    public static ReduceLaunch Along(ReadOnlySpan<long> shape, int dim, string op)
    {
        int d = ShapeUtil.NormalizeDim(op, dim, shape.Length);
        long outer = 1, inner = 1, n = shape.Length == 0 ? 1 : shape[d];
        for (int i = 0; i < d; i++) outer *= shape[i];
        for (int i = d + 1; i < shape.Length; i++) inner *= shape[i];
        return For(outer, n, inner, op);
    }

    /// <summary>The launch for a contiguous [outer, n, inner] input; <paramref name="op"/> "max" refuses n = 0 (no identity in the result).</summary>
    public static ReduceLaunch For(long outer, long n, long inner, string op)
    {
        if (op is "max" or "min" && n == 0 && outer * inner > 0)
            throw new ArgumentException($"{op} kernel: cannot reduce an empty dim (shape [{outer}, 0, {inner}] as [outer, n, inner]) into a non-empty result.");
        if (outer * n * inner > int.MaxValue * 4L || n > int.MaxValue || inner > int.MaxValue)
            throw new ArgumentException($"{op} kernel: [{outer}, {n}, {inner}] (as [outer, n, inner]) exceeds the kernels' 32-bit sizes.");
        if (inner == 1)
        {
            int group = (int)Math.Clamp(System.Numerics.BitOperations.RoundUpToPowerOf2((ulong)Math.Max(n, 1)), 32, ReduceKernels.MaxRowGroup);
            return new ReduceLaunch(false, new Dim3(checked((int)outer)), new Dim3(group), (int)outer, (int)n, 1);
        }
        long blocks = (inner + ReduceKernels.ColumnsX - 1) / ReduceKernels.ColumnsX;
        return new ReduceLaunch(true, new Dim3(checked((int)(outer * blocks))), new Dim3(ReduceKernels.ColumnsX, ReduceKernels.ColumnsY),
            (int)outer, (int)n, (int)inner);
    }
}
