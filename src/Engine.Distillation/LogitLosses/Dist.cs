using Engine.Tensors;

namespace Engine.Distillation;

public static partial class LogitLoss
{
    /// <summary>
    /// DIST (Huang et al. 2022), as torchdistill's <c>DISTLoss</c> computes it: Pearson correlations between
    /// the student's and the teacher's tempered probabilities, across classes (inter) and across the batch
    /// (intra). With Y_s = softmax(s/τ), Y_t = softmax(t/τ) over the N counted rows [N, V]:
    /// <code>
    /// ρ(a, b)  = Σ_i (a_i − ā)(b_i − b̄) / (‖a − ā‖·‖b − b̄‖ + ε)        (ε = 1e-8, torchdistill's eps)
    /// inter    = τ² · (1 − (1/N) Σ_rows ρ(Y_s[n, :], Y_t[n, :]))
    /// intra    = τ² · (1 − (1/V) Σ_cols ρ(Y_s[:, c], Y_t[:, c]))
    /// L        = β · inter + γ · intra                                   (β = γ = τ = 1 by default)
    /// </code>
    /// τ² is applied when <paramref name="scaleByTemperatureSquared"/> (torchdistill does). Logits of rank &gt; 2
    /// are taken as rows [N, V] (N = all dims but the last). Ignored rows (labels given, equal to ignoreIndex)
    /// are removed before anything is computed, so they take no part in the column correlations either;
    /// every row ignored gives 0 with gradient 0. A centred vector of norm 0 (a constant row or column, e.g.
    /// V = 1 or N = 1) has ρ = 0 and sends no gradient (the norm's subgradient 0, as torch.norm at 0): then the
    /// loss is τ²·β or τ²·γ for that part, as in torchdistill. Student equal to teacher: ρ = 1 − O(ε) wherever
    /// the vectors vary, so the loss is ~0 (exactly 0 up to ε).
    /// <para>
    /// Gradient (the composite form's, by autograd): for ρ with centred a, b and D = ‖a‖‖b‖ + ε,
    /// ∂ρ/∂a = center(b/D − (a·b)‖b‖ a / (‖a‖ D²)), then through the softmax, (Y ⊙ (G − Σ_c G·Y)) / τ.
    /// DIST is not a per-row function (intra couples the rows), so it has no fused per-row form: only the
    /// composite (LossImplementation.Fused throws; Auto uses the composite).
    /// </para>
    /// </summary>
    /// <param name="student">Student logits [..., V].</param>
    /// <param name="teacher">Teacher [..., V] of the same shape and dtype.</param>
    /// <param name="beta">β, the weight of the inter-class (per-row) term.</param>
    /// <param name="gamma">γ, the weight of the intra-class (per-column) term.</param>
    /// <param name="temperature">τ &gt; 0 (not applied to a teacher given as (log-)probabilities).</param>
    /// <param name="scaleByTemperatureSquared">Multiply both terms by τ².</param>
    /// <param name="labels">Optional labels, used only to find ignored rows.</param>
    /// <param name="ignoreIndex">Label value of ignored rows.</param>
    /// <param name="eps">ε in the correlation's denominator.</param>
    /// <param name="teacherInput">What <paramref name="teacher"/> holds.</param>
    /// <param name="implementation">Auto or Composite (Fused throws: DIST has no per-row form).</param>
    /// <returns>The 0-d loss.</returns>
    /// <exception cref="ArgumentException">Shapes or dtypes that do not fit (the message names "dist_loss").</exception>
    public static Tensor Dist(Tensor student, Tensor teacher, double beta = 1.0, double gamma = 1.0, double temperature = 1.0,
        bool scaleByTemperatureSquared = true, Tensor? labels = null, long ignoreIndex = -100, double eps = 1e-8,
        TeacherInput teacherInput = TeacherInput.Logits, LossImplementation implementation = LossImplementation.Auto)
    {
        const string op = "dist_loss";
        LogitLossCore.CheckLogits(op, student, nameof(student));
        LogitLossCore.CheckLike(op, student, teacher, nameof(teacher));
        LogitLossCore.CheckTemperature(op, temperature, "temperature (tau)");
        if (!double.IsFinite(beta) || beta < 0) throw new ArgumentOutOfRangeException(nameof(beta), beta, $"{op}: beta must be finite and ≥ 0; got {beta}.");
        if (!double.IsFinite(gamma) || gamma < 0) throw new ArgumentOutOfRangeException(nameof(gamma), gamma, $"{op}: gamma must be finite and ≥ 0; got {gamma}.");
        if (!double.IsFinite(eps) || eps < 0) throw new ArgumentOutOfRangeException(nameof(eps), eps, $"{op}: eps must be finite and ≥ 0; got {eps}.");
        if (implementation == LossImplementation.Fused)
            throw new InvalidOperationException($"{op}: DIST couples the rows (its intra-class term correlates columns), so it has no fused per-row form; use LossImplementation.Auto or Composite.");
        var layout = LogitLossCore.Layout(op, student, labels, ignoreIndex, labelsRequired: false);

        using var scope = Tensor.NewDisposeScope();
        var s = LogitLossCore.CountedRows(student, layout);
        if (layout.CountedRows == 0) return s.Sum().Mul(0.0).MoveToOuterDisposeScope();
        var t = LogitLossCore.CountedRows(teacher, layout);
        var ys = s.Softmax(-1, temperature);
        var yt = LogitLossCore.TeacherLogProbs(t, teacherInput, temperature, null).Exp();
        double t2 = scaleByTemperatureSquared ? temperature * temperature : 1;
        var inter = Pearson(ys, yt, 1, eps).Mean().Neg().Add(1.0).Mul(t2);
        var intra = Pearson(ys, yt, 0, eps).Mean().Neg().Add(1.0).Mul(t2);
        return inter.Mul(beta).Add(intra.Mul(gamma)).MoveToOuterDisposeScope();
    }

    /// <summary>Pearson correlation of a and b along <paramref name="dim"/> (cosine of the centred vectors, ε in the denominator); a zero norm has gradient 0.</summary>
    private static Tensor Pearson(Tensor a, Tensor b, int dim, double eps)
    {
        using var scope = Tensor.NewDisposeScope();
        var ac = a.Sub(a.Mean(dim, keepDim: true));
        var bc = b.Sub(b.Mean(dim, keepDim: true));
        var dot = ac.Mul(bc).Sum(dim);
        var denominator = SafeNorm(ac, dim).Mul(SafeNorm(bc, dim)).Add(eps);
        return dot.Div(denominator).MoveToOuterDisposeScope();
    }

    /// <summary>‖x‖ along dim, with the subgradient 0 at 0 (sqrt'(0) would send ∞·0 = NaN back).</summary>
    private static Tensor SafeNorm(Tensor x, int dim)
    {
        using var scope = Tensor.NewDisposeScope();
        var sq = x.Mul(x).Sum(dim);
        var positive = sq.Gt(0);
        var root = Tensor.Where(positive, sq, 1.0).Sqrt();
        return Tensor.Where(positive, root, 0.0).MoveToOuterDisposeScope();
    }
}
