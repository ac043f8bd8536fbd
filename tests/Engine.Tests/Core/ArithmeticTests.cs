using Engine.Tensors;

namespace Engine.Tests.Core;

public class ArithmeticTests
{
    public static IEnumerable<object[]> BroadcastPairs()
    {
        yield return [new long[] { 3, 5 }, new long[] { 3, 5 }];
        yield return [new long[] { 3, 1, 5 }, new long[] { 4, 5 }];
        yield return [new long[] { }, new long[] { 2, 3 }];
        yield return [new long[] { 7 }, new long[] { }];
        yield return [new long[] { 0, 3 }, new long[] { 1, 3 }];
        yield return [new long[] { 2, 1, 1 }, new long[] { 1, 3, 1 }];
        yield return [new long[] { 130, 1031 }, new long[] { 1031 }];
        yield return [new long[] { 257, 300 }, new long[] { 257, 1 }];
    }

    private static readonly Func<double, double, double>[] Refs = [(a, b) => a + b, (a, b) => a - b, (a, b) => a * b, (a, b) => a / b];
    private static readonly Func<Tensor, Tensor, Tensor>[] Ops = [(a, b) => a + b, (a, b) => a - b, (a, b) => a * b, (a, b) => a / b];

    [Theory]
    [MemberData(nameof(BroadcastPairs))]
    public void Arithmetic_MatchesFloat64Reference(long[] shapeA, long[] shapeB)
    {
        var rng = new Random(shapeA.Length * 31 + shapeB.Length);
        var va = TestUtil.RandomValues(rng, TestUtil.ShapeNumEl(shapeA));
        var vb = TestUtil.RandomValues(rng, TestUtil.ShapeNumEl(shapeB), 0.5, 2); // away from 0 for division
        var outShape = TestUtil.BroadcastShape(shapeA, shapeB);
        long n = TestUtil.ShapeNumEl(outShape);
        foreach (var dtype in new[] { DType.Float32, DType.Float64 })
        foreach (bool strided in new[] { false, true })
        {
            using var a0 = TestUtil.FromDoubles(va, shapeA, dtype);
            using var b0 = TestUtil.FromDoubles(vb, shapeB, dtype);
            using var a = strided ? TestUtil.NonContiguous(a0) : a0.Alias();
            using var b = strided ? TestUtil.NonContiguous(b0) : b0.Alias();
            for (int k = 0; k < Ops.Length; k++)
            {
                var expected = new double[n];
                for (long i = 0; i < n; i++)
                {
                    var idx = TestUtil.Unravel(i, outShape);
                    expected[i] = Refs[k](TestUtil.BroadcastRead(va, shapeA, idx), TestUtil.BroadcastRead(vb, shapeB, idx));
                }
                using var y = Ops[k](a, b);
                Assert.Equal(outShape, y.ShapeArray());
                Assert.Equal(dtype, y.DType);
                double tol = dtype == DType.Float32 ? 1e-6 : 1e-13;
                TestUtil.AssertClose(expected, y, tol, tol, $"op {k} {dtype} strided={strided}");
            }
        }
    }

    [Fact]
    public void Arithmetic_Gradients_PassGradCheck_WithBroadcasting()
    {
        var rng = new Random(7);
        using var a = TestUtil.Random(rng, [3, 1, 4], DType.Float64).RequiresGrad_();
        using var b = TestUtil.Random(rng, [2, 4], DType.Float64, 0.5, 1.5).RequiresGrad_();
        GradCheck.Check(i => i[0] + i[1], [a, b]);
        GradCheck.Check(i => i[0] - i[1], [a, b]);
        GradCheck.Check(i => i[0] * i[1], [a, b]);
        GradCheck.Check(i => i[0] / i[1], [a, b]);
        GradCheck.Check(i => 2.0 - i[0] * 3.0 + 1.0 / i[1], [a, b]);
        GradCheck.CheckSecondOrder(i => i[0] * i[1] / i[1].Add(1.0), [a, b]);
    }

    [Fact]
    public void TypePromotion_FollowsPyTorch()
    {
        using var i32 = Tensor.FromArray([1, 2, 3]);
        using var i64 = Tensor.FromArray([1L, 2L, 3L]);
        using var f32 = Tensor.FromArray([0.5f, 0.5f, 0.5f]);
        using var f64 = Tensor.FromArray([0.5, 0.5, 0.5]);
        using (var r = i32 + i64) Assert.Equal(DType.Int64, r.DType);
        using (var r = i64 + f32) Assert.Equal(DType.Float32, r.DType);
        using (var r = f32 + f64) Assert.Equal(DType.Float64, r.DType);
        using (var r = i32 * 2.0) { Assert.Equal(DType.Int32, r.DType); Assert.Equal([2, 4, 6], r.ToArray<int>()); }
        using (var r = i32 * 0.5) { Assert.Equal(DType.Float32, r.DType); Assert.Equal([0.5f, 1f, 1.5f], r.ToArray<float>()); }
        using (var r = i32 / Tensor.FromArray([2, 2, 2])) Assert.Equal([0, 1, 1], r.ToArray<int>());
        using (var r = f32 * 3.0) Assert.Equal(DType.Float32, r.DType);
    }

    [Fact]
    public void BroadcastMismatch_NamesOpAndShapes()
    {
        using var a = Tensor.Zeros([2, 3]);
        using var b = Tensor.Zeros([4, 3]);
        var ex = Assert.Throws<ArgumentException>(() => a + b);
        Assert.Contains("add", ex.Message);
        Assert.Contains("[2, 3]", ex.Message);
        Assert.Contains("[4, 3]", ex.Message);
        using var t = Tensor.FromArray([true, false]);
        Assert.Contains("bool", Assert.Throws<ArgumentException>(() => t * t).Message);
    }

    [Fact]
    public void InPlaceCopy_IntoStridedView_WritesOnlyTheView()
    {
        using var x = Tensor.Zeros([4, 6]);
        using var src = Tensor.FromArray([1f, 2f, 3f]);
        using (var view = x.Slice(1, 1, 6, 2)) view.CopyFrom_(src);
        var v = x.ToArray<float>();
        for (int r = 0; r < 4; r++)
            Assert.Equal(new float[] { 0, 1, 0, 2, 0, 3 }, v.Skip(r * 6).Take(6));
    }
}
