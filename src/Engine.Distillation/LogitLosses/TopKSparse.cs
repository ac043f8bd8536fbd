using KernelDispatch = Engine.Tensors.Kernels.KernelDispatch;
using Engine.Tensors;
using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;

namespace Engine.Distillation;

/// <summary>Where a top-k sparse teacher's missing probability mass goes.</summary>
public enum TopKRest
{
    /// <summary>Dropped: the k probabilities are renormalized to sum 1 (the other classes get 0).</summary>
    Renormalize,

    /// <summary>Spread uniformly: each of the V − k other classes gets max(0, 1 − Σ_k p) / (V − k) (nothing when k = V).</summary>
    Uniform,
}

public static partial class LogitLoss
{
    /// <summary>
    /// Forward KL from a sparse teacher stored as its top k classes (indices, values), as in offline LLM
    /// distillation where only the teacher's top-k log-probabilities are kept. Per row, with K the k stored
    /// classes and q = softmax(s / T):
    /// <code>
    /// Renormalize:  p_i = softmax over K of the scores (p_i / Σ_K p for probabilities), p_j = 0 off K
    /// Uniform:      p_i as given on K,  p_j = ρ = max(0, 1 − Σ_K p) / (V − k) off K   (ρ = 0 when k = V)
    /// row = T² · KL(p ‖ q) = T² · [ Σ_K p_i (log p_i − log q_i) + ρ · Σ_{j∉K} (log ρ − log q_j) ]
    /// </code>
    /// The off-K sum needs no pass over p: Σ_{j∉K} log q_j = (Σ_all z − Σ_K z) − (V − k)·logsumexp(z), z = s/T.
    /// So the fused form reads the student row (max, Σ exp, Σ z) and the k teacher entries only; the dense
    /// teacher row is never built.
    /// <para>
    /// Gradient wrt s_j: <c>T²/T · (P·q_j − p_j)</c> (p_j = ρ or 0 off K; P = Σ_j p_j, which is 1 except for
    /// Uniform with Σ_K p &gt; 1 or k = V with Σ_K p ≠ 1: the target is used as given), times the reduction's 1/divisor.
    /// Teacher values: probabilities (default) or log-probabilities (both taken as the absolute mass for
    /// Uniform), or logits (Renormalize only: p = softmax(values / T) over K). Indices are int64 in [0, V),
    /// distinct within a row. A student class at −∞ where p &gt; 0 gives +∞ (KL is infinite there). Ignored
    /// rows (labels given, equal to ignoreIndex) contribute nothing and count nowhere. Forms: fused (CPU; on an
    /// accelerator, float32, the kernel of kernels/Divergence/TopKSparseKernels.cs, which also never builds the dense row) and
    /// composite (dense target built by scatter_add; differentiable wrt the values too); Auto picks fused
    /// unless the values or per-row temperatures require grad.
    /// </para>
    /// </summary>
    /// <param name="student">Student logits s [..., V].</param>
    /// <param name="teacherIndices">int64 [..., k]: the teacher's stored classes per row (batch shape + [k]).</param>
    /// <param name="teacherValues">[..., k], the student's dtype: the teacher's values at those classes.</param>
    /// <param name="rest">Where the missing mass goes.</param>
    /// <param name="temperature">T of the student's softmax (and of teacher logits).</param>
    /// <param name="temperatures">Optional per-row temperatures.</param>
    /// <param name="scaleByTemperatureSquared">Multiply by T².</param>
    /// <param name="labels">Optional labels, used only to find ignored rows.</param>
    /// <param name="ignoreIndex">Label value of ignored rows.</param>
    /// <param name="reduction">How rows combine (language-model convention: TokenMean).</param>
    /// <param name="teacherInput">What <paramref name="teacherValues"/> hold (default probabilities).</param>
    /// <param name="implementation">Fused, composite or Auto.</param>
    /// <returns>The loss: 0-d, or the batch shape for <see cref="Reduction.None"/>.</returns>
    /// <exception cref="ArgumentException">Shapes, dtypes, indices (out of range, repeated) or values (negative probabilities) that do not fit (the message names "topk_kd_loss").</exception>
    public static Tensor TopKSparse(Tensor student, Tensor teacherIndices, Tensor teacherValues, TopKRest rest = TopKRest.Renormalize,
        double temperature = 1.0, Tensor? temperatures = null, bool scaleByTemperatureSquared = true, Tensor? labels = null, long ignoreIndex = -100,
        Reduction reduction = Reduction.TokenMean, TeacherInput teacherInput = TeacherInput.Probabilities, LossImplementation implementation = LossImplementation.Auto)
    {
        const string op = "topk_kd_loss";
        LogitLossCore.CheckLogits(op, student, nameof(student));
        ArgumentNullException.ThrowIfNull(teacherIndices);
        ArgumentNullException.ThrowIfNull(teacherValues);
        LogitLossCore.CheckTemperature(op, temperature);
        var layout = LogitLossCore.Layout(op, student, labels, ignoreIndex, labelsRequired: false);
        long v = layout.Classes;
        if (teacherIndices.DType != DType.Int64 || teacherIndices.Rank != student.Rank || !teacherIndices.Shape[..^1].SequenceEqual(layout.BatchShape) || teacherIndices.Size(-1) < 1)
            throw new ArgumentException($"{op}: teacher indices must be int64 of shape {LogitLossCore.Fmt(layout.BatchShape)} + [k], k ≥ 1 (student {LogitLossCore.Fmt(student.Shape)}); got {teacherIndices.DType.Name()} {LogitLossCore.Fmt(teacherIndices.Shape)}.");
        long k = teacherIndices.Size(-1);
        if (k > v) throw new ArgumentException($"{op}: k = {k} teacher classes for V = {v} student classes (indices {LogitLossCore.Fmt(teacherIndices.Shape)}).");
        if (!teacherValues.Shape.SequenceEqual(teacherIndices.Shape) || teacherValues.DType != student.DType)
            throw new ArgumentException($"{op}: teacher values must have the indices' shape {LogitLossCore.Fmt(teacherIndices.Shape)} and the student's dtype {student.DType.Name()}; got {teacherValues.DType.Name()} {LogitLossCore.Fmt(teacherValues.Shape)}.");
        if (teacherInput == TeacherInput.Logits && rest == TopKRest.Uniform)
            throw new ArgumentException($"{op}: teacher logits carry no absolute probability mass, so TopKRest.Uniform needs probabilities or log-probabilities.");
        var index = teacherIndices.ToArray<long>();
        var rowSeen = new HashSet<long>();
        for (long r = 0; r < layout.Rows; r++)
        {
            rowSeen.Clear();
            for (long i = 0; i < k; i++)
            {
                long c = index[r * k + i];
                if (c < 0 || c >= v) throw new ArgumentException($"{op}: teacher index {c} (row {r}, entry {i}) is outside [0, {v}) (indices {LogitLossCore.Fmt(teacherIndices.Shape)}).");
                if (!rowSeen.Add(c)) throw new ArgumentException($"{op}: teacher index {c} appears twice in row {r} (indices {LogitLossCore.Fmt(teacherIndices.Shape)}).");
            }
        }
        if (teacherInput == TeacherInput.Probabilities)
        {
            // Read on the host (ToArray copies from a device; a device may have no float64 conversion kernel).
            var vals = teacherValues.DType == DType.Float64 ? teacherValues.ToArray<double>() : teacherValues.ToArray<float>().Select(x => (double)x).ToArray();
            for (int i = 0; i < vals.Length; i++)
                if (!(vals[i] >= 0)) throw new ArgumentException($"{op}: teacher probability {vals[i]} at flat position {i} is negative or NaN (values {LogitLossCore.Fmt(teacherValues.Shape)}).");
        }
        var rowT = LogitLossCore.RowTemperatures(op, temperatures, layout);

        Tensor Composite(Tensor s, Tensor[] x) => TopKComposite(s, x[0], x[1], x.Length > 2 ? x[2] : null, layout, rest, temperature, scaleByTemperatureSquared, teacherInput, reduction);
        Tensor[] extras = temperatures is null ? [teacherIndices, teacherValues] : [teacherIndices, teacherValues, temperatures];
        if (!LogitLossCore.UseFused(op, implementation, student, teacherValues, temperatures))
            return Composite(student, extras);
        if (DeviceLogitLoss.OnDevice(student))
        {
            return DeviceLogitLoss.Run(op, student, layout, reduction, scale =>
            {
                using var y = DeviceLogitLoss.Labels(layout, student.Device);
                using var temps = DeviceLogitLoss.Temperatures(rowT, student.Device);
                return KernelDispatch.TopKSparse(student, teacherIndices, teacherValues, rest == TopKRest.Uniform, temperature, temps, y, ignoreIndex, scale,
                    scaleByTemperatureSquared, DeviceLogitLoss.Teacher(teacherInput));
            }, Composite, extras);
        }

        using var vc = Contiguous(teacherValues);
        var reader = new LogitLossCore.RowReader(vc, k);
        int kk = (int)k;
        return LogitLossCore.RunFused(op, student, layout, reduction, (r, s, g, work) =>
        {
            double tr = rowT is null ? temperature : rowT[r];
            int vv = s.Length;
            Span<double> p = kk <= 256 ? stackalloc double[kk] : new double[kk];
            reader.Read(r, p);
            var idx = new ReadOnlySpan<long>(index, (int)(r * kk), kk);
            // p over K, and ρ off K.
            double rho = 0;
            if (rest == TopKRest.Renormalize)
            {
                LogitLossCore.TeacherScores(p, teacherInput, tr);
                LogitLossCore.LogSoftmaxInPlace(p);
                for (int i = 0; i < kk; i++) p[i] = Math.Exp(p[i]);
            }
            else
            {
                if (teacherInput == TeacherInput.LogProbabilities) for (int i = 0; i < kk; i++) p[i] = Math.Exp(p[i]);
                double mass = 0;
                for (int i = 0; i < kk; i++) mass += p[i];
                rho = vv == kk ? 0 : Math.Max(0, 1 - mass) / (vv - kk);
            }
            // Student: z = s/T, its max, Σ exp(z − max) and Σ z (vectorized passes over the row).
            Span<double> z = work[..vv], e = work.Slice(vv, vv);
            TensorPrimitives.Divide(s, tr, z);
            double lse = LogitLossCore.LogSumExp(z, e, out double sumExp);
            double sumZ = TensorPrimitives.Sum<double>(z);
            double value = 0, sumZk = 0;
            for (int i = 0; i < kk; i++)
            {
                double zi = z[(int)idx[i]];
                sumZk += zi;
                if (p[i] > 0) value += p[i] * (Math.Log(p[i]) - (zi - lse));
            }
            if (rho > 0) value += rho * ((vv - kk) * (Math.Log(rho) + lse) - (sumZ - sumZk));
            double t2 = scaleByTemperatureSquared ? tr * tr : 1;
            if (!g.IsEmpty)
            {
                // d/dz_j = P·q_j − p_j with P = Σ p the target's total mass (1 unless Uniform's k classes
                // hold more than 1, or k = V with a mass below 1).
                double total = rho * (vv - kk);
                for (int i = 0; i < kk; i++) total += p[i];
                double c = t2 / tr;
                TensorPrimitives.Multiply(e, c * total / sumExp, g); // c·P·q
                if (rho != 0) TensorPrimitives.Subtract(g, c * rho, g);
                for (int i = 0; i < kk; i++) g[(int)idx[i]] += c * (rho - p[i]);
            }
            return t2 * value;
        }, Composite, extras);
    }

    private static Tensor TopKComposite(Tensor student, Tensor indices, Tensor values, Tensor? temperatures, RowLayout layout, TopKRest rest,
        double temperature, bool scaleT2, TeacherInput input, Reduction reduction)
    {
        using var scope = Tensor.NewDisposeScope();
        var s = LogitLossCore.CountedRows(student, layout);
        var idx = LogitLossCore.CountedRows(indices, layout);
        var val = LogitLossCore.CountedRows(values, layout);
        var col = LogitLossCore.TemperatureColumn(temperatures, layout, student.DType);
        long n = s.Size(0), v = layout.Classes, k = idx.Size(1);
        Tensor pK;
        if (rest == TopKRest.Renormalize) pK = LogitLossCore.TeacherLogProbs(val, input, temperature, col).Exp();
        else pK = input == TeacherInput.LogProbabilities ? val.Exp() : val.Mul(1.0);
        var dense = Tensor.Zeros([n, v], student.DType, student.Device).ScatterAdd(1, idx, pK);
        if (rest == TopKRest.Uniform && v > k)
        {
            var inK = Tensor.Zeros([n, v], student.DType, student.Device).ScatterAdd(1, idx, Tensor.Ones([n, k], student.DType, student.Device)).Gt(0);
            var rho = pK.Sum(1, keepDim: true).Neg().Add(1.0).Clamp(min: 0).Div(v - k);
            dense = dense.Add(Tensor.Where(inK, 0.0, rho));
        }
        var logQ = LogitLossCore.Scale(s, temperature, col).LogSoftmax(-1);
        var rowLoss = LogitLossCore.XLogXOverY(dense, LogitLossCore.SafeLog(dense), logQ).Sum(1);
        if (scaleT2) rowLoss = col is null ? rowLoss.Mul(temperature * temperature) : rowLoss.Mul(col.Reshape(-1)).Mul(col.Reshape(-1));
        return LogitLossCore.Reduce(rowLoss, layout, reduction).MoveToOuterDisposeScope();
    }
}
