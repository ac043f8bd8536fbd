using Engine.Runtime.Kernels;

namespace Engine.Tensors.Kernels;

internal static partial class KernelDispatch
{
    [ThreadStatic] private static long t_optimizerLaunches;

    /// <summary>Optimizer kernel launches (SgdStep, AdamStep, SgdStepMulti, AdamStepMulti) made by this thread (tests count them).</summary>
    internal static long OptimizerLaunchesOnThisThread => t_optimizerLaunches;

    /// <summary>
    /// Fills the first three ints of each entry of <paramref name="table"/> (first chunk, offset, length) from
    /// <paramref name="slots"/> and returns the number of chunks (the grid).
    /// </summary>
    private static int FillChunkTable(IReadOnlyList<Optim.FlatParameters.Slot> slots, int[] table)
    {
        const int stride = FusedOptimKernels.TableStride, chunk = FusedOptimKernels.ChunkElements;
        long chunks = 0;
        for (int e = 0; e < slots.Count; e++)
        {
            table[e * stride] = checked((int)chunks);
            table[e * stride + 1] = checked((int)slots[e].Offset);
            table[e * stride + 2] = checked((int)slots[e].Length);
            chunks += (slots[e].Length + chunk - 1) / chunk;
        }
        return checked((int)chunks);
    }

    /// <summary>
    /// One SGD step of the parameters <paramref name="slots"/> of <paramref name="flat"/> in ONE launch
    /// (kernels/Optim/FusedOptimKernels.cs SgdStepMulti; per element the math of <see cref="SgdStep"/>, the same
    /// kernel function). Their gradients are in their slots of the flat gradient buffer; their momentum
    /// buffers (with momentum) are views of the flat "momentum_buffer" state.
    /// </summary>
    /// <param name="flat">The device's flat layout.</param>
    /// <param name="slots">The parameters to step (each with a gradient), in table order.</param>
    /// <param name="table">4 ints per slot; the caller has set the flags (bit 0 decay, bit 1 first), this fills the rest.</param>
    /// <param name="scalars">2 floats per slot: lr, weight decay.</param>
    /// <param name="momentum">Momentum factor.</param>
    /// <param name="dampening">Dampening.</param>
    /// <param name="nesterov">Nesterov momentum.</param>
    public static void SgdStepMulti(Optim.FlatParameters flat, IReadOnlyList<Optim.FlatParameters.Slot> slots, int[] table, float[] scalars,
        double momentum, double dampening, bool nesterov)
    {
        if (slots.Count == 0) return;
        int chunks = FillChunkTable(slots, table);
        var buffer = momentum != 0 ? Whole(flat.FlatState("momentum_buffer") ?? throw new InvalidOperationException("SGD step: no flat momentum buffer.")) : default;
        var (t, s) = flat.Upload(table, scalars);
        FusedOptimKernels.Launch.SgdStepMulti(Accelerator(flat.Parameters), new Dim3(chunks), FusedOptimKernels.GroupSize,
            Whole(flat.Parameters), Whole(flat.Grads), buffer, t.Storage.Buffer.View<int>().SubView(t.Offset, t.NumEl), Elements(s), slots.Count,
            (float)momentum, (float)(1 - dampening), momentum != 0, nesterov);
        t_optimizerLaunches++;
    }

    /// <summary>
    /// One Adam / AdamW step of the parameters <paramref name="slots"/> of <paramref name="flat"/> in ONE launch
    /// (kernels/Optim/FusedOptimKernels.cs AdamStepMulti; per element the math of <see cref="AdamStep"/>, the same
    /// kernel function). Their states are views of the flat "exp_avg", "exp_avg_sq" (and "max_exp_avg_sq") buffers.
    /// </summary>
    /// <param name="flat">The device's flat layout.</param>
    /// <param name="slots">The parameters to step (each with a gradient), in table order.</param>
    /// <param name="table">4 ints per slot; the caller has set the flags (bit 0 decoupled, bit 1 coupled), this fills the rest.</param>
    /// <param name="scalars">4 floats per slot: decayFactor, l2, stepSize, bc2.</param>
    /// <param name="beta1">β1.</param>
    /// <param name="beta2">β2.</param>
    /// <param name="eps">Added to the denominator after the bias correction.</param>
    /// <param name="amsgrad">Whether the flat "max_exp_avg_sq" buffer is used.</param>
    public static void AdamStepMulti(Optim.FlatParameters flat, IReadOnlyList<Optim.FlatParameters.Slot> slots, int[] table, float[] scalars,
        double beta1, double beta2, double eps, bool amsgrad)
    {
        if (slots.Count == 0) return;
        int chunks = FillChunkTable(slots, table);
        static Tensor State(Optim.FlatParameters flat, string name) => flat.FlatState(name) ?? throw new InvalidOperationException($"Adam step: no flat {name} buffer.");
        var vmax = amsgrad ? Whole(State(flat, "max_exp_avg_sq")) : default;
        var (t, s) = flat.Upload(table, scalars);
        FusedOptimKernels.Launch.AdamStepMulti(Accelerator(flat.Parameters), new Dim3(chunks), FusedOptimKernels.GroupSize,
            Whole(flat.Parameters), Whole(flat.Grads), Whole(State(flat, "exp_avg")), Whole(State(flat, "exp_avg_sq")), vmax,
            t.Storage.Buffer.View<int>().SubView(t.Offset, t.NumEl), Elements(s), slots.Count,
            (float)(1 - beta1), (float)beta2, (float)(1 - beta2), (float)eps);
        t_optimizerLaunches++;
    }

    /// <summary>
    /// One SGD step of a parameter on an accelerator device, in place (kernels/Optim SgdStep; the math of
    /// <see cref="Optim.SGD"/>, which calls this for device parameters): d = g (+ wd·p); with momentum
    /// b = first ? d : momentum·b + (1 − dampening)·d, d = nesterov ? d + momentum·b : b; p = p − lr·d.
    /// The double arguments are rounded to float as the CPU path rounds them.
    /// </summary>
    /// <param name="parameter">p: contiguous float32 on an accelerator device, updated in place.</param>
    /// <param name="grad">g: contiguous, same shape and device.</param>
    /// <param name="momentumBuffer">b: contiguous, same shape and device, updated in place; null without momentum.</param>
    /// <param name="lr">Learning rate.</param>
    /// <param name="weightDecay">L2 penalty added to the gradient (0: none).</param>
    /// <param name="momentum">Momentum factor (0: none; then <paramref name="momentumBuffer"/> may be null).</param>
    /// <param name="dampening">Dampening of the momentum's new term.</param>
    /// <param name="nesterov">Nesterov momentum.</param>
    /// <param name="first">True on the buffer's first step (b = d).</param>
    public static void SgdStep(Tensor parameter, Tensor grad, Tensor? momentumBuffer, double lr, double weightDecay, double momentum, double dampening, bool nesterov, bool first)
    {
        const string op = "SGD step";
        CheckOptimOperand(op, parameter, parameter, "parameter");
        CheckOptimOperand(op, parameter, grad, "gradient");
        bool useMomentum = momentum != 0;
        if (useMomentum)
        {
            if (momentumBuffer is null) throw new ArgumentNullException(nameof(momentumBuffer), $"{op}: momentum {momentum} needs a momentum buffer.");
            CheckOptimOperand(op, parameter, momentumBuffer, "momentum buffer");
        }
        if (parameter.NumEl == 0) return;
        var buffer = useMomentum ? Elements(momentumBuffer!) : default;
        OptimKernels.Launch.SgdStep(Accelerator(parameter), OptimPlan.Groups(parameter.NumEl), OptimKernels.GroupSize,
            Elements(parameter), Elements(grad), buffer, (int)parameter.NumEl,
            (float)lr, (float)weightDecay, (float)momentum, (float)(1 - dampening), weightDecay != 0, useMomentum, first, nesterov);
        t_optimizerLaunches++;
    }

    /// <summary>
    /// One Adam / AdamW step of a parameter on an accelerator device, in place (kernels/Optim AdamStep; the
    /// math of <see cref="Optim.Adam"/>, which calls this for device parameters): p = p·decayFactor (if ≠ 1);
    /// g = g + l2·p (if l2 ≠ 0); m = m + (1 − β1)(g − m); v = β2·v + (1 − β2)·g²; v̂ = amsgrad ? max(vmax, v) : v;
    /// p = p − stepSize · m / (sqrt(v̂)/bc2Sqrt + eps). The step-dependent scalars come from the optimizer
    /// (float64), rounded to float here as the CPU path rounds them.
    /// </summary>
    /// <param name="parameter">p: contiguous float32 on an accelerator device, updated in place.</param>
    /// <param name="grad">g: contiguous, same shape and device.</param>
    /// <param name="expAvg">m, updated in place.</param>
    /// <param name="expAvgSq">v, updated in place.</param>
    /// <param name="maxExpAvgSq">AMSGrad's max of v, updated in place; null when amsgrad is off.</param>
    /// <param name="decayFactor">AdamW's 1 − lr·wd (1: no decoupled decay).</param>
    /// <param name="l2">Adam's L2 penalty (0: none).</param>
    /// <param name="beta1">β1.</param>
    /// <param name="beta2">β2.</param>
    /// <param name="stepSize">lr / (1 − β1^t).</param>
    /// <param name="bc2Sqrt">sqrt(1 − β2^t).</param>
    /// <param name="eps">Added to the denominator after the bias correction.</param>
    public static void AdamStep(Tensor parameter, Tensor grad, Tensor expAvg, Tensor expAvgSq, Tensor? maxExpAvgSq,
        double decayFactor, double l2, double beta1, double beta2, double stepSize, double bc2Sqrt, double eps)
    {
        const string op = "Adam step";
        CheckOptimOperand(op, parameter, parameter, "parameter");
        CheckOptimOperand(op, parameter, grad, "gradient");
        CheckOptimOperand(op, parameter, expAvg, "exp_avg");
        CheckOptimOperand(op, parameter, expAvgSq, "exp_avg_sq");
        if (maxExpAvgSq is not null) CheckOptimOperand(op, parameter, maxExpAvgSq, "max_exp_avg_sq");
        if (parameter.NumEl == 0) return;
        var vmax = maxExpAvgSq is null ? default : Elements(maxExpAvgSq);
        OptimKernels.Launch.AdamStep(Accelerator(parameter), OptimPlan.Groups(parameter.NumEl), OptimKernels.GroupSize,
            Elements(parameter), Elements(grad), Elements(expAvg), Elements(expAvgSq), vmax, (int)parameter.NumEl,
            (float)decayFactor, (float)l2, (float)(1 - beta1), (float)beta2, (float)(1 - beta2), (float)stepSize, (float)bc2Sqrt, (float)eps,
            decayFactor != 1, l2 != 0);
        t_optimizerLaunches++;
    }

    private static void CheckOptimOperand(string op, Tensor parameter, Tensor operand, string what)
    {
        if (!IsAccelerated(parameter))
            throw new NotSupportedException($"{op}: the parameter of shape {ShapeUtil.Format(parameter.Shape)} is on {parameter.Device}; this kernel runs on accelerator devices.");
        CheckSameDevice(op, parameter, operand);
        RequireFloat32(op, operand);
        if (!operand.IsContiguous || !ShapeUtil.SameShape(operand.Shape, parameter.Shape))
            throw new ArgumentException($"{op}: the {what} must be contiguous and of the parameter's shape {ShapeUtil.Format(parameter.Shape)}; got {ShapeUtil.Format(operand.Shape)}{(operand.IsContiguous ? "" : " (not contiguous)")}.");
    }
}
