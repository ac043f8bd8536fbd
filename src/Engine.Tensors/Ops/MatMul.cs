using Engine.Tensors.AutoDiff;
using Engine.Tensors.Cpu;
using Engine.Tensors.Kernels;

namespace Engine.Tensors;

/// <summary>Matrix products with torch.matmul's rules, and their gradients.</summary>
public sealed partial class Tensor
{
    /// <summary>
    /// Matrix product with exactly torch.matmul's semantics:
    /// 1-D·1-D is the dot product (a 0-d tensor); 2-D·2-D the matrix product; a 1-D first operand is
    /// treated as a row [1, K] and a 1-D second operand as a column [K, 1], and that added dim is removed
    /// from the result; with more dims, the leading (batch) dims broadcast (NumPy rules) and the last two
    /// are multiplied: [..., M, K]·[..., K, N] → [broadcast(...), M, N].
    /// <para>
    /// float32 and float64 only, both operands of the same dtype: integer and mixed dtypes throw an
    /// <see cref="ArgumentException"/> (PyTorch multiplies integer matrices on the CPU; nothing here needs
    /// that yet; convert with <see cref="To(DType)"/>). float32 accumulates in float32 (see <c>Cpu/Gemm.cs</c>).
    /// </para>
    /// Gradient: dA = g·Bᵀ, dB = Aᵀ·g, each summed over the batch dims it was broadcast along.
    /// </summary>
    public Tensor MatMul(Tensor other)
    {
        ArgumentNullException.ThrowIfNull(other);
        if (Rank == 0 || other.Rank == 0)
            throw new ArgumentException($"matmul: both arguments need at least 1 dim, got shapes {ShapeUtil.Format(Shape)} and {ShapeUtil.Format(other.Shape)}.");
        if (!DType.IsFloatingPoint() || DType != other.DType)
            throw new ArgumentException(
                $"matmul: expects two float32 or two float64 tensors, got {DType.Name()} {ShapeUtil.Format(Shape)} and {other.DType.Name()} {ShapeUtil.Format(other.Shape)}; convert with To(DType).");
        long kA = _shape[^1], kB = other.Rank == 1 ? other._shape[0] : other._shape[^2];
        if (kA != kB)
            throw new ArgumentException(
                $"matmul: shapes {ShapeUtil.Format(Shape)} and {ShapeUtil.Format(other.Shape)} cannot be multiplied (the first's last dim {kA} must equal the second's {(other.Rank == 1 ? "only" : "second-to-last")} dim {kB}).");

        // 1-D operands become matrices through views (recorded, so their gradients get the 1-D shape back).
        using var a = Rank == 1 ? Unsqueeze(0) : Alias();
        using var b = other.Rank == 1 ? other.Unsqueeze(-1) : other.Alias();
        var y = MatMulBatched(a, b);
        if (Rank > 1 && other.Rank > 1) return y;
        var t = y;
        if (other.Rank == 1) { var s = t.Squeeze(-1); t.Dispose(); t = s; }
        if (Rank == 1) { var s = t.Squeeze(-2 + (other.Rank == 1 ? 1 : 0)); t.Dispose(); t = s; }
        return t;
    }

    /// <summary>torch.matmul(a, b); see <see cref="MatMul(Tensor)"/>.</summary>
    public static Tensor MatMul(Tensor a, Tensor b)
    {
        ArgumentNullException.ThrowIfNull(a);
        return a.MatMul(b);
    }

    /// <summary>[..., M, K]·[..., K, N] with broadcast batch dims; both operands have rank ≥ 2 and one dtype.</summary>
    private static Tensor MatMulBatched(Tensor a, Tensor b)
    {
        KernelDispatch.CheckSameDevice("matmul", a, b);
        long m = a._shape[^2], k = a._shape[^1], n = b._shape[^1];
        var batchA = a._shape[..^2];
        var batchB = b._shape[..^2];
        long[] batch;
        try { batch = ShapeUtil.Broadcast("matmul", batchA, batchB); }
        catch (ArgumentException)
        {
            throw new ArgumentException(
                $"matmul: the batch dims of shapes {ShapeUtil.Format(a.Shape)} and {ShapeUtil.Format(b.Shape)} cannot be broadcast together ({ShapeUtil.Format(batchA)} vs {ShapeUtil.Format(batchB)}).");
        }
        var outShape = batch.Concat(new[] { m, n }).ToArray();
        Tensor y;
        if (KernelDispatch.IsAccelerated(a)) y = KernelDispatch.MatMul(a, b, batch);
        else
        {
            y = Allocate(outShape, a.DType, zero: false, "matmul");
            if (a.DType == DType.Float32) BatchedGemm<float>(a, b, y, batch, m, n, k);
            else BatchedGemm<double>(a, b, y, batch, m, n, k);
        }

        bool ga = a.RequiresGrad, gb = b.RequiresGrad;
        var (sa, sb) = (a._shape, b._shape);
        return Graph.Record(y, "matmul", [a, b], [a, b], (g, s) =>
        {
            Tensor? da = null, db = null;
            if (ga)
            {
                using var bt = s[1].Transpose(-1, -2);
                var full = g.MatMul(bt);
                da = full.SumToShape(sa);
                if (!ReferenceEquals(da, full)) full.Dispose();
            }
            if (gb)
            {
                using var at = s[0].Transpose(-1, -2);
                var full = at.MatMul(g);
                db = full.SumToShape(sb);
                if (!ReferenceEquals(db, full)) full.Dispose();
            }
            return [da, db];
        });
    }

    /// <summary>
    /// Runs one GEMM per batch index, reading each operand's matrix through its own (broadcast) strides,
    /// so expanded batch dims are never materialized. Small matrices run in parallel over the batch;
    /// large ones one after another, each parallel over its row blocks.
    /// </summary>
    private static unsafe void BatchedGemm<T>(Tensor a, Tensor b, Tensor y, long[] batch, long m, long n, long k)
        where T : unmanaged, System.Numerics.INumber<T>
    {
        long count = ShapeUtil.NumEl(batch);
        if (count == 0 || m == 0 || n == 0) return;
        var stA = BatchStrides(a, batch);
        var stB = BatchStrides(b, batch);
        long rsA = a._strides[^2], csA = a._strides[^1], rsB = b._strides[^2], csB = b._strides[^1];
        nint pa = (nint)a.Ptr<T>(), pb = (nint)b.Ptr<T>(), py = (nint)y.Ptr<T>();
        bool smallMatrices = m * n * k < Gemm.ParallelThreshold;

        void One(long index, bool parallel)
        {
            long offA = 0, offB = 0, rest = index;
            for (int d = batch.Length - 1; d >= 0; d--)
            {
                long i = rest % batch[d];
                rest /= batch[d];
                offA += i * stA[d];
                offB += i * stB[d];
            }
            Gemm.Multiply(m, n, k, (T*)pa + offA, rsA, csA, (T*)pb + offB, rsB, csB, (T*)py + index * m * n, n, parallel);
        }

        if (smallMatrices && count > 1)
            Parallelism.For(count, count * m * n * k >= Gemm.ParallelThreshold, i => One(i, parallel: false));
        else
            for (long i = 0; i < count; i++) One(i, parallel: true);
    }

    /// <summary>Strides of <paramref name="t"/>'s batch dims (all but the last two) read as <paramref name="batch"/> (0 where broadcast).</summary>
    private static long[] BatchStrides(Tensor t, long[] batch)
    {
        var result = new long[batch.Length];
        int lead = batch.Length - (t.Rank - 2);
        for (int d = 0; d < t.Rank - 2; d++)
            result[lead + d] = t._shape[d] == 1 ? 0 : t._strides[d];
        return result;
    }
}
