using Engine.Runtime;
using Engine.Tensors;
using Engine.Tensors.AutoDiff;
using KernelTeacher = Engine.Tensors.Kernels.DivergenceTeacher;

namespace Engine.Distillation;

/// <summary>
/// The fused form of the logit losses on an accelerator device (emulator, OpenCL, CUDA): one launch of the loss's
/// kernel (kernels/Divergence: DkdKernels, TaidKernels, MultiTeacherKernels, TopKSparseKernels through
/// <c>KernelDispatch</c>) computes every row's loss and the student's gradient; the row losses are summed on the device
/// and the autograd node keeps the gradient, its backward only rescaling it by the incoming gradient (per row for
/// <see cref="Reduction.None"/>) — the same semantics as the CPU's <see cref="LogitLossCore.RunFused"/>.
/// <para>
/// Coefficients: the kernel's row factor includes scale = 1 / the reduction's divisor (<see cref="LogitLossCore.Divisor"/>;
/// 1 for none and sum), so the sum of the row losses is the reduced loss and the kernel's gradient is its gradient.
/// Ignored rows are passed as the layout's labels (the ignore index where ignored) and get loss 0 and a zero gradient.
/// A backward with createGraph rebuilds the loss with the composite form (on the device) and differentiates that.
/// </para>
/// <para>
/// What it covers: float32 logits on an accelerator with only the student requiring grad (<see cref="LogitLossCore.UseFused"/>
/// decides; other inputs take the composite form under <see cref="LossImplementation.Auto"/> and are an error under
/// <see cref="LossImplementation.Fused"/>). Numerics: the kernels' (float32, float sums); the device sum of the row losses
/// accumulates in float32, where the CPU fused form sums rows in float64 — they agree to float32 rounding.
/// </para>
/// </summary>
internal static class DeviceLogitLoss
{
    [ThreadStatic] private static long t_launches;

    /// <summary>
    /// How many times the calling thread ran a logit-loss kernel through this path (diagnostics: tests read it to show that
    /// a call took the kernel and did not fall back; per thread).
    /// </summary>
    internal static long LaunchesOnThisThread => t_launches;

    /// <summary>True when the logits live on an accelerator (then a fused loss runs its kernel).</summary>
    public static bool OnDevice(Tensor student) => student.Device.Type != DeviceType.Cpu;

    /// <summary>The kernels' code for what a teacher tensor holds.</summary>
    public static KernelTeacher Teacher(TeacherInput input) => input switch
    {
        TeacherInput.Logits => KernelTeacher.Logits,
        TeacherInput.LogProbabilities => KernelTeacher.LogProbabilities,
        TeacherInput.Probabilities => KernelTeacher.Probabilities,
        _ => throw new ArgumentOutOfRangeException(nameof(input), input, "internal: unknown teacher input"),
    };

    /// <summary>The layout's labels (the ignore index at ignored rows) as an int64 tensor [rows] on <paramref name="device"/>, or null without labels.</summary>
    public static Tensor? Labels(RowLayout layout, Device device)
    {
        if (layout.Labels is null) return null;
        using var host = Tensor.FromArray(layout.Labels, layout.Rows);
        return host.To(device);
    }

    /// <summary>Per-row temperatures as a float32 tensor [rows] on <paramref name="device"/>, or null.</summary>
    public static Tensor? Temperatures(double[]? rowT, Device device)
    {
        if (rowT is null) return null;
        using var host = Tensor.FromArray(rowT.Select(x => (float)x).ToArray(), rowT.Length);
        return host.To(device);
    }

    /// <summary>
    /// Runs a loss's kernel: <paramref name="launch"/> gets the row factor scale (1/divisor) and returns the row losses
    /// and the gradient of their sum; the result is reduced on the device and, when the student needs a gradient, a node
    /// is recorded whose backward rescales that gradient (or, with createGraph, differentiates <paramref name="composite"/>).
    /// </summary>
    /// <param name="op">Name of the op (graph node name).</param>
    /// <param name="student">The student logits [..., V] on an accelerator.</param>
    /// <param name="layout">The rows.</param>
    /// <param name="reduction">How rows combine.</param>
    /// <param name="launch">One kernel launch for a given row factor.</param>
    /// <param name="composite">Builds the composite loss from (student, saved extras).</param>
    /// <param name="extras">Tensors the composite needs (kept alive by the node until backward).</param>
    public static Tensor Run(string op, Tensor student, RowLayout layout, Reduction reduction, Func<double, (Tensor RowLoss, Tensor Grad)> launch,
        Func<Tensor, Tensor[], Tensor> composite, Tensor[] extras)
    {
        bool needGrad = GradMode.IsEnabled && student.RequiresGrad;
        double scale = reduction == Reduction.None ? 1 : 1 / LogitLossCore.Divisor(reduction, layout);
        Tensor rowLoss, grad;
        using (Tensor.NoGrad())
        {
            (rowLoss, grad) = launch(scale);
            t_launches++;
        }

        Tensor result;
        if (reduction == Reduction.None)
        {
            result = rowLoss; // the kernel's row losses have the batch shape
        }
        else
        {
            using (Tensor.NoGrad())
            using (rowLoss)
                result = rowLoss.Sum(); // on the device, float32
        }
        if (!needGrad)
        {
            grad.Dispose();
            return result;
        }

        bool perRow = reduction == Reduction.None;
        var saved = new Tensor[2 + extras.Length];
        saved[0] = grad;
        saved[1] = student;
        extras.CopyTo(saved, 2);
        var recorded = Graph.Record(result, op, [student], saved, (g, h) =>
        {
            if (!GradMode.IsEnabled)
            {
                // The gradient was written by the kernel: only rescale it by the incoming gradient.
                if (perRow)
                {
                    using var col = g.Unsqueeze(-1);
                    return [h[0].Mul(col)];
                }
                return [g.ToDouble() == 1 ? h[0].Alias() : h[0].Mul(g)];
            }
            // createGraph: the composite form on a fresh node over the student, differentiated with the graph recorded.
            using var sIn = h[1].Mul(1.0);
            using var loss = composite(sIn, h[2..]);
            var grads = Autograd.Grad([loss], [sIn], [g], createGraph: true);
            return [grads[0]];
        });
        grad.Dispose(); // the node holds its own handle
        return recorded;
    }
}
