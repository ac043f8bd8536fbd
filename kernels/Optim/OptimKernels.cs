// Fused optimizer steps: one kernel updates a whole parameter in place (parameter, gradient and state
// read once, parameter and state written once), with the math of src/Engine.Tensors/Optim/ exactly.
//
// Math      SgdStep (Optim/SGD.cs), per element, d = g:
//             d = d + wd·p                                  (if decay)
//             b = first ? d : momentum·b + (1 − dampening)·d  (if momentum; b is the momentum buffer)
//             d = nesterov ? d + momentum·b : b              (if momentum)
//             p = p − lr·d
//           AdamStep (Optim/Adam.cs, Adam and AdamW), per element:
//             p = p·decay                                   (AdamW: decay = 1 − lr·wd, if decoupled)
//             g = g + l2·p                                  (Adam: l2 = wd, if coupled)
//             m = m + (1 − β1)·(g − m)
//             v = β2·v + (1 − β2)·g·g
//             v̂ = amsgrad ? (vmax = max(vmax, v)) : v
//             p = p − stepSize · m / (sqrt(v̂)/bc2 + eps)    stepSize = lr/(1 − β1^t), bc2 = sqrt(1 − β2^t)
//           The step-dependent scalars (bias corrections, decay factor) are computed by the optimizer
//           in float64 and rounded to float once, as the CPU path does; the kernels only see floats.
// Numerics  The same operations in the same order as the CPU loops (which use no FMA). The emulator
//           runs this C#, so it matches the CPU bitwise; NVRTC and OpenCL compilers may contract a·b + c
//           into an FMA (one rounding instead of two), so CUDA/OpenCL results may differ from the CPU
//           by an ulp or so per step. MathF.Max is NaN-propagating, as the CPU's T.Max.
// Layout    p, g and every state buffer contiguous [n] (the optimizer passes contiguous tensors).
//           AdamStep: vmax empty when amsgrad is off.
// Bytes     SGD: 12 B/element without momentum (read p, g; write p), 20 B with (+ read/write b).
//           Adam: 28 B/element (read p, g, m, v; write p, m, v), 36 B with amsgrad. Memory bound
//           (~12 flops + 1 sqrt + 1 div per element for Adam).
// Launch    OptimPlan: 1-D, GroupSize (256) threads per group, ⌈n/256⌉ groups; one thread per element,
//           threads past n return. No shared memory, no barriers.
using Engine.Runtime.Kernels;

namespace Engine.Tensors.Kernels;

/// <summary>SGD (momentum, Nesterov, weight decay) and Adam/AdamW steps as one kernel per parameter (see the file header).</summary>
internal static partial class OptimKernels
{
    /// <summary>Threads per group.</summary>
    public const int GroupSize = 256;

    /// <summary>One SGD step of element Grid.GlobalIndexX (torch.optim.SGD, maximize = False).</summary>
    /// <param name="parameter">p, updated in place.</param>
    /// <param name="grad">g.</param>
    /// <param name="buffer">Momentum buffer b, updated in place (unused without momentum).</param>
    /// <param name="n">Elements.</param>
    /// <param name="lr">Learning rate.</param>
    /// <param name="weightDecay">L2 penalty added to the gradient.</param>
    /// <param name="momentum">Momentum factor.</param>
    /// <param name="keep">1 − dampening.</param>
    /// <param name="decay">Whether weightDecay is non-zero.</param>
    /// <param name="useMomentum">Whether momentum is non-zero.</param>
    /// <param name="first">First step of this buffer: b = d (undamped).</param>
    /// <param name="nesterov">Nesterov momentum.</param>
    [Kernel]
    public static void SgdStep(ArrayView<float> parameter, ArrayView<float> grad, ArrayView<float> buffer, int n,
        float lr, float weightDecay, float momentum, float keep, bool decay, bool useMomentum, bool first, bool nesterov)
    {
        int i = Grid.GlobalIndexX;
        if (i >= n) return;
        SgdElement(parameter, grad, buffer, i, lr, weightDecay, momentum, keep, decay, useMomentum, first, nesterov);
    }

    /// <summary>
    /// The SGD update of element <paramref name="i"/> (the math of the file header, written once: SgdStep and
    /// FusedOptimKernels.SgdStepMulti both call it, so both compile to the same instructions).
    /// </summary>
    [KernelFunction]
    public static void SgdElement(ArrayView<float> parameter, ArrayView<float> grad, ArrayView<float> buffer, int i,
        float lr, float weightDecay, float momentum, float keep, bool decay, bool useMomentum, bool first, bool nesterov)
    {
        float d = grad[i];
        float p = parameter[i];
        if (decay) d += weightDecay * p;
        if (useMomentum)
        {
            float b = first ? d : momentum * buffer[i] + keep * d;
            buffer[i] = b;
            d = nesterov ? d + momentum * b : b;
        }
        parameter[i] = p - lr * d;
    }

    /// <summary>One Adam / AdamW step of element Grid.GlobalIndexX (torch.optim.Adam / AdamW, maximize = False).</summary>
    /// <param name="parameter">p, updated in place.</param>
    /// <param name="grad">g.</param>
    /// <param name="expAvg">First moment m, updated in place.</param>
    /// <param name="expAvgSq">Second moment v, updated in place.</param>
    /// <param name="maxExpAvgSq">AMSGrad's running max of v, updated in place; empty when amsgrad is off.</param>
    /// <param name="n">Elements.</param>
    /// <param name="decayFactor">AdamW's 1 − lr·wd (applied when decoupled).</param>
    /// <param name="l2">Adam's L2 penalty (applied when coupled).</param>
    /// <param name="oneMinusBeta1">1 − β1.</param>
    /// <param name="beta2">β2.</param>
    /// <param name="oneMinusBeta2">1 − β2.</param>
    /// <param name="stepSize">lr / (1 − β1^t).</param>
    /// <param name="bc2">sqrt(1 − β2^t).</param>
    /// <param name="eps">Added to the denominator after the bias correction.</param>
    /// <param name="decoupled">Apply decayFactor to p first (AdamW).</param>
    /// <param name="coupled">Add l2·p to the gradient (Adam with weight decay).</param>
    [Kernel]
    public static void AdamStep(ArrayView<float> parameter, ArrayView<float> grad, ArrayView<float> expAvg, ArrayView<float> expAvgSq,
        ArrayView<float> maxExpAvgSq, int n, float decayFactor, float l2, float oneMinusBeta1, float beta2, float oneMinusBeta2,
        float stepSize, float bc2, float eps, bool decoupled, bool coupled)
    {
        int i = Grid.GlobalIndexX;
        if (i >= n) return;
        AdamElement(parameter, grad, expAvg, expAvgSq, maxExpAvgSq, i, decayFactor, l2, oneMinusBeta1, beta2, oneMinusBeta2,
            stepSize, bc2, eps, decoupled, coupled, maxExpAvgSq.Length > 0);
    }

    /// <summary>
    /// The Adam / AdamW update of element <paramref name="i"/> (the math of the file header, written once:
    /// AdamStep and FusedOptimKernels.AdamStepMulti both call it).
    /// </summary>
    [KernelFunction]
    public static void AdamElement(ArrayView<float> parameter, ArrayView<float> grad, ArrayView<float> expAvg, ArrayView<float> expAvgSq,
        ArrayView<float> maxExpAvgSq, int i, float decayFactor, float l2, float oneMinusBeta1, float beta2, float oneMinusBeta2,
        float stepSize, float bc2, float eps, bool decoupled, bool coupled, bool amsgrad)
    {
        float p = parameter[i], g = grad[i];
        if (decoupled) p *= decayFactor;
        if (coupled) g += l2 * p;
        float mOld = expAvg[i];
        float m = mOld + oneMinusBeta1 * (g - mOld);
        float v = beta2 * expAvgSq[i] + oneMinusBeta2 * g * g;
        expAvg[i] = m;
        expAvgSq[i] = v;
        if (amsgrad)
        {
            v = MathF.Max(maxExpAvgSq[i], v);
            maxExpAvgSq[i] = v;
        }
        parameter[i] = p - stepSize * (m / (XMath.Sqrt(v) / bc2 + eps));
    }
}

/// <summary>Host side of OptimKernels: 1-D launch shape.</summary>
internal static class OptimPlan
{
    /// <summary>Groups for <paramref name="n"/> elements (0 when n = 0).</summary>
    public static Dim3 Groups(long n)
    {
        if (n > int.MaxValue)
            throw new ArgumentException($"optimizer kernel: a parameter of {n} elements exceeds the kernel's 32-bit indexing.");
        return new Dim3((int)((n + OptimKernels.GroupSize - 1) / OptimKernels.GroupSize));
    }
}
