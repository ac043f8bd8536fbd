using Engine.Runtime.Kernels;
using Engine.Tensors.Cpu;

namespace Engine.Tensors.Kernels;

/// <summary>
/// float64 tensors on a device (kernels/Elementwise/Float64Kernels.cs): the elementwise families, comparisons,
/// where, sum/max/min reductions and conversions float32 ↔ float64 ↔ bool. The float32 entries of this class
/// (<see cref="Binary{TOp}"/>, <see cref="FloatUnary{TOp}"/>, <see cref="NumericUnary{TOp}"/>,
/// <see cref="Compare{TOp}"/>, <see cref="Reduce"/>, <see cref="Where"/>, <see cref="Convert"/>) forward double
/// tensors here. A float32 operand of a binary op with a float64 one is converted on the device first (PyTorch's
/// promotion); integer operands have no float64 kernel (NotSupportedException naming the op).
/// </summary>
internal static partial class KernelDispatch
{
    private static ArrayView<double> Doubles(Tensor t) => t.Storage.Buffer.View<double>();

    /// <summary>Whether an elementwise op with these operands runs the float64 kernels.</summary>
    private static bool IsFloat64(Tensor a, Tensor? b = null) => a.DType == DType.Float64 || b?.DType == DType.Float64;

    /// <summary><paramref name="t"/> as float64 on its device: itself (an alias) when it is, a converted copy when float32.</summary>
    private static Tensor AsFloat64(string op, Tensor t)
    {
        if (t.DType == DType.Float64) return t.Alias();
        if (t.DType != DType.Float32)
            throw new NotSupportedException($"{op} has no kernel mixing {t.DType.Name()} and float64 tensors on {t.Device} yet; convert with To(DType.Float64) first.");
        return Convert(t, DType.Float64);
    }

    private static Tensor Output64(long[] shape, Tensor like, string op) => Tensor.Allocate(shape, DType.Float64, zero: false, op, like.Device);

    /// <summary>op(a, b) for float64 (add, sub, mul, div, maximum, minimum, pow, the tie mask), broadcasting and strided.</summary>
    private static Tensor Binary64<TOp>(string op, Tensor a, Tensor b) where TOp : INumericBinary
    {
        Action<IKernelLauncher, Dim3, Dim3, ArrayView<double>, ArrayView<double>, ArrayView<double>, ElementwiseLayout> launch =
            typeof(TOp) == typeof(Tensor.AddOp) ? (l, g, s, x, w, y, p) => Float64Kernels.Launch.Binary64__Tensor_AddOp(l, g, s, x, w, y, p)
            : typeof(TOp) == typeof(Tensor.SubOp) ? (l, g, s, x, w, y, p) => Float64Kernels.Launch.Binary64__Tensor_SubOp(l, g, s, x, w, y, p)
            : typeof(TOp) == typeof(Tensor.MulOp) ? (l, g, s, x, w, y, p) => Float64Kernels.Launch.Binary64__Tensor_MulOp(l, g, s, x, w, y, p)
            : typeof(TOp) == typeof(Tensor.DivOp) ? (l, g, s, x, w, y, p) => Float64Kernels.Launch.Binary64__Tensor_DivOp(l, g, s, x, w, y, p)
            : typeof(TOp) == typeof(Tensor.MaxOp) ? (l, g, s, x, w, y, p) => Float64Kernels.Launch.Binary64__Tensor_MaxOp(l, g, s, x, w, y, p)
            : typeof(TOp) == typeof(Tensor.MinOp) ? (l, g, s, x, w, y, p) => Float64Kernels.Launch.Binary64__Tensor_MinOp(l, g, s, x, w, y, p)
            : typeof(TOp) == typeof(TieMaskOp) ? (l, g, s, x, w, y, p) => Float64Kernels.Launch.Binary64__TieMaskOp(l, g, s, x, w, y, p)
            : typeof(TOp) == typeof(Tensor.PowOp) ? (l, g, s, x, w, y, p) => Float64Kernels.Launch.FloatBinary64__FloatPowOp(l, g, s, x, w, y, p)
            : throw NoKernel($"{op} of float64 tensors", a.Device);
        using var _ = Tensor.NoGrad();
        using var ca = AsFloat64(op, a);
        using var cb = AsFloat64(op, b);
        var y = Output64(ShapeUtil.Broadcast(op, a.Shape, b.Shape), a, op);
        if (y.NumEl > 0)
            launch(Accelerator(a), ElementwisePlan.Groups(y.NumEl), ElementwisePlan.GroupSize, Doubles(ca), Doubles(cb), Doubles(y), ElementwisePlan.Binary(ca, cb));
        return y;
    }

    /// <summary>op(x) for a float64 math function or numeric op with a kernel.</summary>
    private static Tensor Unary64<TOp>(string op, Tensor x)
    {
        Action<IKernelLauncher, Dim3, Dim3, ArrayView<double>, ArrayView<double>, ElementwiseLayout> launch =
            typeof(TOp) == typeof(Tensor.ExpOp) ? (l, g, s, v, y, p) => Float64Kernels.Launch.FloatUnary64__Tensor_ExpOp(l, g, s, v, y, p)
            : typeof(TOp) == typeof(Tensor.LogOp) ? (l, g, s, v, y, p) => Float64Kernels.Launch.FloatUnary64__Tensor_LogOp(l, g, s, v, y, p)
            : typeof(TOp) == typeof(Tensor.TanhOp) ? (l, g, s, v, y, p) => Float64Kernels.Launch.FloatUnary64__Tensor_TanhOp(l, g, s, v, y, p)
            : typeof(TOp) == typeof(Tensor.SigmoidOp) ? (l, g, s, v, y, p) => Float64Kernels.Launch.FloatUnary64__Tensor_SigmoidOp(l, g, s, v, y, p)
            : typeof(TOp) == typeof(Tensor.SqrtOp) ? (l, g, s, v, y, p) => Float64Kernels.Launch.FloatUnary64__Tensor_SqrtOp(l, g, s, v, y, p)
            : typeof(TOp) == typeof(Tensor.RsqrtOp) ? (l, g, s, v, y, p) => Float64Kernels.Launch.FloatUnary64__Tensor_RsqrtOp(l, g, s, v, y, p)
            : typeof(TOp) == typeof(Tensor.SiluOp) ? (l, g, s, v, y, p) => Float64Kernels.Launch.FloatUnary64__Tensor_SiluOp(l, g, s, v, y, p)
            : typeof(TOp) == typeof(Tensor.ReluOp) ? (l, g, s, v, y, p) => Float64Kernels.Launch.NumericUnary64__Tensor_ReluOp(l, g, s, v, y, p)
            : typeof(TOp) == typeof(NegOp) ? (l, g, s, v, y, p) => Float64Kernels.Launch.NumericUnary64__NegOp(l, g, s, v, y, p)
            : typeof(TOp) == typeof(PositiveMaskOp) ? (l, g, s, v, y, p) => Float64Kernels.Launch.NumericUnary64__PositiveMaskOp(l, g, s, v, y, p)
            : typeof(TOp) == typeof(Tensor.SignOp) ? (l, g, s, v, y, p) => Float64Kernels.Launch.NumericUnary64__Tensor_SignOp(l, g, s, v, y, p)
            : throw NoKernel($"{op} of a float64 tensor", x.Device);
        var y = Output64(x.ShapeArray(), x, op);
        if (y.NumEl > 0)
            launch(Accelerator(x), ElementwisePlan.Groups(y.NumEl), ElementwisePlan.GroupSize, Doubles(x), Doubles(y), ElementwisePlan.Unary(x));
        return y;
    }

    /// <summary>a ∘ b → bool for float64 operands (a float32 one is converted first).</summary>
    private static Tensor Compare64<TOp>(string op, Tensor a, Tensor b) where TOp : IComparison
    {
        Action<IKernelLauncher, Dim3, Dim3, ArrayView<double>, ArrayView<double>, ArrayView<byte>, ElementwiseLayout> launch =
            typeof(TOp) == typeof(Tensor.EqOp) ? (l, g, s, x, w, y, p) => Float64Kernels.Launch.Compare64__Tensor_EqOp(l, g, s, x, w, y, p)
            : typeof(TOp) == typeof(Tensor.NeOp) ? (l, g, s, x, w, y, p) => Float64Kernels.Launch.Compare64__Tensor_NeOp(l, g, s, x, w, y, p)
            : typeof(TOp) == typeof(Tensor.LtOp) ? (l, g, s, x, w, y, p) => Float64Kernels.Launch.Compare64__Tensor_LtOp(l, g, s, x, w, y, p)
            : typeof(TOp) == typeof(Tensor.LeOp) ? (l, g, s, x, w, y, p) => Float64Kernels.Launch.Compare64__Tensor_LeOp(l, g, s, x, w, y, p)
            : typeof(TOp) == typeof(Tensor.GtOp) ? (l, g, s, x, w, y, p) => Float64Kernels.Launch.Compare64__Tensor_GtOp(l, g, s, x, w, y, p)
            : typeof(TOp) == typeof(Tensor.GeOp) ? (l, g, s, x, w, y, p) => Float64Kernels.Launch.Compare64__Tensor_GeOp(l, g, s, x, w, y, p)
            : throw NoKernel($"{op} of float64 tensors", a.Device);
        using var _ = Tensor.NoGrad();
        using var ca = AsFloat64(op, a);
        using var cb = AsFloat64(op, b);
        var y = Tensor.Allocate(ShapeUtil.Broadcast(op, a.Shape, b.Shape), DType.Bool, zero: false, op, a.Device);
        if (y.NumEl > 0)
            launch(Accelerator(a), ElementwisePlan.Groups(y.NumEl), ElementwisePlan.GroupSize, Doubles(ca), Doubles(cb), y.Storage.Buffer.View<byte>(), ElementwisePlan.Binary(ca, cb));
        return y;
    }

    /// <summary>The float64 conversions (float32 ↔ float64, bool ↔ float64); false when the pair has no kernel here.</summary>
    private static bool TryConvert64(Tensor x, Tensor y)
    {
        var layout = ElementwisePlan.Unary(x);
        var (acc, grid, group) = (Accelerator(x), ElementwisePlan.Groups(y.NumEl), ElementwisePlan.GroupSize);
        var (from, to) = (x.Storage.Buffer, y.Storage.Buffer);
        switch (x.DType, y.DType)
        {
            case (DType.Float32, DType.Float64): Float64Kernels.Launch.FloatToDouble(acc, grid, group, from.View<float>(), to.View<double>(), layout); return true;
            case (DType.Float64, DType.Float32): Float64Kernels.Launch.DoubleToFloat(acc, grid, group, from.View<double>(), to.View<float>(), layout); return true;
            case (DType.Bool, DType.Float64): Float64Kernels.Launch.BoolToDouble(acc, grid, group, from.View<byte>(), to.View<double>(), layout); return true;
            case (DType.Float64, DType.Bool): Float64Kernels.Launch.DoubleToBool(acc, grid, group, from.View<double>(), to.View<byte>(), layout); return true;
            default: return false;
        }
    }

    /// <summary>One float64 reduction pass along <paramref name="dim"/> of contiguous <paramref name="x"/> (sum, max or min).</summary>
    private static Tensor ReduceDim64(string op, Tensor x, int dim, bool max, bool min)
    {
        var launch = ReducePlan.Along(x.Shape, dim, min ? "min" : max ? "max" : "sum");
        var shape = x.ShapeArray();
        shape[dim] = 1;
        var y = Output64(shape, x, op);
        if (!launch.HasWork) return y;
        var acc = Accelerator(x);
        var (input, output) = (Doubles(x).SubView(x.Offset, x.NumEl), Doubles(y));
        switch (launch.Columns, min, max)
        {
            case (false, true, _): Float64Kernels.Launch.ReduceRows64__MinReduce64(acc, launch.Grid, launch.Group, input, output, launch.N); break;
            case (false, false, true): Float64Kernels.Launch.ReduceRows64__MaxReduce64(acc, launch.Grid, launch.Group, input, output, launch.N); break;
            case (false, false, false): Float64Kernels.Launch.ReduceRows64__SumReduce64(acc, launch.Grid, launch.Group, input, output, launch.N); break;
            case (true, true, _): Float64Kernels.Launch.ReduceColumns64__MinReduce64(acc, launch.Grid, launch.Group, input, output, launch.N, launch.Inner); break;
            case (true, false, true): Float64Kernels.Launch.ReduceColumns64__MaxReduce64(acc, launch.Grid, launch.Group, input, output, launch.N, launch.Inner); break;
            case (true, false, false): Float64Kernels.Launch.ReduceColumns64__SumReduce64(acc, launch.Grid, launch.Group, input, output, launch.N, launch.Inner); break;
        }
        return y;
    }
}
