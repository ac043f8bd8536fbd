using Engine.Tensors;

namespace Engine.Distillation.LanguageModel;

/// <summary>
/// Float64 row arithmetic shared by the oracle, the metrics and the sampler: every probability the testbed
/// reports is computed here, in double, from the models' float32 logits.
/// </summary>
internal static class LmMath
{
    /// <summary>The tensor's elements as float64, row-major (float32 widened exactly).</summary>
    public static double[] ToDoubles(Tensor t)
    {
        if (t.DType == DType.Float64) return t.ToArray<double>();
        var f = t.ToArray<float>();
        var d = new double[f.Length];
        for (int i = 0; i < f.Length; i++) d[i] = f[i];
        return d;
    }

    /// <summary>
    /// In place, each row of <paramref name="v"/> values becomes log_softmax(row / T): subtract the row max
    /// (stable), then log Σ exp. −∞ entries stay −∞.
    /// </summary>
    public static void LogSoftmaxRows(double[] x, int v, double temperature = 1)
    {
        for (int r = 0; r < x.Length / v; r++)
        {
            var row = x.AsSpan(r * v, v);
            if (temperature != 1) for (int j = 0; j < v; j++) row[j] /= temperature;
            double m = double.NegativeInfinity;
            for (int j = 0; j < v; j++) if (row[j] > m) m = row[j];
            double sum = 0;
            for (int j = 0; j < v; j++) sum += Math.Exp(row[j] - m);
            double lse = m + Math.Log(sum);
            for (int j = 0; j < v; j++) row[j] -= lse;
        }
    }

    /// <summary>In place softmax of one row of scores (max-subtracted).</summary>
    public static void SoftmaxInPlace(Span<double> row)
    {
        double m = double.NegativeInfinity;
        foreach (var z in row) if (z > m) m = z;
        double sum = 0;
        for (int j = 0; j < row.Length; j++) sum += row[j] = Math.Exp(row[j] - m);
        for (int j = 0; j < row.Length; j++) row[j] /= sum;
    }

    /// <summary>
    /// The smallest index v with Σ_(w≤v) p_w &gt; u·Σ_w p_w (float64 cumulative sums in index order), for
    /// u in [0, 1); the last index with p &gt; 0 if rounding leaves u·Σp unreached. Zero-probability
    /// entries are never returned.
    /// </summary>
    public static long InverseCdf(ReadOnlySpan<double> p, double u)
    {
        double total = 0;
        foreach (var x in p) total += x;
        double threshold = u * total, cumulative = 0;
        int lastPositive = -1;
        for (int j = 0; j < p.Length; j++)
        {
            if (p[j] <= 0) continue;
            lastPositive = j;
            cumulative += p[j];
            if (cumulative > threshold) return j;
        }
        return lastPositive;
    }

    /// <summary>Entropy (nats) of softmax(<paramref name="scores"/>), computed as lse − Σ p·z.</summary>
    public static double Entropy(ReadOnlySpan<double> scores)
    {
        double m = double.NegativeInfinity;
        foreach (var z in scores) if (z > m) m = z;
        double sum = 0, weighted = 0;
        foreach (var z in scores)
        {
            double e = Math.Exp(z - m);
            sum += e;
            weighted += e * (z - m);
        }
        return Math.Log(sum) - weighted / sum;
    }
}
