using System.Numerics;
using System.Numerics.Tensors;
using Engine.Tensors.AutoDiff;
using Engine.Tensors.Cpu;

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
        var y = Reduction.Run(src, mask, keepDim, "sum", outDType switch
        {
            DType.Float32 => Reduction.RowSum<float>,
            DType.Float64 => Reduction.RowSum<double>,
            _ => Reduction.RowSum<long>,
        });
        var inputShape = _shape;
        return Graph.Record(y, "sum", this, g => g.ExpandReduced(mask, keepDim).Expand(inputShape));
    }

    /// <summary>Puts back the reduced dims (as size 1) of a result computed without keepDim.</summary>
    internal Tensor ExpandReduced(bool[] mask, bool keepDim)
    {
        if (keepDim) return this;
        var t = this;
        for (int d = 0; d < mask.Length; d++)
            if (mask[d]) t = t.Unsqueeze(d);
        return ReferenceEquals(t, this) ? Alias() : t;
    }
}

/// <summary>
/// Reductions over any set of dims: the reduced dims are moved last (a view), made contiguous (one
/// copy, only when they are not already), and each output element reduces one contiguous row.
/// </summary>
internal static unsafe class Reduction
{
    /// <summary>Reduces each contiguous row of <c>rows</c> into one element of <c>output</c>.</summary>
    public delegate void RowReducer(Tensor rows, Tensor output, long rowLength);

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
    /// Permutes <paramref name="x"/> so the reduced dims come last, makes it contiguous, and hands
    /// [outer, rowLength] rows to <paramref name="reducer"/>, which writes the output elements in order.
    /// </summary>
    public static Tensor Run(Tensor x, bool[] mask, bool keepDim, string op, RowReducer reducer, DType? outDType = null)
    {
        var outShape = OutputShape(x.Shape, mask, keepDim);
        var perm = new List<int>();
        long rowLength = 1;
        for (int d = 0; d < x.Rank; d++) if (!mask[d]) perm.Add(d);
        for (int d = 0; d < x.Rank; d++) if (mask[d]) { perm.Add(d); rowLength *= x.Shape[d]; }
        var y = Tensor.Allocate(outShape, outDType ?? x.DType, zero: false, op);
        using (Tensor.NoGrad())
        using (var permuted = x.Permute(perm.ToArray()))
        using (var rows = permuted.Contiguous())
            reducer(rows, y, rowLength);
        return y;
    }

    /// <summary>Sums rows of a contiguous tensor.</summary>
    public static void RowSum<T>(Tensor rows, Tensor output, long rowLength)
        where T : unmanaged, INumber<T>, IAdditionOperators<T, T, T>, IAdditiveIdentity<T, T>
    {
        long outer = output.NumEl;
        nint src = (nint)rows.Ptr<T>(), dst = (nint)output.Ptr<T>();
        if (outer == 1 && rowLength >= Parallelism.ElementwiseThreshold)
        {
            // One long row: partial sums per chunk, then the sum of the partials.
            long chunks = (rowLength + Parallelism.Grain * 8 - 1) / (Parallelism.Grain * 8);
            var partial = new T[chunks];
            Parallelism.For(chunks, true, c =>
            {
                long start = c * Parallelism.Grain * 8, n = Math.Min(Parallelism.Grain * 8, rowLength - start);
                partial[c] = TensorPrimitives.Sum(new ReadOnlySpan<T>((T*)src + start, (int)n));
            });
            *(T*)dst = TensorPrimitives.Sum<T>(partial);
            return;
        }
        Parallelism.For(outer, outer * rowLength >= Parallelism.ElementwiseThreshold, i =>
        {
            ((T*)dst)[i] = rowLength == 0 ? T.Zero : TensorPrimitives.Sum(new ReadOnlySpan<T>((T*)src + i * rowLength, checked((int)rowLength)));
        });
    }
}
