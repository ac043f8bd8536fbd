using Engine.Tensors;

namespace Engine.Distillation;

/// <summary>
/// The composite form of every divergence: built only from differentiable tensor ops (LogSoftmax with
/// temperature, Exp, Log, Where, products and sums), so it supports gradients of any order
/// (createGraph) and is the reference the fused form is tested against.
/// <para>
/// Numerics, written where they matter:
/// <list type="bullet">
/// <item>Log-probabilities come from LogSoftmax (max-subtracted), never from the log of a probability, so a
/// probability that underflows to 0 still has a finite log and contributes 0.</item>
/// <item>Every Σ a·(log a − log b) goes through <see cref="KlRows"/>: where log a = −∞ (a masked or zero
/// class) both logs are replaced by 0 before the subtraction, so −∞ − (−∞) never makes a NaN, and the
/// gradient there is 0 (Where's backward), not 0·∞.</item>
/// <item>log M of a mixture M = w₁a + w₂b is a log-sum-exp (<see cref="LogMix"/>) in log space, with
/// classes where both inputs are −∞ set to 0 first; it never takes log of an underflowed sum.</item>
/// </list>
/// The computation runs in the inputs' dtype (float64 inputs: a float64 reference).
/// </para>
/// </summary>
internal static class CompositeDivergence
{
    /// <summary>The loss (0-d, or the rows' shape for <see cref="Reduction.None"/>) of <paramref name="pb"/>'s divergence.</summary>
    public static Tensor Compute(DivergenceProblem pb, Tensor student, Tensor teacher)
    {
        using var scope = Tensor.NewDisposeScope();
        long n = pb.Rows, v = pb.Classes;
        var dtype = student.DType;
        var device = student.Device;
        // Host-built index/coefficient tensors move to the logits' device (a no-op on the CPU).
        Tensor On(Tensor x) => x.Device == device ? x : x.To(device);
        var s = student.Reshape(n, v);
        var t = teacher.Reshape(n, v);
        Tensor? index = null;
        long[] counted = pb.CountedRows();
        if (pb.Counted < n)
        {
            index = On(Tensor.FromArray(counted, counted.Length));
            s = s.IndexSelect(0, index);
            t = t.IndexSelect(0, index);
        }

        Tensor? tcol = null;
        if (pb.RowTemperature is not null)
        {
            var temps = counted.Select(r => pb.RowTemperature[r]).ToArray();
            tcol = On(Tensor.FromArray(temps, temps.Length, 1).To(dtype));
        }
        Tensor Tempered(Tensor x) => tcol is null ? x.LogSoftmax(1, pb.Options.Temperature) : x.Div(tcol).LogSoftmax(1);

        var lq = Tempered(s);
        var q = lq.Exp();
        Tensor lp, p;
        switch (pb.Options.TeacherInput)
        {
            case TeacherInput.Logits:
                lp = Tempered(t);
                p = lp.Exp();
                break;
            case TeacherInput.LogProbabilities:
                lp = t;
                p = t.Exp();
                break;
            default:
                // log of the given probabilities; zeros give −∞ without a 0/0 in Log's backward.
                var positive = t.Gt(0.0);
                lp = Tensor.Where(positive, Tensor.Where(positive, t, 1.0).Log(), double.NegativeInfinity);
                p = t;
                break;
        }

        Tensor d = pb.Kind switch
        {
            DivergenceKind.ForwardKl => KlRows(p, lp, lq),
            DivergenceKind.ReverseKl => KlRows(q, lq, lp),
            DivergenceKind.Jsd => Jsd(p, lp, q, lq, pb.Param),
            DivergenceKind.TotalVariation => (p - q).Abs().Sum(1) * 0.5,
            DivergenceKind.SkewKl => KlRows(p, lp, LogMix(lp, pb.Param, lq, 1 - pb.Param)),
            DivergenceKind.SkewReverseKl => KlRows(q, lq, LogMix(lp, 1 - pb.Param, lq, pb.Param)),
            DivergenceKind.Alpha => Alpha(lp, lq, pb.Param),
            DivergenceKind.BdKd => BdKd(pb, counted, dtype, p, lp, q, lq),
            _ => throw new InvalidOperationException($"internal: unknown divergence {pb.Kind}"),
        };

        var coef = counted.Select(pb.LossCoefficient).ToArray();
        var rowsLoss = d * On(Tensor.FromArray(coef, coef.Length).To(dtype));
        Tensor result;
        if (pb.Options.Reduction == Reduction.None)
        {
            var full = index is null ? rowsLoss : On(Tensor.Zeros([n], dtype)).IndexAdd(0, index, rowsLoss);
            result = full.Reshape(pb.RowsShape);
        }
        else
        {
            result = rowsLoss.Sum();
        }
        // Reshape may return a view of a tensor of this scope; the result leaves the scope as its own handle.
        return result.MoveToOuterDisposeScope();
    }

    /// <summary>Σ_c a·(log a − log b) per row, with classes where log a = −∞ contributing exactly 0 (no NaN, no 0·∞ in the gradient).</summary>
    internal static Tensor KlRows(Tensor a, Tensor la, Tensor lb)
    {
        var live = la.Gt(double.NegativeInfinity);
        var diff = Tensor.Where(live, la, 0.0) - Tensor.Where(live, lb, 0.0);
        return (a * diff).Sum(1);
    }

    /// <summary>
    /// log(w₁·exp(la) + w₂·exp(lb)) elementwise, as m + log(exp(la + log w₁ − m) + exp(lb + log w₂ − m)) with
    /// m the (detached: the expression's derivative does not depend on m) larger term. Classes where both are −∞
    /// are computed as if both were 0 (their value is never used: every caller masks them).
    /// </summary>
    internal static Tensor LogMix(Tensor la, double w1, Tensor lb, double w2)
    {
        if (w1 == 0) return lb + Math.Log(w2);
        if (w2 == 0) return la + Math.Log(w1);
        var both = la.Eq(double.NegativeInfinity).LogicalAnd(lb.Eq(double.NegativeInfinity));
        var a = Tensor.Where(both, 0.0, la) + Math.Log(w1);
        var b = Tensor.Where(both, 0.0, lb) + Math.Log(w2);
        var m = a.Maximum(b).Detach();
        return m + ((a - m).Exp() + (b - m).Exp()).Log();
    }

    private static Tensor Jsd(Tensor p, Tensor lp, Tensor q, Tensor lq, double beta)
    {
        var lm = LogMix(lp, beta, lq, 1 - beta);
        return KlRows(p, lp, lm) * beta + KlRows(q, lq, lm) * (1 - beta);
    }

    /// <summary>(1 − Σ p^α q^(1−α)) / (α(1−α)), written Σ (q − exp(α log p + (1−α) log q)) / (α(1−α)) (Σ q = 1), classes with p = q = 0 skipped.</summary>
    private static Tensor Alpha(Tensor lp, Tensor lq, double alpha)
    {
        var both = lp.Eq(double.NegativeInfinity).LogicalAnd(lq.Eq(double.NegativeInfinity));
        var mixed = Tensor.Where(both, 0.0, lp) * alpha + Tensor.Where(both, 0.0, lq) * (1 - alpha);
        var e = Tensor.Where(both, 0.0, mixed.Exp());
        var q = lq.Exp();
        return (q - e).Sum(1) * (1.0 / (alpha * (1 - alpha)));
    }

    private static Tensor BdKd(DivergenceProblem pb, long[] counted, DType dtype, Tensor p, Tensor lp, Tensor q, Tensor lq)
    {
        var w = counted.Select(r => pb.RowWeights![r]).ToArray();
        var wf = Tensor.FromArray(w, w.Length).To(dtype).To(p.Device);
        var wr = Tensor.FromArray(w.Select(x => 1 - x).ToArray(), w.Length).To(dtype).To(p.Device);
        return KlRows(p, lp, lq) * wf + KlRows(q, lq, lp) * wr;
    }
}
