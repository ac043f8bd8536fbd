// Indexing on a device: gather, scatter_add, index_select, one_hot, where / masked_fill, argmax, and
// the strided copy of 4- and 8-byte integer tensors. Values float32 (copies: int32/int64 bits too),
// indices int64.
//
// Math      Gather      y[m] = x[m with coordinate d replaced by index[m]]           (torch.gather)
//           ScatterAdd  y[m with coordinate d replaced by index[m]] += src[m]         (torch.scatter_add;
//                       y starts as a copy of self, made by the host with StridedCopy)
//           IndexSelect y[..., k, ...] = x[..., index[k], ...] along d                 (torch.index_select)
//           OneHot      y[m, c] = (labels[m] == c)                                    (int64 output)
//           Where       y[i] = cond[i] ? a[i] : b[i] with broadcasting               (torch.where; masked_fill
//                       is where(mask, value, x))
//           ArgMaxRows  y[r] = the first j maximizing x[r, j]; a NaN wins (the first NaN) (torch.argmax)
//           Gradients are written with these ops by the callers: gather ↔ scatter_add are each other's
//           adjoint, index_select's is index_add (on a device: scatter_add of the broadcast index, KernelDispatch.Math.cs), where's is where(cond, g, 0).
// Layout    Index tensors are contiguous int64 (the host validates their range on the CPU first, so
//           the kernels never read out of bounds). Value operands are any strided view: shape and
//           element strides by value in IndexLayout / WhereLayout (rank ≤ 8, unravelled innermost
//           last as the elementwise kernels do); outputs are contiguous.
// Numerics  ScatterAdd adds with float atomics: where several index entries hit one target the
//           order of the additions is not defined, so such sums can differ from the CPU's in the last
//           bits (no duplicates — max-pool backward, cross-entropy's gather backward — are exact).
//           Everything else moves values unchanged.
// Bytes     Gather/IndexSelect/Where: 4 B written, 4 (+8 index, +1 cond) B read per element;
//           ScatterAdd: an 8 B index and 4 B value read and one 4 B atomic per src element.
// Indexing  int (32-bit) element counts and offsets; the host refuses 2^31 elements or more.
// Launch    1-D, group IndexingKernels.GroupSize (256), one thread per output element (per index
//           element for ScatterAdd, per row for ArgMaxRows: rows are short — class scores — so one
//           sequential scan per thread keeps the first-max rule simple). No shared memory.
using Engine.Runtime.Kernels;

namespace Engine.Tensors.Kernels;

/// <summary>The index map of gather / scatter_add / index_select: the iterated shape and two operands' strides.</summary>
internal struct IndexLayout
{
    /// <summary>Iterated shape (the index's for gather/scatter, the output's for index_select), dims [0, Rank).</summary>
    public Dims8 Shape;
    /// <summary>Element strides of the indexed operand (gather/index_select: the input; scatter: the contiguous output).</summary>
    public Dims8 Indexed;
    /// <summary>Element strides of the other operand (scatter: src; unused otherwise).</summary>
    public Dims8 Other;
    /// <summary>Element offset of the indexed operand.</summary>
    public int IndexedOffset;
    /// <summary>Element offset of the other operand.</summary>
    public int OtherOffset;
    /// <summary>Dims used.</summary>
    public int Rank;
    /// <summary>The indexed dim.</summary>
    public int Dim;
    /// <summary>Indexed[Dim], passed on its own: a dynamic index into a by-value array would copy the layout to local memory.</summary>
    public int DimStride;
}

/// <summary>The index map of where(cond, a, b): output shape and the three operands' offsets and strides (0 on broadcast dims).</summary>
internal struct WhereLayout
{
    /// <summary>Output shape, dims [0, Rank).</summary>
    public Dims8 Shape;
    /// <summary>Condition strides.</summary>
    public Dims8 StrideC;
    /// <summary>Strides of the value taken where the condition holds.</summary>
    public Dims8 StrideA;
    /// <summary>Strides of the value taken elsewhere.</summary>
    public Dims8 StrideB;
    /// <summary>Element offsets.</summary>
    public int OffsetC, OffsetA, OffsetB;
    /// <summary>Dims used.</summary>
    public int Rank;
}

/// <summary>Gather, scatter-add, index-select, one-hot, where, argmax and integer copies (see the file header).</summary>
internal static partial class IndexingKernels
{
    /// <summary>Threads per group.</summary>
    public const int GroupSize = 256;

    /// <summary>y[m] = x[m with coordinate Dim replaced by index[m]]; index and y contiguous of layout.Shape.</summary>
    [Kernel]
    public static void Gather(ArrayView<float> x, ArrayView<long> index, ArrayView<float> y, IndexLayout layout)
    {
        int m = Grid.GlobalIndexX;
        if (m >= y.Length) return;
        int rest = m, at = layout.IndexedOffset;
        for (int d = ElementwiseKernels.MaxRank - 1; d >= 0; d--)
        {
            if (d >= layout.Rank) continue;
            int c = rest % layout.Shape[d];
            rest /= layout.Shape[d];
            if (d != layout.Dim) at += c * layout.Indexed[d];
        }
        at += (int)index[m] * layout.DimStride;
        y[m] = x[at];
    }

    /// <summary>y[m with coordinate Dim replaced by index[m]] += src[m] (atomic); index contiguous of layout.Shape, y contiguous.</summary>
    [Kernel]
    public static void ScatterAdd(ArrayView<float> src, ArrayView<long> index, ArrayView<float> y, IndexLayout layout, int count)
    {
        int m = Grid.GlobalIndexX;
        if (m >= count) return;
        int rest = m, at = 0, from = layout.OtherOffset;
        for (int d = ElementwiseKernels.MaxRank - 1; d >= 0; d--)
        {
            if (d >= layout.Rank) continue;
            int c = rest % layout.Shape[d];
            rest /= layout.Shape[d];
            if (d != layout.Dim) at += c * layout.Indexed[d];
            from += c * layout.Other[d];
        }
        at += (int)index[m] * layout.DimStride;
        Atomic.Add(ref y[at], src[from]);
    }

    /// <summary>y[..., k, ...] = x[..., index[k], ...] along Dim; y contiguous of layout.Shape.</summary>
    [Kernel]
    public static void IndexSelect(ArrayView<float> x, ArrayView<long> index, ArrayView<float> y, IndexLayout layout)
    {
        int m = Grid.GlobalIndexX;
        if (m >= y.Length) return;
        int rest = m, at = layout.IndexedOffset;
        for (int d = ElementwiseKernels.MaxRank - 1; d >= 0; d--)
        {
            if (d >= layout.Rank) continue;
            int c = rest % layout.Shape[d];
            rest /= layout.Shape[d];
            if (d == layout.Dim) at += (int)index[c] * layout.DimStride;
            else at += c * layout.Indexed[d];
        }
        y[m] = x[at];
    }

    /// <summary>y[m·classes + c] = labels[m] == c ? 1 : 0 (int64); one thread per output element.</summary>
    [Kernel]
    public static void OneHot(ArrayView<long> labels, ArrayView<long> y, int classes)
    {
        int e = Grid.GlobalIndexX;
        if (e >= y.Length) return;
        int m = e / classes, c = e % classes;
        y[e] = labels[m] == c ? 1L : 0L;
    }

    /// <summary>y[i] = cond[i] != 0 ? a[i] : b[i] with broadcasting; cond holds bools as bytes.</summary>
    [Kernel]
    public static void Where(ArrayView<byte> cond, ArrayView<float> a, ArrayView<float> b, ArrayView<float> y, WhereLayout layout)
    {
        int i = Grid.GlobalIndexX;
        if (i >= y.Length) return;
        int rest = i, ic = layout.OffsetC, ia = layout.OffsetA, ib = layout.OffsetB;
        for (int d = ElementwiseKernels.MaxRank - 1; d >= 0; d--)
        {
            if (d >= layout.Rank) continue;
            int c = rest % layout.Shape[d];
            rest /= layout.Shape[d];
            ic += c * layout.StrideC[d];
            ia += c * layout.StrideA[d];
            ib += c * layout.StrideB[d];
        }
        y[i] = cond[ic] != 0 ? a[ia] : b[ib];
    }

    /// <summary>y[r] = argmax_j x[r·n + j] (first maximum; the first NaN wins); one thread per row.</summary>
    [Kernel]
    public static void ArgMaxRows(ArrayView<float> x, ArrayView<long> y, int rows, int n)
    {
        int r = Grid.GlobalIndexX;
        if (r >= rows) return;
        long start = (long)r * n;
        int best = 0;
        float bestValue = x[start];
        if (!float.IsNaN(bestValue))
        {
            for (int j = 1; j < n; j++)
            {
                float v = x[start + j];
                if (float.IsNaN(v))
                {
                    best = j;
                    break;
                }
                if (v > bestValue)
                {
                    best = j;
                    bestValue = v;
                }
            }
        }
        y[r] = best;
    }

    /// <summary>y[offB(i)] = x[offA(i)] for 8-byte elements (int64 tensors); the layout as ElementwiseKernels.StridedCopy's.</summary>
    [Kernel]
    public static void StridedCopy64(ArrayView<long> x, ArrayView<long> y, ElementwiseLayout layout, int count)
    {
        int i = Grid.GlobalIndexX;
        if (i >= count) return;
        int rest = i, ia = layout.OffsetA, ib = layout.OffsetB;
        for (int d = ElementwiseKernels.MaxRank - 1; d >= 0; d--)
        {
            if (d >= layout.Rank) continue;
            int extent = layout.Shape[d];
            int c = rest % extent;
            rest /= extent;
            ia += c * layout.StrideA[d];
            ib += c * layout.StrideB[d];
        }
        y[ib] = x[ia];
    }

    /// <summary>y[offB(i)] = x[offA(i)] for 4-byte integer elements (int32 tensors).</summary>
    [Kernel]
    public static void StridedCopy32(ArrayView<int> x, ArrayView<int> y, ElementwiseLayout layout, int count)
    {
        int i = Grid.GlobalIndexX;
        if (i >= count) return;
        int rest = i, ia = layout.OffsetA, ib = layout.OffsetB;
        for (int d = ElementwiseKernels.MaxRank - 1; d >= 0; d--)
        {
            if (d >= layout.Rank) continue;
            int extent = layout.Shape[d];
            int c = rest % extent;
            rest /= extent;
            ia += c * layout.StrideA[d];
            ib += c * layout.StrideB[d];
        }
        y[ib] = x[ia];
    }

    /// <summary>y[offB(i)] = x[offA(i)] for 1-byte elements (bool tensors).</summary>
    [Kernel]
    public static void StridedCopy8(ArrayView<byte> x, ArrayView<byte> y, ElementwiseLayout layout, int count)
    {
        int i = Grid.GlobalIndexX;
        if (i >= count) return;
        int rest = i, ia = layout.OffsetA, ib = layout.OffsetB;
        for (int d = ElementwiseKernels.MaxRank - 1; d >= 0; d--)
        {
            if (d >= layout.Rank) continue;
            int extent = layout.Shape[d];
            int c = rest % extent;
            rest /= extent;
            ia += c * layout.StrideA[d];
            ib += c * layout.StrideB[d];
        }
        y[ib] = x[ia];
    }
}
