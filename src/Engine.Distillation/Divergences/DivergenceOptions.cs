using Engine.Tensors;

namespace Engine.Distillation;

/// <summary>
/// Options shared by every divergence of <see cref="Divergences"/>. All have defaults; set what differs
/// with an object initializer: <c>new DivergenceOptions { Temperature = 2, ScaleByTemperatureSquared = true }</c>.
/// </summary>
/// <remarks>
/// Rows: the logits are [..., V]; every leading dim is a row dim ([N, V], [B, L, V], ...). Per-row things
/// (labels, per-row temperatures, BD-KD weights) have the rows' shape (the logits' shape without the
/// last dim) or the flat shape [rows].
/// </remarks>
public sealed record DivergenceOptions
{
    /// <summary>The default options: T = 1, no T², <see cref="Reduction.BatchMean"/>, teacher as logits, no ignored rows, <see cref="LossImplementation.Auto"/>.</summary>
    public static DivergenceOptions Default { get; } = new();

    /// <summary>
    /// Softmax temperature T &gt; 0 (finite) of the student, and of the teacher when it is given as logits;
    /// ignored when <see cref="RowTemperature"/> is set. Default 1.
    /// </summary>
    public double Temperature { get; init; } = 1.0;

    /// <summary>
    /// One temperature per row (float32 or float64, the rows' shape or [rows], every value positive and
    /// finite), used instead of <see cref="Temperature"/>. A constant: no gradient flows to it.
    /// </summary>
    public Tensor? RowTemperature { get; init; }

    /// <summary>
    /// Multiply each row's divergence by its T² (Hinton KD, mdistiller, torchdistill; keeps the
    /// gradient's scale independent of T). Default false: the plain divergence. Explicit because
    /// libraries differ (TextBrewer's <c>kd_ce_loss</c> has no T²).
    /// </summary>
    public bool ScaleByTemperatureSquared { get; init; }

    /// <summary>How the per-row losses are combined (default <see cref="Reduction.BatchMean"/>, the KD convention).</summary>
    public Reduction Reduction { get; init; } = Reduction.BatchMean;

    /// <summary>
    /// Optional int64 or int32 labels with the rows' shape: rows whose label equals <see cref="IgnoreIndex"/>
    /// contribute nothing (loss 0, gradient 0, even if their logits are not finite) and count nowhere
    /// (not in any mean's denominator, except <see cref="Reduction.BatchMean"/> of rank ≥ 3 logits, which
    /// divides by dim 0 as PyTorch does). Other label values are not otherwise used.
    /// </summary>
    public Tensor? Labels { get; init; }

    /// <summary>The label value of ignored rows (default −100, as PyTorch's cross-entropy).</summary>
    public long IgnoreIndex { get; init; } = -100;

    /// <summary>What the teacher tensor holds (default logits). Log-probabilities and probabilities are used as given: the temperature does not apply to them.</summary>
    public TeacherInput TeacherInput { get; init; } = TeacherInput.Logits;

    /// <summary>Which implementation runs (default <see cref="LossImplementation.Auto"/>: fused where it applies).</summary>
    public LossImplementation Implementation { get; init; } = LossImplementation.Auto;
}
