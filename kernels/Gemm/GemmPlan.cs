using Engine.Runtime.Kernels;

namespace Engine.Tensors.Kernels;

/// <summary>
/// Host side of GemmKernels: the strided layout of C = A·B, the staging modes of Sgemm128, which
/// kernel runs (<see cref="UsesLargeTiles"/>) and its launch shape.
/// </summary>
internal static class GemmPlan
{
    /// <summary>The Sgemm group: 16×16 threads, each computing 4×4 outputs of a 64×64 tile.</summary>
    public static Dim3 Group => new(GemmKernels.Threads, GemmKernels.Threads);

    /// <summary>The Sgemm128 group: 256 threads (1-D), each computing 8×8 outputs of a 128×128 tile.</summary>
    public static Dim3 LargeGroup => new(GemmKernels.LargeThreads);

    /// <summary>The Sgemm grid for <paramref name="batch"/> products of M×N outputs (0 in x when there is nothing to launch).</summary>
    public static Dim3 Grid(GemmLayout p, int batch)
        => p.M == 0 || p.N == 0 || batch == 0
            ? new Dim3(0)
            : new Dim3((p.N + GemmKernels.TileN - 1) / GemmKernels.TileN, (p.M + GemmKernels.TileM - 1) / GemmKernels.TileM, batch);

    /// <summary>The Sgemm128 grid (0 in x when there is nothing to launch).</summary>
    public static Dim3 LargeGrid(GemmLayout p, int batch)
        => p.M == 0 || p.N == 0 || batch == 0
            ? new Dim3(0)
            : new Dim3((p.N + GemmKernels.LargeTile - 1) / GemmKernels.LargeTile, (p.M + GemmKernels.LargeTile - 1) / GemmKernels.LargeTile, batch);

    /// <summary>
    /// True when Sgemm128 runs: M and N both above 64. Below, a 128-wide tile would leave at least half
    /// of its threads without outputs in that dimension while the 64×64 kernel fits, so the small
    /// kernel runs (it also gives a small product 4× more groups to spread over the SMs).
    /// </summary>
    public static bool UsesLargeTiles(GemmLayout p) => p.M > GemmKernels.TileM && p.N > GemmKernels.TileN;

    /// <summary>
    /// Launches the kernel <see cref="UsesLargeTiles"/> picks for C = A·B on <paramref name="launcher"/>:
    /// <paramref name="a"/> and <paramref name="b"/> are views of the operands' whole storage (the layout's
    /// offsets index them; they must start 16-byte aligned, as allocations do), <paramref name="c"/> the
    /// contiguous [batch, M, N] output, 16-byte aligned as well.
    /// </summary>
    public static void Run(IKernelLauncher launcher, GemmLayout p, int batch, ArrayView<float> a, ArrayView<float> b, ArrayView<float> c)
    {
        if (UsesLargeTiles(p))
        {
            var grid = LargeGrid(p, batch);
            if (grid.X > 0) GemmKernels.Launch.Sgemm128(launcher, grid, LargeGroup, a, b, c, p);
        }
        else
        {
            var grid = Grid(p, batch);
            if (grid.X > 0) GemmKernels.Launch.Sgemm(launcher, grid, Group, a, b, c, p);
        }
    }

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
        // The stride of a size-1 dim is never used to step, so it is 0: a [1, K] row or [M, 1] column
        // then qualifies for vector loads whatever stride its view carries there.
        var layout = new GemmLayout
        {
            M = Fit(m, op), N = Fit(n, op), K = Fit(k, op),
            OffsetA = Fit(a.Offset, op), RowStrideA = m == 1 ? 0 : Fit(a.Strides[^2], op), ColStrideA = k == 1 ? 0 : Fit(a.Strides[^1], op),
            BatchStrideA = batchA == 1 ? 0 : Fit(a.Strides[0], op),
            OffsetB = Fit(b.Offset, op), RowStrideB = k == 1 ? 0 : Fit(b.Strides[^2], op), ColStrideB = n == 1 ? 0 : Fit(b.Strides[^1], op),
            BatchStrideB = batchB == 1 ? 0 : Fit(b.Strides[0], op),
        };
        layout.ModeA = Mode(layout.OffsetA, layout.BatchStrideA, outerStride: layout.RowStrideA, kStride: layout.ColStrideA);
        layout.ModeB = Mode(layout.OffsetB, layout.BatchStrideB, outerStride: layout.ColStrideB, kStride: layout.RowStrideB);
        // Every index the kernel forms must fit an int.
        Fit(a.Offset + (batch - 1) * layout.BatchStrideA + (m - 1) * layout.RowStrideA + (k - 1) * layout.ColStrideA, op);
        Fit(b.Offset + (batch - 1) * layout.BatchStrideB + (k - 1) * layout.RowStrideB + (n - 1) * layout.ColStrideB, op);
        Fit(batch * m * n, op);
        long[] shape = a.Rank == 2 && b.Rank == 2 ? [m, n] : [batch, m, n];
        return (layout, (int)batch, shape);
    }

    /// <summary>
    /// How Sgemm128 stages an operand whose element (outer, k) is at offset + outer·outerStride +
    /// k·kStride (+ batch·batchStride): along its unit-stride dim, as one Float4 when every address the
    /// kernel vector-loads (offset + batch·batchStride + 4j along the unit dim + any multiple of the other
    /// stride) is a multiple of 4 elements, i.e. 16 bytes from the view's aligned start. With neither
    /// stride 1 (a strided view) the scalar mode along the smaller stride keeps neighbours closest.
    /// </summary>
    public static int Mode(int offset, int batchStride, int outerStride, int kStride)
    {
        bool aligned = offset % 4 == 0 && batchStride % 4 == 0;
        if (kStride == 1) return aligned && outerStride % 4 == 0 ? GemmKernels.VectorAlongK : GemmKernels.AlongK;
        if (outerStride == 1) return aligned && kStride % 4 == 0 ? GemmKernels.VectorAlongOuter : GemmKernels.AlongOuter;
        return Math.Abs((long)kStride) <= Math.Abs((long)outerStride) ? GemmKernels.AlongK : GemmKernels.AlongOuter;
    }

    private static int Fit(long value, string op)
    {
        if (value > int.MaxValue || value < int.MinValue)
            throw new ArgumentException($"{op}: size or index {value} exceeds the kernel's 32-bit indexing.");
        return (int)value;
    }
}
