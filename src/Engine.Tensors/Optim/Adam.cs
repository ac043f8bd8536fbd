using System.Numerics;
using System.Runtime.CompilerServices;

namespace Engine.Tensors.Optim;

/// <summary>
/// Adam (Kingma &amp; Ba), as torch.optim.Adam (maximize=False, single-tensor form). Per element, at
/// step t (counted per parameter, from 1):
/// <code>
/// g = g + weight_decay * p                              (L2 penalty, if weight_decay != 0)
/// m = m + (1 - beta1) * (g - m)                         (torch: exp_avg.lerp_(g, 1 - beta1))
/// v = beta2 * v + (1 - beta2) * g * g
/// v̂ = amsgrad ? (vmax = max(vmax, v)) : v
/// p = p - lr / (1 - beta1^t) * m / (sqrt(v̂) / sqrt(1 - beta2^t) + eps)
/// </code>
/// eps is added after the bias correction of sqrt(v), as torch does. The bias corrections are computed
/// in float64; the per-element work runs in the parameter's dtype, one fused pass per parameter (for a
/// float32 parameter on an accelerator device, the AdamStep kernel of kernels/Optim; all such parameters of a
/// device are stepped by one AdamStepMulti launch, <see cref="Optimizer.FusedDeviceStep"/>).
/// <see cref="AdamW"/> differs only in its weight decay.
/// </summary>
public class Adam : Optimizer
{
    /// <summary>Adam over <paramref name="parameters"/> (one group).</summary>
    /// <param name="parameters">Leaf floating-point tensors to optimize.</param>
    /// <param name="learningRate">Learning rate.</param>
    /// <param name="beta1">Decay of the first moment.</param>
    /// <param name="beta2">Decay of the second moment.</param>
    /// <param name="eps">Added to the denominator.</param>
    /// <param name="weightDecay">L2 penalty added to the gradient.</param>
    /// <param name="amsgrad">Use the maximum of past second moments (AMSGrad).</param>
    public Adam(IEnumerable<Tensor> parameters, double learningRate = 1e-3, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-8, double weightDecay = 0, bool amsgrad = false)
        : this([new ParamGroup(parameters)], learningRate, beta1, beta2, eps, weightDecay, amsgrad) { }

    /// <summary>Adam over parameter groups; groups without their own options take these.</summary>
    /// <param name="groups">Parameter groups.</param>
    /// <param name="learningRate">Default learning rate.</param>
    /// <param name="beta1">Decay of the first moment.</param>
    /// <param name="beta2">Decay of the second moment.</param>
    /// <param name="eps">Added to the denominator.</param>
    /// <param name="weightDecay">Default L2 penalty added to the gradient.</param>
    /// <param name="amsgrad">Use the maximum of past second moments (AMSGrad).</param>
    public Adam(IEnumerable<ParamGroup> groups, double learningRate = 1e-3, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-8, double weightDecay = 0, bool amsgrad = false)
        : this("Adam", groups, learningRate, beta1, beta2, eps, weightDecay, amsgrad, decoupled: false) { }

    private protected Adam(string name, IEnumerable<ParamGroup> groups, double learningRate, double beta1, double beta2, double eps, double weightDecay, bool amsgrad, bool decoupled)
        : base(name, groups, learningRate, weightDecay)
    {
        if (!(beta1 >= 0 && beta1 < 1)) throw new ArgumentOutOfRangeException(nameof(beta1), beta1, $"{name}: beta1 must be in [0, 1).");
        if (!(beta2 >= 0 && beta2 < 1)) throw new ArgumentOutOfRangeException(nameof(beta2), beta2, $"{name}: beta2 must be in [0, 1).");
        CheckNonNegative("eps", eps);
        Beta1 = beta1;
        Beta2 = beta2;
        Eps = eps;
        AmsGrad = amsgrad;
        Decoupled = decoupled;
    }

    /// <summary>Decay of the first moment.</summary>
    public double Beta1 { get; }

    /// <summary>Decay of the second moment.</summary>
    public double Beta2 { get; }

    /// <summary>Added to the denominator after bias correction.</summary>
    public double Eps { get; }

    /// <summary>Whether AMSGrad's running maximum of the second moment is used.</summary>
    public bool AmsGrad { get; }

    private bool Decoupled { get; }

    private protected override void Update(ParamGroup group, Tensor parameter, Tensor grad, ParameterState state)
    {
        var m = state.Buffer("exp_avg", parameter, out _);
        var v = state.Buffer("exp_avg_sq", parameter, out _);
        var vmax = AmsGrad ? state.Buffer("max_exp_avg_sq", parameter, out _) : null;
        var k = Constants.At(++state.Step, group, this);
        if (Kernels.KernelDispatch.IsAccelerated(parameter))
        {
            Kernels.KernelDispatch.AdamStep(parameter, grad, m, v, vmax, k.DecayFactor, k.L2, k.Beta1, k.Beta2, k.StepSize, k.Bc2Sqrt, k.Eps); // kernels/Optim
            return;
        }
        if (parameter.DType == DType.Float32) Run<float>(parameter, grad, m, v, vmax, k);
        else Run<double>(parameter, grad, m, v, vmax, k);
    }

    private protected override bool SupportsFusedStep => true;

    /// <summary>
    /// One AdamStepMulti launch for all <paramref name="entries"/> (per entry the step-dependent scalars of
    /// <see cref="Update"/>, from the parameter's own step count).
    /// </summary>
    private protected override void FusedUpdate(FlatParameters flat, List<FusedEntry> entries)
    {
        var table = new int[entries.Count * Kernels.FusedOptimKernels.TableStride];
        var scalars = new float[entries.Count * 4];
        foreach (var name in AmsGrad ? ["exp_avg", "exp_avg_sq", "max_exp_avg_sq"] : new[] { "exp_avg", "exp_avg_sq" })
            foreach (var entry in entries) flat.State(name, entry.Slot, entry.State, out _);
        for (int e = 0; e < entries.Count; e++)
        {
            var (group, _, state) = entries[e];
            var k = Constants.At(++state.Step, group, this);
            table[e * 4 + 3] = (k.DecayFactor != 1 ? 1 : 0) | (k.L2 != 0 ? 2 : 0);
            scalars[e * 4] = (float)k.DecayFactor;
            scalars[e * 4 + 1] = (float)k.L2;
            scalars[e * 4 + 2] = (float)k.StepSize;
            scalars[e * 4 + 3] = (float)k.Bc2Sqrt;
        }
        Kernels.KernelDispatch.AdamStepMulti(flat, entries.Select(x => x.Slot).ToList(), table, scalars, Beta1, Beta2, Eps, AmsGrad);
    }

    private readonly record struct Constants(double DecayFactor, double L2, double Beta1, double Beta2, double StepSize, double Bc2Sqrt, double Eps)
    {
        /// <summary>The constants of step <paramref name="t"/> (float64; the kernels round them to float once).</summary>
        public static Constants At(long t, ParamGroup group, Adam adam)
        {
            double lr = group.LearningRate, wd = group.WeightDecay;
            return new Constants(
                DecayFactor: adam.Decoupled ? 1 - lr * wd : 1,
                L2: adam.Decoupled ? 0 : wd,
                Beta1: adam.Beta1,
                Beta2: adam.Beta2,
                StepSize: lr / (1 - Math.Pow(adam.Beta1, t)),
                Bc2Sqrt: Math.Sqrt(1 - Math.Pow(adam.Beta2, t)),
                Eps: adam.Eps);
        }
    }

    private static unsafe void Run<T>(Tensor parameter, Tensor grad, Tensor m, Tensor v, Tensor? vmax, Constants k) where T : unmanaged, IFloatingPointIeee754<T>
    {
        nint p = (nint)parameter.Ptr<T>(), g = (nint)grad.Ptr<T>(), pm = (nint)m.Ptr<T>(), pv = (nint)v.Ptr<T>();
        nint pmax = vmax is null ? 0 : (nint)vmax.Ptr<T>();
        Tiled(parameter.NumEl, (start, end) => Kernel((T*)p, (T*)g, (T*)pm, (T*)pv, (T*)pmax, start, end, k));
    }

    /// <summary>
    /// The update over [start, end): Vector&lt;T&gt; lanes, then a scalar tail with the same operations in the
    /// same order (no FMA on either path), so an element's result does not depend on where it falls.
    /// </summary>
    private static unsafe void Kernel<T>(T* p, T* g, T* m, T* v, T* vmax, long start, long end, Constants k) where T : unmanaged, IFloatingPointIeee754<T>
    {
        T decay = T.CreateTruncating(k.DecayFactor), l2 = T.CreateTruncating(k.L2);
        T w1 = T.CreateTruncating(1 - k.Beta1), b2 = T.CreateTruncating(k.Beta2), w2 = T.CreateTruncating(1 - k.Beta2);
        T stepSize = T.CreateTruncating(k.StepSize), bc2 = T.CreateTruncating(k.Bc2Sqrt), eps = T.CreateTruncating(k.Eps);
        bool decoupled = k.DecayFactor != 1, coupled = k.L2 != 0, ams = vmax is not null;
        long i = start;
        if (Vector.IsHardwareAccelerated)
        {
            Vector<T> vdecay = new(decay), vl2 = new(l2), vw1 = new(w1), vb2 = new(b2), vw2 = new(w2), vstep = new(stepSize), vbc2 = new(bc2), veps = new(eps);
            for (; i <= end - Vector<T>.Count; i += Vector<T>.Count)
            {
                var pi = Unsafe.ReadUnaligned<Vector<T>>(p + i);
                var gi = Unsafe.ReadUnaligned<Vector<T>>(g + i);
                if (decoupled) pi *= vdecay;
                if (coupled) gi += vl2 * pi;
                var mOld = Unsafe.ReadUnaligned<Vector<T>>(m + i);
                var mi = mOld + vw1 * (gi - mOld);
                var vi = vb2 * Unsafe.ReadUnaligned<Vector<T>>(v + i) + vw2 * gi * gi;
                Unsafe.WriteUnaligned(m + i, mi);
                Unsafe.WriteUnaligned(v + i, vi);
                if (ams)
                {
                    vi = Vector.Max(Unsafe.ReadUnaligned<Vector<T>>(vmax + i), vi);
                    Unsafe.WriteUnaligned(vmax + i, vi);
                }
                Unsafe.WriteUnaligned(p + i, pi - vstep * (mi / (Vector.SquareRoot(vi) / vbc2 + veps)));
            }
        }
        for (; i < end; i++)
        {
            T pi = p[i], gi = g[i];
            if (decoupled) pi *= decay;
            if (coupled) gi += l2 * pi;
            T mi = m[i] + w1 * (gi - m[i]);
            T vi = b2 * v[i] + w2 * gi * gi;
            m[i] = mi;
            v[i] = vi;
            if (ams)
            {
                vi = T.Max(vmax[i], vi);
                vmax[i] = vi;
            }
            p[i] = pi - stepSize * (mi / (T.Sqrt(vi) / bc2 + eps));
        }
    }
}

/// <summary>
/// AdamW (Loshchilov &amp; Hutter), as torch.optim.AdamW: Adam without the L2 term in the gradient, and
/// with decoupled weight decay applied to the parameter first, p = p · (1 − lr · weight_decay), then
/// the Adam update. Default weight decay 0.01, as torch.
/// </summary>
public sealed class AdamW : Adam
{
    /// <summary>AdamW over <paramref name="parameters"/> (one group).</summary>
    /// <param name="parameters">Leaf floating-point tensors to optimize.</param>
    /// <param name="learningRate">Learning rate.</param>
    /// <param name="beta1">Decay of the first moment.</param>
    /// <param name="beta2">Decay of the second moment.</param>
    /// <param name="eps">Added to the denominator.</param>
    /// <param name="weightDecay">Decoupled weight decay.</param>
    /// <param name="amsgrad">Use the maximum of past second moments (AMSGrad).</param>
    public AdamW(IEnumerable<Tensor> parameters, double learningRate = 1e-3, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-8, double weightDecay = 1e-2, bool amsgrad = false)
        : this([new ParamGroup(parameters)], learningRate, beta1, beta2, eps, weightDecay, amsgrad) { }

    /// <summary>AdamW over parameter groups; groups without their own options take these.</summary>
    /// <param name="groups">Parameter groups.</param>
    /// <param name="learningRate">Default learning rate.</param>
    /// <param name="beta1">Decay of the first moment.</param>
    /// <param name="beta2">Decay of the second moment.</param>
    /// <param name="eps">Added to the denominator.</param>
    /// <param name="weightDecay">Default decoupled weight decay.</param>
    /// <param name="amsgrad">Use the maximum of past second moments (AMSGrad).</param>
    public AdamW(IEnumerable<ParamGroup> groups, double learningRate = 1e-3, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-8, double weightDecay = 1e-2, bool amsgrad = false)
        : base("AdamW", groups, learningRate, beta1, beta2, eps, weightDecay, amsgrad, decoupled: true) { }
}
