using Engine.Tensors;

namespace Engine.Tests.Ops;

/// <summary>
/// pow, maximum, minimum, clamp and where against float64 references written here: broadcasting
/// pairs, strided inputs, empty and size-1 dims, float32/float64 and mixed dtypes; gradients
/// (with broadcasting), second order, integer semantics, NaN and tie rules, and errors.
/// </summary>
public class ElementwiseBinaryTests
{
    /// <summary>Shape pairs covering equal shapes, broadcasting both ways, 0-d, size-1, empty and large.</summary>
    public static IEnumerable<(long[] A, long[] B)> ShapePairs()
    {
        foreach (var s in TestUtil.Shapes()) yield return (s, s);
        yield return ([3, 1, 5], [4, 5]);
        yield return ([4, 5], [3, 1, 5]);
        yield return ([], [2, 3]);
        yield return ([2, 3], []);
        yield return ([1], [7]);
        yield return ([0, 3], [1, 3]);
        yield return ([2, 1, 4, 1], [3, 1, 5]);
        yield return ([130, 1031], [1031]);
        yield return ([130, 1], [1, 1031]);
    }

    private sealed record BinaryCase(Func<Tensor, Tensor, Tensor> Op, Func<double, double, double> Reference,
        double LoA, double HiA, double LoB, double HiB);

    private static readonly Dictionary<string, BinaryCase> Cases = new()
    {
        ["pow"] = new((a, b) => a.Pow(b), Math.Pow, 0.1, 3, -2.5, 2.5),
        ["maximum"] = new((a, b) => a.Maximum(b), Math.Max, -2, 2, -2, 2),
        ["minimum"] = new((a, b) => a.Minimum(b), Math.Min, -2, 2, -2, 2),
    };

    public static TheoryData<string> CaseNames => new(Cases.Keys);

    private static double[] Reference(double[] a, long[] sa, double[] b, long[] sb, Func<double, double, double> f)
    {
        var shape = TestUtil.BroadcastShape(sa, sb);
        var result = new double[TestUtil.ShapeNumEl(shape)];
        for (long i = 0; i < result.Length; i++)
        {
            var idx = TestUtil.Unravel(i, shape);
            result[i] = f(TestUtil.BroadcastRead(a, sa, idx), TestUtil.BroadcastRead(b, sb, idx));
        }
        return result;
    }

    private static double Round(double v, DType dtype) => dtype == DType.Float32 ? (float)v : v;

    [Theory]
    [MemberData(nameof(CaseNames))]
    public void Binary_MatchesFloat64Reference(string name)
    {
        var c = Cases[name];
        var rng = new Random(name.Length * 7919);
        foreach (var dtype in new[] { DType.Float32, DType.Float64 })
            foreach (var (sa, sb) in ShapePairs())
                foreach (bool strided in new[] { false, true })
                {
                    using var scope = Tensor.NewDisposeScope();
                    var va = TestUtil.RandomValues(rng, TestUtil.ShapeNumEl(sa), c.LoA, c.HiA).Select(v => Round(v, dtype)).ToArray();
                    var vb = TestUtil.RandomValues(rng, TestUtil.ShapeNumEl(sb), c.LoB, c.HiB).Select(v => Round(v, dtype)).ToArray();
                    // Some exact ties, so maximum/minimum see them.
                    if (va.Length == vb.Length) for (int i = 0; i < va.Length; i += 3) vb[i] = va[i];
                    var a = TestUtil.FromDoubles(va, sa, dtype);
                    var b = TestUtil.FromDoubles(vb, sb, dtype);
                    if (strided) { a = TestUtil.NonContiguous(a); b = TestUtil.NonContiguous(b); }
                    var y = c.Op(a, b);
                    Assert.Equal(dtype, y.DType);
                    Assert.Equal(TestUtil.BroadcastShape(sa, sb), y.ShapeArray());
                    double tol = dtype == DType.Float32 ? 2e-6 : 1e-13;
                    TestUtil.AssertClose(Reference(va, sa, vb, sb, c.Reference), y, tol, tol, $"{name} {dtype.Name()} [{string.Join(",", sa)}]x[{string.Join(",", sb)}] strided={strided}");
                }
    }

    [Theory]
    [InlineData(DType.Float32, DType.Float64, DType.Float64)]
    [InlineData(DType.Int32, DType.Float32, DType.Float32)]
    [InlineData(DType.Int64, DType.Int32, DType.Int64)]
    [InlineData(DType.Int32, DType.Int32, DType.Int32)]
    public void Binary_PromotesDtypes(DType da, DType db, DType expected)
    {
        using var scope = Tensor.NewDisposeScope();
        var rng = new Random(5);
        var va = Enumerable.Range(0, 12).Select(_ => (double)rng.Next(-4, 5)).ToArray();
        var vb = Enumerable.Range(0, 4).Select(_ => (double)rng.Next(0, 4)).ToArray();
        var a = TestUtil.FromDoubles(va, [3, 4], da);
        var b = TestUtil.FromDoubles(vb, [4], db);
        foreach (var (name, c) in Cases)
        {
            var y = c.Op(a, b);
            Assert.Equal(expected, y.DType);
            TestUtil.AssertClose(Reference(va, [3, 4], vb, [4], c.Reference), y, 1e-6, 1e-6, name);
        }
    }

    [Theory]
    [InlineData(DType.Int32)]
    [InlineData(DType.Int64)]
    public void Pow_Integers_AreExact_AndNegativeExponentsFollowPyTorch(DType dtype)
    {
        using var scope = Tensor.NewDisposeScope();
        var rng = new Random(8);
        var va = Enumerable.Range(0, 40).Select(_ => (double)rng.Next(-6, 7)).ToArray();
        var vb = Enumerable.Range(0, 40).Select(_ => (double)rng.Next(-3, 9)).ToArray();
        var a = TestUtil.FromDoubles(va, [5, 8], dtype);
        var b = TestUtil.NonContiguous(TestUtil.FromDoubles(vb, [5, 8], dtype));
        var y = a.Pow(b);
        Assert.Equal(dtype, y.DType);
        // Negative exponent: 1 for base 1, ±1 for base −1, else 0 (integer division of 1 by a^|b|).
        var expected = va.Zip(vb, (x, e) => e >= 0 ? Math.Pow(x, e) : x == 1 ? 1 : x == -1 ? (e % 2 == 0 ? 1 : -1) : 0).ToArray();
        TestUtil.AssertClose(expected, y, 0, 0);
        Assert.Equal([1L << 62], Tensor.FromArray([2L]).Pow(62).ToArray<long>());
    }

    [Fact]
    public void Pow_Scalar_KeepsOrPromotesDtype()
    {
        using var scope = Tensor.NewDisposeScope();
        var i = Tensor.FromArray([1, 2, 3]);
        Assert.Equal(DType.Int32, i.Pow(2).DType);
        TestUtil.AssertClose([1, 4, 9], i.Pow(2), 0, 0);
        Assert.Equal(DType.Float32, i.Pow(0.5).DType);
        TestUtil.AssertClose([1, Math.Sqrt(2), Math.Sqrt(3)], i.Pow(0.5), 1e-6, 1e-6);
        var f = TestUtil.FromDoubles([-8, 0, 2, 4], [4], DType.Float64);
        TestUtil.AssertClose([double.NaN, 0, Math.Pow(2, 1 / 3.0), Math.Pow(4, 1 / 3.0)], f.Pow(1 / 3.0), 0, 1e-15);
        TestUtil.AssertClose([-1 / 8.0, double.PositiveInfinity, 0.5, 0.25], f.Pow(-1), 0, 1e-15);
    }

    [Theory]
    [InlineData(DType.Float32)]
    [InlineData(DType.Float64)]
    public void MaximumMinimum_PropagateNaN(DType dtype)
    {
        using var scope = Tensor.NewDisposeScope();
        var a = TestUtil.FromDoubles([double.NaN, 1, 2, double.NaN, 5, 6, 7, 8, 9, 10], [10], dtype);
        var b = TestUtil.FromDoubles([0, double.NaN, 3, double.NaN, 0, 0, 0, 0, 0, 0], [10], dtype);
        var nanMask = new[] { true, true, false, true, false, false, false, false, false, false };
        foreach (var y in new[] { a.Maximum(b), a.Minimum(b), b.Maximum(a), TestUtil.NonContiguous(a).Minimum(TestUtil.NonContiguous(b)) })
        {
            var v = y.To(DType.Float64).ToArray<double>();
            for (int i = 0; i < v.Length; i++) Assert.Equal(nanMask[i], double.IsNaN(v[i]));
        }
        var s = a.Maximum(double.NaN).To(DType.Float64).ToArray<double>();
        Assert.All(s, v => Assert.True(double.IsNaN(v)));
    }

    [Fact]
    public void MaximumMinimum_ScalarOverloads()
    {
        using var scope = Tensor.NewDisposeScope();
        var x = TestUtil.FromDoubles([-1.5, 0.25, 3], [3], DType.Float32);
        TestUtil.AssertClose([0, 0.25, 3], x.Maximum(0));
        TestUtil.AssertClose([-1.5, 0.25, 1], x.Minimum(1));
        var i = Tensor.FromArray([-3, 4]);
        Assert.Equal(DType.Int32, i.Maximum(0).DType);
        Assert.Equal(DType.Float32, i.Maximum(0.5).DType);
    }

    // ---------------------------------------------------------------- gradients

    public static TheoryData<string, long[], long[]> GradShapes()
    {
        var data = new TheoryData<string, long[], long[]>();
        foreach (var name in Cases.Keys)
        {
            data.Add(name, [2, 3], [2, 3]);
            data.Add(name, [3, 1, 2], [4, 2]);
            data.Add(name, [], [2, 3]);
            data.Add(name, [2, 3], [1]);
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(GradShapes))]
    public void Binary_GradCheck_WithBroadcasting(string name, long[] sa, long[] sb)
    {
        var c = Cases[name];
        var rng = new Random(21);
        var va = TestUtil.RandomValues(rng, TestUtil.ShapeNumEl(sa), c.LoA, c.HiA);
        var vb = TestUtil.RandomValues(rng, TestUtil.ShapeNumEl(sb), c.LoB, c.HiB);
        if (name != "pow")
        {
            // Keep max/min away from ties (a kink): shift b so |a − b| > 0.1 everywhere.
            var shape = TestUtil.BroadcastShape(sa, sb);
            for (int attempt = 0; attempt < 100; attempt++)
            {
                bool ok = true;
                for (long i = 0; i < TestUtil.ShapeNumEl(shape); i++)
                {
                    var idx = TestUtil.Unravel(i, shape);
                    ok &= Math.Abs(TestUtil.BroadcastRead(va, sa, idx) - TestUtil.BroadcastRead(vb, sb, idx)) > 0.1;
                }
                if (ok) break;
                vb = TestUtil.RandomValues(rng, vb.Length, c.LoB, c.HiB);
            }
        }
        using var a = TestUtil.FromDoubles(va, sa, DType.Float64).RequiresGrad_();
        using var b = TestUtil.FromDoubles(vb, sb, DType.Float64).RequiresGrad_();
        GradCheck.Check(i => c.Op(i[0], i[1]), [a, b]);
        using var bConst = TestUtil.FromDoubles(vb, sb, DType.Float64);
        GradCheck.Check(i => c.Op(i[0], i[1]), [a, bConst]);
    }

    [Fact]
    public void Pow_SecondOrder()
    {
        var rng = new Random(4);
        using var a = TestUtil.Random(rng, [2, 3], DType.Float64, 0.5, 2).RequiresGrad_();
        using var b = TestUtil.Random(rng, [3], DType.Float64, -1.5, 2.5).RequiresGrad_();
        GradCheck.CheckSecondOrder(i => i[0].Pow(i[1]), [a, b]);
        GradCheck.CheckSecondOrder(i => i[0].Pow(2.5), [a]);
        GradCheck.CheckSecondOrder(i => i[0].Pow(-1.5).Mul(i[0].Pow(3)), [a]);
    }

    [Fact]
    public void Pow_ScalarExponent_GradCheck()
    {
        var rng = new Random(6);
        using var a = TestUtil.Random(rng, [3, 2], DType.Float64, 0.3, 2).RequiresGrad_();
        foreach (var e in new[] { 0.0, 1, 2, 3, -1, 0.5, -2.5 })
            GradCheck.Check(i => i[0].Pow(e), [a]);
        using var neg = TestUtil.Random(rng, [4], DType.Float64, -2, -0.3).RequiresGrad_();
        GradCheck.Check(i => i[0].Pow(3), [neg]);
    }

    [Fact]
    public void Pow_ExponentGradient_AtZeroBase_IsZeroNotNaN()
    {
        using var a = Tensor.FromArray([0.0, 0.0, 2.0]).RequiresGrad_();
        using var b = Tensor.FromArray([2.0, 0.0, 3.0]).RequiresGrad_();
        using var y = a.Pow(b).Sum();
        y.Backward();
        TestUtil.AssertClose([0, 0, 8 * Math.Log(2)], b.Grad!, 1e-15, 1e-15);
        TestUtil.AssertClose([0, 0, 12], a.Grad!, 1e-15, 1e-15);
    }

    [Fact]
    public void MaximumMinimum_Ties_SplitTheGradient()
    {
        using var a = Tensor.FromArray([1.0, 2.0, 3.0]).RequiresGrad_();
        using var b = Tensor.FromArray([1.0, 0.0, 5.0]).RequiresGrad_();
        a.Maximum(b).Sum().Backward();
        TestUtil.AssertClose([0.5, 1, 0], a.Grad!, 0, 0);
        TestUtil.AssertClose([0.5, 0, 1], b.Grad!, 0, 0);
        a.Grad = null;
        b.Grad = null;
        a.Minimum(b).Sum().Backward();
        TestUtil.AssertClose([0.5, 0, 1], a.Grad!, 0, 0);
        TestUtil.AssertClose([0.5, 1, 0], b.Grad!, 0, 0);
    }

    // ---------------------------------------------------------------- clamp

    [Theory]
    [InlineData(DType.Float32)]
    [InlineData(DType.Float64)]
    public void Clamp_MatchesReference(DType dtype)
    {
        var rng = new Random(31);
        foreach (var shape in TestUtil.Shapes())
            foreach (bool strided in new[] { false, true })
                foreach (var (lo, hi) in new (double?, double?)[] { (-0.5, 0.5), (null, 0.25), (-0.25, null), (0.5, -0.5) })
                {
                    using var scope = Tensor.NewDisposeScope();
                    var v = TestUtil.RandomValues(rng, TestUtil.ShapeNumEl(shape)).Select(x => Round(x, dtype)).ToArray();
                    var x = TestUtil.FromDoubles(v, shape, dtype);
                    if (strided) x = TestUtil.NonContiguous(x);
                    var y = x.Clamp(lo, hi);
                    Assert.Equal(dtype, y.DType);
                    // PyTorch: min(max(x, lo), hi), so lo > hi gives hi everywhere.
                    var expected = v.Select(e => Math.Min(Math.Max(e, lo ?? double.NegativeInfinity), hi ?? double.PositiveInfinity))
                        .Select(e => Round(e, dtype)).ToArray();
                    TestUtil.AssertClose(expected, y, 0, 0, $"clamp({lo},{hi}) [{string.Join(",", shape)}] strided={strided}");
                }
    }

    [Fact]
    public void Clamp_IntegersAndNaN()
    {
        using var scope = Tensor.NewDisposeScope();
        var i = Tensor.FromArray([-5, 0, 7]);
        Assert.Equal(DType.Int32, i.Clamp(-2, 3).DType);
        TestUtil.AssertClose([-2, 0, 3], i.Clamp(-2, 3), 0, 0);
        Assert.Equal(DType.Float32, i.Clamp(-2.5, 3).DType);
        TestUtil.AssertClose([-2.5, 0, 3], i.Clamp(-2.5, 3), 0, 0);
        var f = Tensor.FromArray([double.NaN, 2.0]);
        TestUtil.AssertClose([double.NaN, 1], f.Clamp(0, 1), 0, 0);
        var ex = Assert.Throws<ArgumentException>(() => f.Clamp((double?)null, null));
        Assert.Contains("clamp", ex.Message);
    }

    [Fact]
    public void Clamp_GradCheck_AwayFromBounds_AndZeroOutside()
    {
        var rng = new Random(32);
        var v = TestUtil.RandomValues(rng, 12, -2, 2).Select(x => Math.Abs(Math.Abs(x) - 1) < 0.15 ? x * 1.5 : x).ToArray();
        using var x = TestUtil.FromDoubles(v, [3, 4], DType.Float64).RequiresGrad_();
        GradCheck.Check(i => i[0].Clamp(-1, 1), [x]);
        GradCheck.Check(i => i[0].Clamp(min: -1), [x]);
        GradCheck.Check(i => i[0].Clamp(max: 1), [x]);
        x.Clamp(-1, 1).Sum().Backward();
        TestUtil.AssertClose(v.Select(e => e >= -1 && e <= 1 ? 1.0 : 0.0).ToArray(), x.Grad!, 0, 0);
    }

    [Fact]
    public void Clamp_TensorBounds_BroadcastAndGetGradients()
    {
        using var scope = Tensor.NewDisposeScope();
        var rng = new Random(33);
        var vx = TestUtil.RandomValues(rng, 12, -2, 2);
        var vlo = new[] { -1.0, -0.5, 0.1, -1.7 };
        var vhi = new[] { 0.6, 1.3, 0.9 };
        var x = TestUtil.FromDoubles(vx, [3, 4], DType.Float64).RequiresGrad_();
        var lo = TestUtil.FromDoubles(vlo, [4], DType.Float64).RequiresGrad_();
        var hi = TestUtil.FromDoubles(vhi, [3, 1], DType.Float64).RequiresGrad_();
        var y = x.Clamp(lo, hi);
        var expected = new double[12];
        for (int r = 0; r < 3; r++) for (int c = 0; c < 4; c++) expected[r * 4 + c] = Math.Min(Math.Max(vx[r * 4 + c], vlo[c]), vhi[r]);
        TestUtil.AssertClose(expected, y, 0, 0);
        GradCheck.Check(i => i[0].Clamp(i[1], i[2]), [x, lo, hi]);
        GradCheck.Check(i => i[0].Clamp(i[1], null), [x, lo, hi]);
    }

    // ---------------------------------------------------------------- where

    public static IEnumerable<(long[] C, long[] A, long[] B)> WhereShapes()
    {
        foreach (var s in TestUtil.Shapes()) yield return (s, s, s);
        yield return ([3, 1, 5], [4, 5], []);
        yield return ([4, 1], [1, 5], [3, 4, 5]);
        yield return ([], [2, 3], [2, 3]);
        yield return ([2, 3], [], []);
        yield return ([0, 1], [1, 4], [4]);
        yield return ([130, 1031], [1031], [130, 1]);
    }

    [Theory]
    [InlineData(DType.Float32)]
    [InlineData(DType.Float64)]
    [InlineData(DType.Int64)]
    public void Where_MatchesReference(DType dtype)
    {
        var rng = new Random(41);
        foreach (var (sc, sa, sb) in WhereShapes())
            foreach (bool strided in new[] { false, true })
            {
                using var scope = Tensor.NewDisposeScope();
                var vc = TestUtil.RandomValues(rng, TestUtil.ShapeNumEl(sc)).Select(v => v > 0 ? 1.0 : 0.0).ToArray();
                var va = TestUtil.RandomValues(rng, TestUtil.ShapeNumEl(sa), -100, 100).Select(v => Math.Round(v)).ToArray();
                var vb = TestUtil.RandomValues(rng, TestUtil.ShapeNumEl(sb), -100, 100).Select(v => Math.Round(v)).ToArray();
                var c = TestUtil.FromDoubles(vc, sc, DType.Bool);
                var a = TestUtil.FromDoubles(va, sa, dtype);
                var b = TestUtil.FromDoubles(vb, sb, dtype);
                if (strided) { c = TestUtil.NonContiguous(c); a = TestUtil.NonContiguous(a); b = TestUtil.NonContiguous(b); }
                var y = Tensor.Where(c, a, b);
                Assert.Equal(dtype, y.DType);
                var shape = TestUtil.BroadcastShape(TestUtil.BroadcastShape(sc, sa), sb);
                Assert.Equal(shape, y.ShapeArray());
                var expected = new double[TestUtil.ShapeNumEl(shape)];
                for (long i = 0; i < expected.Length; i++)
                {
                    var idx = TestUtil.Unravel(i, shape);
                    expected[i] = TestUtil.BroadcastRead(vc, sc, idx) != 0 ? TestUtil.BroadcastRead(va, sa, idx) : TestUtil.BroadcastRead(vb, sb, idx);
                }
                TestUtil.AssertClose(expected, y, 0, 0, $"where [{string.Join(",", sc)}] [{string.Join(",", sa)}] [{string.Join(",", sb)}] strided={strided}");
            }
    }

    [Fact]
    public void Where_PromotesAndAcceptsNumbers()
    {
        using var scope = Tensor.NewDisposeScope();
        var c = Tensor.FromArray([true, false, true]);
        var i = Tensor.FromArray([1, 2, 3]);
        var f = Tensor.FromArray([0.5f, 1.5f, 2.5f]);
        var y = Tensor.Where(c, i, f);
        Assert.Equal(DType.Float32, y.DType);
        TestUtil.AssertClose([1, 1.5, 3], y, 0, 0);
        TestUtil.AssertClose([1, -1, 3], Tensor.Where(c, i, -1), 0, 0);
        TestUtil.AssertClose([7, 1.5, 7], Tensor.Where(c, 7, f), 0, 0);
        var bools = Tensor.Where(c, Tensor.FromArray([false, false, false]), Tensor.FromArray([true, true, true]));
        Assert.Equal(DType.Bool, bools.DType);
        Assert.Equal([false, true, false], bools.ToArray<bool>());
    }

    [Fact]
    public void Where_GradCheck_WithBroadcasting()
    {
        var rng = new Random(42);
        using var c = TestUtil.FromDoubles(TestUtil.RandomValues(rng, 8).Select(v => v > 0 ? 1.0 : 0.0).ToArray(), [2, 1, 4], DType.Bool);
        using var a = TestUtil.Random(rng, [3, 4], DType.Float64).RequiresGrad_();
        using var b = TestUtil.Random(rng, [1], DType.Float64).RequiresGrad_();
        GradCheck.Check(i => Tensor.Where(c, i[0], i[1]), [a, b]);
        GradCheck.CheckSecondOrder(i => Tensor.Where(c, i[0].Mul(i[0]), i[1].Exp()), [a, b]);
        using var scalarB = TestUtil.Random(rng, [], DType.Float64).RequiresGrad_();
        GradCheck.Check(i => Tensor.Where(c, i[0], i[1]), [a, scalarB]);
    }

    [Fact]
    public void Where_NonBoolCondition_Throws()
    {
        using var c = Tensor.FromArray([1.0f, 0.0f]);
        using var a = Tensor.FromArray([1.0f, 2.0f]);
        var ex = Assert.Throws<ArgumentException>(() => Tensor.Where(c, a, a));
        Assert.Contains("where", ex.Message);
        Assert.Contains("float32", ex.Message);
        Assert.Contains("bool", ex.Message);
    }

    [Fact]
    public void Where_ShapeMismatch_Throws()
    {
        using var c = Tensor.Zeros([2, 3], DType.Bool);
        using var a = Tensor.Zeros([4]);
        var ex = Assert.Throws<ArgumentException>(() => Tensor.Where(c, a, a));
        Assert.Contains("where", ex.Message);
        Assert.Contains("[2, 3]", ex.Message);
        Assert.Contains("[4]", ex.Message);
    }

    [Fact]
    public void Binary_ShapeMismatch_Throws()
    {
        using var a = Tensor.Zeros([2, 3]);
        using var b = Tensor.Zeros([4]);
        foreach (var (name, c) in Cases)
        {
            var ex = Assert.Throws<ArgumentException>(() => c.Op(a, b));
            Assert.Contains(name, ex.Message);
            Assert.Contains("[2, 3]", ex.Message);
            Assert.Contains("[4]", ex.Message);
        }
    }
}
