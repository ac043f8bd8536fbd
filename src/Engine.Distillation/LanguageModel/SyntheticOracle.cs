using Engine.Tensors;

namespace Engine.Distillation.LanguageModel;

/// <summary>
/// A known ground truth for language-model distillation: a fixed, randomly initialized
/// <see cref="DecoderTransformer"/> whose tempered next-token distributions define the data distribution.
/// <para>
/// <b>Distribution.</b> A sequence is x_0 = <see cref="Bos"/> (token 0) followed by x_1..x_N, N =
/// <see cref="SequenceLength"/> = ContextLength. For a prefix x_0..x_i (i &lt; N) the next token has
/// <code>
/// P(x_(i+1) = v | x_0..x_i) = softmax(logits_i / τ)_v,     logits = model(x_0..x_N−1) (float32), τ = <see cref="Temperature"/>
/// </code>
/// with the softmax and its logarithm taken in float64 from the float32 logits. Token 0 is also an ordinary
/// token after position 0. Causality makes logits_i a function of the prefix only, so one forward pass over
/// a whole sequence gives all N conditionals (<see cref="LogProbabilities"/>), exactly (no sampling).
/// The float32 forward of a prefix, of a longer sequence and the incremental decoding the sampler uses agree up
/// to rounding (~1e-6 relative); the tests bound the difference.
/// </para>
/// <para>
/// <b>Sampling</b> (<see cref="Sample"/>) is ancestral: one draw of count·N float64 uniforms u from the
/// Philox <see cref="Generator"/>, then for i = 0..N−1 one incremental decoding step of the whole batch
/// (<see cref="DecoderTransformer.DecodeStep"/>, keys and values of earlier positions cached, so the cost is that
/// of one forward pass over the sequences, not N) and, per sequence, the inverse CDF: x_(i+1) = the smallest v with Σ_(w≤v) p_w &gt; u·Σ_w p_w
/// (cumulative sums in float64, in token order). The result depends only on the generator's state: the same
/// seed gives the same sequences on every machine and thread count.
/// </para>
/// <para>
/// The model is frozen (no parameter requires grad) and owned by the oracle (<see cref="Dispose"/>).
/// </para>
/// </summary>
public sealed class SyntheticOracle : IDisposable
{
    /// <summary>The beginning-of-sequence token every sequence starts with.</summary>
    public const long Bos = 0;

    /// <summary>An oracle over <paramref name="model"/> (taken over: frozen, put in eval mode, disposed with the oracle) at temperature τ.</summary>
    /// <param name="model">The fixed transformer.</param>
    /// <param name="temperature">τ &gt; 0 dividing the logits (small: near-deterministic; large: near-uniform).</param>
    /// <exception cref="ArgumentOutOfRangeException">τ not positive and finite.</exception>
    public SyntheticOracle(DecoderTransformer model, double temperature)
    {
        ArgumentNullException.ThrowIfNull(model);
        if (!(temperature > 0 && double.IsFinite(temperature)))
            throw new ArgumentOutOfRangeException(nameof(temperature), temperature, $"SyntheticOracle: the temperature must be positive and finite; got {temperature}.");
        Model = model;
        Model.Eval();
        Model.RequiresGrad_(false);
        Temperature = temperature;
    }

    /// <summary>
    /// An oracle over a fresh <see cref="DecoderTransformer"/>(<paramref name="config"/>, <paramref name="seed"/>) whose
    /// temperature is chosen by <see cref="CalibrateTemperature"/> so that the mean next-token entropy on uniformly
    /// random prefixes is <paramref name="entropyFraction"/>·ln V.
    /// </summary>
    /// <param name="config">The oracle's shape (use a larger <see cref="TransformerConfig.InitStd"/>, e.g. 1/√d, than for a trained model, so that attention and MLPs shape the distribution).</param>
    /// <param name="seed">Seed of the parameters.</param>
    /// <param name="entropyFraction">Target entropy as a fraction of ln V, in (0, 1).</param>
    public static SyntheticOracle Create(TransformerConfig config, ulong seed, double entropyFraction = 0.5)
    {
        var model = new DecoderTransformer(config, seed);
        try
        {
            double tau = CalibrateTemperature(model, entropyFraction * Math.Log(config.VocabSize), new Generator(seed ^ 0x9E3779B97F4A7C15UL));
            return new SyntheticOracle(model, tau);
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    /// <summary>The fixed transformer.</summary>
    public DecoderTransformer Model { get; }

    /// <summary>τ, the divisor of the logits.</summary>
    public double Temperature { get; }

    /// <summary>V.</summary>
    public int VocabSize => Model.Config.VocabSize;

    /// <summary>N, the number of sampled tokens after <see cref="Bos"/> (= the model's context length).</summary>
    public int SequenceLength => Model.Config.ContextLength;

    /// <summary>
    /// The τ for which the mean entropy (nats) of softmax(logits/τ) over the positions of 64 uniformly random
    /// sequences (drawn from <paramref name="generator"/>, each starting with <see cref="Bos"/>) equals
    /// <paramref name="targetEntropy"/>: bisection on log τ over [1e-3, 1e3], 60 halvings (the mean entropy
    /// increases with τ). Uniform prefixes, not the oracle's own samples, so τ does not depend on itself;
    /// the entropy on the oracle's own samples is reported by <see cref="MeanEntropy"/>.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">A target outside (0, ln V).</exception>
    /// <exception cref="InvalidOperationException">The target is not reachable in [1e-3, 1e3] (e.g. all logits equal).</exception>
    public static double CalibrateTemperature(DecoderTransformer model, double targetEntropy, Generator generator)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(generator);
        int v = model.Config.VocabSize, n = model.Config.ContextLength;
        if (!(targetEntropy > 0 && targetEntropy < Math.Log(v)))
            throw new ArgumentOutOfRangeException(nameof(targetEntropy), targetEntropy, $"SyntheticOracle.CalibrateTemperature: the target entropy must be in (0, ln V = {Math.Log(v):G4}); got {targetEntropy}.");
        const int count = 64;
        double[] logits;
        using (Tensor.NoGrad())
        using (var ids = Tensor.RandInt(0, v, [count, n], generator))
        {
            var data = ids.ToArray<long>();
            for (int s = 0; s < count; s++) data[s * n] = Bos;
            using var seq = Tensor.FromArray(data, count, n);
            using var z = model.Forward(seq);
            using var z64 = z.To(DType.Float64);
            logits = z64.ToArray<double>();
        }
        double MeanEntropyAt(double tau)
        {
            var row = new double[v];
            double total = 0;
            int rows = logits.Length / v;
            for (int r = 0; r < rows; r++)
            {
                for (int j = 0; j < v; j++) row[j] = logits[r * v + j] / tau;
                total += LmMath.Entropy(row);
            }
            return total / rows;
        }
        double lo = Math.Log(1e-3), hi = Math.Log(1e3);
        if (MeanEntropyAt(Math.Exp(lo)) > targetEntropy || MeanEntropyAt(Math.Exp(hi)) < targetEntropy)
            throw new InvalidOperationException($"SyntheticOracle.CalibrateTemperature: no τ in [1e-3, 1e3] gives mean entropy {targetEntropy:G4} for the model {model.Config.Describe()}.");
        for (int it = 0; it < 60; it++)
        {
            double mid = 0.5 * (lo + hi);
            if (MeanEntropyAt(Math.Exp(mid)) < targetEntropy) lo = mid; else hi = mid;
        }
        return Math.Exp(0.5 * (lo + hi));
    }

    /// <summary>
    /// Exact next-token log-probabilities for every prefix of <paramref name="sequences"/> (int64 [B, N+1] as
    /// <see cref="Sample"/> returns, or [B, M] with 1 ≤ M ≤ N: only the first M tokens are read as prefixes):
    /// a float64 array [B, M', V] in row-major order with M' = min(M, N), where row (b, i) is
    /// log P(· | sequences[b, 0..i]).
    /// </summary>
    public double[] LogProbabilities(Tensor sequences)
    {
        ArgumentNullException.ThrowIfNull(sequences);
        using var inputs = LmData.Inputs(sequences, SequenceLength, "SyntheticOracle.LogProbabilities");
        using (Tensor.NoGrad())
        using (var z = Model.Forward(inputs))
        {
            var logits = LmMath.ToDoubles(z);
            LmMath.LogSoftmaxRows(logits, VocabSize, Temperature);
            return logits;
        }
    }

    /// <summary>Exact log P(· | <paramref name="prefix"/>) (length 1..N, starting with any token; usually <see cref="Bos"/>), float64 [V].</summary>
    public double[] NextTokenLogProbabilities(ReadOnlySpan<long> prefix)
    {
        if (prefix.Length < 1 || prefix.Length > SequenceLength)
            throw new ArgumentException($"SyntheticOracle.NextTokenLogProbabilities: the prefix must hold 1..{SequenceLength} tokens; got {prefix.Length}.");
        using var ids = Tensor.FromArray(prefix.ToArray(), 1, prefix.Length);
        var all = LogProbabilities(ids);
        return all.AsSpan((prefix.Length - 1) * VocabSize, VocabSize).ToArray();
    }

    /// <summary>
    /// <paramref name="count"/> sequences int64 [count, N+1] drawn ancestrally (see the class summary), column 0
    /// being <see cref="Bos"/>. Advances <paramref name="generator"/> by one draw of count·N uniforms.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">count &lt; 1.</exception>
    public Tensor Sample(int count, Generator generator)
    {
        ArgumentNullException.ThrowIfNull(generator);
        if (count < 1) throw new ArgumentOutOfRangeException(nameof(count), count, $"SyntheticOracle.Sample: count must be ≥ 1; got {count}.");
        int n = SequenceLength, v = VocabSize, width = n + 1;
        double[] uniforms;
        using (var u = Tensor.Rand([count, n], DType.Float64, generator)) uniforms = u.ToArray<double>();
        var tokens = new long[count * width];
        for (int s = 0; s < count; s++) tokens[s * width] = Bos;
        var p = new double[v];
        var column = new long[count];
        using (Tensor.NoGrad())
        using (var cache = new KeyValueCache(Model.Config.Layers))
        {
            for (int i = 0; i < n; i++)
            {
                // One incremental step for every sequence: the logits after x_0..x_i, [count, V].
                for (int s = 0; s < count; s++) column[s] = tokens[s * width + i];
                double[] last;
                using (var ids = Tensor.FromArray(column, count))
                using (var z = Model.DecodeStep(ids, cache))
                    last = LmMath.ToDoubles(z);
                for (int s = 0; s < count; s++)
                {
                    for (int j = 0; j < v; j++) p[j] = last[s * v + j] / Temperature;
                    LmMath.SoftmaxInPlace(p);
                    tokens[s * width + i + 1] = LmMath.InverseCdf(p, uniforms[s * n + i]);
                }
            }
        }
        return Tensor.FromArray(tokens, count, width);
    }

    /// <summary>Mean entropy (nats) of the oracle's next-token distributions over the positions of <paramref name="sequences"/>.</summary>
    public double MeanEntropy(Tensor sequences)
    {
        var logP = LogProbabilities(sequences);
        int v = VocabSize, rows = logP.Length / v;
        double total = 0;
        for (int r = 0; r < rows; r++)
        {
            double h = 0;
            for (int j = 0; j < v; j++)
            {
                double lp = logP[r * v + j];
                if (lp > double.NegativeInfinity) h -= Math.Exp(lp) * lp;
            }
            total += h;
        }
        return total / rows;
    }

    /// <summary>Disposes the model.</summary>
    public void Dispose() => Model.Dispose();
}
