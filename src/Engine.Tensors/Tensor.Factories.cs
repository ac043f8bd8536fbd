using Engine.Runtime;
using Engine.Tensors.AutoDiff;
using Engine.Tensors.Kernels;

namespace Engine.Tensors;

public sealed partial class Tensor
{
    /// <summary>A tensor whose elements are not initialized, on <paramref name="device"/> (default: the CPU).</summary>
    public static Tensor Empty(long[] shape, DType dtype = DType.Float32, Device device = default) => Allocate(shape, dtype, zero: false, "Empty", device);

    /// <summary>A tensor of zeros on <paramref name="device"/> (default: the CPU).</summary>
    public static Tensor Zeros(long[] shape, DType dtype = DType.Float32, Device device = default) => Allocate(shape, dtype, zero: true, "Zeros", device);

    /// <summary>A tensor of ones on <paramref name="device"/> (default: the CPU).</summary>
    public static Tensor Ones(long[] shape, DType dtype = DType.Float32, Device device = default) => Full(shape, 1.0, dtype, device);

    /// <summary>A tensor filled with <paramref name="value"/> (converted to <paramref name="dtype"/>) on <paramref name="device"/> (default: the CPU).</summary>
    public static Tensor Full(long[] shape, double value, DType dtype = DType.Float32, Device device = default)
    {
        var t = Allocate(shape, dtype, zero: false, "Full", device);
        try
        {
            using (NoGrad()) t.Fill_(value);
        }
        catch
        {
            t.Dispose();
            throw;
        }
        return t;
    }

    /// <summary>A 0-d tensor holding <paramref name="value"/>.</summary>
    public static Tensor Scalar(double value, DType dtype = DType.Float32) => Full([], value, dtype);

    /// <summary>Zeros of <paramref name="like"/>'s shape and dtype (or <paramref name="dtype"/>), on its device.</summary>
    public static Tensor ZerosLike(Tensor like, DType? dtype = null) => Zeros(like.ShapeArray(), dtype ?? like.DType, like.Device);

    /// <summary>Ones of <paramref name="like"/>'s shape and dtype (or <paramref name="dtype"/>), on its device.</summary>
    public static Tensor OnesLike(Tensor like, DType? dtype = null) => Ones(like.ShapeArray(), dtype ?? like.DType, like.Device);

    /// <summary>Uninitialized tensor of <paramref name="like"/>'s shape and dtype (or <paramref name="dtype"/>), on its device.</summary>
    public static Tensor EmptyLike(Tensor like, DType? dtype = null) => Empty(like.ShapeArray(), dtype ?? like.DType, like.Device);

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
        using var s = ScalarLike(value, DType, Device);
        CopyInto("Fill_", s, this);
        return this;
    }

    /// <summary>Copies <paramref name="src"/> (broadcast to this shape, converted to this dtype) into this tensor.</summary>
    public Tensor CopyFrom_(Tensor src)
    {
        CheckInPlace("CopyFrom_");
        ShapeUtil.Broadcast("CopyFrom_", src.Shape, Shape); // validates
        if (!ShapeUtil.SameShape(ShapeUtil.Broadcast("CopyFrom_", src.Shape, Shape), Shape))
            throw new ArgumentException($"CopyFrom_: source of shape {ShapeUtil.Format(src.Shape)} does not broadcast to destination shape {ShapeUtil.Format(Shape)}.");
        CopyInto("CopyFrom_", src, this);
        return this;
    }

    /// <summary>
    /// Copies <paramref name="src"/> (broadcast, converted) into <paramref name="dst"/>: the CPU loop, or
    /// the copy kernel on an accelerator device. A source on another device is moved to the
    /// destination's device first (as PyTorch's copy_).
    /// </summary>
    internal static void CopyInto(string op, Tensor src, Tensor dst)
    {
        if (src.Device != dst.Device)
        {
            using var detached = src.Detach();
            using var moved = detached.To(dst.Device);
            CopyInto(op, moved, dst);
            return;
        }
        if (KernelDispatch.IsAccelerated(dst)) KernelDispatch.Copy(op, src, dst);
        else Cpu.Copy.Into(src, dst);
    }

    /// <summary>Throws if an in-place op would corrupt the autograd graph.</summary>
    internal void CheckInPlace(string op)
    {
        if (GradMode.IsEnabledFor(this))
            throw new InvalidOperationException(
                $"{op}: in-place change of a tensor that requires grad (shape {ShapeUtil.Format(Shape)}) while grad mode is on; wrap it in Tensor.NoGrad() or use the out-of-place op.");
    }

    internal static Tensor Allocate(long[] shape, DType dtype, bool zero, string op, Device device = default)
    {
        ArgumentNullException.ThrowIfNull(shape);
        foreach (var d in shape)
            if (d < 0) throw new ArgumentException($"{op}: negative size in shape {ShapeUtil.Format(shape)}.");
        var shapeCopy = (long[])shape.Clone();
        var storage = Storage.Allocate(device, dtype, ShapeUtil.NumEl(shapeCopy), zero);
        return new Tensor(storage, dtype, shapeCopy, ShapeUtil.ContiguousStrides(shapeCopy), 0);
    }

    /// <summary>A 0-d tensor of <paramref name="dtype"/> on <paramref name="device"/> (used to broadcast scalars; made on the CPU and copied).</summary>
    internal static Tensor ScalarLike(double value, DType dtype, Device device = default)
    {
        if (device.Type != DeviceType.Cpu)
        {
            using var host = ScalarLike(value, dtype);
            using (NoGrad()) return host.To(device);
        }
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
        Tensor y;
        if (KernelDispatch.IsAccelerated(this)) y = KernelDispatch.Convert(this, dtype);
        else
        {
            y = Allocate(ShapeArray(), dtype, zero: false, "To");
            Cpu.Copy.Into(this, y);
        }
        if (dtype.IsFloatingPoint() && DType.IsFloatingPoint())
        {
            var from = DType;
            Graph.Record(y, "to", this, g => g.To(from));
        }
        return y;
    }

    /// <summary>
    /// This tensor on <paramref name="device"/> (this tensor itself if it already is there): a contiguous
    /// copy, made through the host between two accelerators. Gradients flow back: the backward copies
    /// the gradient to this tensor's device. Moving to an accelerator opens it on first use
    /// (<see cref="DeviceRegistry"/>); a missing backend throws a <see cref="NotSupportedException"/> saying why.
    /// </summary>
    public Tensor To(Device device)
    {
        if (device == Device) return this;
        var source = Device;
        Tensor y;
        using (NoGrad())
        {
            if (source.Type != DeviceType.Cpu && device.Type != DeviceType.Cpu)
            {
                using var host = To(Device.Cpu);
                y = host.To(device);
            }
            else
            {
                using var c = Contiguous(); // on the source device
                y = Allocate(ShapeArray(), DType, zero: false, "To", device);
                long bytes = NumEl * DType.ElementSize();
                if (bytes > 0)
                {
                    unsafe
                    {
                        if (device.Type == DeviceType.Cpu)
                        {
                            var span = new Span<byte>((byte*)((CpuBuffer)y.Storage.Buffer).Pointer, checked((int)bytes));
                            DeviceRegistry.Get(source).CopyToHost(c.Storage.Buffer, span, c.Offset * DType.ElementSize());
                        }
                        else
                        {
                            var span = new ReadOnlySpan<byte>((byte*)((CpuBuffer)c.Storage.Buffer).Pointer + c.Offset * DType.ElementSize(), checked((int)bytes));
                            DeviceRegistry.Get(device).CopyFromHost(y.Storage.Buffer, span);
                        }
                    }
                }
            }
        }
        return Graph.Record(y, "to_device", this, g => g.To(source));
    }
}
