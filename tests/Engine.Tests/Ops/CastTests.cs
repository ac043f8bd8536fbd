using Engine.Tensors;

namespace Engine.Tests.Ops;

/// <summary><c>To(DType)</c> for every pair of dtypes, against C#-cast references.</summary>
public class CastTests
{
    private static readonly DType[] All = [DType.Float32, DType.Float64, DType.Int32, DType.Int64, DType.Bool];

    public static TheoryData<DType, DType> Pairs()
    {
        var data = new TheoryData<DType, DType>();
        foreach (var from in All) foreach (var to in All) data.Add(from, to);
        return data;
    }

    /// <summary>Values representable in <paramref name="dtype"/>: fractions of both signs for floats, zeros included.</summary>
    private static double[] Source(DType dtype, Random rng, long n) => dtype switch
    {
        DType.Bool => Enumerable.Range(0, (int)n).Select(_ => (double)rng.Next(0, 2)).ToArray(),
        DType.Int32 or DType.Int64 => Enumerable.Range(0, (int)n).Select(i => i % 5 == 0 ? 0 : (double)rng.Next(-1000, 1000)).ToArray(),
        DType.Float32 => Enumerable.Range(0, (int)n).Select(i => i % 5 == 0 ? 0 : (double)(float)(rng.NextDouble() * 200 - 100)).ToArray(),
        _ => Enumerable.Range(0, (int)n).Select(i => i % 5 == 0 ? 0 : rng.NextDouble() * 200 - 100).ToArray(),
    };

    /// <summary>What the conversion should give: floats round (float64 → float32), float → int truncates
    /// toward zero (PyTorch and C# casts), anything → bool is "non-zero", bool → number is 0/1.</summary>
    private static double Convert(double v, DType to) => to switch
    {
        DType.Float32 => (float)v,
        DType.Float64 => v,
        DType.Int32 or DType.Int64 => Math.Truncate(v),
        _ => v != 0 ? 1 : 0,
    };

    [Theory]
    [MemberData(nameof(Pairs))]
    public void To_ConvertsEveryPair(DType from, DType to)
    {
        var rng = new Random((int)from * 10 + (int)to);
        foreach (var shape in TestUtil.Shapes())
            foreach (bool strided in new[] { false, true })
            {
                using var scope = Tensor.NewDisposeScope();
                var values = Source(from, rng, TestUtil.ShapeNumEl(shape));
                var x = TestUtil.FromDoubles(values, shape, from);
                if (strided) x = TestUtil.NonContiguous(x);
                var y = x.To(to);
                Assert.Equal(to, y.DType);
                Assert.Equal(shape, y.ShapeArray());
                TestUtil.AssertClose(values.Select(v => Convert(v, to)).ToArray(), y, 0, 0, $"{from.Name()} -> {to.Name()} strided={strided}");
            }
    }

    [Fact]
    public void FloatToInt_TruncatesTowardZero()
    {
        using var x = Tensor.FromArray([2.9, -2.9, 0.5, -0.5, 1e9]);
        using var i = x.To(DType.Int32);
        Assert.Equal([2, -2, 0, 0, 1_000_000_000], i.ToArray<int>());
        using var l = x.To(DType.Int64);
        Assert.Equal([2L, -2, 0, 0, 1_000_000_000], l.ToArray<long>());
    }

    [Fact]
    public void ToBool_IsNonZero_NaNIsTrue()
    {
        using var x = Tensor.FromArray([0.0f, -0.0f, 1e-30f, float.NaN, -3f]);
        using var b = x.To(DType.Bool);
        Assert.Equal([false, false, true, true, true], b.ToArray<bool>());
    }

    [Fact]
    public void Int64ToFloat_RoundsToNearest()
    {
        long big = (1L << 53) + 1;
        using var x = Tensor.FromArray([big, -big, (1L << 24) + 1]);
        using var d = x.To(DType.Float64);
        Assert.Equal([(double)big, (double)-big, (1 << 24) + 1], d.ToArray<double>());
        using var f = x.To(DType.Float32);
        Assert.Equal([(float)big, (float)-big, (float)((1 << 24) + 1)], f.ToArray<float>());
    }

    [Fact]
    public void FloatCast_IsDifferentiable_IntegerCastIsNot()
    {
        using var x = Tensor.FromArray([1.5, -2.0]).RequiresGrad_();
        using var y = x.To(DType.Float32).Mul(3.0).Sum();
        y.Backward();
        Assert.Equal(DType.Float64, x.Grad!.DType);
        TestUtil.AssertClose([3, 3], x.Grad!, 0, 0);
        using var i = x.To(DType.Int32);
        Assert.False(i.RequiresGrad);
        GradCheck.Check(t => t[0].To(DType.Float64).Tanh(), [x]);
    }
}
