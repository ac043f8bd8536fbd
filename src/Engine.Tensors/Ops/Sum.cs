using System.Numerics;
using System.Numerics.Tensors;
using Engine.Tensors.AutoDiff;
using Engine.Tensors.Cpu;
using Engine.Tensors.Kernels;

namespace Engine.Tensors;

/// <summary>Sum over dims.</summary>
public sealed partial class Tensor
{
    /// <summary>Sum of all elements (a 0-d tensor). Integer and bool inputs sum to int64, as in PyTorch.</summary>
    public Tensor Sum() => Sum([], keepDim: false, all: true);

    /// <summary>Sum over <paramref name="dims"/>; with <paramref name="keepDim"/> the reduced dims stay as size 1.
    /// Gradient: g broadcast back over the reduced dims.</summary>
    public Tensor Sum(int[] dims, bool keepDim = false) => Sum(dims, keepDim, all: false);

    /// <summary>Sum over one dim.</summary>
    public Tensor Sum(int dim, bool keepDim = false) => Sum([dim], keepDim, all: false);

    private Tensor Sum(int[] dims, bool keepDim, bool all)
    {
        var mask = ShapeUtil.DimMask("sum", dims, Rank, all);
        var outDType = DType.IsFloatingPoint() ? DType : DType.Int64;
        using var src = DType == outDType ? Alias() : To(outDType);
        var y = KernelDispatch.IsAccelerated(src) ? KernelDispatch.Reduce("sum", src, mask, keepDim, max: false)
            : ReductionRunner.SumOf(src, mask, keepDim, "sum");
        var inputShape = _shape;
        return Graph.Record(y, "sum", this, g =>
        {
            using var e = g.ExpandReduced(mask, keepDim);
            return e.Expand(inputShape);
        });
    }

    /// <summary>Puts back the reduced dims (as size 1) of a result computed without keepDim; always a new handle (the caller may dispose it).</summary>
    internal Tensor ExpandReduced(bool[] mask, bool keepDim)
    {
        var t = Alias();
        if (keepDim) return t;
        for (int d = 0; d < mask.Length; d++)
        {
            if (!mask[d]) continue;
            var u = t.Unsqueeze(d);
            t.Dispose();
            t = u;
        }
        return t;
    }
}

/// <summary>
/// Reductions over any set of dims. Two layouts are handled without a copy when the input is
/// contiguous:
/// <list type="bullet">
/// <item>reduced dims last (e.g. a sum over the last dim of [N, V]): each output element reduces one
/// contiguous row (<see cref="RowReducer"/>);</item>
/// <item>reduced dims form one block followed by kept dims (e.g. a sum over the batch dim 0 of [N, V]):
/// the input is read as [outer, rows, cols] and rows are combined elementwise into the output, one
/// contiguous row at a time (<see cref="ColumnReducer"/>, for ops that supply one).</item>
/// </list>
/// Any other case moves the reduced dims last (a view) and makes that contiguous (one copy).
/// </summary>
internal static unsafe class ReductionRunner
{
    /// <summary>Reduces each contiguous row of <c>rows</c> into one element of <c>output</c>.</summary>
    public delegate void RowReducer(Tensor rows, Tensor output, long rowLength);

    /// <summary>
    /// Reduces a contiguous <c>x</c> read as [outer, rows, cols] over its middle dim into the
    /// contiguous <c>output</c> read as [outer, cols]. Called only with outer, rows, cols ≥ 1.
    /// </summary>
    public delegate void ColumnReducer(Tensor x, Tensor output, long outer, long rows, long cols);

    /// <summary>Output shape of a reduction.</summary>
    public static long[] OutputShape(ReadOnlySpan<long> shape, bool[] mask, bool keepDim)
    {
        var result = new List<long>();
        for (int d = 0; d < shape.Length; d++)
        {
            if (!mask[d]) result.Add(shape[d]);
            else if (keepDim) result.Add(1);
        }
        return result.ToArray();
    }

    /// <summary>
    /// The permutation that puts the kept dims first and the reduced dims last, its inverse, the
    /// number of output elements and the length of each reduced row.
    /// </summary>
    public static (int[] Perm, int[] Inverse, long Outer, long RowLength) Layout(ReadOnlySpan<long> shape, bool[] mask)
    {
        var perm = new List<int>();
        long outer = 1, rowLength = 1;
        for (int d = 0; d < shape.Length; d++) if (!mask[d]) { perm.Add(d); outer *= shape[d]; }
        for (int d = 0; d < shape.Length; d++) if (mask[d]) { perm.Add(d); rowLength *= shape[d]; }
        var p = perm.ToArray();
        var inverse = new int[p.Length];
        for (int i = 0; i < p.Length; i++) inverse[p[i]] = i;
        return (p, inverse, outer, rowLength);
    }

    /// <summary>
    /// Reduces <paramref name="x"/> over the dims in <paramref name="mask"/>: through
    /// <paramref name="columns"/> when x is contiguous with the reduced dims followed by kept dims,
    /// otherwise by handing [outer, rowLength] contiguous rows (a view when the reduced dims already
    /// are the contiguous tail, else a permuted copy) to <paramref name="reducer"/>, which writes
    /// the output elements in order.
    /// </summary>
    public static Tensor Run(Tensor x, bool[] mask, bool keepDim, string op, RowReducer reducer, DType? outDType = null,
        ColumnReducer? columns = null)
    {
        if (KernelDispatch.IsAccelerated(x)) throw KernelDispatch.NoKernel(op, x.Device);
        var outShape = OutputShape(x.Shape, mask, keepDim);
        var (perm, _, _, rowLength) = Layout(x.Shape, mask);
        var y = Tensor.Allocate(outShape, outDType ?? x.DType, zero: false, op);
        if (columns is not null && ColumnLayout(x, mask) is var (outer, rows, cols) && rows > 0)
        {
            columns(x, y, outer, rows, cols);
            return y;
        }
        using (Tensor.NoGrad())
        using (var permuted = x.Permute(perm))
        using (var contiguousRows = permuted.Contiguous())
            reducer(contiguousRows, y, rowLength);
        return y;
    }

    /// <summary>
    /// For a contiguous, non-empty x whose reduced dims (ignoring size-1 dims) form one block
    /// followed by at least one kept dim: the sizes [outer, rows, cols] of that layout.
    /// </summary>
    private static (long Outer, long Rows, long Cols)? ColumnLayout(Tensor x, bool[] mask)
    {
        if (!x.IsContiguous || x.NumEl == 0) return null;
        long outer = 1, rows = 1, cols = 1;
        int phase = 0; // 0: kept dims before the block, 1: in the reduced block, 2: kept dims after it
        for (int d = 0; d < x.Rank; d++)
        {
            long n = x.Shape[d];
            if (n == 1) continue;
            if (mask[d])
            {
                if (phase == 2) return null;
                phase = 1;
                rows *= n;
            }
            else if (phase == 0) outer *= n;
            else { phase = 2; cols *= n; }
        }
        // Below ~16 columns one TensorPrimitives call per row costs more than the permuted copy.
        return phase == 2 && cols >= 16 ? (outer, rows, cols) : null;
    }

    /// <summary>Sum over the masked dims of a float32, float64 or int64 tensor (the dtype is kept).</summary>
    public static Tensor SumOf(Tensor src, bool[] mask, bool keepDim, string op) => src.DType switch
    {
        DType.Float32 => Run(src, mask, keepDim, op, RowSum<float>, columns: ColumnReduce<float, AddCombine>),
        DType.Float64 => Run(src, mask, keepDim, op, RowSum<double>, columns: ColumnReduce<double, AddCombine>),
        _ => Run(src, mask, keepDim, op, RowSum<long>, columns: ColumnReduce<long, AddCombine>),
    };

    /// <summary>Sums rows of a contiguous tensor.</summary>
    /// <remarks>Numerics: each row is summed in its own dtype by <c>TensorPrimitives.Sum</c> (several
    /// vector accumulators). Long rows are split into chunks summed in parallel, and the chunk sums
    /// are added afterwards, which also bounds float32 rounding growth to one chunk.</remarks>
    public static void RowSum<T>(Tensor rows, Tensor output, long rowLength)
        where T : unmanaged, INumber<T>, IAdditionOperators<T, T, T>, IAdditiveIdentity<T, T>
    {
        long outer = output.NumEl;
        nint src = (nint)rows.Ptr<T>(), dst = (nint)output.Ptr<T>();
        const long chunk = Parallelism.Grain * 8;
        if (rowLength >= 2 * chunk && outer < Parallelism.ReductionSplits)
        {
            // Few long rows: partial sums per chunk of each row (in parallel), then the sum of the partials.
            long chunks = (rowLength + chunk - 1) / chunk;
            var partial = new T[outer * chunks];
            Parallelism.For(outer * chunks, true, w =>
            {
                long row = w / chunks, start = w % chunks * chunk, n = Math.Min(chunk, rowLength - start);
                partial[w] = TensorPrimitives.Sum(new ReadOnlySpan<T>((T*)src + row * rowLength + start, (int)n));
            });
            for (long row = 0; row < outer; row++)
                ((T*)dst)[row] = TensorPrimitives.Sum<T>(partial.AsSpan((int)(row * chunks), (int)chunks));
            return;
        }
        Parallelism.For(outer, outer * rowLength >= Parallelism.ElementwiseThreshold, i =>
        {
            ((T*)dst)[i] = rowLength == 0 ? T.Zero : TensorPrimitives.Sum(new ReadOnlySpan<T>((T*)src + i * rowLength, checked((int)rowLength)));
        });
    }

    /// <summary>Combines two rows elementwise (y = a ⊕ b) for <see cref="ColumnReduce{T, TCombine}"/>.</summary>
    internal interface ICombine
    {
        static abstract void Invoke<T>(ReadOnlySpan<T> a, ReadOnlySpan<T> b, Span<T> y) where T : INumber<T>;
    }

    /// <summary>Elementwise +.</summary>
    internal readonly struct AddCombine : ICombine
    {
        public static void Invoke<T>(ReadOnlySpan<T> a, ReadOnlySpan<T> b, Span<T> y) where T : INumber<T> => TensorPrimitives.Add(a, b, y);
    }

    /// <summary>Elementwise max (NaN propagates, as <c>TensorPrimitives.Max</c> does).</summary>
    internal readonly struct MaxCombine : ICombine
    {
        public static void Invoke<T>(ReadOnlySpan<T> a, ReadOnlySpan<T> b, Span<T> y) where T : INumber<T> => TensorPrimitives.Max(a, b, y);
    }

    /// <summary>Elementwise min (NaN propagates).</summary>
    internal readonly struct MinCombine : ICombine
    {
        public static void Invoke<T>(ReadOnlySpan<T> a, ReadOnlySpan<T> b, Span<T> y) where T : INumber<T> => TensorPrimitives.Min(a, b, y);
    }

    /// <summary>
    /// Reduces the middle dim of contiguous [outer, rows, cols] by combining whole rows with
    /// <typeparamref name="TCombine"/>: no transpose, every element read once, sequentially.
    /// </summary>
    /// <remarks>
    /// Work items are (outer index, block of columns, block of rows); row blocks are used only when
    /// there are too few of the others to keep the threads busy, and their partial results are
    /// combined at the end. Numerics (sums): inside a work item rows are added in groups of
    /// <see cref="Group"/> into a scratch row which is then added to the accumulator, so float32
    /// rounding grows with Group + rows/Group instead of with rows.
    /// </remarks>
    public static void ColumnReduce<T, TCombine>(Tensor x, Tensor output, long outer, long rows, long cols)
        where T : unmanaged, INumber<T> where TCombine : ICombine
    {
        const long colBlock = 4096;
        long colBlocks = (cols + colBlock - 1) / colBlock;
        long items = outer * colBlocks;
        bool parallel = outer * rows * cols >= Parallelism.ElementwiseThreshold;
        long rowBlocks = 1;
        if (parallel && items < Parallelism.ReductionSplits)
            rowBlocks = Math.Clamp(Parallelism.ReductionSplits / items, 1, Math.Max(1, rows / (2 * Group)));
        long rowsPerBlock = (rows + rowBlocks - 1) / rowBlocks;
        rowBlocks = (rows + rowsPerBlock - 1) / rowsPerBlock;
        nint src = (nint)x.Ptr<T>(), dst = (nint)output.Ptr<T>();
        T[]? partials = rowBlocks > 1 ? new T[rowBlocks * outer * cols] : null;
        Parallelism.For(items * rowBlocks, parallel, w =>
        {
            long rb = w / items, rest = w % items, o = rest / colBlocks, c0 = rest % colBlocks * colBlock;
            int n = (int)Math.Min(colBlock, cols - c0);
            long r0 = rb * rowsPerBlock, r1 = Math.Min(rows, r0 + rowsPerBlock);
            T* first = (T*)src + (o * rows + r0) * cols + c0;
            Span<T> acc = partials is null
                ? new Span<T>((T*)dst + o * cols + c0, n)
                : partials.AsSpan((int)((rb * outer + o) * cols + c0), n);
            new ReadOnlySpan<T>(first, n).CopyTo(acc);
            long count = r1 - r0;
            if (count <= Group)
            {
                for (long r = 1; r < count; r++) TCombine.Invoke<T>(acc, new ReadOnlySpan<T>(first + r * cols, n), acc);
                return;
            }
            var scratch = new T[n];
            for (long g0 = 1; g0 < count; g0 += Group)
            {
                long g1 = Math.Min(count, g0 + Group);
                new ReadOnlySpan<T>(first + g0 * cols, n).CopyTo(scratch);
                for (long r = g0 + 1; r < g1; r++) TCombine.Invoke<T>(scratch, new ReadOnlySpan<T>(first + r * cols, n), scratch);
                TCombine.Invoke<T>(acc, scratch, acc);
            }
        });
        if (partials is null) return;
        var result = new Span<T>((T*)dst, checked((int)(outer * cols)));
        partials.AsSpan(0, result.Length).CopyTo(result);
        for (long rb = 1; rb < rowBlocks; rb++)
            TCombine.Invoke<T>(result, partials.AsSpan((int)(rb * outer * cols), result.Length), result);
    }

    /// <summary>Rows added into a scratch row before it joins the accumulator (see <see cref="ColumnReduce{T, TCombine}"/>).</summary>
    private const long Group = 64;
}
