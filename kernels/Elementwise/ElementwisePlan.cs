using Engine.Runtime.Kernels;

namespace Engine.Tensors.Kernels;

/// <summary>
/// Host side of ElementwiseKernels: the launch shape and the index map (broadcast strides with
/// size-1 dims dropped and mergeable dims coalesced, so a contiguous operation runs at rank 1).
/// </summary>
internal static class ElementwisePlan
{
    /// <summary>Threads per group (a multiple of the 32-lane warp; 8 warps per group).</summary>
    public const int GroupSize = 256;

    /// <summary>Groups for <paramref name="count"/> outputs (0 when there is nothing to launch).</summary>
    public static int Groups(long count) => checked((int)((count + GroupSize - 1) / GroupSize));

    /// <summary>The layout for y = op(x), y contiguous of x's shape.</summary>
    public static ElementwiseLayout Unary(Tensor x) => Unary(x.Shape, x.Strides, x.Offset);

    /// <summary>The layout for y = op(a, b), y contiguous of the broadcast shape.</summary>
    public static ElementwiseLayout Binary(Tensor a, Tensor b)
    {
        var shape = ShapeUtil.Broadcast("elementwise kernel", a.Shape, b.Shape);
        return Build(shape, a.Shape, a.Strides, a.Offset, b.Shape, b.Strides, b.Offset, binary: true);
    }

    /// <summary>The layout for y = op(x) from a raw view description (shape, element strides, element offset).</summary>
    public static ElementwiseLayout Unary(ReadOnlySpan<long> shape, ReadOnlySpan<long> strides, long offset)
        => Build(shape, shape, strides, offset, [], [], 0, binary: false);

    /// <summary>The layout for y = op(a, b), y of shape <paramref name="outShape"/> (the broadcast of both shapes).</summary>
    public static ElementwiseLayout Binary(ReadOnlySpan<long> outShape, ReadOnlySpan<long> shapeA, ReadOnlySpan<long> stridesA, long offsetA,
                                           ReadOnlySpan<long> shapeB, ReadOnlySpan<long> stridesB, long offsetB)
        => Build(outShape, shapeA, stridesA, offsetA, shapeB, stridesB, offsetB, binary: true);

    private static ElementwiseLayout Build(ReadOnlySpan<long> outShape, ReadOnlySpan<long> shapeA, ReadOnlySpan<long> stridesA, long offsetA,
                                           ReadOnlySpan<long> shapeB, ReadOnlySpan<long> stridesB, long offsetB, bool binary)
    {
        int rank = outShape.Length;
        // Broadcast strides, aligned to the right; size-1 output dims are dropped (their index is always 0).
        var sizes = new List<long>(rank);
        var sa = new List<long>(rank);
        var sb = new List<long>(rank);
        for (int d = 0; d < rank; d++)
        {
            if (outShape[d] == 1) continue;
            sizes.Add(outShape[d]);
            sa.Add(BroadcastStride(shapeA, stridesA, d, rank));
            sb.Add(binary ? BroadcastStride(shapeB, stridesB, d, rank) : 0);
        }
        // Coalesce from the inside out: an outer dim merges into the inner one when, for every
        // operand, stepping the outer index equals stepping the inner index size times.
        for (int d = sizes.Count - 2; d >= 0; d--)
        {
            long inner = sizes[d + 1];
            if (sa[d] == sa[d + 1] * inner && sb[d] == sb[d + 1] * inner)
            {
                sizes[d + 1] = sizes[d] * inner;
                sizes.RemoveAt(d);
                sa.RemoveAt(d);
                sb.RemoveAt(d);
            }
        }
        long count = ShapeUtil.NumEl(outShape);
        if (sizes.Count > ElementwiseKernels.MaxRank)
            throw new ArgumentException($"elementwise kernel: output shape {ShapeUtil.Format(outShape)} has {sizes.Count} dims after merging; the kernels take at most 8.");
        if (count > int.MaxValue)
            throw new ArgumentException($"elementwise kernel: {count} elements (shape {ShapeUtil.Format(outShape)}) exceed the 32-bit indexing of the kernels.");
        var layout = new ElementwiseLayout
        {
            Rank = sizes.Count,
            OffsetA = ToIndex(offsetA + Reach(sizes, sa), offsetA, "first input"),
            OffsetB = ToIndex(offsetB + Reach(sizes, sb), offsetB, "second input"),
        };
        for (int d = 0; d < sizes.Count; d++)
        {
            layout.Shape[d] = (int)sizes[d];
            layout.StrideA[d] = checked((int)sa[d]);
            layout.StrideB[d] = checked((int)sb[d]);
        }
        return layout;
    }

    private static long BroadcastStride(ReadOnlySpan<long> shape, ReadOnlySpan<long> strides, int outDim, int outRank)
    {
        int d = outDim - (outRank - shape.Length);
        return d < 0 || shape[d] == 1 ? 0 : strides[d];
    }

    private static long Reach(List<long> sizes, List<long> strides)
    {
        long reach = 0;
        for (int d = 0; d < sizes.Count; d++) reach += (sizes[d] - 1) * Math.Abs(strides[d]);
        return reach;
    }

    private static int ToIndex(long last, long offset, string what)
    {
        if (last > int.MaxValue || offset > int.MaxValue)
            throw new ArgumentException($"elementwise kernel: the {what} reaches element {last}, beyond the 32-bit indexing of the kernels.");
        return (int)offset;
    }
}
