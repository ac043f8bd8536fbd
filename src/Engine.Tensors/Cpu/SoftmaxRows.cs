using System.Numerics;
using System.Numerics.Tensors;

namespace Engine.Tensors.Cpu;

/// <summary>
/// The CPU-native softmax / log-softmax with temperature over contiguous rows, rows in parallel.
/// <para>Math: z_i = (x_i − m)/T with m = max_j x_j (equal to max(x/T)·T for T &gt; 0, so the largest
/// z is exactly 0 and exp never overflows); s = Σ exp(z_j); softmax = exp(z_i)/s, log_softmax = z_i − log s.
/// x − m is taken before the division by T, so the max element gives exactly 0 for any T.</para>
/// <para>Passes per row (the row stays in cache between them): max; z written to the output;
/// softmax: exp in place, sum, divide; log_softmax: exp of z chunk by chunk into a stack buffer
/// for the sum, then subtract log s. Traffic: one read of x and one write of y per element.</para>
/// <para>Numerics: s is accumulated in the row's dtype (float32 for float32): its terms lie in
/// [0, 1] with one equal to 1, so s ∈ [1, n] and its relative error stays ~n·ε in the worst case and
/// ~√n·ε typically, far below what softmax outputs need. Special rows: an all −∞ row has m = −∞ and
/// x − m = NaN, so the row is NaN (as in PyTorch); a +∞ or NaN makes the row NaN.</para>
/// <para>A dim that is not last (x contiguous, read as [outer, n, inner]) goes to
/// <see cref="RunColumns"/>, the same math on blocks of columns: whole rows of the block are combined
/// elementwise, so nothing is transposed.</para>
/// </summary>
internal static unsafe class SoftmaxRows
{
    private const int Chunk = 1024;

    /// <summary>y = softmax or log_softmax of each length-<paramref name="n"/> row of contiguous x, into contiguous y.</summary>
    public static void Run(Tensor x, Tensor y, long n, double temperature, bool log)
    {
        if (x.DType == DType.Float32) Run<float>(x, y, n, temperature, log);
        else Run<double>(x, y, n, temperature, log);
    }

    private static void Run<T>(Tensor x, Tensor y, long n, double temperature, bool log) where T : unmanaged, IFloatingPointIeee754<T>
    {
        long outer = n == 0 ? 0 : x.NumEl / n;
        if (outer == 0) return;
        nint src = (nint)x.Ptr<T>(), dst = (nint)y.Ptr<T>();
        T invT = T.CreateTruncating(1.0 / temperature);
        bool scale = temperature != 1;
        int len = checked((int)n);
        Parallelism.For(outer, outer * n >= Parallelism.ElementwiseThreshold / 4, i =>
        {
            var xr = new ReadOnlySpan<T>((T*)src + i * n, len);
            var yr = new Span<T>((T*)dst + i * n, len);
            T m = TensorPrimitives.Max(xr);
            TensorPrimitives.Subtract(xr, m, yr);
            if (scale) TensorPrimitives.Multiply(yr, invT, yr);
            if (!log)
            {
                TensorPrimitives.Exp<T>(yr, yr);
                T s = TensorPrimitives.Sum<T>(yr);
                TensorPrimitives.Divide(yr, s, yr);
                return;
            }
            Span<T> e = stackalloc T[Chunk];
            T sum = T.Zero;
            for (int c = 0; c < len; c += Chunk)
            {
                var ec = e[..Math.Min(Chunk, len - c)];
                TensorPrimitives.Exp<T>(yr.Slice(c, ec.Length), ec);
                sum += TensorPrimitives.Sum<T>(ec);
            }
            TensorPrimitives.Subtract(yr, T.Log(sum), yr);
        });
    }

    /// <summary>Columns per work item of <see cref="RunColumns"/> (its max/sum buffers live on the stack).</summary>
    private const int ColumnBlock = 512;

    /// <summary>
    /// y = softmax or log_softmax over the middle dim of contiguous x read as [outer, n, inner], into
    /// contiguous y of the same shape. Per block of columns: the running max row (elementwise max of
    /// the n rows), then z = (x − m)/T written to y while Σ exp(z) accumulates in a row, then y
    /// divided by the sums (or log of the sums subtracted). Same numerics as the row kernel.
    /// </summary>
    public static void RunColumns(Tensor x, Tensor y, long outer, long n, long inner, double temperature, bool log)
    {
        if (x.DType == DType.Float32) RunColumns<float>(x, y, outer, n, inner, temperature, log);
        else RunColumns<double>(x, y, outer, n, inner, temperature, log);
    }

    private static void RunColumns<T>(Tensor x, Tensor y, long outer, long n, long inner, double temperature, bool log)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        if (outer * n * inner == 0) return;
        nint src = (nint)x.Ptr<T>(), dst = (nint)y.Ptr<T>();
        T invT = T.CreateTruncating(1.0 / temperature);
        bool scale = temperature != 1;
        long blocks = (inner + ColumnBlock - 1) / ColumnBlock;
        Parallelism.For(outer * blocks, outer * n * inner >= Parallelism.ElementwiseThreshold / 4, w =>
        {
            long o = w / blocks, c0 = w % blocks * ColumnBlock;
            int len = (int)Math.Min(ColumnBlock, inner - c0);
            T* xb = (T*)src + o * n * inner + c0, yb = (T*)dst + o * n * inner + c0;
            Span<T> m = stackalloc T[len], s = stackalloc T[len], e = stackalloc T[len];
            new ReadOnlySpan<T>(xb, len).CopyTo(m);
            for (long j = 1; j < n; j++) TensorPrimitives.Max(m, new ReadOnlySpan<T>(xb + j * inner, len), m);
            s.Clear();
            for (long j = 0; j < n; j++)
            {
                var yr = new Span<T>(yb + j * inner, len);
                TensorPrimitives.Subtract(new ReadOnlySpan<T>(xb + j * inner, len), m, yr);
                if (scale) TensorPrimitives.Multiply(yr, invT, yr);
                if (log)
                {
                    TensorPrimitives.Exp<T>(yr, e);
                    TensorPrimitives.Add(s, e, s);
                }
                else
                {
                    TensorPrimitives.Exp<T>(yr, yr);
                    TensorPrimitives.Add(s, yr, s);
                }
            }
            if (log) TensorPrimitives.Log<T>(s, s);
            for (long j = 0; j < n; j++)
            {
                var yr = new Span<T>(yb + j * inner, len);
                if (log) TensorPrimitives.Subtract(yr, s, yr);
                else TensorPrimitives.Divide(yr, s, yr);
            }
        });
    }
}
