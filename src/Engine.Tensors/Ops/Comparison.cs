using System.Numerics;
using Engine.Tensors.Cpu;
using Engine.Tensors.Kernels;

namespace Engine.Tensors;

/// <summary>
/// Comparisons (eq, ne, lt, le, gt, ge) and logical ops, all returning bool tensors. Operands
/// broadcast and are compared in their promoted dtype (int32 vs float32 compares in float32); a
/// number operand takes this tensor's dtype as in <see cref="Add(double)"/>. NaN compares unequal to
/// everything, itself included (IEEE). None of these records a gradient: their outputs are bool.
/// </summary>
public sealed partial class Tensor
{
    /// <summary>this == other, elementwise (broadcast).</summary>
    public Tensor Eq(Tensor other) => ElementwiseDispatch.Compare<EqOp>("eq", this, other);

    /// <summary>this ≠ other, elementwise (broadcast).</summary>
    public Tensor Ne(Tensor other) => ElementwiseDispatch.Compare<NeOp>("ne", this, other);

    /// <summary>this &lt; other, elementwise (broadcast).</summary>
    public Tensor Lt(Tensor other) => ElementwiseDispatch.Compare<LtOp>("lt", this, other);

    /// <summary>this ≤ other, elementwise (broadcast).</summary>
    public Tensor Le(Tensor other) => ElementwiseDispatch.Compare<LeOp>("le", this, other);

    /// <summary>this &gt; other, elementwise (broadcast).</summary>
    public Tensor Gt(Tensor other) => ElementwiseDispatch.Compare<GtOp>("gt", this, other);

    /// <summary>this ≥ other, elementwise (broadcast).</summary>
    public Tensor Ge(Tensor other) => ElementwiseDispatch.Compare<GeOp>("ge", this, other);

    /// <summary>this == <paramref name="value"/>, elementwise.</summary>
    public Tensor Eq(double value) { using var s = ScalarOf(value); return Eq(s); }

    /// <summary>this ≠ <paramref name="value"/>, elementwise.</summary>
    public Tensor Ne(double value) { using var s = ScalarOf(value); return Ne(s); }

    /// <summary>this &lt; <paramref name="value"/>, elementwise.</summary>
    public Tensor Lt(double value) { using var s = ScalarOf(value); return Lt(s); }

    /// <summary>this ≤ <paramref name="value"/>, elementwise.</summary>
    public Tensor Le(double value) { using var s = ScalarOf(value); return Le(s); }

    /// <summary>this &gt; <paramref name="value"/>, elementwise.</summary>
    public Tensor Gt(double value) { using var s = ScalarOf(value); return Gt(s); }

    /// <summary>this ≥ <paramref name="value"/>, elementwise.</summary>
    public Tensor Ge(double value) { using var s = ScalarOf(value); return Ge(s); }

    /// <summary>this AND other (broadcast). Non-bool operands count as true where non-zero, as in PyTorch.</summary>
    public Tensor LogicalAnd(Tensor other) => Logical<AndOp>("logical_and", this, other);

    /// <summary>this OR other (broadcast). Non-bool operands count as true where non-zero.</summary>
    public Tensor LogicalOr(Tensor other) => Logical<OrOp>("logical_or", this, other);

    /// <summary>this XOR other (broadcast). Non-bool operands count as true where non-zero.</summary>
    public Tensor LogicalXor(Tensor other) => Logical<XorOp>("logical_xor", this, other);

    /// <summary>NOT this. Non-bool elements count as true where non-zero.</summary>
    public Tensor LogicalNot()
    {
        if (KernelDispatch.IsAccelerated(this)) return KernelDispatch.Logical("logical_not", this, this, MathKernels.Not);
        var b = DType == DType.Bool ? this : To(DType.Bool);
        try
        {
            var y = Allocate(ShapeArray(), DType.Bool, zero: false, "logical_not");
            Elementwise.Map<bool, bool, NotOp>(b, y);
            return y;
        }
        finally
        {
            if (!ReferenceEquals(b, this)) b.Dispose();
        }
    }

    private static Tensor Logical<TOp>(string name, Tensor a, Tensor b) where TOp : IBinaryOp<TOp, bool, bool, bool>
    {
        KernelDispatch.CheckSameDevice(name, a, b);
        if (KernelDispatch.IsAccelerated(a))
            return KernelDispatch.Logical(name, a, b, typeof(TOp) == typeof(AndOp) ? MathKernels.And : typeof(TOp) == typeof(OrOp) ? MathKernels.Or : MathKernels.Xor);
        var shape = ShapeUtil.Broadcast(name, a.Shape, b.Shape);
        var ba = a.DType == DType.Bool ? a : a.To(DType.Bool);
        var bb = b.DType == DType.Bool ? b : b.To(DType.Bool);
        try
        {
            var y = Allocate(shape, DType.Bool, zero: false, name);
            Elementwise.Map<bool, bool, bool, TOp>(ba, bb, y);
            return y;
        }
        finally
        {
            if (!ReferenceEquals(ba, a)) ba.Dispose();
            if (!ReferenceEquals(bb, b)) bb.Dispose();
        }
    }

    internal readonly struct EqOp : IComparison { public static bool Invoke<T>(T a, T b) where T : INumber<T> => a == b; }
    internal readonly struct NeOp : IComparison { public static bool Invoke<T>(T a, T b) where T : INumber<T> => a != b; }
    internal readonly struct LtOp : IComparison { public static bool Invoke<T>(T a, T b) where T : INumber<T> => a < b; }
    internal readonly struct LeOp : IComparison { public static bool Invoke<T>(T a, T b) where T : INumber<T> => a <= b; }
    internal readonly struct GtOp : IComparison { public static bool Invoke<T>(T a, T b) where T : INumber<T> => a > b; }
    internal readonly struct GeOp : IComparison { public static bool Invoke<T>(T a, T b) where T : INumber<T> => a >= b; }

    private readonly struct AndOp : IBinaryOp<AndOp, bool, bool, bool> { public static bool Invoke(bool a, bool b) => a & b; }
    private readonly struct OrOp : IBinaryOp<OrOp, bool, bool, bool> { public static bool Invoke(bool a, bool b) => a | b; }
    private readonly struct XorOp : IBinaryOp<XorOp, bool, bool, bool> { public static bool Invoke(bool a, bool b) => a ^ b; }
    private readonly struct NotOp : IUnaryOp<NotOp, bool, bool> { public static bool Invoke(bool x) => !x; }
}
