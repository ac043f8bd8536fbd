using Engine.Tensors;

namespace Engine.Distillation;

/// <summary>
/// The f-divergence family between a student's and a teacher's class distributions, each in two forms
/// that agree: a fused one-pass form (loss and gradient together; the default) and a composite form
/// built from differentiable tensor ops (any-order gradients; see <see cref="LossImplementation"/>).
/// <para><b>Conventions shared by every method</b> (each method's own doc gives its math and gradient):</para>
/// <list type="bullet">
/// <item><b>Argument order: student first, teacher second</b>, both [..., V] of one shape and dtype; every
/// leading dim is a row dim ([N, V] or [B, L, V]). This is not PyTorch's <c>kl_div(input, target)</c> order of
/// meaning: here <c>ForwardKl(s, t)</c> is KL(teacher ‖ student).</item>
/// <item>Per row: q = softmax(s / T) (student), p = softmax(t / T) (teacher given as logits; as given for
/// log-probabilities or probabilities, <see cref="DivergenceOptions.TeacherInput"/>). T is
/// <see cref="DivergenceOptions.Temperature"/> or the row's <see cref="DivergenceOptions.RowTemperature"/>.</item>
/// <item>Row loss = c·D(p, q) with c = T² when <see cref="DivergenceOptions.ScaleByTemperatureSquared"/>, else 1;
/// then <see cref="DivergenceOptions.Reduction"/> (default batchmean). Rows whose label equals
/// <see cref="DivergenceOptions.IgnoreIndex"/> give 0 and count nowhere; if nothing counts the loss is 0 with a zero gradient.</item>
/// <item>Gradient wrt the student logits of a row: (c / T)·∂D/∂(s/T), then the reduction's factor. Each method
/// gives ∂D/∂(s/T). The fused form computes the student's gradient only (a teacher that requires grad runs the
/// composite form); temperatures and BD-KD weights are constants.</item>
/// <item>Classes with p = 0 (−∞ teacher logits, zero probabilities, underflow) contribute 0·log 0 = 0; masking a
/// class with −∞ in both s and t removes it from both distributions. A class with q = 0 but p &gt; 0 makes a
/// forward KL infinite, as it should.</item>
/// <item>Result: 0-d, or the rows' shape for <see cref="Reduction.None"/>; the inputs' dtype.</item>
/// </list>
/// Errors name the op (<c>forward_kl</c>, <c>reverse_kl</c>, <c>jsd</c>, <c>total_variation</c>, <c>skew_kl</c>,
/// <c>skew_reverse_kl</c>, <c>alpha_divergence</c>, <c>bd_kd</c>): shapes or dtypes that differ (ArgumentException),
/// T, β, λ or weights out of range (ArgumentOutOfRangeException), <see cref="LossImplementation.Fused"/> where it
/// does not apply (NotSupportedException).
/// </summary>
public static class Divergences
{
    /// <summary>
    /// Forward KL, the Hinton KD divergence: D = KL(p ‖ q) = Σ_c p_c (log p_c − log q_c) (teacher p, student q).
    /// <para>Gradient: ∂D/∂(s/T) = q − p; with T² scaling the logit gradient is T·(q − p) per row (before the reduction).
    /// Wrt the teacher's tempered logits (composite form): p ⊙ (log p − log q − D).</para>
    /// <para>Special cases: 0 when p = q; p_c = 0 contributes 0; q_c = 0 &lt; p_c gives +∞. With T = 2, batchmean,
    /// T² this is torch_bench.py's <c>kd-loss</c>: <c>kl_div(log_softmax(s/T), log_softmax(t/T), "batchmean", log_target=True)·T²</c>.</para>
    /// </summary>
    /// <param name="student">Student logits [..., V].</param>
    /// <param name="teacher">Teacher logits (or log-probabilities / probabilities) [..., V].</param>
    /// <param name="options">Temperature, T² scaling, reduction, ignored rows, teacher input, implementation.</param>
    /// <returns>The loss (0-d, or the rows' shape for <see cref="Reduction.None"/>).</returns>
    public static Tensor ForwardKl(Tensor student, Tensor teacher, DivergenceOptions? options = null)
        => Run(DivergenceProblem.Create("forward_kl", DivergenceKind.ForwardKl, 0, student, teacher, options), student, teacher);

    /// <summary>
    /// Reverse KL: D = KL(q ‖ p) = Σ_c q_c (log q_c − log p_c) (mode-seeking; MiniLLM, DistiLLM).
    /// <para>Gradient: ∂D/∂(s/T) = q ⊙ (log q − log p − D). Wrt the teacher's tempered logits: p − q.</para>
    /// <para>Special cases: 0 when p = q; q_c = 0 contributes 0; p_c = 0 &lt; q_c gives +∞.</para>
    /// </summary>
    /// <param name="student">Student logits [..., V].</param>
    /// <param name="teacher">Teacher logits (or log-probabilities / probabilities) [..., V].</param>
    /// <param name="options">Temperature, T² scaling, reduction, ignored rows, teacher input, implementation.</param>
    /// <returns>The loss (0-d, or the rows' shape for <see cref="Reduction.None"/>).</returns>
    public static Tensor ReverseKl(Tensor student, Tensor teacher, DivergenceOptions? options = null)
        => Run(DivergenceProblem.Create("reverse_kl", DivergenceKind.ReverseKl, 0, student, teacher, options), student, teacher);

    /// <summary>
    /// Generalized Jensen–Shannon divergence (Liger's definition): M = β·p + (1 − β)·q,
    /// D = β·KL(p ‖ M) + (1 − β)·KL(q ‖ M). β = 0.5 is the symmetric JSD (bounded by log 2).
    /// <para>Gradient: ∂D/∂(s/T) = a − q·Σa with a = (1 − β)·q ⊙ (log q − log M).</para>
    /// <para><b>Endpoints (our choice, as Liger):</b> the formula is 0 for every p, q at β = 0 and β = 1, so those two
    /// values are defined as the limits of JSD_β/β and JSD_β/(1 − β): <b>β = 0 is forward KL(p ‖ q)</b> and
    /// <b>β = 1 is reverse KL(q ‖ p)</b>, exactly (the same computation as <see cref="ForwardKl"/> and
    /// <see cref="ReverseKl"/>). The value therefore jumps at the ends; for β in (0, 1) it is the formula above.
    /// With β = 0.5, T = 1, batchmean this is torch_bench.py's <c>jsd-loss</c>.</para>
    /// </summary>
    /// <param name="student">Student logits [..., V].</param>
    /// <param name="teacher">Teacher logits (or log-probabilities / probabilities) [..., V].</param>
    /// <param name="beta">β in [0, 1]: the teacher's weight in the mixture M.</param>
    /// <param name="options">Temperature, T² scaling, reduction, ignored rows, teacher input, implementation.</param>
    /// <returns>The loss (0-d, or the rows' shape for <see cref="Reduction.None"/>).</returns>
    public static Tensor Jsd(Tensor student, Tensor teacher, double beta = 0.5, DivergenceOptions? options = null)
    {
        const string op = "jsd";
        if (!(beta >= 0 && beta <= 1))
            throw new ArgumentOutOfRangeException(nameof(beta), beta, $"{op}: beta must be in [0, 1] (0: forward KL, 1: reverse KL); got {beta}.");
        var kind = beta == 0 ? DivergenceKind.ForwardKl : beta == 1 ? DivergenceKind.ReverseKl : DivergenceKind.Jsd;
        return Run(DivergenceProblem.Create(op, kind, beta, student, teacher, options), student, teacher);
    }

    /// <summary>
    /// Total variation distance: D = ½·Σ_c |p_c − q_c|, in [0, 1].
    /// <para>Gradient (a subgradient): ∂D/∂(s/T) = a − q·Σa with a = ½·q ⊙ sign(q − p), sign(0) = 0.</para>
    /// </summary>
    /// <param name="student">Student logits [..., V].</param>
    /// <param name="teacher">Teacher logits (or log-probabilities / probabilities) [..., V].</param>
    /// <param name="options">Temperature, T² scaling, reduction, ignored rows, teacher input, implementation.</param>
    /// <returns>The loss (0-d, or the rows' shape for <see cref="Reduction.None"/>).</returns>
    public static Tensor TotalVariation(Tensor student, Tensor teacher, DivergenceOptions? options = null)
        => Run(DivergenceProblem.Create("total_variation", DivergenceKind.TotalVariation, 0, student, teacher, options), student, teacher);

    /// <summary>
    /// Skew KL (DistiLLM): D = KL(p ‖ λ·p + (1 − λ)·q). λ = 0 is forward KL; λ = 1 gives 0.
    /// <para>Gradient: ∂D/∂(s/T) = a − q·Σa with a = −(1 − λ)·p ⊙ q / M, M = λp + (1 − λ)q.</para>
    /// <para>Includes the constant Σ p log p that DistiLLM's code drops (the gradient is the same), so D = 0 when p = q.</para>
    /// </summary>
    /// <param name="student">Student logits [..., V].</param>
    /// <param name="teacher">Teacher logits (or log-probabilities / probabilities) [..., V].</param>
    /// <param name="lambda">λ in [0, 1] (DistiLLM's default 0.1): the teacher's weight in the skewed target.</param>
    /// <param name="options">Temperature, T² scaling, reduction, ignored rows, teacher input, implementation.</param>
    /// <returns>The loss (0-d, or the rows' shape for <see cref="Reduction.None"/>).</returns>
    public static Tensor SkewKl(Tensor student, Tensor teacher, double lambda = 0.1, DivergenceOptions? options = null)
    {
        CheckLambda("skew_kl", lambda);
        return Run(DivergenceProblem.Create("skew_kl", DivergenceKind.SkewKl, lambda, student, teacher, options), student, teacher);
    }

    /// <summary>
    /// Skew reverse KL (DistiLLM): D = KL(q ‖ (1 − λ)·p + λ·q). λ = 0 is reverse KL; λ = 1 gives 0.
    /// <para>Gradient: ∂D/∂(s/T) = a − q·Σa with a = q ⊙ (log q − log M) − λ·q²/M, M = (1 − λ)p + λq.</para>
    /// </summary>
    /// <param name="student">Student logits [..., V].</param>
    /// <param name="teacher">Teacher logits (or log-probabilities / probabilities) [..., V].</param>
    /// <param name="lambda">λ in [0, 1] (DistiLLM's default 0.1): the student's weight in the skewed target.</param>
    /// <param name="options">Temperature, T² scaling, reduction, ignored rows, teacher input, implementation.</param>
    /// <returns>The loss (0-d, or the rows' shape for <see cref="Reduction.None"/>).</returns>
    public static Tensor SkewReverseKl(Tensor student, Tensor teacher, double lambda = 0.1, DivergenceOptions? options = null)
    {
        CheckLambda("skew_reverse_kl", lambda);
        return Run(DivergenceProblem.Create("skew_reverse_kl", DivergenceKind.SkewReverseKl, lambda, student, teacher, options), student, teacher);
    }

    /// <summary>
    /// Amari α-divergence: D_α(p ‖ q) = (1 − Σ_c p_c^α q_c^(1−α)) / (α(1 − α)), computed as
    /// Σ_c (q_c − e_c)/(α(1 − α)) with e = exp(α log p + (1 − α) log q) (Σq = 1; no 1 − Σe cancellation of two sums).
    /// <para>Gradient: ∂D/∂(s/T) = a − q·Σa with a = −e/α.</para>
    /// <para>Limits, taken exactly: α = 1 is forward KL(p ‖ q), α = 0 is reverse KL(q ‖ p) (the same computation as
    /// <see cref="ForwardKl"/> / <see cref="ReverseKl"/>; the formula is continuous there). α = 0.5 is 4·(1 − Σ√(pq)), four times the
    /// squared Hellinger distance. Classes with p = q = 0 are skipped; for α outside (0, 1) a class with
    /// only one of p, q zero makes D infinite, and in float32 (the fused form) a term overflows to +∞ once
    /// α log p + (1 − α) log q passes ~88 (extreme logits or temperatures), where float64 may stay finite.</para>
    /// </summary>
    /// <param name="student">Student logits [..., V].</param>
    /// <param name="teacher">Teacher logits (or log-probabilities / probabilities) [..., V].</param>
    /// <param name="alpha">α, any finite value.</param>
    /// <param name="options">Temperature, T² scaling, reduction, ignored rows, teacher input, implementation.</param>
    /// <returns>The loss (0-d, or the rows' shape for <see cref="Reduction.None"/>).</returns>
    public static Tensor AlphaDivergence(Tensor student, Tensor teacher, double alpha, DivergenceOptions? options = null)
    {
        const string op = "alpha_divergence";
        if (!double.IsFinite(alpha))
            throw new ArgumentOutOfRangeException(nameof(alpha), alpha, $"{op}: alpha must be finite; got {alpha}.");
        var kind = alpha == 1 ? DivergenceKind.ForwardKl : alpha == 0 ? DivergenceKind.ReverseKl : DivergenceKind.Alpha;
        return Run(DivergenceProblem.Create(op, kind, alpha, student, teacher, options), student, teacher);
    }

    /// <summary>
    /// BD-KD's balanced divergence (online KD): per row D = w·KL(p ‖ q) + (1 − w)·KL(q ‖ p) with a per-sample
    /// weight w in [0, 1] chosen by the caller (BD-KD derives it from the two networks' entropies; the weights
    /// here are constants: no gradient flows to them).
    /// <para>Gradient: ∂D/∂(s/T) = a − q·Σa with a = −w·p + (1 − w)·q ⊙ (log q − log p).</para>
    /// </summary>
    /// <param name="student">Student logits [..., V].</param>
    /// <param name="teacher">Teacher logits (or log-probabilities / probabilities) [..., V].</param>
    /// <param name="perSampleWeights">w per row: the rows' shape or [rows], float, values in [0, 1].</param>
    /// <param name="options">Temperature, T² scaling, reduction, ignored rows, teacher input, implementation.</param>
    /// <returns>The loss (0-d, or the rows' shape for <see cref="Reduction.None"/>).</returns>
    public static Tensor BdKd(Tensor student, Tensor teacher, Tensor perSampleWeights, DivergenceOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(perSampleWeights);
        return Run(DivergenceProblem.Create("bd_kd", DivergenceKind.BdKd, 0, student, teacher, options, perSampleWeights), student, teacher);
    }

    private static void CheckLambda(string op, double lambda)
    {
        if (!(lambda >= 0 && lambda <= 1))
            throw new ArgumentOutOfRangeException(nameof(lambda), lambda, $"{op}: lambda must be in [0, 1]; got {lambda}.");
    }

    /// <summary>Runs the implementation the options ask for (Auto: fused where it applies).</summary>
    internal static Tensor Run(DivergenceProblem pb, Tensor student, Tensor teacher)
    {
        var impl = pb.Options.Implementation;
        if (impl == LossImplementation.Composite) return CompositeDivergence.Compute(pb, student, teacher);
        // CPU tensors: the CPU-native fused form; accelerator tensors: the divergence kernel (DeviceFusedDivergence).
        bool onDevice = student.Device.Type != Engine.Runtime.DeviceType.Cpu;
        var reason = onDevice ? DeviceFusedDivergence.Unsupported(pb, student, teacher) : FusedDivergence.Unsupported(pb, student, teacher);
        if (reason is null) return onDevice ? DeviceFusedDivergence.Compute(pb, student, teacher) : FusedDivergence.Compute(pb, student, teacher);
        if (impl == LossImplementation.Fused)
            throw new NotSupportedException($"{pb.Op}: LossImplementation.Fused does not apply: {reason}; use Auto (falls back to the composite form) or Composite.");
        return CompositeDivergence.Compute(pb, student, teacher);
    }
}
