using KernelDispatch = Engine.Tensors.Kernels.KernelDispatch;
using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;
using Engine.Tensors;
using NNF = Engine.Tensors.NN.Functional;
using NNReduction = Engine.Tensors.NN.Reduction;

namespace Engine.Distillation;

/// <summary>Logit-based distillation losses beyond plain KD: DKD, DIST, TAID, multi-teacher, PLD and top-k sparse KD.</summary>
public static partial class LogitLoss
{
    /// <summary>
    /// Decoupled knowledge distillation (DKD, Zhao et al. 2022), the DKD term as mdistiller computes it
    /// (without the cross-entropy; <see cref="DkdWithCrossEntropy"/> adds it). Per row with true class g,
    /// q = softmax(s/T), p = softmax(t/T):
    /// <code>
    /// b_s = [q_g, 1 − q_g]       b_t = [p_g, 1 − p_g]                      (binary target / non-target split)
    /// q̂_j = q_j / (1 − q_g)      p̂_j = p_j / (1 − p_g)      for j ≠ g     (softmax over the non-target classes)
    /// TCKD = KL(b_t ‖ b_s)       NCKD = Σ_{j≠g} p̂_j (log p̂_j − log q̂_j)
    /// row  = w · T² · (α·TCKD + β·NCKD),   w = min(epoch / warmupEpochs, 1)  (1 when warmupEpochs = 0)
    /// L    = reduce(rows)                                                   (mdistiller: Σ/B, BatchMean)
    /// </code>
    /// mdistiller gets p̂ and q̂ by subtracting 1000 from the target's z/T before a softmax over all
    /// classes. We use the exact masked softmax instead (the target class excluded; computed as
    /// z_j − logsumexp_{k≠g} z_k), and log(1 − q_g) = logsumexp_{k≠g} z_k − logsumexp_k z_k, so nothing is
    /// lost when q_g → 1. The two agree whenever e^(−1000 + (z_g − max_{k≠g} z_k)) is negligible, i.e. for
    /// (z_g − max others)/T below ~900 in float32 (~250 in float64, where e^−745 underflows to 0);
    /// the tests compare against a float64 transcription of the 1000-trick at ordinary logits. At ±1e4
    /// logits the trick leaks the target into p̂ and the exact form does not.
    /// <para>
    /// Gradient wrt s_j (per row, before the reduction's 1/divisor), with the factor c = w·T²/T = w·T:
    /// <code>
    /// j = g:  c · α · (q_g − p_g)
    /// j ≠ g:  c · [ α · q̂_j · (p_g − q_g) + β · (q̂_j − p̂_j) ]        ((1−q_g) − (1−p_g) = p_g − q_g)
    /// </code>
    /// Special cases: V = 1 gives 0 (b = [1, 0] for both, no non-target classes). Student equal to teacher
    /// gives 0 and gradient 0. Teacher classes with probability 0 (−∞ logits) contribute 0 (0·log 0 = 0).
    /// Ignored rows (label = ignoreIndex) contribute nothing and count nowhere; every row ignored gives 0.
    /// </para>
    /// <para>
    /// Forms: fused (CPU; one float64 pass per row computes the row loss and writes its gradient; the graph
    /// node only rescales it in backward, and recomputes through the composite form under createGraph) and
    /// composite (tensor ops, any-order gradients, also for the teacher). On an accelerator (float32) the fused form is
    /// the DKD kernel (kernels/Divergence/DkdKernels.cs: the same math in one launch, float32 sums). Auto picks fused unless
    /// the teacher or the per-row temperatures require grad, or the logits are float64 on an accelerator.
    /// </para>
    /// </summary>
    /// <param name="student">Student logits s [..., V], float32 or float64.</param>
    /// <param name="teacher">Teacher [..., V], same shape and dtype: logits, log-probabilities or probabilities (<paramref name="teacherInput"/>).</param>
    /// <param name="labels">True classes, int64 of the batch shape (s's shape without V).</param>
    /// <param name="alpha">α, the TCKD weight (mdistiller 1).</param>
    /// <param name="beta">β, the NCKD weight (mdistiller 8).</param>
    /// <param name="temperature">T &gt; 0 of both softmaxes (mdistiller 4); not applied to a teacher given as (log-)probabilities.</param>
    /// <param name="epoch">The current epoch (mdistiller passes 1-based epochs) for the warm-up factor.</param>
    /// <param name="warmupEpochs">Epochs of linear warm-up (mdistiller 20); 0 turns warm-up off.</param>
    /// <param name="temperatures">Optional per-row temperatures (batch shape); replace <paramref name="temperature"/> row by row.</param>
    /// <param name="scaleByTemperatureSquared">Multiply by T² (mdistiller does).</param>
    /// <param name="reduction">How rows combine (mdistiller: BatchMean).</param>
    /// <param name="ignoreIndex">Label of rows to ignore.</param>
    /// <param name="teacherInput">What <paramref name="teacher"/> holds.</param>
    /// <param name="implementation">Fused, composite, or Auto.</param>
    /// <returns>The loss: 0-d, or the batch shape for <see cref="Reduction.None"/>.</returns>
    /// <exception cref="ArgumentException">Shapes, dtypes or labels that do not fit (the message names "dkd_loss").</exception>
    /// <exception cref="ArgumentOutOfRangeException">T not positive and finite, α/β/epoch/warm-up negative or not finite.</exception>
    public static Tensor Dkd(Tensor student, Tensor teacher, Tensor labels,
        double alpha = 1.0, double beta = 8.0, double temperature = 4.0, double epoch = double.PositiveInfinity, double warmupEpochs = 20,
        Tensor? temperatures = null, bool scaleByTemperatureSquared = true, Reduction reduction = Reduction.BatchMean,
        long ignoreIndex = -100, TeacherInput teacherInput = TeacherInput.Logits, LossImplementation implementation = LossImplementation.Auto)
    {
        const string op = "dkd_loss";
        LogitLossCore.CheckLogits(op, student, nameof(student));
        LogitLossCore.CheckLike(op, student, teacher, nameof(teacher));
        LogitLossCore.CheckTemperature(op, temperature);
        if (!double.IsFinite(alpha) || alpha < 0) throw new ArgumentOutOfRangeException(nameof(alpha), alpha, $"{op}: alpha must be finite and ≥ 0; got {alpha}.");
        if (!double.IsFinite(beta) || beta < 0) throw new ArgumentOutOfRangeException(nameof(beta), beta, $"{op}: beta must be finite and ≥ 0; got {beta}.");
        if (double.IsNaN(epoch) || epoch < 0) throw new ArgumentOutOfRangeException(nameof(epoch), epoch, $"{op}: epoch must be ≥ 0; got {epoch}.");
        if (!double.IsFinite(warmupEpochs) || warmupEpochs < 0) throw new ArgumentOutOfRangeException(nameof(warmupEpochs), warmupEpochs, $"{op}: warmupEpochs must be finite and ≥ 0; got {warmupEpochs}.");
        var layout = LogitLossCore.Layout(op, student, labels, ignoreIndex, labelsRequired: true);
        var rowT = LogitLossCore.RowTemperatures(op, temperatures, layout);
        double warm = warmupEpochs == 0 ? 1 : Math.Min(epoch / warmupEpochs, 1);
        var p = new DkdParams(alpha, beta, temperature, warm, scaleByTemperatureSquared, teacherInput);

        Tensor Composite(Tensor s, Tensor[] x) => DkdComposite(s, x[0], x.Length > 1 ? x[1] : null, layout, p, reduction);
        Tensor[] extras = temperatures is null ? [teacher] : [teacher, temperatures];
        if (!LogitLossCore.UseFused(op, implementation, student, teacher, temperatures))
            return Composite(student, extras);
        if (DeviceLogitLoss.OnDevice(student))
        {
            return DeviceLogitLoss.Run(op, student, layout, reduction, scale =>
            {
                using var y = DeviceLogitLoss.Labels(layout, student.Device)!;
                using var temps = DeviceLogitLoss.Temperatures(rowT, student.Device);
                return KernelDispatch.Dkd(student, teacher, y, alpha, beta, temperature, temps, ignoreIndex, scale * warm, scaleByTemperatureSquared,
                    DeviceLogitLoss.Teacher(teacherInput));
            }, Composite, extras);
        }

        using var tc = Contiguous(teacher);
        var tReader = new LogitLossCore.RowReader(tc, layout.Classes);
        return LogitLossCore.RunFused(op, student, layout, reduction,
            (r, s, g, w) => DkdRow(s, tReader, r, (int)layout.Labels![r], rowT is null ? temperature : rowT[r], p, g, w),
            Composite, extras);
    }

    /// <summary>
    /// mdistiller's whole DKD objective: <c>ceWeight · CE(s, y) + Dkd(...)</c>, with CE the mean
    /// cross-entropy of the un-tempered student logits over the counted rows (ignoreIndex rows excluded,
    /// as <see cref="Engine.Tensors.NN.Functional.CrossEntropy"/>). mdistiller defaults: ceWeight = 1,
    /// α = 1, β = 8, T = 4, warm-up 20 epochs. The DKD term is <see cref="Dkd"/> (see there for the math,
    /// gradient and special cases); the CE term is always the composite op. All rows ignored gives 0.
    /// </summary>
    /// <param name="student">Student logits [..., V].</param>
    /// <param name="teacher">Teacher [..., V] (see <see cref="Dkd"/>).</param>
    /// <param name="labels">True classes (batch shape).</param>
    /// <param name="epoch">Current epoch for the warm-up factor.</param>
    /// <param name="ceWeight">Weight of the cross-entropy (mdistiller 1).</param>
    /// <param name="alpha">TCKD weight.</param>
    /// <param name="beta">NCKD weight.</param>
    /// <param name="temperature">T of the DKD term.</param>
    /// <param name="warmupEpochs">Warm-up epochs of the DKD term (not of the CE).</param>
    /// <param name="ignoreIndex">Label of rows to ignore.</param>
    /// <param name="teacherInput">What the teacher tensor holds.</param>
    /// <param name="implementation">Form of the DKD term.</param>
    /// <returns>The 0-d loss.</returns>
    public static Tensor DkdWithCrossEntropy(Tensor student, Tensor teacher, Tensor labels, double epoch,
        double ceWeight = 1.0, double alpha = 1.0, double beta = 8.0, double temperature = 4.0, double warmupEpochs = 20,
        long ignoreIndex = -100, TeacherInput teacherInput = TeacherInput.Logits, LossImplementation implementation = LossImplementation.Auto)
    {
        const string op = "dkd_ce_loss";
        if (!double.IsFinite(ceWeight) || ceWeight < 0) throw new ArgumentOutOfRangeException(nameof(ceWeight), ceWeight, $"{op}: ceWeight must be finite and ≥ 0; got {ceWeight}.");
        using var dkd = Dkd(student, teacher, labels, alpha, beta, temperature, epoch, warmupEpochs,
            reduction: Reduction.BatchMean, ignoreIndex: ignoreIndex, teacherInput: teacherInput, implementation: implementation);
        long v = student.Size(-1);
        using var s2 = student.Reshape(-1, v);
        using var y1 = labels.Reshape(-1);
        bool anyCounted = y1.ToArray<long>().Any(y => y != ignoreIndex);
        if (!anyCounted) return dkd.Mul(1.0); // CE's mean over no rows would be 0/0
        using var ce = NNF.CrossEntropy(s2, y1, ignoreIndex: ignoreIndex, reduction: NNReduction.Mean);
        using var weighted = ce.Mul(ceWeight);
        return weighted.Add(dkd);
    }

    private sealed record DkdParams(double Alpha, double Beta, double Temperature, double Warm, bool ScaleT2, TeacherInput Input);

    private static Tensor Contiguous(Tensor x)
    {
        using (Tensor.NoGrad()) return x.Contiguous();
    }

    /// <summary>
    /// The fused DKD row (float64; bulk passes vectorized with TensorPrimitives): loss and, if
    /// <paramref name="grad"/> is not empty, its gradient wrt s. Work rows: z = s/T, e_s, u (teacher scores), e_t.
    /// </summary>
    private static double DkdRow(ReadOnlySpan<double> s, LogitLossCore.RowReader teacher, long row, int g, double temperature, DkdParams p,
        Span<double> grad, Span<double> work)
    {
        int v = s.Length;
        if (v == 1)
        {
            grad.Clear();
            return 0;
        }
        Span<double> z = work[..v], es = work.Slice(v, v), u = work.Slice(2 * v, v), et = work.Slice(3 * v, v);
        teacher.Read(row, u);
        LogitLossCore.TeacherScores(u, p.Input, temperature);
        TensorPrimitives.Divide(s, temperature, z);
        // Non-target log-sum-exps (the target left out), then the full ones by logaddexp with the target.
        double zg = z[g], ug = u[g];
        double lseOs = LogitLossCore.LogSumExpExcept(z, g, es, out double sumS);
        double lseOt = LogitLossCore.LogSumExpExcept(u, g, et, out double sumT);
        double lseAs = LogitLossCore.LogAddExp(zg, lseOs), lseAt = LogitLossCore.LogAddExp(ug, lseOt);
        double logBs0 = zg - lseAs, logBs1 = lseOs - lseAs;
        double logBt0 = ug - lseAt, logBt1 = lseOt - lseAt;
        double bt0 = Math.Exp(logBt0), bt1 = Math.Exp(logBt1), bs0 = Math.Exp(logBs0);
        double tckd = (bt0 > 0 ? bt0 * (logBt0 - logBs0) : 0) + (bt1 > 0 ? bt1 * (logBt1 - logBs1) : 0);
        // q̂ = e_s / Σ e_s and p̂ = e_t / Σ e_t over the non-target classes (0 at the target; all 0 if none has mass).
        if (sumS > 0) TensorPrimitives.Divide(es, sumS, es);
        if (sumT > 0) TensorPrimitives.Divide(et, sumT, et);
        double nckd = 0, shift = lseOs - lseOt; // log p̂_j − log q̂_j = (u_j − z_j) + (lseOs − lseOt)
        if (sumT > 0 && double.IsFinite(TensorPrimitives.Sum(u)) && double.IsFinite(TensorPrimitives.Sum(z)) && double.IsFinite(shift))
        {
            // Everything finite: Σ_{j≠g} p̂_j (u_j − z_j) + shift·Σ p̂ (p̂_g = 0, Σ p̂ = 1), vectorized.
            nckd = TensorPrimitives.Dot(et, u) - TensorPrimitives.Dot(et, z) + shift;
        }
        else
        {
            for (int j = 0; j < v; j++)
                if (j != g && et[j] > 0) nckd += et[j] * (u[j] - z[j] + shift);
        }
        double t2 = p.ScaleT2 ? temperature * temperature : 1;
        double loss = p.Warm * t2 * (p.Alpha * tckd + p.Beta * nckd);
        if (grad.IsEmpty) return loss;
        // j ≠ g: c·[α·q̂_j·(p_g − q_g) + β·(q̂_j − p̂_j)] = q̂_j·c(α(p_g − q_g) + β) − cβ·p̂_j;  j = g: c·α·(q_g − p_g).
        double c = p.Warm * t2 / temperature;
        TensorPrimitives.Multiply(es, c * (p.Alpha * (bt0 - bs0) + p.Beta), grad);
        TensorPrimitives.MultiplyAdd(et, -c * p.Beta, grad, grad);
        grad[g] = c * p.Alpha * (bs0 - bt0);
        return loss;
    }

    /// <summary>DKD from tensor ops over the counted rows (the composite form).</summary>
    private static Tensor DkdComposite(Tensor student, Tensor teacher, Tensor? temperatures, RowLayout layout, DkdParams p, Reduction reduction)
    {
        using var scope = Tensor.NewDisposeScope();
        var s = LogitLossCore.CountedRows(student, layout);
        var t = LogitLossCore.CountedRows(teacher, layout);
        var col = LogitLossCore.TemperatureColumn(temperatures, layout, student.DType);
        Tensor rowLoss;
        if (layout.Classes == 1)
        {
            rowLoss = s.Sum(1).Mul(0.0); // V = 1: b = [1, 0] for both and no non-target classes: 0, gradient 0
        }
        else
        {
            long n = s.Size(0);
            var keptLabels = layout.Counted is null ? layout.Labels! : layout.Keep.Select(r => layout.Labels![r]).ToArray();
            var y = Tensor.FromArray(keptLabels, n).To(s.Device).Reshape(n, 1);
            // The target mask, built on the host as bool (int64 comparisons have no device kernels) and copied to the logits' device.
            var mask = new bool[n * layout.Classes];
            for (long i = 0; i < n; i++) mask[i * layout.Classes + keptLabels[i]] = true;
            var onehot = Tensor.FromArray(mask, n, layout.Classes).To(s.Device);
            var zs = LogitLossCore.Scale(s, p.Temperature, col);
            var logQ = zs.LogSoftmax(-1);
            var logP = LogitLossCore.TeacherLogProbs(t, p.Input, p.Temperature, col);
            // Binary split: log b0 = log q_g; log b1 = logsumexp of log q over the non-target classes.
            var logBs0 = logQ.Gather(1, y).Reshape(n);
            var logBt0 = logP.Gather(1, y).Reshape(n);
            var logBs1 = Tensor.Where(onehot, double.NegativeInfinity, logQ).LogSumExp(1);
            var logBt1 = Tensor.Where(onehot, double.NegativeInfinity, logP).LogSumExp(1);
            var tckd = LogitLossCore.XLogXOverY(logBt0.Exp(), logBt0, logBs0)
                .Add(LogitLossCore.XLogXOverY(logBt1.Exp(), logBt1, logBs1));
            // Non-target distributions: the exact masked softmax (the target excluded).
            var logQh = Tensor.Where(onehot, double.NegativeInfinity, logQ).LogSoftmax(-1);
            var logPh = Tensor.Where(onehot, double.NegativeInfinity, logP).LogSoftmax(-1);
            var nckd = LogitLossCore.XLogXOverY(logPh.Exp(), logPh, logQh).Sum(1);
            var combined = tckd.Mul(p.Alpha).Add(nckd.Mul(p.Beta));
            if (col is null) rowLoss = combined.Mul((p.ScaleT2 ? p.Temperature * p.Temperature : 1) * p.Warm);
            else rowLoss = (p.ScaleT2 ? combined.Mul(col.Reshape(n)).Mul(col.Reshape(n)) : combined).Mul(p.Warm);
        }
        return LogitLossCore.Reduce(rowLoss, layout, reduction).MoveToOuterDisposeScope();
    }
}
