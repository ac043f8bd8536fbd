using System.Text;

namespace Engine.Tensors;

/// <summary>
/// Checks analytic gradients against float64 central differences. The function's output is
/// reduced to a scalar with a fixed random weighting, so every output element matters.
/// </summary>
public static class GradCheck
{
    /// <summary>
    /// Throws <see cref="GradCheckException"/> unless d f / d inputs from autograd matches
    /// (f(x + eps) − f(x − eps)) / 2eps for every element of every float64 input that requires grad.
    /// </summary>
    /// <param name="f">The function; it must not change its inputs.</param>
    /// <param name="inputs">float64 tensors; those with <see cref="Tensor.RequiresGrad"/> are checked.</param>
    /// <param name="eps">Finite-difference step.</param>
    /// <param name="atol">Absolute tolerance.</param>
    /// <param name="rtol">Relative tolerance (of the larger magnitude).</param>
    public static void Check(Func<Tensor[], Tensor> f, Tensor[] inputs, double eps = 1e-6, double atol = 1e-6, double rtol = 1e-4)
    {
        var checkedInputs = Validate(inputs);
        Tensor? weights = null;
        double Objective()
        {
            using (Tensor.NoGrad())
            using (var y = f(inputs))
            {
                weights ??= Weights(y);
                using var prod = y.To(DType.Float64).Mul(weights);
                using var s = prod.Sum();
                return s.ToDouble();
            }
        }
        Objective(); // creates the weights
        Tensor?[] analytic;
        using (var y = f(inputs))
        {
            if (!y.RequiresGrad) throw new GradCheckException("GradCheck: the function's output does not require grad; nothing to check.");
            using var prod = y.Mul(weights!);
            using var loss = prod.Sum();
            analytic = Autograd.Grad([loss], checkedInputs, allowUnused: true);
        }
        var report = new StringBuilder();
        for (int k = 0; k < checkedInputs.Length; k++)
        {
            var x = checkedInputs[k];
            var a = analytic[k] is null ? new double[x.NumEl] : analytic[k]!.ToArray<double>();
            var numeric = new double[x.NumEl];
            for (long i = 0; i < x.NumEl; i++)
            {
                double orig = x.GetFlat(i);
                x.SetFlat(i, orig + eps);
                double plus = Objective();
                x.SetFlat(i, orig - eps);
                double minus = Objective();
                x.SetFlat(i, orig);
                numeric[i] = (plus - minus) / (2 * eps);
            }
            Compare($"input {k} (shape {ShapeUtil.Format(x.Shape)})", a, numeric, atol, rtol, report);
        }
        weights?.Dispose();
        foreach (var g in analytic) g?.Dispose();
        if (report.Length > 0) throw new GradCheckException("GradCheck failed:\n" + report);
    }

    /// <summary>
    /// Second-order check: the Hessian-vector product obtained by differentiating the gradient
    /// (createGraph) must match central differences of the gradient along a random direction.
    /// </summary>
    public static void CheckSecondOrder(Func<Tensor[], Tensor> f, Tensor[] inputs, double eps = 1e-5, double atol = 1e-5, double rtol = 1e-3)
    {
        var xs = Validate(inputs);
        var rng = new Random(1234);
        var directions = xs.Select(x => Tensor.FromArray(Enumerable.Range(0, (int)x.NumEl).Select(_ => rng.NextDouble() * 2 - 1).ToArray(), x.ShapeArray())).ToArray();
        Tensor? weights = null;

        double[][] Gradient()
        {
            using var y = f(inputs);
            weights ??= Weights(y);
            using var loss = y.Mul(weights).Sum();
            var g = Autograd.Grad([loss], xs, allowUnused: true);
            return g.Select((t, k) => t is null ? new double[xs[k].NumEl] : t.ToArray<double>()).ToArray();
        }

        Gradient();
        double[][] hvp;
        {
            using var y = f(inputs);
            using var loss = y.Mul(weights!).Sum();
            var g = Autograd.Grad([loss], xs, createGraph: true, allowUnused: true);
            Tensor? dot = null;
            for (int k = 0; k < xs.Length; k++)
            {
                if (g[k] is null) continue;
                var term = g[k]!.Mul(directions[k]).Sum();
                dot = dot is null ? term : dot.Add(term);
            }
            if (dot is null || !dot.RequiresGrad)
            {
                hvp = xs.Select(x => new double[x.NumEl]).ToArray();
            }
            else
            {
                var h = Autograd.Grad([dot], xs, allowUnused: true);
                hvp = h.Select((t, k) => t is null ? new double[xs[k].NumEl] : t.ToArray<double>()).ToArray();
            }
        }

        void Step(double scale)
        {
            using (Tensor.NoGrad())
                for (int k = 0; k < xs.Length; k++)
                {
                    var dir = directions[k].ToArray<double>();
                    for (long i = 0; i < xs[k].NumEl; i++) xs[k].SetFlat(i, xs[k].GetFlat(i) + scale * dir[i]);
                }
        }

        Step(eps);
        var plus = Gradient();
        Step(-2 * eps);
        var minus = Gradient();
        Step(eps);
        var report = new StringBuilder();
        for (int k = 0; k < xs.Length; k++)
        {
            var numeric = plus[k].Zip(minus[k], (p, m) => (p - m) / (2 * eps)).ToArray();
            Compare($"Hessian-vector product for input {k} (shape {ShapeUtil.Format(xs[k].Shape)})", hvp[k], numeric, atol, rtol, report);
        }
        weights?.Dispose();
        if (report.Length > 0) throw new GradCheckException("GradCheck (second order) failed:\n" + report);
    }

    private static Tensor[] Validate(Tensor[] inputs)
    {
        ArgumentNullException.ThrowIfNull(inputs);
        foreach (var x in inputs)
            if (x.RequiresGrad && x.DType != DType.Float64)
                throw new ArgumentException($"GradCheck: inputs that require grad must be float64 (finite differences in float32 are too coarse); got {x.DType.Name()} of shape {ShapeUtil.Format(x.Shape)}.");
        var result = inputs.Where(x => x.RequiresGrad).ToArray();
        if (result.Length == 0) throw new ArgumentException("GradCheck: no input requires grad.");
        return result;
    }

    private static Tensor Weights(Tensor y)
    {
        var rng = new Random(42);
        var w = Enumerable.Range(0, (int)y.NumEl).Select(_ => 0.5 + rng.NextDouble()).ToArray();
        return Tensor.FromArray(w, y.ShapeArray());
    }

    private static void Compare(string what, double[] analytic, double[] numeric, double atol, double rtol, StringBuilder report)
    {
        int shown = 0;
        for (int i = 0; i < analytic.Length; i++)
        {
            double a = analytic[i], n = numeric[i];
            double tol = atol + rtol * Math.Max(Math.Abs(a), Math.Abs(n));
            if (double.IsFinite(a) && double.IsFinite(n) && Math.Abs(a - n) <= tol) continue;
            if (shown++ < 5) report.AppendLine($"  {what}, element {i}: analytic {a:G8}, numeric {n:G8}");
        }
        if (shown > 5) report.AppendLine($"  ... {shown - 5} more mismatches in {what}");
    }
}

/// <summary>A gradient check found analytic and numeric gradients that disagree.</summary>
public sealed class GradCheckException(string message) : Exception(message);
