using Engine.Tensors;

namespace Engine.Tests.Ops;

/// <summary>Comparisons and logical ops (bool results) against plain-loop references.</summary>
public class ComparisonTests
{
    private static readonly Dictionary<string, (Func<Tensor, Tensor, Tensor> Op, Func<Tensor, double, Tensor> Scalar, Func<double, double, bool> Reference)> Cases = new()
    {
        ["eq"] = ((a, b) => a.Eq(b), (a, v) => a.Eq(v), (x, y) => x == y),
        ["ne"] = ((a, b) => a.Ne(b), (a, v) => a.Ne(v), (x, y) => x != y),
        ["lt"] = ((a, b) => a.Lt(b), (a, v) => a.Lt(v), (x, y) => x < y),
        ["le"] = ((a, b) => a.Le(b), (a, v) => a.Le(v), (x, y) => x <= y),
        ["gt"] = ((a, b) => a.Gt(b), (a, v) => a.Gt(v), (x, y) => x > y),
        ["ge"] = ((a, b) => a.Ge(b), (a, v) => a.Ge(v), (x, y) => x >= y),
    };

    public static TheoryData<string> CaseNames => new(Cases.Keys);

    private static double[] Reference(double[] a, long[] sa, double[] b, long[] sb, Func<double, double, bool> f)
    {
        var shape = TestUtil.BroadcastShape(sa, sb);
        var result = new double[TestUtil.ShapeNumEl(shape)];
        for (long i = 0; i < result.Length; i++)
        {
            var idx = TestUtil.Unravel(i, shape);
            result[i] = f(TestUtil.BroadcastRead(a, sa, idx), TestUtil.BroadcastRead(b, sb, idx)) ? 1 : 0;
        }
        return result;
    }

    /// <summary>Small integers (as doubles), so equal values are frequent.</summary>
    private static double[] SmallInts(Random rng, long n) => Enumerable.Range(0, (int)n).Select(_ => (double)rng.Next(-2, 3)).ToArray();

    [Theory]
    [MemberData(nameof(CaseNames))]
    public void Compare_MatchesReference_AllDtypesAndShapes(string name)
    {
        var (op, _, reference) = Cases[name];
        var rng = new Random(name[0] * 31 + name[1]);
        foreach (var dtype in new[] { DType.Float32, DType.Float64, DType.Int32, DType.Int64 })
            foreach (var (sa, sb) in ElementwiseBinaryTests.ShapePairs())
                foreach (bool strided in new[] { false, true })
                {
                    // The parallel-path shapes once per kind (float, int) keep the test quick; small shapes see every dtype.
                    if (TestUtil.ShapeNumEl(TestUtil.BroadcastShape(sa, sb)) > 10_000 && dtype is DType.Float64 or DType.Int32) continue;
                    using var scope = Tensor.NewDisposeScope();
                    var va = SmallInts(rng, TestUtil.ShapeNumEl(sa));
                    var vb = SmallInts(rng, TestUtil.ShapeNumEl(sb));
                    var a = TestUtil.FromDoubles(va, sa, dtype);
                    var b = TestUtil.FromDoubles(vb, sb, dtype);
                    if (strided) { a = TestUtil.NonContiguous(a); b = TestUtil.NonContiguous(b); }
                    var y = op(a, b);
                    Assert.Equal(DType.Bool, y.DType);
                    Assert.Equal(TestUtil.BroadcastShape(sa, sb), y.ShapeArray());
                    TestUtil.AssertClose(Reference(va, sa, vb, sb, reference), y, 0, 0, $"{name} {dtype.Name()} strided={strided}");
                }
    }

    [Theory]
    [MemberData(nameof(CaseNames))]
    public void Compare_MixedDtypes_PromoteBeforeComparing(string name)
    {
        using var scope = Tensor.NewDisposeScope();
        var (op, scalar, reference) = Cases[name];
        // int 1 vs float 1.5: compared in float32 (not by truncating 1.5 to 1).
        double[] vi = [0, 1, 2, -1];
        double[] vf = [0, 1.5, 2, -0.5];
        var i = TestUtil.FromDoubles(vi, [4], DType.Int32);
        var f = TestUtil.FromDoubles(vf, [4], DType.Float32);
        TestUtil.AssertClose(vi.Zip(vf, (x, y) => reference(x, y) ? 1.0 : 0.0).ToArray(), op(i, f), 0, 0, "int32 vs float32");
        var l = TestUtil.FromDoubles(vi, [4], DType.Int64);
        var d = TestUtil.FromDoubles(vf, [4], DType.Float64);
        TestUtil.AssertClose(vi.Zip(vf, (x, y) => reference(x, y) ? 1.0 : 0.0).ToArray(), op(l, d), 0, 0, "int64 vs float64");
        // A fractional number against an integer tensor is compared as a float.
        TestUtil.AssertClose(vi.Select(x => reference(x, 0.5) ? 1.0 : 0.0).ToArray(), scalar(i, 0.5), 0, 0, "int32 vs 0.5");
        TestUtil.AssertClose(vf.Select(x => reference(x, 2) ? 1.0 : 0.0).ToArray(), scalar(TestUtil.NonContiguous(f), 2), 0, 0, "float32 vs 2");
        // Bools compare as 0/1.
        var t = Tensor.FromArray([true, false, true, false]);
        var u = Tensor.FromArray([true, true, false, false]);
        TestUtil.AssertClose(new[] { (1.0, 1.0), (0, 1), (1, 0), (0, 0) }.Select(p => reference(p.Item1, p.Item2) ? 1.0 : 0.0).ToArray(), op(t, u), 0, 0, "bool");
    }

    [Theory]
    [InlineData(DType.Float32)]
    [InlineData(DType.Float64)]
    public void Compare_NaN_IsUnorderedAndUnequal(DType dtype)
    {
        using var scope = Tensor.NewDisposeScope();
        var a = TestUtil.FromDoubles([double.NaN, double.NaN, 1, double.PositiveInfinity], [4], dtype);
        var b = TestUtil.FromDoubles([double.NaN, 1, double.NaN, double.PositiveInfinity], [4], dtype);
        foreach (var (name, (op, _, reference)) in Cases)
            TestUtil.AssertClose([reference(double.NaN, double.NaN) ? 1 : 0, reference(double.NaN, 1) ? 1 : 0, reference(1, double.NaN) ? 1 : 0, reference(double.PositiveInfinity, double.PositiveInfinity) ? 1 : 0],
                op(a, b), 0, 0, name);
        Assert.Equal([true, true, true, false], a.Ne(b).ToArray<bool>());
    }

    [Theory]
    [MemberData(nameof(CaseNames))]
    public void Compare_ShapeMismatch_MessageNamesOpAndShapes(string name)
    {
        using var a = Tensor.Zeros([2, 3]);
        using var b = Tensor.Zeros([4, 1, 2]);
        var ex = Assert.Throws<ArgumentException>(() => Cases[name].Op(a, b));
        Assert.Contains(name, ex.Message);
        Assert.Contains("[2, 3]", ex.Message);
        Assert.Contains("[4, 1, 2]", ex.Message);
    }

    [Fact]
    public void Compare_ResultsNeverRequireGrad()
    {
        using var x = Tensor.FromArray([1.0, 2.0]).RequiresGrad_();
        using var y = x.Gt(1.5);
        Assert.False(y.RequiresGrad);
        Assert.Null(y.GradFn);
    }

    // ---------------------------------------------------------------- logical ops

    [Fact]
    public void Logical_MatchReference_WithBroadcastingAndStrides()
    {
        var rng = new Random(77);
        var ops = new (string Name, Func<Tensor, Tensor, Tensor> Op, Func<bool, bool, bool> Reference)[]
        {
            ("and", (a, b) => a.LogicalAnd(b), (x, y) => x && y),
            ("or", (a, b) => a.LogicalOr(b), (x, y) => x || y),
            ("xor", (a, b) => a.LogicalXor(b), (x, y) => x ^ y),
        };
        foreach (var (sa, sb) in ElementwiseBinaryTests.ShapePairs())
            foreach (bool strided in new[] { false, true })
            {
                using var scope = Tensor.NewDisposeScope();
                var va = TestUtil.RandomValues(rng, TestUtil.ShapeNumEl(sa)).Select(v => v > 0 ? 1.0 : 0.0).ToArray();
                var vb = TestUtil.RandomValues(rng, TestUtil.ShapeNumEl(sb)).Select(v => v > 0 ? 1.0 : 0.0).ToArray();
                var a = TestUtil.FromDoubles(va, sa, DType.Bool);
                var b = TestUtil.FromDoubles(vb, sb, DType.Bool);
                if (strided) { a = TestUtil.NonContiguous(a); b = TestUtil.NonContiguous(b); }
                foreach (var (name, op, reference) in ops)
                {
                    var y = op(a, b);
                    Assert.Equal(DType.Bool, y.DType);
                    TestUtil.AssertClose(Reference(va, sa, vb, sb, (x, z) => reference(x != 0, z != 0)), y, 0, 0, name);
                }
                var n = a.LogicalNot();
                Assert.Equal(DType.Bool, n.DType);
                TestUtil.AssertClose(va.Select(v => v == 0 ? 1.0 : 0.0).ToArray(), n, 0, 0, "not");
            }
    }

    [Fact]
    public void Logical_NonBoolOperands_CountNonZeroAsTrue()
    {
        using var scope = Tensor.NewDisposeScope();
        var f = Tensor.FromArray([0.0f, -2.5f, 0.0f, float.NaN]);
        var i = Tensor.FromArray([3, 0, 0, 1]);
        Assert.Equal([false, false, false, true], f.LogicalAnd(i).ToArray<bool>());
        Assert.Equal([true, true, false, true], f.LogicalOr(i).ToArray<bool>());
        Assert.Equal([true, false, true, false], f.LogicalNot().ToArray<bool>());
    }

    [Fact]
    public void Logical_ShapeMismatch_Throws()
    {
        using var a = Tensor.Zeros([3], DType.Bool);
        using var b = Tensor.Zeros([2], DType.Bool);
        var ex = Assert.Throws<ArgumentException>(() => a.LogicalAnd(b));
        Assert.Contains("logical_and", ex.Message);
        Assert.Contains("[3]", ex.Message);
    }
}
