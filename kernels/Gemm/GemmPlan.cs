using Engine.Runtime.Kernels;

namespace Engine.Tensors.Kernels;

/// <summary>Host side of GemmKernels: the strided layout of C = A·B and its launch shape.</summary>
internal static class GemmPlan
{
    /// <summary>The group: 16×16 threads, each computing 4×4 outputs of a 64×64 tile.</summary>
    public static Dim3 Group => new(GemmKernels.Threads, GemmKernels.Threads);

    /// <summary>The grid for <paramref name="batch"/> products of M×N outputs (0 in x when there is nothing to launch).</summary>
    public static Dim3 Grid(GemmLayout p, int batch)
        => p.M == 0 || p.N == 0 || batch == 0
            ? new Dim3(0)
            : new Dim3((p.N + GemmKernels.TileN - 1) / GemmKernels.TileN, (p.M + GemmKernels.TileM - 1) / GemmKernels.TileM, batch);

    /// <summary>
    /// The layout of a·b for a and b of rank 2 ([M, K]·[K, N]) or 3 ([batch, M, K], batch 1 or
    /// equal: a size-1 or missing batch broadcasts), any strides (a transpose is a view). Returns
    /// the layout, the batch count and C's shape ([M, N] when both are 2-D, else [batch, M, N]).
    /// </summary>
    public static (GemmLayout Layout, int Batch, long[] Shape) For(Tensor a, Tensor b)
    {
        const string op = "sgemm kernel";
        if (a.Rank is < 2 or > 3 || b.Rank is < 2 or > 3)
            throw new ArgumentException($"{op}: expects operands of rank 2 or 3, got {ShapeUtil.Format(a.Shape)} and {ShapeUtil.Format(b.Shape)}.");
        if (a.DType != DType.Float32 || b.DType != DType.Float32)
            throw new ArgumentException($"{op}: expects float32 operands, got {a.DType.Name()} and {b.DType.Name()}.");
        long m = a.Shape[^2], k = a.Shape[^1], kb = b.Shape[^2], n = b.Shape[^1];
        if (k != kb)
            throw new ArgumentException($"{op}: shapes {ShapeUtil.Format(a.Shape)} and {ShapeUtil.Format(b.Shape)} cannot be multiplied ({k} ≠ {kb}).");
        long batchA = a.Rank == 3 ? a.Shape[0] : 1, batchB = b.Rank == 3 ? b.Shape[0] : 1;
        if (batchA != batchB && batchA != 1 && batchB != 1)
            throw new ArgumentException($"{op}: batch dims of {ShapeUtil.Format(a.Shape)} and {ShapeUtil.Format(b.Shape)} do not broadcast.");
        long batch = Math.Max(batchA, batchB);
        if (batchA == 0 || batchB == 0) batch = 0;
        var layout = new GemmLayout
        {
            M = Fit(m, op), N = Fit(n, op), K = Fit(k, op),
            OffsetA = Fit(a.Offset, op), RowStrideA = Fit(a.Strides[^2], op), ColStrideA = Fit(a.Strides[^1], op),
            BatchStrideA = batchA == 1 ? 0 : Fit(a.Strides[0], op),
            OffsetB = Fit(b.Offset, op), RowStrideB = Fit(b.Strides[^2], op), ColStrideB = Fit(b.Strides[^1], op),
            BatchStrideB = batchB == 1 ? 0 : Fit(b.Strides[0], op),
        };
        // Every index the kernel forms must fit an int.
        Fit(a.Offset + (batch - 1) * layout.BatchStrideA + (m - 1) * layout.RowStrideA + (k - 1) * layout.ColStrideA, op);
        Fit(b.Offset + (batch - 1) * layout.BatchStrideB + (k - 1) * layout.RowStrideB + (n - 1) * layout.ColStrideB, op);
        Fit(batch * m * n, op);
        long[] shape = a.Rank == 2 && b.Rank == 2 ? [m, n] : [batch, m, n];
        return (layout, (int)batch, shape);
    }

    private static int Fit(long value, string op)
    {
        if (value > int.MaxValue || value < int.MinValue)
            throw new ArgumentException($"{op}: size or index {value} exceeds the kernel's 32-bit indexing.");
        return (int)value;
    }
}
