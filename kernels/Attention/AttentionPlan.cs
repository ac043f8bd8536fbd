using Engine.Runtime.Kernels;

namespace Engine.Tensors.Kernels;

/// <summary>
/// Host side of AttentionKernels: folds each operand's broadcast batch dims to (outer, heads) strides,
/// checks that every index fits an int, and gives the launch shapes.
/// </summary>
internal static class AttentionPlan
{
    /// <summary>The group of every attention kernel but Forward: 32 lanes × 4 warps.</summary>
    public static Dim3 Group => new(AttentionKernels.Lanes, AttentionKernels.Warps);

    /// <summary>Largest grid y (CUDA's limit; the batch count runs along y).</summary>
    public const int MaxBatch = 65535;

    /// <summary>The group of Forward: 32 lanes × 8 warps.</summary>
    public static Dim3 ForwardGroup => new(AttentionKernels.Lanes, AttentionKernels.ForwardWarps);

    /// <summary>Grid of Forward: 32 query rows × one batch index per group.</summary>
    public static Dim3 ForwardGrid(AttentionLayout p, int batch)
        => new((p.Nq + AttentionKernels.ForwardRows - 1) / AttentionKernels.ForwardRows, batch);

    /// <summary>Grid of BackwardQuery and Probabilities: 16 query rows × one batch index per group.</summary>
    public static Dim3 QueryGrid(AttentionLayout p, int batch)
        => new((p.Nq + AttentionKernels.BlockRows - 1) / AttentionKernels.BlockRows, batch);

    /// <summary>Grid of BackwardKeyValue: 16 keys × one batch index per group.</summary>
    public static Dim3 KeyGrid(AttentionLayout p, int batch)
        => new((p.Nk + AttentionKernels.BlockRows - 1) / AttentionKernels.BlockRows, batch);

    /// <summary>Grid of RowDot: one warp per row.</summary>
    public static Dim3 RowGrid(long rows) => new((int)((rows + AttentionKernels.Warps - 1) / AttentionKernels.Warps));

    /// <summary>
    /// Whether the kernels take this problem: 1 ≤ D, Dv ≤ 128, a batch count ≤ 65535 and every contiguous
    /// output's size within int (the strided operands are checked by <see cref="TryOperand"/>).
    /// </summary>
    public static bool Fits(long batch, long nq, long nk, long d, long dv)
        => d >= 1 && dv >= 1 && d <= AttentionKernels.MaxHead && dv <= AttentionKernels.MaxHead && batch <= MaxBatch
           && batch * nq * Math.Max(Math.Max(d, dv), Math.Max(nk, 1)) < int.MaxValue && batch * nk * Math.Max(d, dv) < int.MaxValue;

    /// <summary>
    /// One operand read as <paramref name="full"/> = [batch..., rows, cols]: its element offset and the strides
    /// of (outer batch index, inner batch index = last batch dim, row, col). Returns false when the leading batch
    /// dims do not fold into one stride (the caller then passes a contiguous copy) or an index would pass int.
    /// </summary>
    public static bool TryOperand(Tensor t, long[] full, out int offset, out int outer, out int inner, out int row, out int col)
    {
        offset = outer = inner = row = col = 0;
        var strides = ShapeUtil.BroadcastStrides(t, full);
        int n = full.Length - 2;
        long outerStride = 0, span = 1;
        bool first = true;
        for (int d = n - 2; d >= 0; d--)
        {
            if (full[d] == 1) continue;
            if (first) { outerStride = strides[d]; span = full[d]; first = false; continue; }
            if (strides[d] != outerStride * span) return false;
            span *= full[d];
        }
        long reach = t.Offset;
        for (int d = 0; d < full.Length; d++) reach += Math.Max(full[d] - 1, 0) * Math.Abs(strides[d]);
        if (reach >= int.MaxValue || Math.Abs(outerStride) >= int.MaxValue) return false;
        offset = (int)t.Offset;
        outer = (int)outerStride;
        inner = n > 0 ? (int)strides[n - 1] : 0;
        row = (int)strides[n];
        col = (int)strides[n + 1];
        return true;
    }
}
