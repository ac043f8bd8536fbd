using Engine.Runtime;
using Engine.Runtime.Kernels;
using Engine.Tensors.Cpu;

namespace Engine.Tensors.Kernels;

/// <summary>
/// The kernel implementation of the ops, for tensors on an accelerator device (emulator, OpenCL,
/// CUDA): one method per op family, each picking the kernel of kernels/ and its launch shape from
/// the family's plan. The ops (Ops/*.cs, the dispatchers of Cpu/OpFamilies.cs) call these when
/// their input is not on the CPU; autograd records the same backward formulas either way, so a
/// backward runs on the device through these too.
/// <para>
/// The kernels are float32, and float64 for the elementwise families, comparisons, where and the
/// sum/max/min reductions (KernelDispatch.Float64.cs). An op or a dtype with no kernel throws a
/// <see cref="NotSupportedException"/> naming the op and the device (<see cref="NoKernel"/>):
/// nothing is ever computed silently on another device. Outputs are new contiguous tensors on the
/// input's device; launches are queued in order on the device's one accelerator
/// (<see cref="DeviceRegistry"/>), and reading a result (To(Device.Cpu)) waits for them.
/// </para>
/// </summary>
internal static partial class KernelDispatch
{
    /// <summary>True when <paramref name="t"/> lives on an accelerator device (its ops run kernels).</summary>
    public static bool IsAccelerated(Tensor t) => t.Device.Type != DeviceType.Cpu;

    /// <summary>The error for an op that has no kernel yet.</summary>
    public static NotSupportedException NoKernel(string op, Device device)
        => new($"{op} has no kernel for {device} yet; move the tensor to the CPU with To(Device.Cpu).");

    /// <summary>Throws when <paramref name="a"/> and <paramref name="b"/> are on different devices (both named).</summary>
    public static void CheckSameDevice(string op, Tensor a, Tensor b)
    {
        if (a.Device != b.Device)
            throw new ArgumentException(
                $"{op}: the operands are on different devices ({a.Device} for shape {ShapeUtil.Format(a.Shape)}, {b.Device} for shape {ShapeUtil.Format(b.Shape)}); move one with To(Device) first.");
    }

    private static void RequireFloat32(string op, Tensor t)
    {
        if (t.DType != DType.Float32)
            throw new NotSupportedException(
                $"{op} has no kernel for {t.DType.Name()} tensors on {t.Device} yet (the kernels are float32); move the tensor to the CPU with To(Device.Cpu).");
    }

    private static Accelerator Accelerator(Tensor t) => DeviceRegistry.Get(t.Device);

    /// <summary>The tensor's whole storage as a kernel view (the layouts carry the offset and strides).</summary>
    private static ArrayView<float> Whole(Tensor t) => t.Storage.Buffer.View<float>();

    /// <summary>The elements of a contiguous tensor as a kernel view starting at its offset.</summary>
    private static ArrayView<float> Elements(Tensor t) => Whole(t).SubView(t.Offset, t.NumEl);

    private static Tensor Output(long[] shape, Tensor like, string op) => Tensor.Allocate(shape, DType.Float32, zero: false, op, like.Device);

    // ------------------------------------------------------------------ elementwise

    /// <summary>op(a, b) with broadcasting and strided inputs (add, sub, mul, div, maximum, minimum, pow; TieMaskOp).</summary>
    public static Tensor Binary<TOp>(string op, Tensor a, Tensor b) where TOp : INumericBinary
    {
        CheckSameDevice(op, a, b);
        if (IsFloat64(a, b)) return Binary64<TOp>(op, a, b); // KernelDispatch.Float64.cs
        RequireFloat32(op, a);
        RequireFloat32(op, b);
        Action<IKernelLauncher, Dim3, Dim3, ArrayView<float>, ArrayView<float>, ArrayView<float>, ElementwiseLayout> launch =
            typeof(TOp) == typeof(Tensor.AddOp) ? (l, g, s, x, w, y, p) => ElementwiseKernels.Launch.Binary__Tensor_AddOp(l, g, s, x, w, y, p)
            : typeof(TOp) == typeof(Tensor.SubOp) ? (l, g, s, x, w, y, p) => ElementwiseKernels.Launch.Binary__Tensor_SubOp(l, g, s, x, w, y, p)
            : typeof(TOp) == typeof(Tensor.MulOp) ? (l, g, s, x, w, y, p) => ElementwiseKernels.Launch.Binary__Tensor_MulOp(l, g, s, x, w, y, p)
            : typeof(TOp) == typeof(Tensor.DivOp) ? (l, g, s, x, w, y, p) => ElementwiseKernels.Launch.Binary__Tensor_DivOp(l, g, s, x, w, y, p)
            : typeof(TOp) == typeof(TieMaskOp) ? (l, g, s, x, w, y, p) => ElementwiseKernels.Launch.Binary__TieMaskOp(l, g, s, x, w, y, p)
            : typeof(TOp) == typeof(Tensor.MaxOp) ? (l, g, s, x, w, y, p) => ElementwiseKernels.Launch.Binary__Tensor_MaxOp(l, g, s, x, w, y, p)
            : typeof(TOp) == typeof(Tensor.MinOp) ? (l, g, s, x, w, y, p) => ElementwiseKernels.Launch.Binary__Tensor_MinOp(l, g, s, x, w, y, p)
            : typeof(TOp) == typeof(Tensor.PowOp) ? (l, g, s, x, w, y, p) => MathKernels.Launch.FloatBinary__FloatPowOp(l, g, s, x, w, y, p)
            : throw NoKernel(op, a.Device);
        var y = Output(ShapeUtil.Broadcast(op, a.Shape, b.Shape), a, op);
        if (y.NumEl > 0)
            launch(Accelerator(a), ElementwisePlan.Groups(y.NumEl), ElementwisePlan.GroupSize, Whole(a), Whole(b), Whole(y), ElementwisePlan.Binary(a, b));
        return y;
    }

    /// <summary>op(x) for a float math function with a kernel (exp, log, tanh, sigmoid, sin, cos, silu; sqrt and rsqrt from kernels/Norm; erf and gelu from MathKernels.DeviceUnary).</summary>
    public static Tensor FloatUnary<TOp>(string op, Tensor x) where TOp : IFloatUnary
    {
        if (IsFloat64(x)) return Unary64<TOp>(op, x);
        Action<IKernelLauncher, Dim3, Dim3, ArrayView<float>, ArrayView<float>, ElementwiseLayout> launch =
            typeof(TOp) == typeof(Tensor.ExpOp) ? (l, g, s, v, y, p) => ElementwiseKernels.Launch.FloatUnary__Tensor_ExpOp(l, g, s, v, y, p)
            : typeof(TOp) == typeof(Tensor.LogOp) ? (l, g, s, v, y, p) => ElementwiseKernels.Launch.FloatUnary__Tensor_LogOp(l, g, s, v, y, p)
            : typeof(TOp) == typeof(Tensor.TanhOp) ? (l, g, s, v, y, p) => ElementwiseKernels.Launch.FloatUnary__Tensor_TanhOp(l, g, s, v, y, p)
            : typeof(TOp) == typeof(Tensor.SigmoidOp) ? (l, g, s, v, y, p) => ElementwiseKernels.Launch.FloatUnary__Tensor_SigmoidOp(l, g, s, v, y, p)
            : typeof(TOp) == typeof(Tensor.SqrtOp) ? (l, g, s, v, y, p) => NormKernels.Launch.NormUnary__Tensor_SqrtOp(l, g, s, v, y, p)
            : typeof(TOp) == typeof(Tensor.RsqrtOp) ? (l, g, s, v, y, p) => NormKernels.Launch.NormUnary__Tensor_RsqrtOp(l, g, s, v, y, p)
            : typeof(TOp) == typeof(Tensor.SinOp) ? (l, g, s, v, y, p) => ElementwiseKernels.Launch.FloatUnary__Tensor_SinOp(l, g, s, v, y, p)
            : typeof(TOp) == typeof(Tensor.CosOp) ? (l, g, s, v, y, p) => ElementwiseKernels.Launch.FloatUnary__Tensor_CosOp(l, g, s, v, y, p)
            : typeof(TOp) == typeof(Tensor.SiluOp) ? (l, g, s, v, y, p) => ElementwiseKernels.Launch.FloatUnary__Tensor_SiluOp(l, g, s, v, y, p)
            : typeof(TOp) == typeof(Tensor.ErfOp) ? (l, g, s, v, y, p) => MathKernels.Launch.DeviceUnary__DeviceErfOp(l, g, s, v, y, p)
            : typeof(TOp) == typeof(Tensor.GeluOp) ? (l, g, s, v, y, p) => MathKernels.Launch.DeviceUnary__DeviceGeluOp(l, g, s, v, y, p)
            : typeof(TOp) == typeof(Tensor.GeluTanhOp) ? (l, g, s, v, y, p) => MathKernels.Launch.DeviceUnary__DeviceGeluTanhOp(l, g, s, v, y, p)
            : throw NoKernel(op, x.Device);
        return Unary(op, x, launch);
    }

    /// <summary>op(x) for an op defined on every number type, with a float32 kernel (relu, neg, sign; PositiveMaskOp; abs from MathKernels.DeviceUnary).</summary>
    public static Tensor NumericUnary<TOp>(string op, Tensor x) where TOp : INumericUnary
    {
        if (IsFloat64(x)) return Unary64<TOp>(op, x);
        Action<IKernelLauncher, Dim3, Dim3, ArrayView<float>, ArrayView<float>, ElementwiseLayout> launch =
            typeof(TOp) == typeof(Tensor.ReluOp) ? (l, g, s, v, y, p) => ElementwiseKernels.Launch.NumericUnary__Tensor_ReluOp(l, g, s, v, y, p)
            : typeof(TOp) == typeof(NegOp) ? (l, g, s, v, y, p) => ElementwiseKernels.Launch.NumericUnary__NegOp(l, g, s, v, y, p)
            : typeof(TOp) == typeof(PositiveMaskOp) ? (l, g, s, v, y, p) => ElementwiseKernels.Launch.NumericUnary__PositiveMaskOp(l, g, s, v, y, p)
            : typeof(TOp) == typeof(Tensor.SignOp) ? (l, g, s, v, y, p) => ElementwiseKernels.Launch.NumericUnary__Tensor_SignOp(l, g, s, v, y, p)
            : typeof(TOp) == typeof(Tensor.AbsOp) ? (l, g, s, v, y, p) => MathKernels.Launch.DeviceUnary__DeviceAbsOp(l, g, s, v, y, p)
            : throw NoKernel(op, x.Device);
        return Unary(op, x, launch);
    }

    private static Tensor Unary(string op, Tensor x, Action<IKernelLauncher, Dim3, Dim3, ArrayView<float>, ArrayView<float>, ElementwiseLayout> launch)
    {
        RequireFloat32(op, x);
        var y = Output(x.ShapeArray(), x, op);
        if (y.NumEl > 0)
            launch(Accelerator(x), ElementwisePlan.Groups(y.NumEl), ElementwisePlan.GroupSize, Whole(x), Whole(y), ElementwisePlan.Unary(x));
        return y;
    }

    /// <summary>
    /// Copies <paramref name="src"/> (broadcast to the destination's shape) into the strided
    /// <paramref name="dst"/> (Contiguous, Clone, CopyFrom_, and Fill_ from a 0-d tensor). Same dtype only.
    /// </summary>
    public static void Copy(string op, Tensor src, Tensor dst)
    {
        CheckSameDevice(op, src, dst);
        if (dst.DType != DType.Float32 && src.DType == dst.DType)
        {
            CopyBits(op, src, dst); // int64, float64, int32, bool: KernelDispatch.Indexing.cs
            return;
        }
        RequireFloat32(op, dst);
        if (src.DType != dst.DType)
            throw NoKernel($"{op} from {src.DType.Name()} to {dst.DType.Name()}", dst.Device);
        long count = dst.NumEl;
        if (count == 0) return;
        var layout = ElementwisePlan.Binary(dst.Shape, src.Shape, src.Strides, src.Offset, dst.Shape, dst.Strides, dst.Offset);
        ElementwiseKernels.Launch.StridedCopy(Accelerator(dst), ElementwisePlan.Groups(count), ElementwisePlan.GroupSize, Whole(src), Whole(dst), layout, (int)count);
    }

    // ------------------------------------------------------------------ reductions

    /// <summary>
    /// Sum, max or (<paramref name="min"/>) min over the dims in <paramref name="mask"/> (no graph recording). The Reduce kernels
    /// reduce one dim of a contiguous tensor; several dims are reduced one after another, last
    /// first (each pass writes a contiguous tensor with that dim of size 1). Numerics: as the
    /// kernels (float accumulation, see ReduceKernels.cs); a multi-dim sum adds per-dim partial
    /// sums, which rounds differently from one pass over all elements but no worse.
    /// </summary>
    public static Tensor Reduce(string op, Tensor x, bool[] mask, bool keepDim, bool max, bool min = false)
    {
        if (x.DType != DType.Float64) RequireFloat32(op, x);
        using var _ = Tensor.NoGrad();
        var current = x.Contiguous();
        try
        {
            for (int d = x.Rank - 1; d >= 0; d--)
            {
                if (!mask[d]) continue;
                var next = ReduceDim(op, current, d, max, min);
                current.Dispose();
                current = next;
            }
            if (ReferenceEquals(current, x) || current.Storage == x.Storage)
            {
                // Nothing reduced (a 0-d tensor, or no dims): the result is still a new tensor.
                var copy = Tensor.Allocate(x.ShapeArray(), x.DType, zero: false, op, x.Device);
                Copy(op, current, copy);
                current.Dispose();
                current = copy;
            }
            var result = current.View(ReductionRunner.OutputShape(x.Shape, mask, keepDim));
            current.Dispose();
            return result;
        }
        catch
        {
            current.Dispose();
            throw;
        }
    }

    private static Tensor ReduceDim(string op, Tensor x, int dim, bool max, bool min)
    {
        if (x.DType == DType.Float64) return ReduceDim64(op, x, dim, max, min);
        var launch = ReducePlan.Along(x.Shape, dim, min ? "min" : max ? "max" : "sum");
        var shape = x.ShapeArray();
        shape[dim] = 1;
        var y = Output(shape, x, op);
        if (!launch.HasWork) return y;
        var acc = Accelerator(x);
        var (input, output) = (Elements(x), Whole(y));
        if (min)
        {
            if (launch.Columns) ReduceKernels.Launch.ReduceColumns__MinReduce(acc, launch.Grid, launch.Group, input, output, launch.N, launch.Inner);
            else ReduceKernels.Launch.ReduceRows__MinReduce(acc, launch.Grid, launch.Group, input, output, launch.N);
            return y;
        }
        switch (launch.Columns, max)
        {
            case (false, false): ReduceKernels.Launch.ReduceRows__SumReduce(acc, launch.Grid, launch.Group, input, output, launch.N); break;
            case (false, true): ReduceKernels.Launch.ReduceRows__MaxReduce(acc, launch.Grid, launch.Group, input, output, launch.N); break;
            case (true, false): ReduceKernels.Launch.ReduceColumns__SumReduce(acc, launch.Grid, launch.Group, input, output, launch.N, launch.Inner); break;
            case (true, true): ReduceKernels.Launch.ReduceColumns__MaxReduce(acc, launch.Grid, launch.Group, input, output, launch.N, launch.Inner); break;
        }
        return y;
    }

    /// <summary>
    /// The gradient weights of max over <paramref name="mask"/>: 1/count at the elements equal to
    /// their row's max (NaN equal to NaN), 0 elsewhere, of <paramref name="x"/>'s shape (as the CPU's
    /// TieWeights). <paramref name="y"/> is the max as returned (with or without the reduced dims).
    /// </summary>
    public static Tensor TieWeights(Tensor x, Tensor y, bool[] mask, bool keepDim)
    {
        using var _ = Tensor.NoGrad();
        using var yk = y.ExpandReduced(mask, keepDim);
        using var hits = Binary<TieMaskOp>("max backward", x, yk);
        using var count = Reduce("max backward", hits, mask, keepDim: true, max: false);
        return Binary<Tensor.DivOp>("max backward", hits, count);
    }

    // ------------------------------------------------------------------ softmax

    /// <summary>Softmax or log-softmax of <paramref name="x"/> along <paramref name="dim"/> with temperature (no graph recording).</summary>
    public static Tensor Softmax(string op, Tensor x, int dim, double temperature, bool log)
    {
        RequireFloat32(op, x);
        float invT = SoftmaxPlan.InverseTemperature(temperature);
        return AlongLastDim(x, null, dim, (rows, _, y, n) =>
        {
            var (grid, group) = SoftmaxPlan.For(rows.NumEl / Math.Max(n, 1), n);
            if (grid.X == 0) return;
            if (log) SoftmaxKernels.Launch.LogSoftmaxForward(Accelerator(rows), grid, group, Elements(rows), Whole(y), (int)n, invT);
            else SoftmaxKernels.Launch.SoftmaxForward(Accelerator(rows), grid, group, Elements(rows), Whole(y), (int)n, invT);
        }, op);
    }

    /// <summary>The input gradient of softmax / log-softmax from its saved output <paramref name="y"/> and <paramref name="g"/> (not differentiable).</summary>
    public static Tensor SoftmaxBackward(string op, Tensor y, Tensor g, int dim, double temperature, bool log)
    {
        CheckSameDevice(op, y, g);
        RequireFloat32(op, y);
        RequireFloat32(op, g);
        float invT = SoftmaxPlan.InverseTemperature(temperature);
        return AlongLastDim(y, g, dim, (rows, grads, dx, n) =>
        {
            var (grid, group) = SoftmaxPlan.For(rows.NumEl / Math.Max(n, 1), n);
            if (grid.X == 0) return;
            if (log) SoftmaxKernels.Launch.LogSoftmaxBackward(Accelerator(rows), grid, group, Elements(rows), Elements(grads!), Whole(dx), (int)n, invT);
            else SoftmaxKernels.Launch.SoftmaxBackward(Accelerator(rows), grid, group, Elements(rows), Elements(grads!), Whole(dx), (int)n, invT);
        }, op + " backward");
    }

    /// <summary>
    /// Runs a row kernel over <paramref name="dim"/>: moves it last and makes the operands contiguous
    /// (a copy unless they already are), runs <paramref name="run"/>(rows, second rows, output, n) and
    /// moves the dim back (one more copy when it was not last).
    /// </summary>
    private static Tensor AlongLastDim(Tensor x, Tensor? second, int dim, Action<Tensor, Tensor?, Tensor, long> run, string op)
    {
        using var _ = Tensor.NoGrad();
        int rank = x.Rank;
        int d = rank == 0 ? 0 : ShapeUtil.NormalizeDim(op, dim, rank);
        long n = rank == 0 ? 1 : x.Shape[d];
        bool last = rank == 0 || d == rank - 1;
        var perm = Enumerable.Range(0, rank).Where(i => i != d).Append(d).ToArray();
        using var xp = last ? x.Alias() : x.Permute(perm);
        using var rows = xp.Contiguous();
        using var sp = second is null ? null : last ? second.Alias() : second.Permute(perm);
        using var secondRows = sp?.Contiguous();
        var y = Output(rows.ShapeArray(), x, op);
        run(rows, secondRows, y, n);
        if (last) return y;
        var inverse = new int[rank];
        for (int i = 0; i < rank; i++) inverse[perm[i]] = i;
        using (y)
        using (var back = y.Permute(inverse))
            return back.Contiguous();
    }

    // ------------------------------------------------------------------ matmul

    /// <summary>
    /// [..., M, K]·[..., K, N] for operands of rank ≥ 2 with broadcast batch dims <paramref name="batch"/>
    /// (no graph recording). Operands of rank 2, or of rank 3 when the batch has one dim, go to GemmPlan.Run (Sgemm128 or Sgemm)
    /// through their strides (transposes and broadcast batches are never copied); more batch dims
    /// are flattened into one (a copy when the operand's batch dims cannot be viewed as one).
    /// </summary>
    public static Tensor MatMul(Tensor a, Tensor b, long[] batch)
    {
        const string op = "matmul";
        CheckSameDevice(op, a, b);
        RequireFloat32(op, a);
        RequireFloat32(op, b);
        using var _ = Tensor.NoGrad();
        using var a3 = Batched(a, batch);
        using var b3 = Batched(b, batch);
        var (layout, count, shape) = GemmPlan.For(a3, b3);
        var c = Output(shape, a, op);
        GemmPlan.Run(Accelerator(a), layout, count, Whole(a3), Whole(b3), Whole(c));
        long[] outShape = [.. batch, a.Shape[^2], b.Shape[^1]];
        using (c) return c.View(outShape);
    }

    /// <summary><paramref name="t"/> as a rank-2 or rank-3 operand of Sgemm for <paramref name="batch"/>.</summary>
    private static Tensor Batched(Tensor t, long[] batch)
    {
        if (t.Rank == 2 || (t.Rank == 3 && batch.Length == 1)) return t.Alias();
        long rows = t.Shape[^2], cols = t.Shape[^1];
        using var expanded = t.Expand([.. batch, rows, cols]);
        return expanded.Reshape(ShapeUtil.NumEl(batch), rows, cols);
    }
}
