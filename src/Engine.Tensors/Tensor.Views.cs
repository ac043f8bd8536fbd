using Engine.Tensors.AutoDiff;

namespace Engine.Tensors;

/// <summary>Views: new shapes and strides over the same storage. None of these copies data
/// (except <see cref="Reshape"/> of a non-viewable tensor and <see cref="Contiguous"/> of a strided one).</summary>
public sealed partial class Tensor
{
    private Tensor MakeView(long[] shape, long[] strides, long offset) => new(Storage, DType, shape, strides, offset);

    /// <summary>
    /// The same elements with a new shape (one size may be -1, inferred). The tensor must be
    /// contiguous; use <see cref="Reshape"/> to copy when it is not.
    /// </summary>
    public Tensor View(params long[] shape)
    {
        var newShape = InferShape("View", shape);
        if (!IsContiguous)
            throw new InvalidOperationException(
                $"View: a tensor of shape {ShapeUtil.Format(Shape)} with strides {ShapeUtil.Format(Strides)} is not contiguous, so it cannot be viewed as {ShapeUtil.Format(newShape)}; use Reshape (copies) or Contiguous() first.");
        var inputShape = _shape;
        var y = MakeView(newShape, ShapeUtil.ContiguousStrides(newShape), Offset);
        return Graph.Record(y, "view", this, g => g.Reshape(inputShape));
    }

    /// <summary>The same elements with a new shape: a view when possible, otherwise a contiguous copy.</summary>
    public Tensor Reshape(params long[] shape)
    {
        if (IsContiguous) return View(shape);
        var newShape = InferShape("Reshape", shape);
        using var c = Contiguous();
        return c.View(newShape);
    }

    private long[] InferShape(string op, long[] shape)
    {
        ArgumentNullException.ThrowIfNull(shape);
        var result = (long[])shape.Clone();
        int infer = -1;
        long known = 1;
        for (int i = 0; i < result.Length; i++)
        {
            if (result[i] == -1)
            {
                if (infer >= 0) throw new ArgumentException($"{op}: only one size may be -1, got {ShapeUtil.Format(shape)}.");
                infer = i;
            }
            else if (result[i] < 0) throw new ArgumentException($"{op}: invalid size {result[i]} in {ShapeUtil.Format(shape)}.");
            else known *= result[i];
        }
        long n = NumEl;
        if (infer >= 0)
        {
            if (known == 0 || n % known != 0)
                throw new ArgumentException($"{op}: shape {ShapeUtil.Format(shape)} is invalid for a tensor of {n} elements (shape {ShapeUtil.Format(Shape)}).");
            result[infer] = n / known;
        }
        else if (known != n)
        {
            throw new ArgumentException($"{op}: shape {ShapeUtil.Format(shape)} ({known} elements) is invalid for a tensor of {n} elements (shape {ShapeUtil.Format(Shape)}).");
        }
        return result;
    }

    /// <summary>Reorders the dims: result dim i is input dim <paramref name="dims"/>[i].</summary>
    public Tensor Permute(params int[] dims)
    {
        ArgumentNullException.ThrowIfNull(dims);
        if (dims.Length != Rank)
            throw new ArgumentException($"Permute: {dims.Length} dims given for a tensor of rank {Rank} (shape {ShapeUtil.Format(Shape)}).");
        var seen = new bool[Rank];
        var shape = new long[Rank];
        var strides = new long[Rank];
        var inverse = new int[Rank];
        for (int i = 0; i < Rank; i++)
        {
            int d = ShapeUtil.NormalizeDim("Permute", dims[i], Rank);
            if (seen[d]) throw new ArgumentException($"Permute: dim {dims[i]} appears twice in [{string.Join(", ", dims)}].");
            seen[d] = true;
            shape[i] = _shape[d];
            strides[i] = _strides[d];
            inverse[d] = i;
        }
        var y = MakeView(shape, strides, Offset);
        return Graph.Record(y, "permute", this, g => g.Permute(inverse));
    }

    /// <summary>Swaps two dims.</summary>
    public Tensor Transpose(int dim0, int dim1)
    {
        var perm = new int[Rank];
        for (int i = 0; i < Rank; i++) perm[i] = i;
        int a = ShapeUtil.NormalizeDim("Transpose", dim0, Rank), b = ShapeUtil.NormalizeDim("Transpose", dim1, Rank);
        if (Rank == 0) return Alias();
        (perm[a], perm[b]) = (perm[b], perm[a]);
        return Permute(perm);
    }

    /// <summary>The transpose of a matrix (rank 2), or the tensor itself for rank 0 or 1.</summary>
    public Tensor T
    {
        get
        {
            if (Rank > 2) throw new InvalidOperationException($"T: expects a tensor of rank at most 2, got shape {ShapeUtil.Format(Shape)}; use Transpose or Permute.");
            return Rank < 2 ? Alias() : Transpose(0, 1);
        }
    }

    /// <summary>Elements <paramref name="start"/> .. <paramref name="start"/>+<paramref name="length"/>-1 along <paramref name="dim"/>.</summary>
    public Tensor Narrow(int dim, long start, long length)
    {
        int d = ShapeUtil.NormalizeDim("Narrow", dim, Rank);
        if (Rank == 0) throw new ArgumentException("Narrow: cannot narrow a 0-d tensor.");
        long size = _shape[d];
        if (start < 0) start += size;
        if (start < 0 || length < 0 || start + length > size)
            throw new ArgumentOutOfRangeException(nameof(start), $"Narrow: range [{start}, {start + length}) is outside dim {dim} of size {size} (shape {ShapeUtil.Format(Shape)}).");
        var shape = ShapeArray();
        shape[d] = length;
        var y = MakeView(shape, (long[])_strides.Clone(), Offset + (length == 0 ? 0 : start * _strides[d]));
        return Graph.Record(y, "narrow", this, g => g.NarrowBackward(d, start, size));
    }

    /// <summary>Python-style slice along one dim: start (inclusive), end (exclusive, clamped), step &gt; 0.</summary>
    public Tensor Slice(int dim, long start, long end, long step = 1)
    {
        int d = ShapeUtil.NormalizeDim("Slice", dim, Rank);
        if (step <= 0) throw new ArgumentException($"Slice: step must be positive, got {step}.");
        long size = _shape[d];
        if (start < 0) start += size;
        if (end < 0) end += size;
        start = Math.Clamp(start, 0, size);
        end = Math.Clamp(end, start, size);
        if (step == 1) return Narrow(d, start, end - start);
        long length = (end - start + step - 1) / step;
        var shape = ShapeArray();
        shape[d] = length;
        var strides = (long[])_strides.Clone();
        strides[d] *= step;
        var y = MakeView(shape, strides, Offset + (length == 0 ? 0 : start * _strides[d]));
        var inputShape = _shape;
        return Graph.Record(y, "slice", this, g =>
        {
            var full = Zeros(inputShape, g.DType, g.Device);
            using (NoGrad()) full.Slice(d, start, end, step).CopyFrom_(g);
            return g.RequiresGrad ? SliceScatter(full, g, d, start, end, step) : full;
        });
    }

    /// <summary>The sub-tensor at <paramref name="index"/> of <paramref name="dim"/> (that dim removed).</summary>
    public Tensor Select(int dim, long index)
    {
        int d = ShapeUtil.NormalizeDim("Select", dim, Rank);
        long size = Rank == 0 ? 0 : _shape[d];
        if (index < -size || index >= size)
            throw new ArgumentOutOfRangeException(nameof(index), $"Select: index {index} is out of range for dim {dim} of size {size} (shape {ShapeUtil.Format(Shape)}).");
        using var n = Narrow(d, index < 0 ? index + size : index, 1);
        return n.Squeeze(d);
    }

    /// <summary>Broadcasts size-1 dims to larger sizes (and may add leading dims) without copying; -1 keeps a size.</summary>
    public Tensor Expand(params long[] shape)
    {
        ArgumentNullException.ThrowIfNull(shape);
        if (shape.Length < Rank)
            throw new ArgumentException($"Expand: target shape {ShapeUtil.Format(shape)} has fewer dims than the tensor's {ShapeUtil.Format(Shape)}.");
        var target = (long[])shape.Clone();
        int lead = shape.Length - Rank;
        var strides = new long[shape.Length];
        for (int i = 0; i < shape.Length; i++)
        {
            if (i < lead)
            {
                if (target[i] < 0) throw new ArgumentException($"Expand: size -1 is not allowed for a new leading dim in {ShapeUtil.Format(shape)}.");
                strides[i] = 0;
                continue;
            }
            long size = _shape[i - lead];
            if (target[i] == -1) target[i] = size;
            if (target[i] == size) strides[i] = _strides[i - lead];
            else if (size == 1) strides[i] = 0;
            else throw new ArgumentException($"Expand: the tensor of shape {ShapeUtil.Format(Shape)} cannot be expanded to {ShapeUtil.Format(shape)} (dim {i}: size {size} is not 1).");
        }
        var y = MakeView(target, strides, Offset);
        var inputShape = _shape;
        return Graph.Record(y, "expand", this, g => g.SumToShape(inputShape));
    }

    /// <summary>Expands to <paramref name="other"/>'s shape.</summary>
    public Tensor ExpandAs(Tensor other) => Expand(other.ShapeArray());

    /// <summary>Removes every size-1 dim.</summary>
    public Tensor Squeeze()
    {
        var shape = _shape.Where(s => s != 1).ToArray();
        return ReshapeView("squeeze", shape, _shape.Select((s, i) => (s, i)).Where(p => p.s != 1).Select(p => _strides[p.i]).ToArray());
    }

    /// <summary>Removes <paramref name="dim"/> if its size is 1 (otherwise returns the same shape, as PyTorch).</summary>
    public Tensor Squeeze(int dim)
    {
        int d = ShapeUtil.NormalizeDim("Squeeze", dim, Rank);
        if (Rank == 0 || _shape[d] != 1) return ReshapeView("squeeze", ShapeArray(), (long[])_strides.Clone());
        var shape = _shape.Where((_, i) => i != d).ToArray();
        var strides = _strides.Where((_, i) => i != d).ToArray();
        return ReshapeView("squeeze", shape, strides);
    }

    /// <summary>Inserts a size-1 dim at <paramref name="dim"/> (0..rank; negative counts from the end).</summary>
    public Tensor Unsqueeze(int dim)
    {
        int d = ShapeUtil.NormalizeDim("Unsqueeze", dim, Rank + 1);
        var shape = _shape.ToList();
        var strides = _strides.ToList();
        shape.Insert(d, 1);
        strides.Insert(d, d < Rank ? _strides[d] * _shape[d] : 1);
        return ReshapeView("unsqueeze", shape.ToArray(), strides.ToArray());
    }

    /// <summary>Flattens dims <paramref name="startDim"/>..<paramref name="endDim"/> into one.</summary>
    public Tensor Flatten(int startDim = 0, int endDim = -1)
    {
        if (Rank == 0) return Reshape(1);
        int s = ShapeUtil.NormalizeDim("Flatten", startDim, Rank), e = ShapeUtil.NormalizeDim("Flatten", endDim, Rank);
        if (s > e) throw new ArgumentException($"Flatten: startDim {startDim} comes after endDim {endDim}.");
        var shape = new List<long>();
        for (int i = 0; i < s; i++) shape.Add(_shape[i]);
        long m = 1;
        for (int i = s; i <= e; i++) m *= _shape[i];
        shape.Add(m);
        for (int i = e + 1; i < Rank; i++) shape.Add(_shape[i]);
        return Reshape(shape.ToArray());
    }

    /// <summary>A view with shape and strides given directly (used by squeeze/unsqueeze, which only add or drop size-1 dims).</summary>
    private Tensor ReshapeView(string name, long[] shape, long[] strides)
    {
        var inputShape = _shape;
        var y = MakeView(shape, strides, Offset);
        return Graph.Record(y, name, this, g => g.Reshape(inputShape));
    }

    /// <summary>This tensor if it is contiguous (a new handle on it), otherwise a contiguous copy.</summary>
    public Tensor Contiguous()
    {
        if (IsContiguous) return Alias();
        return Clone();
    }

    /// <summary>A contiguous copy (gradients flow through it).</summary>
    public Tensor Clone()
    {
        var y = Allocate(ShapeArray(), DType, zero: false, "Clone", Device);
        CopyInto("Clone", this, y);
        return Graph.Record(y, "clone", this, g => g);
    }

    /// <summary>Gradient of <see cref="Narrow"/>: this tensor placed at [start, start+len) of a zero tensor with <paramref name="size"/> along <paramref name="dim"/>.</summary>
    internal Tensor NarrowBackward(int dim, long start, long size)
    {
        var shape = ShapeArray();
        shape[dim] = size;
        var y = Zeros(shape, DType, Device);
        using (NoGrad())
        using (var region = y.Narrow(dim, start, _shape[dim]))
            region.CopyFrom_(this);
        return Graph.Record(y, "narrow_backward", this, g => g.Narrow(dim, start, _shape[dim]));
    }

    /// <summary>Differentiable "write <paramref name="src"/> into a strided slice of <paramref name="full"/>" used by Slice's double-backward.</summary>
    private static Tensor SliceScatter(Tensor full, Tensor src, int dim, long start, long end, long step)
        => Graph.Record(full, "slice_scatter", src, g => g.Slice(dim, start, end, step));
}
