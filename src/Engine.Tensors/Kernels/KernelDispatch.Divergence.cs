using Engine.Runtime;
using Engine.Runtime.Kernels;

namespace Engine.Tensors.Kernels;

internal static partial class KernelDispatch
{
    /// <summary>
    /// The fused divergence loss on an accelerator device (kernels/Divergence): per row r of
    /// [..., V] logits, the divergence D between the teacher's p = softmax(t/T_r) and the student's
    /// q = softmax(s/T_r), and its gradient with respect to the student logits, in one kernel launch.
    /// No graph is recorded: the loss code records its own node whose backward multiplies
    /// <c>GradStudent</c> by the upstream gradient (the gradient is computed in the forward pass).
    /// <code>
    /// c_r            = scale · (T_r² if scaleByTemperatureSquared else 1)
    /// RowLoss[r]     = c_r · D(p_r, q_r)                  (0 for an ignored row)
    /// GradStudent[r] = c_r · ∂D(p_r, q_r)/∂s_r            (= c_r/T_r · ∂D/∂(s_r/T_r); 0 for an ignored row)
    /// </code>
    /// Divergences (<paramref name="kind"/>, <paramref name="parameter"/>), exactly as DivergenceOps.cs:
    /// forward KL(p‖q) (gradient c/T·(q − p)); reverse KL(q‖p); generalized JSD_β with M = βp + (1−β)q,
    /// β·KL(p‖M) + (1−β)·KL(q‖M), where β = 0 runs forward KL and β = 1 reverse KL (Liger's ends, not the
    /// formula's 0); total variation ½Σ|p − q| (subgradient 0 where p = q); skew KL(p ‖ λp + (1−λ)q);
    /// skew reverse KL(q ‖ (1−λ)p + λq); α-divergence (1 − Σ p^α q^(1−α))/(α(1−α)), where α = 1 runs
    /// forward KL and α = 0 reverse KL (its limits); BD-KD's balanced w·KL(p‖q) + (1−w)·KL(q‖p) (w per row through
    /// <paramref name="rowParameters"/>; a side of weight 0 is dropped). The parameter is ignored by the KLs and TV.
    /// <para>
    /// The caller reduces <c>RowLoss</c> and folds the reduction's factor into <paramref name="scale"/>
    /// (e.g. 1/B for batchmean or token-mean, B the counted rows), so that <c>GradStudent</c> is the
    /// gradient of the reduced loss. Special cases: a −∞ logit is a masked class (probability 0; no NaN
    /// when the other side is also 0 there, forward KL is +∞ where only the student is masked and the
    /// teacher has mass, reverse KL the other way round); V = 1 gives 0 and a zero gradient; a row of
    /// only −∞ (or with NaN or +∞) gives NaN unless it is ignored. Numerics: float32, sums in float
    /// (see the header of kernels/Divergence/DivergenceKernels.cs).
    /// </para>
    /// </summary>
    /// <param name="studentLogits">s: float32 [..., V] (V ≥ 1) on an accelerator device; any strides (copied to contiguous if needed).</param>
    /// <param name="teacherLogits">t: float32, the shape and device of <paramref name="studentLogits"/>.</param>
    /// <param name="kind">The divergence.</param>
    /// <param name="parameter">β (JSD, in [0, 1]), λ (skew KLs, in [0, 1]) or α (α-divergence, finite); ignored otherwise.</param>
    /// <param name="temperature">T of every row (positive, finite) when <paramref name="temperatures"/> is null.</param>
    /// <param name="temperatures">Optional per-row T: float32 with one element per row (the shape [...] of the rows) or a single element, on the same device. Values must be positive and finite (not checked on the device: a non-positive T gives garbage).</param>
    /// <param name="labels">Optional int64 labels, one per row, on the same device: rows whose label equals <paramref name="ignoreIndex"/> get loss 0 and a zero gradient.</param>
    /// <param name="ignoreIndex">The ignored label value (PyTorch's −100 by default).</param>
    /// <param name="scale">Factor of every row's loss and gradient (finite).</param>
    /// <param name="scaleByTemperatureSquared">Also multiply row r by T_r² (Hinton's KD).</param>
    /// <param name="teacherInput">What <paramref name="teacherLogits"/> holds: logits (default; p = softmax(t/T)), log-probabilities
    /// (log p = t as given, no temperature) or probabilities (log p = log t; zeros are masked classes). T then applies to the student only
    /// (and to the T² factor).</param>
    /// <param name="maxGroup">Largest work group (a power of two ≤ 256; tests use small groups on the emulator).</param>
    /// <param name="rowParameters">Optional per-row parameter (float32, one element per row, same device) replacing <paramref name="parameter"/>
    /// row by row: BD-KD's weight w_r of <see cref="DivergenceKind.BalancedKL"/> (values in [0, 1], not checked on the device).</param>
    /// <returns>RowLoss, float32 of the rows' shape [...]; GradStudent, float32 [..., V] contiguous; both on the logits' device.</returns>
    /// <exception cref="ArgumentException">Shapes, dtypes or devices that do not match (the message names "divergence kernel" and all shapes/devices).</exception>
    /// <exception cref="ArgumentOutOfRangeException">A temperature, scale or parameter out of range.</exception>
    /// <exception cref="NotSupportedException">Tensors on the CPU (use the CPU fused loss) or not float32.</exception>
    public static (Tensor RowLoss, Tensor GradStudent) Divergence(Tensor studentLogits, Tensor teacherLogits, DivergenceKind kind, double parameter,
        double temperature = 1, Tensor? temperatures = null, Tensor? labels = null, long ignoreIndex = -100, double scale = 1,
        bool scaleByTemperatureSquared = false, DivergenceTeacher teacherInput = DivergenceTeacher.Logits, int maxGroup = DivergenceKernels.MaxGroup,
        Tensor? rowParameters = null)
    {
        const string op = "divergence kernel";
        ArgumentNullException.ThrowIfNull(studentLogits);
        ArgumentNullException.ThrowIfNull(teacherLogits);
        if (!IsAccelerated(studentLogits))
            throw new NotSupportedException($"{op}: the logits are on {studentLogits.Device}; this kernel runs on accelerator devices (emulator, opencl:N, cuda:N) — use the CPU fused loss for CPU tensors.");
        CheckSameDevice(op, studentLogits, teacherLogits);
        RequireFloat32(op, studentLogits);
        RequireFloat32(op, teacherLogits);
        if (studentLogits.Rank < 1 || !ShapeUtil.SameShape(studentLogits.Shape, teacherLogits.Shape) || studentLogits.Shape[^1] < 1)
            throw new ArgumentException($"{op}: expected student and teacher logits of one shape [..., V] with V ≥ 1; got student {ShapeUtil.Format(studentLogits.Shape)} and teacher {ShapeUtil.Format(teacherLogits.Shape)}.");
        var resolved = DivergencePlan.Resolve(kind, parameter);
        if (teacherInput is not (DivergenceTeacher.Logits or DivergenceTeacher.LogProbabilities or DivergenceTeacher.Probabilities))
            throw new ArgumentOutOfRangeException(nameof(teacherInput), teacherInput, $"{op}: unknown teacher input.");
        if (!double.IsFinite(scale))
            throw new ArgumentOutOfRangeException(nameof(scale), scale, $"{op}: scale must be finite.");
        long v = studentLogits.Shape[^1];
        long rows = studentLogits.NumEl / v;
        if (temperatures is null)
        {
            if (!(temperature > 0) || !double.IsFinite(temperature))
                throw new ArgumentOutOfRangeException(nameof(temperature), temperature, $"{op}: temperature must be positive and finite.");
        }
        else
        {
            CheckSameDevice(op, studentLogits, temperatures);
            RequireFloat32(op, temperatures);
            if (temperatures.NumEl != rows && temperatures.NumEl != 1)
                throw new ArgumentException($"{op}: per-row temperatures {ShapeUtil.Format(temperatures.Shape)} must have one element per row ({rows} rows of logits {ShapeUtil.Format(studentLogits.Shape)}) or a single element.");
        }
        if (labels is not null)
        {
            CheckSameDevice(op, studentLogits, labels);
            if (labels.DType != DType.Int64)
                throw new ArgumentException($"{op}: labels must be int64; got {labels.DType.Name()} of shape {ShapeUtil.Format(labels.Shape)}.");
            if (labels.NumEl != rows)
                throw new ArgumentException($"{op}: labels {ShapeUtil.Format(labels.Shape)} must have one element per row ({rows} rows of logits {ShapeUtil.Format(studentLogits.Shape)}).");
        }

        if (rowParameters is not null)
        {
            CheckSameDevice(op, studentLogits, rowParameters);
            RequireFloat32(op, rowParameters);
            if (rowParameters.NumEl != rows)
                throw new ArgumentException($"{op}: per-row parameters {ShapeUtil.Format(rowParameters.Shape)} must have one element per row ({rows} rows of logits {ShapeUtil.Format(studentLogits.Shape)}).");
        }

        using var _ = Tensor.NoGrad();
        var (rowLoss, grad, grid, group) = LossOutputs(op, studentLogits, rows, v, maxGroup);
        if (grid.X == 0) return (rowLoss, grad);
        using var s = studentLogits.Contiguous();
        using var t = teacherLogits.Contiguous();
        using var temps = temperatures?.Contiguous();
        using var labelRows = labels?.Contiguous();
        using var paramRows = rowParameters?.Contiguous();
        var pv = paramRows is null ? default : Elements(paramRows);
        var acc = Accelerator(studentLogits);
        var tempView = temps is null ? default : Elements(temps);
        var labelView = labelRows is null ? default : labelRows.Storage.Buffer.View<long>().SubView(labelRows.Offset, labelRows.NumEl);
        float tScalar = (float)(temperatures is null ? temperature : 1), p = (float)parameter, c = (float)scale;
        var (sv, tv, lv, gv) = (Elements(s), Elements(t), Whole(rowLoss), Whole(grad));
        int r = (int)rows, n = (int)v;
        switch (resolved)
        {
            case DivergenceKind.ForwardKL: DivergenceKernels.Launch.Divergence__ForwardKLOp(acc, grid, group, sv, tv, tempView, tScalar, labelView, ignoreIndex, lv, gv, r, n, p, pv, c, scaleByTemperatureSquared, (int)teacherInput); break;
            case DivergenceKind.ReverseKL: DivergenceKernels.Launch.Divergence__ReverseKLOp(acc, grid, group, sv, tv, tempView, tScalar, labelView, ignoreIndex, lv, gv, r, n, p, pv, c, scaleByTemperatureSquared, (int)teacherInput); break;
            case DivergenceKind.JensenShannon: DivergenceKernels.Launch.Divergence__JensenShannonOp(acc, grid, group, sv, tv, tempView, tScalar, labelView, ignoreIndex, lv, gv, r, n, p, pv, c, scaleByTemperatureSquared, (int)teacherInput); break;
            case DivergenceKind.TotalVariation: DivergenceKernels.Launch.Divergence__TotalVariationOp(acc, grid, group, sv, tv, tempView, tScalar, labelView, ignoreIndex, lv, gv, r, n, p, pv, c, scaleByTemperatureSquared, (int)teacherInput); break;
            case DivergenceKind.SkewKL: DivergenceKernels.Launch.Divergence__SkewKLOp(acc, grid, group, sv, tv, tempView, tScalar, labelView, ignoreIndex, lv, gv, r, n, p, pv, c, scaleByTemperatureSquared, (int)teacherInput); break;
            case DivergenceKind.SkewReverseKL: DivergenceKernels.Launch.Divergence__SkewReverseKLOp(acc, grid, group, sv, tv, tempView, tScalar, labelView, ignoreIndex, lv, gv, r, n, p, pv, c, scaleByTemperatureSquared, (int)teacherInput); break;
            case DivergenceKind.BalancedKL: DivergenceKernels.Launch.Divergence__BalancedKLOp(acc, grid, group, sv, tv, tempView, tScalar, labelView, ignoreIndex, lv, gv, r, n, p, pv, c, scaleByTemperatureSquared, (int)teacherInput); break;
            default: DivergenceKernels.Launch.Divergence__AlphaOp(acc, grid, group, sv, tv, tempView, tScalar, labelView, ignoreIndex, lv, gv, r, n, p, pv, c, scaleByTemperatureSquared, (int)teacherInput); break;
        }
        return (rowLoss, grad);
    }

    // ------------------------------------------------------------------ the logit losses' kernels (Engine.Distillation's LogitLoss)
    // Each returns (RowLoss [rows], Grad [rows, V]) on the logits' device: the row's loss already multiplied by its factor
    // (the caller's 1/divisor in `scale`, T² if asked) and the gradient of the sum of the row losses wrt the student
    // logits. The callers (Engine.Distillation) validate the options; these check shapes, dtypes and devices.

    /// <summary>Checks the student logits and returns (rows, V).</summary>
    /// <summary>
    /// A logit loss's outputs on the logits' device, the row losses (the rows' shape) and the gradient (the logits' shape),
    /// and its launch shape (Grid.X is 0 when there are no rows: nothing to launch).
    /// </summary>
    private static (Tensor RowLoss, Tensor Grad, Dim3 Grid, Dim3 Group) LossOutputs(string op, Tensor student, long rows, long v, int maxGroup)
    {
        var rowLoss = Output(student.ShapeArray()[..^1], student, op);
        var grad = Output(student.ShapeArray(), student, op);
        var (grid, group) = DivergencePlan.For(rows, v, maxGroup);
        return (rowLoss, grad, grid, group);
    }

    private static (long Rows, long V) LogitRows(string op, Tensor student)
    {
        ArgumentNullException.ThrowIfNull(student);
        if (!IsAccelerated(student))
            throw new NotSupportedException($"{op}: the logits are on {student.Device}; this kernel runs on accelerator devices (emulator, opencl:N, cuda:N) — use the CPU fused loss for CPU tensors.");
        RequireFloat32(op, student);
        if (student.Rank < 1 || student.Shape[^1] < 1)
            throw new ArgumentException($"{op}: expected student logits [..., V] with V ≥ 1; got {ShapeUtil.Format(student.Shape)}.");
        long v = student.Shape[^1], rows = student.NumEl / v;
        if (v > int.MaxValue || rows > int.MaxValue || rows * v > long.MaxValue / 8)
            throw new ArgumentException($"{op}: {rows} rows of {v} classes exceed the kernel's 32-bit sizes.");
        return (rows, v);
    }

    /// <summary>A float32 tensor of the student's shape and device (a teacher).</summary>
    private static void CheckLike(string op, Tensor student, Tensor other, string what)
    {
        ArgumentNullException.ThrowIfNull(other);
        CheckSameDevice(op, student, other);
        RequireFloat32(op, other);
        if (!ShapeUtil.SameShape(student.Shape, other.Shape))
            throw new ArgumentException($"{op}: {what} {ShapeUtil.Format(other.Shape)} must have the student logits' shape {ShapeUtil.Format(student.Shape)}.");
    }

    /// <summary>An optional per-row tensor (float32 temperatures: one element per row or one; int64 labels: one per row).</summary>
    private static void CheckRows(string op, Tensor student, Tensor? x, long rows, string what, DType dtype, bool single)
    {
        if (x is null) return;
        CheckSameDevice(op, student, x);
        if (x.DType != dtype)
            throw new ArgumentException($"{op}: {what} must be {dtype.Name()}; got {x.DType.Name()} of shape {ShapeUtil.Format(x.Shape)}.");
        if (x.NumEl != rows && !(single && x.NumEl == 1))
            throw new ArgumentException($"{op}: {what} {ShapeUtil.Format(x.Shape)} must have one element per row ({rows} rows of logits {ShapeUtil.Format(student.Shape)}){(single ? " or a single element" : "")}.");
    }

    private static ArrayView<long> Longs(Tensor? t) => t is null ? default : t.Storage.Buffer.View<long>().SubView(t.Offset, t.NumEl);

    private static ArrayView<float> Floats(Tensor? t) => t is null ? default : Elements(t);

    /// <summary>
    /// DKD (kernels/Divergence/DkdKernels.cs): per row with true class g, c_r·(α·TCKD + β·NCKD), c_r = scale·(T_r² if asked),
    /// and its gradient wrt the student logits (the math and special cases in the kernel's header and LogitLoss.Dkd).
    /// </summary>
    /// <param name="student">s, float32 [..., V] on an accelerator.</param>
    /// <param name="teacher">t, float32 of s's shape and device (logits, log-probabilities or probabilities).</param>
    /// <param name="labels">int64, one per row: the true class in [0, V) or <paramref name="ignoreIndex"/> (not checked on the device).</param>
    /// <param name="alpha">α (TCKD weight).</param>
    /// <param name="beta">β (NCKD weight).</param>
    /// <param name="temperature">T of every row when <paramref name="temperatures"/> is null.</param>
    /// <param name="temperatures">Optional float32 T per row (or one).</param>
    /// <param name="ignoreIndex">Label of ignored rows (loss 0, gradient 0).</param>
    /// <param name="scale">Factor of every row (warm-up / divisor).</param>
    /// <param name="scaleByTemperatureSquared">Also multiply by T_r².</param>
    /// <param name="teacherInput">What the teacher holds.</param>
    /// <param name="maxGroup">Largest work group (a power of two ≤ 256).</param>
    /// <returns>RowLoss of the rows' shape and GradStudent [..., V], on the logits' device.</returns>
    public static (Tensor RowLoss, Tensor GradStudent) Dkd(Tensor student, Tensor teacher, Tensor labels, double alpha, double beta, double temperature,
        Tensor? temperatures, long ignoreIndex, double scale, bool scaleByTemperatureSquared, DivergenceTeacher teacherInput, int maxGroup = DivergenceKernels.MaxGroup)
    {
        const string op = "dkd kernel";
        var (rows, v) = LogitRows(op, student);
        CheckLike(op, student, teacher, "teacher");
        ArgumentNullException.ThrowIfNull(labels);
        CheckRows(op, student, labels, rows, "labels", DType.Int64, single: false);
        CheckRows(op, student, temperatures, rows, "per-row temperatures", DType.Float32, single: true);
        using var _ = Tensor.NoGrad();
        var (rowLoss, grad, grid, group) = LossOutputs(op, student, rows, v, maxGroup);
        if (grid.X == 0) return (rowLoss, grad);
        using var s = student.Contiguous();
        using var t = teacher.Contiguous();
        using var l = labels.Contiguous();
        using var temps = temperatures?.Contiguous();
        DkdKernels.Launch.Dkd(Accelerator(student), grid, group, Elements(s), Elements(t), Floats(temps), (float)temperature, Longs(l), ignoreIndex,
            Whole(rowLoss), Whole(grad), (int)rows, (int)v, (float)alpha, (float)beta, (float)scale, scaleByTemperatureSquared, (int)teacherInput);
        return (rowLoss, grad);
    }

    /// <summary>
    /// TAID (kernels/Divergence/TaidKernels.cs): per row scale·Σ_{s_j finite} r_j·(−log q_j) with r = softmax((1 − u)·s + u·y)
    /// held constant, q = softmax(s), and its gradient scale·(R·q − r) (the math in the kernel's header and LogitLoss.Taid).
    /// </summary>
    /// <param name="student">s, float32 [..., V] on an accelerator.</param>
    /// <param name="teacher">t, float32 of s's shape and device.</param>
    /// <param name="interpolation">u ∈ [0, 1].</param>
    /// <param name="labels">Optional int64 labels, one per row (rows equal to <paramref name="ignoreIndex"/> are ignored).</param>
    /// <param name="ignoreIndex">Label of ignored rows.</param>
    /// <param name="scale">Factor of every row (1/divisor).</param>
    /// <param name="teacherInput">What the teacher holds.</param>
    /// <param name="maxGroup">Largest work group (a power of two ≤ 256).</param>
    /// <returns>RowLoss of the rows' shape and GradStudent [..., V], on the logits' device.</returns>
    public static (Tensor RowLoss, Tensor GradStudent) Taid(Tensor student, Tensor teacher, double interpolation, Tensor? labels, long ignoreIndex,
        double scale, DivergenceTeacher teacherInput, int maxGroup = DivergenceKernels.MaxGroup)
    {
        const string op = "taid kernel";
        var (rows, v) = LogitRows(op, student);
        CheckLike(op, student, teacher, "teacher");
        CheckRows(op, student, labels, rows, "labels", DType.Int64, single: false);
        if (!(interpolation >= 0 && interpolation <= 1))
            throw new ArgumentOutOfRangeException(nameof(interpolation), interpolation, $"{op}: u must be in [0, 1].");
        using var _ = Tensor.NoGrad();
        var (rowLoss, grad, grid, group) = LossOutputs(op, student, rows, v, maxGroup);
        if (grid.X == 0) return (rowLoss, grad);
        using var s = student.Contiguous();
        using var t = teacher.Contiguous();
        using var l = labels?.Contiguous();
        TaidKernels.Launch.Taid(Accelerator(student), grid, group, Elements(s), Elements(t), Longs(l), ignoreIndex,
            Whole(rowLoss), Whole(grad), (int)rows, (int)v, (float)interpolation, (float)scale, (int)teacherInput);
        return (rowLoss, grad);
    }

    /// <summary>
    /// Multi-teacher (kernels/Divergence/MultiTeacherKernels.cs): per row c_r·KL(p̄ ‖ q) (or c_r·(−Σ p̄ log q)) with
    /// p̄ = Σ_k ŵ_k·softmax(y_k/T_k), q = softmax(s/T_r), c_r = scale·(T_r² if asked), and its gradient c_r/T_r·(q − p̄).
    /// The K teachers are stacked into one [K, rows, V] device buffer (one copy) for the launch.
    /// </summary>
    /// <param name="student">s, float32 [..., V] on an accelerator.</param>
    /// <param name="teachers">K ≥ 1 teachers, each float32 of s's shape and device.</param>
    /// <param name="weights">ŵ_k, normalized (Σ = 1), one per teacher.</param>
    /// <param name="teacherTemperatures">T_k per teacher, or null: each teacher uses the row's T.</param>
    /// <param name="temperature">The student's T when <paramref name="temperatures"/> is null.</param>
    /// <param name="temperatures">Optional float32 T per row (or one).</param>
    /// <param name="labels">Optional int64 labels, one per row.</param>
    /// <param name="ignoreIndex">Label of ignored rows.</param>
    /// <param name="scale">Factor of every row (1/divisor).</param>
    /// <param name="scaleByTemperatureSquared">Also multiply by T_r².</param>
    /// <param name="teacherInput">What the teachers hold.</param>
    /// <param name="crossEntropy">Soft-target cross-entropy instead of KL.</param>
    /// <param name="maxGroup">Largest work group (a power of two ≤ 256).</param>
    /// <returns>RowLoss of the rows' shape and GradStudent [..., V], on the logits' device.</returns>
    public static (Tensor RowLoss, Tensor GradStudent) MultiTeacher(Tensor student, IReadOnlyList<Tensor> teachers, double[] weights, double[]? teacherTemperatures,
        double temperature, Tensor? temperatures, Tensor? labels, long ignoreIndex, double scale, bool scaleByTemperatureSquared,
        DivergenceTeacher teacherInput, bool crossEntropy, int maxGroup = DivergenceKernels.MaxGroup)
    {
        const string op = "multi-teacher kernel";
        var (rows, v) = LogitRows(op, student);
        ArgumentNullException.ThrowIfNull(teachers);
        ArgumentNullException.ThrowIfNull(weights);
        if (teachers.Count == 0 || weights.Length != teachers.Count || (teacherTemperatures is not null && teacherTemperatures.Length != teachers.Count))
            throw new ArgumentException($"{op}: {teachers.Count} teachers (≥ 1) with {weights.Length} weights and {teacherTemperatures?.Length.ToString() ?? "no"} temperatures.");
        for (int k = 0; k < teachers.Count; k++) CheckLike(op, student, teachers[k], $"teacher {k}");
        CheckRows(op, student, temperatures, rows, "per-row temperatures", DType.Float32, single: true);
        CheckRows(op, student, labels, rows, "labels", DType.Int64, single: false);
        using var _ = Tensor.NoGrad();
        var (rowLoss, grad, grid, group) = LossOutputs(op, student, rows, v, maxGroup);
        if (grid.X == 0) return (rowLoss, grad);
        int kCount = teachers.Count;
        using var s = student.Contiguous();
        using var stacked = Tensor.Stack([.. teachers]); // [K, ..., V], contiguous
        using var w = Tensor.FromArray(weights.Select(x => (float)x).ToArray(), kCount).To(student.Device);
        using var tks = teacherTemperatures is null ? null : Tensor.FromArray(teacherTemperatures.Select(x => (float)x).ToArray(), kCount).To(student.Device);
        using var stats = Output([rows, kCount, 2], student, op);
        using var temps = temperatures?.Contiguous();
        using var l = labels?.Contiguous();
        MultiTeacherKernels.Launch.MultiTeacher(Accelerator(student), grid, group, Elements(s), Elements(stacked), Elements(w), Floats(tks),
            Floats(temps), (float)temperature, Longs(l), ignoreIndex, Whole(stats), Whole(rowLoss), Whole(grad), (int)rows, (int)v, kCount,
            (float)scale, scaleByTemperatureSquared, (int)teacherInput, crossEntropy);
        return (rowLoss, grad);
    }

    /// <summary>
    /// Top-k sparse teacher KD (kernels/Divergence/TopKSparseKernels.cs): per row c_r·KL(p ‖ q) with the teacher stored as
    /// its k classes (indices, values) and the rest renormalized away or spread uniformly, and its gradient c_r/T_r·(P·q − p).
    /// </summary>
    /// <param name="student">s, float32 [..., V] on an accelerator.</param>
    /// <param name="indices">int64 [..., k]: distinct classes in [0, V) per row (checked by the caller, not on the device).</param>
    /// <param name="values">float32 [..., k]: the teacher's values at those classes.</param>
    /// <param name="uniform">Spread the missing mass uniformly (else renormalize over the k classes).</param>
    /// <param name="temperature">T when <paramref name="temperatures"/> is null.</param>
    /// <param name="temperatures">Optional float32 T per row (or one).</param>
    /// <param name="labels">Optional int64 labels, one per row.</param>
    /// <param name="ignoreIndex">Label of ignored rows.</param>
    /// <param name="scale">Factor of every row (1/divisor).</param>
    /// <param name="scaleByTemperatureSquared">Also multiply by T_r².</param>
    /// <param name="teacherInput">What the values hold (logits only with renormalize).</param>
    /// <param name="maxGroup">Largest work group (a power of two ≤ 256).</param>
    /// <returns>RowLoss of the rows' shape and GradStudent [..., V], on the logits' device.</returns>
    public static (Tensor RowLoss, Tensor GradStudent) TopKSparse(Tensor student, Tensor indices, Tensor values, bool uniform, double temperature,
        Tensor? temperatures, Tensor? labels, long ignoreIndex, double scale, bool scaleByTemperatureSquared, DivergenceTeacher teacherInput,
        int maxGroup = DivergenceKernels.MaxGroup)
    {
        const string op = "top-k sparse kernel";
        var (rows, v) = LogitRows(op, student);
        ArgumentNullException.ThrowIfNull(indices);
        ArgumentNullException.ThrowIfNull(values);
        CheckSameDevice(op, student, indices);
        CheckSameDevice(op, student, values);
        RequireFloat32(op, values);
        long k = indices.Rank < 1 ? 0 : indices.Shape[^1];
        if (indices.DType != DType.Int64 || k < 1 || k > v || indices.NumEl != rows * k || !ShapeUtil.SameShape(indices.Shape, values.Shape))
            throw new ArgumentException($"{op}: expected int64 indices and float32 values of one shape [..., k] with 1 ≤ k ≤ V = {v} and {rows} rows; got indices {indices.DType.Name()} {ShapeUtil.Format(indices.Shape)}, values {ShapeUtil.Format(values.Shape)}.");
        if (uniform && teacherInput == DivergenceTeacher.Logits)
            throw new ArgumentException($"{op}: the uniform rest needs probabilities or log-probabilities, not logits.");
        CheckRows(op, student, temperatures, rows, "per-row temperatures", DType.Float32, single: true);
        CheckRows(op, student, labels, rows, "labels", DType.Int64, single: false);
        using var _ = Tensor.NoGrad();
        var (rowLoss, grad, grid, group) = LossOutputs(op, student, rows, v, maxGroup);
        if (grid.X == 0) return (rowLoss, grad);
        using var s = student.Contiguous();
        using var idx = indices.Contiguous();
        using var val = values.Contiguous();
        using var temps = temperatures?.Contiguous();
        using var l = labels?.Contiguous();
        TopKSparseKernels.Launch.TopKSparse(Accelerator(student), grid, group, Elements(s), Longs(idx), Elements(val), Floats(temps), (float)temperature,
            Longs(l), ignoreIndex, Whole(rowLoss), Whole(grad), (int)rows, (int)v, (int)k, (float)scale, scaleByTemperatureSquared, (int)teacherInput, uniform);
        return (rowLoss, grad);
    }

    /// <summary>
    /// PLD (kernels/Divergence/PlackettLuceKernels.cs): per row −scale·Σ_k w_{π_k}·(s_{π_k} − L_k) for the ranking π (true class
    /// first, then by descending teacher confidence, ties by class index), and its gradient wrt the student logits. The ranking
    /// is a per-row bitonic sort in device scratch (8·N bytes per row, N = the next power of two ≥ V); rows are launched in
    /// batches whose scratch stays ≤ 64 MiB.
    /// </summary>
    /// <param name="student">s, float32 [..., V] on an accelerator.</param>
    /// <param name="teacher">t, float32 of s's shape and device (logits, log-probabilities or probabilities).</param>
    /// <param name="labels">int64, one per row: the true class in [0, V) or <paramref name="ignoreIndex"/> (not checked on the device).</param>
    /// <param name="temperature">T of the teacher confidences when <paramref name="temperatures"/> is null.</param>
    /// <param name="temperatures">Optional float32 T per row (or one).</param>
    /// <param name="ignoreIndex">Label of ignored rows (loss 0, gradient 0).</param>
    /// <param name="scale">Factor of every row (1/divisor).</param>
    /// <param name="teacherInput">What the teacher holds.</param>
    /// <param name="maxGroup">Largest work group (a power of two ≤ 256).</param>
    /// <returns>RowLoss of the rows' shape and GradStudent [..., V], on the logits' device.</returns>
    public static (Tensor RowLoss, Tensor GradStudent) PlackettLuce(Tensor student, Tensor teacher, Tensor labels, double temperature, Tensor? temperatures,
        long ignoreIndex, double scale, DivergenceTeacher teacherInput, int maxGroup = DivergenceKernels.MaxGroup)
    {
        const string op = "pld kernel";
        var (rows, v) = LogitRows(op, student);
        CheckLike(op, student, teacher, "teacher");
        ArgumentNullException.ThrowIfNull(labels);
        CheckRows(op, student, labels, rows, "labels", DType.Int64, single: false);
        CheckRows(op, student, temperatures, rows, "per-row temperatures", DType.Float32, single: true);
        using var _ = Tensor.NoGrad();
        var (rowLoss, grad, grid, group) = LossOutputs(op, student, rows, v, maxGroup);
        if (grid.X == 0) return (rowLoss, grad);
        long padded = 1L << System.Numerics.BitOperations.Log2((ulong)(2 * v - 1)); // the next power of two ≥ V
        if (padded > int.MaxValue / 2)
            throw new ArgumentException($"{op}: V = {v} classes is too large for the per-row sort.");
        // Row batches: a multiple of the group's rows, scratch (8 bytes per padded class) ≤ 64 MiB.
        long batch = Math.Max(group.Y, (64L << 20) / (8 * padded) / group.Y * group.Y);
        batch = Math.Min(batch, rows);
        using var s = student.Contiguous();
        using var t = teacher.Contiguous();
        using var l = labels.Contiguous();
        using var temps = temperatures?.Contiguous();
        using var keys = Output([batch * padded], student, op);
        using var classes = Tensor.Allocate([batch * padded], DType.Int32, zero: false, op, student.Device);
        var acc = Accelerator(student);
        var (sv, tv, lv, gv, rv) = (Elements(s), Elements(t), Longs(l), Whole(grad), Whole(rowLoss));
        var kv = Elements(keys);
        var cv = classes.Storage.Buffer.View<int>().SubView(classes.Offset, classes.NumEl);
        var tempView = Floats(temps);
        for (long r0 = 0; r0 < rows; r0 += batch)
        {
            long rr = Math.Min(batch, rows - r0);
            var rowTemps = tempView.Length > 1 ? tempView.SubView(r0, rr) : tempView;
            var launch = new Dim3((int)((rr + group.Y - 1) / group.Y));
            PlackettLuceKernels.Launch.PlackettLuce(acc, launch, group, sv.SubView(r0 * v, rr * v), tv.SubView(r0 * v, rr * v), rowTemps, (float)temperature,
                lv.SubView(r0, rr), ignoreIndex, kv, cv, rv.SubView(r0, rr), gv.SubView(r0 * v, rr * v), (int)rr, (int)v, (int)padded, (float)scale, (int)teacherInput);
        }
        return (rowLoss, grad);
    }
}
