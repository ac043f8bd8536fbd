using Engine.Tensors;
using Engine.Tensors.NN;

namespace Engine.Distillation.Methods;

/// <summary>
/// Deep mutual learning (Zhang et al. 2018): K ≥ 2 peer students learn together, each from the labels
/// and from the others: <c>L_k = CE(z_k, y) + (1/(K−1))·Σ_{l≠k} KL(p_l ‖ p_k)</c> with p = softmax(z)
/// (T = 1, batchmean) and the peers' p_l treated as constants. The peers are updated alternately, as
/// the paper's Algorithm 1: update k recomputes every peer's predictions on the batch (so peer k sees
/// the peers already updated in this step), then steps peer k only. Peer 0 is <see cref="DistillationMethod.Student"/>
/// (reported); the others are created by the factory and owned by the method.
/// </summary>
public sealed class DeepMutualLearningMethod : DistillationMethod
{
    private readonly List<Module> _peers;

    /// <summary>Mutual learning of <paramref name="student"/> with <paramref name="peers"/> − 1 peers made by <paramref name="newPeer"/>(k) for k = 1 .. K−1.</summary>
    public DeepMutualLearningMethod(Module student, Func<int, Module> newPeer, int peers = 2) : base("dml", student)
    {
        ArgumentNullException.ThrowIfNull(newPeer);
        if (peers < 2) throw new ArgumentOutOfRangeException(nameof(peers), peers, "dml: mutual learning needs at least 2 peers.");
        _peers = [student];
        for (int k = 1; k < peers; k++) _peers.Add(AddExtraModule(newPeer(k)));
    }

    /// <summary>All peers, the student first.</summary>
    public IReadOnlyList<Module> Peers => _peers;

    /// <summary>One group per peer: update k trains peer k.</summary>
    public override IReadOnlyList<IReadOnlyList<Tensor>> UpdateGroups => _peers.Select(p => (IReadOnlyList<Tensor>)p.Parameters().ToList()).ToList();

    /// <inheritdoc/>
    public override MethodLoss Loss(DistillationBatch batch, int update)
    {
        ArgumentNullException.ThrowIfNull(batch);
        if (update < 0 || update >= _peers.Count) throw new ArgumentOutOfRangeException(nameof(update), update, $"dml: {_peers.Count} peers, so updates 0 .. {_peers.Count - 1}.");
        var z = _peers[update].Forward(batch.Images);
        var others = new List<Tensor>();
        try
        {
            using (Tensor.NoGrad())
                for (int l = 0; l < _peers.Count; l++)
                    if (l != update) others.Add(_peers[l].Forward(batch.Images));
            return new MethodLoss(PeerLoss(z, others, batch.Labels), z);
        }
        finally
        {
            foreach (var o in others) o.Dispose();
        }
    }

    /// <summary>
    /// <c>CE(z, y) + (1/|others|)·Σ_l KL(softmax(z_l) ‖ softmax(z))</c> (batchmean; the others' logits as given).
    /// KL(p_l ‖ p) is computed as <see cref="Losses.KnowledgeDistillation"/> with T = 1, α = 1 (0·CE + KL) until the
    /// fused divergences land.
    /// </summary>
    public static Tensor PeerLoss(Tensor logits, IReadOnlyList<Tensor> otherLogits, Tensor labels)
    {
        ArgumentNullException.ThrowIfNull(logits);
        ArgumentNullException.ThrowIfNull(otherLogits);
        using var scope = Tensor.NewDisposeScope();
        var loss = Functional.CrossEntropy(logits, labels);
        if (otherLogits.Count > 0)
        {
            Tensor? kl = null;
            foreach (var o in otherLogits)
            {
                var term = Losses.KnowledgeDistillation(logits, o, labels, 1, 1);
                kl = kl is null ? term : kl + term;
            }
            loss = loss + kl! * (1.0 / otherLogits.Count);
        }
        return loss.MoveToOuterDisposeScope();
    }
}

/// <summary>
/// Progressive self-knowledge distillation (PS-KD, Kim et al. 2021), as the authors' code: the soft
/// target of sample i at epoch t is <c>(1 − α_t)·onehot(y_i) + α_t·P_{t−1}(x_i)</c>, where P_{t−1} is the
/// softmax the model itself gave that sample during the previous epoch (stored per sample, detached;
/// at epoch 0 the stored prediction is the one-hot label) and <c>α_t = α_T·(t + 1)/T_epochs</c> grows
/// linearly to α_T = 0.8 at the last epoch. Loss: <see cref="FeatureLosses.SoftCrossEntropy"/>.
/// No teacher. Needs the samples' indices (<see cref="DistillationBatch.Indices"/>).
/// </summary>
public sealed class ProgressiveSelfKDMethod : DistillationMethod
{
    private float[]? _predictions;
    private int _classes;

    /// <summary>PS-KD of <paramref name="student"/> with final weight <paramref name="alphaT"/>.</summary>
    public ProgressiveSelfKDMethod(Module student, double alphaT = 0.8) : base("pskd", student)
    {
        if (!(alphaT >= 0 && alphaT <= 1)) throw new ArgumentOutOfRangeException(nameof(alphaT), alphaT, "pskd: alpha_T must be in [0, 1].");
        AlphaT = alphaT;
    }

    /// <summary>α_T.</summary>
    public double AlphaT { get; }

    /// <summary>α_t of 0-based epoch <paramref name="epoch"/>.</summary>
    public double AlphaAt(int epoch) => AlphaT * (epoch + 1) / Math.Max(1, Plan?.Epochs ?? 1);

    /// <inheritdoc/>
    public override void BeginTraining(TrainingPlan plan)
    {
        base.BeginTraining(plan);
        _classes = plan.Classes;
        _predictions = new float[(long)plan.DatasetSize * plan.Classes];
        for (long i = 0; i < plan.DatasetSize; i++) _predictions[i * _classes] = float.NaN; // "not seen yet": use the one-hot label
    }

    /// <summary>The stored prediction of sample <paramref name="index"/> (NaN in slot 0 until the sample was seen).</summary>
    public ReadOnlySpan<float> StoredPrediction(long index)
        => (_predictions ?? throw new InvalidOperationException("pskd: BeginTraining was not called.")).AsSpan((int)(index * _classes), _classes);

    /// <inheritdoc/>
    public override MethodLoss Loss(DistillationBatch batch, int update)
    {
        ArgumentNullException.ThrowIfNull(batch);
        var store = _predictions ?? throw new InvalidOperationException("pskd: BeginTraining was not called (the per-sample predictions are sized there).");
        var logits = Student.Forward(batch.Images);
        int n = (int)logits.Size(0), c = (int)logits.Size(1);
        if (c != _classes) throw new ArgumentException($"pskd: the model gives {c} classes but the plan has {_classes}.");
        if (batch.Indices.Length != n) throw new ArgumentException($"pskd: {batch.Indices.Length} sample indices for a batch of {n}.");
        double alpha = AlphaAt(batch.Epoch);
        var y = batch.Labels.ToArray<long>();
        var target = new float[n * c];
        for (int i = 0; i < n; i++)
        {
            long idx = batch.Indices[i];
            bool seen = !float.IsNaN(store[idx * c]);
            for (int j = 0; j < c; j++)
            {
                double prev = seen ? store[idx * c + j] : (j == y[i] ? 1 : 0);
                target[i * c + j] = (float)((1 - alpha) * (j == y[i] ? 1 : 0) + alpha * prev);
            }
        }
        using var scope = Tensor.NewDisposeScope();
        var t = Tensor.FromArray(target, n, c).To(logits.DType).To(logits.Device);
        var loss = FeatureLosses.SoftCrossEntropy(logits, t);
        using (Tensor.NoGrad())
        {
            var p = logits.Softmax(1).To(DType.Float32).Contiguous().ToArray<float>();
            for (int i = 0; i < n; i++) Array.Copy(p, i * c, store, batch.Indices[i] * c, c);
        }
        return new MethodLoss(loss.MoveToOuterDisposeScope(), logits);
    }
}
