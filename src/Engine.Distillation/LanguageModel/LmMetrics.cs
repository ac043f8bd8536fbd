using Engine.Tensors;
using Engine.Tensors.NN;

namespace Engine.Distillation.LanguageModel;

/// <summary>
/// Exact divergences between language models on given sequences: no sampling in the metric. For sequences
/// [S, N+1] (see <see cref="LmData"/>) and two models with next-token distributions P and Q,
/// <code>
/// MeanKl = (1 / (S·N)) · Σ_(s, i) Σ_v P(v | x_s,0..i) · (log P(v | x_s,0..i) − log Q(v | x_s,0..i))
/// </code>
/// computed in float64 from each model's full distributions (float32 logits, float64 log-softmax). Terms with
/// P = 0 contribute 0; a class with Q = 0 &lt; P makes the value +∞.
/// </summary>
public static class LmMetrics
{
    /// <summary>
    /// log_softmax of <paramref name="model"/>'s logits on the inputs of <paramref name="sequences"/> (no gradient),
    /// float64 [S, N, V] row-major, in batches of <paramref name="batchSize"/> sequences.
    /// </summary>
    /// <param name="model">A language model mapping ids [B, N] to logits [B, N, V].</param>
    /// <param name="sequences">int64 [S, M]; the first min(M, <paramref name="contextLength"/>) columns are read.</param>
    /// <param name="contextLength">N.</param>
    /// <param name="batchSize">Sequences per forward pass.</param>
    public static double[] LogProbabilities(Module model, Tensor sequences, int contextLength, int batchSize = 256)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(sequences);
        if (batchSize < 1) throw new ArgumentOutOfRangeException(nameof(batchSize), batchSize, "LmMetrics.LogProbabilities: batchSize must be ≥ 1.");
        using var inputs = LmData.Inputs(sequences, contextLength, "LmMetrics.LogProbabilities");
        long s = inputs.Size(0);
        var parts = new List<double[]>();
        int v = 0;
        using (Tensor.NoGrad())
        {
            for (long start = 0; start < s; start += batchSize)
            {
                using var batch = inputs.Narrow(0, start, Math.Min(batchSize, s - start));
                using var z = model.Forward(batch);
                v = (int)z.Size(-1);
                parts.Add(LmMath.ToDoubles(z));
            }
        }
        var all = parts.Count == 1 ? parts[0] : parts.SelectMany(p => p).ToArray();
        if (v > 0) LmMath.LogSoftmaxRows(all, v);
        return all;
    }

    /// <summary>
    /// Mean over rows of KL(P ‖ Q) = Σ_v P_v (log P_v − log Q_v), for row-major log-probabilities of
    /// <paramref name="vocabSize"/> classes per row (the same number of rows in both). Accumulates in float64.
    /// </summary>
    /// <exception cref="ArgumentException">Lengths that differ or are not a positive multiple of the vocabulary size.</exception>
    public static double MeanKl(ReadOnlySpan<double> logP, ReadOnlySpan<double> logQ, int vocabSize)
    {
        if (vocabSize < 1 || logP.Length != logQ.Length || logP.Length == 0 || logP.Length % vocabSize != 0)
            throw new ArgumentException($"LmMetrics.MeanKl: expected two arrays of the same length, a positive multiple of V = {vocabSize}; got {logP.Length} and {logQ.Length}.");
        int rows = logP.Length / vocabSize;
        double total = 0;
        for (int r = 0; r < rows; r++)
        {
            double kl = 0;
            for (int j = r * vocabSize; j < (r + 1) * vocabSize; j++)
            {
                double lp = logP[j];
                if (lp == double.NegativeInfinity) continue;
                kl += Math.Exp(lp) * (lp - logQ[j]);
            }
            total += kl;
        }
        return total / rows;
    }

    /// <summary>
    /// Exact mean KL(oracle ‖ model) over the sequences' positions (the golden metric of the testbed).
    /// </summary>
    /// <param name="oracle">The ground-truth distribution.</param>
    /// <param name="model">The model evaluated.</param>
    /// <param name="sequences">int64 [S, N+1], usually held-out oracle samples.</param>
    public static double KlToOracle(SyntheticOracle oracle, Module model, Tensor sequences)
    {
        ArgumentNullException.ThrowIfNull(oracle);
        var logP = oracle.LogProbabilities(sequences);
        var logQ = LogProbabilities(model, sequences, oracle.SequenceLength);
        return MeanKl(logP, logQ, oracle.VocabSize);
    }
}
