using Engine.Runtime.Kernels;

namespace Engine.Tensors.Kernels;

/// <summary>
/// The device versions of mean and var/std (kernels/Reduce and kernels/Norm). BatchNorm2d and
/// LayerNorm are composed of these with elementwise ops, so both train on a device with their
/// gradient flowing through the batch statistics exactly as on the CPU.
/// </summary>
internal static partial class KernelDispatch
{
    /// <summary>
    /// Mean over the dims in <paramref name="mask"/> (no graph recording): the device sum, then one
    /// multiply by (float)(1/n) — the CPU's ScaleInPlace does the same multiply. n = 0 gives NaN.
    /// </summary>
    public static Tensor Mean(string op, Tensor x, bool[] mask, bool keepDim, long n)
    {
        if (x.DType != DType.Float64) RequireFloat32(op, x);
        using var _ = Tensor.NoGrad();
        using var sum = Reduce(op, x, mask, keepDim, max: false);
        using var scale = Tensor.ScalarLike(1.0 / n, x.DType, x.Device);
        return Binary<Tensor.MulOp>(op, sum, scale);
    }

    /// <summary>
    /// Variance (or standard deviation) over the dims in <paramref name="mask"/> divided by
    /// <paramref name="divisor"/> (no graph recording): the reduced dims are moved last (a copy unless
    /// they already are the contiguous tail) and NormKernels.VarRows runs Welford per row.
    /// </summary>
    public static Tensor VarStd(string op, Tensor x, bool[] mask, bool keepDim, double divisor, bool std)
    {
        RequireFloat32(op, x);
        var outShape = ReductionRunner.OutputShape(x.Shape, mask, keepDim);
        var (perm, _, outer, rowLength) = ReductionRunner.Layout(x.Shape, mask);
        var y = Output(outShape, x, op);
        if (y.NumEl == 0) return y;
        if (rowLength > int.MaxValue || outer > int.MaxValue)
            throw new ArgumentException($"{op}: {outer} rows of {rowLength} (shape {ShapeUtil.Format(x.Shape)}) exceed the 32-bit sizes of the device kernels.");
        using var _ = Tensor.NoGrad();
        using var permuted = x.Permute(perm);
        using var rows = permuted.Contiguous();
        int group = (int)Math.Clamp(System.Numerics.BitOperations.RoundUpToPowerOf2((ulong)Math.Max(rowLength, 1)), 32UL, (ulong)NormKernels.MaxGroup);
        NormKernels.Launch.VarRows(Accelerator(x), checked((int)outer), group, Elements(rows), Whole(y), (int)rowLength, (float)divisor, std);
        return y;
    }
}
