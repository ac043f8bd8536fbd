using Engine.Runtime;
using Engine.Tensors;
using Engine.Tensors.AutoDiff;
using KernelDispatch = Engine.Tensors.Kernels.KernelDispatch;
using KernelKind = Engine.Tensors.Kernels.DivergenceKind;
using KernelTeacher = Engine.Tensors.Kernels.DivergenceTeacher;

namespace Engine.Distillation;

/// <summary>
/// The fused form on an accelerator device (emulator, OpenCL, CUDA): one launch of the divergence kernel
/// (kernels/Divergence through <see cref="KernelDispatch.Divergence"/>) computes every row's loss and the
/// student's gradient; the row losses are summed on the device (<see cref="Tensor.Sum()"/>) and the autograd
/// node keeps the gradient, its backward only rescaling it by the incoming gradient (per row for
/// <see cref="Reduction.None"/>), as the CPU's <see cref="FusedDivergence"/>.
/// <para>
/// Coefficients: the kernel's row factor is c_r = scale·(T_r² if asked) with scale = 1 / the reduction's
/// divisor (<see cref="DivergenceProblem.Divisor"/>: 1 for none and sum, counted rows × V for mean, counted rows
/// for token-mean, counted rows or dim 0 for batchmean), which is exactly <see cref="DivergenceProblem.LossCoefficient"/>;
/// the sum of the row losses is then the reduced loss and the kernel's gradient is its gradient. Ignored rows are
/// passed as labels built from the problem's own ignore flags (ignored: IgnoreIndex, else another value), so the
/// kernel and <see cref="DivergenceProblem"/> agree on which rows count; they get loss 0 and a zero gradient.
/// When nothing counts the divisor is 0 and scale is 0 (every row is ignored anyway).
/// </para>
/// <para>
/// What it covers: float32 logits on an accelerator, every divergence the kernel has (forward and reverse KL,
/// JSD_β with its β = 0 / 1 ends, total variation, skew KL and skew reverse KL, α-divergence with its α = 1 / 0
/// limits, BD-KD's balanced KL with its per-row weights passed as the kernel's row parameters), scalar or per-row
/// temperature, teacher as logits, log-probabilities or probabilities. Not covered (the composite form under
/// <see cref="LossImplementation.Auto"/>, an error under <see cref="LossImplementation.Fused"/>): a teacher that requires grad while
/// grad mode is on (the kernel computes the student's gradient only), float64 logits.
/// A backward with createGraph recomputes the loss with the composite form (on the device) on the saved inputs
/// and differentiates that, so the gradient it returns is itself differentiable.
/// </para>
/// <para>
/// Numerics: the kernel's, float32 with float sums (kernels/Divergence/DivergenceKernels.cs); the device sum of
/// the row losses accumulates in float32 as the device reduction does, where the CPU fused form sums rows in
/// float64 — they agree to float32 rounding. The gradient is computed even when the student needs none (it is
/// then discarded): the kernel has no loss-only variant.
/// </para>
/// </summary>
internal static class DeviceFusedDivergence
{
    [ThreadStatic] private static long t_launches;

    /// <summary>
    /// How many times the calling thread ran the divergence kernel through this path (diagnostics: tests read it to
    /// show that a call took the kernel and did not fall back; per thread, so concurrent callers do not disturb it).
    /// </summary>
    internal static long LaunchesOnThisThread => t_launches;

    /// <summary>Why the device fused form cannot run these inputs, or null when it can.</summary>
    public static string? Unsupported(DivergenceProblem pb, Tensor student, Tensor teacher)
    {
        if (student.Device.Type == DeviceType.Cpu) return "the device fused form takes accelerator tensors, not CPU ones";
        if (student.DType != DType.Float32) return $"the fused form on {student.Device} takes float32 logits, not {student.DType.Name()}";
        if (GradMode.IsEnabled && teacher.RequiresGrad) return "the fused form computes the student's gradient only, and the teacher requires grad";
        if (pb.Classes > int.MaxValue || pb.Rows > int.MaxValue) return $"{pb.Rows} rows of {pb.Classes} classes exceed the divergence kernel's 32-bit sizes";
        return null;
    }

    /// <summary>The loss (0-d, or the rows' shape for <see cref="Reduction.None"/>), with its node recorded when the student requires grad.</summary>
    public static Tensor Compute(DivergenceProblem pb, Tensor student, Tensor teacher)
    {
        bool needGrad = GradMode.IsEnabled && student.RequiresGrad;
        var device = student.Device;
        Tensor rowLoss, grad;
        using (Tensor.NoGrad())
        {
            using var temps = pb.RowTemperature is null ? null : OnDevice(Tensor.FromArray(pb.RowTemperature.Select(x => (float)x).ToArray(), pb.Rows), device);
            using var labels = pb.Ignored is null ? null : OnDevice(IgnoreLabels(pb), device);
            using var weights = pb.RowWeights is null ? null : OnDevice(Tensor.FromArray(pb.RowWeights.Select(x => (float)x).ToArray(), pb.Rows), device);
            double scale = pb.Divisor == 0 ? 0 : 1.0 / pb.Divisor;
            (rowLoss, grad) = KernelDispatch.Divergence(student, teacher, Kind(pb), pb.Param, pb.Options.Temperature, temps, labels,
                pb.Options.IgnoreIndex, scale, pb.Options.ScaleByTemperatureSquared, Teacher(pb.Options.TeacherInput), rowParameters: weights);
            t_launches++;
        }

        Tensor result;
        if (pb.Options.Reduction == Reduction.None)
        {
            result = rowLoss; // the kernel's row losses already have the rows' shape
        }
        else
        {
            using (Tensor.NoGrad())
            using (rowLoss)
                result = rowLoss.Sum(); // on the device, float32 (the order is the device reduction's)
        }
        if (!needGrad)
        {
            grad.Dispose();
            return result;
        }

        var rowsShape = pb.RowsShape;
        Graph.Record(result, pb.Op, [student, teacher], [grad, student, teacher], (gOut, saved) =>
        {
            if (GradMode.IsEnabled) return Recompute(pb, saved[1], saved[2], gOut);
            var gs = saved[0];
            if (pb.Options.Reduction == Reduction.None)
            {
                using var column = gOut.Reshape([.. rowsShape, 1]);
                return [gs.Mul(column), null];
            }
            return [gOut.ToDouble() == 1 ? gs.Alias() : gs.Mul(gOut), null];
        });
        grad.Dispose(); // the node holds its own handle
        return result;
    }

    /// <summary>createGraph backward: the composite form's gradient, recorded, so it can be differentiated again.</summary>
    private static Tensor?[] Recompute(DivergenceProblem pb, Tensor student, Tensor teacher, Tensor gOut)
    {
        using var loss = CompositeDivergence.Compute(pb, student, teacher);
        var grads = Autograd.Grad([loss], [student], [gOut], retainGraph: true, createGraph: true, allowUnused: true);
        return [grads[0], null];
    }

    /// <summary>int64 labels [rows] from the problem's ignore flags: IgnoreIndex where ignored, a different value elsewhere.</summary>
    private static Tensor IgnoreLabels(DivergenceProblem pb)
    {
        long ignore = pb.Options.IgnoreIndex, keep = unchecked(ignore + 1);
        var values = new long[pb.Rows];
        for (long r = 0; r < pb.Rows; r++) values[r] = pb.IsIgnored(r) ? ignore : keep;
        return Tensor.FromArray(values, pb.Rows);
    }

    private static Tensor OnDevice(Tensor host, Device device)
    {
        using (host) return host.To(device);
    }

    private static KernelKind Kind(DivergenceProblem pb) => pb.Kind switch
    {
        DivergenceKind.ForwardKl => KernelKind.ForwardKL,
        DivergenceKind.ReverseKl => KernelKind.ReverseKL,
        DivergenceKind.Jsd => KernelKind.JensenShannon,
        DivergenceKind.TotalVariation => KernelKind.TotalVariation,
        DivergenceKind.SkewKl => KernelKind.SkewKL,
        DivergenceKind.SkewReverseKl => KernelKind.SkewReverseKL,
        DivergenceKind.Alpha => KernelKind.Alpha,
        DivergenceKind.BdKd => KernelKind.BalancedKL,
        _ => throw new InvalidOperationException($"internal: {pb.Op} ({pb.Kind}) has no divergence kernel"),
    };

    private static KernelTeacher Teacher(TeacherInput input) => input switch
    {
        TeacherInput.Logits => KernelTeacher.Logits,
        TeacherInput.LogProbabilities => KernelTeacher.LogProbabilities,
        TeacherInput.Probabilities => KernelTeacher.Probabilities,
        _ => throw new ArgumentOutOfRangeException(nameof(input), input, "internal: unknown teacher input"),
    };
}
