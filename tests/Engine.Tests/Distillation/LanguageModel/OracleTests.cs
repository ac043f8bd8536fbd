using Engine.Distillation.LanguageModel;
using Engine.Tensors;

namespace Engine.Tests.Distillation.LanguageModel;

/// <summary>
/// The synthetic oracle and the exact metric: the metric equals KL computed by hand, the oracle's per-prefix
/// distributions agree with its whole-sequence ones, sampling is reproducible per seed and follows the oracle's
/// distribution (chi-square bounds on many samples), and the temperature calibration reaches its target.
/// </summary>
public class OracleTests
{
    [Fact]
    public void MeanKlEqualsTheDefinitionOnHandPickedDistributions()
    {
        double[] p = [0.5, 0.25, 0.25, 1, 0, 0];
        double[] q = [1.0 / 3, 1.0 / 3, 1.0 / 3, 0.5, 0.25, 0.25];
        var logP = p.Select(x => Math.Log(x)).ToArray();
        var logQ = q.Select(x => Math.Log(x)).ToArray();
        double row0 = 0.5 * Math.Log(1.5) + 0.25 * Math.Log(0.75) + 0.25 * Math.Log(0.75);
        double row1 = Math.Log(2); // 1·ln(1/0.5); zero-probability classes contribute 0
        Assert.Equal((row0 + row1) / 2, LmMetrics.MeanKl(logP, logQ, 3), 15);
        Assert.Equal(0, LmMetrics.MeanKl(logP, logP, 3), 15);
        Assert.Equal(double.PositiveInfinity, LmMetrics.MeanKl(logQ, logP, 3)); // Q has mass where P has none
        Assert.Throws<ArgumentException>(() => { LmMetrics.MeanKl(logP, logQ, 4); });
    }

    [Fact]
    public void KlToOracleEqualsKlComputedByHandFromBothModelsLogits()
    {
        var config = new TransformerConfig(VocabSize: 3, ContextLength: 3, Width: 4, Layers: 1, Heads: 1, MlpRatio: 1, InitStd: 0.8);
        using var oracle = new SyntheticOracle(new DecoderTransformer(config, 1), temperature: 0.7);
        using var student = new DecoderTransformer(config, 2);
        using var sequences = Tensor.FromArray(new long[] { 0, 2, 1, 1, 0, 0, 0, 2 }, 2, 4);
        float[] zo, zs;
        using (var inputs = sequences.Narrow(1, 0, 3).Contiguous())
        {
            using (var a = oracle.Model.Forward(inputs)) zo = a.ToArray<float>();
            using (var b = student.Forward(inputs)) zs = b.ToArray<float>();
        }
        double total = 0;
        for (int r = 0; r < 6; r++)
        {
            var p = Softmax(zo.Skip(r * 3).Take(3).Select(x => x / 0.7).ToArray());
            var q = Softmax(zs.Skip(r * 3).Take(3).Select(x => (double)x).ToArray());
            for (int j = 0; j < 3; j++) total += p[j] * Math.Log(p[j] / q[j]);
        }
        Assert.Equal(total / 6, LmMetrics.KlToOracle(oracle, student, sequences), 12);
        // The oracle's own model at τ = 1 is a different distribution from the oracle at τ = 0.7.
        Assert.True(LmMetrics.KlToOracle(oracle, oracle.Model, sequences) > 1e-4);
    }

    private static double[] Softmax(double[] z)
    {
        double m = z.Max();
        var e = z.Select(x => Math.Exp(x - m)).ToArray();
        double s = e.Sum();
        return e.Select(x => x / s).ToArray();
    }

    [Fact]
    public void PrefixDistributionsAgreeWithWholeSequenceDistributionsAndSumToOne()
    {
        var config = new TransformerConfig(VocabSize: 11, ContextLength: 6, Width: 8, Layers: 2, Heads: 2, InitStd: 0.35);
        using var oracle = new SyntheticOracle(new DecoderTransformer(config, 9), temperature: 0.5);
        using var seqs = oracle.Sample(3, new Generator(4));
        Assert.Equal([3, 7], seqs.ShapeArray());
        var ids = seqs.ToArray<long>();
        var all = oracle.LogProbabilities(seqs);
        Assert.Equal(3 * 6 * 11, all.Length);
        for (int s = 0; s < 3; s++)
            for (int i = 0; i < 6; i++)
            {
                var prefix = ids.AsSpan(s * 7, i + 1);
                var row = oracle.NextTokenLogProbabilities(prefix);
                var expected = all.AsSpan((s * 6 + i) * 11, 11).ToArray();
                TestUtil.AssertClose(expected, row, atol: 1e-5, rtol: 1e-5, what: $"sequence {s} position {i}");
                Assert.Equal(1, row.Sum(x => Math.Exp(x)), 12);
            }
    }

    [Fact]
    public void SamplingIsReproduciblePerSeedAndStartsWithBos()
    {
        var config = new TransformerConfig(VocabSize: 16, ContextLength: 8, Width: 8, Layers: 1, Heads: 2, InitStd: 0.35);
        using var oracle = new SyntheticOracle(new DecoderTransformer(config, 3), temperature: 0.8);
        long[] Draw(ulong seed)
        {
            using var t = oracle.Sample(40, new Generator(seed));
            return t.ToArray<long>();
        }
        var a = Draw(7);
        Assert.Equal(a, Draw(7));
        Assert.NotEqual(a, Draw(8));
        Assert.All(Enumerable.Range(0, 40), s => Assert.Equal(SyntheticOracle.Bos, a[s * 9]));
        Assert.All(a, x => Assert.InRange(x, 0, 15));
        // Two draws from one generator continue the stream: the second differs from the first.
        var g = new Generator(7);
        using var first = oracle.Sample(40, g);
        using var second = oracle.Sample(40, g);
        Assert.Equal(a, first.ToArray<long>());
        Assert.NotEqual(a, second.ToArray<long>());
        Assert.Throws<ArgumentOutOfRangeException>(() => oracle.Sample(0, g));
    }

    [Fact]
    public void SampleFrequenciesMatchTheOracleDistributionOnAOneTokenContext()
    {
        // Context 1: each sequence is [BOS, x] with x ~ P(· | BOS). Pearson's χ² over the V = 8 cells, df = 7:
        // P(χ² > 40) ≈ 1e-6 under the right distribution; a sampler off by one index or ignoring τ exceeds it by far.
        var config = new TransformerConfig(VocabSize: 8, ContextLength: 1, Width: 8, Layers: 1, Heads: 2, InitStd: 0.5);
        using var oracle = new SyntheticOracle(new DecoderTransformer(config, 21), temperature: 0.6);
        var p = oracle.NextTokenLogProbabilities([SyntheticOracle.Bos]).Select(x => Math.Exp(x)).ToArray();
        Assert.True(p.Max() > 1.5 / 8, "the test distribution should be far from uniform");
        const int count = 20000;
        using var seqs = oracle.Sample(count, new Generator(123));
        var counts = new double[8];
        var ids = seqs.ToArray<long>();
        for (int s = 0; s < count; s++) counts[ids[s * 2 + 1]]++;
        Assert.InRange(ChiSquare(counts, p, count), 0, 40);
        // The same counts against the uniform distribution or the untempered one are rejected.
        Assert.True(ChiSquare(counts, Enumerable.Repeat(1.0 / 8, 8).ToArray(), count) > 200);
        using var plain = new SyntheticOracle(new DecoderTransformer(config, 21), temperature: 1);
        var p1 = plain.NextTokenLogProbabilities([SyntheticOracle.Bos]).Select(x => Math.Exp(x)).ToArray();
        Assert.True(ChiSquare(counts, p1, count) > 200);
    }

    [Fact]
    public void AncestralSamplesMatchTheJointDistributionOfTwoTokens()
    {
        // Context 2: the pair (x1, x2) has P(x1 | BOS)·P(x2 | BOS, x1); χ² over the 16 cells, df = 15: P(χ² > 60) ≈ 1e-7.
        var config = new TransformerConfig(VocabSize: 4, ContextLength: 2, Width: 8, Layers: 1, Heads: 2, InitStd: 0.5);
        using var oracle = new SyntheticOracle(new DecoderTransformer(config, 5), temperature: 0.5);
        var joint = new double[16];
        var first = oracle.NextTokenLogProbabilities([SyntheticOracle.Bos]).Select(x => Math.Exp(x)).ToArray();
        for (int a = 0; a < 4; a++)
        {
            var second = oracle.NextTokenLogProbabilities([SyntheticOracle.Bos, a]).Select(x => Math.Exp(x)).ToArray();
            for (int b = 0; b < 4; b++) joint[a * 4 + b] = first[a] * second[b];
        }
        const int count = 20000;
        using var seqs = oracle.Sample(count, new Generator(99));
        var ids = seqs.ToArray<long>();
        var counts = new double[16];
        for (int s = 0; s < count; s++) counts[ids[s * 3 + 1] * 4 + ids[s * 3 + 2]]++;
        Assert.InRange(ChiSquare(counts, joint, count), 0, 60);
        // Against the product of the marginal of x1 and P(x2 | BOS, x1 = 0) (wrong conditioning) it fails.
        var wrong = new double[16];
        var second0 = oracle.NextTokenLogProbabilities([SyntheticOracle.Bos, 0]).Select(x => Math.Exp(x)).ToArray();
        for (int a = 0; a < 4; a++) for (int b = 0; b < 4; b++) wrong[a * 4 + b] = first[a] * second0[b];
        Assert.True(ChiSquare(counts, wrong, count) > 100, "the test should tell the conditionals apart");
    }

    private static double ChiSquare(double[] counts, double[] p, int n)
    {
        double chi = 0;
        for (int j = 0; j < counts.Length; j++)
        {
            double e = p[j] * n;
            if (e < 1e-9) { if (counts[j] > 0) return double.PositiveInfinity; continue; }
            chi += (counts[j] - e) * (counts[j] - e) / e;
        }
        return chi;
    }

    [Fact]
    public void TemperatureCalibrationReachesTheTargetEntropy()
    {
        var config = new TransformerConfig(VocabSize: 32, ContextLength: 6, Width: 16, Layers: 1, Heads: 2, InitStd: 0.25);
        using var oracle = SyntheticOracle.Create(config, 17, entropyFraction: 0.5);
        Assert.InRange(oracle.Temperature, 1e-3, 1e3);
        // The calibration set: 64 uniform sequences from the documented generator; recompute its mean entropy.
        using var ids = Tensor.RandInt(0, 32, [64, 6], new Generator(17UL ^ 0x9E3779B97F4A7C15UL));
        var data = ids.ToArray<long>();
        for (int s = 0; s < 64; s++) data[s * 6] = SyntheticOracle.Bos;
        using var seqs = Tensor.FromArray(data, 64, 6);
        Assert.Equal(0.5 * Math.Log(32), oracle.MeanEntropy(seqs), 6);
        Assert.Throws<ArgumentOutOfRangeException>(() => SyntheticOracle.Create(config, 17, entropyFraction: 1.2));
        Assert.Throws<ArgumentOutOfRangeException>(() => new SyntheticOracle(new DecoderTransformer(config, 1), 0));
    }
}
