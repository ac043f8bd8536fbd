using Engine.Distillation;
using Engine.Tensors;

namespace Engine.Benchmarks.Cases;

/// <summary>
/// <c>kd-loss</c>: Hinton KD, T²·batchmean KL(softmax(t/T) ‖ softmax(s/T)), forward + backward wrt the student,
/// [2048, 32000], T = 2 (torch_bench.py's <c>kd_loss</c>: <c>kl_div(log_softmax(s/T), log_softmax(t/T),
/// "batchmean", log_target=True)·T²</c>, then <c>backward()</c>). Runs the fused form
/// (<see cref="Divergences.ForwardKl"/>). Memory floor: read s and t once, write ∂L/∂s once = 12 bytes per element.
/// </summary>
public sealed class KdLoss : BenchCase
{
    /// <inheritdoc />
    public override string Name => "kd-loss";

    /// <inheritdoc />
    public override string Description => "T^2 * batchmean KL(softmax(t/2) || softmax(s/2)) over [2048, 32000], forward + backward";

    /// <inheritdoc />
    public override string Target => "issue 5: >= 20x faster than PyTorch, within 2x of the memory floor";

    /// <inheritdoc />
    public override bool RunsOnDevices => true;

    /// <inheritdoc />
    public override BenchRun Prepare(BenchOptions options)
    {
        long n = options.Tiny ? 4 : options.Quick ? 64 : 2048, v = options.Tiny ? 67 : options.Quick ? 1000 : 32000;
        var o = new DivergenceOptions { Temperature = 2, ScaleByTemperatureSquared = true, Reduction = Reduction.BatchMean };
        var device = options.Target;
        var s = device.Place(Tensor.Randn([n, v], generator: new Generator(1)).RequiresGrad_());
        var t = device.Place(Tensor.Randn([n, v], generator: new Generator(2)));
        var run = new BenchRun([n, v], () =>
        {
            using (var loss = Divergences.ForwardKl(s, t, o)) loss.Backward();
            s.Grad = null;
        }) { Bytes = 12.0 * n * v };
        run.Own(s);
        run.Own(t);
        run.Extra["temperature"] = 2.0;
        run.Extra["max_rel_error"] = DivergenceBenchValidation.Check(Name, s, t, o, (a, b, x) => Divergences.ForwardKl(a, b, x),
            DivergenceBenchValidation.ForwardKlRow);
        return run;
    }
}

/// <summary>The check shared by the divergence cases: some rows' loss and gradient against float64 loops.</summary>
internal static class DivergenceBenchValidation
{
    /// <summary>Row reference: (divergence, ∂D/∂(s/T)) of one row in float64.</summary>
    public delegate (double D, double[] G) RowReference(float[] s, float[] t, double temperature);

    /// <summary>
    /// Runs the loss once (forward + backward) and compares rows 0, n/2 and n − 1 of the per-row loss
    /// (the same options with Reduction.None) and of the gradient with <paramref name="reference"/>;
    /// throws <see cref="BenchValidationException"/> past 1e-4 relative. Returns the worst relative error.
    /// </summary>
    public static double Check(string name, Tensor s, Tensor t, DivergenceOptions o,
        Func<Tensor, Tensor, DivergenceOptions, Tensor> loss, RowReference reference)
    {
        long n = s.Size(0), v = s.Size(1);
        double total;
        using (var l = loss(s, t, o)) { total = l.ToDouble(); l.Backward(); }
        using var grad = s.Grad!.Detach();
        s.Grad = null;
        float[] rowsLoss;
        using (Tensor.NoGrad())
        using (var l = loss(s, t, o with { Reduction = Reduction.None })) rowsLoss = l.ToArray<float>();
        double worst = 0, sum = 0;
        foreach (var x in rowsLoss) sum += x;
        worst = Math.Max(worst, Math.Abs(total - sum / n) / Math.Abs(sum / n));
        double temp = o.Temperature, coef = o.ScaleByTemperatureSquared ? temp * temp : 1;
        foreach (long row in new[] { 0, n / 2, n - 1 })
        {
            using var sr = s.Select(0, row);
            using var tr = t.Select(0, row);
            using var gr = grad.Select(0, row);
            var (d, g) = reference(sr.ToArray<float>(), tr.ToArray<float>(), temp);
            worst = Math.Max(worst, Math.Abs(rowsLoss[row] - coef * d) / Math.Abs(coef * d));
            var got = gr.ToArray<float>();
            double gmax = g.Max(Math.Abs) * coef / temp / n;
            for (int c = 0; c < v; c++)
                worst = Math.Max(worst, Math.Abs(got[c] - coef / temp / n * g[c]) / gmax);
        }
        if (!(worst <= 1e-4)) throw new BenchValidationException($"{name}: relative error {worst:g3} against the float64 reference exceeds 1e-4");
        return worst;
    }

    private static double[] LogSoftmax(float[] x, double temperature)
    {
        double m = double.NegativeInfinity, z = 0;
        foreach (var e in x) m = Math.Max(m, e);
        foreach (var e in x) z += Math.Exp((e - m) / temperature);
        return x.Select(e => (e - m) / temperature - Math.Log(z)).ToArray();
    }

    /// <summary>KL(p ‖ q) and q − p.</summary>
    public static (double, double[]) ForwardKlRow(float[] s, float[] t, double temperature)
    {
        var lq = LogSoftmax(s, temperature);
        var lp = LogSoftmax(t, temperature);
        double d = 0;
        var g = new double[s.Length];
        for (int c = 0; c < s.Length; c++)
        {
            d += Math.Exp(lp[c]) * (lp[c] - lq[c]);
            g[c] = Math.Exp(lq[c]) - Math.Exp(lp[c]);
        }
        return (d, g);
    }

    /// <summary>JSD_β with M = βp + (1−β)q, and its gradient (1−β)·q(log q − log M) projected through the softmax.</summary>
    public static (double, double[]) JsdRow(float[] s, float[] t, double beta)
    {
        var lq = LogSoftmax(s, 1);
        var lp = LogSoftmax(t, 1);
        double d = 0, sa = 0;
        var a = new double[s.Length];
        for (int c = 0; c < s.Length; c++)
        {
            double p = Math.Exp(lp[c]), q = Math.Exp(lq[c]), lm = Math.Log(beta * p + (1 - beta) * q);
            d += beta * p * (lp[c] - lm) + (1 - beta) * q * (lq[c] - lm);
            a[c] = (1 - beta) * q * (lq[c] - lm);
            sa += a[c];
        }
        var g = new double[s.Length];
        for (int c = 0; c < s.Length; c++) g[c] = a[c] - Math.Exp(lq[c]) * sa;
        return (d, g);
    }
}
