using Engine.Tensors;
using Engine.Tensors.NN;

namespace Engine.Distillation;

/// <summary>Distillation losses built on <see cref="Divergences"/> and differentiable tensor ops.</summary>
public static class Losses
{
    /// <summary>
    /// Hinton knowledge distillation (KD), as mdistiller and torchdistill compute it:
    /// <code>
    /// p    = softmax(t / T)            (teacher, per row)        log p = log_softmax(t / T)
    /// q    = softmax(s / T)            (student, per row)        log q = log_softmax(s / T)
    /// KL   = (1/B) · Σ_rows Σ_c p · (log p − log q)              ("batchmean": divided by the batch size B)
    /// L    = (1 − α) · CE(s, y) + α · T² · KL                    (T² dropped when scaleByTemperatureSquared is false)
    /// </code>
    /// CE is the mean cross-entropy of the un-tempered student logits against the labels
    /// (<see cref="Functional.CrossEntropy"/>). The T² factor keeps the soft term's gradient on the same
    /// scale as the hard term's when T changes (Hinton et al. 2015). With α = 0.9, T = 4 this is
    /// torch_bench.py's <c>0.1·CE + 0.9·T²·KL</c>.
    /// <para>
    /// Gradient with respect to the student logits (per row i, with q⁽¹⁾ = softmax(s) and the one-hot y):
    /// <code>
    /// ∂L/∂s_i = (1 − α) · (q⁽¹⁾_i − onehot(y_i)) / B + α · T² · (1/T) · (q_i − p_i) / B
    ///         = (1 − α) · (q⁽¹⁾_i − onehot(y_i)) / B + α · T · (q_i − p_i) / B
    /// </code>
    /// and with respect to the teacher logits (if they require grad; usually the teacher is frozen and
    /// its logits come from a no-grad forward): α · T · p_i ⊙ ((log p_i − log q_i) − KL_i) / B.
    /// </para>
    /// <para>
    /// Numerics: the KL term is <see cref="Divergences.ForwardKl"/> (batchmean, T² as asked): the fused one-pass
    /// form for float32 logits whose teacher needs no gradient (loss and gradient from one read of both
    /// logits: the CPU-native rows on the CPU, the kernels/Divergence kernel on an accelerator), the
    /// composite form from log-softmaxes otherwise (float64, a teacher that requires grad).
    /// A p that underflows to 0 contributes 0, as in <c>F.kl_div(..., log_target=True)</c>; a backward with
    /// createGraph recomputes through the composite form, so the loss is differentiable to any order.
    /// </para>
    /// </summary>
    /// <param name="studentLogits">Student scores [B, C], float32 or float64.</param>
    /// <param name="teacherLogits">Teacher scores [B, C], same dtype as the student's.</param>
    /// <param name="labels">Class indices, int64 [B].</param>
    /// <param name="temperature">T &gt; 0: the softmax temperature of both distributions in the KL term.</param>
    /// <param name="alpha">α in [0, 1]: the weight of the KD term; 1 − α weighs the cross-entropy.</param>
    /// <param name="scaleByTemperatureSquared">Multiply the KL term by T² (Hinton; default). TextBrewer's <c>kd_ce_loss</c> does not.</param>
    /// <returns>The scalar loss (0-d).</returns>
    /// <exception cref="ArgumentException">Shapes or dtypes that do not match (the message names "kd_loss").</exception>
    /// <exception cref="ArgumentOutOfRangeException">T not positive and finite, or α outside [0, 1].</exception>
    public static Tensor KnowledgeDistillation(Tensor studentLogits, Tensor teacherLogits, Tensor labels,
        double temperature, double alpha, bool scaleByTemperatureSquared = true)
    {
        ArgumentNullException.ThrowIfNull(studentLogits);
        ArgumentNullException.ThrowIfNull(teacherLogits);
        ArgumentNullException.ThrowIfNull(labels);
        const string op = "kd_loss";
        if (!(temperature > 0) || double.IsInfinity(temperature))
            throw new ArgumentOutOfRangeException(nameof(temperature), temperature, $"{op}: temperature must be positive and finite; got {temperature}.");
        if (!(alpha >= 0 && alpha <= 1))
            throw new ArgumentOutOfRangeException(nameof(alpha), alpha, $"{op}: alpha (the weight of the KD term) must be in [0, 1]; got {alpha}.");
        if (studentLogits.Rank != 2 || !studentLogits.Shape.SequenceEqual(teacherLogits.Shape))
            throw new ArgumentException($"{op}: expected student and teacher logits of the same shape [B, C]; got student {Fmt(studentLogits.Shape)} and teacher {Fmt(teacherLogits.Shape)}.");
        if (!studentLogits.DType.IsFloatingPoint() || studentLogits.DType != teacherLogits.DType)
            throw new ArgumentException($"{op}: expected float32 or float64 logits of one dtype; got student {studentLogits.DType.Name()} and teacher {teacherLogits.DType.Name()}.");
        if (labels.Rank != 1 || labels.Size(0) != studentLogits.Size(0))
            throw new ArgumentException($"{op}: expected labels [B] = [{studentLogits.Size(0)}]; got {Fmt(labels.Shape)}.");

        using var ce = Functional.CrossEntropy(studentLogits, labels);
        // The KL term through Divergences.ForwardKl: the fused one-pass form (CPU rows or device kernel) for
        // float32 logits whose teacher needs no gradient, the composite form otherwise (same math, any-order gradients).
        var klOptions = new DivergenceOptions
        {
            Temperature = temperature,
            ScaleByTemperatureSquared = scaleByTemperatureSquared,
            Reduction = Reduction.BatchMean,
        };
        using var kl = Divergences.ForwardKl(studentLogits, teacherLogits, klOptions);
        using var kd = kl.Mul(alpha);
        using var hard = ce.Mul(1 - alpha);
        return hard.Add(kd);
    }

    private static string Fmt(ReadOnlySpan<long> shape) => "[" + string.Join(", ", shape.ToArray()) + "]";
}
