using Engine.Tensors;
using Engine.Tensors.AutoDiff;
using Engine.Tensors.NN;
using Engine.Tensors.Optim;

namespace Engine.Distillation.DatasetDistillation;

/// <summary>
/// Settings of <see cref="GradientMatching"/>. The paper's loops are (outer, inner) = (1, 1) for 1 image
/// per class and (10, 50) for 10; the defaults here are smaller so an iteration fits a few CPU seconds.
/// </summary>
/// <param name="RealBatch">Real images per class per matching step (the paper: 256).</param>
/// <param name="ImageLearningRate">SGD learning rate of the synthetic images (the paper: 0.1).</param>
/// <param name="Momentum">SGD momentum of the synthetic images (the paper: 0.5).</param>
/// <param name="OuterLoop">Matching steps (image updates) per sampled network.</param>
/// <param name="InnerLoop">SGD steps of the network on the synthetic set between two matching steps.</param>
/// <param name="NetLearningRate">Learning rate of those network steps (the paper: 0.01).</param>
public sealed record GradientMatchingOptions(int RealBatch = 128, double ImageLearningRate = 0.1, double Momentum = 0.5,
    int OuterLoop = 1, int InnerLoop = 1, double NetLearningRate = 0.01);

/// <summary>
/// Gradient matching (DC; Zhao, Mopuri and Bilen, "Dataset Condensation with Gradient Matching", ICLR
/// 2021). Each iteration samples a fresh network θ; then, <see cref="GradientMatchingOptions.OuterLoop"/>
/// times: for every class c, with a real batch R_c and the synthetic images S_c,
/// <code>
/// L = Σ_c D( ∇_θ CE(f_θ(R_c), c),  ∇_θ CE(f_θ(S_c), c) )
/// </code>
/// is minimized over S by one SGD step, after which θ takes <see cref="GradientMatchingOptions.InnerLoop"/>
/// SGD steps on the (detached) synthetic set. D is the paper's layer-wise distance (<see cref="Distance"/>).
/// The synthetic gradient is computed with createGraph, so ∂L/∂S differentiates through a gradient:
/// a second-order derivative through conv, norm, pooling and linear layers. DSA augmentation is not applied.
/// </summary>
public sealed class GradientMatching : DatasetDistillationMethod
{
    /// <summary>Added to the product of the two row norms in <see cref="Distance"/> (the paper's 1e-6).</summary>
    public const double DenominatorEps = 1e-6;

    /// <summary>
    /// Added to each row's squared norm before the square root: ‖g‖ = √(Σg² + 1e-12). Without it a row of
    /// exact zeros (a dead ReLU unit's filter) gives ∂√s/∂s = ∞ times ∂s/∂g = 0, a NaN in the second-order
    /// gradient; 1e-12 moves a norm by at most 1e-6, the size of <see cref="DenominatorEps"/>.
    /// </summary>
    public const double NormEps = 1e-12;

    private readonly GradientMatchingOptions _options;

    /// <summary>A DC run over <paramref name="real"/> that updates <paramref name="synthetic"/>.</summary>
    public GradientMatching(ConvNetSpec spec, ClassImages real, SyntheticSet synthetic, GradientMatchingOptions? options = null, ulong seed = 0)
        : base("dc", spec, real, synthetic, (options ?? new()).ImageLearningRate, (options ?? new()).Momentum, seed)
    {
        _options = options ?? new();
        if (_options.RealBatch < 1 || _options.OuterLoop < 1 || _options.InnerLoop < 0 || !(_options.NetLearningRate > 0))
            throw new ArgumentException($"dc: expected real batch ≥ 1, outer loop ≥ 1, inner loop ≥ 0 and a positive network learning rate; got {_options}.");
    }

    /// <summary>
    /// The layer-wise gradient distance of Zhao et al. ("distance_wb"), summed over the parameter tensors:
    /// each gradient pair is viewed as rows — conv weights [out, in·kH·kW], linear weights [out, in] — and
    /// contributes Σ_rows (1 − ⟨r, s⟩ / (‖r‖·‖s‖ + 1e-6)). One-dimensional tensors (biases, norm scales and
    /// shifts) contribute 0, as in the paper's code. Norms are √(Σ x² + <see cref="NormEps"/>).
    /// <paramref name="realGradients"/> are usually detached; <paramref name="syntheticGradients"/> carry
    /// the graph. Returns a 0-d tensor.
    /// </summary>
    public static Tensor Distance(IReadOnlyList<Tensor> realGradients, IReadOnlyList<Tensor> syntheticGradients)
    {
        ArgumentNullException.ThrowIfNull(realGradients);
        ArgumentNullException.ThrowIfNull(syntheticGradients);
        if (realGradients.Count != syntheticGradients.Count)
            throw new ArgumentException($"dc: {realGradients.Count} real gradients but {syntheticGradients.Count} synthetic ones.");
        Tensor? total = null;
        for (int i = 0; i < realGradients.Count; i++)
        {
            var gr = realGradients[i];
            var gs = syntheticGradients[i];
            if (!gr.ShapeArray().SequenceEqual(gs.ShapeArray()))
                throw new ArgumentException($"dc: gradient {i} has shape {DistillConvNet.ShapeText(gr)} (real) and {DistillConvNet.ShapeText(gs)} (synthetic).");
            if (gr.Rank <= 1) continue;
            long rows = gr.Size(0);
            using var r = gr.Reshape(rows, gr.NumEl / rows);
            using var s = gs.Reshape(rows, gs.NumEl / rows);
            using var rs = r.Mul(s);
            using var dot = rs.Sum(1);
            using var nr = RowNorm(r);
            using var ns = RowNorm(s);
            using var nn = nr.Mul(ns);
            using var den = nn.Add(DenominatorEps);
            using var cos = dot.Div(den);
            using var oneMinus = 1.0 - cos;
            var term = oneMinus.Sum();
            if (total is null) total = term;
            else
            {
                var sum = total.Add(term);
                total.Dispose();
                term.Dispose();
                total = sum;
            }
        }
        return total ?? Tensor.Scalar(0, realGradients.Count > 0 ? realGradients[0].DType : DType.Float32);
    }

    private static Tensor RowNorm(Tensor m)
    {
        using var sq = m.Mul(m);
        using var s = sq.Sum(1);
        using var shifted = s.Add(NormEps);
        return shifted.Sqrt();
    }

    /// <summary>
    /// The DC term of one class: <see cref="Distance"/> between the gradient of the mean cross-entropy on
    /// the real batch (computed without a graph) and on the synthetic batch (with createGraph, so the result
    /// is differentiable with respect to <paramref name="syntheticImages"/>), both with respect to
    /// <paramref name="parameters"/> (which must require grad). Under <see cref="Tensor.NoGrad"/> the
    /// inner gradients are still computed (grad mode is switched on for them) and only the value is returned.
    /// </summary>
    public static Tensor ClassObjective(ConvNetSpec spec, IReadOnlyList<Tensor> parameters, Tensor realImages, Tensor realLabels, Tensor syntheticImages, Tensor syntheticLabels)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        var ps = parameters.ToArray();
        // The inner gradients need recording even when the caller runs without grad (then only the value
        // is wanted, so the synthetic gradient is taken without createGraph): torch.enable_grad's role.
        bool record = GradMode.IsEnabled;
        Tensor?[] gr, gs;
        using (GradMode.Set(true))
        {
            using (var logitsR = DistillConvNet.Forward(spec, ps, realImages))
            using (var lossR = Functional.CrossEntropy(logitsR, realLabels))
                gr = Autograd.Grad([lossR], ps, allowUnused: true);
            using var logitsS = DistillConvNet.Forward(spec, ps, syntheticImages);
            using var lossS = Functional.CrossEntropy(logitsS, syntheticLabels);
            gs = Autograd.Grad([lossS], ps, createGraph: record, allowUnused: true);
        }
        try
        {
            var real = new List<Tensor>();
            var syn = new List<Tensor>();
            for (int i = 0; i < ps.Length; i++)
            {
                if (gr[i] is null || gs[i] is null) continue; // a parameter neither loss uses
                real.Add(gr[i]!);
                syn.Add(gs[i]!);
            }
            return Distance(real, syn);
        }
        finally
        {
            foreach (var g in gr) g?.Dispose();
            foreach (var g in gs) g?.Dispose();
        }
    }

    /// <inheritdoc/>
    public override double Step(int iteration)
    {
        var net = DistillConvNet.Init(Spec, NetGenerator, Synthetic.Images.DType);
        double total = 0;
        try
        {
            using var netOptimizer = new SGD(net, _options.NetLearningRate);
            for (int ol = 0; ol < _options.OuterLoop; ol++)
            {
                for (int c = 0; c < Spec.Classes; c++)
                {
                    using var scope = Tensor.NewDisposeScope();
                    var real = Real.Sample(c, _options.RealBatch, Rng);
                    using var realLabels = Tensor.Full([real.Size(0)], c, DType.Int64);
                    var loss = ClassObjective(Spec, net, real, realLabels, Synthetic.ClassImages(c), Synthetic.ClassLabels(c));
                    total += loss.ToDouble();
                    AccumulateImageGradient(loss);
                }
                UpdateImages();
                if (ol == _options.OuterLoop - 1) break;
                for (int il = 0; il < _options.InnerLoop; il++)
                {
                    using var scope = Tensor.NewDisposeScope();
                    using var images = Synthetic.Images.Detach();
                    var logits = DistillConvNet.Forward(Spec, net, images);
                    var loss = Functional.CrossEntropy(logits, Synthetic.Labels);
                    loss.Backward();
                    netOptimizer.Step();
                    netOptimizer.ZeroGrad();
                }
            }
        }
        finally
        {
            DisposeAll(net);
        }
        return total / _options.OuterLoop;
    }
}
