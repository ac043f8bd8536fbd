using Engine.Runtime;
using Engine.Tensors.AutoDiff;

namespace Engine.Tensors;

public sealed partial class Tensor
{
    /// <summary>A tensor whose elements are not initialized.</summary>
    public static Tensor Empty(long[] shape, DType dtype = DType.Float32) => Allocate(shape, dtype, zero: false, "Empty");

    /// <summary>A tensor of zeros.</summary>
    public static Tensor Zeros(long[] shape, DType dtype = DType.Float32) => Allocate(shape, dtype, zero: true, "Zeros");

    /// <summary>A tensor of ones.</summary>
    public static Tensor Ones(long[] shape, DType dtype = DType.Float32) => Full(shape, 1.0, dtype);

    /// <summary>A tensor filled with <paramref name="value"/> (converted to <paramref name="dtype"/>).</summary>
    public static Tensor Full(long[] shape, double value, DType dtype = DType.Float32)
    {
        var t = Allocate(shape, dtype, zero: false, "Full");
        t.Fill_(value);
        return t;
    }

    /// <summary>A 0-d tensor holding <paramref name="value"/>.</summary>
    public static Tensor Scalar(double value, DType dtype = DType.Float32) => Full([], value, dtype);

    /// <summary>Zeros of <paramref name="like"/>'s shape and dtype (or <paramref name="dtype"/>).</summary>
    public static Tensor ZerosLike(Tensor like, DType? dtype = null) => Zeros(like.ShapeArray(), dtype ?? like.DType);

    /// <summary>Ones of <paramref name="like"/>'s shape and dtype (or <paramref name="dtype"/>).</summary>
    public static Tensor OnesLike(Tensor like, DType? dtype = null) => Ones(like.ShapeArray(), dtype ?? like.DType);

    /// <summary>Uninitialized tensor of <paramref name="like"/>'s shape and dtype (or <paramref name="dtype"/>).</summary>
    public static Tensor EmptyLike(Tensor like, DType? dtype = null) => Empty(like.ShapeArray(), dtype ?? like.DType);

    /// <summary>A tensor holding a copy of <paramref name="data"/> with the given shape (default: 1-d).</summary>
    public static Tensor FromArray<T>(T[] data, params long[] shape) where T : unmanaged
    {
        ArgumentNullException.ThrowIfNull(data);
        if (shape.Length == 0 && data.Length != 1) shape = [data.Length];
        if (ShapeUtil.NumEl(shape) != data.Length)
            throw new ArgumentException($"FromArray: {data.Length} values do not fill shape {ShapeUtil.Format(shape)} ({ShapeUtil.NumEl(shape)} elements).");
        var t = Allocate(shape, DTypes.Of<T>(), zero: false, "FromArray");
        data.AsSpan().CopyTo(t.Span<T>());
        return t;
    }

    /// <summary>0, 1, ..., <paramref name="end"/>-1 as a 1-d tensor.</summary>
    public static Tensor Arange(long end, DType dtype = DType.Int64) => Arange(0, end, 1, dtype);

    /// <summary>start, start+step, ... up to (not including) <paramref name="end"/>.</summary>
    public static Tensor Arange(double start, double end, double step = 1, DType dtype = DType.Float32)
    {
        if (step == 0 || double.IsNaN(step)) throw new ArgumentException("Arange: step must be non-zero.");
        long n = Math.Max(0, (long)Math.Ceiling((end - start) / step));
        var values = new double[n];
        for (long i = 0; i < n; i++) values[i] = start + i * step;
        using var d = FromArray(values, n);
        return d.To(dtype);
    }

    /// <summary>Sets every element to <paramref name="value"/> in place. Returns this tensor.</summary>
    public Tensor Fill_(double value)
    {
        CheckInPlace("Fill_");
        using var s = ScalarLike(value, DType);
        Cpu.Copy.Into(s, this);
        return this;
    }

    /// <summary>Copies <paramref name="src"/> (broadcast to this shape, converted to this dtype) into this tensor.</summary>
    public Tensor CopyFrom_(Tensor src)
    {
        CheckInPlace("CopyFrom_");
        ShapeUtil.Broadcast("CopyFrom_", src.Shape, Shape); // validates
        if (!ShapeUtil.SameShape(ShapeUtil.Broadcast("CopyFrom_", src.Shape, Shape), Shape))
            throw new ArgumentException($"CopyFrom_: source of shape {ShapeUtil.Format(src.Shape)} does not broadcast to destination shape {ShapeUtil.Format(Shape)}.");
        Cpu.Copy.Into(src, this);
        return this;
    }

    /// <summary>Throws if an in-place op would corrupt the autograd graph.</summary>
    internal void CheckInPlace(string op)
    {
        if (GradMode.IsEnabledFor(this))
            throw new InvalidOperationException(
                $"{op}: in-place change of a tensor that requires grad (shape {ShapeUtil.Format(Shape)}) while grad mode is on; wrap it in Tensor.NoGrad() or use the out-of-place op.");
    }

    internal static Tensor Allocate(long[] shape, DType dtype, bool zero, string op)
    {
        ArgumentNullException.ThrowIfNull(shape);
        foreach (var d in shape)
            if (d < 0) throw new ArgumentException($"{op}: negative size in shape {ShapeUtil.Format(shape)}.");
        var shapeCopy = (long[])shape.Clone();
        var storage = Storage.AllocateCpu(dtype, ShapeUtil.NumEl(shapeCopy), zero);
        return new Tensor(storage, dtype, shapeCopy, ShapeUtil.ContiguousStrides(shapeCopy), 0);
    }

    /// <summary>A 0-d tensor of <paramref name="dtype"/> on this tensor's device (used to broadcast scalars).</summary>
    internal static Tensor ScalarLike(double value, DType dtype)
    {
        var t = Allocate([], dtype, zero: false, "Scalar");
        unsafe
        {
            switch (dtype)
            {
                case DType.Float32: *t.Ptr<float>() = (float)value; break;
                case DType.Float64: *t.Ptr<double>() = value; break;
                case DType.Int32: *t.Ptr<int>() = checked((int)value); break;
                case DType.Int64: *t.Ptr<long>() = checked((long)value); break;
                case DType.Bool: *t.Ptr<bool>() = value != 0; break;
            }
        }
        return t;
    }

    /// <summary>This tensor converted to <paramref name="dtype"/> (this tensor itself if it already is).</summary>
    public Tensor To(DType dtype)
    {
        if (dtype == DType) return this;
        var y = Allocate(ShapeArray(), dtype, zero: false, "To");
        Cpu.Copy.Into(this, y);
        if (dtype.IsFloatingPoint() && DType.IsFloatingPoint())
        {
            var from = DType;
            Graph.Record(y, "to", this, g => g.To(from));
        }
        return y;
    }

    /// <summary>This tensor on <paramref name="device"/> (this tensor itself if it already is there).</summary>
    public Tensor To(Device device)
    {
        if (device == Device) return this;
        throw new NotSupportedException($"To: moving a tensor from {Device} to {device} needs an accelerator backend, which is not available in this build.");
    }
}
