using System.Numerics;
using Engine.Tensors.Kernels;

namespace Engine.Tensors.Cpu;

/// <summary>
/// A one-input op defined once for every numeric element type (float, double, int, long):
/// abs, relu, sign. The float math functions (exp, tanh, ...) are <see cref="IFloatUnary"/> instead.
/// </summary>
internal interface INumericUnary
{
    static abstract T Invoke<T>(T x) where T : INumber<T>;

    static virtual void Invoke<T>(ReadOnlySpan<T> x, Span<T> y) where T : INumber<T>
        => throw new NotSupportedException();

    /// <summary>True when the op implements the vector form (otherwise the scalar form is looped).</summary>
    static virtual bool HasVectorForm => false;
}

/// <summary>A comparison a ∘ b → bool, defined once for every numeric element type. IEEE semantics:
/// every comparison with NaN is false except ≠.</summary>
internal interface IComparison
{
    static abstract bool Invoke<T>(T a, T b) where T : INumber<T>;
}

/// <summary>Adapts an <see cref="INumericUnary"/> op to the typed loop interface.</summary>
internal readonly struct NumericUnary<T, TOp> : IUnaryOp<NumericUnary<T, TOp>, T, T>
    where T : INumber<T> where TOp : INumericUnary
{
    public static T Invoke(T x) => TOp.Invoke(x);

    public static void Invoke(ReadOnlySpan<T> x, Span<T> y)
    {
        if (TOp.HasVectorForm) TOp.Invoke(x, y);
        else for (int i = 0; i < x.Length; i++) y[i] = TOp.Invoke(x[i]);
    }
}

/// <summary>Adapts an <see cref="IComparison"/> op to the typed loop interface (scalar loops; the
/// bool output has no <c>TensorPrimitives</c> form).</summary>
internal readonly struct Comparison<T, TOp> : IBinaryOp<Comparison<T, TOp>, T, T, bool>
    where T : INumber<T> where TOp : IComparison
{
    public static bool Invoke(T a, T b) => TOp.Invoke(a, b);
}

/// <summary>where(cond, a, b) for one element type.</summary>
internal readonly struct WhereOp<T> : ITernaryOp<bool, T, T, T>
{
    public static T Invoke(bool c, T a, T b) => c ? a : b;
}

/// <summary>Runs the families of this file on tensors: dtype checks and promotion, output allocation, dispatch by dtype.</summary>
internal static class ElementwiseDispatch
{
    /// <summary>op(x) for a numeric (non-bool) tensor; the output has x's dtype.</summary>
    public static Tensor NumericUnary<TOp>(string name, Tensor x) where TOp : INumericUnary
    {
        if (x.DType == DType.Bool)
            throw new ArgumentException($"{name}: not defined for bool tensors (shape {ShapeUtil.Format(x.Shape)}); convert with To(DType.Int32) first.");
        if (KernelDispatch.IsAccelerated(x)) return KernelDispatch.NumericUnary<TOp>(name, x);
        var y = Tensor.Allocate(x.ShapeArray(), x.DType, zero: false, name);
        switch (x.DType)
        {
            case DType.Float32: Elementwise.Map<float, float, NumericUnary<float, TOp>>(x, y); break;
            case DType.Float64: Elementwise.Map<double, double, NumericUnary<double, TOp>>(x, y); break;
            case DType.Int32: Elementwise.Map<int, int, NumericUnary<int, TOp>>(x, y); break;
            case DType.Int64: Elementwise.Map<long, long, NumericUnary<long, TOp>>(x, y); break;
        }
        return y;
    }

    /// <summary>
    /// a ∘ b → bool with broadcasting, compared in the promoted dtype of a and b (PyTorch's rule).
    /// Bool operands are compared as 0/1 integers.
    /// </summary>
    public static Tensor Compare<TOp>(string name, Tensor a, Tensor b) where TOp : IComparison
    {
        KernelDispatch.CheckSameDevice(name, a, b);
        if (KernelDispatch.IsAccelerated(a)) return KernelDispatch.Compare<TOp>(name, a, b);
        var shape = ShapeUtil.Broadcast(name, a.Shape, b.Shape);
        var dtype = DTypes.Promote(a.DType, b.DType);
        if (dtype == DType.Bool) dtype = DType.Int32;
        var ca = a.To(dtype);
        var cb = b.To(dtype);
        try
        {
            var y = Tensor.Allocate(shape, DType.Bool, zero: false, name);
            switch (dtype)
            {
                case DType.Float32: Elementwise.Map<float, float, bool, Comparison<float, TOp>>(ca, cb, y); break;
                case DType.Float64: Elementwise.Map<double, double, bool, Comparison<double, TOp>>(ca, cb, y); break;
                case DType.Int32: Elementwise.Map<int, int, bool, Comparison<int, TOp>>(ca, cb, y); break;
                case DType.Int64: Elementwise.Map<long, long, bool, Comparison<long, TOp>>(ca, cb, y); break;
            }
            return y;
        }
        finally
        {
            if (!ReferenceEquals(ca, a)) ca.Dispose();
            if (!ReferenceEquals(cb, b)) cb.Dispose();
        }
    }

    /// <summary>where(cond, a, b): cond must be bool; a and b are promoted to a common dtype; all three broadcast.</summary>
    public static Tensor Where(string name, Tensor cond, Tensor a, Tensor b)
    {
        foreach (var t in (ReadOnlySpan<Tensor>)[cond, a, b])
            if (KernelDispatch.IsAccelerated(t)) throw KernelDispatch.NoKernel(name, t.Device);
        if (cond.DType != DType.Bool)
            throw new ArgumentException($"{name}: the condition must be a bool tensor, got {cond.DType.Name()} of shape {ShapeUtil.Format(cond.Shape)}; build it with a comparison (Gt, Eq, ...) or To(DType.Bool).");
        var shape = ShapeUtil.Broadcast(name, ShapeUtil.Broadcast(name, cond.Shape, a.Shape), b.Shape);
        var dtype = DTypes.Promote(a.DType, b.DType);
        var ca = a.To(dtype);
        var cb = b.To(dtype);
        try
        {
            var y = Tensor.Allocate(shape, dtype, zero: false, name);
            switch (dtype)
            {
                case DType.Float32: Elementwise.Map<bool, float, float, float, WhereOp<float>>(cond, ca, cb, y); break;
                case DType.Float64: Elementwise.Map<bool, double, double, double, WhereOp<double>>(cond, ca, cb, y); break;
                case DType.Int32: Elementwise.Map<bool, int, int, int, WhereOp<int>>(cond, ca, cb, y); break;
                case DType.Int64: Elementwise.Map<bool, long, long, long, WhereOp<long>>(cond, ca, cb, y); break;
                case DType.Bool: Elementwise.Map<bool, bool, bool, bool, WhereOp<bool>>(cond, ca, cb, y); break;
            }
            return y;
        }
        finally
        {
            if (!ReferenceEquals(ca, a)) ca.Dispose();
            if (!ReferenceEquals(cb, b)) cb.Dispose();
        }
    }
}
