using System.Numerics;
using System.Numerics.Tensors;

namespace Engine.Tensors.Cpu;

/// <summary>
/// CPU row kernels for the reductions in <c>Ops/Reductions.cs</c>. Each reduces contiguous rows of
/// length n (the layout <see cref="ReductionRunner.Run"/> hands over) and writes one output element per
/// row, rows in parallel. Also the constant masks their gradients use.
/// </summary>
internal static unsafe class ReductionKernels
{
    /// <summary>Elements per chunk for the chunked row passes: float32 sums stay in float32 inside a
    /// chunk (vectorized) and are accumulated in float64 across chunks.</summary>
    private const int Chunk = 1024;

    private static bool Parallel(long outer, long n) => outer * n >= Parallelism.ElementwiseThreshold;

    /// <summary>y *= scale, in place, for a contiguous float tensor.</summary>
    public static void ScaleInPlace(Tensor y, double scale)
    {
        if (y.NumEl == 0) return;
        if (y.DType == DType.Float32) TensorPrimitives.Multiply(y.Span<float>(), (float)scale, y.Span<float>());
        else TensorPrimitives.Multiply(y.Span<double>(), scale, y.Span<double>());
    }

    // ------------------------------------------------------------------ var / std

    /// <summary>Variance (or its square root) of each row, divided by <paramref name="divisor"/>.</summary>
    public static ReductionRunner.RowReducer RowVar(DType dtype, double divisor, bool sqrt) => dtype == DType.Float32
        ? (rows, output, n) => RowVar<float>(rows, output, n, divisor, sqrt)
        : (rows, output, n) => RowVar<double>(rows, output, n, divisor, sqrt);

    private static void RowVar<T>(Tensor rows, Tensor output, long n, double divisor, bool sqrt)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        nint src = (nint)rows.Ptr<T>(), dst = (nint)output.Ptr<T>();
        long outer = output.NumEl;
        Parallelism.For(outer, Parallel(outer, n), i =>
        {
            T* row = (T*)src + i * n;
            // Pass 1: the mean (float64 across chunks).
            double sum = 0;
            for (long c = 0; c < n; c += Chunk)
                sum += double.CreateTruncating(TensorPrimitives.Sum(new ReadOnlySpan<T>(row + c, (int)Math.Min(Chunk, n - c))));
            T mean = T.CreateTruncating(sum / n);
            // Pass 2: Σd² and Σd for d = x − mean; Σd²−(Σd)²/n removes the error of the rounded mean.
            Span<T> d = stackalloc T[Chunk];
            double m2 = 0, s1 = 0;
            for (long c = 0; c < n; c += Chunk)
            {
                int len = (int)Math.Min(Chunk, n - c);
                var dc = d[..len];
                TensorPrimitives.Subtract(new ReadOnlySpan<T>(row + c, len), mean, dc);
                s1 += double.CreateTruncating(TensorPrimitives.Sum<T>(dc));
                m2 += double.CreateTruncating(TensorPrimitives.SumOfSquares<T>(dc));
            }
            double v = n == 0 ? double.NaN : Math.Max(0, m2 - s1 * s1 / n) / divisor;
            ((T*)dst)[i] = T.CreateTruncating(sqrt ? Math.Sqrt(v) : v);
        });
    }

    // ------------------------------------------------------------------ max / min

    /// <summary>Max or min of each row (NaN propagates, as <c>TensorPrimitives.Max/Min</c> define it).</summary>
    public static ReductionRunner.RowReducer RowMaxMin(DType dtype, bool max) => dtype switch
    {
        DType.Float32 => (r, o, n) => RowMaxMin<float>(r, o, n, max),
        DType.Float64 => (r, o, n) => RowMaxMin<double>(r, o, n, max),
        DType.Int32 => (r, o, n) => RowMaxMin<int>(r, o, n, max),
        _ => (r, o, n) => RowMaxMin<long>(r, o, n, max),
    };

    private static void RowMaxMin<T>(Tensor rows, Tensor output, long n, bool max) where T : unmanaged, INumber<T>
    {
        nint src = (nint)rows.Ptr<T>(), dst = (nint)output.Ptr<T>();
        long outer = output.NumEl;
        Parallelism.For(outer, Parallel(outer, n), i =>
        {
            var row = new ReadOnlySpan<T>((T*)src + i * n, checked((int)n));
            ((T*)dst)[i] = max ? TensorPrimitives.Max(row) : TensorPrimitives.Min(row);
        });
    }

    /// <summary>The leading-dim fast path of max/min (rows combined with elementwise max/min).</summary>
    public static ReductionRunner.ColumnReducer ColumnMaxMin(DType dtype, bool max) => (dtype, max) switch
    {
        (DType.Float32, true) => ReductionRunner.ColumnReduce<float, ReductionRunner.MaxCombine>,
        (DType.Float32, false) => ReductionRunner.ColumnReduce<float, ReductionRunner.MinCombine>,
        (DType.Float64, true) => ReductionRunner.ColumnReduce<double, ReductionRunner.MaxCombine>,
        (DType.Float64, false) => ReductionRunner.ColumnReduce<double, ReductionRunner.MinCombine>,
        (DType.Int32, true) => ReductionRunner.ColumnReduce<int, ReductionRunner.MaxCombine>,
        (DType.Int32, false) => ReductionRunner.ColumnReduce<int, ReductionRunner.MinCombine>,
        (_, true) => ReductionRunner.ColumnReduce<long, ReductionRunner.MaxCombine>,
        (_, false) => ReductionRunner.ColumnReduce<long, ReductionRunner.MinCombine>,
    };

    /// <summary>
    /// Index (int64) of the max or min of each row: the first occurrence on ties (−0 and +0 are equal,
    /// unlike in <c>TensorPrimitives.IndexOfMax</c>, which prefers +0), the first NaN if there is one.
    /// When <paramref name="values"/> is given, the value at that index is written there too.
    /// </summary>
    public static ReductionRunner.RowReducer RowArg(DType dtype, bool max, Tensor? values) => dtype switch
    {
        DType.Float32 => (r, o, n) => RowArg<float>(r, o, n, max, values),
        DType.Float64 => (r, o, n) => RowArg<double>(r, o, n, max, values),
        DType.Int32 => (r, o, n) => RowArg<int>(r, o, n, max, values),
        _ => (r, o, n) => RowArg<long>(r, o, n, max, values),
    };

    private static void RowArg<T>(Tensor rows, Tensor output, long n, bool max, Tensor? values) where T : unmanaged, INumber<T>
    {
        nint src = (nint)rows.Ptr<T>(), dst = (nint)output.Ptr<long>();
        nint val = values is null ? 0 : (nint)values.Ptr<T>();
        long outer = output.NumEl;
        Parallelism.For(outer, Parallel(outer, n), i =>
        {
            var row = new ReadOnlySpan<T>((T*)src + i * n, checked((int)n));
            int k = max ? TensorPrimitives.IndexOfMax(row) : TensorPrimitives.IndexOfMin(row);
            T v = row[k];
            // IndexOfMax/Min return the first of equal values (checked by the tests at vector lengths),
            // but prefer +0 over −0 (max) or −0 over +0 (min); PyTorch treats them as equal ties.
            if (T.IsZero(v))
                for (int j = 0; j < k; j++)
                    if (row[j] == v) { k = j; break; }
            ((long*)dst)[i] = k;
            if (val != 0) ((T*)val)[i] = v;
        });
    }

    /// <summary>
    /// Gradient weights of max/min over <paramref name="mask"/>: for each reduced row, 1/c at the c
    /// elements equal to the result (NaN results match NaN elements), 0 elsewhere. Returned as a view
    /// with <paramref name="x"/>'s shape. A constant: max/min are piecewise linear, so their
    /// second derivative is zero.
    /// </summary>
    public static Tensor TieWeights(Tensor x, Tensor y, bool[] mask)
    {
        using var _ = Tensor.NoGrad();
        var (perm, inverse, outer, n) = ReductionRunner.Layout(x.Shape, mask);
        using var permuted = x.Permute(perm);
        using var rows = permuted.Contiguous();
        using var yc = y.Contiguous();
        using var w = Tensor.Allocate(permuted.ShapeArray(), x.DType, zero: false, "max/min backward");
        if (x.DType == DType.Float32) TieWeights<float>(rows, yc, w, outer, n);
        else TieWeights<double>(rows, yc, w, outer, n);
        return w.Permute(inverse);
    }

    private static void TieWeights<T>(Tensor rows, Tensor y, Tensor w, long outer, long n) where T : unmanaged, IFloatingPointIeee754<T>
    {
        nint src = (nint)rows.Ptr<T>(), res = (nint)y.Ptr<T>(), dst = (nint)w.Ptr<T>();
        Parallelism.For(outer, Parallel(outer, n), i =>
        {
            T* row = (T*)src + i * n, wr = (T*)dst + i * n;
            T m = ((T*)res)[i];
            bool nan = T.IsNaN(m);
            long count = 0;
            for (long j = 0; j < n; j++) if (row[j] == m || (nan && T.IsNaN(row[j]))) count++;
            T share = T.One / T.CreateTruncating(Math.Max(count, 1));
            for (long j = 0; j < n; j++) wr[j] = row[j] == m || (nan && T.IsNaN(row[j])) ? share : T.Zero;
        });
    }

    /// <summary>
    /// Gradient mask of max/min with indices: 1 at the returned index of each reduced row, 0 elsewhere,
    /// as a view of shape <paramref name="shape"/> (a constant, see <see cref="TieWeights"/>).
    /// </summary>
    public static Tensor OneHot(Tensor indices, long[] shape, bool[] mask, DType dtype)
    {
        using var _ = Tensor.NoGrad();
        var (perm, inverse, outer, n) = ReductionRunner.Layout(shape, mask);
        var permShape = perm.Select(d => shape[d]).ToArray();
        using var w = Tensor.Allocate(permShape, dtype, zero: true, "max/min backward");
        using var idx = indices.Contiguous();
        long* pi = idx.Ptr<long>();
        for (long i = 0; i < outer; i++)
        {
            if (dtype == DType.Float32) w.Ptr<float>()[i * n + pi[i]] = 1;
            else w.Ptr<double>()[i * n + pi[i]] = 1;
        }
        return w.Permute(inverse);
    }

    // ------------------------------------------------------------------ logsumexp

    /// <summary>log Σ exp(row), max-shifted (see <c>Tensor.LogSumExp</c> for the special values).</summary>
    public static ReductionRunner.RowReducer RowLogSumExp(DType dtype) => dtype == DType.Float32
        ? RowLogSumExp<float>
        : RowLogSumExp<double>;

    private static void RowLogSumExp<T>(Tensor rows, Tensor output, long n) where T : unmanaged, IFloatingPointIeee754<T>
    {
        nint src = (nint)rows.Ptr<T>(), dst = (nint)output.Ptr<T>();
        long outer = output.NumEl;
        Parallelism.For(outer, Parallel(outer, n), i =>
        {
            if (n == 0) { ((T*)dst)[i] = T.NegativeInfinity; return; }
            T* row = (T*)src + i * n;
            T m = TensorPrimitives.Max(new ReadOnlySpan<T>(row, checked((int)n)));
            if (!T.IsFinite(m)) { ((T*)dst)[i] = m; return; } // −∞ (all −∞), +∞, or NaN
            Span<T> e = stackalloc T[Chunk];
            double s = 0;
            for (long c = 0; c < n; c += Chunk)
            {
                int len = (int)Math.Min(Chunk, n - c);
                var ec = e[..len];
                TensorPrimitives.Subtract(new ReadOnlySpan<T>(row + c, len), m, ec);
                TensorPrimitives.Exp<T>(ec, ec);
                s += double.CreateTruncating(TensorPrimitives.Sum<T>(ec));
            }
            ((T*)dst)[i] = T.CreateTruncating(double.CreateTruncating(m) + Math.Log(s));
        });
    }
}
