using Engine.Tensors;

namespace Engine.Tests.Ops;

/// <summary>
/// One-input elementwise ops against float64 references written here with plain loops: every
/// shape of <see cref="TestUtil.Shapes"/>, contiguous and not, float32 and float64; then gradients
/// (first and second order), integer dtypes, and IEEE edge cases.
/// </summary>
public class ElementwiseTests
{
    /// <summary>An op, its reference, the input range it is tested on, and the float64 tolerance.</summary>
    private sealed record UnaryCase(Func<Tensor, Tensor> Op, Func<double, double> Reference, double Lo, double Hi, double Rtol64 = 1e-12);

    private static readonly Dictionary<string, UnaryCase> Cases = new()
    {
        ["abs"] = new(x => x.Abs(), Math.Abs, -3, 3),
        ["sign"] = new(x => x.Sign(), v => Math.Sign(v), -3, 3),
        ["exp"] = new(x => x.Exp(), Math.Exp, -5, 5),
        ["log"] = new(x => x.Log(), Math.Log, 0.01, 10),
        ["log1p"] = new(x => x.Log1p(), v => Math.Log(1 + v), -0.9, 5),
        ["sqrt"] = new(x => x.Sqrt(), Math.Sqrt, 0, 10),
        ["rsqrt"] = new(x => x.Rsqrt(), v => 1 / Math.Sqrt(v), 0.01, 10),
        ["relu"] = new(x => x.Relu(), v => v > 0 ? v : 0, -3, 3),
        ["sigmoid"] = new(x => x.Sigmoid(), v => 1 / (1 + Math.Exp(-v)), -8, 8),
        ["tanh"] = new(x => x.Tanh(), Math.Tanh, -4, 4),
        ["silu"] = new(x => x.Silu(), v => v / (1 + Math.Exp(-v)), -8, 8),
        ["gelu"] = new(x => x.Gelu(), v => 0.5 * v * (1 + ErfReference(v / Math.Sqrt(2))), -3, 3, 1e-10),
        ["gelu_tanh"] = new(x => x.Gelu("tanh"), v => 0.5 * v * (1 + Math.Tanh(Math.Sqrt(2 / Math.PI) * (v + 0.044715 * v * v * v))), -4, 4),
        ["erf"] = new(x => x.Erf(), ErfReference, -3, 3, 1e-10),
        ["sin"] = new(x => x.Sin(), Math.Sin, -4, 4),
        ["cos"] = new(x => x.Cos(), Math.Cos, -4, 4),
    };

    public static TheoryData<string> CaseNames => new(Cases.Keys);

    /// <summary>erf by its Maclaurin series 2/√π Σ (−1)ⁿ x^(2n+1) / (n!(2n+1)) — the definition; the engine
    /// uses it too below |x| = 1, and a Chebyshev fit of erfc beyond. For |x| ≤ 3 cancellation costs at
    /// most ~4 digits (terms peak near e^(x²)), hence the 1e-10 tolerance.</summary>
    private static double ErfReference(double x)
    {
        double sum = 0, term = x; // term = (−1)ⁿ x^(2n+1) / n!
        for (int n = 0; n < 200; n++)
        {
            sum += term / (2 * n + 1);
            term *= -x * x / (n + 1);
            if (Math.Abs(term) < 1e-20) break;
        }
        return 2 / Math.Sqrt(Math.PI) * sum;
    }

    [Theory]
    [MemberData(nameof(CaseNames))]
    public void Unary_MatchesFloat64Reference(string name)
    {
        var c = Cases[name];
        var rng = new Random(TestUtil.StableSeed(name));
        foreach (var dtype in new[] { DType.Float32, DType.Float64 })
            foreach (var shape in TestUtil.Shapes())
                foreach (bool strided in new[] { false, true })
                {
                    using var scope = Tensor.NewDisposeScope();
                    var values = TestUtil.RandomValues(rng, TestUtil.ShapeNumEl(shape), c.Lo, c.Hi);
                    var x = TestUtil.FromDoubles(values, shape, dtype);
                    if (strided) x = TestUtil.NonContiguous(x);
                    var y = c.Op(x);
                    Assert.Equal(dtype, y.DType);
                    Assert.Equal(shape, y.ShapeArray());
                    // The reference sees exactly the input the op saw (rounded to float32 where it is).
                    var expected = values.Select(v => c.Reference(dtype == DType.Float32 ? (float)v : v)).ToArray();
                    double rtol = dtype == DType.Float32 ? 2e-6 : c.Rtol64, atol = dtype == DType.Float32 ? 1e-6 : 1e-14;
                    TestUtil.AssertClose(expected, y, atol, rtol, $"{name} {dtype.Name()} {Fmt(shape)} strided={strided}");
                }
    }

    private static string Fmt(long[] shape) => "[" + string.Join(", ", shape) + "]";

    [Theory]
    [InlineData(DType.Int32)]
    [InlineData(DType.Int64)]
    public void AbsSignRelu_KeepIntegerDtypes(DType dtype)
    {
        using var scope = Tensor.NewDisposeScope();
        var rng = new Random(3);
        var values = Enumerable.Range(0, 35).Select(_ => (double)rng.Next(-50, 50)).ToArray();
        var x = TestUtil.NonContiguous(TestUtil.FromDoubles(values, [5, 7], dtype));
        foreach (var (name, op, reference) in new (string, Func<Tensor, Tensor>, Func<double, double>)[]
                 {
                     ("abs", t => t.Abs(), Math.Abs), ("sign", t => t.Sign(), v => Math.Sign(v)), ("relu", t => t.Relu(), v => Math.Max(v, 0)),
                 })
        {
            var y = op(x);
            Assert.Equal(dtype, y.DType);
            TestUtil.AssertClose(values.Select(reference).ToArray(), y, 0, 0, name);
        }
    }

    [Fact]
    public void Abs_OfIntMinValue_WrapsLikePyTorch()
    {
        using var x = Tensor.FromArray([int.MinValue, -3, 4]);
        using var y = x.Abs();
        Assert.Equal([int.MinValue, 3, 4], y.ToArray<int>());
    }

    [Fact]
    public void FloatFunctions_OfIntegers_GiveFloat32()
    {
        using var scope = Tensor.NewDisposeScope();
        var x = Tensor.FromArray([1, 2, 3, 4]);
        foreach (var op in new Func<Tensor, Tensor>[] { t => t.Exp(), t => t.Sqrt(), t => t.Sigmoid(), t => t.Gelu() })
            Assert.Equal(DType.Float32, op(x).DType);
        TestUtil.AssertClose([1, Math.Sqrt(2), Math.Sqrt(3), 2], x.Sqrt());
    }

    [Fact]
    public void BoolInput_ToNumericUnary_ThrowsNamingTheOp()
    {
        using var x = Tensor.FromArray([true, false]);
        var ex = Assert.Throws<ArgumentException>(() => x.Relu());
        Assert.Contains("relu", ex.Message);
        Assert.Contains("bool", ex.Message);
    }

    [Fact]
    public void Gelu_UnknownApproximation_Throws()
    {
        using var x = Tensor.FromArray([1.0]);
        var ex = Assert.Throws<ArgumentException>(() => x.Gelu("fast"));
        Assert.Contains("gelu", ex.Message);
        Assert.Contains("fast", ex.Message);
    }

    // ---------------------------------------------------------------- IEEE edge cases

    [Theory]
    [InlineData(DType.Float32)]
    [InlineData(DType.Float64)]
    public void OutOfDomain_GivesNaNOrInfinity_NotExceptions(DType dtype)
    {
        using var scope = Tensor.NewDisposeScope();
        foreach (bool strided in new[] { false, true }) // vector path and scalar path
        {
            var x = TestUtil.FromDoubles([-1, 0, -0.0, double.PositiveInfinity, double.NaN], [5], dtype);
            var y = TestUtil.FromDoubles([-2, -1, double.PositiveInfinity, double.NaN], [4], dtype);
            if (strided) { x = TestUtil.NonContiguous(x); y = TestUtil.NonContiguous(y); }
            TestUtil.AssertClose([double.NaN, double.NegativeInfinity, double.NegativeInfinity, double.PositiveInfinity, double.NaN], x.Log(), what: "log");
            TestUtil.AssertClose([double.NaN, 0, 0, double.PositiveInfinity, double.NaN], x.Sqrt(), what: "sqrt");
            TestUtil.AssertClose([double.NaN, double.PositiveInfinity, double.NegativeInfinity, 0, double.NaN], x.Rsqrt(), what: "rsqrt");
            TestUtil.AssertClose([double.NaN, double.NegativeInfinity, double.PositiveInfinity, double.NaN], y.Log1p(), what: "log1p");
            TestUtil.AssertClose([Math.Exp(-1), 1, 1, double.PositiveInfinity, double.NaN], x.Exp(), what: "exp");
            TestUtil.AssertClose([0, 0, double.PositiveInfinity, double.NaN], TestUtil.FromDoubles([double.NegativeInfinity, -1000, 1000, double.NaN], [4], dtype).Exp(), 0, 0, "exp overflow");
        }
    }

    [Theory]
    [InlineData(DType.Float32)]
    [InlineData(DType.Float64)]
    public void Relu_PropagatesNaN(DType dtype)
    {
        using var scope = Tensor.NewDisposeScope();
        var x = TestUtil.FromDoubles([double.NaN, -1, 2, double.NegativeInfinity], [4], dtype);
        TestUtil.AssertClose([double.NaN, 0, 2, 0], x.Relu(), 0, 0);
        TestUtil.AssertClose([double.NaN, 0, 2, 0], TestUtil.NonContiguous(x).Relu(), 0, 0, "strided");
    }

    [Theory]
    [InlineData(DType.Float32)]
    [InlineData(DType.Float64)]
    public void SigmoidSiluTanh_AreStableForLargeInputs(DType dtype)
    {
        using var scope = Tensor.NewDisposeScope();
        double[] v = [-1000, -100, -30, 30, 100, 1000, double.NegativeInfinity, double.PositiveInfinity];
        foreach (bool strided in new[] { false, true })
        {
            var x = TestUtil.FromDoubles(v, [v.Length], dtype);
            if (strided) x = TestUtil.NonContiguous(x);
            var s = x.Sigmoid().To(DType.Float64).ToArray<double>();
            var si = x.Silu().To(DType.Float64).ToArray<double>();
            var t = x.Tanh().To(DType.Float64).ToArray<double>();
            for (int i = 0; i < v.Length; i++)
            {
                double expectedSigmoid = 1 / (1 + Math.Exp(-v[i]));
                Assert.False(double.IsNaN(s[i]), $"sigmoid({v[i]}) is NaN");
                Assert.Equal(expectedSigmoid, s[i], 1e-6);
                Assert.Equal(Math.Tanh(v[i]), t[i], 1e-6);
                if (double.IsFinite(v[i]))
                {
                    Assert.False(double.IsNaN(si[i]), $"silu({v[i]}) is NaN");
                    Assert.Equal(v[i] * expectedSigmoid, si[i], 1e-6 * Math.Max(1, Math.Abs(v[i])));
                }
            }
        }
    }

    [Fact]
    public void Log1p_KeepsDigitsForTinyInputs()
    {
        double[] v = [1e-10, -3e-9, 1e-17, 2.5e-6];
        using var x = Tensor.FromArray(v);
        using var y = x.Log1p();
        // log1p(x) = x − x²/2 + x³/3 − … ; three terms are exact to double precision at these sizes.
        TestUtil.AssertClose(v.Select(a => a - a * a / 2 + a * a * a / 3).ToArray(), y, 0, 1e-15);
    }

    /// <summary>erfc(x), x ≥ 2, by its continued fraction e^(−x²)/√π · 1/(x + ½/(x + 1/(x + (3/2)/(x + …))))
    /// (modified Lentz) — independent of the engine's Chebyshev fit, accurate in the far tail.</summary>
    private static double ErfcContinuedFraction(double x)
    {
        double f = x, c = x, d = 0;
        for (int n = 1; n < 1000; n++)
        {
            double a = 0.5 * n;
            d = 1 / (x + a * d);
            c = x + a / c;
            double delta = c * d;
            f *= delta;
            if (Math.Abs(delta - 1) < 1e-16) break;
        }
        // e^(−x²) with x² = p + e exactly (FMA gives the rounding error e of p = x·x): rounding x² alone
        // would cost up to x²·2⁻⁵³ of relative accuracy, 3e-14 at x = 15.
        double p = x * x, err = Math.FusedMultiplyAdd(x, x, -p);
        return Math.Exp(-p) * (1 - err) / Math.Sqrt(Math.PI) / f;
    }

    [Fact]
    public void Gelu_NegativeTail_MatchesContinuedFraction()
    {
        // gelu(x) = ½·x·erfc(−x/√2) down to x = −37, where it is ~1e-300: relative accuracy, not just absolute.
        var v = Enumerable.Range(0, 400).Select(i => -3 - i * 0.085).ToArray();
        using var x = Tensor.FromArray(v);
        using var y = x.Gelu();
        // The reference takes erfc at the same rounded z = −x·(1/√2) as the engine: erfc(z) is ill-conditioned
        // there (an ulp of z moves it by 2z²·2⁻⁵³ ≈ 5e-14 relative at z = 15), which is not what this test checks.
        const double invSqrt2 = 0.70710678118654752440;
        TestUtil.AssertClose(v.Select(a => 0.5 * a * ErfcContinuedFraction(-a * invSqrt2)).ToArray(), y, 0, 1e-14);
    }

    [Fact]
    public void Erf_MatchesQuadrature()
    {
        // erf(x) = 2/√π ∫₀ˣ e^(−t²) dt by composite Simpson (4000 panels; error ~1e-15 here): independent of both series.
        var v = Enumerable.Range(0, 41).Select(i => -4 + i * 0.2 + 0.013).ToArray();
        using var x = Tensor.FromArray(v);
        using var y = x.Erf();
        var expected = v.Select(a =>
        {
            const int n = 4000;
            double h = a / n, sum = 1 + Math.Exp(-a * a);
            for (int k = 1; k < n; k++) sum += (k % 2 == 1 ? 4 : 2) * Math.Exp(-(k * h) * (k * h));
            return 2 / Math.Sqrt(Math.PI) * sum * h / 3;
        }).ToArray();
        TestUtil.AssertClose(expected, y, 1e-14, 1e-13);
    }

    [Fact]
    public void Gelu_Tail_IsAccurate()
    {
        // Reference values from CPython's math.erfc (correctly rounded libm):
        // 0.5·x·erfc(−x/√2) at x = −10 is −7.619853024160593e-23; erfc(5) = 1.5374597944280351e-12.
        using var x = Tensor.FromArray([-10.0]);
        using var gelu = x.Gelu();
        Assert.Equal(-7.619853024160593e-23, gelu.ToArray<double>()[0], 1e-35);
        using var erf = Tensor.FromArray([5.0, -3.0, 0.5]).Erf();
        TestUtil.AssertClose([1 - 1.5374597944280351e-12, 1 - 1.9999779095030015, 0.5204998778130465], erf, 0, 1e-15);
    }

    // ---------------------------------------------------------------- gradients

    /// <summary>Inputs in the op's domain, kept 0.2 away from the kinks of abs/relu.</summary>
    private static Tensor GradInput(string name, long[] shape, int seed)
    {
        var c = Cases[name];
        var rng = new Random(seed);
        var values = TestUtil.RandomValues(rng, TestUtil.ShapeNumEl(shape), c.Lo, c.Hi);
        if (name is "abs" or "relu" or "sign")
            values = values.Select(v => (v < 0 ? -1 : 1) * (0.2 + Math.Abs(v))).ToArray();
        if (name is "log" or "rsqrt" or "sqrt" or "log1p") values = values.Select(v => Math.Max(v, c.Lo + 0.2)).ToArray();
        if (name is "exp" or "sigmoid" or "silu") values = values.Select(v => v / 2).ToArray();
        return TestUtil.FromDoubles(values, shape, DType.Float64).RequiresGrad_();
    }

    [Theory]
    [MemberData(nameof(CaseNames))]
    public void Unary_GradCheck(string name)
    {
        using var x = GradInput(name, [2, 3], 11);
        GradCheck.Check(i => Cases[name].Op(i[0]), [x]);
        // A strided input gets the same gradient.
        using var xs = TestUtil.NonContiguous(x.Detach()).RequiresGrad_();
        GradCheck.Check(i => Cases[name].Op(i[0]), [xs]);
    }

    [Theory]
    [InlineData("exp")]
    [InlineData("log")]
    [InlineData("log1p")]
    [InlineData("sqrt")]
    [InlineData("rsqrt")]
    [InlineData("sigmoid")]
    [InlineData("tanh")]
    [InlineData("silu")]
    [InlineData("gelu")]
    [InlineData("gelu_tanh")]
    [InlineData("erf")]
    [InlineData("sin")]
    [InlineData("cos")]
    [InlineData("abs")]
    [InlineData("relu")]
    public void Unary_SecondOrder(string name)
    {
        using var x = GradInput(name, [3, 2], 12);
        GradCheck.CheckSecondOrder(i => Cases[name].Op(i[0]).Mul(Cases[name].Op(i[0])), [x]);
        GradCheck.CheckSecondOrder(i => Cases[name].Op(i[0]), [x]);
    }

    [Fact]
    public void Sign_HasZeroGradient()
    {
        using var x = Tensor.FromArray([-1.5, 2.0]).RequiresGrad_();
        using var y = x.Sign().Sum();
        y.Backward();
        TestUtil.AssertClose([0, 0], x.Grad!, 0, 0);
    }

    [Fact]
    public void Neg_InTheForwardPass_IsDifferentiable()
    {
        // Regression: neg used to record its node inside a NoGrad scope, which cut the graph.
        using var x = Tensor.FromArray([0.3, -1.2]).RequiresGrad_();
        GradCheck.Check(i => i[0].Neg().Exp(), [x]);
        GradCheck.CheckSecondOrder(i => i[0].Neg().Exp(), [x]);
    }

    [Fact]
    public void Sign_OfNaNAndSignedZero()
    {
        using var x = Tensor.FromArray([double.NaN, -0.0, 0.0, -7, 7]);
        using var y = x.Sign();
        var v = y.ToArray<double>();
        Assert.True(double.IsNaN(v[0]));
        Assert.Equal([0.0, 0.0, -1, 1], v.Skip(1));
    }

    [Fact]
    public void Relu_GradientAtZero_IsZero()
    {
        using var x = Tensor.FromArray([0.0, -1, 1]).RequiresGrad_();
        using var y = x.Relu().Sum();
        y.Backward();
        TestUtil.AssertClose([0, 0, 1], x.Grad!, 0, 0);
    }

    [Fact]
    public void Gradients_Float32_MatchFloat64()
    {
        // The float32 path records the same formulas: its gradient agrees with float64 to float32 precision.
        foreach (var name in Cases.Keys)
        {
            using var scope = Tensor.NewDisposeScope();
            var x64 = GradInput(name, [4, 5], 13);
            var x32 = x64.Detach().To(DType.Float32).RequiresGrad_();
            Cases[name].Op(x64).Sum().Backward();
            Cases[name].Op(x32).Sum().Backward();
            Assert.Equal(DType.Float32, x32.Grad!.DType);
            TestUtil.AssertClose(x64.Grad!.ToArray<double>(), x32.Grad!, 1e-5, 1e-5, name);
        }
    }
}
