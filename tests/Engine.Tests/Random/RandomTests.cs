using Engine.Tensors;
using Engine.Tensors.Cpu;

// Not Engine.Tests.Random: a namespace named Random would hide System.Random in every test file.
namespace Engine.Tests.RandomNumbers;

public class RandomTests
{
    // ------------------------------------------------------------------ Philox itself

    /// <summary>
    /// Known-answer vectors of Random123 (tests/kat_vectors, "philox4x32 10" lines): counter words,
    /// key words, expected output words.
    /// </summary>
    public static TheoryData<uint[], uint[], uint[]> PhiloxKat() => new()
    {
        { [0, 0, 0, 0], [0, 0], [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8] },
        { [0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff], [0xffffffff, 0xffffffff], [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd] },
        { [0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344], [0xa4093822, 0x299f31d0], [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1] },
    };

    [Theory]
    [MemberData(nameof(PhiloxKat))]
    public void Philox4x32_10_MatchesRandom123KnownAnswers(uint[] ctr, uint[] key, uint[] expected)
    {
        var r = Philox.Compute(ctr[0], ctr[1], ctr[2], ctr[3], key[0], key[1]);
        Assert.Equal(expected, new[] { r.X0, r.X1, r.X2, r.X3 });
    }

    [Fact]
    public void Rand_Element_i_IsFromBlock_iOver4_AtTheGeneratorsOffset()
    {
        // The layout contract, recomputed with the scalar Philox: counter = (block, offset), key = seed.
        var g = new Generator(0x0123456789abcdef);
        using (var first = Tensor.Rand([5], generator: g)) { }
        Assert.Equal(2UL, g.Offset); // 5 float32 values use 2 blocks of 4
        using var x = Tensor.Rand([1001], generator: g);
        var got = x.ToArray<float>();
        for (int i = 0; i < got.Length; i++)
        {
            var b = Philox.Compute(0x0123456789abcdef, 2, (ulong)(i / 4));
            uint w = (i % 4) switch { 0 => b.X0, 1 => b.X1, 2 => b.X2, _ => b.X3 };
            Assert.Equal((w >> 8) / 16777216.0f, got[i]);
        }
        Assert.Equal(2UL + 251, g.Offset);
    }

    // ------------------------------------------------------------------ reproducibility

    [Fact]
    public void SameSeed_SameNumbers_DifferentSeeds_Differ()
    {
        foreach (var dtype in new[] { DType.Float32, DType.Float64 })
        {
            using var a = Tensor.Rand([257], dtype, new Generator(7));
            using var b = Tensor.Rand([257], dtype, new Generator(7));
            using var c = Tensor.Rand([257], dtype, new Generator(8));
            Assert.Equal(a.To(DType.Float64).ToArray<double>(), b.To(DType.Float64).ToArray<double>());
            Assert.True(CountEqual(a, c) < 3, $"{dtype.Name()}: seeds 7 and 8 gave nearly the same numbers");
            using var n1 = Tensor.Randn([33, 3], dtype, new Generator(7));
            using var n2 = Tensor.Randn([33, 3], dtype, new Generator(7));
            Assert.Equal(n1.To(DType.Float64).ToArray<double>(), n2.To(DType.Float64).ToArray<double>());
        }
    }

    [Fact]
    public void SuccessiveDraws_Differ_AndStateRestoreReplaysThem()
    {
        var g = new Generator(3);
        var saved = g.GetState();
        using var a = Tensor.Randn([100], generator: g);
        using var b = Tensor.Randn([100], generator: g);
        Assert.True(CountEqual(a, b) < 3);
        g.SetState(saved);
        using var a2 = Tensor.Randn([100], generator: g);
        Assert.Equal(a.ToArray<float>(), a2.ToArray<float>());
        Assert.Equal(new GeneratorState(3, 25), g.GetState()); // 100 float32 normals = 25 blocks
        g.Reseed(3);
        Assert.Equal(new GeneratorState(3, 0), g.GetState());
    }

    [Fact]
    public void ManualSeed_ResetsTheDefaultGenerator()
    {
        Tensor.ManualSeed(1234);
        Assert.Equal(new GeneratorState(1234, 0), Generator.Default.GetState());
        using var a = Tensor.Rand([10]);
        Tensor.ManualSeed(1234);
        using var b = Tensor.Rand([10]);
        using var c = Tensor.Rand([10], generator: new Generator(1234));
        Assert.Equal(a.ToArray<float>(), b.ToArray<float>());
        Assert.Equal(a.ToArray<float>(), c.ToArray<float>());
        Generator.ManualSeed(0);
    }

    [Fact]
    public void LargeDraws_AreIdentical_ForOneAndTwoThreads()
    {
        int saved = Parallelism.MaxThreads;
        try
        {
            var results = new List<double[][]>();
            foreach (int threads in new[] { 1, 2 })
            {
                Parallelism.MaxThreads = threads;
                var g = new Generator(99);
                using var u = Tensor.Rand([1 << 20], generator: g);
                using var n = Tensor.Randn([1 << 19], DType.Float64, g);
                using var i = Tensor.RandInt(-5, 1000, [300_000], g);
                using var p = Tensor.Bernoulli([300_000], 0.25, generator: g);
                results.Add([u.To(DType.Float64).ToArray<double>(), n.ToArray<double>(), i.To(DType.Float64).ToArray<double>(), p.To(DType.Float64).ToArray<double>()]);
            }
            for (int k = 0; k < 4; k++) Assert.Equal(results[0][k], results[1][k]);
        }
        finally { Parallelism.MaxThreads = saved; }
    }

    // ------------------------------------------------------------------ distributions

    [Theory]
    [InlineData(DType.Float32)]
    [InlineData(DType.Float64)]
    public void Rand_IsUniformOnZeroOne(DType dtype)
    {
        using var x = Tensor.Rand([1000, 1000], dtype, new Generator(11));
        var v = x.To(DType.Float64).ToArray<double>();
        Assert.All(v, e => Assert.InRange(e, 0.0, Math.BitDecrement(1.0)));
        var (mean, variance) = Moments(v);
        Assert.InRange(mean, 0.5 - 0.003, 0.5 + 0.003);
        Assert.InRange(variance, 1.0 / 12 - 0.002, 1.0 / 12 + 0.002);
        if (dtype == DType.Float32) Assert.All(v.Take(1000), e => Assert.Equal(e, Math.Round(e * (1 << 24)) / (1 << 24)));
        Assert.True(ChiSquare(v.Select(e => (long)(e * 20)), 20) < 43.8, "chi-square over 20 bins above the 0.1% critical value");
    }

    [Theory]
    [InlineData(DType.Float32)]
    [InlineData(DType.Float64)]
    public void Randn_IsStandardNormal(DType dtype)
    {
        using var x = Tensor.Randn([1_000_000], dtype, new Generator(12));
        var v = x.To(DType.Float64).ToArray<double>();
        Assert.All(v, e => Assert.True(double.IsFinite(e)));
        var (mean, variance) = Moments(v);
        Assert.InRange(mean, -0.005, 0.005);
        Assert.InRange(Math.Sqrt(variance), 0.995, 1.005);
        double within1 = v.Count(e => Math.Abs(e) < 1) / (double)v.Length;
        double within2 = v.Count(e => Math.Abs(e) < 2) / (double)v.Length;
        Assert.InRange(within1, 0.6827 - 0.003, 0.6827 + 0.003);
        Assert.InRange(within2, 0.9545 - 0.002, 0.9545 + 0.002);
    }

    [Fact]
    public void Uniform_AndNormal_FillInPlace_IncludingNonContiguousViews()
    {
        using var base1 = Tensor.Zeros([40, 60]);
        using var view = base1.T; // non-contiguous
        view.Uniform_(-2, 3, new Generator(5));
        using var expected = Tensor.Rand([60, 40], generator: new Generator(5));
        var e = expected.ToArray<float>().Select(u => (float)(-2 + 5.0 * u)).ToArray();
        Assert.Equal(e, view.ToArray<float>());

        using var y = Tensor.Empty([200_000], DType.Float64);
        y.Normal_(3, 0.5, new Generator(6));
        var (mean, variance) = Moments(y.ToArray<double>());
        Assert.InRange(mean, 3 - 0.005, 3 + 0.005);
        Assert.InRange(Math.Sqrt(variance), 0.495, 0.505);

        using var f = Tensor.Empty([100_000]);
        f.Uniform_(1, 1 + 1e-7, new Generator(1)); // rounding to float32 must not reach hi
        Assert.All(f.ToArray<float>(), u => Assert.True(u >= 1f && u < (float)(1 + 1e-7)));
    }

    [Fact]
    public void RandInt_StaysInRange_AndIsUniform()
    {
        using var x = Tensor.RandInt(-3, 7, [200_000], new Generator(13));
        Assert.Equal(DType.Int64, x.DType);
        var v = x.ToArray<long>();
        Assert.All(v, e => Assert.InRange(e, -3, 6));
        Assert.True(ChiSquare(v.Select(e => e + 3), 10) < 27.9, "chi-square over 10 values above the 0.1% critical value");

        using var one = Tensor.RandInt(5, 6, [50], new Generator(1));
        Assert.All(one.ToArray<long>(), e => Assert.Equal(5, e));

        // The full int64 range: both signs, and a range that is not a power of two near 2^63 (many rejections).
        using var full = Tensor.RandInt(long.MinValue, long.MaxValue, [1000], new Generator(2));
        var fv = full.ToArray<long>();
        Assert.InRange(fv.Count(e => e < 0), 400, 600);
        long high = (1L << 62) + (1L << 61);
        using var odd = Tensor.RandInt(0, high, [20_000], new Generator(3));
        var ov = odd.ToArray<long>();
        Assert.All(ov, e => Assert.InRange(e, 0, high - 1));
        Assert.True(ChiSquare(ov.Select(e => (long)(e / (double)high * 12)), 12) < 32.9);
    }

    [Fact]
    public void Bernoulli_FrequencyMatchesProbability()
    {
        using var x = Tensor.Bernoulli([200_000], 0.3, generator: new Generator(14));
        var v = x.ToArray<float>();
        Assert.All(v, e => Assert.True(e == 0 || e == 1));
        Assert.InRange(v.Average(), 0.3 - 0.005, 0.3 + 0.005);

        // Per-element probabilities: columns with p = 0, 0.1, 0.5, 0.9, 1, read through a transposed (non-contiguous) view.
        double[] ps = [0, 0.1, 0.5, 0.9, 1];
        using var colsFirst = TestUtil.FromDoubles(Enumerable.Range(0, 5 * 40_000).Select(i => ps[i / 40_000]).ToArray(), [5, 40_000], DType.Float64);
        using var probs = colsFirst.T;
        using var b = Tensor.Bernoulli(probs, new Generator(15));
        Assert.Equal([40_000, 5], b.ShapeArray());
        Assert.Equal(DType.Float64, b.DType);
        var bv = b.ToArray<double>();
        for (int c = 0; c < 5; c++)
        {
            double freq = Enumerable.Range(0, 40_000).Average(r => bv[r * 5 + c]);
            Assert.InRange(freq, ps[c] - 0.01, ps[c] + 0.01);
        }
        Assert.Equal(0, Enumerable.Range(0, 40_000).Sum(r => bv[r * 5]));
        Assert.Equal(40_000, Enumerable.Range(0, 40_000).Sum(r => bv[r * 5 + 4]));
    }

    [Fact]
    public void RandPerm_IsAPermutation_Deterministic_AndUniformForThree()
    {
        using var p = Tensor.RandPerm(1000, new Generator(16));
        var v = p.ToArray<long>();
        Assert.Equal(Enumerable.Range(0, 1000).Select(i => (long)i), v.Order());
        Assert.True(v.Where((e, i) => e == i).Count() < 10, "RandPerm(1000) left many elements in place");
        using var again = Tensor.RandPerm(1000, new Generator(16));
        Assert.Equal(v, again.ToArray<long>());
        using var empty = Tensor.RandPerm(0);
        Assert.Equal([0], empty.ShapeArray());
        using var single = Tensor.RandPerm(1);
        Assert.Equal([0L], single.ToArray<long>());

        var g = new Generator(17);
        var counts = new long[6];
        for (int k = 0; k < 6000; k++)
        {
            using var q = Tensor.RandPerm(3, g);
            var a = q.ToArray<long>();
            counts[a[0] * 2 + (a[1] > a[2] ? 1 : 0)]++;
        }
        Assert.True(ChiSquare(counts.SelectMany((c, i) => Enumerable.Repeat((long)i, (int)c)), 6) < 20.5, string.Join(",", counts));
    }

    // ------------------------------------------------------------------ errors

    [Fact]
    public void BadArguments_ThrowWithTheOpName()
    {
        Assert.Contains("Rand", Assert.Throws<ArgumentException>(() => Tensor.Rand([2, -1])).Message);
        Assert.Contains("Randn", Assert.Throws<ArgumentException>(() => Tensor.Randn([-3])).Message);
        Assert.Contains("Rand", Assert.Throws<ArgumentException>(() => Tensor.Rand([2], DType.Int64)).Message);
        Assert.Contains("RandInt", Assert.Throws<ArgumentException>(() => Tensor.RandInt(3, 3, [2])).Message);
        Assert.Contains("RandInt", Assert.Throws<ArgumentException>(() => Tensor.RandInt(0, 3, [-2])).Message);
        Assert.Contains("Bernoulli", Assert.Throws<ArgumentOutOfRangeException>(() => Tensor.Bernoulli([2], 1.5)).Message);
        Assert.Contains("Bernoulli", Assert.Throws<ArgumentOutOfRangeException>(() => Tensor.Bernoulli([2], double.NaN)).Message);
        using var badProbs = Tensor.FromArray([0.5f, -0.1f]);
        Assert.Contains("Bernoulli", Assert.Throws<ArgumentOutOfRangeException>(() => Tensor.Bernoulli(badProbs)).Message);
        using var intProbs = Tensor.FromArray([0L, 1L]);
        Assert.Contains("Bernoulli", Assert.Throws<ArgumentException>(() => Tensor.Bernoulli(intProbs)).Message);
        Assert.Contains("RandPerm", Assert.Throws<ArgumentOutOfRangeException>(() => Tensor.RandPerm(-1)).Message);

        using var w = Tensor.Zeros([3]).RequiresGrad_();
        Assert.Contains("Uniform_", Assert.Throws<InvalidOperationException>(() => w.Uniform_()).Message);
        Assert.Contains("Normal_", Assert.Throws<InvalidOperationException>(() => w.Normal_()).Message);
        using (Tensor.NoGrad()) w.Normal_(0, 1, new Generator(1));
        using var z = Tensor.Zeros([3]);
        Assert.Contains("Uniform_", Assert.Throws<ArgumentException>(() => z.Uniform_(1, 0)).Message);
        Assert.Contains("Normal_", Assert.Throws<ArgumentException>(() => z.Normal_(0, -1)).Message);
        using var zi = Tensor.Zeros([3], DType.Int32);
        Assert.Contains("Normal_", Assert.Throws<ArgumentException>(() => zi.Normal_()).Message);
    }

    // ------------------------------------------------------------------ helpers

    private static int CountEqual(Tensor a, Tensor b)
    {
        var x = a.To(DType.Float64).ToArray<double>();
        var y = b.To(DType.Float64).ToArray<double>();
        return x.Zip(y).Count(p => p.First == p.Second);
    }

    private static (double Mean, double Variance) Moments(double[] v)
    {
        double mean = v.Average();
        double variance = v.Sum(e => (e - mean) * (e - mean)) / v.Length;
        return (mean, variance);
    }

    /// <summary>Pearson chi-square statistic of values in 0..bins-1 against the uniform distribution.</summary>
    private static double ChiSquare(IEnumerable<long> values, int bins)
    {
        var counts = new long[bins];
        long n = 0;
        foreach (var v in values) { counts[v]++; n++; }
        double expected = n / (double)bins;
        return counts.Sum(c => (c - expected) * (c - expected) / expected);
    }
}
