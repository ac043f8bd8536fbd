using System.Globalization;
using System.Text;
using Engine.Runtime;
using Engine.Tensors.AutoDiff;

namespace Engine.Tensors;

/// <summary>
/// An n-dimensional array with a dtype, a device, and (optionally) a place in the autograd graph.
/// <para>
/// A tensor is a view: shape, strides (in elements) and an offset into a <see cref="Storage"/> that
/// other views may share. Views (<see cref="View"/>, <see cref="Permute"/>, <see cref="Narrow"/>,
/// <see cref="Expand"/>, ...) never copy; <see cref="Contiguous"/> copies only when needed.
/// </para>
/// <para>
/// Memory is released deterministically by <see cref="Dispose"/> (or by a <see cref="DisposeScope"/>
/// for temporaries); the storage is freed when the last view on it is disposed.
/// </para>
/// </summary>
public sealed partial class Tensor : IDisposable
{
    private Storage _storage; // replaced only by RebindStorage_ (an optimizer flattening its parameters)
    private readonly long[] _shape;
    private readonly long[] _strides;
    private bool _disposed;
    private bool _requiresGrad;
    private Tensor? _grad;
    internal DisposeScope? OwningScope;

    internal Tensor(Storage storage, DType dtype, long[] shape, long[] strides, long offset)
    {
        _storage = storage;
        DType = dtype;
        _shape = shape;
        _strides = strides;
        Offset = offset;
        storage.AddRef();
        DisposeScope.Register(this);
    }

    /// <summary>Element type.</summary>
    public DType DType { get; }

    /// <summary>The device the tensor's memory lives on.</summary>
    public Device Device => _storage.Device;

    /// <summary>Sizes of each dim.</summary>
    public ReadOnlySpan<long> Shape => _shape;

    /// <summary>Element strides of each dim (0 on broadcast dims of an expanded view).</summary>
    public ReadOnlySpan<long> Strides => _strides;

    /// <summary>Offset of element [0, ..., 0] in the storage, in elements.</summary>
    public long Offset { get; private set; }

    /// <summary>Number of dims.</summary>
    public int Rank => _shape.Length;

    /// <summary>Number of elements (the product of the shape; 1 for a 0-d tensor).</summary>
    public long NumEl => ShapeUtil.NumEl(_shape);

    /// <summary>Size of dim <paramref name="dim"/> (negative counts from the end).</summary>
    public long Size(int dim) => _shape[ShapeUtil.NormalizeDim("Size", dim, Rank)];

    /// <summary>The shape as a new array.</summary>
    public long[] ShapeArray() => (long[])_shape.Clone();

    /// <summary>True when the elements are laid out row-major without gaps from <see cref="Offset"/>.</summary>
    public bool IsContiguous
    {
        get
        {
            if (NumEl == 0) return true; // no elements: any strides describe the (empty) row-major layout
            long expected = 1;
            for (int i = Rank - 1; i >= 0; i--)
            {
                if (_shape[i] == 1) continue;
                if (_strides[i] != expected) return false;
                expected *= Math.Max(_shape[i], 1); // as ContiguousStrides: a 0-size dim does not zero the strides before it
            }
            return true;
        }
    }

    /// <summary>True once disposed; a disposed tensor's data may no longer be read.</summary>
    public bool IsDisposed => _disposed;

    internal Storage Storage
    {
        get
        {
            if (_disposed)
                throw new ObjectDisposedException(nameof(Tensor), $"Tensor of shape {ShapeUtil.Format(_shape)} ({DType.Name()}) was used after it was disposed.");
            return _storage;
        }
    }

    internal long[] ShapeInternal => _shape;
    internal long[] StridesInternal => _strides;

    // ---------------------------------------------------------------- autograd state

    /// <summary>
    /// Whether gradients flow to this tensor. Settable on leaves only (tensors made by the user,
    /// not by an op), and only for floating-point dtypes.
    /// </summary>
    public bool RequiresGrad
    {
        get => _requiresGrad;
        set
        {
            if (value == _requiresGrad) return;
            if (GradFn is not null)
                throw new InvalidOperationException("RequiresGrad can only be changed on leaf tensors; use Detach() to get a leaf from this result.");
            if (value && !DType.IsFloatingPoint())
                throw new InvalidOperationException($"RequiresGrad: only floating-point tensors can require gradients, not {DType.Name()}.");
            _requiresGrad = value;
        }
    }

    /// <summary>Sets <see cref="RequiresGrad"/> and returns this tensor (for fluent construction).</summary>
    public Tensor RequiresGrad_(bool requiresGrad = true)
    {
        RequiresGrad = requiresGrad;
        return this;
    }

    /// <summary>
    /// The gradient accumulated by <see cref="Backward"/> (leaves only). The tensor owns it: it is
    /// disposed with the tensor, and not by a dispose scope.
    /// </summary>
    public Tensor? Grad
    {
        get => _grad;
        set
        {
            if (value is not null)
            {
                if (!ShapeUtil.SameShape(value.Shape, Shape) || value.DType != DType)
                    throw new ArgumentException($"Grad: a gradient of shape {ShapeUtil.Format(value.Shape)} ({value.DType.Name()}) does not fit a tensor of shape {ShapeUtil.Format(Shape)} ({DType.Name()}).");
                DisposeScope.Unregister(value);
            }
            if (!ReferenceEquals(_grad, value)) _grad?.Dispose();
            _grad = value;
        }
    }

    /// <summary>The graph node that made this tensor, or null for a leaf.</summary>
    public Node? GradFn { get; internal set; }

    /// <summary>True for tensors not made by a recorded op.</summary>
    public bool IsLeaf => GradFn is null;

    internal AccumulateGrad? Accumulator;

    /// <summary>Marks this tensor as the output of <paramref name="node"/>.</summary>
    internal void SetGradFn(Node node)
    {
        GradFn = node;
        _requiresGrad = true;
    }

    // ---------------------------------------------------------------- lifetime

    /// <summary>Releases this tensor's reference to its storage (and its gradient).</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        DisposeScope.Unregister(this);
        _grad?.Dispose();
        _grad = null;
        GradFn = null;
        Accumulator = null;
        _storage.Release();
    }

    /// <summary>
    /// Moves this tensor out of the current dispose scope into the enclosing one (or out of all
    /// scopes), so it survives the end of the current scope. Returns this tensor.
    /// </summary>
    public Tensor MoveToOuterDisposeScope()
    {
        DisposeScope.MoveToOuter(this);
        return this;
    }

    /// <summary>Removes this tensor from every dispose scope: the caller disposes it. Returns this tensor.</summary>
    public Tensor DetachFromDisposeScope()
    {
        DisposeScope.Unregister(this);
        return this;
    }

    /// <summary>
    /// Makes this contiguous tensor a view of <paramref name="storage"/> at <paramref name="offset"/> (same
    /// shape and strides), releasing its old storage; the caller has copied the elements there already.
    /// Used by the optimizers to lay a device's parameters out in one flat buffer (Optim/FlatParameters.cs).
    /// Views made of this tensor before keep the old memory.
    /// </summary>
    internal void RebindStorage_(Storage storage, long offset)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (!IsContiguous) throw new InvalidOperationException($"RebindStorage_: the tensor of shape {ShapeUtil.Format(_shape)} is not contiguous.");
        storage.AddRef();
        var old = _storage;
        _storage = storage;
        Offset = offset;
        old.Release();
    }

    /// <summary>
    /// Where autograd puts this leaf's gradient when it has none yet: the leaf's slot in an optimizer's
    /// flat gradient buffer (Optim/FlatParameters.cs). Null: autograd allocates the gradient as usual.
    /// </summary>
    internal Tensor? GradSlot { get; set; }

    /// <summary>A second tensor object over the same elements (same shape, strides and graph node).</summary>
    internal Tensor Alias()
    {
        var t = new Tensor(Storage, DType, _shape, _strides, Offset);
        if (GradFn is not null) t.SetGradFn(GradFn);
        else if (_requiresGrad)
        {
            // A handle on a leaf sends its gradient to the same place as the leaf itself.
            t._requiresGrad = true;
            t.Accumulator = (AccumulateGrad)Graph.EdgeOf(this)!;
        }
        return t;
    }

    // ---------------------------------------------------------------- element access (CPU)

    internal void RequireCpu(string op)
    {
        if (Device.Type != DeviceType.Cpu)
            throw new NotSupportedException($"{op}: an op that reads the elements on the host got a tensor on {Device}, and it has no kernel for {Device} yet; move the tensor to the CPU with To(Device.Cpu).");
    }

    /// <summary>Pointer to element [0, ..., 0]. CPU tensors only.</summary>
    internal unsafe T* Ptr<T>() where T : unmanaged
    {
        RequireCpu("data access");
        return (T*)((CpuBuffer)Storage.Buffer).Pointer + Offset;
    }

    /// <summary>The elements of a contiguous CPU tensor as a span.</summary>
    internal unsafe Span<T> Span<T>() where T : unmanaged
    {
        if (!IsContiguous) throw new InvalidOperationException("internal: Span() needs a contiguous tensor.");
        CheckType<T>("Span");
        return new Span<T>(Ptr<T>(), checked((int)NumEl));
    }

    private void CheckType<T>(string op) where T : unmanaged
    {
        if (DTypes.Of<T>() != DType)
            throw new InvalidOperationException($"{op}<{typeof(T).Name}>: the tensor's dtype is {DType.Name()}.");
    }

    /// <summary>This tensor itself on the CPU, or a copy there (not recorded) of a tensor on an accelerator; the caller disposes the result either way.</summary>
    private Tensor OnHost()
    {
        if (Device.Type == DeviceType.Cpu) return Alias();
        using (NoGrad()) return To(Device.Cpu);
    }

    /// <summary>Copies the elements out in row-major order (from an accelerator: through a copy to the host).</summary>
    public T[] ToArray<T>() where T : unmanaged
    {
        CheckType<T>("ToArray");
        if (Device.Type != DeviceType.Cpu)
        {
            using var host = OnHost();
            return host.ToArray<T>();
        }
        using var c = Contiguous();
        return c.Span<T>().ToArray();
    }

    /// <summary>The value of a one-element tensor.</summary>
    public T Item<T>() where T : unmanaged
    {
        if (NumEl != 1)
            throw new InvalidOperationException($"Item: only a one-element tensor has an item; this one has shape {ShapeUtil.Format(Shape)}.");
        CheckType<T>("Item");
        using var host = OnHost();
        unsafe { return *host.Ptr<T>(); }
    }

    /// <summary>The value of a one-element floating-point or integer tensor as a double.</summary>
    public double ToDouble()
    {
        if (NumEl != 1)
            throw new InvalidOperationException($"ToDouble: only a one-element tensor converts to a number; this one has shape {ShapeUtil.Format(Shape)}.");
        using var host = OnHost();
        unsafe
        {
            return DType switch
            {
                DType.Float32 => *host.Ptr<float>(),
                DType.Float64 => *host.Ptr<double>(),
                DType.Int32 => *host.Ptr<int>(),
                DType.Int64 => *host.Ptr<long>(),
                DType.Bool => *host.Ptr<bool>() ? 1 : 0,
                _ => throw new NotSupportedException(),
            };
        }
    }

    /// <summary>Storage offset (in elements) of the element at row-major position <paramref name="index"/>.</summary>
    internal long FlatOffset(long index)
    {
        if (index < 0 || index >= NumEl) throw new ArgumentOutOfRangeException(nameof(index), $"element {index} is outside a tensor of {NumEl} elements.");
        long offset = 0;
        for (int d = Rank - 1; d >= 0; d--)
        {
            offset += index % _shape[d] * _strides[d];
            index /= _shape[d];
        }
        return offset;
    }

    /// <summary>Reads the element at row-major position <paramref name="index"/> as a double.</summary>
    internal double GetFlat(long index)
    {
        unsafe
        {
            long o = FlatOffset(index);
            return DType switch
            {
                DType.Float32 => Ptr<float>()[o],
                DType.Float64 => Ptr<double>()[o],
                DType.Int32 => Ptr<int>()[o],
                DType.Int64 => Ptr<long>()[o],
                _ => Ptr<bool>()[o] ? 1 : 0,
            };
        }
    }

    /// <summary>Writes the element at row-major position <paramref name="index"/> (no graph recording).</summary>
    internal void SetFlat(long index, double value)
    {
        unsafe
        {
            long o = FlatOffset(index);
            switch (DType)
            {
                case DType.Float32: Ptr<float>()[o] = (float)value; break;
                case DType.Float64: Ptr<double>()[o] = value; break;
                case DType.Int32: Ptr<int>()[o] = (int)value; break;
                case DType.Int64: Ptr<long>()[o] = (long)value; break;
                default: Ptr<bool>()[o] = value != 0; break;
            }
        }
    }

    /// <summary>Shape, dtype and (for up to 64 elements) the values.</summary>
    public override string ToString()
    {
        if (_disposed) return $"Tensor(disposed, shape={ShapeUtil.Format(_shape)}, dtype={DType.Name()})";
        var sb = new StringBuilder("Tensor(");
        if (NumEl <= 64)
        {
            using var host = OnHost();
            using var f = DType == DType.Float64 ? host.Contiguous() : host.To(DType.Float64);
            var values = f.Span<double>();
            sb.Append('[');
            for (int i = 0; i < values.Length; i++)
            {
                if (i > 0) sb.Append(", ");
                sb.Append(values[i].ToString(DType.IsFloatingPoint() ? "G6" : "G", CultureInfo.InvariantCulture));
            }
            sb.Append("], ");
        }
        sb.Append("shape=").Append(ShapeUtil.Format(_shape)).Append(", dtype=").Append(DType.Name());
        if (Device.Type != DeviceType.Cpu) sb.Append(", device=").Append(Device);
        if (GradFn is not null) sb.Append(", grad_fn=").Append(GradFn.Name);
        else if (RequiresGrad) sb.Append(", requires_grad=true");
        return sb.Append(')').ToString();
    }
}
