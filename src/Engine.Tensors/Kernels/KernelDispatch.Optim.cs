using Engine.Runtime.Kernels;

namespace Engine.Tensors.Kernels;

internal static partial class KernelDispatch
{
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
