using System.Numerics;

namespace Engine.Tensors.Optim;

/// <summary>Gradient clipping, as torch.nn.utils.</summary>
public static class GradClip
{
    /// <summary>
    /// torch.nn.utils.clip_grad_norm_: the norm of all gradients taken together (as if concatenated),
    /// ‖g‖_p = (Σ |g|^p)^(1/p) (max |g| for p = ∞), and every gradient multiplied in place by
    /// min(1, maxNorm / (total + 1e-6)). Parameters without a gradient are skipped; with none, 0 is
    /// returned. The norm is accumulated in float64 whatever the gradients' dtype.
    /// </summary>
    /// <param name="parameters">Tensors whose <see cref="Tensor.Grad"/> is clipped.</param>
    /// <param name="maxNorm">Largest allowed total norm.</param>
    /// <param name="normType">p of the p-norm (positive; <see cref="double.PositiveInfinity"/> for the max norm).</param>
    /// <param name="errorIfNonfinite">Throw if the total norm is NaN or infinite (gradients are then left unchanged).</param>
    /// <returns>The total norm before clipping.</returns>
    public static double ClipGradNorm(IEnumerable<Tensor> parameters, double maxNorm, double normType = 2, bool errorIfNonfinite = false)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        if (!(normType > 0)) throw new ArgumentOutOfRangeException(nameof(normType), normType, "ClipGradNorm: normType must be positive (or +infinity).");
        var grads = parameters.Select(p => p.Grad).Where(g => g is not null).Select(g => g!).ToArray();
        if (grads.Length == 0) return 0;
        double total = 0;
        bool inf = double.IsPositiveInfinity(normType);
        foreach (var g in grads)
        {
            double part = g.DType == DType.Float32 ? PowerSum<float>(g, normType) : PowerSum<double>(g, normType);
            total = inf ? Math.Max(total, part) : total + part;
            if (double.IsNaN(part)) total = double.NaN;
        }
        if (!inf) total = normType == 2 ? Math.Sqrt(total) : normType == 1 ? total : Math.Pow(total, 1 / normType);
        if (errorIfNonfinite && !double.IsFinite(total))
            throw new InvalidOperationException($"ClipGradNorm: the total norm of order {normType} of the gradients is {total}, so they cannot be clipped.");
        double coef = Math.Min(1.0, maxNorm / (total + 1e-6));
        if (coef == 1.0) return total; // torch multiplies by 1.0 (a no-op)
        using var _ = Tensor.NoGrad();
        foreach (var g in grads)
        {
            using var scaled = g.Mul(coef);
            g.CopyFrom_(scaled);
        }
        return total;
    }

    /// <summary>Σ |x|^p (max |x| for p = ∞) over the elements, in float64.</summary>
    private static unsafe double PowerSum<T>(Tensor g, double p) where T : unmanaged, IFloatingPointIeee754<T>
    {
        using var c = g.Contiguous();
        var s = c.Span<T>();
        double acc = 0;
        bool inf = double.IsPositiveInfinity(p);
        for (int i = 0; i < s.Length; i++)
        {
            double a = Math.Abs(double.CreateTruncating(s[i]));
            if (inf) acc = double.IsNaN(a) || double.IsNaN(acc) ? double.NaN : Math.Max(acc, a);
            else acc += p == 2 ? a * a : p == 1 ? a : Math.Pow(a, p);
        }
        return acc;
    }
}
