using System.Numerics;
using System.Numerics.Tensors;
using Engine.Tensors.AutoDiff;
using Engine.Tensors.Cpu;

namespace Engine.Tensors;

/// <summary>Arithmetic: + − × ÷ with broadcasting, and their gradients.</summary>
public sealed partial class Tensor
{
    /// <summary>this + other (broadcast). d/dthis = g, d/dother = g (each summed to its shape).</summary>
    public Tensor Add(Tensor other)
    {
        var y = Dispatch.NumericBinary<AddOp>("add", this, other);
        var (sa, sb) = (_shape, other._shape);
        return Graph.Record(y, "add", [this, other], g => [g.SumToShape(sa), g.SumToShape(sb)]);
    }

    /// <summary>this − other (broadcast). d/dthis = g, d/dother = −g.</summary>
    public Tensor Sub(Tensor other)
    {
        var y = Dispatch.NumericBinary<SubOp>("sub", this, other);
        var (sa, sb) = (_shape, other._shape);
        bool gb = other.RequiresGrad;
        return Graph.Record(y, "sub", [this, other], g => [g.SumToShape(sa), gb ? g.Neg().SumToShape(sb) : null]);
    }

    /// <summary>this × other (broadcast). d/dthis = g·other, d/dother = g·this.</summary>
    public Tensor Mul(Tensor other)
    {
        var y = Dispatch.NumericBinary<MulOp>("mul", this, other);
        bool ga = RequiresGrad, gb = other.RequiresGrad;
        var (sa, sb) = (_shape, other._shape);
        return Graph.Record(y, "mul", [this, other], [this, other], (g, s) => [
            ga ? g.Mul(s[1]).SumToShape(sa) : null,
            gb ? g.Mul(s[0]).SumToShape(sb) : null]);
    }

    /// <summary>this ÷ other (broadcast; integer division truncates). d/dthis = g/other, d/dother = −g·this/other².</summary>
    public Tensor Div(Tensor other)
    {
        var y = Dispatch.NumericBinary<DivOp>("div", this, other);
        bool ga = RequiresGrad, gb = other.RequiresGrad;
        var (sa, sb) = (_shape, other._shape);
        return Graph.Record(y, "div", [this, other], [this, other], (g, s) => [
            ga ? g.Div(s[1]).SumToShape(sa) : null,
            gb ? g.Neg().Mul(s[0]).Div(s[1].Mul(s[1])).SumToShape(sb) : null]);
    }

    /// <summary>−this. Gradient −g.</summary>
    public Tensor Neg()
    {
        using var minusOne = ScalarLike(-1, DType == DType.Bool ? DType.Int32 : DType, Device);
        Tensor y;
        using (NoGrad())
            y = Dispatch.NumericBinary<MulOp>("neg", this, minusOne);
        return Graph.Record(y, "neg", this, g => g.Neg()); // recorded outside NoGrad, or neg would cut the graph
    }

    /// <summary>this + <paramref name="value"/>.</summary>
    public Tensor Add(double value) { using var s = ScalarOf(value); return Add(s); }

    /// <summary>this − <paramref name="value"/>.</summary>
    public Tensor Sub(double value) { using var s = ScalarOf(value); return Sub(s); }

    /// <summary>this × <paramref name="value"/>.</summary>
    public Tensor Mul(double value) { using var s = ScalarOf(value); return Mul(s); }

    /// <summary>this ÷ <paramref name="value"/>.</summary>
    public Tensor Div(double value) { using var s = ScalarOf(value); return Div(s); }

    /// <summary>A 0-d tensor for a C# number used with this tensor: keeps this dtype (as PyTorch does for
    /// Python scalars), except that a fractional value with an integer tensor gives float32.</summary>
    internal Tensor ScalarOf(double value)
    {
        var dtype = DType.IsFloatingPoint() ? DType
            : value == Math.Floor(value) && !double.IsInfinity(value) && DType != DType.Bool ? DType
            : DType.Float32;
        return ScalarLike(value, dtype, Device);
    }

    /// <summary>Sums <paramref name="shape"/>-broadcast dims away: the gradient of a broadcast.</summary>
    internal Tensor SumToShape(long[] shape)
    {
        if (ShapeUtil.SameShape(Shape, shape)) return this;
        int lead = Rank - shape.Length;
        var dims = new List<int>();
        for (int i = 0; i < Rank; i++)
            if (i < lead || (shape[i - lead] == 1 && _shape[i] != 1)) dims.Add(i);
        var summed = Sum(dims.ToArray(), keepDim: true);
        return summed.Rank == shape.Length && ShapeUtil.SameShape(summed.Shape, shape) ? summed : summed.Reshape(shape);
    }

#pragma warning disable CS1591 // operators mirror the named methods documented above
    public static Tensor operator +(Tensor a, Tensor b) => a.Add(b);
    public static Tensor operator -(Tensor a, Tensor b) => a.Sub(b);
    public static Tensor operator *(Tensor a, Tensor b) => a.Mul(b);
    public static Tensor operator /(Tensor a, Tensor b) => a.Div(b);
    public static Tensor operator -(Tensor a) => a.Neg();
    public static Tensor operator +(Tensor a, double b) => a.Add(b);
    public static Tensor operator -(Tensor a, double b) => a.Sub(b);
    public static Tensor operator *(Tensor a, double b) => a.Mul(b);
    public static Tensor operator /(Tensor a, double b) => a.Div(b);
    public static Tensor operator +(double a, Tensor b) => b.Add(a);
    public static Tensor operator -(double a, Tensor b) { using var s = b.ScalarOf(a); return s.Sub(b); }
    public static Tensor operator *(double a, Tensor b) => b.Mul(a);
    public static Tensor operator /(double a, Tensor b) { using var s = b.ScalarOf(a); return s.Div(b); }
#pragma warning restore CS1591

    internal readonly struct AddOp : INumericBinary
    {
        public static T Invoke<T>(T a, T b) where T : INumber<T> => a + b;
        public static void Invoke<T>(ReadOnlySpan<T> a, ReadOnlySpan<T> b, Span<T> y) where T : INumber<T> => TensorPrimitives.Add(a, b, y);
        public static void Invoke<T>(ReadOnlySpan<T> a, T b, Span<T> y) where T : INumber<T> => TensorPrimitives.Add(a, b, y);
        public static void Invoke<T>(T a, ReadOnlySpan<T> b, Span<T> y) where T : INumber<T> => TensorPrimitives.Add(b, a, y);
        public static bool HasVectorForm => true;
    }

    internal readonly struct SubOp : INumericBinary
    {
        public static T Invoke<T>(T a, T b) where T : INumber<T> => a - b;
        public static void Invoke<T>(ReadOnlySpan<T> a, ReadOnlySpan<T> b, Span<T> y) where T : INumber<T> => TensorPrimitives.Subtract(a, b, y);
        public static void Invoke<T>(ReadOnlySpan<T> a, T b, Span<T> y) where T : INumber<T> => TensorPrimitives.Subtract(a, b, y);
        public static void Invoke<T>(T a, ReadOnlySpan<T> b, Span<T> y) where T : INumber<T> => TensorPrimitives.Subtract(a, b, y);
        public static bool HasVectorForm => true;
    }

    internal readonly struct MulOp : INumericBinary
    {
        public static T Invoke<T>(T a, T b) where T : INumber<T> => a * b;
        public static void Invoke<T>(ReadOnlySpan<T> a, ReadOnlySpan<T> b, Span<T> y) where T : INumber<T> => TensorPrimitives.Multiply(a, b, y);
        public static void Invoke<T>(ReadOnlySpan<T> a, T b, Span<T> y) where T : INumber<T> => TensorPrimitives.Multiply(a, b, y);
        public static void Invoke<T>(T a, ReadOnlySpan<T> b, Span<T> y) where T : INumber<T> => TensorPrimitives.Multiply(b, a, y);
        public static bool HasVectorForm => true;
    }

    internal readonly struct DivOp : INumericBinary
    {
        public static T Invoke<T>(T a, T b) where T : INumber<T> => a / b;
        public static void Invoke<T>(ReadOnlySpan<T> a, ReadOnlySpan<T> b, Span<T> y) where T : INumber<T> => TensorPrimitives.Divide(a, b, y);
        public static void Invoke<T>(ReadOnlySpan<T> a, T b, Span<T> y) where T : INumber<T> => TensorPrimitives.Divide(a, b, y);
        public static void Invoke<T>(T a, ReadOnlySpan<T> b, Span<T> y) where T : INumber<T> => TensorPrimitives.Divide(a, b, y);
        public static bool HasVectorForm => true;
    }
}
