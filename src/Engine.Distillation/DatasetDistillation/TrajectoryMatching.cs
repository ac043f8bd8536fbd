using Engine.Tensors;
using Engine.Tensors.AutoDiff;
using Engine.Tensors.NN;
using Engine.Tensors.Optim;

namespace Engine.Distillation.DatasetDistillation;

/// <summary>
/// Parameters of one network trained on real data, recorded at the start and after every epoch:
/// <see cref="Checkpoints"/>[e] holds the parameters after e epochs (detached copies, in
/// <see cref="DistillConvNet"/>'s order).
/// </summary>
public sealed class ExpertTrajectory : IDisposable
{
    /// <summary>A trajectory over the given checkpoints (taken over: this object disposes them).</summary>
    public ExpertTrajectory(IReadOnlyList<Tensor[]> checkpoints)
    {
        ArgumentNullException.ThrowIfNull(checkpoints);
        if (checkpoints.Count < 2) throw new ArgumentException($"ExpertTrajectory: needs at least 2 checkpoints (start and one epoch), got {checkpoints.Count}.");
        foreach (var ck in checkpoints)
            foreach (var t in ck) t.DetachFromDisposeScope();
        Checkpoints = checkpoints;
    }

    /// <summary>Parameters after 0, 1, ..., Epochs epochs.</summary>
    public IReadOnlyList<Tensor[]> Checkpoints { get; }

    /// <summary>Epochs recorded.</summary>
    public int Epochs => Checkpoints.Count - 1;

    /// <summary>
    /// Trains a fresh ConvNet (seeded by <paramref name="seed"/>) on all of <paramref name="real"/> for
    /// <paramref name="epochs"/> epochs of plain SGD (no momentum, no weight decay, as the experts of
    /// Cazenavette et al.), mini-batches of <paramref name="batchSize"/> in a shuffled order, and records the
    /// parameters at the start and after every epoch. <paramref name="progress"/> gets one line per epoch.
    /// </summary>
    public static ExpertTrajectory Train(ConvNetSpec spec, ClassImages real, int epochs, double learningRate, int batchSize, ulong seed, Action<string>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(spec);
        ArgumentNullException.ThrowIfNull(real);
        if (epochs < 1 || batchSize < 1 || !(learningRate > 0))
            throw new ArgumentException($"ExpertTrajectory.Train: expected epochs ≥ 1, batch ≥ 1 and a positive learning rate; got {epochs}, {batchSize}, {learningRate}.");
        var net = DistillConvNet.Init(spec, new Generator(seed), real.Images.DType);
        var rng = new Random(unchecked((int)seed) ^ 0x3C6EF372);
        var checkpoints = new List<Tensor[]> { Snapshot(net) };
        var labels = real.Labels.ToArray();
        using var optimizer = new SGD(net, learningRate);
        try
        {
            for (int e = 0; e < epochs; e++)
            {
                var order = Enumerable.Range(0, real.Count).Select(i => (long)i).ToArray();
                rng.Shuffle(order);
                double lossSum = 0;
                int batches = 0;
                for (int start = 0; start < order.Length; start += batchSize)
                {
                    using var scope = Tensor.NewDisposeScope();
                    var idx = order[start..Math.Min(order.Length, start + batchSize)];
                    var x = real.Gather(idx);
                    var y = Tensor.FromArray(idx.Select(i => labels[i]).ToArray(), idx.Length);
                    var loss = Functional.CrossEntropy(DistillConvNet.Forward(spec, net, x), y);
                    lossSum += loss.ToDouble();
                    batches++;
                    loss.Backward();
                    optimizer.Step();
                    optimizer.ZeroGrad();
                }
                checkpoints.Add(Snapshot(net));
                progress?.Invoke($"expert (seed {seed}) epoch {e + 1}/{epochs}: train loss {lossSum / Math.Max(1, batches):F4}");
            }
        }
        finally
        {
            foreach (var p in net) p.Dispose();
        }
        return new ExpertTrajectory(checkpoints);
    }

    private static Tensor[] Snapshot(Tensor[] net)
    {
        using (Tensor.NoGrad())
            return net.Select(p => p.Detach().Clone().DetachFromDisposeScope()).ToArray();
    }

    /// <summary>Disposes every checkpoint.</summary>
    public void Dispose()
    {
        foreach (var ck in Checkpoints)
            foreach (var t in ck) t.Dispose();
    }
}

/// <summary>
/// Settings of <see cref="TrajectoryMatching"/> (the paper's names in parentheses).
/// </summary>
/// <param name="SyntheticSteps">Unrolled SGD steps N on the synthetic set (syn_steps; the paper: 30 to 80).</param>
/// <param name="ExpertEpochs">Expert epochs M between the start and the target checkpoint (expert_epochs: 2).</param>
/// <param name="MaxStartEpoch">The start epoch t is uniform in [0, MaxStartEpoch] (max_start_epoch).</param>
/// <param name="SyntheticBatch">Synthetic images per inner step (batch_syn; 0: all of them).</param>
/// <param name="ImageLearningRate">SGD learning rate of the images (lr_img; the paper: 100 to 10⁴).</param>
/// <param name="LearningRateLearningRate">SGD learning rate of the synthetic learning rate (lr_lr); 0 keeps it fixed.</param>
/// <param name="Momentum">SGD momentum of both (0.5).</param>
public sealed record TrajectoryMatchingOptions(int SyntheticSteps = 10, int ExpertEpochs = 2, int MaxStartEpoch = 2, int SyntheticBatch = 0,
    double ImageLearningRate = 100, double LearningRateLearningRate = 1e-5, double Momentum = 0.5);

/// <summary>
/// Matching training trajectories (MTT; Cazenavette et al., "Dataset Distillation by Matching Training
/// Trajectories", CVPR 2022). Each iteration picks an expert trajectory and a start epoch t, starts a
/// network at the expert's θ*_t, takes N SGD steps on the synthetic set,
/// <code>
/// θ_{k+1} = θ_k − α · ∇_θ CE(f_{θ_k}(S_k), y_k)          (α the learnable synthetic learning rate)
/// L = ‖θ_N − θ*_{t+M}‖² / ‖θ*_t − θ*_{t+M}‖²              (sums over all parameters)
/// </code>
/// and updates S and α by SGD on L. Each inner gradient is taken with createGraph, so ∂L/∂S and ∂L/∂α
/// differentiate through all N unrolled steps (second order, memory linear in N). No ZCA whitening and no
/// DSA augmentation.
/// </summary>
public sealed class TrajectoryMatching : DatasetDistillationMethod
{
    private readonly TrajectoryMatchingOptions _options;
    private readonly IReadOnlyList<ExpertTrajectory> _experts;
    private readonly SGD? _lrOptimizer;

    /// <summary>An MTT run that matches <paramref name="experts"/> (owned by the caller) by updating <paramref name="synthetic"/>.</summary>
    public TrajectoryMatching(ConvNetSpec spec, ClassImages real, SyntheticSet synthetic, IReadOnlyList<ExpertTrajectory> experts, TrajectoryMatchingOptions? options = null, ulong seed = 0)
        : base("mtt", spec, real, synthetic, (options ?? new()).ImageLearningRate, (options ?? new()).Momentum, seed)
    {
        ArgumentNullException.ThrowIfNull(experts);
        _options = options ?? new();
        _experts = experts;
        if (experts.Count == 0) throw new ArgumentException("mtt: needs at least one expert trajectory.");
        if (_options.SyntheticSteps < 1 || _options.ExpertEpochs < 1 || _options.MaxStartEpoch < 0 || _options.SyntheticBatch < 0)
            throw new ArgumentException($"mtt: expected synthetic steps ≥ 1, expert epochs ≥ 1, max start epoch ≥ 0 and batch ≥ 0; got {_options}.");
        foreach (var e in experts)
            if (e.Epochs < _options.MaxStartEpoch + _options.ExpertEpochs)
                throw new ArgumentException($"mtt: an expert has {e.Epochs} epochs; max start epoch {_options.MaxStartEpoch} + expert epochs {_options.ExpertEpochs} needs {_options.MaxStartEpoch + _options.ExpertEpochs}.");
        if (_options.LearningRateLearningRate > 0)
            _lrOptimizer = new SGD([synthetic.LearningRate], _options.LearningRateLearningRate, momentum: _options.Momentum);
    }

    /// <summary>
    /// L = ‖θ_N − θ*_target‖² / ‖θ*_start − θ*_target‖² after <paramref name="steps"/> SGD steps
    /// θ_{k+1} = θ_k − <paramref name="learningRate"/>·∇CE(f_{θ_k}(x_k), y_k) from θ_0 = <paramref name="start"/>,
    /// where step k uses the synthetic rows <paramref name="batches"/>[k] (null: all rows at every step).
    /// Differentiable with respect to <paramref name="syntheticImages"/> and <paramref name="learningRate"/>
    /// (a 0-d tensor) through every step. <paramref name="start"/> and <paramref name="target"/> are not changed.
    /// Under <see cref="Tensor.NoGrad"/> the inner gradients are still computed and only the value is returned.
    /// </summary>
    public static Tensor Objective(ConvNetSpec spec, IReadOnlyList<Tensor> start, IReadOnlyList<Tensor> target, Tensor syntheticImages, Tensor syntheticLabels,
        Tensor learningRate, int steps, IReadOnlyList<long[]>? batches = null)
    {
        ArgumentNullException.ThrowIfNull(start);
        ArgumentNullException.ThrowIfNull(target);
        ArgumentNullException.ThrowIfNull(learningRate);
        if (start.Count != target.Count) throw new ArgumentException($"mtt: {start.Count} start tensors but {target.Count} target tensors.");
        if (steps < 1) throw new ArgumentException($"mtt: steps must be ≥ 1, got {steps}.");
        if (batches is not null && batches.Count < steps) throw new ArgumentException($"mtt: {batches.Count} batches for {steps} steps.");
        bool record = GradMode.IsEnabled;
        var created = new List<Tensor>(); // every θ_k made here, disposed at the end (the graph keeps what it needs)
        try
        {
            Tensor[] theta;
            using (Tensor.NoGrad()) theta = start.Select(p => p.Detach().Clone()).ToArray();
            foreach (var p in theta) p.RequiresGrad = true; // θ_0: a leaf the inner gradients are taken with respect to
            created.AddRange(theta);
            for (int k = 0; k < steps; k++)
            {
                Tensor x = syntheticImages, y = syntheticLabels;
                if (batches is not null)
                {
                    using var idx = Tensor.FromArray(batches[k], batches[k].Length);
                    x = syntheticImages.IndexSelect(0, idx);
                    y = syntheticLabels.IndexSelect(0, idx);
                }
                Tensor?[] grads;
                try
                {
                    // Inner gradients need recording even when the caller runs without grad (then the
                    // steps are taken without createGraph and each θ_k is a fresh leaf).
                    using var on = GradMode.Set(true);
                    using var logits = DistillConvNet.Forward(spec, theta, x);
                    using var loss = Functional.CrossEntropy(logits, y);
                    grads = Autograd.Grad([loss], theta, createGraph: record, allowUnused: true);
                }
                finally
                {
                    if (batches is not null) { x.Dispose(); y.Dispose(); }
                }
                var next = new Tensor[theta.Length];
                for (int i = 0; i < theta.Length; i++)
                {
                    if (grads[i] is null) { next[i] = theta[i]; continue; }
                    using var g = grads[i]!;
                    using var step = g.Mul(learningRate);
                    next[i] = theta[i].Sub(step);
                    if (!record) next[i].RequiresGrad = true;
                    created.Add(next[i]);
                }
                theta = next;
            }
            Tensor? num = null, den = null;
            for (int i = 0; i < theta.Length; i++)
            {
                using var d = theta[i].Sub(target[i]);
                using var dd = d.Mul(d);
                var s = dd.Sum();
                num = Accumulate(num, s);
                Tensor s0;
                using (Tensor.NoGrad())
                using (var d0 = start[i].Detach().Sub(target[i]))
                using (var dd0 = d0.Mul(d0))
                    s0 = dd0.Sum();
                den = Accumulate(den, s0);
            }
            using (num)
            using (den)
                return num!.Div(den!);
        }
        finally
        {
            foreach (var t in created) t.Dispose();
        }
    }

    private static Tensor Accumulate(Tensor? total, Tensor term)
    {
        if (total is null) return term;
        using (total)
        using (term)
            return total.Add(term);
    }

    /// <inheritdoc/>
    public override double Step(int iteration)
    {
        using var scope = Tensor.NewDisposeScope();
        var expert = _experts[Rng.Next(_experts.Count)];
        int t = Rng.Next(_options.MaxStartEpoch + 1);
        var start = expert.Checkpoints[t];
        var target = expert.Checkpoints[t + _options.ExpertEpochs];
        List<long[]>? batches = null;
        int n = Synthetic.Count;
        if (_options.SyntheticBatch > 0 && _options.SyntheticBatch < n)
        {
            batches = [];
            var order = Array.Empty<long>();
            int pos = n;
            for (int k = 0; k < _options.SyntheticSteps; k++)
            {
                if (pos + _options.SyntheticBatch > n)
                {
                    order = Enumerable.Range(0, n).Select(i => (long)i).ToArray();
                    Rng.Shuffle(order);
                    pos = 0;
                }
                batches.Add(order[pos..(pos + _options.SyntheticBatch)]);
                pos += _options.SyntheticBatch;
            }
        }
        var loss = Objective(Spec, start, target, Synthetic.Images, Synthetic.Labels, Synthetic.LearningRate, _options.SyntheticSteps, batches);
        double value = loss.ToDouble();
        var wrt = _lrOptimizer is null ? new[] { Synthetic.Images } : [Synthetic.Images, Synthetic.LearningRate];
        var grads = Autograd.Grad([loss], wrt, allowUnused: true);
        for (int i = 0; i < wrt.Length; i++)
            if (grads[i] is { } g) AddGradient(wrt[i], g);
        UpdateImages();
        if (_lrOptimizer is not null)
        {
            _lrOptimizer.Step();
            _lrOptimizer.ZeroGrad();
        }
        return value;
    }

    /// <inheritdoc/>
    protected override void Dispose(bool disposing)
    {
        if (disposing) _lrOptimizer?.Dispose();
        base.Dispose(disposing);
    }
}
