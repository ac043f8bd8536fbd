using System.Numerics;
using System.Runtime.CompilerServices;

namespace Engine.Tensors.Optim;

/// <summary>
/// Stochastic gradient descent with momentum, as torch.optim.SGD (maximize=False). Per element,
/// with d = grad:
/// <code>
/// d = d + weight_decay * p                       (if weight_decay != 0)
/// b = d                                          (first step: the buffer starts as d, undamped)
/// b = momentum * b + (1 - dampening) * d          (later steps)
/// d = nesterov ? d + momentum * b : b            (if momentum != 0)
/// p = p - lr * d
/// </code>
/// One fused pass over p, grad and the momentum buffer per parameter, in the parameter's dtype; for a
/// parameter on an accelerator device (float32) that pass is the SgdStep kernel (kernels/Optim), and all such
/// parameters of a device are stepped by one SgdStepMulti launch (<see cref="Optimizer.FusedDeviceStep"/>).
/// </summary>
public sealed class SGD : Optimizer
{
    /// <summary>SGD over <paramref name="parameters"/> (one group).</summary>
    /// <param name="parameters">Leaf floating-point tensors to optimize.</param>
    /// <param name="learningRate">Learning rate.</param>
    /// <param name="momentum">Momentum factor (0: plain SGD, no buffer).</param>
    /// <param name="dampening">Dampening of the momentum's new term.</param>
    /// <param name="weightDecay">L2 penalty added to the gradient.</param>
    /// <param name="nesterov">Nesterov momentum (needs momentum &gt; 0 and dampening 0).</param>
    public SGD(IEnumerable<Tensor> parameters, double learningRate, double momentum = 0, double dampening = 0, double weightDecay = 0, bool nesterov = false)
        : this([new ParamGroup(parameters)], learningRate, momentum, dampening, weightDecay, nesterov) { }

    /// <summary>SGD over parameter groups; groups without their own options take these.</summary>
    /// <param name="groups">Parameter groups.</param>
    /// <param name="learningRate">Default learning rate.</param>
    /// <param name="momentum">Momentum factor (0: plain SGD, no buffer).</param>
    /// <param name="dampening">Dampening of the momentum's new term.</param>
    /// <param name="weightDecay">Default L2 penalty added to the gradient.</param>
    /// <param name="nesterov">Nesterov momentum (needs momentum &gt; 0 and dampening 0).</param>
    public SGD(IEnumerable<ParamGroup> groups, double learningRate, double momentum = 0, double dampening = 0, double weightDecay = 0, bool nesterov = false)
        : base("SGD", groups, learningRate, weightDecay)
    {
        CheckNonNegative("momentum", momentum);
        if (!double.IsFinite(dampening))
            throw new ArgumentOutOfRangeException(nameof(dampening), dampening, "SGD: dampening must be finite.");
        if (nesterov && (momentum <= 0 || dampening != 0))
            throw new ArgumentException($"SGD: Nesterov momentum requires a momentum > 0 and zero dampening; got momentum {momentum}, dampening {dampening}.");
        Momentum = momentum;
        Dampening = dampening;
        Nesterov = nesterov;
    }

    /// <summary>Momentum factor.</summary>
    public double Momentum { get; }

    /// <summary>Dampening of the momentum's new term.</summary>
    public double Dampening { get; }

    /// <summary>Whether the Nesterov form is used.</summary>
    public bool Nesterov { get; }

    private protected override void Update(ParamGroup group, Tensor parameter, Tensor grad, ParameterState state)
    {
        Tensor? buffer = null;
        bool first = false;
        if (Momentum != 0) buffer = state.Buffer("momentum_buffer", parameter, out first);
        state.Step++;
        var k = new Constants(group.LearningRate, group.WeightDecay, Momentum, Dampening, Nesterov, first);
        if (Kernels.KernelDispatch.IsAccelerated(parameter))
        {
            Kernels.KernelDispatch.SgdStep(parameter, grad, buffer, k.Lr, k.WeightDecay, k.Momentum, k.Dampening, k.Nesterov, k.First); // kernels/Optim
            return;
        }
        if (parameter.DType == DType.Float32) Run<float>(parameter, grad, buffer, k);
        else Run<double>(parameter, grad, buffer, k);
    }

    private protected override bool SupportsFusedStep => true;

    /// <summary>One SgdStepMulti launch for all <paramref name="entries"/> (per entry: lr, weight decay, first step of its buffer).</summary>
    private protected override void FusedUpdate(FlatParameters flat, List<FusedEntry> entries)
    {
        var table = new int[entries.Count * Kernels.FusedOptimKernels.TableStride];
        var scalars = new float[entries.Count * 2];
        for (int e = 0; e < entries.Count; e++)
        {
            var (group, slot, state) = entries[e];
            bool first = false;
            if (Momentum != 0) flat.State("momentum_buffer", slot, state, out first);
            state.Step++;
            table[e * 4 + 3] = (group.WeightDecay != 0 ? 1 : 0) | (first ? 2 : 0);
            scalars[e * 2] = (float)group.LearningRate;
            scalars[e * 2 + 1] = (float)group.WeightDecay;
        }
        Kernels.KernelDispatch.SgdStepMulti(flat, entries.Select(x => x.Slot).ToList(), table, scalars, Momentum, Dampening, Nesterov);
    }

    private readonly record struct Constants(double Lr, double WeightDecay, double Momentum, double Dampening, bool Nesterov, bool First);

    private static unsafe void Run<T>(Tensor parameter, Tensor grad, Tensor? buffer, Constants k) where T : unmanaged, IFloatingPointIeee754<T>
    {
        nint p = (nint)parameter.Ptr<T>(), g = (nint)grad.Ptr<T>(), b = buffer is null ? 0 : (nint)buffer.Ptr<T>();
        Tiled(parameter.NumEl, (start, end) => Kernel((T*)p, (T*)g, (T*)b, start, end, k));
    }

    /// <summary>
    /// The update over [start, end): Vector&lt;T&gt; lanes, then a scalar tail with the same operations in the
    /// same order (no FMA on either path), so an element's result does not depend on where it falls.
    /// </summary>
    private static unsafe void Kernel<T>(T* p, T* g, T* b, long start, long end, Constants k) where T : unmanaged, IFloatingPointIeee754<T>
    {
        T lr = T.CreateTruncating(k.Lr), wd = T.CreateTruncating(k.WeightDecay), mom = T.CreateTruncating(k.Momentum);
        T keep = T.CreateTruncating(1 - k.Dampening);
        bool decay = k.WeightDecay != 0, momentum = k.Momentum != 0, first = k.First, nesterov = k.Nesterov;
        long i = start;
        if (Vector.IsHardwareAccelerated)
        {
            Vector<T> vlr = new(lr), vwd = new(wd), vmom = new(mom), vkeep = new(keep);
            for (; i <= end - Vector<T>.Count; i += Vector<T>.Count)
            {
                var d = Unsafe.ReadUnaligned<Vector<T>>(g + i);
                var pi = Unsafe.ReadUnaligned<Vector<T>>(p + i);
                if (decay) d += vwd * pi;
                if (momentum)
                {
                    var buf = first ? d : vmom * Unsafe.ReadUnaligned<Vector<T>>(b + i) + vkeep * d;
                    Unsafe.WriteUnaligned(b + i, buf);
                    d = nesterov ? d + vmom * buf : buf;
                }
                Unsafe.WriteUnaligned(p + i, pi - vlr * d);
            }
        }
        for (; i < end; i++)
        {
            T d = g[i];
            if (decay) d += wd * p[i];
            if (momentum)
            {
                T buf = first ? d : mom * b[i] + keep * d;
                b[i] = buf;
                d = nesterov ? d + mom * buf : buf;
            }
            p[i] -= lr * d;
        }
    }
}
