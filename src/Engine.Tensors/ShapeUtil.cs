using System.Text;

namespace Engine.Tensors;

/// <summary>Shape arithmetic shared by every op: broadcasting, strides, dim normalization.</summary>
internal static class ShapeUtil
{
    public static long NumEl(ReadOnlySpan<long> shape)
    {
        long n = 1;
        foreach (var d in shape) n *= d;
        return n;
    }

    /// <summary>Row-major (C-contiguous) strides for <paramref name="shape"/>.</summary>
    public static long[] ContiguousStrides(ReadOnlySpan<long> shape)
    {
        var strides = new long[shape.Length];
        long s = 1;
        for (int i = shape.Length - 1; i >= 0; i--)
        {
            strides[i] = s;
            s *= Math.Max(shape[i], 1);
        }
        return strides;
    }

    /// <summary>The broadcast of two shapes, as NumPy defines it (align right; sizes equal or one is 1).</summary>
    public static long[] Broadcast(string op, ReadOnlySpan<long> a, ReadOnlySpan<long> b)
    {
        int rank = Math.Max(a.Length, b.Length);
        var result = new long[rank];
        for (int i = 0; i < rank; i++)
        {
            long da = i < rank - a.Length ? 1 : a[i - (rank - a.Length)];
            long db = i < rank - b.Length ? 1 : b[i - (rank - b.Length)];
            if (da != db && da != 1 && db != 1)
                throw new ArgumentException(
                    $"{op}: shapes {Format(a)} and {Format(b)} cannot be broadcast together (dim {i} of the result: {da} vs {db}; sizes must be equal or one of them 1).");
            result[i] = da == 1 ? db : da;
        }
        return result;
    }

    /// <summary>
    /// Strides that read <paramref name="t"/> as if it had shape <paramref name="shape"/> (0 on broadcast dims).
    /// The caller has checked that <paramref name="shape"/> is a broadcast of t's shape.
    /// </summary>
    public static long[] BroadcastStrides(Tensor t, ReadOnlySpan<long> shape)
    {
        var strides = new long[shape.Length];
        int lead = shape.Length - t.Rank;
        if (lead < 0) throw new ArgumentException($"cannot broadcast shape {Format(t.Shape)} to the smaller rank of {Format(shape)}.");
        for (int i = 0; i < t.Rank; i++)
        {
            long size = t.Shape[i];
            if (size == shape[lead + i]) strides[lead + i] = size == 1 ? 0 : t.Strides[i];
            else if (size == 1) strides[lead + i] = 0;
            else throw new ArgumentException($"cannot broadcast shape {Format(t.Shape)} to {Format(shape)}.");
        }
        return strides;
    }

    /// <summary>Turns a possibly negative dim into 0..rank-1, naming the op when it is out of range.</summary>
    public static int NormalizeDim(string op, int dim, int rank)
    {
        int r = Math.Max(rank, 1);
        if (dim < -r || dim >= r)
            throw new ArgumentOutOfRangeException(nameof(dim), $"{op}: dim {dim} is out of range for a tensor of rank {rank} (expected {-r}..{r - 1}).");
        return dim < 0 ? dim + r : dim;
    }

    /// <summary>Normalizes a set of dims; null means all dims. Rejects repeats.</summary>
    public static bool[] DimMask(string op, ReadOnlySpan<int> dims, int rank, bool all)
    {
        var mask = new bool[rank];
        if (all) { Array.Fill(mask, true); return mask; }
        foreach (var d in dims)
        {
            int n = NormalizeDim(op, d, rank);
            if (rank == 0) continue;
            if (mask[n]) throw new ArgumentException($"{op}: dim {d} appears more than once in the dims to reduce.");
            mask[n] = true;
        }
        return mask;
    }

    public static string Format(ReadOnlySpan<long> shape)
    {
        var sb = new StringBuilder("[");
        for (int i = 0; i < shape.Length; i++)
        {
            if (i > 0) sb.Append(", ");
            sb.Append(shape[i]);
        }
        return sb.Append(']').ToString();
    }

    public static bool SameShape(ReadOnlySpan<long> a, ReadOnlySpan<long> b) => a.SequenceEqual(b);
}
