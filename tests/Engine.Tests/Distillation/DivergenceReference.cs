using Engine.Distillation;
using Engine.Tensors;

namespace Engine.Tests.Distillation;

/// <summary>The divergences the tests cover, with their float64 reference (plain loops).</summary>
public enum RefKind { ForwardKl, ReverseKl, Jsd, TotalVariation, SkewKl, SkewReverseKl, Alpha, BdKd }

/// <summary>One divergence under test: how to call it, and which reference it must match.</summary>
public sealed record DivergenceCase(string Name, RefKind Kind, double Param, Func<Tensor, Tensor, Tensor?, DivergenceOptions, Tensor> Call)
{
    public override string ToString() => Name;

    public static readonly DivergenceCase[] All =
    [
        new("forward_kl", RefKind.ForwardKl, 0, (s, t, w, o) => Divergences.ForwardKl(s, t, o)),
        new("reverse_kl", RefKind.ReverseKl, 0, (s, t, w, o) => Divergences.ReverseKl(s, t, o)),
        new("jsd(0.5)", RefKind.Jsd, 0.5, (s, t, w, o) => Divergences.Jsd(s, t, 0.5, o)),
        new("jsd(0.2)", RefKind.Jsd, 0.2, (s, t, w, o) => Divergences.Jsd(s, t, 0.2, o)),
        new("jsd(0) = forward_kl", RefKind.ForwardKl, 0, (s, t, w, o) => Divergences.Jsd(s, t, 0.0, o)),
        new("jsd(1) = reverse_kl", RefKind.ReverseKl, 0, (s, t, w, o) => Divergences.Jsd(s, t, 1.0, o)),
        new("total_variation", RefKind.TotalVariation, 0, (s, t, w, o) => Divergences.TotalVariation(s, t, o)),
        new("skew_kl(0.1)", RefKind.SkewKl, 0.1, (s, t, w, o) => Divergences.SkewKl(s, t, 0.1, o)),
        new("skew_reverse_kl(0.3)", RefKind.SkewReverseKl, 0.3, (s, t, w, o) => Divergences.SkewReverseKl(s, t, 0.3, o)),
        new("alpha(0.5)", RefKind.Alpha, 0.5, (s, t, w, o) => Divergences.AlphaDivergence(s, t, 0.5, o)),
        new("alpha(2)", RefKind.Alpha, 2.0, (s, t, w, o) => Divergences.AlphaDivergence(s, t, 2.0, o)),
        new("alpha(1) = forward_kl", RefKind.ForwardKl, 0, (s, t, w, o) => Divergences.AlphaDivergence(s, t, 1.0, o)),
        new("alpha(0) = reverse_kl", RefKind.ReverseKl, 0, (s, t, w, o) => Divergences.AlphaDivergence(s, t, 0.0, o)),
        new("bd_kd", RefKind.BdKd, 0, (s, t, w, o) => Divergences.BdKd(s, t, w!, o)),
    ];
}

/// <summary>float64 reference: per row, the divergence D and ∂D/∂(s/T), written from the math with plain loops.</summary>
public static class DivergenceReference
{
    public static double[] LogSoftmax(ReadOnlySpan<double> x, double temperature)
    {
        double m = double.NegativeInfinity;
        foreach (var v in x) m = Math.Max(m, v);
        double z = 0;
        foreach (var v in x) z += Math.Exp((v - m) / temperature);
        var r = new double[x.Length];
        for (int i = 0; i < x.Length; i++) r[i] = (x[i] - m) / temperature - Math.Log(z);
        return r;
    }

    /// <summary>log(a·e^lp + b·e^lq) in the log domain (exact where both probabilities underflow double).</summary>
    private static double LogMix(double a, double lp, double b, double lq)
    {
        double m = Math.Max(lp, lq);
        if (double.IsNegativeInfinity(m)) return double.NegativeInfinity;
        return m + Math.Log(a * Math.Exp(lp - m) + b * Math.Exp(lq - m));
    }

    /// <summary>a·(log a − log b), 0 where a = 0.</summary>
    private static double Term(double a, double la, double lb) => a == 0 ? 0 : a * (la - lb);

    /// <summary>Row divergence D and dD/d(s/T) for one row.</summary>
    public static (double D, double[] G) Row(RefKind kind, double param, ReadOnlySpan<double> s, ReadOnlySpan<double> t,
        double temperature, TeacherInput teacherInput, double w)
    {
        int v = s.Length;
        var lq = LogSoftmax(s, temperature);
        double[] lp = teacherInput switch
        {
            TeacherInput.Logits => LogSoftmax(t, temperature),
            TeacherInput.LogProbabilities => t.ToArray(),
            _ => t.ToArray().Select(x => Math.Log(x)).ToArray(),
        };
        var q = lq.Select(Math.Exp).ToArray();
        var p = teacherInput == TeacherInput.Probabilities ? t.ToArray() : lp.Select(Math.Exp).ToArray();
        var a = new double[v];
        double d = 0;
        switch (kind)
        {
            case RefKind.ForwardKl:
                // a = −p, projected: q·Σp − p (= q − p when the teacher's p sums to 1, as the fused form assumes).
                for (int c = 0; c < v; c++) { d += Term(p[c], lp[c], lq[c]); a[c] = -p[c]; }
                break;
            case RefKind.ReverseKl:
                for (int c = 0; c < v; c++) { a[c] = Term(q[c], lq[c], lp[c]); d += a[c]; }
                break;
            case RefKind.Jsd:
                for (int c = 0; c < v; c++)
                {
                    double lm = LogMix(param, lp[c], 1 - param, lq[c]);
                    d += param * Term(p[c], lp[c], lm) + (1 - param) * Term(q[c], lq[c], lm);
                    a[c] = (1 - param) * Term(q[c], lq[c], lm);
                }
                break;
            case RefKind.TotalVariation:
                for (int c = 0; c < v; c++) { d += 0.5 * Math.Abs(p[c] - q[c]); a[c] = 0.5 * q[c] * Math.Sign(q[c] - p[c]); }
                break;
            case RefKind.SkewKl:
                for (int c = 0; c < v; c++)
                {
                    double m = param * p[c] + (1 - param) * q[c];
                    d += Term(p[c], lp[c], LogMix(param, lp[c], 1 - param, lq[c]));
                    a[c] = m > 0 ? -(1 - param) * p[c] * q[c] / m : 0;
                }
                break;
            case RefKind.SkewReverseKl:
                for (int c = 0; c < v; c++)
                {
                    double m = (1 - param) * p[c] + param * q[c];
                    double term = Term(q[c], lq[c], LogMix(1 - param, lp[c], param, lq[c]));
                    d += term;
                    a[c] = term - (m > 0 ? param * q[c] * q[c] / m : 0);
                }
                break;
            case RefKind.Alpha:
            {
                double sum = 0;
                for (int c = 0; c < v; c++)
                {
                    double e = p[c] == 0 && q[c] == 0 ? 0 : Math.Exp(param * lp[c] + (1 - param) * lq[c]);
                    sum += e;
                    a[c] = -e / param;
                }
                d = (1 - sum) / (param * (1 - param));
                break;
            }
            case RefKind.BdKd:
                for (int c = 0; c < v; c++)
                {
                    double f = Term(p[c], lp[c], lq[c]), r = Term(q[c], lq[c], lp[c]);
                    d += w * f + (1 - w) * r;
                    a[c] = -w * p[c] + (1 - w) * r;
                }
                break;
        }
        double sa = a.Sum();
        var g = new double[v];
        for (int c = 0; c < v; c++) g[c] = a[c] - q[c] * sa;
        return (d, g);
    }

    /// <summary>
    /// The whole loss and gradient wrt s for [rows, V] inputs under <paramref name="o"/>'s reduction, with
    /// <paramref name="rowGrad"/> the incoming gradient (per row for Reduction.None, else its first element).
    /// </summary>
    public static (double[] Loss, double[] Grad) Loss(RefKind kind, double param, double[] s, double[] t, long[] shape,
        DivergenceOptions o, double[]? rowTemps, bool[]? ignored, double[]? weights, double[] rowGrad)
    {
        int v = (int)shape[^1], rows = s.Length / v;
        long counted = rows - (ignored?.Count(x => x) ?? 0);
        double divisor = o.Reduction switch
        {
            Reduction.None or Reduction.Sum => 1,
            Reduction.Mean => counted * v,
            Reduction.BatchMean => shape.Length >= 3 ? shape[0] : counted,
            _ => counted,
        };
        var rowLoss = new double[rows];
        var grad = new double[s.Length];
        for (int r = 0; r < rows; r++)
        {
            if (ignored is not null && ignored[r]) continue;
            double temp = rowTemps?[r] ?? o.Temperature;
            var (d, g) = Row(kind, param, s.AsSpan(r * v, v), t.AsSpan(r * v, v), temp, o.TeacherInput, weights?[r] ?? 0);
            double coef = (o.ScaleByTemperatureSquared ? temp * temp : 1) / divisor;
            rowLoss[r] = coef * d;
            double gin = o.Reduction == Reduction.None ? rowGrad[r] : rowGrad[0];
            for (int c = 0; c < v; c++) grad[r * v + c] = gin * coef / temp * g[c];
        }
        return (o.Reduction == Reduction.None ? rowLoss : [counted == 0 ? 0 : rowLoss.Sum()], grad);
    }
}
