using Engine.Tensors;

namespace Engine.Tests;

/// <summary>Shared helpers: seeded random data, float64 references, non-contiguous views, assertions.</summary>
public static class TestUtil
{
    /// <summary>Random doubles in [lo, hi).</summary>
    public static double[] RandomValues(Random rng, long n, double lo = -1, double hi = 1)
        => Enumerable.Range(0, (int)n).Select(_ => lo + (hi - lo) * rng.NextDouble()).ToArray();

    /// <summary>A tensor of the given dtype holding <paramref name="values"/> (row-major).</summary>
    public static Tensor FromDoubles(double[] values, long[] shape, DType dtype = DType.Float32)
    {
        using var d = Tensor.FromArray(values, shape);
        return dtype == DType.Float64 ? d.Clone() : d.To(dtype);
    }

    /// <summary>Random tensor with values in [lo, hi).</summary>
    public static Tensor Random(Random rng, long[] shape, DType dtype = DType.Float32, double lo = -1, double hi = 1)
        => FromDoubles(RandomValues(rng, ShapeNumEl(shape), lo, hi), shape, dtype);

    /// <summary>A seed from a name that is the same in every run (string.GetHashCode is randomized per process).</summary>
    public static int StableSeed(string name)
    {
        uint h = 2166136261; // FNV-1a
        foreach (char c in name) h = (h ^ c) * 16777619;
        return (int)(h & 0x7fffffff);
    }

    public static long ShapeNumEl(long[] shape) => shape.Aggregate(1L, (a, b) => a * b);

    /// <summary>
    /// <paramref name="x"/> moved to <paramref name="device"/>, as a non-contiguous view there (every other element of a
    /// buffer twice as long in the last dim); a scalar is moved as it is.
    /// </summary>
    public static Tensor StridedOn(Tensor x, Engine.Runtime.Device device)
    {
        var shape = x.ShapeArray();
        if (shape.Length == 0) return x.To(device);
        shape[^1] *= 2;
        using var big = Tensor.Zeros(shape, x.DType, device);
        var view = big.Slice(-1, 0, shape[^1], 2);
        using (Tensor.NoGrad())
        using (var moved = x.To(device))
            view.CopyFrom_(moved);
        Assert.Equal(device, view.Device);
        return view;
    }

    /// <summary>
    /// The same values as <paramref name="x"/> in a non-contiguous view (every other element of a
    /// buffer twice as long in the last dim).
    /// </summary>
    public static Tensor NonContiguous(Tensor x)
    {
        if (x.Rank == 0) return x.Clone();
        var shape = x.ShapeArray();
        shape[^1] *= 2;
        var big = Tensor.Zeros(shape, x.DType);
        var view = big.Slice(-1, 0, shape[^1], 2);
        using (Tensor.NoGrad()) view.CopyFrom_(x);
        big.Dispose();
        Assert.True(view.NumEl <= 1 || !view.IsContiguous || x.Shape[^1] <= 1);
        return view;
    }

    /// <summary>
    /// The same logical values in three layouts: contiguous, every-other-element (non-contiguous),
    /// and (rank ≥ 2) a buffer of the reversed shape permuted back, i.e. reversed strides.
    /// </summary>
    public static IEnumerable<(string Name, Tensor X)> Layouts(double[] values, long[] shape, DType dtype)
    {
        yield return ("contiguous", FromDoubles(values, shape, dtype));
        using (var c = FromDoubles(values, shape, dtype)) yield return ("non-contiguous", NonContiguous(c));
        if (shape.Length >= 2)
        {
            var rev = shape.Reverse().ToArray();
            var data = new double[values.Length];
            for (long i = 0; i < values.Length; i++)
            {
                var idx = Unravel(i, shape);
                long flat = 0;
                for (int d = 0; d < rev.Length; d++) flat = flat * rev[d] + idx[shape.Length - 1 - d];
                data[flat] = values[i];
            }
            using var buffer = FromDoubles(data, rev, dtype);
            yield return ("transposed", buffer.Permute(Enumerable.Range(0, shape.Length).Reverse().ToArray()));
        }
    }

    /// <summary>Shapes exercising odd sizes, size-1 and empty dims, rank 0 to 4.</summary>
    public static IEnumerable<long[]> Shapes()
    {
        yield return [];
        yield return [1];
        yield return [7];
        yield return [3, 5];
        yield return [1, 9];
        yield return [4, 1, 3];
        yield return [2, 3, 5, 7];
        yield return [0, 3];
        yield return [33, 17];
        yield return [130, 1031]; // large enough to take the parallel path
    }

    public static void AssertClose(double[] expected, Tensor actual, double atol = 1e-5, double rtol = 1e-5, string? what = null)
    {
        var got = actual.To(DType.Float64).ToArray<double>();
        AssertClose(expected, got, atol, rtol, what);
    }

    public static void AssertClose(double[] expected, double[] got, double atol = 1e-5, double rtol = 1e-5, string? what = null)
    {
        Assert.True(expected.Length == got.Length, $"{what}: expected {expected.Length} values, got {got.Length}");
        for (int i = 0; i < expected.Length; i++)
        {
            double e = expected[i], g = got[i];
            if (double.IsNaN(e) && double.IsNaN(g)) continue;
            if (double.IsInfinity(e) && e == g) continue;
            double tol = atol + rtol * Math.Abs(e);
            Assert.True(Math.Abs(e - g) <= tol, $"{what}: element {i}: expected {e:G9}, got {g:G9} (tol {tol:G3})");
        }
    }

    /// <summary>Row-major index → multi-index.</summary>
    public static long[] Unravel(long index, long[] shape)
    {
        var idx = new long[shape.Length];
        for (int d = shape.Length - 1; d >= 0; d--)
        {
            idx[d] = shape[d] == 0 ? 0 : index % shape[d];
            index = shape[d] == 0 ? 0 : index / shape[d];
        }
        return idx;
    }

    /// <summary>Value of a row-major array of shape <paramref name="shape"/> read at the broadcast index <paramref name="outIdx"/>.</summary>
    public static double BroadcastRead(double[] values, long[] shape, long[] outIdx)
    {
        int lead = outIdx.Length - shape.Length;
        long flat = 0;
        for (int d = 0; d < shape.Length; d++)
        {
            long i = shape[d] == 1 ? 0 : outIdx[lead + d];
            flat = flat * shape[d] + i;
        }
        return values[flat];
    }

    /// <summary>Broadcast shape (NumPy rules) — the reference tests compare against.</summary>
    public static long[] BroadcastShape(long[] a, long[] b)
    {
        int r = Math.Max(a.Length, b.Length);
        var result = new long[r];
        for (int i = 0; i < r; i++)
        {
            long da = i < r - a.Length ? 1 : a[i - (r - a.Length)];
            long db = i < r - b.Length ? 1 : b[i - (r - b.Length)];
            result[i] = da == 1 ? db : da;
        }
        return result;
    }
}
