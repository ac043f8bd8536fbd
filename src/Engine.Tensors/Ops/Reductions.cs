using Engine.Tensors.AutoDiff;
using Engine.Tensors.Kernels;

namespace Engine.Tensors;

/// <summary>
/// Reductions beside <see cref="Sum()"/>: Mean, Var, Std, Max/Min (values, and values with indices),
/// ArgMax/ArgMin and LogSumExp. Each has three overloads: all dims, one dim, and a set of dims
/// (negative dims count from the end; repeats are an error). Kernels are in
/// <c>Cpu/ReductionKernels.cs</c>; gradients are written with differentiable ops, so
/// <c>createGraph</c> works through all of them.
/// </summary>
public sealed partial class Tensor
{
    // ------------------------------------------------------------------ mean

    /// <summary>Mean of all elements (0-d). Float dtypes only (as in PyTorch, integer inputs are an
    /// error: convert with <c>To(DType.Float32)</c>). The mean of no elements is NaN.</summary>
    public Tensor Mean() => Mean("mean", ShapeUtil.DimMask("mean", [], Rank, all: true), keepDim: false);

    /// <summary>Mean over one dim. Gradient: g / n broadcast over the reduced dim.</summary>
    public Tensor Mean(int dim, bool keepDim = false) => Mean("mean", ShapeUtil.DimMask("mean", [dim], Rank, all: false), keepDim);

    /// <summary>Mean over <paramref name="dims"/>. Gradient: g / n broadcast over the reduced dims (n = their element count).</summary>
    public Tensor Mean(int[] dims, bool keepDim = false) => Mean("mean", ShapeUtil.DimMask("mean", dims, Rank, all: false), keepDim);

    private Tensor Mean(string op, bool[] mask, bool keepDim)
    {
        RequireFloat(op);
        long n = ReducedCount(mask);
        bool device = KernelDispatch.IsAccelerated(this);
        var y = device ? KernelDispatch.Mean(op, this, mask, keepDim, n) : ReductionRunner.SumOf(this, mask, keepDim, op);
        // n = 0 gives 0 · ∞ = NaN, PyTorch's mean of no elements.
        if (!device) using (NoGrad()) Cpu.ReductionKernels.ScaleInPlace(y, 1.0 / n);
        var inputShape = _shape;
        return Graph.Record(y, op, this, g =>
        {
            using var e = g.ExpandReduced(mask, keepDim);
            using var full = e.Expand(inputShape);
            return full.Div(n);
        });
    }

    // ------------------------------------------------------------------ var / std

    /// <summary>Unbiased variance of all elements (correction 1, as <c>torch.var</c>).</summary>
    public Tensor Var() => Var((int[]?)null);

    /// <summary>Variance over one dim; see <see cref="Var(int[], bool, double)"/>.</summary>
    public Tensor Var(int dim, bool keepDim = false, double correction = 1) => Var([dim], keepDim, correction);

    /// <summary>
    /// Variance over <paramref name="dims"/> (null: all dims): Σ(x − mean)² / max(0, n − correction).
    /// correction 1 is Bessel's (unbiased, PyTorch's default), 0 the population variance; a divisor of
    /// 0 gives NaN or +∞ as in PyTorch. Float dtypes only.
    /// Gradient: g · 2(x − mean) / (n − correction).
    /// </summary>
    /// <remarks>Numerics: two passes per row (mean, then squared deviations from it, with the
    /// "corrected two-pass" term −(Σd)²/n that cancels the rounding of the mean); float32 rows are
    /// summed in float32 inside chunks of 1024 and in float64 across chunks, so the result does not
    /// suffer the cancellation of E[x²] − E[x]².</remarks>
    public Tensor Var(int[]? dims, bool keepDim = false, double correction = 1) => VarStd("var", dims, keepDim, correction, std: false);

    /// <summary>Unbiased standard deviation of all elements (correction 1).</summary>
    public Tensor Std() => Std((int[]?)null);

    /// <summary>Standard deviation over one dim; see <see cref="Std(int[], bool, double)"/>.</summary>
    public Tensor Std(int dim, bool keepDim = false, double correction = 1) => Std([dim], keepDim, correction);

    /// <summary>√Var over <paramref name="dims"/> (null: all dims), same numerics as <see cref="Var(int[], bool, double)"/>.
    /// Gradient: g · (x − mean) / ((n − correction) · std) (NaN where std is 0, as in PyTorch).</summary>
    public Tensor Std(int[]? dims, bool keepDim = false, double correction = 1) => VarStd("std", dims, keepDim, correction, std: true);

    private Tensor VarStd(string op, int[]? dims, bool keepDim, double correction, bool std)
    {
        var mask = ShapeUtil.DimMask(op, dims ?? [], Rank, all: dims is null);
        RequireFloat(op);
        long n = ReducedCount(mask);
        double divisor = Math.Max(0, n - correction);
        var y = KernelDispatch.IsAccelerated(this) ? KernelDispatch.VarStd(op, this, mask, keepDim, divisor, std)
            : ReductionRunner.Run(this, mask, keepDim, op, Cpu.ReductionKernels.RowVar(DType, divisor, std));
        return Graph.Record(y, op, [this], std ? [this, y] : [this], (g, s) =>
        {
            using var mean = s[0].Mean(op, mask, keepDim: true);
            using var centered = s[0].Sub(mean);
            using var ge = g.ExpandReduced(mask, keepDim);
            if (!std)
            {
                using var scaled = ge.Mul(2 / divisor);
                return [scaled.Mul(centered)];
            }
            using var sd = s[1].ExpandReduced(mask, keepDim);
            using var gOverSd = ge.Div(sd);
            using var scaledSd = gOverSd.Div(divisor);
            return [scaledSd.Mul(centered)];
        });
    }

    // ------------------------------------------------------------------ max / min

    /// <summary>Largest element (0-d). NaN if any element is NaN. Error for an empty tensor.
    /// Gradient: split evenly between the elements equal to the maximum (PyTorch's rule for max() and amax).</summary>
    public Tensor Max() => MaxMin("max", ShapeUtil.DimMask("max", [], Rank, all: true), keepDim: false, max: true);

    /// <summary>Largest value along one dim (PyTorch's amax); use <see cref="MaxWithIndices"/> for the indices too.
    /// Gradient: split evenly between ties.</summary>
    public Tensor Max(int dim, bool keepDim = false) => MaxMin("max", ShapeUtil.DimMask("max", [dim], Rank, all: false), keepDim, max: true);

    /// <summary>Largest value over <paramref name="dims"/> (PyTorch's amax). NaN propagates. Reducing an
    /// empty dim into a non-empty result is an error. Gradient: split evenly between ties.</summary>
    public Tensor Max(int[] dims, bool keepDim = false) => MaxMin("max", ShapeUtil.DimMask("max", dims, Rank, all: false), keepDim, max: true);

    /// <summary>Smallest element (0-d); see <see cref="Max()"/>.</summary>
    public Tensor Min() => MaxMin("min", ShapeUtil.DimMask("min", [], Rank, all: true), keepDim: false, max: false);

    /// <summary>Smallest value along one dim (amin); gradient split evenly between ties.</summary>
    public Tensor Min(int dim, bool keepDim = false) => MaxMin("min", ShapeUtil.DimMask("min", [dim], Rank, all: false), keepDim, max: false);

    /// <summary>Smallest value over <paramref name="dims"/> (amin); gradient split evenly between ties.</summary>
    public Tensor Min(int[] dims, bool keepDim = false) => MaxMin("min", ShapeUtil.DimMask("min", dims, Rank, all: false), keepDim, max: false);

    private Tensor MaxMin(string op, bool[] mask, bool keepDim, bool max)
    {
        RequireNumeric(op);
        RequireNonEmptyReduction(op, mask);
        bool device = KernelDispatch.IsAccelerated(this);
        var y = device ? KernelDispatch.Reduce(op, this, mask, keepDim, max: max, min: !max)
            : ReductionRunner.Run(this, mask, keepDim, op, Cpu.ReductionKernels.RowMaxMin(DType, max),
                columns: Cpu.ReductionKernels.ColumnMaxMin(DType, max));
        return Graph.Record(y, op, [this], [this, y], (g, s) =>
        {
            using var ties = device ? KernelDispatch.TieWeights(s[0], s[1], mask, keepDim) : Cpu.ReductionKernels.TieWeights(s[0], s[1], mask);
            using var ge = g.ExpandReduced(mask, keepDim);
            return [ge.Mul(ties)];
        });
    }

    /// <summary>
    /// torch.max(dim): the largest values along <paramref name="dim"/> and their int64 indices (the
    /// first occurrence on ties; a NaN counts as the largest, so its first index is returned).
    /// Gradient: to the returned index only.
    /// </summary>
    public (Tensor Values, Tensor Indices) MaxWithIndices(int dim, bool keepDim = false) => WithIndices("max", dim, keepDim, max: true);

    /// <summary>torch.min(dim): the smallest values along <paramref name="dim"/> and their first indices; see <see cref="MaxWithIndices"/>.</summary>
    public (Tensor Values, Tensor Indices) MinWithIndices(int dim, bool keepDim = false) => WithIndices("min", dim, keepDim, max: false);

    private (Tensor, Tensor) WithIndices(string op, int dim, bool keepDim, bool max)
    {
        var mask = ShapeUtil.DimMask(op, [dim], Rank, all: false);
        RequireNumeric(op);
        RequireNonEmptyReduction(op, mask);
        if (KernelDispatch.IsAccelerated(this)) return WithIndicesOnDevice(op, mask, keepDim, max);
        var values = Allocate(ReductionRunner.OutputShape(Shape, mask, keepDim), DType, zero: false, op);
        var indices = ReductionRunner.Run(this, mask, keepDim, op, Cpu.ReductionKernels.RowArg(DType, max, values), DType.Int64);
        var shape = _shape;
        Graph.Record(values, op, [this], [indices], (g, s) =>
        {
            using var onehot = Cpu.ReductionKernels.OneHot(s[0], shape, mask, g.DType);
            using var ge = g.ExpandReduced(mask, keepDim);
            return [ge.Mul(onehot)];
        });
        return (values, indices);
    }

    /// <summary>
    /// MaxWithIndices / MinWithIndices on a device: the values by the Reduce kernels (max/min), the indices by
    /// ArgMaxRows / ArgMinRows (the same first-occurrence and NaN rules, so values[i] = x at indices[i]).
    /// Gradient: g scatter-added into zeros at the indices (a device ScatterAdd, itself differentiable).
    /// </summary>
    private (Tensor, Tensor) WithIndicesOnDevice(string op, bool[] mask, bool keepDim, bool max)
    {
        var values = KernelDispatch.Reduce(op, this, mask, keepDim, max: max, min: !max);
        var indices = max ? KernelDispatch.ArgMax(op, this, mask, keepDim) : KernelDispatch.ArgMin(op, this, mask, keepDim);
        int d = Array.IndexOf(mask, true);
        var shape = _shape;
        var kept = ReductionRunner.OutputShape(Shape, mask, keepDim: true);
        Graph.Record(values, op, [this], [indices], (g, s) =>
        {
            using var idx = s[0].Reshape(kept);
            using var gk = g.Reshape(kept);
            using var zeros = Zeros(shape, g.DType, g.Device);
            return [zeros.ScatterAdd(d, idx, gk)];
        });
        return (values, indices);
    }

    /// <summary>Flat (row-major) int64 index of the largest element, the first one on ties; NaN counts as largest.</summary>
    public Tensor ArgMax() => Arg("argmax", ShapeUtil.DimMask("argmax", [], Rank, all: true), keepDim: false, max: true);

    /// <summary>int64 indices of the largest values along <paramref name="dim"/> (first occurrence on ties).</summary>
    public Tensor ArgMax(int dim, bool keepDim = false) => Arg("argmax", ShapeUtil.DimMask("argmax", [dim], Rank, all: false), keepDim, max: true);

    /// <summary>Flat int64 index of the smallest element (first on ties; NaN counts as smallest).</summary>
    public Tensor ArgMin() => Arg("argmin", ShapeUtil.DimMask("argmin", [], Rank, all: true), keepDim: false, max: false);

    /// <summary>int64 indices of the smallest values along <paramref name="dim"/> (first occurrence on ties).</summary>
    public Tensor ArgMin(int dim, bool keepDim = false) => Arg("argmin", ShapeUtil.DimMask("argmin", [dim], Rank, all: false), keepDim, max: false);

    private Tensor Arg(string op, bool[] mask, bool keepDim, bool max)
    {
        RequireNumeric(op);
        RequireNonEmptyReduction(op, mask);
        if (KernelDispatch.IsAccelerated(this)) return max ? KernelDispatch.ArgMax(op, this, mask, keepDim) : KernelDispatch.ArgMin(op, this, mask, keepDim);
        return ReductionRunner.Run(this, mask, keepDim, op, Cpu.ReductionKernels.RowArg(DType, max, values: null), DType.Int64);
    }

    // ------------------------------------------------------------------ logsumexp

    /// <summary>log Σ exp(x) over all elements (0-d); see <see cref="LogSumExp(int[], bool)"/>.</summary>
    public Tensor LogSumExp() => LogSumExp(ShapeUtil.DimMask("logsumexp", [], Rank, all: true), keepDim: false);

    /// <summary>log Σ exp(x) along one dim; see <see cref="LogSumExp(int[], bool)"/>.</summary>
    public Tensor LogSumExp(int dim, bool keepDim = false) => LogSumExp(ShapeUtil.DimMask("logsumexp", [dim], Rank, all: false), keepDim);

    /// <summary>
    /// log Σ exp(x) over <paramref name="dims"/>, computed as m + log Σ exp(x − m) with m the row max, so
    /// it never overflows. A row whose max is −∞ (all −∞, or empty) gives −∞, a row containing +∞
    /// gives +∞, a NaN gives NaN. Integer inputs are computed in float32.
    /// Gradient: g · softmax(x) over the reduced dims.
    /// </summary>
    /// <remarks>Numerics: Σ exp(x − m) has terms in [0, 1] and at least one equal to 1; float32 rows
    /// are summed in float32 inside chunks of 1024 and in float64 across chunks.</remarks>
    public Tensor LogSumExp(int[] dims, bool keepDim = false) => LogSumExp(ShapeUtil.DimMask("logsumexp", dims, Rank, all: false), keepDim);

    private Tensor LogSumExp(bool[] mask, bool keepDim)
    {
        RequireNumeric("logsumexp");
        using var src = DType.IsFloatingPoint() ? Alias() : To(DType.Float32);
        var y = KernelDispatch.IsAccelerated(src) ? KernelDispatch.LogSumExp("logsumexp", src, mask, keepDim)
            : ReductionRunner.Run(src, mask, keepDim, "logsumexp", Cpu.ReductionKernels.RowLogSumExp(src.DType));
        return Graph.Record(y, "logsumexp", [this], [this], (g, s) =>
        {
            using var p = s[0].SoftmaxOver(mask);
            using var ge = g.ExpandReduced(mask, keepDim);
            return [ge.Mul(p)];
        });
    }

    // ------------------------------------------------------------------ helpers

    /// <summary>Number of elements each output element of a reduction over <paramref name="mask"/> combines.</summary>
    private long ReducedCount(bool[] mask)
    {
        long n = 1;
        for (int d = 0; d < Rank; d++) if (mask[d]) n *= _shape[d];
        return n;
    }

    private void RequireFloat(string op)
    {
        if (!DType.IsFloatingPoint())
            throw new ArgumentException($"{op}: needs a float32 or float64 tensor, got {DType.Name()} of shape {ShapeUtil.Format(Shape)} (convert with To(DType.Float32)).");
    }

    internal void RequireNumeric(string op)
    {
        if (DType == DType.Bool)
            throw new ArgumentException($"{op}: not defined for bool tensors (shape {ShapeUtil.Format(Shape)}); convert with To(DType.Int32).");
    }

    private void RequireNonEmptyReduction(string op, bool[] mask)
    {
        var outShape = ReductionRunner.OutputShape(Shape, mask, keepDim: false);
        if (ReducedCount(mask) == 0 && ShapeUtil.NumEl(outShape) > 0)
            throw new ArgumentException(
                $"{op}: cannot reduce over an empty dim (input shape {ShapeUtil.Format(Shape)}, dims [{string.Join(", ", Enumerable.Range(0, Rank).Where(d => mask[d]))}]); the {op} of no elements is undefined.");
    }

    /// <summary>Softmax over the dims in <paramref name="mask"/> jointly (they are moved last and
    /// flattened into one dim), written with differentiable views around <see cref="Softmax"/>.</summary>
    internal Tensor SoftmaxOver(bool[] mask)
    {
        var (perm, inverse, _, rowLength) = ReductionRunner.Layout(Shape, mask);
        using var permuted = Permute(perm);
        var kept = new long[Rank - mask.Count(m => m) + 1];
        int k = 0;
        foreach (var d in perm) if (!mask[d]) kept[k++] = _shape[d];
        kept[^1] = rowLength;
        using var rows = permuted.Reshape(kept);
        using var p = rows.Softmax(-1);
        using var back = p.Reshape(permuted.ShapeArray());
        return back.Permute(inverse);
    }
}
