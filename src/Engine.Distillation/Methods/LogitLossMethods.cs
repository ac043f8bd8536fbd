using Engine.Tensors;
using Engine.Tensors.NN;

namespace Engine.Distillation.Methods;

/// <summary>
/// DKD (Zhao et al. 2022) as mdistiller trains it: <c>CE(s, y) + w·(α·TCKD + β·NCKD)</c> with T² scaling,
/// α = 1, β = 8, T = 4 (<see cref="Engine.Distillation.LogitLoss.DkdWithCrossEntropy"/>; the math is in <see cref="Engine.Distillation.LogitLoss.Dkd"/>).
/// <para>
/// Warm-up w = min(e / W, 1). mdistiller uses W = 20 of its 240 epochs with e the 1-based epoch. Our runs
/// are a few epochs long, so the warm-up is scaled to the run: W = <see cref="WarmupFraction"/> · epochs
/// (default 20/240 = 1/12 of the run), and e is the continuous progress in epochs at the end of the current
/// step, e = (global step + 1) / steps per epoch, so the ramp does not degenerate into one jump when W is
/// below one epoch. At 240 epochs this is mdistiller's ramp sampled per step instead of per epoch. Before
/// <see cref="DistillationMethod.BeginTraining"/> (no plan) it falls back to mdistiller's exact rule:
/// W = 20, e = epoch + 1.
/// </para>
/// </summary>
public sealed class DkdMethod : LogitDistillationMethod
{
    /// <summary>DKD of <paramref name="student"/> from <paramref name="teacher"/>.</summary>
    /// <param name="student">The model trained.</param>
    /// <param name="teacher">The frozen teacher.</param>
    /// <param name="alpha">α, the TCKD weight (1).</param>
    /// <param name="beta">β, the NCKD weight (8).</param>
    /// <param name="temperature">T of the DKD term (4).</param>
    /// <param name="warmupFraction">Warm-up length as a fraction of the run (20/240); 0 turns it off.</param>
    /// <param name="ceWeight">Weight of the cross-entropy (1).</param>
    public DkdMethod(Module student, Module teacher, double alpha = 1, double beta = 8, double temperature = 4, double warmupFraction = 20.0 / 240, double ceWeight = 1)
        : base("dkd", student, [teacher])
    {
        ArgumentChecks.Positive("dkd", nameof(temperature), temperature);
        ArgumentChecks.NonNegative("dkd", nameof(alpha), alpha);
        ArgumentChecks.NonNegative("dkd", nameof(beta), beta);
        ArgumentChecks.NonNegative("dkd", nameof(ceWeight), ceWeight);
        if (!(warmupFraction >= 0 && warmupFraction <= 1))
            throw new ArgumentOutOfRangeException(nameof(warmupFraction), warmupFraction, "dkd: warmupFraction must be in [0, 1].");
        Alpha = alpha; Beta = beta; Temperature = temperature; WarmupFraction = warmupFraction; CeWeight = ceWeight;
    }

    /// <summary>α (TCKD weight).</summary>
    public double Alpha { get; }
    /// <summary>β (NCKD weight).</summary>
    public double Beta { get; }
    /// <summary>T.</summary>
    public double Temperature { get; }
    /// <summary>Warm-up length as a fraction of the run's epochs.</summary>
    public double WarmupFraction { get; }
    /// <summary>Weight of the cross-entropy.</summary>
    public double CeWeight { get; }

    /// <summary>The (progress e, warm-up epochs W) passed to the DKD loss for <paramref name="batch"/> (see the class summary).</summary>
    public (double Epoch, double WarmupEpochs) Warmup(DistillationBatch batch)
    {
        ArgumentNullException.ThrowIfNull(batch);
        if (Plan is not { } plan) return (batch.Epoch + 1, WarmupFraction == 0 ? 0 : 20);
        double e = (batch.GlobalStep + 1) / (double)Math.Max(plan.StepsPerEpoch, 1);
        return (e, WarmupFraction * plan.Epochs);
    }

    /// <inheritdoc/>
    protected override Tensor LogitLoss(Tensor studentLogits, IReadOnlyList<Tensor> teacherLogits, Tensor labels, DistillationBatch batch)
    {
        var (e, w) = Warmup(batch);
        return Distillation.LogitLoss.DkdWithCrossEntropy(studentLogits, teacherLogits[0], labels, e, CeWeight, Alpha, Beta, Temperature, w);
    }
}

/// <summary>
/// DIST (Huang et al. 2022) as torchdistill's ImageNet configuration trains it:
/// <c>ceWeight·CE(s, y) + β·inter + γ·intra</c> with β = γ = τ = 1 and τ² scaling
/// (<see cref="Engine.Distillation.LogitLoss.Dist"/> for the correlations), ceWeight = 1.
/// </summary>
public sealed class DistMethod : LogitDistillationMethod
{
    /// <summary>DIST of <paramref name="student"/> from <paramref name="teacher"/>.</summary>
    /// <param name="student">The model trained.</param>
    /// <param name="teacher">The frozen teacher.</param>
    /// <param name="beta">β, the inter-class (per-row) weight (1).</param>
    /// <param name="gamma">γ, the intra-class (per-column) weight (1).</param>
    /// <param name="temperature">τ (1).</param>
    /// <param name="ceWeight">Weight of the cross-entropy (1).</param>
    public DistMethod(Module student, Module teacher, double beta = 1, double gamma = 1, double temperature = 1, double ceWeight = 1)
        : base("dist", student, [teacher])
    {
        ArgumentChecks.Positive("dist", nameof(temperature), temperature);
        ArgumentChecks.NonNegative("dist", nameof(beta), beta);
        ArgumentChecks.NonNegative("dist", nameof(gamma), gamma);
        ArgumentChecks.NonNegative("dist", nameof(ceWeight), ceWeight);
        Beta = beta; Gamma = gamma; Temperature = temperature; CeWeight = ceWeight;
    }

    /// <summary>β.</summary>
    public double Beta { get; }
    /// <summary>γ.</summary>
    public double Gamma { get; }
    /// <summary>τ.</summary>
    public double Temperature { get; }
    /// <summary>Weight of the cross-entropy.</summary>
    public double CeWeight { get; }

    /// <inheritdoc/>
    protected override Tensor LogitLoss(Tensor studentLogits, IReadOnlyList<Tensor> teacherLogits, Tensor labels, DistillationBatch batch)
    {
        using var dist = Distillation.LogitLoss.Dist(studentLogits, teacherLogits[0], Beta, Gamma, Temperature, scaleByTemperatureSquared: true);
        using var ce = Functional.CrossEntropy(studentLogits, labels);
        using var wce = ce.Mul(CeWeight);
        return wce.Add(dist);
    }
}

/// <summary>
/// TAID (SakanaAI): <c>LogitLoss.Taid</c>
/// alone, <c>−mean_rows Σ r·log q</c> with r = softmax((1 − u)·stopgrad(s) + u·t), as LOSSES.md and the reference
/// define it: no cross-entropy to the labels and no temperature. u follows a <see cref="TaidSchedule"/>
/// (start 0.4, end 1, α = 5e-4, β = 0.99) over the run's steps, created in <see cref="BeginTraining"/>; each
/// <see cref="LogitDistillationMethod.Loss"/> uses the current u and then advances the schedule with that loss value and the global
/// step (the reference calls <c>update_t(loss, global_step)</c> in its training step), so u is updated once per step.
/// </summary>
public sealed class TaidMethod : LogitDistillationMethod
{
    /// <summary>TAID of <paramref name="student"/> from <paramref name="teacher"/>.</summary>
    /// <param name="student">The model trained.</param>
    /// <param name="teacher">The frozen teacher.</param>
    /// <param name="start">u at step 0 (0.4).</param>
    /// <param name="end">The largest u (1).</param>
    /// <param name="alpha">The schedule's adaptive step size (5e-4).</param>
    public TaidMethod(Module student, Module teacher, double start = 0.4, double end = 1, double alpha = 5e-4) : base("taid", student, [teacher])
    {
        _ = new TaidSchedule(1, start, end, alpha); // validates now rather than at BeginTraining
        Start = start; End = end; ScheduleAlpha = alpha;
    }

    /// <summary>u at step 0.</summary>
    public double Start { get; }
    /// <summary>The largest u.</summary>
    public double End { get; }
    /// <summary>The schedule's α.</summary>
    public double ScheduleAlpha { get; }

    /// <summary>The run's schedule (null before <see cref="BeginTraining"/>).</summary>
    public TaidSchedule? Schedule { get; private set; }

    /// <inheritdoc/>
    public override void BeginTraining(TrainingPlan plan)
    {
        base.BeginTraining(plan);
        Schedule = new TaidSchedule(Math.Max(plan.TotalSteps, 1), Start, End, ScheduleAlpha);
    }

    /// <inheritdoc/>
    protected override Tensor LogitLoss(Tensor studentLogits, IReadOnlyList<Tensor> teacherLogits, Tensor labels, DistillationBatch batch)
    {
        var schedule = Schedule ?? throw new InvalidOperationException("taid: call BeginTraining first (the interpolation schedule needs the run's step count).");
        var loss = Distillation.LogitLoss.Taid(studentLogits, teacherLogits[0], schedule);
        double value = loss.ToDouble();
        if (double.IsFinite(value)) schedule.Update(value, batch.GlobalStep);
        return loss;
    }
}

/// <summary>
/// Multi-teacher distillation without hard labels, MEAL V2 style: the target is the mean of the teachers'
/// probabilities, <c>p̄ = (1/K) Σ_k softmax(t_k)</c>, and the loss is <c>mean_rows KL(p̄ ‖ softmax(s))</c>
/// (<see cref="Engine.Distillation.LogitLoss.MultiTeacher"/>, T = 1; MEAL V2 writes the soft cross-entropy −Σ p̄ log q, which differs
/// by the entropy of p̄, a constant, so the gradient is the same). Needs at least two teachers (different
/// checkpoints): one teacher is plain KD without labels, and the same network under different dropout is not
/// an ensemble.
/// </summary>
public sealed class MultiTeacherMethod : LogitDistillationMethod
{
    /// <summary>Distils <paramref name="student"/> from the average of <paramref name="teachers"/> (two or more).</summary>
    /// <param name="student">The model trained.</param>
    /// <param name="teachers">The frozen teachers (at least 2, distinct objects).</param>
    /// <param name="temperature">T of every softmax (1, as MEAL V2); T² scaling applied (1 at T = 1).</param>
    /// <exception cref="ArgumentException">Fewer than two teachers, or the same teacher object twice.</exception>
    public MultiTeacherMethod(Module student, IReadOnlyList<Module> teachers, double temperature = 1) : base("multi-teacher", student, CheckTeachers(teachers))
    {
        ArgumentChecks.Positive("multi-teacher", nameof(temperature), temperature);
        Temperature = temperature;
    }

    /// <summary>T.</summary>
    public double Temperature { get; }

    private static IReadOnlyList<Module> CheckTeachers(IReadOnlyList<Module> teachers)
    {
        ArgumentNullException.ThrowIfNull(teachers);
        if (teachers.Count < 2)
            throw new ArgumentException($"multi-teacher: needs at least 2 teachers (distinct checkpoints, averaged MEAL V2 style); got {teachers.Count}. One teacher is KD without labels (use kd with --alpha 1).");
        if (teachers.Distinct(ReferenceEqualityComparer.Instance).Count() != teachers.Count)
            throw new ArgumentException("multi-teacher: the same teacher was given twice; the ensemble needs distinct checkpoints.");
        return teachers;
    }

    /// <inheritdoc/>
    protected override Tensor LogitLoss(Tensor studentLogits, IReadOnlyList<Tensor> teacherLogits, Tensor labels, DistillationBatch batch)
        => Distillation.LogitLoss.MultiTeacher(studentLogits, teacherLogits, Temperature, loss: SoftTargetLoss.KullbackLeibler, scaleByTemperatureSquared: true);
}

/// <summary>
/// Plackett–Luce distillation (PLD, Bassam et al. 2025): <c>ceWeight·CE(s, y) + λ·PLD(s, t, y)</c> with
/// the list-wise loss of <see cref="Engine.Distillation.LogitLoss.PlackettLuce"/> (true class first, then the rest by the teacher's
/// confidence softmax(t/T), weights = those confidences; batch mean), T = 1, ceWeight = 1, λ = 1 (our defaults:
/// the labels enter twice, through the CE and through the ranking, whose first term is the CE weighted by the
/// teacher's confidence in the true class); set ceWeight = 0 for the list-wise loss alone.
/// </summary>
public sealed class PldMethod : LogitDistillationMethod
{
    /// <summary>PLD of <paramref name="student"/> from <paramref name="teacher"/>.</summary>
    /// <param name="student">The model trained.</param>
    /// <param name="teacher">The frozen teacher.</param>
    /// <param name="temperature">T of the teacher confidences (1).</param>
    /// <param name="weight">λ, the weight of the list-wise term (1).</param>
    /// <param name="ceWeight">Weight of the cross-entropy (1).</param>
    public PldMethod(Module student, Module teacher, double temperature = 1, double weight = 1, double ceWeight = 1) : base("pld", student, [teacher])
    {
        ArgumentChecks.Positive("pld", nameof(temperature), temperature);
        ArgumentChecks.NonNegative("pld", nameof(weight), weight);
        ArgumentChecks.NonNegative("pld", nameof(ceWeight), ceWeight);
        Temperature = temperature; Weight = weight; CeWeight = ceWeight;
    }

    /// <summary>T of the confidences.</summary>
    public double Temperature { get; }
    /// <summary>λ.</summary>
    public double Weight { get; }
    /// <summary>Weight of the cross-entropy.</summary>
    public double CeWeight { get; }

    /// <inheritdoc/>
    protected override Tensor LogitLoss(Tensor studentLogits, IReadOnlyList<Tensor> teacherLogits, Tensor labels, DistillationBatch batch)
    {
        using var pld = Distillation.LogitLoss.PlackettLuce(studentLogits, teacherLogits[0], labels, Temperature);
        using var ce = Functional.CrossEntropy(studentLogits, labels);
        using var a = ce.Mul(CeWeight);
        using var b = pld.Mul(Weight);
        return a.Add(b);
    }
}

/// <summary>
/// BD-KD (Amara et al. 2022), offline form (frozen teacher):
/// <c>(1 − α)·CE(s, y) + α·T²·(1/B) Σ_rows [w·KL(p ‖ q) + (1 − w)·KL(q ‖ p)]</c>, p = softmax(t/T),
/// q = softmax(s/T), T = 4, α = 0.9 (KD's defaults), through <see cref="Divergences.BdKd"/>.
/// <para>
/// Our weight rule (the paper sets the weights per sample from the two entropies; this is our continuous
/// form of it): <c>w = H(p) / (H(p) + H(q))</c> (0.5 when both are 0), entropies of the tempered
/// distributions, computed without gradient. A student more confident than its teacher (H(q) &lt; H(p)) gets
/// w &gt; ½, more forward KL (mass-covering: it softens the student); a less confident one gets more reverse
/// KL (mode-seeking: it sharpens the student). w is a constant of the step (no gradient flows through it).
/// </para>
/// </summary>
public sealed class BdKdMethod : LogitDistillationMethod
{
    /// <summary>BD-KD of <paramref name="student"/> from <paramref name="teacher"/>.</summary>
    /// <param name="student">The model trained.</param>
    /// <param name="teacher">The frozen teacher.</param>
    /// <param name="temperature">T (4).</param>
    /// <param name="alpha">α, the weight of the divergence term against the labels (0.9).</param>
    public BdKdMethod(Module student, Module teacher, double temperature = 4, double alpha = 0.9) : base("bdkd", student, [teacher])
    {
        ArgumentChecks.Positive("bdkd", nameof(temperature), temperature);
        if (!(alpha >= 0 && alpha <= 1)) throw new ArgumentOutOfRangeException(nameof(alpha), alpha, "bdkd: alpha must be in [0, 1].");
        Temperature = temperature; Alpha = alpha;
    }

    /// <summary>T.</summary>
    public double Temperature { get; }
    /// <summary>α.</summary>
    public double Alpha { get; }

    /// <summary>
    /// The per-row forward-KL weights w = H(p)/(H(p) + H(q)) (float64 [B], no gradient) of tempered student
    /// logits <paramref name="student"/> and teacher logits <paramref name="teacher"/> [B, V].
    /// </summary>
    public static double[] Weights(Tensor student, Tensor teacher, double temperature)
    {
        ArgumentNullException.ThrowIfNull(student);
        ArgumentNullException.ThrowIfNull(teacher);
        using var _ = Tensor.NoGrad();
        using var scope = Tensor.NewDisposeScope();
        double[] Entropy(Tensor z)
        {
            // Float64, from log-softmax: H = −Σ p log p, a class with p = 0 contributes 0. Computed on the host
            // (B numbers per step, constants of the loss): the device kernels are float32 only.
            var lp = z.To(Engine.Runtime.Device.Cpu).To(DType.Float64).LogSoftmax(-1, temperature);
            var p = lp.Exp();
            var h = p.Mul(lp).Sum(-1).Neg().ToArray<double>();
            for (int i = 0; i < h.Length; i++) if (double.IsNaN(h[i])) h[i] = 0; // only 0·(−∞) rows; entropy 0 there
            return h;
        }
        var hq = Entropy(student);
        var hp = Entropy(teacher);
        var w = new double[hq.Length];
        for (int i = 0; i < w.Length; i++)
        {
            double d = hp[i] + hq[i];
            w[i] = d > 0 ? Math.Clamp(hp[i] / d, 0, 1) : 0.5;
        }
        return w;
    }

    /// <inheritdoc/>
    protected override Tensor LogitLoss(Tensor studentLogits, IReadOnlyList<Tensor> teacherLogits, Tensor labels, DistillationBatch batch)
    {
        var w = Weights(studentLogits, teacherLogits[0], Temperature);
        using var wHost = studentLogits.DType == DType.Float32 ? Tensor.FromArray(w.Select(v => (float)v).ToArray(), w.Length) : Tensor.FromArray(w, w.Length);
        using var wt = studentLogits.Device == wHost.Device ? wHost.Alias() : wHost.To(studentLogits.Device);
        using var bd = Divergences.BdKd(studentLogits, teacherLogits[0], wt, new DivergenceOptions { Temperature = Temperature, ScaleByTemperatureSquared = true });
        using var ce = Functional.CrossEntropy(studentLogits, labels);
        using var a = ce.Mul(1 - Alpha);
        using var b = bd.Mul(Alpha);
        return a.Add(b);
    }
}

/// <summary>Argument checks shared by the logit methods (messages name the method).</summary>
internal static class ArgumentChecks
{
    public static void Positive(string method, string name, double value)
    {
        if (!(value > 0) || double.IsInfinity(value))
            throw new ArgumentOutOfRangeException(name, value, $"{method}: {name} must be positive and finite.");
    }

    public static void NonNegative(string method, string name, double value)
    {
        if (!(value >= 0) || double.IsInfinity(value))
            throw new ArgumentOutOfRangeException(name, value, $"{method}: {name} must be finite and ≥ 0.");
    }
}
