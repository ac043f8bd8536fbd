using Engine.Tensors;
using Engine.Tensors.Optim;

namespace Engine.Tests.Optim;

/// <summary>SGD, Adam and AdamW against float64 re-implementations of torch.optim's update rules.</summary>
public class OptimizerTests
{
    // ------------------------------------------------------------------ float64 references (torch formulas)

    private sealed class SgdRef(double lr, double momentum, double dampening, double wd, bool nesterov)
    {
        private double[]? _buf;

        public void Step(double[] p, double[] g)
        {
            var d = new double[p.Length];
            for (int i = 0; i < p.Length; i++) d[i] = g[i] + (wd != 0 ? wd * p[i] : 0);
            if (momentum != 0)
            {
                if (_buf is null) _buf = (double[])d.Clone();
                else for (int i = 0; i < p.Length; i++) _buf[i] = momentum * _buf[i] + (1 - dampening) * d[i];
                for (int i = 0; i < p.Length; i++) d[i] = nesterov ? d[i] + momentum * _buf[i] : _buf[i];
            }
            for (int i = 0; i < p.Length; i++) p[i] -= lr * d[i];
        }
    }

    private sealed class AdamRef(double lr, double b1, double b2, double eps, double wd, bool amsgrad, bool decoupled)
    {
        private double[]? _m, _v, _vmax;
        private int _t;

        public void Step(double[] p, double[] gIn)
        {
            _m ??= new double[p.Length];
            _v ??= new double[p.Length];
            _vmax ??= new double[p.Length];
            _t++;
            for (int i = 0; i < p.Length; i++)
            {
                double g = gIn[i];
                if (decoupled) p[i] *= 1 - lr * wd;
                else g += wd * p[i];
                _m[i] = b1 * _m[i] + (1 - b1) * g;
                _v[i] = b2 * _v[i] + (1 - b2) * g * g;
                double v = _v[i];
                if (amsgrad) v = _vmax[i] = Math.Max(_vmax[i], _v[i]);
                double bc1 = 1 - Math.Pow(b1, _t), bc2 = 1 - Math.Pow(b2, _t);
                double denom = Math.Sqrt(v) / Math.Sqrt(bc2) + eps;
                p[i] -= lr / bc1 * _m[i] / denom;
            }
        }
    }

    private static (double Atol, double Rtol) Tol(DType dtype) => dtype == DType.Float64 ? (1e-12, 1e-10) : (2e-5, 2e-5);

    /// <summary>Runs <paramref name="steps"/> steps of <paramref name="opt"/> and <paramref name="reference"/> on the same random gradients.</summary>
    private static void Compare(Func<Tensor[], Optimizer> make, Action<double[], double[]> reference, long[] shape, DType dtype, int steps, int seed, bool nonContiguous = false)
    {
        var rng = new Random(seed);
        var p0 = TestUtil.RandomValues(rng, TestUtil.ShapeNumEl(shape));
        using var pc = TestUtil.FromDoubles(p0, shape, dtype);
        using var p = nonContiguous ? TestUtil.NonContiguous(pc) : pc.Clone();
        using var opt = make([p]);
        var expected = (double[])p0.Clone();
        if (dtype == DType.Float32) for (int i = 0; i < expected.Length; i++) expected[i] = (float)expected[i];
        for (int s = 0; s < steps; s++)
        {
            var g = TestUtil.RandomValues(rng, expected.Length, -2, 2);
            if (dtype == DType.Float32) for (int i = 0; i < g.Length; i++) g[i] = (float)g[i];
            p.Grad = TestUtil.FromDoubles(g, shape, dtype);
            opt.Step();
            reference(expected, g);
            var (atol, rtol) = Tol(dtype);
            TestUtil.AssertClose(expected, p, atol, rtol, $"{opt.Name} step {s + 1}, {dtype.Name()}, shape {ShapeUtil.Format(shape)}");
        }
    }

    public static TheoryData<double, double, double, bool> SgdConfigs() => new()
    {
        { 0, 0, 0, false },
        { 0, 0, 0.05, false },
        { 0.9, 0, 0, false },
        { 0.9, 0.3, 0, false },
        { 0.9, 0, 0, true },
        { 0.8, 0, 0.01, true },
        { 0.5, 0.1, 0.02, false },
    };

    [Theory]
    [MemberData(nameof(SgdConfigs))]
    public void Sgd_MatchesTorchRule(double momentum, double dampening, double wd, bool nesterov)
    {
        foreach (var dtype in new[] { DType.Float32, DType.Float64 })
            foreach (var shape in new long[][] { [7], [3, 5], [] })
            {
                var r = new SgdRef(0.1, momentum, dampening, wd, nesterov);
                Compare(ps => new SGD(ps, 0.1, momentum, dampening, wd, nesterov), r.Step, shape, dtype, steps: 5, seed: 11);
            }
    }

    public static TheoryData<double, bool, bool> AdamConfigs() => new()
    {
        { 0, false, false },
        { 0.05, false, false },
        { 0, true, false },
        { 0.05, true, false },
        { 0.01, false, true },
        { 0.1, true, true },
    };

    [Theory]
    [MemberData(nameof(AdamConfigs))]
    public void AdamAndAdamW_MatchTorchRule(double wd, bool amsgrad, bool decoupled)
    {
        foreach (var dtype in new[] { DType.Float32, DType.Float64 })
            foreach (var shape in new long[][] { [9], [4, 3] })
            {
                var r = new AdamRef(0.01, 0.9, 0.99, 1e-8, wd, amsgrad, decoupled);
                Compare(ps => decoupled
                        ? new AdamW(ps, 0.01, 0.9, 0.99, 1e-8, wd, amsgrad)
                        : new Adam(ps, 0.01, 0.9, 0.99, 1e-8, wd, amsgrad),
                    r.Step, shape, dtype, steps: 6, seed: 12);
            }
    }

    [Fact]
    public void Adam_LargeEpsAndSmallGradients_PlaceEpsAfterBiasCorrection()
    {
        // With eps comparable to sqrt(v), eps inside vs outside the bias correction differ visibly.
        // (|g| ~ 1, so sqrt(v̂) ~ 1 and eps = 0.5 weighs as much as the moment itself.)
        var r = new AdamRef(0.1, 0.9, 0.999, 0.5, 0, false, false);
        Compare(ps => new Adam(ps, 0.1, 0.9, 0.999, 0.5), r.Step, [5], DType.Float64, steps: 3, seed: 3);
    }

    [Fact]
    public void Optimizers_NonContiguousAndLargeParameters()
    {
        var sgd = new SgdRef(0.05, 0.9, 0, 0.01, true);
        Compare(ps => new SGD(ps, 0.05, 0.9, 0, 0.01, true), sgd.Step, [6, 5], DType.Float32, steps: 3, seed: 4, nonContiguous: true);
        var adam = new AdamRef(0.01, 0.9, 0.999, 1e-8, 0.01, false, true);
        Compare(ps => new AdamW(ps, 0.01, weightDecay: 0.01), adam.Step, [6, 5], DType.Float64, steps: 3, seed: 5, nonContiguous: true);
        // Past the parallel threshold: the tiled path updates every element once.
        var big = new AdamRef(0.01, 0.9, 0.999, 1e-8, 0, true, false);
        Compare(ps => new Adam(ps, 0.01, amsgrad: true), big.Step, [70001], DType.Float32, steps: 2, seed: 6);
        var bigSgd = new SgdRef(0.1, 0.9, 0.1, 0, false);
        Compare(ps => new SGD(ps, 0.1, 0.9, 0.1), bigSgd.Step, [300, 257], DType.Float64, steps: 2, seed: 7);
    }

    [Fact]
    public void ParamGroups_UseTheirOwnOptions_AndSkipParametersWithoutGrad()
    {
        using var a = Tensor.FromArray([1.0, 2.0]);
        using var b = Tensor.FromArray([3.0]);
        using var c = Tensor.FromArray([5.0]);
        using var opt = new SGD([new ParamGroup([a]), new ParamGroup([b, c], learningRate: 0.5, weightDecay: 0.1)], learningRate: 0.1);
        Assert.Equal(0.1, opt.ParamGroups[0].LearningRate);
        Assert.Equal(0.0, opt.ParamGroups[0].WeightDecay);
        Assert.Equal(0.5, opt.ParamGroups[1].LearningRate);
        a.Grad = Tensor.FromArray([1.0, -1.0]);
        b.Grad = Tensor.FromArray([2.0]);
        opt.Step();
        TestUtil.AssertClose([0.9, 2.1], a, 1e-15, 0);
        TestUtil.AssertClose([3 - 0.5 * (2 + 0.1 * 3)], b, 1e-15, 0);
        TestUtil.AssertClose([5.0], c, 0, 0);
        using var state = new DisposableState(opt.StateDict());
        Assert.Equal(1, state.Dict.Scalars["state.0.step"]);
        Assert.False(state.Dict.Scalars.ContainsKey("state.2.step")); // c had no gradient: no state
    }

    [Fact]
    public void ZeroGrad_SetsToNoneOrZeros()
    {
        using var p = Tensor.FromArray([1.0, 2.0]);
        using var opt = new SGD([p], 0.1);
        p.Grad = Tensor.FromArray([1.0, 1.0]);
        opt.ZeroGrad(setToNone: false);
        TestUtil.AssertClose([0, 0], p.Grad!, 0, 0);
        opt.ZeroGrad();
        Assert.Null(p.Grad);
        opt.Step(); // no gradient: nothing happens
        TestUtil.AssertClose([1, 2], p, 0, 0);
    }

    [Fact]
    public void Step_WorksAfterBackward_AndInsideADisposeScope()
    {
        using var w = Tensor.FromArray([0.5, -1.5]).RequiresGrad_();
        using var opt = new Adam([w], 0.1);
        for (int i = 0; i < 3; i++)
        {
            using var scope = Tensor.NewDisposeScope();
            opt.ZeroGrad();
            var loss = (w * w).Sum();
            loss.Backward();
            opt.Step();
        }
        // The state survived the scopes: a fourth step still finds the moments.
        using var sd = new DisposableState(opt.StateDict());
        Assert.Equal(3, sd.Dict.Scalars["state.0.step"]);
        Assert.False(sd.Dict.Tensors["state.0.exp_avg"].IsDisposed);
        Assert.True(w.ToArray<double>().Zip(new[] { 0.5, -1.5 }).All(t => Math.Abs(t.First) < Math.Abs(t.Second)));
    }

    private sealed class DisposableState(OptimizerStateDict dict) : IDisposable
    {
        public OptimizerStateDict Dict { get; } = dict;

        public void Dispose()
        {
            foreach (var t in Dict.Tensors.Values) t.Dispose();
        }
    }

    [Theory]
    [InlineData("sgd")]
    [InlineData("adam")]
    [InlineData("adamw")]
    public void StateDict_RoundTrip_ContinuesIdentically(string kind)
    {
        Optimizer Make(Tensor[] ps) => kind switch
        {
            "sgd" => new SGD(ps, 0.1, momentum: 0.9, nesterov: true),
            "adam" => new Adam(ps, 0.01, amsgrad: true),
            _ => new AdamW(ps, 0.01),
        };
        var rng = new Random(8);
        using var p1 = TestUtil.Random(rng, [4, 3]);
        using var q1 = TestUtil.Random(rng, [5]);
        var grads = Enumerable.Range(0, 5).Select(_ => (TestUtil.RandomValues(rng, 12), TestUtil.RandomValues(rng, 5))).ToArray();
        using var opt1 = Make([p1, q1]);
        void Run(Optimizer opt, Tensor p, Tensor q, int from, int to)
        {
            for (int s = from; s < to; s++)
            {
                p.Grad = TestUtil.FromDoubles(grads[s].Item1, [4, 3]);
                q.Grad = TestUtil.FromDoubles(grads[s].Item2, [5]);
                opt.Step();
            }
        }
        Run(opt1, p1, q1, 0, 3);
        using var p2 = p1.Clone();
        using var q2 = q1.Clone();
        using var opt2 = Make([p2, q2]);
        using (var sd = new DisposableState(opt1.StateDict())) opt2.LoadStateDict(sd.Dict);
        Run(opt1, p1, q1, 3, 5);
        Run(opt2, p2, q2, 3, 5);
        Assert.Equal(p1.ToArray<float>(), p2.ToArray<float>());
        Assert.Equal(q1.ToArray<float>(), q2.ToArray<float>());
    }

    [Fact]
    public void StateDict_SurvivesASafeTensorsFile()
    {
        var rng = new Random(9);
        using var p1 = TestUtil.Random(rng, [3, 2]);
        using var opt1 = new AdamW([p1], 0.01);
        var sched = new CosineAnnealingLR(opt1, 10);
        var grads = Enumerable.Range(0, 4).Select(_ => TestUtil.RandomValues(rng, 6)).ToArray();
        for (int s = 0; s < 2; s++)
        {
            p1.Grad = TestUtil.FromDoubles(grads[s], [3, 2]);
            opt1.Step();
            sched.Step();
        }
        var dir = Path.Combine(Path.GetTempPath(), "engine-optim-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        try
        {
            var path = Path.Combine(dir, "opt.safetensors");
            using (var sd = new DisposableState(opt1.StateDict()))
            {
                var flat = sd.Dict.ToTensors();
                Engine.Tensors.Serialization.SafeTensors.Save(path, flat);
                foreach (var k in sd.Dict.Scalars.Keys) flat[k].Dispose();
            }
            using var p2 = p1.Clone();
            using var opt2 = new AdamW([p2], 0.5); // wrong lr on purpose: the state dict restores it
            var loaded = Engine.Tensors.Serialization.SafeTensors.Load(path);
            opt2.LoadStateDict(OptimizerStateDict.FromTensors(loaded));
            foreach (var t in loaded.Values) t.Dispose();
            Assert.Equal(opt1.ParamGroups[0].LearningRate, opt2.ParamGroups[0].LearningRate);
            Assert.Equal(0.01, opt2.ParamGroups[0].InitialLearningRate);
            for (int s = 2; s < 4; s++)
            {
                p1.Grad = TestUtil.FromDoubles(grads[s], [3, 2]);
                p2.Grad = TestUtil.FromDoubles(grads[s], [3, 2]);
                opt1.Step();
                opt2.Step();
            }
            Assert.Equal(p1.ToArray<float>(), p2.ToArray<float>());
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    [Fact]
    public void LoadStateDict_ListsEveryProblem()
    {
        using var p = Tensor.Zeros([3]);
        using var opt = new Adam([p]);
        var sd = new OptimizerStateDict();
        using var wrongShape = Tensor.Zeros([4]);
        using var wrongName = Tensor.Zeros([3]);
        sd.Tensors["state.0.exp_avg"] = wrongShape;
        sd.Tensors["state.0.velocity"] = wrongName;
        sd.Scalars["param_groups.3.lr"] = 0.1;
        var ex = Assert.Throws<ArgumentException>(() => opt.LoadStateDict(sd));
        Assert.Contains("3 problem", ex.Message);
        Assert.Contains("state.0.exp_avg", ex.Message);
        Assert.Contains("state.0.velocity", ex.Message);
        Assert.Contains("param_groups.3.lr", ex.Message);
    }

    [Fact]
    public void BadArguments_Throw()
    {
        using var p = Tensor.Zeros([2]);
        Assert.Contains("Nesterov", Assert.Throws<ArgumentException>(() => new SGD([p], 0.1, momentum: 0.9, dampening: 0.1, nesterov: true)).Message);
        Assert.Contains("Nesterov", Assert.Throws<ArgumentException>(() => new SGD([p], 0.1, nesterov: true)).Message);
        Assert.Contains("empty parameter list", Assert.Throws<ArgumentException>(() => new SGD(Array.Empty<Tensor>(), 0.1)).Message);
        Assert.Contains("more than once", Assert.Throws<ArgumentException>(() => new Adam([new ParamGroup([p]), new ParamGroup([p])])).Message);
        Assert.Contains("beta1", Assert.Throws<ArgumentOutOfRangeException>(() => new Adam([p], beta1: 1.0)).Message);
        Assert.Contains("learning rate", Assert.Throws<ArgumentOutOfRangeException>(() => new SGD([p], -0.1)).Message);
        using var i = Tensor.Zeros([2], DType.Int64);
        Assert.Contains("floating-point", Assert.Throws<ArgumentException>(() => new SGD([i], 0.1)).Message);
        using var leaf = Tensor.Zeros([2]).RequiresGrad_();
        using var nonLeaf = leaf * 2.0;
        Assert.Contains("non-leaf", Assert.Throws<ArgumentException>(() => new SGD([nonLeaf], 0.1)).Message);
    }
}
