namespace Engine.Tensors.NN;

/// <summary>How a loss reduces its per-sample values (torch's <c>reduction</c> argument).</summary>
public enum Reduction
{
    /// <summary>No reduction: one value per sample.</summary>
    None,
    /// <summary>The mean over the samples that count (for cross-entropy: rows not ignored).</summary>
    Mean,
    /// <summary>The sum over the samples.</summary>
    Sum,
}

/// <summary>Functional forms of the neural-network ops (torch.nn.functional).</summary>
public static partial class Functional
{
    /// <summary>
    /// Cross-entropy of <paramref name="logits"/> [N, C] (or [C]) against class indices
    /// <paramref name="target"/> (int64, [N] or 0-d), exactly as torch.nn.functional.cross_entropy
    /// without class weights:
    /// <code>
    /// logp    = log_softmax(logits, dim 1)
    /// loss_i  = (1 − ε) · (−logp[i, t_i]) + ε · (1/C) · Σ_c (−logp[i, c])     (ε = labelSmoothing)
    /// loss_i  = 0 for rows with t_i == ignoreIndex
    /// Mean    = Σ_i loss_i / #(rows not ignored);   Sum = Σ_i loss_i;   None = loss (shape [N])
    /// </code>
    /// When every row is ignored (or N = 0), Mean is NaN, as in torch (0 / 0), and the gradient is
    /// zero (not NaN), also as torch. Built from <see cref="Tensor.LogSoftmax"/>, <see cref="Tensor.Gather"/>,
    /// <see cref="Tensor.Where(Tensor, Tensor, double)"/> and sums, so it is differentiable to any order;
    /// the gradient of Mean is (softmax(x) − (1 − ε)·onehot(t) − ε/C) / #(rows not ignored) per kept row.
    /// Ignored rows use <c>Where</c>, not a multiplication by 0, so a −∞ logit there cannot make NaN.
    /// </summary>
    /// <param name="logits">Unnormalized scores, float32 or float64, [N, C] or [C].</param>
    /// <param name="target">Class indices in [0, C) (or <paramref name="ignoreIndex"/>), int64, [N] or 0-d.</param>
    /// <param name="labelSmoothing">ε in [0, 1]: the weight moved from the target class to the uniform distribution.</param>
    /// <param name="ignoreIndex">Target value whose rows contribute neither loss nor gradient (and do not count in Mean).</param>
    /// <param name="reduction">Mean (default), Sum or None.</param>
    /// <exception cref="ArgumentException">Bad dtypes or shapes.</exception>
    /// <exception cref="ArgumentOutOfRangeException">A target outside [0, C) that is not the ignore index (names the label, the row and C), or ε outside [0, 1].</exception>
    public static Tensor CrossEntropy(Tensor logits, Tensor target, double labelSmoothing = 0, long ignoreIndex = -100, Reduction reduction = Reduction.Mean)
    {
        ArgumentNullException.ThrowIfNull(logits);
        ArgumentNullException.ThrowIfNull(target);
        const string op = "cross_entropy";
        if (!logits.DType.IsFloatingPoint())
            throw new ArgumentException($"{op}: logits must be float32 or float64; got {logits.DType.Name()} of shape {ShapeUtil.Format(logits.Shape)}.");
        if (target.DType != DType.Int64)
            throw new ArgumentException($"{op}: target must hold int64 class indices; got {target.DType.Name()} of shape {ShapeUtil.Format(target.Shape)} (probability targets are not supported here).");
        if (!(labelSmoothing >= 0 && labelSmoothing <= 1))
            throw new ArgumentOutOfRangeException(nameof(labelSmoothing), labelSmoothing, $"{op}: labelSmoothing must be in [0, 1]; got {labelSmoothing}.");
        bool single = logits.Rank == 1 && target.Rank == 0;
        if (!single && (logits.Rank != 2 || target.Rank != 1 || target.Size(0) != logits.Size(0)))
            throw new ArgumentException(
                $"{op}: expected logits [N, C] with target [N] (or logits [C] with a 0-d target); got logits {ShapeUtil.Format(logits.Shape)} and target {ShapeUtil.Format(target.Shape)}.");

        using var x = single ? logits.Unsqueeze(0) : logits.Alias();
        long n = x.Size(0), c = x.Size(1);
        var labels = target.ToArray<long>();
        var keep = new bool[n];
        var safe = new long[n];
        long count = 0;
        for (long i = 0; i < n; i++)
        {
            long t = labels[i];
            if (t == ignoreIndex) continue;
            if (t < 0 || t >= c)
                throw new ArgumentOutOfRangeException(nameof(target),
                    $"{op}: target {t} at row {i} is out of range for {c} classes (expected 0 <= target < {c}, or the ignore index {ignoreIndex}).");
            keep[i] = true;
            safe[i] = t;
            count++;
        }

        using var keepMask = OnDeviceOf(x, Tensor.FromArray(keep, n));
        using var logp = x.LogSoftmax(1);
        Tensor perRow;
        if (count == 0)
        {
            // Nothing to pick (and C may be 0): a zero loss per row that still depends on the logits, so the
            // result has a graph and a zero gradient.
            using var rowSums = logp.Sum(1);
            perRow = Tensor.Where(keepMask, rowSums, 0.0);
        }
        else
        {
            using var index = OnDeviceOf(x, Tensor.FromArray(safe, n, 1));
            using var picked = logp.Gather(1, index);
            using var pickedRows = picked.Squeeze(1);
            using var nll = pickedRows.Neg();
            using var nllKept = Tensor.Where(keepMask, nll, 0.0);
            if (labelSmoothing == 0) perRow = nllKept.Alias();
            else
            {
                using var sums = logp.Sum(1);
                using var smooth = sums.Neg();
                using var smoothKept = Tensor.Where(keepMask, smooth, 0.0);
                using var a = nllKept.Mul(1 - labelSmoothing);
                using var b = smoothKept.Mul(labelSmoothing / c);
                perRow = a.Add(b);
            }
        }
        switch (reduction)
        {
            case Reduction.None:
                if (!single) return perRow;
                using (perRow) return perRow.Squeeze(0);
            case Reduction.Sum:
                using (perRow) return perRow.Sum();
            case Reduction.Mean:
                using (perRow)
                {
                    using var total = perRow.Sum();
                    if (count > 0) return total.Div(count);
                    // torch: 0 / 0 = NaN for the value, but a zero gradient (the ignored rows pass none back).
                    using var zero = total.Mul(0.0);
                    return zero.Add(double.NaN);
                }
            default:
                throw new ArgumentOutOfRangeException(nameof(reduction), reduction, $"{op}: unknown reduction.");
        }
    }

    /// <summary><paramref name="host"/> (a new CPU tensor, consumed) moved to <paramref name="like"/>'s device.</summary>
    private static Tensor OnDeviceOf(Tensor like, Tensor host)
    {
        if (like.Device == host.Device) return host;
        using (host) return host.To(like.Device);
    }
}
