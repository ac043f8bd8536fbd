using System.Numerics;
using Engine.Tensors.Kernels;

namespace Engine.Tensors.Cpu;

/// <summary>
/// An arithmetic op defined once for every numeric element type (float, double, int, long).
/// One struct per op holds the math for the scalar and the vector path (see STYLE.md).
/// </summary>
internal interface INumericBinary
{
    static abstract T Invoke<T>(T a, T b) where T : INumber<T>;

    static virtual void Invoke<T>(ReadOnlySpan<T> a, ReadOnlySpan<T> b, Span<T> y) where T : INumber<T>
        => throw new NotSupportedException();

    static virtual void Invoke<T>(ReadOnlySpan<T> a, T b, Span<T> y) where T : INumber<T>
        => throw new NotSupportedException();

    static virtual void Invoke<T>(T a, ReadOnlySpan<T> b, Span<T> y) where T : INumber<T>
        => throw new NotSupportedException();

    /// <summary>True when the op implements the vector forms (otherwise the scalar form is looped).</summary>
    static virtual bool HasVectorForm => false;
}

/// <summary>A math function on floating-point values (exp, log, tanh, ...), for float and double.</summary>
internal interface IFloatUnary
{
    static abstract T Invoke<T>(T x) where T : IFloatingPointIeee754<T>;

    static virtual void Invoke<T>(ReadOnlySpan<T> x, Span<T> y) where T : IFloatingPointIeee754<T>
        => throw new NotSupportedException();

    /// <summary>True when the op implements the vector form (otherwise the scalar form is looped).</summary>
    static virtual bool HasVectorForm => false;
}

/// <summary>Adapts an <see cref="INumericBinary"/> op to the typed loop interface.</summary>
internal readonly struct NumericBinary<T, TOp> : IBinaryOp<NumericBinary<T, TOp>, T, T, T>
    where T : INumber<T> where TOp : INumericBinary
{
    public static T Invoke(T a, T b) => TOp.Invoke(a, b);

    public static void Invoke(ReadOnlySpan<T> a, ReadOnlySpan<T> b, Span<T> y)
    {
        if (TOp.HasVectorForm) TOp.Invoke(a, b, y);
        else for (int i = 0; i < a.Length; i++) y[i] = TOp.Invoke(a[i], b[i]);
    }

    public static void Invoke(ReadOnlySpan<T> a, T b, Span<T> y)
    {
        if (TOp.HasVectorForm) TOp.Invoke(a, b, y);
        else for (int i = 0; i < a.Length; i++) y[i] = TOp.Invoke(a[i], b);
    }

    public static void Invoke(T a, ReadOnlySpan<T> b, Span<T> y)
    {
        if (TOp.HasVectorForm) TOp.Invoke(a, b, y);
        else for (int i = 0; i < b.Length; i++) y[i] = TOp.Invoke(a, b[i]);
    }
}

/// <summary>Runs family ops on tensors: dtype promotion, output allocation, dispatch by dtype.</summary>
internal static class Dispatch
{
    /// <summary>op(a, b) with broadcasting and PyTorch's type promotion, for numeric dtypes.</summary>
    public static Tensor NumericBinary<TOp>(string name, Tensor a, Tensor b) where TOp : INumericBinary
    {
        KernelDispatch.CheckSameDevice(name, a, b);
        if (KernelDispatch.IsAccelerated(a)) return KernelDispatch.Binary<TOp>(name, a, b);
        var dtype = DTypes.Promote(a.DType, b.DType);
        if (dtype == DType.Bool)
            throw new ArgumentException($"{name}: not defined for bool tensors; convert with To(DType.Int32) or use LogicalAnd/LogicalOr.");
        var shape = ShapeUtil.Broadcast(name, a.Shape, b.Shape);
        var ca = a.To(dtype);
        var cb = b.To(dtype);
        try
        {
            var y = Tensor.Allocate(shape, dtype, zero: false, name);
            switch (dtype)
            {
                case DType.Float32: Elementwise.Map<float, float, float, NumericBinary<float, TOp>>(ca, cb, y); break;
                case DType.Float64: Elementwise.Map<double, double, double, NumericBinary<double, TOp>>(ca, cb, y); break;
                case DType.Int32: Elementwise.Map<int, int, int, NumericBinary<int, TOp>>(ca, cb, y); break;
                case DType.Int64: Elementwise.Map<long, long, long, NumericBinary<long, TOp>>(ca, cb, y); break;
            }
            return y;
        }
        finally
        {
            if (!ReferenceEquals(ca, a)) ca.Dispose();
            if (!ReferenceEquals(cb, b)) cb.Dispose();
        }
    }

    /// <summary>op(x) for a floating-point math function; integer and bool inputs are promoted to float32.</summary>
    public static Tensor FloatUnary<TOp>(string name, Tensor x) where TOp : IFloatUnary
    {
        if (KernelDispatch.IsAccelerated(x)) return KernelDispatch.FloatUnary<TOp>(name, x);
        var dtype = x.DType.IsFloatingPoint() ? x.DType : DType.Float32;
        var cx = x.To(dtype);
        try
        {
            var y = Tensor.Allocate(x.ShapeArray(), dtype, zero: false, name);
            if (dtype == DType.Float32) Elementwise.Map<float, float, FloatUnary<float, TOp>>(cx, y);
            else Elementwise.Map<double, double, FloatUnary<double, TOp>>(cx, y);
            return y;
        }
        finally
        {
            if (!ReferenceEquals(cx, x)) cx.Dispose();
        }
    }
}

/// <summary>Adapts an <see cref="IFloatUnary"/> op to the typed loop interface.</summary>
internal readonly struct FloatUnary<T, TOp> : IUnaryOp<FloatUnary<T, TOp>, T, T>
    where T : IFloatingPointIeee754<T> where TOp : IFloatUnary
{
    public static T Invoke(T x) => TOp.Invoke(x);

    public static void Invoke(ReadOnlySpan<T> x, Span<T> y)
    {
        if (TOp.HasVectorForm) TOp.Invoke(x, y);
        else for (int i = 0; i < x.Length; i++) y[i] = TOp.Invoke(x[i]);
    }
}
