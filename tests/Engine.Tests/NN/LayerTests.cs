using Engine.Tensors;
using Engine.Tensors.NN;

namespace Engine.Tests.NN;

public class LayerTests
{
    private static double[] Values(Tensor t) => t.To(DType.Float64).ToArray<double>();

    // ------------------------------------------------------------------ Linear

    [Theory]
    [InlineData(new long[] { 3, 5 }, 4, true)]
    [InlineData(new long[] { 2, 3, 7 }, 1, true)]
    [InlineData(new long[] { 5 }, 3, false)]
    [InlineData(new long[] { 0, 5 }, 3, true)]
    public void Linear_MatchesReference(long[] xs, int outF, bool bias)
    {
        var rng = new Random(TestUtil.StableSeed($"linear{xs.Length}{xs[^1]}{outF}{bias}"));
        long inF = xs[^1];
        using var lin = new Linear(inF, outF, bias, new Generator(1));
        var xv = TestUtil.RandomValues(rng, TestUtil.ShapeNumEl(xs));
        var wv = Values(lin.Weight);
        var bv = bias ? Values(lin.Bias!) : null;
        long rows = TestUtil.ShapeNumEl(xs) / inF;
        var expected = new double[rows * outF];
        for (long r = 0; r < rows; r++)
            for (long o = 0; o < outF; o++)
            {
                double acc = bv?[o] ?? 0;
                for (long i = 0; i < inF; i++) acc += xv[r * inF + i] * wv[o * inF + i];
                expected[r * outF + o] = acc;
            }
        using var x = TestUtil.FromDoubles(xv, xs);
        using var y = lin.Forward(x);
        Assert.Equal(xs[..^1].Append(outF).ToArray(), y.ShapeArray());
        TestUtil.AssertClose(expected, y, 1e-5, 1e-5, "linear");
    }

    [Fact]
    public void Linear_GradCheck_InputAndParameters()
    {
        var rng = new Random(11);
        using var lin = new Linear(4, 3, generator: new Generator(2));
        lin.To(DType.Float64);
        using var x = TestUtil.Random(rng, [2, 4], DType.Float64).RequiresGrad_();
        GradCheck.Check(t => lin.Forward(t[0]), [x, lin.Weight, lin.Bias!]);
        GradCheck.CheckSecondOrder(t => { using var y = lin.Forward(t[0]); return y.Mul(y); }, [x, lin.Weight, lin.Bias!]);
    }

    [Fact]
    public void Linear_And_Conv2d_DefaultInit_IsPyTorchsKaimingUniform_AndSeeded()
    {
        using var lin = new Linear(50, 40, generator: new Generator(5));
        double bound = 1 / Math.Sqrt(50);
        var w = Values(lin.Weight);
        Assert.All(w, v => Assert.InRange(v, -bound, bound));
        Assert.All(Values(lin.Bias!), v => Assert.InRange(v, -bound, bound));
        // U(−b, b) has standard deviation b/√3.
        double std = Math.Sqrt(w.Select(v => v * v).Average());
        Assert.InRange(std, 0.9 * bound / Math.Sqrt(3), 1.1 * bound / Math.Sqrt(3));

        using var same = new Linear(50, 40, generator: new Generator(5));
        Assert.Equal(w, Values(same.Weight));
        using var other = new Linear(50, 40, generator: new Generator(6));
        Assert.NotEqual(w, Values(other.Weight));

        using var conv = new Conv2d(6, 4, (3, 2), groups: 2, generator: new Generator(5));
        double cb = 1 / Math.Sqrt(3 * 3 * 2); // fan_in = in/groups·kH·kW
        var cw = Values(conv.Weight);
        Assert.All(cw, v => Assert.InRange(v, -cb, cb));
        Assert.Contains(cw, v => Math.Abs(v) > 0.8 * cb);
    }

    [Fact]
    public void Init_Functions_HaveTheDocumentedScale()
    {
        var g = new Generator(9);
        using var t = Tensor.Empty([256, 100, 3, 3]);
        Assert.Equal((900L, 2304L), Init.Fans(t));
        double Std() { var v = Values(t); double m = v.Average(); return Math.Sqrt(v.Select(x => (x - m) * (x - m)).Average()); }
        Init.KaimingNormal(t, generator: g);
        Assert.InRange(Std(), 0.97 * Math.Sqrt(2.0 / 900), 1.03 * Math.Sqrt(2.0 / 900));
        Init.KaimingNormal(t, mode: FanMode.FanOut, nonlinearity: "relu", generator: g);
        Assert.InRange(Std(), 0.97 * Math.Sqrt(2.0 / 2304), 1.03 * Math.Sqrt(2.0 / 2304));
        Init.KaimingUniform(t, generator: g);
        double kb = Math.Sqrt(2) * Math.Sqrt(3.0 / 900);
        Assert.All(Values(t), v => Assert.InRange(v, -kb, kb));
        Assert.InRange(Std(), 0.97 * kb / Math.Sqrt(3), 1.03 * kb / Math.Sqrt(3));
        Init.XavierUniform(t, generator: g);
        double xb = Math.Sqrt(6.0 / (900 + 2304));
        Assert.All(Values(t), v => Assert.InRange(v, -xb, xb));
        Init.XavierNormal(t, gain: 2, generator: g);
        Assert.InRange(Std(), 0.97 * 2 * Math.Sqrt(2.0 / 3204), 1.03 * 2 * Math.Sqrt(2.0 / 3204));
        Init.Zeros(t);
        Assert.All(Values(t), v => Assert.Equal(0, v));
        Init.Ones(t);
        Assert.All(Values(t), v => Assert.Equal(1, v));
        using var p = Tensor.Zeros([3]).RequiresGrad_();
        Init.Ones(p); // works on parameters without recording
        Assert.True(p.IsLeaf);
        using var v1 = Tensor.Zeros([3]);
        Assert.Contains("2 dims", Assert.Throws<ArgumentException>(() => Init.XavierUniform(v1)).Message);
        Assert.Equal(Math.Sqrt(2.0 / (1 + 5)), Init.Gain("leaky_relu", Math.Sqrt(5)), 12);
    }

    // ------------------------------------------------------------------ Conv2d module

    [Fact]
    public void Conv2d_Module_MatchesReference_AndGradCheck()
    {
        var rng = new Random(21);
        using var conv = new Conv2d(4, 6, (3, 2), stride: (2, 1), padding: (1, 1), dilation: (1, 2), groups: 2, generator: new Generator(3));
        long[] xs = [3, 4, 7, 6];
        var xv = TestUtil.RandomValues(rng, TestUtil.ShapeNumEl(xs));
        var expected = NNReference.Conv2d(xv, xs, Values(conv.Weight), conv.Weight.ShapeArray(), Values(conv.Bias!), (2, 1), (1, 1), (1, 2), 2, out var outShape);
        using (var x = TestUtil.FromDoubles(xv, xs))
        using (var y = conv.Forward(x))
        {
            Assert.Equal(outShape, y.ShapeArray());
            TestUtil.AssertClose(expected, y, 1e-5, 1e-5, "Conv2d module");
        }
        conv.To(DType.Float64);
        using var xg = TestUtil.Random(rng, [1, 4, 5, 4], DType.Float64).RequiresGrad_();
        GradCheck.Check(t => conv.Forward(t[0]), [xg, conv.Weight, conv.Bias!]);
    }

    [Fact]
    public void Conv2d_ShapeError_NamesTheLayerAndShapes()
    {
        using var conv = new Conv2d(1, 32, 3, padding: 1);
        using var x = Tensor.Zeros([8, 3, 28, 28]);
        var e = Assert.Throws<ArgumentException>(() => conv.Forward(x));
        Assert.Contains("Conv2d(1, 32, kernel_size=(3, 3)", e.Message);
        Assert.Contains("[N, 1, H, W]", e.Message);
        Assert.Contains("[8, 3, 28, 28]", e.Message);
        using var x64 = Tensor.Zeros([1, 1, 5, 5], DType.Float64);
        Assert.Contains("float64", Assert.Throws<ArgumentException>(() => conv.Forward(x64)).Message);
        using var small = Tensor.Zeros([1, 1, 1, 1]);
        using var big = new Conv2d(1, 1, 5);
        Assert.Contains("smaller than", Assert.Throws<ArgumentException>(() => big.Forward(small)).Message);
        Assert.Contains("groups", Assert.Throws<ArgumentException>(() => new Conv2d(3, 4, 3, groups: 2)).Message);
        using var lin = new Linear(4, 3);
        using var bad = Tensor.Zeros([2, 5]);
        var el = Assert.Throws<ArgumentException>(() => lin.Forward(bad));
        Assert.Contains("Linear(in_features=4, out_features=3", el.Message);
        Assert.Contains("[2, 5]", el.Message);
    }

    // ------------------------------------------------------------------ BatchNorm2d

    /// <summary>Per-channel mean and biased variance of [N, C, H, W] values.</summary>
    private static (double[] Mean, double[] Var) ChannelStats(double[] x, long[] s)
    {
        long n = s[0], c = s[1], hw = s[2] * s[3];
        var mean = new double[c];
        var var = new double[c];
        for (long ch = 0; ch < c; ch++)
        {
            double sum = 0;
            for (long b = 0; b < n; b++) for (long i = 0; i < hw; i++) sum += x[(b * c + ch) * hw + i];
            mean[ch] = sum / (n * hw);
            double sq = 0;
            for (long b = 0; b < n; b++) for (long i = 0; i < hw; i++) sq += Math.Pow(x[(b * c + ch) * hw + i] - mean[ch], 2);
            var[ch] = sq / (n * hw);
        }
        return (mean, var);
    }

    private static double[] Normalize(double[] x, long[] s, double[] mean, double[] var, double[] w, double[] b, double eps)
    {
        long c = s[1], hw = s[2] * s[3];
        var y = new double[x.Length];
        for (long i = 0; i < x.Length; i++)
        {
            long ch = i / hw % c;
            y[i] = (x[i] - mean[ch]) / Math.Sqrt(var[ch] + eps) * w[ch] + b[ch];
        }
        return y;
    }

    [Fact]
    public void BatchNorm2d_Train_UsesBatchStats_AndUpdatesRunningStats_Eval_UsesRunningStats()
    {
        var rng = new Random(31);
        long[] s = [3, 4, 5, 3];
        using var bn = new BatchNorm2d(4);
        using (Tensor.NoGrad())
        {
            bn.Weight!.CopyFrom_(Tensor.FromArray([0.5f, 1.5f, -1f, 2f]));
            bn.Bias!.CopyFrom_(Tensor.FromArray([0.1f, -0.2f, 0.3f, 0f]));
        }
        double[] w = [0.5, 1.5, -1, 2], b = [0.1, -0.2, 0.3, 0];
        double[] rm = [0, 0, 0, 0], rv = [1, 1, 1, 1];
        long n = 3 * 5 * 3;
        for (int step = 0; step < 2; step++)
        {
            var xv = TestUtil.RandomValues(rng, TestUtil.ShapeNumEl(s), -2, 3);
            var (mean, var) = ChannelStats(xv, s);
            using var x = TestUtil.FromDoubles(xv, s);
            using var y = bn.Forward(x);
            TestUtil.AssertClose(Normalize(xv, s, mean, var, w, b, 1e-5), y, 2e-5, 2e-5, "train forward");
            for (int ch = 0; ch < 4; ch++)
            {
                rm[ch] = 0.9 * rm[ch] + 0.1 * mean[ch];
                rv[ch] = 0.9 * rv[ch] + 0.1 * var[ch] * n / (n - 1); // unbiased, as PyTorch
            }
            TestUtil.AssertClose(rm, bn.RunningMean!, 1e-6, 1e-5, "running_mean");
            TestUtil.AssertClose(rv, bn.RunningVar!, 1e-6, 1e-5, "running_var");
            Assert.Equal(step + 1, bn.NumBatchesTracked!.Item<long>());
        }
        bn.Eval();
        var ev = TestUtil.RandomValues(rng, TestUtil.ShapeNumEl(s));
        using (var x = TestUtil.FromDoubles(ev, s))
        using (var y = bn.Forward(x))
            TestUtil.AssertClose(Normalize(ev, s, rm, rv, w, b, 1e-5), y, 1e-5, 1e-5, "eval forward");
        Assert.Equal(2L, bn.NumBatchesTracked!.Item<long>()); // eval does not update
        TestUtil.AssertClose(rm, bn.RunningMean!, 1e-6, 1e-5, "running_mean unchanged in eval");
    }

    [Fact]
    public void BatchNorm2d_MomentumNull_IsCumulativeAverage_AndNoTracking_AlwaysUsesBatchStats()
    {
        var rng = new Random(32);
        long[] s = [2, 2, 3, 3];
        using var bn = new BatchNorm2d(2, momentum: null, affine: false);
        var means = new List<double[]>();
        for (int step = 0; step < 3; step++)
        {
            var xv = TestUtil.RandomValues(rng, TestUtil.ShapeNumEl(s));
            means.Add(ChannelStats(xv, s).Mean);
            using var x = TestUtil.FromDoubles(xv, s);
            bn.Forward(x).Dispose();
        }
        TestUtil.AssertClose([means.Average(m => m[0]), means.Average(m => m[1])], bn.RunningMean!, 1e-6, 1e-5, "cumulative mean");
        Assert.Empty(bn.Parameters());

        using var untracked = new BatchNorm2d(2, trackRunningStats: false);
        Assert.Empty(untracked.Buffers());
        untracked.Eval();
        var v = TestUtil.RandomValues(rng, TestUtil.ShapeNumEl(s));
        var (mean, var) = ChannelStats(v, s);
        using var xe = TestUtil.FromDoubles(v, s);
        using var ye = untracked.Forward(xe);
        TestUtil.AssertClose(Normalize(v, s, mean, var, [1, 1], [0, 0], 1e-5), ye, 1e-5, 1e-5, "untracked eval uses batch stats");
    }

    [Fact]
    public void BatchNorm2d_GradCheck_TrainAndEval()
    {
        var rng = new Random(33);
        using var bn = new BatchNorm2d(3);
        bn.To(DType.Float64);
        using (Tensor.NoGrad())
        {
            bn.Weight!.CopyFrom_(Tensor.FromArray([0.7, -1.2, 1.9]));
            bn.Bias!.CopyFrom_(Tensor.FromArray([0.3, 0.1, -0.4]));
            bn.RunningMean!.CopyFrom_(Tensor.FromArray([0.2, -0.1, 0.5]));
            bn.RunningVar!.CopyFrom_(Tensor.FromArray([1.5, 0.7, 2.0]));
        }
        using var x = TestUtil.Random(rng, [2, 3, 3, 2], DType.Float64).RequiresGrad_();
        GradCheck.Check(t => bn.Forward(t[0]), [x, bn.Weight!, bn.Bias!], atol: 1e-5);
        bn.Eval();
        GradCheck.Check(t => bn.Forward(t[0]), [x, bn.Weight!, bn.Bias!]);
        bn.Train();
        GradCheck.CheckSecondOrder(t => bn.Forward(t[0]), [x, bn.Weight!], atol: 1e-4);
    }

    [Fact]
    public void BatchNorm2d_Errors()
    {
        using var bn = new BatchNorm2d(4);
        using var wrong = Tensor.Zeros([2, 3, 4, 4]);
        var e = Assert.Throws<ArgumentException>(() => bn.Forward(wrong));
        Assert.Contains("BatchNorm2d(4", e.Message);
        Assert.Contains("[2, 3, 4, 4]", e.Message);
        using var single = Tensor.Zeros([1, 4, 1, 1]);
        Assert.Contains("more than 1 value per channel", Assert.Throws<ArgumentException>(() => bn.Forward(single)).Message);
        bn.Eval();
        bn.Forward(single).Dispose(); // fine in eval
    }

    // ------------------------------------------------------------------ LayerNorm

    [Theory]
    [InlineData(new long[] { 3, 5 }, new long[] { 5 })]
    [InlineData(new long[] { 2, 3, 4 }, new long[] { 3, 4 })]
    [InlineData(new long[] { 4, 1 }, new long[] { 1 })]
    public void LayerNorm_MatchesReference_AndGradCheck(long[] xs, long[] ns)
    {
        var rng = new Random(TestUtil.StableSeed($"ln{xs.Length}{ns.Length}{xs[^1]}"));
        using var ln = new LayerNorm(ns, eps: 1e-5);
        long group = TestUtil.ShapeNumEl(ns);
        var wv = TestUtil.RandomValues(rng, group);
        var bv = TestUtil.RandomValues(rng, group);
        using (Tensor.NoGrad())
        {
            using var wt = TestUtil.FromDoubles(wv, ns);
            using var bt = TestUtil.FromDoubles(bv, ns);
            ln.Weight!.CopyFrom_(wt);
            ln.Bias!.CopyFrom_(bt);
        }
        var xv = TestUtil.RandomValues(rng, TestUtil.ShapeNumEl(xs), -3, 2);
        var expected = new double[xv.Length];
        for (long r = 0; r < xv.Length / group; r++)
        {
            var row = xv.Skip((int)(r * group)).Take((int)group).ToArray();
            double m = row.Average(), v = row.Select(a => (a - m) * (a - m)).Average();
            for (long i = 0; i < group; i++) expected[r * group + i] = (row[i] - m) / Math.Sqrt(v + 1e-5) * wv[i] + bv[i];
        }
        using (var x = TestUtil.FromDoubles(xv, xs))
        using (var y = ln.Forward(x))
            TestUtil.AssertClose(expected, y, 2e-5, 2e-5, "layer_norm");
        ln.To(DType.Float64);
        using var xg = TestUtil.Random(rng, xs, DType.Float64).RequiresGrad_();
        GradCheck.Check(t => ln.Forward(t[0]), [xg, ln.Weight!, ln.Bias!], atol: 1e-5);
        using var wrong = Tensor.Zeros([2, 7]);
        var e = Assert.Throws<ArgumentException>(() => ln.Forward(wrong));
        Assert.Contains("LayerNorm(", e.Message);
        Assert.Contains("[2, 7]", e.Message);
    }

    // ------------------------------------------------------------------ Dropout

    [Fact]
    public void Dropout_MaskIsDeterminedBySeed_ScaledByOneOverKeep_IdentityInEval()
    {
        using var x = Tensor.Ones([64, 64]);
        using var d1 = new Dropout(0.3, new Generator(42));
        using var d2 = new Dropout(0.3, new Generator(42));
        using var d3 = new Dropout(0.3, new Generator(43));
        using var y1 = d1.Forward(x);
        using var y2 = d2.Forward(x);
        using var y3 = d3.Forward(x);
        var v1 = Values(y1);
        Assert.Equal(v1, Values(y2));
        Assert.NotEqual(v1, Values(y3));
        Assert.All(v1, v => Assert.True(v == 0 || Math.Abs(v - 1 / 0.7) < 1e-6, $"value {v}"));
        double zeros = v1.Count(v => v == 0) / (double)v1.Length;
        Assert.InRange(zeros, 0.27, 0.33);
        using var y1b = d1.Forward(x);
        Assert.NotEqual(v1, Values(y1b)); // the generator advances: a new mask per call

        d1.Eval();
        using var xr = TestUtil.Random(new Random(1), [5, 7]);
        using var ye = d1.Forward(xr);
        Assert.NotSame(xr, ye);
        Assert.Equal(xr.ToArray<float>(), ye.ToArray<float>());

        using var all = new Dropout(1.0);
        using var z = all.Forward(xr);
        Assert.All(Values(z), v => Assert.Equal(0, v));
        Assert.Throws<ArgumentOutOfRangeException>(() => new Dropout(1.5));
    }

    [Fact]
    public void Dropout_GradientIsTheScaledMask_AndGradCheck()
    {
        var gen = new Generator(7);
        using var d = new Dropout(0.5, gen);
        using var x = TestUtil.Random(new Random(2), [4, 6], DType.Float64).RequiresGrad_();
        var state = gen.GetState();
        using (var y = d.Forward(x))
        using (var s = y.Sum())
        {
            s.Backward();
            var mask = Values(y).Zip(x.ToArray<double>(), (a, b) => a / b).ToArray();
            TestUtil.AssertClose(mask, x.Grad!, 1e-12, 1e-9, "dropout gradient");
        }
        GradCheck.Check(t => { gen.SetState(state); return d.Forward(t[0]); }, [x]);
    }

    // ------------------------------------------------------------------ activations, flatten, pools, sequential

    [Fact]
    public void Activations_Flatten_Pools_MatchTheirOps_AndGradCheck()
    {
        var rng = new Random(51);
        using var x = TestUtil.Random(rng, [2, 3, 6, 5], DType.Float64, -2, 2).RequiresGrad_();
        var xv = x.ToArray<double>();
        using (var relu = new ReLU())
        using (var y = relu.Forward(x))
        {
            TestUtil.AssertClose(xv.Select(v => Math.Max(v, 0)).ToArray(), y, 0, 0, "relu");
            GradCheck.Check(t => relu.Forward(t[0]), [x]); // uniform values: none within eps of the kink
        }
        using (var gelu = new GELU())
        using (var y = gelu.Forward(x))
        {
            // x·Φ(x) with Φ from erfc, evaluated independently of the op via the integral identity Φ(x) = ½·erfc(−x/√2).
            var expected = xv.Select(v => v * 0.5 * (1 + Erf(v / Math.Sqrt(2)))).ToArray();
            TestUtil.AssertClose(expected, y, 1e-7, 1e-7, "gelu");
            GradCheck.Check(t => gelu.Forward(t[0]), [x]);
        }
        using (var gt = new GELU("tanh"))
            GradCheck.Check(t => gt.Forward(t[0]), [x]);
        using (var flat = new Flatten())
        using (var y = flat.Forward(x))
        {
            Assert.Equal(new long[] { 2, 90 }, y.ShapeArray());
            Assert.Equal(xv, y.ToArray<double>());
            GradCheck.Check(t => flat.Forward(t[0]), [x]);
        }
        using (var flat = new Flatten(0, 2))
        using (var y = flat.Forward(x))
            Assert.Equal(new long[] { 36, 5 }, y.ShapeArray());
        using (var mp = new MaxPool2d(2))
        using (var y = mp.Forward(x))
        using (var r = x.MaxPool2d((2, 2)))
        {
            Assert.Equal(new long[] { 2, 3, 3, 2 }, y.ShapeArray());
            Assert.Equal(r.ToArray<double>(), y.ToArray<double>());
            GradCheck.Check(t => mp.Forward(t[0]), [x]);
        }
        using (var ap = new AvgPool2d(3, stride: 2, padding: 1))
            GradCheck.Check(t => ap.Forward(t[0]), [x]);
        using (var aap = new AdaptiveAvgPool2d((4, 3)))
        using (var y = aap.Forward(x))
        {
            Assert.Equal(new long[] { 2, 3, 4, 3 }, y.ShapeArray());
            GradCheck.Check(t => aap.Forward(t[0]), [x]);
        }
        using var two = Tensor.Zeros([3, 4]);
        using var pool = new MaxPool2d(2);
        Assert.Contains("MaxPool2d(kernel_size=2", Assert.Throws<ArgumentException>(() => pool.Forward(two)).Message);
    }

    /// <summary>erf by its Maclaurin series (|x| ≤ 2 here; 60 terms reach double precision).</summary>
    private static double Erf(double x)
    {
        double sum = 0, term = x;
        for (int n = 0; n < 60; n++)
        {
            sum += term / (2 * n + 1);
            term *= -x * x / (n + 1);
        }
        return 2 / Math.Sqrt(Math.PI) * sum;
    }

    [Fact]
    public void Sequential_ChainsIndexesAndNames()
    {
        var g = new Generator(3);
        using var seq = new Sequential(new Linear(4, 8, generator: g), new ReLU(), new Linear(8, 2, generator: g));
        Assert.Equal(3, seq.Count);
        Assert.IsType<ReLU>(seq[1]);
        Assert.IsType<Linear>(seq[-1]);
        Assert.Equal(["0.weight", "0.bias", "2.weight", "2.bias"], seq.NamedParameters().Select(p => p.Name));
        using var x = TestUtil.Random(new Random(4), [5, 4]);
        using var y = seq.Forward(x);
        using var h1 = seq[0].Forward(x);
        using var h2 = h1.Relu();
        using var expected = seq[2].Forward(h2);
        Assert.Equal(expected.ToArray<float>(), y.ToArray<float>());
        using var s = y.Sum();
        s.Backward();
        Assert.All(seq.Parameters(), p => Assert.NotNull(p.Grad));
        Assert.False(x.IsDisposed);
        Assert.Throws<ArgumentOutOfRangeException>(() => seq[3]);
        using var seq64 = new Sequential(new Conv2d(2, 3, 3, padding: 1, generator: g), new BatchNorm2d(3), new GELU(), new MaxPool2d(2), new Flatten(), new Linear(12, 2, generator: g));
        seq64.To(DType.Float64);
        using var xg = TestUtil.Random(new Random(5), [2, 2, 4, 4], DType.Float64).RequiresGrad_();
        GradCheck.Check(t => seq64.Forward(t[0]), [xg, .. seq64.Parameters()], atol: 1e-5);
        using var empty = new Sequential();
        using var same = empty.Forward(x);
        Assert.Equal(x.ToArray<float>(), same.ToArray<float>());
    }
}
