using KernelDispatch = Engine.Tensors.Kernels.KernelDispatch;
using Engine.Tensors;
using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;

namespace Engine.Distillation;

public static partial class LogitLoss
{
    /// <summary>
    /// TAID (temporally adaptive interpolated distillation, SakanaAI): cross-entropy of the student against
    /// an intermediate teacher interpolated in logit space between the (gradient-stopped) student and the
    /// teacher. Per row, with u the interpolation coefficient (<see cref="TaidSchedule.Value"/>):
    /// <code>
    /// r = softmax((1 − u)·stopgrad(s) + u·t)          q = softmax(s)
    /// row = −Σ_{j : s_j finite} r_j · log q_j           (SakanaAI's forward_kl with teacher_probs = r)
    /// L   = Σ_counted rows / counted rows               (TokenMean, the reference's masked mean)
    /// </code>
    /// Classes where the student logit is ±∞ (masked vocabulary) are left out of the sum, as the reference's
    /// <c>inf_mask</c> does. The loss is a cross-entropy, not a KL: at s = t it equals the entropy of q, and its
    /// gradient is 0 there only because r = q.
    /// <para>
    /// Gradient wrt s_j (r held constant by the stop-gradient; R = Σ_{k: s_k finite} r_k, which is 1 unless
    /// u = 1 and a masked class has teacher mass): <c>R·q_j − r_j</c> (0 at masked classes), times the
    /// reduction's 1/divisor. Wrt the teacher (composite form only): −u · r_j · (log q_j − Σ_k r_k log q_k).
    /// </para>
    /// <para>
    /// A teacher given as log-probabilities or probabilities enters as log p, which differs from the logits
    /// by a per-row constant, so r (and the loss) is the same for all three inputs. TAID has no temperature.
    /// Ignored rows (labels given and equal to ignoreIndex) contribute nothing and count nowhere; every row
    /// ignored gives 0. Forms: fused (CPU, one float64 pass per row, gradient saved in the forward pass;
    /// createGraph recomputes through the composite form; on an accelerator, float32, the TAID kernel of
    /// kernels/Divergence/TaidKernels.cs) and composite (tensor ops); Auto picks fused unless the teacher requires grad
    /// or the logits are float64 on an accelerator.
    /// </para>
    /// </summary>
    /// <param name="student">Student logits s [..., V], float32 or float64.</param>
    /// <param name="teacher">Teacher [..., V] of the same shape and dtype.</param>
    /// <param name="interpolation">u ∈ [0, 1]: 0 makes the target the student itself, 1 the teacher.</param>
    /// <param name="labels">Optional int64 labels of the batch shape, used only to find ignored rows.</param>
    /// <param name="ignoreIndex">Label value of ignored rows.</param>
    /// <param name="reduction">How rows combine (the reference: TokenMean).</param>
    /// <param name="teacherInput">What <paramref name="teacher"/> holds.</param>
    /// <param name="implementation">Fused, composite or Auto.</param>
    /// <returns>The loss: 0-d, or the batch shape for <see cref="Reduction.None"/>.</returns>
    /// <exception cref="ArgumentException">Shapes or dtypes that do not fit (the message names "taid_loss").</exception>
    /// <exception cref="ArgumentOutOfRangeException">u outside [0, 1].</exception>
    public static Tensor Taid(Tensor student, Tensor teacher, double interpolation, Tensor? labels = null, long ignoreIndex = -100,
        Reduction reduction = Reduction.TokenMean, TeacherInput teacherInput = TeacherInput.Logits, LossImplementation implementation = LossImplementation.Auto)
    {
        const string op = "taid_loss";
        LogitLossCore.CheckLogits(op, student, nameof(student));
        LogitLossCore.CheckLike(op, student, teacher, nameof(teacher));
        if (!(interpolation >= 0 && interpolation <= 1))
            throw new ArgumentOutOfRangeException(nameof(interpolation), interpolation, $"{op}: the interpolation coefficient u must be in [0, 1]; got {interpolation}.");
        var layout = LogitLossCore.Layout(op, student, labels, ignoreIndex, labelsRequired: false);
        double u = interpolation;

        Tensor Composite(Tensor s, Tensor[] x) => TaidComposite(s, x[0], layout, u, teacherInput, reduction);
        if (!LogitLossCore.UseFused(op, implementation, student, teacher))
            return Composite(student, [teacher]);
        if (DeviceLogitLoss.OnDevice(student))
        {
            return DeviceLogitLoss.Run(op, student, layout, reduction, scale =>
            {
                using var y = DeviceLogitLoss.Labels(layout, student.Device);
                return KernelDispatch.Taid(student, teacher, u, y, ignoreIndex, scale, DeviceLogitLoss.Teacher(teacherInput));
            }, Composite, [teacher]);
        }

        using var tc = Contiguous(teacher);
        var tReader = new LogitLossCore.RowReader(tc, layout.Classes);
        return LogitLossCore.RunFused(op, student, layout, reduction,
            (r, s, g, w) => TaidRow(s, tReader, r, u, teacherInput, g, w), Composite, [teacher]);
    }

    /// <summary>
    /// <see cref="Taid(Tensor, Tensor, double, Tensor?, long, Reduction, TeacherInput, LossImplementation)"/>
    /// with u = <paramref name="schedule"/>.<see cref="TaidSchedule.Value"/>. The schedule is not advanced:
    /// call <see cref="TaidSchedule.Update"/> with the loss value after the step.
    /// </summary>
    /// <param name="student">Student logits [..., V].</param>
    /// <param name="teacher">Teacher [..., V].</param>
    /// <param name="schedule">The schedule whose current value is u.</param>
    /// <param name="labels">Optional labels (ignored rows only).</param>
    /// <param name="ignoreIndex">Label value of ignored rows.</param>
    /// <param name="reduction">How rows combine.</param>
    /// <param name="teacherInput">What the teacher tensor holds.</param>
    /// <param name="implementation">Fused, composite or Auto.</param>
    /// <returns>The loss.</returns>
    public static Tensor Taid(Tensor student, Tensor teacher, TaidSchedule schedule, Tensor? labels = null, long ignoreIndex = -100,
        Reduction reduction = Reduction.TokenMean, TeacherInput teacherInput = TeacherInput.Logits, LossImplementation implementation = LossImplementation.Auto)
    {
        ArgumentNullException.ThrowIfNull(schedule);
        return Taid(student, teacher, schedule.Value, labels, ignoreIndex, reduction, teacherInput, implementation);
    }

    /// <summary>The fused TAID row (float64, bulk passes vectorized). Work rows: r (target), e (exp of the student).</summary>
    private static double TaidRow(ReadOnlySpan<double> s, LogitLossCore.RowReader teacher, long row, double u, TeacherInput input, Span<double> grad, Span<double> work)
    {
        int v = s.Length;
        Span<double> r = work[..v], e = work.Slice(v, v);
        teacher.Read(row, r);
        LogitLossCore.TeacherScores(r, input, 1);
        // (1 − u)·s + u·t; a zero factor drops its term, so 0·∞ never happens.
        if (u == 0) s.CopyTo(r);
        else if (u < 1)
        {
            TensorPrimitives.Multiply(r, u, r);
            TensorPrimitives.MultiplyAdd(s, 1 - u, r, r);
        }
        LogitLossCore.LogSumExp(r, r, out double rSum); // r ← exp(mixed − max)
        TensorPrimitives.Divide(r, rSum, r);
        double lse = LogitLossCore.LogSumExp(s, e, out double eSum);
        double loss = 0, mass = 0;
        bool allFinite = double.IsFinite(TensorPrimitives.Sum(s)); // a finite sum has no ±∞ or NaN term
        if (allFinite)
        {
            mass = TensorPrimitives.Sum<double>(r);
            loss = lse * mass - TensorPrimitives.Dot(r, s); // −Σ r (s − lse), vectorized
        }
        else
        {
            for (int j = 0; j < v; j++)
            {
                if (!double.IsFinite(s[j])) continue;
                mass += r[j];
                if (r[j] > 0) loss -= r[j] * (s[j] - lse);
            }
        }
        if (grad.IsEmpty) return loss;
        // R·q − r with q = e / Σe; 0 at masked classes.
        TensorPrimitives.Multiply(e, mass / eSum, grad);
        TensorPrimitives.Subtract(grad, r, grad);
        if (!allFinite)
            for (int j = 0; j < v; j++) if (!double.IsFinite(s[j])) grad[j] = 0;
        return loss;
    }

    private static Tensor TaidComposite(Tensor student, Tensor teacher, RowLayout layout, double u, TeacherInput input, Reduction reduction)
    {
        using var scope = Tensor.NewDisposeScope();
        var s = LogitLossCore.CountedRows(student, layout);
        var t = LogitLossCore.CountedRows(teacher, layout);
        var scores = input == TeacherInput.Probabilities ? t.Log() : t;
        // |s| < ∞ as −∞ < s and s < ∞ (NaN fails both, as it fails |s| < ∞): comparisons have device kernels, abs has none.
        var aboveMinusInf = s.Gt(double.NegativeInfinity);
        var belowInf = s.Lt(double.PositiveInfinity);
        // (1 − u)·stopgrad(s) + u·t; a zero factor drops its term (no 0·∞).
        Tensor mixed;
        if (u == 0) mixed = s.Detach().Mul(1.0);
        else if (u == 1) mixed = scores.Mul(1.0);
        else mixed = s.Detach().Mul(1 - u).Add(scores.Mul(u));
        var r = mixed.Softmax(-1);
        var logQ = s.LogSoftmax(-1);
        var terms = r.Mul(Tensor.Where(belowInf, Tensor.Where(aboveMinusInf, logQ, 0.0), 0.0));
        var rowLoss = terms.Sum(1).Neg();
        return LogitLossCore.Reduce(rowLoss, layout, reduction).MoveToOuterDisposeScope();
    }
}

/// <summary>
/// TAID's adaptive schedule for the interpolation coefficient u (SakanaAI's <c>TAID.update_t</c>), as
/// LOSSES.md states it. State: u (starts at <c>start</c>), the momentum m (starts at 0) and the previous
/// loss (starts at +∞). After each training step, <see cref="Update"/> with that step's loss value:
/// <code>
/// first call (previous loss = +∞): only remember the loss; u unchanged
/// rel  = (prev − loss) / (prev + 1e-15)                 (the reference's guard against prev = 0)
/// m    ← β·m + (1 − β)·rel                              (β = 0.99)
/// Δ    = α · sigmoid(m) · (1 − u)
/// u    ← min(end, max(start + (end − start)·step/totalSteps, u + Δ))      (adaptive)
/// u    ← start + (end − start)·step/totalSteps                            (adaptive off)
/// prev ← loss
/// </code>
/// Defaults as the reference: start 0.4 (its scripts use 0.2), end 1, α = 5e-4, β = 0.99. u never decreases
/// in adaptive mode while step grows; the linear target is the floor. Computed in float64 (the reference keeps
/// float32 buffers; the difference is rounding only).
/// </summary>
public sealed class TaidSchedule
{
    /// <summary>Creates the schedule; validates as the reference does (0 ≤ start &lt; 1, 0 &lt; end ≤ 1, 0 ≤ α ≤ 1).</summary>
    /// <param name="totalSteps">Number of training steps (the denominator of the linear progress), &gt; 0.</param>
    /// <param name="start">u at step 0.</param>
    /// <param name="end">The largest u.</param>
    /// <param name="alpha">α, the adaptive step size.</param>
    /// <param name="beta">β, the momentum of the relative loss change, in [0, 1].</param>
    /// <param name="adaptive">False: u follows the linear ramp only (the reference's disable_adaptive).</param>
    /// <exception cref="ArgumentOutOfRangeException">A value outside its range (the message names "TaidSchedule").</exception>
    public TaidSchedule(long totalSteps, double start = 0.4, double end = 1.0, double alpha = 5e-4, double beta = 0.99, bool adaptive = true)
    {
        const string op = "TaidSchedule";
        if (totalSteps <= 0) throw new ArgumentOutOfRangeException(nameof(totalSteps), totalSteps, $"{op}: totalSteps must be positive; got {totalSteps}.");
        if (!(start >= 0 && start < 1)) throw new ArgumentOutOfRangeException(nameof(start), start, $"{op}: start must be in [0, 1); got {start}.");
        if (!(end > 0 && end <= 1)) throw new ArgumentOutOfRangeException(nameof(end), end, $"{op}: end must be in (0, 1]; got {end}.");
        if (!(alpha >= 0 && alpha <= 1)) throw new ArgumentOutOfRangeException(nameof(alpha), alpha, $"{op}: alpha must be in [0, 1]; got {alpha}.");
        if (!(beta >= 0 && beta <= 1)) throw new ArgumentOutOfRangeException(nameof(beta), beta, $"{op}: beta must be in [0, 1]; got {beta}.");
        TotalSteps = totalSteps;
        Start = start;
        End = end;
        Alpha = alpha;
        Beta = beta;
        Adaptive = adaptive;
        Value = start;
    }

    /// <summary>Number of training steps.</summary>
    public long TotalSteps { get; }

    /// <summary>u at step 0.</summary>
    public double Start { get; }

    /// <summary>The largest u.</summary>
    public double End { get; }

    /// <summary>α, the adaptive step size.</summary>
    public double Alpha { get; }

    /// <summary>β, the momentum coefficient.</summary>
    public double Beta { get; }

    /// <summary>Whether the adaptive step is on.</summary>
    public bool Adaptive { get; }

    /// <summary>The current interpolation coefficient u.</summary>
    public double Value { get; private set; }

    /// <summary>The momentum m of the relative loss change.</summary>
    public double Momentum { get; private set; }

    /// <summary>The loss given to the last <see cref="Update"/> (+∞ before the first).</summary>
    public double PreviousLoss { get; private set; } = double.PositiveInfinity;

    /// <summary>
    /// Advances the schedule with the loss of the step just taken (see the class summary for the rule);
    /// returns the new u. The first call only records the loss.
    /// </summary>
    /// <param name="loss">The step's loss value (finite).</param>
    /// <param name="step">The global step (0-based count of steps taken, as the trainer's global_step).</param>
    /// <exception cref="ArgumentOutOfRangeException">A loss that is not finite, or a negative step.</exception>
    public double Update(double loss, long step)
    {
        if (!double.IsFinite(loss)) throw new ArgumentOutOfRangeException(nameof(loss), loss, $"TaidSchedule.Update: the loss must be finite; got {loss}.");
        if (step < 0) throw new ArgumentOutOfRangeException(nameof(step), step, $"TaidSchedule.Update: step must be ≥ 0; got {step}.");
        if (double.IsPositiveInfinity(PreviousLoss))
        {
            PreviousLoss = loss;
            return Value;
        }
        double relative = (PreviousLoss - loss) / (PreviousLoss + 1e-15);
        Momentum = Beta * Momentum + (1 - Beta) * relative;
        double sigmoid = 1 / (1 + Math.Exp(-Momentum));
        double target = Start + (End - Start) * ((double)step / TotalSteps);
        double delta = Alpha * sigmoid * (1 - Value);
        Value = Adaptive ? Math.Min(End, Math.Max(target, Value + delta)) : target;
        PreviousLoss = loss;
        return Value;
    }
}
