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
    /// forward KL and α = 0 reverse KL (its limits). The parameter is ignored by the KLs and TV.
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
    /// <returns>RowLoss, float32 of the rows' shape [...]; GradStudent, float32 [..., V] contiguous; both on the logits' device.</returns>
    /// <exception cref="ArgumentException">Shapes, dtypes or devices that do not match (the message names "divergence kernel" and all shapes/devices).</exception>
    /// <exception cref="ArgumentOutOfRangeException">A temperature, scale or parameter out of range.</exception>
    /// <exception cref="NotSupportedException">Tensors on the CPU (use the CPU fused loss) or not float32.</exception>
    public static (Tensor RowLoss, Tensor GradStudent) Divergence(Tensor studentLogits, Tensor teacherLogits, DivergenceKind kind, double parameter,
        double temperature = 1, Tensor? temperatures = null, Tensor? labels = null, long ignoreIndex = -100, double scale = 1,
        bool scaleByTemperatureSquared = false, DivergenceTeacher teacherInput = DivergenceTeacher.Logits, int maxGroup = DivergenceKernels.MaxGroup)
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
        long[] rowShape = studentLogits.ShapeArray()[..^1];
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

        using var _ = Tensor.NoGrad();
        var rowLoss = Output(rowShape, studentLogits, op);
        var grad = Output(studentLogits.ShapeArray(), studentLogits, op);
        var (grid, group) = DivergencePlan.For(rows, v, maxGroup);
        if (grid.X == 0) return (rowLoss, grad);
        using var s = studentLogits.Contiguous();
        using var t = teacherLogits.Contiguous();
        using var temps = temperatures?.Contiguous();
        using var labelRows = labels?.Contiguous();
        var acc = Accelerator(studentLogits);
        var tempView = temps is null ? default : Elements(temps);
        var labelView = labelRows is null ? default : labelRows.Storage.Buffer.View<long>().SubView(labelRows.Offset, labelRows.NumEl);
        float tScalar = (float)(temperatures is null ? temperature : 1), p = (float)parameter, c = (float)scale;
        var (sv, tv, lv, gv) = (Elements(s), Elements(t), Whole(rowLoss), Whole(grad));
        int r = (int)rows, n = (int)v;
        switch (resolved)
        {
            case DivergenceKind.ForwardKL: DivergenceKernels.Launch.Divergence__ForwardKLOp(acc, grid, group, sv, tv, tempView, tScalar, labelView, ignoreIndex, lv, gv, r, n, p, c, scaleByTemperatureSquared, (int)teacherInput); break;
            case DivergenceKind.ReverseKL: DivergenceKernels.Launch.Divergence__ReverseKLOp(acc, grid, group, sv, tv, tempView, tScalar, labelView, ignoreIndex, lv, gv, r, n, p, c, scaleByTemperatureSquared, (int)teacherInput); break;
            case DivergenceKind.JensenShannon: DivergenceKernels.Launch.Divergence__JensenShannonOp(acc, grid, group, sv, tv, tempView, tScalar, labelView, ignoreIndex, lv, gv, r, n, p, c, scaleByTemperatureSquared, (int)teacherInput); break;
            case DivergenceKind.TotalVariation: DivergenceKernels.Launch.Divergence__TotalVariationOp(acc, grid, group, sv, tv, tempView, tScalar, labelView, ignoreIndex, lv, gv, r, n, p, c, scaleByTemperatureSquared, (int)teacherInput); break;
            case DivergenceKind.SkewKL: DivergenceKernels.Launch.Divergence__SkewKLOp(acc, grid, group, sv, tv, tempView, tScalar, labelView, ignoreIndex, lv, gv, r, n, p, c, scaleByTemperatureSquared, (int)teacherInput); break;
            case DivergenceKind.SkewReverseKL: DivergenceKernels.Launch.Divergence__SkewReverseKLOp(acc, grid, group, sv, tv, tempView, tScalar, labelView, ignoreIndex, lv, gv, r, n, p, c, scaleByTemperatureSquared, (int)teacherInput); break;
            default: DivergenceKernels.Launch.Divergence__AlphaOp(acc, grid, group, sv, tv, tempView, tScalar, labelView, ignoreIndex, lv, gv, r, n, p, c, scaleByTemperatureSquared, (int)teacherInput); break;
        }
        return (rowLoss, grad);
    }
}
