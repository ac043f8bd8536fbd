using Engine.Runtime.Kernels;
using Engine.Tensors.AutoDiff;

namespace Engine.Tensors.Kernels;

/// <summary>
/// Device versions of argmin, logsumexp, the logical ops, index_add and masked_select (and its gradient,
/// masked_scatter): kernels/Reduce/RowReduceKernels.cs, kernels/Elementwise/MathKernels.cs,
/// kernels/Indexing/SelectKernels.cs. (pow, maximum/minimum, clamp and min go through
/// <see cref="Binary{TOp}"/> and <see cref="Reduce"/>.) Arguments are validated as the CPU ops validate them.
/// </summary>
internal static partial class KernelDispatch
{
    // ------------------------------------------------------------------ argmin / logsumexp

    /// <summary>Tensor.ArgMin on a device: int64 index of the first minimum (a NaN wins) over the dims in <paramref name="mask"/>.</summary>
    public static Tensor ArgMin(string op, Tensor x, bool[] mask, bool keepDim)
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
        RowReduceKernels.Launch.ArgMinRows(Accelerator(x), Groups(outer, RowReduceKernels.GroupSize), RowReduceKernels.GroupSize,
            Elements(rows), y.Storage.Buffer.View<long>(), (int)outer, (int)rowLength);
        return y;
    }

    /// <summary>
    /// log Σ exp(x) over the dims in <paramref name="mask"/> on a device (no graph recording: Tensor.LogSumExp
    /// records g · softmax): the reduced dims are moved last and made contiguous, then one group per row.
    /// </summary>
    public static Tensor LogSumExp(string op, Tensor x, bool[] mask, bool keepDim)
    {
        RequireFloat32(op, x);
        var outShape = ReductionRunner.OutputShape(x.Shape, mask, keepDim);
        var (perm, _, outer, rowLength) = ReductionRunner.Layout(x.Shape, mask);
        var y = Output(outShape, x, op);
        if (y.NumEl == 0) return y;
        Count32(op, x.NumEl, x.Shape);
        using var _ = Tensor.NoGrad();
        using var permuted = x.Permute(perm);
        using var rows = permuted.Contiguous();
        var launch = ReducePlan.For(outer, rowLength, 1, op);
        RowReduceKernels.Launch.LogSumExpRows(Accelerator(x), launch.Grid, launch.Group, Elements(rows), Whole(y), (int)rowLength);
        return y;
    }

    // ------------------------------------------------------------------ logical ops

    /// <summary>a ∘ b → bool (broadcast) for <paramref name="code"/> one of MathKernels.And/Or/Xor/Not (b ignored for Not); non-bool operands count as true where non-zero.</summary>
    public static Tensor Logical(string op, Tensor a, Tensor b, int code)
    {
        CheckSameDevice(op, a, b);
        using var _ = Tensor.NoGrad();
        var ba = a.DType == DType.Bool ? a.Alias() : a.To(DType.Bool);
        var bb = b.DType == DType.Bool ? b.Alias() : b.To(DType.Bool);
        try
        {
            var y = Tensor.Allocate(ShapeUtil.Broadcast(op, a.Shape, b.Shape), DType.Bool, zero: false, op, a.Device);
            if (y.NumEl > 0)
                MathKernels.Launch.Logical(Accelerator(a), ElementwisePlan.Groups(y.NumEl), ElementwisePlan.GroupSize,
                    ba.Storage.Buffer.View<byte>(), bb.Storage.Buffer.View<byte>(), y.Storage.Buffer.View<byte>(), ElementwisePlan.Binary(ba, bb), code);
            return y;
        }
        finally
        {
            ba.Dispose();
            bb.Dispose();
        }
    }

    // ------------------------------------------------------------------ index_add

    /// <summary>
    /// Out-of-place torch.index_add on a device, as scatter_add with the index broadcast along the other
    /// dims (its recorded backward is index_add's: g for self, g gathered at the index — g.IndexSelect —
    /// for the source). Float atomics: repeated indices add in no fixed order.
    /// </summary>
    public static Tensor IndexAdd(Tensor self, int dim, Tensor index, Tensor source)
    {
        const string op = "index_add";
        RequireFloat32(op, self);
        RequireIndex(op, self, index);
        CheckSameDevice(op, self, source);
        if (self.Rank == 0) throw new ArgumentException($"{op}: cannot index a 0-d tensor; reshape it to [1] first.");
        int d = ShapeUtil.NormalizeDim(op, dim, self.Rank);
        if (index.Rank > 1)
            throw new ArgumentException($"{op}: index must be 1-D (or 0-d), got shape {ShapeUtil.Format(index.Shape)}.");
        CheckRank8(op, self.Rank, self.Shape);
        CheckIndexRange(op, index, d, self.Shape[d], self.Shape);
        var expected = self.ShapeArray();
        expected[d] = index.NumEl;
        if (source.DType != self.DType || !ShapeUtil.SameShape(source.Shape, expected))
            throw new ArgumentException(
                $"{op}: source must be {self.DType.Name()} of shape {ShapeUtil.Format(expected)} (self {ShapeUtil.Format(self.Shape)} with dim {d} of the index length {index.NumEl}), got {source.DType.Name()} {ShapeUtil.Format(source.Shape)}.");
        Tensor full;
        using (Tensor.NoGrad())
        {
            var viewShape = Enumerable.Repeat(1L, self.Rank).ToArray();
            viewShape[d] = index.NumEl;
            using var column = index.Reshape(viewShape);
            using var expanded = column.Expand(expected);
            full = expanded.Contiguous();
        }
        using (full) return ScatterAdd(self, d, full, source, indicesValid: true);
    }

    // ------------------------------------------------------------------ masked_select / masked_scatter

    /// <summary>
    /// The per-block offsets of the selected positions of a contiguous bool <paramref name="mask"/> of
    /// <paramref name="n"/> elements (CountBlocks + ScanBlocks) and their total, read back to the host.
    /// </summary>
    private static (Tensor Offsets, int Total, int Blocks) SelectOffsets(string op, Tensor mask, int n)
    {
        int blocks = Groups(n, SelectKernels.Block);
        var acc = Accelerator(mask);
        using var counts = Tensor.Allocate([blocks], DType.Int32, zero: false, op, mask.Device);
        var offsets = Tensor.Allocate([blocks + 1], DType.Int32, zero: false, op, mask.Device);
        var maskView = mask.Storage.Buffer.View<byte>().SubView(mask.Offset, n);
        SelectKernels.Launch.CountBlocks(acc, new Dim3(blocks), SelectKernels.GroupSize, maskView, counts.Storage.Buffer.View<int>(), n);
        SelectKernels.Launch.ScanBlocks(acc, new Dim3(1), new Dim3(1), counts.Storage.Buffer.View<int>(), offsets.Storage.Buffer.View<int>(), blocks);
        using var last = offsets.Narrow(0, blocks, 1);
        return (offsets, last.ToArray<int>()[0], blocks);
    }

    /// <summary>
    /// torch.masked_select on a device (float32 values): the elements of x where the bool mask (both
    /// broadcast) is true, in row-major order; the output size is counted on the device and read back.
    /// Backward: g scattered back into zeros at the selected positions (<see cref="MaskedScatter"/>), summed to x's shape.
    /// </summary>
    public static Tensor MaskedSelect(Tensor x, Tensor mask)
    {
        const string op = "masked_select";
        CheckSameDevice(op, x, mask);
        RequireFloat32(op, x);
        if (mask.DType != DType.Bool)
            throw new ArgumentException($"{op}: mask must be bool, got {mask.DType.Name()} of shape {ShapeUtil.Format(mask.Shape)} (self {ShapeUtil.Format(x.Shape)}).");
        var shape = ShapeUtil.Broadcast(op, x.Shape, mask.Shape);
        int n = Count32(op, ShapeUtil.NumEl(shape), shape);
        Tensor y;
        using (Tensor.NoGrad())
        {
            if (n == 0) y = Output([0], x, op);
            else
            {
                using var xe = x.Expand(shape);
                using var xc = xe.Contiguous();
                using var me = mask.Expand(shape);
                using var mc = me.Contiguous();
                var (offsets, total, blocks) = SelectOffsets(op, mc, n);
                using (offsets)
                {
                    y = Output([total], x, op);
                    if (total > 0)
                        SelectKernels.Launch.MaskedSelectWrite(Accelerator(x), new Dim3(blocks), SelectKernels.GroupSize,
                            Elements(xc), mc.Storage.Buffer.View<byte>().SubView(mc.Offset, n), offsets.Storage.Buffer.View<int>(), Whole(y), n);
                }
            }
        }
        var selfShape = x.ShapeArray();
        return Graph.Record(y, op, [x], [mask], (g, s) =>
        {
            var full = MaskedScatter(s[0], shape, g);
            var summed = full.SumToShape(selfShape);
            if (!ReferenceEquals(summed, full)) full.Dispose();
            return [summed];
        });
    }

    /// <summary>
    /// Zeros of <paramref name="shape"/> with the elements of 1-D <paramref name="src"/> written, in order, where
    /// <paramref name="mask"/> (broadcast) is true: the gradient of masked_select, itself differentiable (its
    /// gradient is g.MaskedSelect(mask)).
    /// </summary>
    public static Tensor MaskedScatter(Tensor mask, long[] shape, Tensor src)
    {
        const string op = "masked_scatter";
        CheckSameDevice(op, mask, src);
        RequireFloat32(op, src);
        int n = Count32(op, ShapeUtil.NumEl(shape), shape);
        var y = Tensor.Allocate(shape, DType.Float32, zero: true, op, src.Device);
        if (n > 0)
        {
            using var _ = Tensor.NoGrad();
            using var me = mask.Expand(shape);
            using var mc = me.Contiguous();
            using var sc = src.Contiguous();
            var (offsets, total, blocks) = SelectOffsets(op, mc, n);
            using (offsets)
            {
                if (total != sc.NumEl)
                    throw new ArgumentException($"{op}: the mask selects {total} elements of shape {ShapeUtil.Format(shape)} but src has {sc.NumEl}.");
                if (total > 0)
                    SelectKernels.Launch.MaskedScatterWrite(Accelerator(src), new Dim3(blocks), SelectKernels.GroupSize,
                        Elements(sc), mc.Storage.Buffer.View<byte>().SubView(mc.Offset, n), offsets.Storage.Buffer.View<int>(), Whole(y), n);
            }
        }
        return Graph.Record(y, op, [src], [mask], (g, s) => [g.MaskedSelect(s[0])]);
    }
}
