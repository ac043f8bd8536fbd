using Engine.Runtime;
using Engine.Runtime.Kernels;
using Engine.Tensors.AutoDiff;

namespace Engine.Tensors.Kernels;

/// <summary>
/// The device versions of gather, scatter_add, index_select, one_hot, where / masked_fill and
/// argmax (kernels/Indexing), and copies of non-float32 tensors. Arguments are validated as the
/// CPU ops validate them (same messages); index values are checked on the host (the index is read
/// back once) so a kernel never reads or writes out of bounds — internal callers whose indices are
/// valid by construction (max-pool backward, a gradient's re-use of forward indices) skip that
/// read. Each op records the same backward as the CPU op, written with device ops.
/// </summary>
internal static partial class KernelDispatch
{
    private static ArrayView<long> LongElements(Tensor t) => t.Storage.Buffer.View<long>().SubView(t.Offset, t.NumEl);

    /// <summary>Shape and strides, with a 0-d tensor read as shape [1] (as the CPU ops).</summary>
    private static (long[] Shape, long[] Strides) AtLeast1D(Tensor t)
        => t.Rank == 0 ? ([1], [0]) : (t.ShapeArray(), t.Strides.ToArray());

    /// <summary>Checks that <paramref name="index"/> is an int64 tensor on <paramref name="self"/>'s device.</summary>
    private static void RequireIndex(string op, Tensor self, Tensor index)
    {
        CheckSameDevice(op, self, index);
        if (index.DType == DType.Int32)
            throw NoKernel($"{op} with an int32 index", index.Device);
        if (index.DType != DType.Int64)
            throw new ArgumentException($"{op}: index must be int64 or int32, got {index.DType.Name()} of shape {ShapeUtil.Format(index.Shape)}.");
    }

    /// <summary>Reads the index back and checks every value is in [0, size) (the CPU ops' message).</summary>
    private static void CheckIndexRange(string op, Tensor index, int dim, long size, ReadOnlySpan<long> selfShape)
    {
        foreach (var v in index.ToArray<long>())
            if (v < 0 || v >= size)
                throw new ArgumentOutOfRangeException("index",
                    $"{op}: index {v} is out of range for dim {dim} of size {size} (self shape {ShapeUtil.Format(selfShape)}, index shape {ShapeUtil.Format(index.Shape)}).");
    }

    private static void CheckRank8(string op, int rank, ReadOnlySpan<long> shape)
    {
        if (rank > ElementwiseKernels.MaxRank)
            throw new ArgumentException($"{op}: shape {ShapeUtil.Format(shape)} has {rank} dims; the device kernels take at most {ElementwiseKernels.MaxRank}.");
    }

    private static IndexLayout IndexLayoutOf(long[] shape, long[] indexedStrides, long indexedOffset, long[]? otherStrides, long otherOffset, int dim)
    {
        var layout = new IndexLayout { Rank = shape.Length, Dim = dim, IndexedOffset = checked((int)indexedOffset), OtherOffset = checked((int)otherOffset) };
        for (int k = 0; k < shape.Length; k++)
        {
            layout.Shape[k] = checked((int)shape[k]);
            layout.Indexed[k] = checked((int)indexedStrides[k]);
            layout.Other[k] = otherStrides is null ? 0 : checked((int)otherStrides[k]);
        }
        layout.DimStride = checked((int)indexedStrides[dim]);
        return layout;
    }

    // ------------------------------------------------------------------ gather / scatter_add

    /// <summary>Tensor.Gather on a device; backward: g scatter-added into zeros.</summary>
    public static Tensor Gather(Tensor x, int dim, Tensor index, bool indicesValid = false)
    {
        const string op = "gather";
        RequireFloat32(op, x);
        RequireIndex(op, x, index);
        int d = ShapeUtil.NormalizeDim(op, dim, Math.Max(x.Rank, 1));
        if (index.Rank != x.Rank)
            throw new ArgumentException($"{op}: index must have the rank of self; got index shape {ShapeUtil.Format(index.Shape)} for self of shape {ShapeUtil.Format(x.Shape)}.");
        var (selfShape, selfStrides) = AtLeast1D(x);
        var (idxShape, _) = AtLeast1D(index);
        CheckRank8(op, idxShape.Length, index.Shape);
        for (int k = 0; k < idxShape.Length; k++)
            if (k != d && idxShape[k] > selfShape[k])
                throw new ArgumentException(
                    $"{op}: index shape {ShapeUtil.Format(index.Shape)} is larger than self shape {ShapeUtil.Format(x.Shape)} in dim {k} (only dim {d} may be larger).");
        if (!indicesValid) CheckIndexRange(op, index, d, selfShape[d], x.Shape);
        var y = Output(index.ShapeArray(), x, op);
        int count = Count32(op, y.NumEl, y.Shape);
        if (count > 0)
        {
            using var _ = Tensor.NoGrad();
            using var ic = index.Contiguous();
            IndexingKernels.Launch.Gather(Accelerator(x), Groups(count, IndexingKernels.GroupSize), IndexingKernels.GroupSize,
                Whole(x), LongElements(ic), Whole(y), IndexLayoutOf(idxShape, selfStrides, x.Offset, null, 0, d));
        }
        var shape = x.ShapeArray();
        return Graph.Record(y, op, [x], [index], (g, s) =>
        {
            using var zeros = Tensor.Zeros(shape, g.DType, g.Device);
            return [ScatterAdd(zeros, d, s[0], g, indicesValid: true)];
        });
    }

    /// <summary>
    /// Out-of-place Tensor.ScatterAdd on a device: a copy of <paramref name="self"/> with src added at the
    /// indexed positions (float atomics: repeated targets add in no fixed order). Backward: g for self,
    /// g gathered at the index for src (zero-padded where src is larger than the index).
    /// </summary>
    public static Tensor ScatterAdd(Tensor self, int dim, Tensor index, Tensor src, bool indicesValid = false)
    {
        const string op = "scatter_add";
        RequireFloat32(op, self);
        RequireIndex(op, self, index);
        CheckSameDevice(op, self, src);
        int d = ShapeUtil.NormalizeDim(op, dim, Math.Max(self.Rank, 1));
        if (index.Rank != self.Rank || src.Rank != self.Rank)
            throw new ArgumentException(
                $"{op}: self, index and src must have one rank; got self {ShapeUtil.Format(self.Shape)}, index {ShapeUtil.Format(index.Shape)}, src {ShapeUtil.Format(src.Shape)}.");
        if (src.DType != self.DType)
            throw new ArgumentException($"{op}: src must have self's dtype {self.DType.Name()}, got {src.DType.Name()} (self {ShapeUtil.Format(self.Shape)}, src {ShapeUtil.Format(src.Shape)}).");
        var (selfShape, _) = AtLeast1D(self);
        var (idxShape, _) = AtLeast1D(index);
        var (srcShape, srcStrides) = AtLeast1D(src);
        CheckRank8(op, idxShape.Length, index.Shape);
        for (int k = 0; k < idxShape.Length; k++)
            if (idxShape[k] > srcShape[k] || (k != d && idxShape[k] > selfShape[k]))
                throw new ArgumentException(
                    $"{op}: index shape {ShapeUtil.Format(index.Shape)} must be no larger than src shape {ShapeUtil.Format(src.Shape)} in every dim and no larger than self shape {ShapeUtil.Format(self.Shape)} in dims other than {d} (dim {k} is).");
        if (!indicesValid) CheckIndexRange(op, index, d, selfShape[d], self.Shape);
        var y = Output(self.ShapeArray(), self, op);
        Copy(op, self, y);
        int count = Count32(op, index.NumEl, index.Shape);
        Count32(op, y.NumEl, y.Shape);
        if (count > 0)
        {
            using var _ = Tensor.NoGrad();
            using var ic = index.Contiguous();
            IndexingKernels.Launch.ScatterAdd(Accelerator(self), Groups(count, IndexingKernels.GroupSize), IndexingKernels.GroupSize,
                Whole(src), LongElements(ic), Whole(y), IndexLayoutOf(idxShape, ShapeUtil.ContiguousStrides(selfShape), 0, srcStrides, src.Offset, d), count);
        }
        bool gs = src.RequiresGrad;
        var srcShapeOrig = src.ShapeArray();
        return Graph.Record(y, op, [self, src], [index], (g, s) =>
        {
            if (!gs) return [g, null];
            var gathered = Gather(g, d, s[0], indicesValid: true);
            for (int k = 0; k < srcShapeOrig.Length; k++)
            {
                if (gathered.Shape[k] == srcShapeOrig[k]) continue;
                var padded = gathered.NarrowBackward(k, 0, srcShapeOrig[k]);
                gathered.Dispose();
                gathered = padded;
            }
            return [g, gathered];
        });
    }

    // ------------------------------------------------------------------ index_select

    /// <summary>Tensor.IndexSelect on a device; backward: g scatter-added into zeros at the index (broadcast along the other dims).</summary>
    public static Tensor IndexSelect(Tensor x, int dim, Tensor index)
    {
        const string op = "index_select";
        RequireFloat32(op, x);
        RequireIndex(op, x, index);
        if (x.Rank == 0) throw new ArgumentException($"{op}: cannot index a 0-d tensor; reshape it to [1] first.");
        int d = ShapeUtil.NormalizeDim(op, dim, x.Rank);
        if (index.Rank > 1)
            throw new ArgumentException($"{op}: index must be 1-D (or 0-d), got shape {ShapeUtil.Format(index.Shape)} for self of shape {ShapeUtil.Format(x.Shape)}.");
        CheckRank8(op, x.Rank, x.Shape);
        CheckIndexRange(op, index, d, x.Shape[d], x.Shape);
        var outShape = x.ShapeArray();
        outShape[d] = index.NumEl;
        var y = Output(outShape, x, op);
        int count = Count32(op, y.NumEl, y.Shape);
        if (count > 0)
        {
            using var _ = Tensor.NoGrad();
            using var ic = index.Contiguous();
            IndexingKernels.Launch.IndexSelect(Accelerator(x), Groups(count, IndexingKernels.GroupSize), IndexingKernels.GroupSize,
                Whole(x), LongElements(ic), Whole(y), IndexLayoutOf(outShape, x.Strides.ToArray(), x.Offset, null, 0, d));
        }
        var selfShape = x.ShapeArray();
        return Graph.Record(y, op, [x], [index], (g, s) =>
        {
            var viewShape = Enumerable.Repeat(1L, selfShape.Length).ToArray();
            viewShape[d] = s[0].NumEl;
            using var column = s[0].Reshape(viewShape);
            using var expanded = column.Expand(g.ShapeArray());
            using var full = expanded.Contiguous();
            using var zeros = Tensor.Zeros(selfShape, g.DType, g.Device);
            return [ScatterAdd(zeros, d, full, g, indicesValid: true)];
        });
    }

    // ------------------------------------------------------------------ one_hot

    /// <summary>Tensor.OneHot on a device: int64 labels → int64 [..., numClasses] (the labels are read back to validate them).</summary>
    public static Tensor OneHot(Tensor labels, long numClasses)
    {
        const string op = "one_hot";
        if (labels.DType == DType.Int32) throw NoKernel($"{op} of int32 labels", labels.Device);
        if (labels.DType != DType.Int64)
            throw new ArgumentException($"{op}: index must be int64 or int32, got {labels.DType.Name()} of shape {ShapeUtil.Format(labels.Shape)}.");
        var idx = labels.ToArray<long>();
        if (numClasses < 0)
        {
            if (numClasses != -1) throw new ArgumentException($"{op}: numClasses must be -1 (infer) or non-negative, got {numClasses}.");
            if (idx.Length == 0) throw new ArgumentException($"{op}: cannot infer the number of classes from an empty tensor (shape {ShapeUtil.Format(labels.Shape)}); pass numClasses.");
            numClasses = idx.Max() + 1;
        }
        for (int i = 0; i < idx.Length; i++)
            if (idx[i] < 0 || idx[i] >= numClasses)
                throw new ArgumentOutOfRangeException(nameof(labels),
                    $"{op}: label {idx[i]} is out of range for {numClasses} classes (labels shape {ShapeUtil.Format(labels.Shape)}, element {i}).");
        long[] shape = [.. labels.Shape, numClasses];
        var y = Tensor.Allocate(shape, DType.Int64, zero: false, op, labels.Device);
        int count = Count32(op, y.NumEl, y.Shape);
        if (count > 0)
        {
            using var _ = Tensor.NoGrad();
            using var lc = labels.Contiguous();
            IndexingKernels.Launch.OneHot(Accelerator(labels), Groups(count, IndexingKernels.GroupSize), IndexingKernels.GroupSize,
                LongElements(lc), y.Storage.Buffer.View<long>().SubView(0, count), (int)numClasses);
        }
        return y;
    }

    // ------------------------------------------------------------------ where / masked_fill

    /// <summary>where(cond, a, b) on a device, no graph recording (Tensor.Where records it): float32 values, bool condition, broadcasting.</summary>
    public static Tensor Where(string op, Tensor condition, Tensor a, Tensor b)
    {
        CheckSameDevice(op, condition, a);
        CheckSameDevice(op, a, b);
        if (condition.DType != DType.Bool)
            throw new ArgumentException($"{op}: the condition must be bool, got {condition.DType.Name()} of shape {ShapeUtil.Format(condition.Shape)}.");
        bool f64 = a.DType == DType.Float64 && b.DType == DType.Float64; // Float64Kernels.Where64
        if (!f64)
        {
            RequireFloat32(op, a);
            RequireFloat32(op, b);
        }
        var shape = ShapeUtil.Broadcast(op, condition.Shape, ShapeUtil.Broadcast(op, a.Shape, b.Shape));
        var y = Tensor.Allocate(shape, f64 ? DType.Float64 : DType.Float32, zero: false, op, a.Device);
        int count = Count32(op, y.NumEl, y.Shape);
        if (count == 0) return y;
        // Size-1 output dims are dropped (their index is always 0); no coalescing, rank ≤ 8 after that.
        var dims = Enumerable.Range(0, shape.Length).Where(k => shape[k] != 1).ToArray();
        CheckRank8(op, dims.Length, shape);
        var layout = new WhereLayout
        {
            Rank = dims.Length,
            OffsetC = checked((int)condition.Offset), OffsetA = checked((int)a.Offset), OffsetB = checked((int)b.Offset),
        };
        for (int k = 0; k < dims.Length; k++)
        {
            layout.Shape[k] = (int)shape[dims[k]];
            layout.StrideC[k] = BroadcastStride(condition, dims[k], shape.Length);
            layout.StrideA[k] = BroadcastStride(a, dims[k], shape.Length);
            layout.StrideB[k] = BroadcastStride(b, dims[k], shape.Length);
        }
        if (f64)
            Float64Kernels.Launch.Where64(Accelerator(a), Groups(count, IndexingKernels.GroupSize), IndexingKernels.GroupSize,
                condition.Storage.Buffer.View<byte>(), a.Storage.Buffer.View<double>(), b.Storage.Buffer.View<double>(), y.Storage.Buffer.View<double>(), layout);
        else
            IndexingKernels.Launch.Where(Accelerator(a), Groups(count, IndexingKernels.GroupSize), IndexingKernels.GroupSize,
                condition.Storage.Buffer.View<byte>(), Whole(a), Whole(b), Whole(y), layout);
        return y;
    }

    private static int BroadcastStride(Tensor t, int outDim, int outRank)
    {
        int d = outDim - (outRank - t.Rank);
        return d < 0 || t.Shape[d] == 1 ? 0 : checked((int)t.Strides[d]);
    }

    /// <summary>Tensor.MaskedFill on a device: where(mask, value, x); backward g masked with 0 (summed to x's shape).</summary>
    public static Tensor MaskedFill(Tensor x, Tensor mask, double value)
    {
        const string op = "masked_fill";
        if (mask.DType != DType.Bool)
            throw new ArgumentException($"{op}: mask must be bool, got {mask.DType.Name()} of shape {ShapeUtil.Format(mask.Shape)} (self {ShapeUtil.Format(x.Shape)}).");
        CheckSameDevice(op, x, mask);
        RequireFloat32(op, x);
        Tensor y;
        using (Tensor.NoGrad())
        using (var v = Tensor.ScalarLike(value, x.DType, x.Device))
            y = Where(op, mask, v, x);
        var selfShape = x.ShapeArray();
        return Graph.Record(y, op, [x], [mask], (g, s) =>
        {
            var zeroed = g.MaskedFill(s[0], 0);
            var summed = zeroed.SumToShape(selfShape);
            if (!ReferenceEquals(summed, zeroed)) zeroed.Dispose();
            return [summed];
        });
    }

    // ------------------------------------------------------------------ argmax

    /// <summary>Tensor.ArgMax on a device: int64 index of the first maximum (a NaN wins) over the dims in <paramref name="mask"/>.</summary>
    public static Tensor ArgMax(string op, Tensor x, bool[] mask, bool keepDim)
    {
        RequireFloat32(op, x);
        var outShape = ReductionRunner.OutputShape(x.Shape, mask, keepDim);
        var (perm, _, outer, rowLength) = ReductionRunner.Layout(x.Shape, mask);
        var y = Tensor.Allocate(outShape, DType.Int64, zero: false, op, x.Device);
        if (y.NumEl == 0) return y;
        Count32(op, x.NumEl, x.Shape);
        using var _ = Tensor.NoGrad();
        using var permuted = x.Permute(perm);
        using var rows = permuted.Contiguous();
        IndexingKernels.Launch.ArgMaxRows(Accelerator(x), Groups(outer, IndexingKernels.GroupSize), IndexingKernels.GroupSize,
            Elements(rows), y.Storage.Buffer.View<long>(), (int)outer, (int)rowLength);
        return y;
    }

    // ------------------------------------------------------------------ copies of other dtypes

    /// <summary>The strided copy of a non-float32 tensor (int64, float64, int32, bool) as its bits; same dtype only.</summary>
    private static void CopyBits(string op, Tensor src, Tensor dst)
    {
        if (src.DType != dst.DType)
            throw NoKernel($"{op} from {src.DType.Name()} to {dst.DType.Name()}", dst.Device);
        long count = dst.NumEl;
        if (count == 0) return;
        int n = Count32(op, count, dst.Shape);
        var layout = ElementwisePlan.Binary(dst.Shape, src.Shape, src.Strides, src.Offset, dst.Shape, dst.Strides, dst.Offset);
        var acc = Accelerator(dst);
        var (grid, group) = (Groups(count, ElementwisePlan.GroupSize), ElementwisePlan.GroupSize);
        var (from, to) = (src.Storage.Buffer, dst.Storage.Buffer);
        switch (dst.DType.ElementSize())
        {
            case 8: IndexingKernels.Launch.StridedCopy64(acc, grid, group, from.View<long>(), to.View<long>(), layout, n); break;
            case 4: IndexingKernels.Launch.StridedCopy32(acc, grid, group, from.View<int>(), to.View<int>(), layout, n); break;
            case 1: IndexingKernels.Launch.StridedCopy8(acc, grid, group, from.View<byte>(), to.View<byte>(), layout, n); break;
            default: throw NoKernel($"{op} of {dst.DType.Name()}", dst.Device);
        }
    }
}
