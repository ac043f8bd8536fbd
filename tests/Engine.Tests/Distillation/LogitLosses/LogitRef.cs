using Engine.Distillation;
using Engine.Tensors;

namespace Engine.Tests.Distillation.LogitLosses;

/// <summary>float64 plain-loop helpers shared by the logit-loss tests, and a runner for the Engine side.</summary>
internal static class LogitRef
{
    /// <summary>log_softmax of x[off .. off+v) / T (max-subtracted, float64).</summary>
    public static double[] LogSoftmax(double[] x, int off, int v, double temp = 1)
    {
        double m = double.NegativeInfinity;
        for (int j = 0; j < v; j++) m = Math.Max(m, x[off + j] / temp);
        double z = 0;
        for (int j = 0; j < v; j++) z += Math.Exp(x[off + j] / temp - m);
        var r = new double[v];
        for (int j = 0; j < v; j++) r[j] = x[off + j] / temp - m - Math.Log(z);
        return r;
    }

    /// <summary>softmax of x[off .. off+v) / T.</summary>
    public static double[] Softmax(double[] x, int off, int v, double temp = 1)
        => LogSoftmax(x, off, v, temp).Select(Math.Exp).ToArray();

    /// <summary>Σ a (log a − log b) over entries with a &gt; 0 (PyTorch kl_div's convention).</summary>
    public static double Kl(double[] a, double[] logB)
    {
        double sum = 0;
        for (int j = 0; j < a.Length; j++) if (a[j] > 0) sum += a[j] * (Math.Log(a[j]) - logB[j]);
        return sum;
    }

    /// <summary>Central differences of a float64 scalar function (step h).</summary>
    public static double[] FiniteDifferences(Func<double[], double> f, double[] x, double h = 1e-6)
    {
        var g = new double[x.Length];
        var y = (double[])x.Clone();
        for (int i = 0; i < x.Length; i++)
        {
            double o = y[i];
            y[i] = o + h;
            double plus = f(y);
            y[i] = o - h;
            double minus = f(y);
            y[i] = o;
            g[i] = (plus - minus) / (2 * h);
        }
        return g;
    }

    /// <summary>
    /// Runs <paramref name="loss"/> on student logits made from <paramref name="s"/>, then backward of the
    /// sum of its output; returns the output values (as doubles) and the student gradient.
    /// </summary>
    public static (double[] Value, double[] Grad) Run(Func<Tensor, Tensor> loss, double[] s, long[] shape, DType dtype)
    {
        using var st = TestUtil.FromDoubles(s, shape, dtype).RequiresGrad_();
        using var y = loss(st);
        var value = y.To(DType.Float64).ToArray<double>();
        using var total = y.Sum();
        total.Backward();
        var grad = st.Grad is null ? new double[s.Length] : st.Grad.To(DType.Float64).ToArray<double>();
        return (value, grad);
    }

    /// <summary>Both forms, same inputs: asserts loss and gradient agree (and are finite).</summary>
    public static void AssertFormsAgree(Func<Tensor, LossImplementation, Tensor> loss, double[] s, long[] shape, DType dtype, double atol, double rtol, string what)
    {
        var fused = Run(x => loss(x, LossImplementation.Fused), s, shape, dtype);
        var composite = Run(x => loss(x, LossImplementation.Composite), s, shape, dtype);
        Assert.All(fused.Value, v => Assert.True(double.IsFinite(v), $"{what}: fused loss {v}"));
        Assert.All(fused.Grad, v => Assert.True(double.IsFinite(v), $"{what}: fused grad {v}"));
        TestUtil.AssertClose(composite.Value, fused.Value, atol, rtol, what + " (value)");
        TestUtil.AssertClose(composite.Grad, fused.Grad, atol, rtol, what + " (grad)");
    }

    /// <summary>Random labels in [0, v), with about a quarter replaced by <paramref name="ignore"/> when asked.</summary>
    public static long[] Labels(Random rng, int rows, int v, bool withIgnored, long ignore = -100)
        => Enumerable.Range(0, rows).Select(_ => withIgnored && rng.NextDouble() < 0.25 ? ignore : rng.Next(v)).ToArray();

    /// <summary>Reduction of per-row values the way <see cref="Reduction"/> documents it.</summary>
    public static double Reduce(double[] rows, bool[] counted, Reduction reduction, int v, long dim0 = -1)
    {
        double sum = 0;
        int n = 0;
        for (int i = 0; i < rows.Length; i++) if (counted[i]) { sum += rows[i]; n++; }
        double d = reduction switch
        {
            Reduction.Sum => 1,
            Reduction.Mean => (double)n * v,
            Reduction.BatchMean => dim0 >= 0 ? dim0 : n,
            Reduction.TokenMean => n,
            _ => throw new ArgumentOutOfRangeException(nameof(reduction)),
        };
        return sum / (d == 0 ? 1 : d);
    }
}
