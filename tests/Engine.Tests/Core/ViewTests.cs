using Engine.Tensors;

namespace Engine.Tests.Core;

public class ViewTests
{
    private static Tensor Iota(params long[] shape)
        => TestUtil.FromDoubles(Enumerable.Range(0, (int)TestUtil.ShapeNumEl(shape)).Select(i => (double)i).ToArray(), shape, DType.Float64);

    [Fact]
    public void Views_ShareStorage()
    {
        using var x = Iota(2, 3);
        using var t = x.Transpose(0, 1);
        using (Tensor.NoGrad()) t.Narrow(0, 1, 1).Fill_(-1);
        Assert.Equal([0, -1, 2, 3, -1, 5], x.ToArray<double>());
    }

    [Fact]
    public void Permute_Narrow_Expand_MatchIndexArithmetic()
    {
        using var x = Iota(2, 3, 4);
        using var p = x.Permute(2, 0, 1);
        Assert.Equal([4, 2, 3], p.ShapeArray());
        var v = p.ToArray<double>();
        for (int a = 0; a < 4; a++) for (int b = 0; b < 2; b++) for (int c = 0; c < 3; c++)
            Assert.Equal(b * 12 + c * 4 + a, v[a * 6 + b * 3 + c]);
        using var n = x.Narrow(2, 1, 2);
        Assert.Equal([1, 2, 5, 6], n.ToArray<double>().Take(4));
        using var e = Iota(3, 1).Expand(2, 3, 4);
        Assert.Equal(Enumerable.Repeat(new double[] { 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2 }, 2).SelectMany(r => r), e.ToArray<double>());
        using var s = x.Slice(1, 0, 3, 2);
        Assert.Equal([2, 2, 4], s.ShapeArray());
        Assert.Equal([0, 1, 2, 3, 8, 9, 10, 11], s.ToArray<double>().Take(8));
    }

    [Fact]
    public void Reshape_OfNonContiguous_Copies_ViewThrows()
    {
        using var x = Iota(2, 3).T;
        Assert.False(x.IsContiguous);
        var ex = Assert.Throws<InvalidOperationException>(() => x.View(6));
        Assert.Contains("not contiguous", ex.Message);
        using var r = x.Reshape(-1);
        Assert.Equal([0, 3, 1, 4, 2, 5], r.ToArray<double>());
    }

    [Fact]
    public void SqueezeUnsqueezeFlatten()
    {
        using var x = Iota(1, 3, 1, 2);
        Assert.Equal([3, 2], x.Squeeze().ShapeArray());
        Assert.Equal([3, 1, 2], x.Squeeze(0).ShapeArray());
        Assert.Equal([1, 3, 1, 2, 1], x.Unsqueeze(-1).ShapeArray());
        Assert.Equal([1, 6], x.Flatten(1).ShapeArray());
    }

    [Fact]
    public void BadViewArguments_NameTheOp()
    {
        using var x = Iota(2, 3);
        Assert.Contains("Permute", Assert.Throws<ArgumentException>(() => x.Permute(0, 0)).Message);
        Assert.Contains("Narrow", Assert.Throws<ArgumentOutOfRangeException>(() => x.Narrow(1, 2, 2)).Message);
        Assert.Contains("Expand", Assert.Throws<ArgumentException>(() => x.Expand(4, 3)).Message);
        Assert.Contains("View", Assert.Throws<ArgumentException>(() => x.View(4, -1)).Message);
        Assert.Contains("dim 5", Assert.Throws<ArgumentOutOfRangeException>(() => x.Transpose(0, 5)).Message);
    }

    [Fact]
    public void ViewGradients_PassGradCheck()
    {
        var rng = new Random(3);
        using var x = TestUtil.Random(rng, [2, 3, 4], DType.Float64).RequiresGrad_();
        GradCheck.Check(i => i[0].Permute(1, 2, 0).Reshape(4, 6), [x]);
        GradCheck.Check(i => i[0].Narrow(2, 1, 2).Transpose(0, 1), [x]);
        GradCheck.Check(i => i[0].Slice(2, 0, 4, 3).Squeeze(), [x]);
        GradCheck.Check(i => i[0].Narrow(1, 1, 1).Expand(5, 2, 3, 4), [x]);
        GradCheck.Check(i => i[0].Select(0, 1).Unsqueeze(0), [x]);
        GradCheck.CheckSecondOrder(i => (i[0].Narrow(2, 1, 2) * i[0].Slice(2, 0, 4, 2)).Flatten(), [x]);
    }
}
