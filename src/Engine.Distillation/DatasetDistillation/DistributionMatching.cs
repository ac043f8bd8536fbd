using Engine.Tensors;

namespace Engine.Distillation.DatasetDistillation;

/// <summary>Settings of <see cref="DistributionMatching"/> (defaults from Zhao and Bilen's code, except the real batch).</summary>
/// <param name="RealBatch">Real images per class per iteration (the paper: 256).</param>
/// <param name="ImageLearningRate">SGD learning rate of the synthetic images (the paper: 1).</param>
/// <param name="Momentum">SGD momentum of the synthetic images (the paper: 0.5).</param>
public sealed record DistributionMatchingOptions(int RealBatch = 128, double ImageLearningRate = 1.0, double Momentum = 0.5);

/// <summary>
/// Distribution matching (DM; Zhao and Bilen, "Dataset Condensation with Distribution Matching", WACV
/// 2023). Each iteration samples a freshly initialized network ψ (never trained: no inner loop) and, for
/// every class c, a batch of real images R_c; the objective is
/// <code>
/// L = Σ_c ‖ mean_{x ∈ R_c} ψ(x) − mean_{s ∈ S_c} ψ(s) ‖²
/// </code>
/// where ψ is the ConvNet's embedding (<see cref="DistillConvNet.Embed"/>) and S_c the synthetic images of
/// class c. Only S receives gradients (first order: no higher-order derivatives are needed). The paper's
/// differentiable Siamese augmentation (DSA) is not applied.
/// </summary>
public sealed class DistributionMatching : DatasetDistillationMethod
{
    private readonly DistributionMatchingOptions _options;

    /// <summary>A DM run over <paramref name="real"/> that updates <paramref name="synthetic"/>.</summary>
    public DistributionMatching(ConvNetSpec spec, ClassImages real, SyntheticSet synthetic, DistributionMatchingOptions? options = null, ulong seed = 0)
        : base("dm", spec, real, synthetic, (options ?? new()).ImageLearningRate, (options ?? new()).Momentum, seed)
    {
        _options = options ?? new();
        if (_options.RealBatch < 1) throw new ArgumentException($"dm: the real batch must be ≥ 1, got {_options.RealBatch}.");
    }

    /// <summary>
    /// ‖mean₀(<paramref name="realEmbeddings"/>) − mean₀(<paramref name="syntheticEmbeddings"/>)‖², a 0-d tensor,
    /// for embeddings [n, D] and [m, D] (the squared distance between the two mean embeddings).
    /// </summary>
    public static Tensor MatchLoss(Tensor realEmbeddings, Tensor syntheticEmbeddings)
    {
        ArgumentNullException.ThrowIfNull(realEmbeddings);
        ArgumentNullException.ThrowIfNull(syntheticEmbeddings);
        if (realEmbeddings.Rank != 2 || syntheticEmbeddings.Rank != 2 || realEmbeddings.Size(1) != syntheticEmbeddings.Size(1))
            throw new ArgumentException($"dm: expected embeddings [n, D] and [m, D], got {DistillConvNet.ShapeText(realEmbeddings)} and {DistillConvNet.ShapeText(syntheticEmbeddings)}.");
        using var mr = realEmbeddings.Mean(0);
        using var ms = syntheticEmbeddings.Mean(0);
        using var diff = mr.Sub(ms);
        using var sq = diff.Mul(diff);
        return sq.Sum();
    }

    /// <summary>
    /// The DM term of one class: <see cref="MatchLoss"/> of the embeddings of <paramref name="realImages"/>
    /// (computed without a graph: real images get no gradient) and <paramref name="syntheticImages"/>
    /// under the network <paramref name="parameters"/>.
    /// </summary>
    public static Tensor ClassObjective(ConvNetSpec spec, IReadOnlyList<Tensor> parameters, Tensor realImages, Tensor syntheticImages)
    {
        Tensor er;
        using (Tensor.NoGrad()) er = DistillConvNet.Embed(spec, parameters, realImages);
        using (er)
        using (var es = DistillConvNet.Embed(spec, parameters, syntheticImages))
            return MatchLoss(er, es);
    }

    /// <inheritdoc/>
    public override double Step(int iteration)
    {
        var net = DistillConvNet.Init(Spec, NetGenerator, Synthetic.Images.DType);
        double total = 0;
        try
        {
            foreach (var p in net) p.RequiresGrad = false; // ψ is fixed: only the images learn
            for (int c = 0; c < Spec.Classes; c++)
            {
                using var scope = Tensor.NewDisposeScope();
                var real = Real.Sample(c, _options.RealBatch, Rng);
                var syn = Synthetic.ClassImages(c);
                var loss = ClassObjective(Spec, net, real, syn);
                total += loss.ToDouble();
                AccumulateImageGradient(loss);
            }
            UpdateImages();
        }
        finally
        {
            DisposeAll(net);
        }
        return total;
    }
}
