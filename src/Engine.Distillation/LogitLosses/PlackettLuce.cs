using KernelDispatch = Engine.Tensors.Kernels.KernelDispatch;
using Engine.Tensors;
using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;

namespace Engine.Distillation;

public static partial class LogitLoss
{
    /// <summary>
    /// Plackett–Luce distillation (PLD, Bassam et al. 2025): a confidence-weighted list-wise (ListMLE-style)
    /// loss on the student logits for the "teacher-optimal" ranking. Per row with true class y and teacher
    /// confidences w = softmax(t / T):
    /// <code>
    /// π   = (y, then the other classes by descending w; ties by ascending class index)
    /// L_k = logsumexp_{j ≥ k} s_{π_j}                      (suffix log-sum-exp along the ranking)
    /// row = −Σ_{k=1..V} w_{π_k} · (s_{π_k} − L_k)           (terms with w = 0 are 0)
    /// </code>
    /// The student logits are used as they are (no temperature); the temperature only softens the
    /// confidence weights. Adding a constant to every s of a row leaves the loss unchanged (s − L_k is
    /// shift-invariant). The ranking is a constant of the teacher (no gradient flows through the sort).
    /// <para>
    /// Gradient wrt s_{π_m}: <c>−w_{π_m} + Σ_{k ≤ m} w_{π_k} · exp(s_{π_m} − L_k)</c>; the fused form keeps the
    /// suffix sums S_k = Σ_{j≥k} e^{s_{π_j} − M} (M = max s) and the prefix B_m = Σ_{k≤m} w_{π_k}/S_k in linear space,
    /// gradient e^{s_{π_m} − M}·B_m − w_{π_m}; where S_k would underflow (logits spanning ~640 or more) the tail is
    /// done exactly in log space (L_k = logaddexp(s_{π_k}, L_{k+1}), log A_m = logaddexp(log A_{m−1}, log w_{π_m} − L_m)).
    /// Loss and gradient in O(V log V) per row (the sort), float64.
    /// The composite form builds the suffix log-sum-exps from an upper-triangular −∞ mask, O(V²) per row: it is
    /// the reference and the createGraph path, not the fast one. Wrt the teacher (composite only): through w.
    /// </para>
    /// <para>
    /// On an accelerator the fused form is the PLD kernel (kernels/Divergence/PlackettLuceKernels.cs): the ranking by a per-row
    /// bitonic sort of the teacher values (the same order and ties as here), both scans in log space, float32.
    /// </para>
    /// <para>
    /// Special cases: V = 1 gives −w_y·(s_y − s_y) = 0. A student class at −∞ ranked where w &gt; 0 gives +∞.
    /// Ignored rows (label = ignoreIndex) contribute nothing and count nowhere; all ignored gives 0. There
    /// is no T² factor (the loss is not a divergence of tempered distributions). Forms: fused (CPU, or the kernel on
    /// an accelerator) and composite; Auto picks fused unless the teacher or the per-row temperatures require grad.
    /// </para>
    /// </summary>
    /// <param name="student">Student logits s [..., V].</param>
    /// <param name="teacher">Teacher [..., V] (logits, log-probabilities or probabilities).</param>
    /// <param name="labels">True classes, int64 of the batch shape.</param>
    /// <param name="temperature">T of the teacher confidences (not applied to (log-)probabilities).</param>
    /// <param name="temperatures">Optional per-row temperatures of the teacher confidences.</param>
    /// <param name="ignoreIndex">Label value of ignored rows.</param>
    /// <param name="reduction">How rows combine (default BatchMean).</param>
    /// <param name="teacherInput">What <paramref name="teacher"/> holds.</param>
    /// <param name="implementation">Fused, composite or Auto.</param>
    /// <returns>The loss: 0-d, or the batch shape for <see cref="Reduction.None"/>.</returns>
    /// <exception cref="ArgumentException">Shapes, dtypes or labels that do not fit (the message names "pld_loss").</exception>
    public static Tensor PlackettLuce(Tensor student, Tensor teacher, Tensor labels, double temperature = 1.0, Tensor? temperatures = null,
        long ignoreIndex = -100, Reduction reduction = Reduction.BatchMean, TeacherInput teacherInput = TeacherInput.Logits,
        LossImplementation implementation = LossImplementation.Auto)
    {
        const string op = "pld_loss";
        LogitLossCore.CheckLogits(op, student, nameof(student));
        LogitLossCore.CheckLike(op, student, teacher, nameof(teacher));
        LogitLossCore.CheckTemperature(op, temperature);
        var layout = LogitLossCore.Layout(op, student, labels, ignoreIndex, labelsRequired: true);
        var rowT = LogitLossCore.RowTemperatures(op, temperatures, layout);

        Tensor Composite(Tensor s, Tensor[] x) => PlackettLuceComposite(s, x[0], x.Length > 1 ? x[1] : null, layout, rowT, temperature, teacherInput, reduction);
        Tensor[] extras = temperatures is null ? [teacher] : [teacher, temperatures];
        if (!LogitLossCore.UseFused(op, implementation, student, teacher, temperatures))
            return Composite(student, extras);
        if (DeviceLogitLoss.OnDevice(student))
        {
            return DeviceLogitLoss.Run(op, student, layout, reduction, scale =>
            {
                using var y = DeviceLogitLoss.Labels(layout, student.Device)!;
                using var temps = DeviceLogitLoss.Temperatures(rowT, student.Device);
                return KernelDispatch.PlackettLuce(student, teacher, y, temperature, temps, ignoreIndex, scale, DeviceLogitLoss.Teacher(teacherInput));
            }, Composite, extras);
        }

        using var tc = Contiguous(teacher);
        var reader = new LogitLossCore.RowReader(tc, layout.Classes);
        return LogitLossCore.RunFused(op, student, layout, reduction, (r, s, g, work) =>
        {
            int v = s.Length, y = (int)layout.Labels![r];
            var w = PldLogConfidence(reader, r, v, teacherInput, rowT is null ? temperature : rowT[r]); // log w
            var pi = Ranking(w, y);
            // Work rows: sπ (student in ranking order), e = exp(sπ − M), S (suffix sums of e), L (suffix log-sum-exps).
            Span<double> sp = work[..v], e = work.Slice(v, v), S = work.Slice(2 * v, v), L = work.Slice(3 * v, v);
            for (int k = 0; k < v; k++) sp[k] = s[pi[k]];
            double M = TensorPrimitives.Max(sp);
            if (double.IsNegativeInfinity(M)) M = 0; // every class masked: e = 0, the loss is +∞ or 0 below
            TensorPrimitives.Subtract(sp, M, e);
            TensorPrimitives.Exp(e, e);
            double acc = 0;
            for (int k = v - 1; k >= 0; k--) S[k] = acc += e[k];
            // Linear space where the suffix sum is far from underflow: L_k = M + log S_k. The tail where it is not
            // (logits spanning ~640 or more) uses the exact log-space recurrence L_k = logaddexp(sπ_k, L_{k+1}).
            const double Tiny = 1e-280;
            int k0 = v;
            while (k0 > 0 && S[k0 - 1] < Tiny) k0--;
            TensorPrimitives.Log(S[..k0], L[..k0]);
            TensorPrimitives.Add(L[..k0], M, L[..k0]);
            double tail = double.NegativeInfinity;
            for (int k = v - 1; k >= k0; k--) L[k] = tail = LogitLossCore.LogAddExp(sp[k], tail);
            double loss = 0;
            for (int k = 0; k < v; k++)
            {
                double wk = Math.Exp(w[pi[k]]);
                if (wk > 0) loss -= wk * (sp[k] - L[k]);
            }
            if (!g.IsEmpty)
            {
                // ∂/∂sπ_m = e_m·B_m − w_m with B_m = Σ_{k≤m} w_k / S_k (= e^M·Σ_{k≤m} w_k e^{−L_k}); in the tail the
                // same prefix in log space, log A = log B − M, so exp(sπ_m + log A) never overflows.
                double B = 0;
                for (int m = 0; m < k0; m++)
                {
                    double wm = Math.Exp(w[pi[m]]);
                    B += wm / S[m];
                    g[pi[m]] = e[m] * B - wm;
                }
                double logA = B > 0 ? Math.Log(B) - M : double.NegativeInfinity;
                for (int m = k0; m < v; m++)
                {
                    int c = pi[m];
                    if (!double.IsNegativeInfinity(w[c])) logA = LogitLossCore.LogAddExp(logA, w[c] - L[m]); // w = 0 adds nothing (and −∞ − −∞ is NaN)
                    double wm = Math.Exp(w[c]);
                    g[c] = (double.IsNegativeInfinity(logA) ? 0 : Math.Exp(sp[m] + logA)) - wm;
                }
            }
            return loss;
        }, Composite, extras);
    }

    /// <summary>The ranking: <paramref name="label"/> first, then the others by descending score (ties by ascending index).</summary>
    private static int[] Ranking(double[] score, int label)
    {
        int v = score.Length;
        var pi = new int[v];
        var keys = new double[v]; // keys[i] belongs to pi[i]; position 0 (the label) is not sorted
        pi[0] = label;
        for (int j = 0, n = 1; j < v; j++)
        {
            if (j == label) continue;
            pi[n] = j;
            keys[n++] = -score[j]; // ascending −score = descending score
        }
        // Primitive-key sort (fast), then runs of equal keys put in ascending class order: a total order, one answer.
        Array.Sort(keys, pi, 1, v - 1);
        for (int a = 1; a < v;)
        {
            int b = a + 1;
            while (b < v && keys[b] == keys[a]) b++;
            if (b - a > 1) Array.Sort(pi, a, b - a);
            a = b;
        }
        return pi;
    }

    /// <summary>Teacher log-confidences of row <paramref name="row"/> in float64 (the one computation both forms rank by).</summary>
    private static double[] PldLogConfidence(LogitLossCore.RowReader teacher, long row, int v, TeacherInput input, double temperature)
    {
        var w = new double[v];
        teacher.Read(row, w);
        LogitLossCore.TeacherScores(w, input, temperature);
        LogitLossCore.LogSoftmaxInPlace(w);
        return w;
    }

    private static Tensor PlackettLuceComposite(Tensor student, Tensor teacher, Tensor? temperatures, RowLayout layout, double[]? rowT,
        double temperature, TeacherInput input, Reduction reduction)
    {
        using var scope = Tensor.NewDisposeScope();
        int v = (int)layout.Classes;
        // The rankings (constants): computed from the teacher in float64, exactly as the fused form does.
        var rows = layout.Counted is null ? Enumerable.Range(0, (int)layout.Rows).Select(r => (long)r).ToArray() : layout.Keep;
        var order = new long[rows.Length * v];
        using (Tensor.NoGrad())
        {
            var tc = teacher.Detach().To(Engine.Runtime.Device.Cpu).Contiguous(); // the rankings are built on the host
            var reader = new LogitLossCore.RowReader(tc, v);
            for (int i = 0; i < rows.Length; i++)
            {
                long r = rows[i];
                var pi = Ranking(PldLogConfidence(reader, r, v, input, rowT is null ? temperature : rowT[r]), (int)layout.Labels![r]);
                for (int k = 0; k < v; k++) order[i * v + k] = pi[k];
            }
        }
        long n = rows.Length;
        var piT = Tensor.FromArray(order, n, v).To(student.Device);
        var s = LogitLossCore.CountedRows(student, layout);
        var t = LogitLossCore.CountedRows(teacher, layout);
        var col = LogitLossCore.TemperatureColumn(temperatures, layout, student.DType);
        var w = LogitLossCore.TeacherLogProbs(t, input, temperature, col).Exp();
        var sP = s.Gather(1, piT);
        var wP = w.Gather(1, piT);
        // Suffix log-sum-exp: L[k] = logsumexp_j (sP[j] + M[k, j]), M = 0 for j ≥ k and −∞ below.
        var mask = new double[v * v];
        for (int k = 0; k < v; k++) for (int j = 0; j < v; j++) mask[k * v + j] = j >= k ? 0 : double.NegativeInfinity;
        var m = Tensor.FromArray(mask, v, v).To(student.DType).To(student.Device);
        // −∞ student logits enter as the dtype's lowest finite value: the same sums, but a suffix holding only
        // masked classes stays finite, so its log-sum-exp backward never computes 0·NaN (its weight is 0 anyway).
        double lowest = student.DType == DType.Float32 ? float.MinValue : double.MinValue;
        var sFinite = Tensor.Where(sP.Eq(double.NegativeInfinity), lowest, sP);
        var suffix = sFinite.Unsqueeze(1).Add(m).LogSumExp(2);
        var positive = wP.Gt(0);
        var rowLoss = wP.Mul(Tensor.Where(positive, sP.Sub(suffix), 0.0)).Sum(1).Neg();
        return LogitLossCore.Reduce(rowLoss, layout, reduction).MoveToOuterDisposeScope();
    }
}
