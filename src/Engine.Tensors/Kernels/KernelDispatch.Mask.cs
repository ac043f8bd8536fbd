using Engine.Runtime.Kernels;
using Engine.Tensors.Cpu;

namespace Engine.Tensors.Kernels;

/// <summary>Comparisons and dtype conversions on a device (kernels/Indexing/MaskKernels.cs).</summary>
internal static partial class KernelDispatch
{
    /// <summary>a ∘ b → bool with broadcasting for float32 operands (eq, ne, lt, le, gt, ge); other dtypes have no kernel.</summary>
    public static Tensor Compare<TOp>(string op, Tensor a, Tensor b) where TOp : IComparison
    {
        CheckSameDevice(op, a, b);
        if (IsFloat64(a, b)) return Compare64<TOp>(op, a, b); // KernelDispatch.Float64.cs
        RequireFloat32(op, a);
        RequireFloat32(op, b);
        Action<IKernelLauncher, Dim3, Dim3, ArrayView<float>, ArrayView<float>, ArrayView<byte>, ElementwiseLayout> launch =
            typeof(TOp) == typeof(Tensor.EqOp) ? (l, g, s, x, w, y, p) => MaskKernels.Launch.Compare__Tensor_EqOp(l, g, s, x, w, y, p)
            : typeof(TOp) == typeof(Tensor.NeOp) ? (l, g, s, x, w, y, p) => MaskKernels.Launch.Compare__Tensor_NeOp(l, g, s, x, w, y, p)
            : typeof(TOp) == typeof(Tensor.LtOp) ? (l, g, s, x, w, y, p) => MaskKernels.Launch.Compare__Tensor_LtOp(l, g, s, x, w, y, p)
            : typeof(TOp) == typeof(Tensor.LeOp) ? (l, g, s, x, w, y, p) => MaskKernels.Launch.Compare__Tensor_LeOp(l, g, s, x, w, y, p)
            : typeof(TOp) == typeof(Tensor.GtOp) ? (l, g, s, x, w, y, p) => MaskKernels.Launch.Compare__Tensor_GtOp(l, g, s, x, w, y, p)
            : typeof(TOp) == typeof(Tensor.GeOp) ? (l, g, s, x, w, y, p) => MaskKernels.Launch.Compare__Tensor_GeOp(l, g, s, x, w, y, p)
            : throw NoKernel(op, a.Device);
        var y = Tensor.Allocate(ShapeUtil.Broadcast(op, a.Shape, b.Shape), DType.Bool, zero: false, op, a.Device);
        if (y.NumEl > 0)
            launch(Accelerator(a), ElementwisePlan.Groups(y.NumEl), ElementwisePlan.GroupSize, Whole(a), Whole(b), y.Storage.Buffer.View<byte>(), ElementwisePlan.Binary(a, b));
        return y;
    }

    /// <summary>
    /// Tensor.To(dtype) on a device for int64, int32 and bool → float32, float32 → bool, and float32/bool ↔
    /// float64 (no graph here: Tensor.To records the float ↔ float one). Other pairs have no kernel.
    /// </summary>
    public static Tensor Convert(Tensor x, DType dtype)
    {
        string op = $"To({dtype.Name()}) of a {x.DType.Name()} tensor";
        var y = Tensor.Allocate(x.ShapeArray(), dtype, zero: false, "To", x.Device);
        var layout = ElementwisePlan.Unary(x);
        var (acc, grid, group) = (Accelerator(x), ElementwisePlan.Groups(y.NumEl), ElementwisePlan.GroupSize);
        var from = x.Storage.Buffer;
        var to = y.Storage.Buffer;
        try
        {
            if (y.NumEl == 0) return y;
            if (TryConvert64(x, y)) return y; // float32/bool ↔ float64: KernelDispatch.Float64.cs
            switch (x.DType, dtype)
            {
                case (DType.Int64, DType.Float32): MaskKernels.Launch.LongToFloat(acc, grid, group, from.View<long>(), to.View<float>(), layout); break;
                case (DType.Int32, DType.Float32): MaskKernels.Launch.IntToFloat(acc, grid, group, from.View<int>(), to.View<float>(), layout); break;
                case (DType.Bool, DType.Float32): MaskKernels.Launch.BoolToFloat(acc, grid, group, from.View<byte>(), to.View<float>(), layout); break;
                case (DType.Float32, DType.Bool): MaskKernels.Launch.FloatToBool(acc, grid, group, from.View<float>(), to.View<byte>(), layout); break;
                default: throw NoKernel(op, x.Device);
            }
            return y;
        }
        catch
        {
            y.Dispose();
            throw;
        }
    }
}
