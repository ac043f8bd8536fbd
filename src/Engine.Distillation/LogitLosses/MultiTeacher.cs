using KernelDispatch = Engine.Tensors.Kernels.KernelDispatch;
using Engine.Tensors;
using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;

namespace Engine.Distillation;

/// <summary>Which soft-target loss compares a target distribution p with the student's q.</summary>
public enum SoftTargetLoss
{
    /// <summary>KL(p ‖ q) = Σ p (log p − log q): 0 when q = p.</summary>
    KullbackLeibler,

    /// <summary>
    /// Cross-entropy with soft targets −Σ p log q (MEAL V2's loss): KL(p ‖ q) plus the entropy of p, a
    /// constant for the student, so the student gradient is the same as KL's.
    /// </summary>
    CrossEntropy,
}

public static partial class LogitLoss
{
    /// <summary>
    /// Multi-teacher distillation against the weighted average of the teachers' probabilities (MEAL V2 with
    /// equal weights and no hard labels). Per row, teacher k with temperature T_k and weight w_k:
    /// <code>
    /// p̄ = Σ_k ŵ_k · softmax(t_k / T_k),   ŵ = w / Σ w   (default: equal weights, the MEAL V2 mean)
    /// q = softmax(s / T)
    /// KullbackLeibler:  row = T² · Σ p̄ (log p̄ − log q)         CrossEntropy:  row = T² · (−Σ p̄ log q)
    /// </code>
    /// T² is applied when <paramref name="scaleByTemperatureSquared"/> (MEAL V2 uses T = 1, where it is 1).
    /// T_k defaults to the student's temperature of the row. Weights are normalized to sum 1, so p̄ is a
    /// distribution. Teachers given as log-probabilities or probabilities are used as they are (renormalized,
    /// their T_k not applied).
    /// <para>
    /// Gradient wrt s (both losses, since Σ p̄ = 1): <c>T²/T · (q − p̄)</c> per row, times the reduction's
    /// 1/divisor. Classes with p̄ = 0 contribute 0 to the value. Ignored rows (labels given, equal to
    /// ignoreIndex) contribute nothing and count nowhere. All teachers equal to the student (and KL): 0,
    /// gradient 0. Forms: fused (CPU: one float64 pass per row builds p̄, the loss and the gradient; on an accelerator,
    /// float32: the kernel of kernels/Divergence/MultiTeacherKernels.cs, the teachers stacked into one buffer) and
    /// composite; Auto picks fused unless a teacher or the per-row temperatures require grad.
    /// </para>
    /// </summary>
    /// <param name="student">Student logits s [..., V].</param>
    /// <param name="teachers">One or more teachers, each of the student's shape and dtype.</param>
    /// <param name="temperature">The student's T (and the teachers' unless <paramref name="teacherTemperatures"/>).</param>
    /// <param name="teacherWeights">Optional non-negative weights w_k (one per teacher, positive sum); default equal.</param>
    /// <param name="teacherTemperatures">Optional T_k per teacher (positive, finite).</param>
    /// <param name="loss">KL or soft-target cross-entropy.</param>
    /// <param name="temperatures">Optional per-row temperatures of the student (and of teachers without T_k).</param>
    /// <param name="scaleByTemperatureSquared">Multiply by the student's T².</param>
    /// <param name="labels">Optional labels, used only to find ignored rows.</param>
    /// <param name="ignoreIndex">Label value of ignored rows.</param>
    /// <param name="reduction">How rows combine (KD convention: BatchMean).</param>
    /// <param name="teacherInput">What the teacher tensors hold.</param>
    /// <param name="implementation">Fused, composite or Auto.</param>
    /// <returns>The loss: 0-d, or the batch shape for <see cref="Reduction.None"/>.</returns>
    /// <exception cref="ArgumentException">Shapes, dtypes, weights or temperatures that do not fit (the message names "multi_teacher_loss").</exception>
    public static Tensor MultiTeacher(Tensor student, IReadOnlyList<Tensor> teachers, double temperature = 1.0,
        double[]? teacherWeights = null, double[]? teacherTemperatures = null, SoftTargetLoss loss = SoftTargetLoss.KullbackLeibler,
        Tensor? temperatures = null, bool scaleByTemperatureSquared = true, Tensor? labels = null, long ignoreIndex = -100,
        Reduction reduction = Reduction.BatchMean, TeacherInput teacherInput = TeacherInput.Logits, LossImplementation implementation = LossImplementation.Auto)
    {
        const string op = "multi_teacher_loss";
        LogitLossCore.CheckLogits(op, student, nameof(student));
        ArgumentNullException.ThrowIfNull(teachers);
        if (teachers.Count == 0) throw new ArgumentException($"{op}: at least one teacher is needed.", nameof(teachers));
        for (int k = 0; k < teachers.Count; k++) LogitLossCore.CheckLike(op, student, teachers[k], $"teacher {k}");
        LogitLossCore.CheckTemperature(op, temperature);
        int K = teachers.Count;
        var w = teacherWeights ?? Enumerable.Repeat(1.0, K).ToArray();
        if (w.Length != K) throw new ArgumentException($"{op}: {w.Length} teacher weights for {K} teachers.", nameof(teacherWeights));
        if (w.Any(x => !double.IsFinite(x) || x < 0) || !(w.Sum() > 0))
            throw new ArgumentException($"{op}: teacher weights must be finite, ≥ 0 and not all 0; got [{string.Join(", ", w)}].", nameof(teacherWeights));
        double wSum = w.Sum();
        var wn = w.Select(x => x / wSum).ToArray();
        if (teacherTemperatures is not null)
        {
            if (teacherTemperatures.Length != K) throw new ArgumentException($"{op}: {teacherTemperatures.Length} teacher temperatures for {K} teachers.", nameof(teacherTemperatures));
            foreach (var tk in teacherTemperatures) LogitLossCore.CheckTemperature(op, tk, nameof(teacherTemperatures));
        }
        var layout = LogitLossCore.Layout(op, student, labels, ignoreIndex, labelsRequired: false);
        var rowT = LogitLossCore.RowTemperatures(op, temperatures, layout);
        var tks = teacherTemperatures is null ? null : (double[])teacherTemperatures.Clone();

        Tensor Composite(Tensor s, Tensor[] x) => MultiTeacherComposite(s, x[..K], x.Length > K ? x[K] : null, layout, temperature, wn, tks, loss, scaleByTemperatureSquared, teacherInput, reduction);
        var extras = temperatures is null ? teachers.ToArray() : [.. teachers, temperatures];
        var others = extras.Cast<Tensor?>().ToArray();
        if (!LogitLossCore.UseFused(op, implementation, student, others))
            return Composite(student, extras);
        if (DeviceLogitLoss.OnDevice(student))
        {
            return DeviceLogitLoss.Run(op, student, layout, reduction, scale =>
            {
                using var y = DeviceLogitLoss.Labels(layout, student.Device);
                using var temps = DeviceLogitLoss.Temperatures(rowT, student.Device);
                return KernelDispatch.MultiTeacher(student, teachers, wn, tks, temperature, temps, y, ignoreIndex, scale, scaleByTemperatureSquared,
                    DeviceLogitLoss.Teacher(teacherInput), loss == SoftTargetLoss.CrossEntropy);
            }, Composite, extras);
        }

        var contiguous = teachers.Select(Contiguous).ToArray();
        try
        {
            var readers = contiguous.Select(c => new LogitLossCore.RowReader(c, layout.Classes)).ToArray();
            return LogitLossCore.RunFused(op, student, layout, reduction, (r, s, g, work) =>
            {
                // Work rows: p̄, one teacher's scores / probabilities, the student's e = exp(z − max), log p̄.
                double tr = rowT is null ? temperature : rowT[r];
                int v = s.Length;
                Span<double> pbar = work[..v], u = work.Slice(v, v), e = work.Slice(2 * v, v), logP = work.Slice(3 * v, v);
                pbar.Clear();
                for (int k = 0; k < K; k++)
                {
                    readers[k].Read(r, u);
                    LogitLossCore.TeacherScores(u, teacherInput, tks is null ? tr : tks[k]);
                    LogitLossCore.LogSumExp(u, u, out double sum);
                    TensorPrimitives.MultiplyAdd(u, wn[k] / sum, pbar, pbar);
                }
                TensorPrimitives.Divide(s, tr, u); // z
                double lse = LogitLossCore.LogSumExp(u, e, out double eSum);
                TensorPrimitives.Log(pbar, logP);
                double t2 = scaleByTemperatureSquared ? tr * tr : 1;
                double value = 0;
                bool kl = loss == SoftTargetLoss.KullbackLeibler;
                if (TensorPrimitives.Min(pbar) > 0 && double.IsFinite(TensorPrimitives.Sum(u)))
                {
                    // Every class has mass and z is finite: Σ p̄ (log p̄ − z + lse) (KL) or Σ p̄ (lse − z) (CE), vectorized.
                    double cross = lse * TensorPrimitives.Sum<double>(pbar) - TensorPrimitives.Dot(pbar, u);
                    value = kl ? TensorPrimitives.Dot(pbar, logP) + cross : cross;
                }
                else
                {
                    for (int j = 0; j < v; j++)
                    {
                        if (!(pbar[j] > 0)) continue;
                        double logQ = u[j] - lse;
                        value += kl ? pbar[j] * (logP[j] - logQ) : -pbar[j] * logQ;
                    }
                }
                if (!g.IsEmpty)
                {
                    // T²/T · (q − p̄), q = e / Σe.
                    TensorPrimitives.Multiply(e, 1 / eSum, g);
                    TensorPrimitives.Subtract(g, pbar, g);
                    TensorPrimitives.Multiply(g, t2 / tr, g);
                }
                return t2 * value;
            }, Composite, extras);
        }
        finally
        {
            foreach (var c in contiguous) c.Dispose();
        }
    }

    private static Tensor MultiTeacherComposite(Tensor student, Tensor[] teachers, Tensor? temperatures, RowLayout layout, double temperature,
        double[] weights, double[]? teacherTemperatures, SoftTargetLoss loss, bool scaleT2, TeacherInput input, Reduction reduction)
    {
        using var scope = Tensor.NewDisposeScope();
        var s = LogitLossCore.CountedRows(student, layout);
        var col = LogitLossCore.TemperatureColumn(temperatures, layout, student.DType);
        Tensor? pbar = null;
        for (int k = 0; k < teachers.Length; k++)
        {
            var t = LogitLossCore.CountedRows(teachers[k], layout);
            var logP = teacherTemperatures is null
                ? LogitLossCore.TeacherLogProbs(t, input, temperature, col)
                : LogitLossCore.TeacherLogProbs(t, input, teacherTemperatures[k], null);
            var term = logP.Exp().Mul(weights[k]);
            pbar = pbar is null ? term : pbar.Add(term);
        }
        var logQ = LogitLossCore.Scale(s, temperature, col).LogSoftmax(-1);
        var terms = loss == SoftTargetLoss.KullbackLeibler
            ? LogitLossCore.XLogXOverY(pbar!, LogitLossCore.SafeLog(pbar!), logQ)
            : LogitLossCore.XLogY(pbar!, logQ).Neg();
        var rowLoss = terms.Sum(1);
        if (scaleT2) rowLoss = col is null ? rowLoss.Mul(temperature * temperature) : rowLoss.Mul(col.Reshape(-1)).Mul(col.Reshape(-1));
        return LogitLossCore.Reduce(rowLoss, layout, reduction).MoveToOuterDisposeScope();
    }
}
