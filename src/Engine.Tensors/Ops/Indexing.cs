using System.Numerics;
using System.Numerics.Tensors;
using Engine.Tensors.AutoDiff;
using Engine.Tensors.Cpu;

namespace Engine.Tensors;

/// <summary>
/// Indexing ops: cat, stack, index_select / index_add, gather / scatter_add, one_hot, masked_fill,
/// masked_select. Index tensors are int64 or int32; indices must lie in [0, size) (negative indices
/// are rejected, as PyTorch does for these ops). Every backward is made of these same ops, so
/// gradients of gradients work: gather ↔ scatter_add, index_select ↔ index_add, masked_select ↔
/// masked scatter, cat ↔ narrow, stack ↔ select.
/// </summary>
public sealed partial class Tensor
{
    // ------------------------------------------------------------------ cat / stack

    /// <summary>
    /// Concatenates <paramref name="tensors"/> along <paramref name="dim"/> (torch.cat). All must have the
    /// same dtype, the same rank and the same sizes except along <paramref name="dim"/>; as in PyTorch, 1-D
    /// empty tensors (shape [0]) are skipped. Gradient: each input gets its narrow slice of g.
    /// </summary>
    public static Tensor Cat(Tensor[] tensors, int dim = 0)
    {
        ArgumentNullException.ThrowIfNull(tensors);
        if (tensors.Length == 0) throw new ArgumentException("cat: expects a non-empty array of tensors.");
        var parts = tensors.Where(t => !(t.Rank == 1 && t._shape[0] == 0)).ToArray();
        var first = parts.Length > 0 ? parts[0] : tensors[0];
        if (first.Rank == 0)
            throw new ArgumentException("cat: zero-dimensional tensors (shape []) cannot be concatenated; use Stack or Unsqueeze first.");
        int d = ShapeUtil.NormalizeDim("cat", dim, first.Rank);
        var outShape = first.ShapeArray();
        outShape[d] = 0;
        for (int i = 0; i < tensors.Length; i++)
        {
            var t = tensors[i];
            Kernels.KernelDispatch.CheckSameDevice("cat", first, t);
            if (t.DType != first.DType)
                throw new ArgumentException(
                    $"cat: all tensors must have one dtype; tensor 0 is {first.DType.Name()} {ShapeUtil.Format(first.Shape)} but tensor {i} is {t.DType.Name()} {ShapeUtil.Format(t.Shape)}.");
            if (t.Rank == 1 && t._shape[0] == 0 && first.Rank != 1) continue;
            if (t.Rank != first.Rank)
                throw new ArgumentException(
                    $"cat: all tensors must have the same rank; shapes {ShapeUtil.Format(first.Shape)} and {ShapeUtil.Format(t.Shape)} (tensor {i}) differ in rank.");
            for (int k = 0; k < first.Rank; k++)
                if (k != d && t._shape[k] != first._shape[k])
                    throw new ArgumentException(
                        $"cat: sizes must match except in dim {d}; shapes {ShapeUtil.Format(first.Shape)} and {ShapeUtil.Format(t.Shape)} (tensor {i}) differ in dim {k}.");
            outShape[d] += t._shape[d];
        }
        var y = Allocate(outShape, first.DType, zero: false, "cat", first.Device);
        var starts = new long[tensors.Length];
        var lengths = new long[tensors.Length];
        var skipped = new bool[tensors.Length];
        long offset = 0;
        using (NoGrad())
        {
            for (int i = 0; i < tensors.Length; i++)
            {
                var t = tensors[i];
                if (t.Rank == 1 && t._shape[0] == 0 && first.Rank != 1) { skipped[i] = true; continue; }
                starts[i] = offset;
                lengths[i] = t._shape[d];
                using (var region = y.Narrow(d, offset, lengths[i])) region.CopyFrom_(t);
                offset += lengths[i];
            }
        }
        var needs = tensors.Select(t => t.RequiresGrad).ToArray();
        return Graph.Record(y, "cat", tensors, g =>
        {
            var grads = new Tensor?[needs.Length];
            for (int i = 0; i < needs.Length; i++)
            {
                if (!needs[i]) continue;
                grads[i] = skipped[i] ? Zeros([0], g.DType, g.Device) : g.Narrow(d, starts[i], lengths[i]);
            }
            return grads;
        });
    }

    /// <summary>
    /// Stacks equally shaped tensors along a new dim <paramref name="dim"/> (0..rank) (torch.stack).
    /// Gradient: input i gets g.Select(dim, i).
    /// </summary>
    public static Tensor Stack(Tensor[] tensors, int dim = 0)
    {
        ArgumentNullException.ThrowIfNull(tensors);
        if (tensors.Length == 0) throw new ArgumentException("stack: expects a non-empty array of tensors.");
        var first = tensors[0];
        for (int i = 1; i < tensors.Length; i++)
        {
            var t = tensors[i];
            Kernels.KernelDispatch.CheckSameDevice("stack", first, t);
            if (t.DType != first.DType || !ShapeUtil.SameShape(t.Shape, first.Shape))
                throw new ArgumentException(
                    $"stack: all tensors must have one shape and dtype; tensor 0 is {first.DType.Name()} {ShapeUtil.Format(first.Shape)} but tensor {i} is {t.DType.Name()} {ShapeUtil.Format(t.Shape)}.");
        }
        int d = ShapeUtil.NormalizeDim("stack", dim, first.Rank + 1);
        var outShape = first._shape.ToList();
        outShape.Insert(d, tensors.Length);
        var y = Allocate(outShape.ToArray(), first.DType, zero: false, "stack", first.Device);
        using (NoGrad())
            for (int i = 0; i < tensors.Length; i++)
                using (var slot = y.Select(d, i)) slot.CopyFrom_(tensors[i]);
        var needs = tensors.Select(t => t.RequiresGrad).ToArray();
        return Graph.Record(y, "stack", tensors, g =>
        {
            var grads = new Tensor?[needs.Length];
            for (int i = 0; i < needs.Length; i++) if (needs[i]) grads[i] = g.Select(d, i);
            return grads;
        });
    }

    // ------------------------------------------------------------------ index_select / index_add

    /// <summary>
    /// The slices of this tensor at positions <paramref name="index"/> (a 1-D or 0-d int64/int32 tensor)
    /// along <paramref name="dim"/>, in index order (torch.index_select); repeats allowed.
    /// Gradient: g added back into zeros at the indexed slices (<see cref="IndexAdd"/>).
    /// </summary>
    public Tensor IndexSelect(int dim, Tensor index)
    {
        ArgumentNullException.ThrowIfNull(index);
        if (Kernels.KernelDispatch.IsAccelerated(this)) return Kernels.KernelDispatch.IndexSelect(this, dim, index);
        const string op = "index_select";
        RequireCpu(op);
        if (Rank == 0) throw new ArgumentException($"{op}: cannot index a 0-d tensor; reshape it to [1] first.");
        int d = ShapeUtil.NormalizeDim(op, dim, Rank);
        if (index.Rank > 1)
            throw new ArgumentException($"{op}: index must be 1-D (or 0-d), got shape {ShapeUtil.Format(index.Shape)} for self of shape {ShapeUtil.Format(Shape)}.");
        var idx = IndexValues(op, index);
        CheckRange(op, idx, d, _shape[d], _shape, index._shape);
        var outShape = ShapeArray();
        outShape[d] = idx.Length;
        var y = Allocate(outShape, DType, zero: false, op);
        using (NoGrad())
        using (var src = Contiguous())
        {
            switch (DType.ElementSize())
            {
                case 1: IndexSelectKernel<byte>(src, idx, d, y); break;
                case 4: IndexSelectKernel<int>(src, idx, d, y); break;
                default: IndexSelectKernel<long>(src, idx, d, y); break;
            }
        }
        var selfShape = _shape;
        return Graph.Record(y, op, [this], [index], (g, s) => [Zeros(selfShape, g.DType).IndexAdd(d, s[0], g)]);
    }

    /// <summary>
    /// Out-of-place torch.index_add: a copy of this tensor with slice j of <paramref name="source"/> added
    /// to slice index[j] along <paramref name="dim"/> (repeated indices add up). <paramref name="source"/>
    /// has this shape with dim <paramref name="dim"/> of size index length. Gradient: g for this,
    /// g.IndexSelect(dim, index) for the source.
    /// </summary>
    public Tensor IndexAdd(int dim, Tensor index, Tensor source)
    {
        ArgumentNullException.ThrowIfNull(index);
        ArgumentNullException.ThrowIfNull(source);
        const string op = "index_add";
        if (Kernels.KernelDispatch.IsAccelerated(this)) return Kernels.KernelDispatch.IndexAdd(this, dim, index, source);
        RequireCpu(op);
        if (Rank == 0) throw new ArgumentException($"{op}: cannot index a 0-d tensor; reshape it to [1] first.");
        int d = ShapeUtil.NormalizeDim(op, dim, Rank);
        if (index.Rank > 1)
            throw new ArgumentException($"{op}: index must be 1-D (or 0-d), got shape {ShapeUtil.Format(index.Shape)}.");
        var idx = IndexValues(op, index);
        CheckRange(op, idx, d, _shape[d], _shape, index._shape);
        var expected = ShapeArray();
        expected[d] = idx.Length;
        if (source.DType != DType || !ShapeUtil.SameShape(source.Shape, expected))
            throw new ArgumentException(
                $"{op}: source must be {DType.Name()} of shape {ShapeUtil.Format(expected)} (self {ShapeUtil.Format(Shape)} with dim {d} of the index length {idx.Length}), got {source.DType.Name()} {ShapeUtil.Format(source.Shape)}.");
        RequireNumeric(op);
        var y = Allocate(ShapeArray(), DType, zero: false, op);
        Cpu.Copy.Into(this, y);
        using (NoGrad())
        using (var src = source.Contiguous())
        {
            switch (DType)
            {
                case DType.Float32: IndexAddKernel<float>(src, idx, d, y); break;
                case DType.Float64: IndexAddKernel<double>(src, idx, d, y); break;
                case DType.Int32: IndexAddKernel<int>(src, idx, d, y); break;
                default: IndexAddKernel<long>(src, idx, d, y); break;
            }
        }
        bool gs = source.RequiresGrad;
        return Graph.Record(y, op, [this, source], [index], (g, s) => [g, gs ? g.IndexSelect(d, s[0]) : null]);
    }

    // ------------------------------------------------------------------ gather / scatter_add

    /// <summary>
    /// torch.gather: out[i][j][k] = self[index[i][j][k]][j][k] for dim 0 (likewise for other dims). The
    /// index has this tensor's rank, sizes at most this tensor's in every dim other than
    /// <paramref name="dim"/>; the result has the index's shape. Gradient: g scatter-added into zeros.
    /// </summary>
    public Tensor Gather(int dim, Tensor index)
    {
        ArgumentNullException.ThrowIfNull(index);
        if (Kernels.KernelDispatch.IsAccelerated(this)) return Kernels.KernelDispatch.Gather(this, dim, index);
        const string op = "gather";
        RequireCpu(op);
        int d = ShapeUtil.NormalizeDim(op, dim, Rank);
        if (index.Rank != Rank)
            throw new ArgumentException($"{op}: index must have the rank of self; got index shape {ShapeUtil.Format(index.Shape)} for self of shape {ShapeUtil.Format(Shape)}.");
        var (selfShape, selfStrides) = AtLeast1D(this);
        var (idxShape, _) = AtLeast1D(index);
        for (int k = 0; k < idxShape.Length; k++)
            if (k != d && idxShape[k] > selfShape[k])
                throw new ArgumentException(
                    $"{op}: index shape {ShapeUtil.Format(index.Shape)} is larger than self shape {ShapeUtil.Format(Shape)} in dim {k} (only dim {d} may be larger).");
        var idx = IndexValues(op, index);
        CheckRange(op, idx, d, selfShape[d], _shape, index._shape);
        var y = Allocate(index.ShapeArray(), DType, zero: false, op);
        switch (DType.ElementSize())
        {
            case 1: GatherKernel<byte>(this, selfStrides, idx, idxShape, d, y); break;
            case 4: GatherKernel<int>(this, selfStrides, idx, idxShape, d, y); break;
            default: GatherKernel<long>(this, selfStrides, idx, idxShape, d, y); break;
        }
        var shape = _shape;
        return Graph.Record(y, op, [this], [index], (g, s) => [Zeros(shape, g.DType).ScatterAdd(d, s[0], g)]);
    }

    /// <summary>
    /// Out-of-place torch.scatter_add: a copy of this tensor with, for every position m of
    /// <paramref name="index"/>, src[m] added at m with coordinate <paramref name="dim"/> replaced by index[m]
    /// (repeated targets add up). index, src and self have one rank; index is no larger than src in any
    /// dim and no larger than self in dims other than <paramref name="dim"/>. Gradient: g for self,
    /// g.Gather(dim, index) for src (zero where src is outside the index's extent).
    /// </summary>
    public Tensor ScatterAdd(int dim, Tensor index, Tensor src)
    {
        ArgumentNullException.ThrowIfNull(index);
        ArgumentNullException.ThrowIfNull(src);
        if (Kernels.KernelDispatch.IsAccelerated(this)) return Kernels.KernelDispatch.ScatterAdd(this, dim, index, src);
        const string op = "scatter_add";
        RequireCpu(op);
        int d = ShapeUtil.NormalizeDim(op, dim, Rank);
        if (index.Rank != Rank || src.Rank != Rank)
            throw new ArgumentException(
                $"{op}: self, index and src must have one rank; got self {ShapeUtil.Format(Shape)}, index {ShapeUtil.Format(index.Shape)}, src {ShapeUtil.Format(src.Shape)}.");
        if (src.DType != DType)
            throw new ArgumentException($"{op}: src must have self's dtype {DType.Name()}, got {src.DType.Name()} (self {ShapeUtil.Format(Shape)}, src {ShapeUtil.Format(src.Shape)}).");
        RequireNumeric(op);
        var (selfShape, _) = AtLeast1D(this);
        var (idxShape, _) = AtLeast1D(index);
        var (srcShape, srcStrides) = AtLeast1D(src);
        for (int k = 0; k < idxShape.Length; k++)
            if (idxShape[k] > srcShape[k] || (k != d && idxShape[k] > selfShape[k]))
                throw new ArgumentException(
                    $"{op}: index shape {ShapeUtil.Format(index.Shape)} must be no larger than src shape {ShapeUtil.Format(src.Shape)} in every dim and no larger than self shape {ShapeUtil.Format(Shape)} in dims other than {d} (dim {k} is).");
        var idx = IndexValues(op, index);
        CheckRange(op, idx, d, selfShape[d], _shape, index._shape);
        var y = Allocate(ShapeArray(), DType, zero: false, op);
        Cpu.Copy.Into(this, y);
        var outStrides = ShapeUtil.ContiguousStrides(selfShape);
        switch (DType)
        {
            case DType.Float32: ScatterAddKernel<float>(src, srcStrides, idx, idxShape, d, y, outStrides); break;
            case DType.Float64: ScatterAddKernel<double>(src, srcStrides, idx, idxShape, d, y, outStrides); break;
            case DType.Int32: ScatterAddKernel<int>(src, srcStrides, idx, idxShape, d, y, outStrides); break;
            default: ScatterAddKernel<long>(src, srcStrides, idx, idxShape, d, y, outStrides); break;
        }
        bool gs = src.RequiresGrad;
        var srcShapeOrig = src._shape;
        return Graph.Record(y, op, [this, src], [index], (g, s) =>
        {
            if (!gs) return [g, null];
            var gathered = g.Gather(d, s[0]);
            // Where src is larger than the index, those src elements were not used: their gradient is 0.
            for (int k = 0; k < srcShapeOrig.Length; k++)
            {
                if (gathered._shape[k] == srcShapeOrig[k]) continue;
                var padded = gathered.NarrowBackward(k, 0, srcShapeOrig[k]);
                gathered.Dispose();
                gathered = padded;
            }
            return [g, gathered];
        });
    }

    // ------------------------------------------------------------------ one_hot

    /// <summary>
    /// torch.nn.functional.one_hot: int64 tensor of shape labels.shape + [numClasses] with 1 at each
    /// label. <paramref name="numClasses"/> = -1 uses max(label) + 1. Labels are int64 or int32 in [0, numClasses).
    /// </summary>
    public static Tensor OneHot(Tensor labels, long numClasses = -1)
    {
        ArgumentNullException.ThrowIfNull(labels);
        if (Kernels.KernelDispatch.IsAccelerated(labels)) return Kernels.KernelDispatch.OneHot(labels, numClasses);
        const string op = "one_hot";
        labels.RequireCpu(op);
        var idx = IndexValues(op, labels);
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
        var y = Allocate(labels._shape.Append(numClasses).ToArray(), DType.Int64, zero: true, op);
        unsafe
        {
            long* p = y.Ptr<long>();
            for (long i = 0; i < idx.Length; i++) p[i * numClasses + idx[i]] = 1;
        }
        return y;
    }

    // ------------------------------------------------------------------ masks

    /// <summary>
    /// torch.masked_fill (out of place): this tensor with <paramref name="value"/> where the bool
    /// <paramref name="mask"/> is true; mask and this tensor broadcast together. Gradient: g with zeros
    /// where masked (summed back to this shape).
    /// </summary>
    public Tensor MaskedFill(Tensor mask, double value)
    {
        ArgumentNullException.ThrowIfNull(mask);
        if (Kernels.KernelDispatch.IsAccelerated(this)) return Kernels.KernelDispatch.MaskedFill(this, mask, value);
        const string op = "masked_fill";
        RequireCpu(op);
        if (mask.DType != DType.Bool)
            throw new ArgumentException($"{op}: mask must be bool, got {mask.DType.Name()} of shape {ShapeUtil.Format(mask.Shape)} (self {ShapeUtil.Format(Shape)}).");
        var shape = ShapeUtil.Broadcast(op, Shape, mask.Shape);
        var y = Allocate(shape, DType, zero: false, op);
        using (var v = ScalarLike(value, DType))
        {
            switch (DType.ElementSize())
            {
                case 1: Elementwise.Map<byte, bool, byte, byte, Choose<byte>>(this, mask, v, y); break;
                case 4: Elementwise.Map<int, bool, int, int, Choose<int>>(this, mask, v, y); break;
                default: Elementwise.Map<long, bool, long, long, Choose<long>>(this, mask, v, y); break;
            }
        }
        var selfShape = _shape;
        return Graph.Record(y, op, [this], [mask], (g, s) =>
        {
            var zeroed = g.MaskedFill(s[0], 0);
            var summed = zeroed.SumToShape(selfShape);
            if (!ReferenceEquals(summed, zeroed)) zeroed.Dispose();
            return [summed];
        });
    }

    /// <summary>
    /// torch.masked_select: a 1-D tensor of the elements where the bool <paramref name="mask"/> is true,
    /// in row-major order of the broadcast of this tensor and the mask. Gradient: g scattered back to
    /// the selected positions of zeros (summed to this shape).
    /// </summary>
    public Tensor MaskedSelect(Tensor mask)
    {
        ArgumentNullException.ThrowIfNull(mask);
        const string op = "masked_select";
        if (Kernels.KernelDispatch.IsAccelerated(this)) return Kernels.KernelDispatch.MaskedSelect(this, mask);
        RequireCpu(op);
        if (mask.DType != DType.Bool)
            throw new ArgumentException($"{op}: mask must be bool, got {mask.DType.Name()} of shape {ShapeUtil.Format(mask.Shape)} (self {ShapeUtil.Format(Shape)}).");
        var shape = ShapeUtil.Broadcast(op, Shape, mask.Shape);
        Tensor y;
        using (NoGrad())
        using (var xe = Expand(shape))
        using (var xc = xe.Contiguous())
        using (var me = mask.Expand(shape))
        using (var mc = me.Contiguous())
        {
            var m = mc.Span<bool>();
            long count = 0;
            foreach (var b in m) if (b) count++;
            y = Allocate([count], DType, zero: false, op);
            switch (DType.ElementSize())
            {
                case 1: SelectKernel<byte>(xc, m, y); break;
                case 4: SelectKernel<int>(xc, m, y); break;
                default: SelectKernel<long>(xc, m, y); break;
            }
        }
        var selfShape = _shape;
        return Graph.Record(y, op, [this], [mask], (g, s) =>
        {
            var full = MaskedScatter(s[0], shape, g);
            var summed = full.SumToShape(selfShape);
            if (!ReferenceEquals(summed, full)) full.Dispose();
            return [summed];
        });
    }

    /// <summary>
    /// Zeros of <paramref name="shape"/> with the elements of 1-D <paramref name="src"/> written, in order,
    /// where <paramref name="mask"/> (broadcast to shape) is true: the gradient of <see cref="MaskedSelect"/>,
    /// itself differentiable (its gradient is g.MaskedSelect(mask)).
    /// </summary>
    private static Tensor MaskedScatter(Tensor mask, long[] shape, Tensor src)
    {
        if (Kernels.KernelDispatch.IsAccelerated(src)) return Kernels.KernelDispatch.MaskedScatter(mask, shape, src);
        var y = Allocate(shape, src.DType, zero: true, "masked_scatter");
        using (NoGrad())
        using (var me = mask.Expand(shape))
        using (var mc = me.Contiguous())
        using (var sc = src.Contiguous())
        {
            switch (src.DType.ElementSize())
            {
                case 1: ScatterKernel<byte>(sc, mc.Span<bool>(), y); break;
                case 4: ScatterKernel<int>(sc, mc.Span<bool>(), y); break;
                default: ScatterKernel<long>(sc, mc.Span<bool>(), y); break;
            }
        }
        return Graph.Record(y, "masked_scatter", [src], [mask], (g, s) => [g.MaskedSelect(s[0])]);
    }

    // ------------------------------------------------------------------ helpers

    /// <summary>The index values in row-major order as int64; rejects non-integer index dtypes.</summary>
    private static long[] IndexValues(string op, Tensor index)
    {
        index.RequireCpu(op);
        if (index.DType is not (DType.Int64 or DType.Int32))
            throw new ArgumentException($"{op}: index must be int64 or int32, got {index.DType.Name()} of shape {ShapeUtil.Format(index.Shape)}.");
        if (index.DType == DType.Int64) return index.ToArray<long>();
        return index.ToArray<int>().Select(i => (long)i).ToArray();
    }

    private static void CheckRange(string op, long[] idx, int dim, long size, long[] selfShape, long[] indexShape)
    {
        foreach (var v in idx)
            if (v < 0 || v >= size)
                throw new ArgumentOutOfRangeException("index",
                    $"{op}: index {v} is out of range for dim {dim} of size {size} (self shape {ShapeUtil.Format(selfShape)}, index shape {ShapeUtil.Format(indexShape)}).");
    }

    /// <summary>Shape and strides, with a 0-d tensor read as shape [1].</summary>
    private static (long[] Shape, long[] Strides) AtLeast1D(Tensor t)
        => t.Rank == 0 ? ([1], [0]) : (t._shape, t._strides);

    /// <summary>y[outer, j, inner] = src[outer, idx[j], inner] for contiguous src and y (block copies).</summary>
    private static unsafe void IndexSelectKernel<T>(Tensor src, long[] idx, int dim, Tensor y) where T : unmanaged
    {
        long outer = ShapeUtil.NumEl(src._shape.AsSpan(0, dim)), size = src._shape[dim];
        long inner = ShapeUtil.NumEl(src._shape.AsSpan(dim + 1));
        long n = idx.Length;
        if (outer * n * inner == 0) return;
        long bytes = inner * sizeof(T);
        nint ps = (nint)src.Ptr<T>(), py = (nint)y.Ptr<T>();
        Parallelism.For(outer * n, outer * n * inner >= Parallelism.ElementwiseThreshold, row =>
        {
            long o = row / n, j = row % n;
            Buffer.MemoryCopy((T*)ps + (o * size + idx[j]) * inner, (T*)py + row * inner, bytes, bytes);
        });
    }

    /// <summary>y[outer, idx[j], inner] += src[outer, j, inner] (contiguous src and y); parallel over outer only,
    /// so repeated indices within one outer slice are added by one thread, in order.</summary>
    private static unsafe void IndexAddKernel<T>(Tensor src, long[] idx, int dim, Tensor y) where T : unmanaged, INumber<T>
    {
        long outer = ShapeUtil.NumEl(y._shape.AsSpan(0, dim)), size = y._shape[dim];
        long inner = ShapeUtil.NumEl(y._shape.AsSpan(dim + 1));
        long n = idx.Length;
        if (outer * n * inner == 0) return;
        nint ps = (nint)src.Ptr<T>(), py = (nint)y.Ptr<T>();
        Parallelism.For(outer, outer * n * inner >= Parallelism.ElementwiseThreshold, o =>
        {
            for (long j = 0; j < n; j++)
            {
                var from = new ReadOnlySpan<T>((T*)ps + (o * n + j) * inner, (int)inner);
                var to = new Span<T>((T*)py + (o * size + idx[j]) * inner, (int)inner);
                TensorPrimitives.Add(to, from, to);
            }
        });
    }

    /// <summary>
    /// y (contiguous, the index's shape) = src read at (m with coordinate dim replaced by idx[m]). Rows are the
    /// index's last dim; each row computes its base offset once.
    /// </summary>
    private static unsafe void GatherKernel<T>(Tensor src, long[] srcStrides, long[] idx, long[] idxShape, int dim, Tensor y) where T : unmanaged
    {
        int r = idxShape.Length;
        long inner = idxShape[r - 1];
        long total = idx.Length;
        if (total == 0) return;
        long rows = total / inner;
        long innerStride = r - 1 == dim ? 0 : srcStrides[r - 1], dimStride = srcStrides[dim];
        nint ps = (nint)src.Ptr<T>(), py = (nint)y.Ptr<T>();
        Parallelism.For(rows, total >= Parallelism.ElementwiseThreshold, row =>
        {
            long baseOffset = 0, rest = row;
            for (int k = r - 2; k >= 0; k--)
            {
                long i = rest % idxShape[k];
                rest /= idxShape[k];
                if (k != dim) baseOffset += i * srcStrides[k];
            }
            T* s = (T*)ps + baseOffset;
            T* o = (T*)py + row * inner;
            long first = row * inner;
            for (long j = 0; j < inner; j++) o[j] = s[j * innerStride + idx[first + j] * dimStride];
        });
    }

    /// <summary>
    /// y[m with dim replaced by idx[m]] += src[m] for every index position m. Threads never share a target:
    /// rows run in parallel only when dim is the last dim (then each row adds into its own row of y).
    /// </summary>
    private static unsafe void ScatterAddKernel<T>(Tensor src, long[] srcStrides, long[] idx, long[] idxShape, int dim, Tensor y, long[] yStrides)
        where T : unmanaged, INumber<T>
    {
        int r = idxShape.Length;
        long inner = idxShape[r - 1];
        long total = idx.Length;
        if (total == 0) return;
        long rows = total / inner;
        long srcInner = srcStrides[r - 1], yInner = r - 1 == dim ? 0 : yStrides[r - 1], yDim = yStrides[dim];
        nint ps = (nint)src.Ptr<T>(), py = (nint)y.Ptr<T>();
        Parallelism.For(rows, dim == r - 1 && total >= Parallelism.ElementwiseThreshold, row =>
        {
            long srcBase = 0, yBase = 0, rest = row;
            for (int k = r - 2; k >= 0; k--)
            {
                long i = rest % idxShape[k];
                rest /= idxShape[k];
                srcBase += i * srcStrides[k];
                if (k != dim) yBase += i * yStrides[k];
            }
            T* s = (T*)ps + srcBase;
            T* o = (T*)py + yBase;
            long first = row * inner;
            for (long j = 0; j < inner; j++) o[j * yInner + idx[first + j] * yDim] += s[j * srcInner];
        });
    }

    private static unsafe void SelectKernel<T>(Tensor x, ReadOnlySpan<bool> mask, Tensor y) where T : unmanaged
    {
        T* src = x.Ptr<T>(), dst = y.Ptr<T>();
        long k = 0;
        for (int i = 0; i < mask.Length; i++) if (mask[i]) dst[k++] = src[i];
    }

    private static unsafe void ScatterKernel<T>(Tensor src, ReadOnlySpan<bool> mask, Tensor y) where T : unmanaged
    {
        T* s = src.Ptr<T>(), dst = y.Ptr<T>();
        long k = 0;
        long n = src.NumEl;
        for (int i = 0; i < mask.Length; i++)
            if (mask[i])
            {
                if (k >= n) throw new ArgumentException($"masked_scatter: the mask selects more than the {n} source elements.");
                dst[i] = s[k++];
            }
    }

    /// <summary>mask ? value : x, on the raw bits of an element (the value is already in x's dtype).</summary>
    private readonly struct Choose<T> : ITernaryOp<T, bool, T, T>
    {
        public static T Invoke(T x, bool mask, T value) => mask ? value : x;
    }
}
