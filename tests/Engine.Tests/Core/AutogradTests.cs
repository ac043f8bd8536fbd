using Engine.Tensors;

namespace Engine.Tests.Core;

public class AutogradTests
{
    [Fact]
    public void Backward_AccumulatesIntoLeafGrad()
    {
        using var x = Tensor.FromArray([1.0, 2.0, 3.0]).RequiresGrad_();
        using var y = (x * x).Sum();
        y.Backward();
        TestUtil.AssertClose([2, 4, 6], x.Grad!);
        using var z = (x * 3.0).Sum();
        z.Backward();
        TestUtil.AssertClose([5, 7, 9], x.Grad!);
    }

    [Fact]
    public void Backward_TwiceWithoutRetainGraph_Throws()
    {
        using var x = Tensor.FromArray([1.0, 2.0]).RequiresGrad_();
        var y = (x * x).Sum();
        y.Backward();
        var ex = Assert.Throws<InvalidOperationException>(() => y.Backward());
        Assert.Contains("retainGraph", ex.Message);
    }

    [Fact]
    public void Backward_RetainGraph_AllowsSecondPass()
    {
        using var x = Tensor.FromArray([1.0, 2.0]).RequiresGrad_();
        var y = (x * x).Sum();
        y.Backward(retainGraph: true);
        y.Backward();
        TestUtil.AssertClose([4, 8], x.Grad!);
    }

    [Fact]
    public void Backward_NonScalarWithoutGradient_Throws()
    {
        using var x = Tensor.FromArray([1.0, 2.0]).RequiresGrad_();
        var y = x * 2.0;
        var ex = Assert.Throws<InvalidOperationException>(() => y.Backward());
        Assert.Contains("[2]", ex.Message);
    }

    [Fact]
    public void NoGrad_RecordsNothing()
    {
        using var x = Tensor.FromArray([1.0f]).RequiresGrad_();
        using (Tensor.NoGrad())
        {
            using var y = x * 2.0;
            Assert.False(y.RequiresGrad);
            Assert.Null(y.GradFn);
        }
        using var z = x * 2.0;
        Assert.True(z.RequiresGrad);
    }

    [Fact]
    public void Detach_CutsTheGraph()
    {
        using var x = Tensor.FromArray([2.0]).RequiresGrad_();
        using var y = (x * x).Detach() * x;
        y.Sum().Backward();
        TestUtil.AssertClose([4], x.Grad!);
    }

    [Fact]
    public void DeepGraph_DoesNotOverflowTheStack()
    {
        using var scope = Tensor.NewDisposeScope();
        var x = Tensor.FromArray([1.0]).RequiresGrad_();
        var y = x;
        for (int i = 0; i < 100_000; i++) y = y + 1e-6;
        y.Sum().Backward();
        TestUtil.AssertClose([1], x.Grad!);
    }

    [Fact]
    public void Grad_ReturnsGradientsWithoutTouchingDotGrad()
    {
        using var x = Tensor.FromArray([3.0]).RequiresGrad_();
        using var y = x * x * x;
        var g = Autograd.Grad(y.Sum(), x, createGraph: true);
        TestUtil.AssertClose([27], g);
        Assert.Null(x.Grad);
        var g2 = Autograd.Grad(g.Sum(), x);
        TestUtil.AssertClose([18], g2);
    }

    [Fact]
    public void Grad_UnusedInput_ThrowsUnlessAllowed()
    {
        using var x = Tensor.FromArray([1.0]).RequiresGrad_();
        using var u = Tensor.FromArray([1.0]).RequiresGrad_();
        using var y = (x * 2.0).Sum();
        Assert.Throws<InvalidOperationException>(() => Autograd.Grad([y], [x, u], retainGraph: true));
        var g = Autograd.Grad([y], [x, u], allowUnused: true);
        Assert.Null(g[1]);
    }

    [Fact]
    public void DisposeScope_DisposesTemporariesButNotParameterGrads()
    {
        using var w = Tensor.FromArray([1.0f, 2.0f]).RequiresGrad_();
        Tensor kept;
        Tensor temp;
        using (Tensor.NewDisposeScope())
        {
            temp = w * 2.0;
            kept = (temp + 1.0).MoveToOuterDisposeScope();
            temp.Sum().Backward();
        }
        Assert.True(temp.IsDisposed);
        Assert.False(kept.IsDisposed);
        Assert.False(w.Grad!.IsDisposed);
        TestUtil.AssertClose([2, 2], w.Grad!);
        var ex = Assert.Throws<ObjectDisposedException>(() => temp.ToArray<float>());
        Assert.Contains("disposed", ex.Message);
        kept.Dispose();
    }

    [Fact]
    public void InPlace_OnTensorRequiringGrad_Throws()
    {
        using var x = Tensor.FromArray([1.0]).RequiresGrad_();
        var ex = Assert.Throws<InvalidOperationException>(() => x.Fill_(2));
        Assert.Contains("Fill_", ex.Message);
        using (Tensor.NoGrad()) x.Fill_(2);
        Assert.Equal(2.0, x.Item<double>());
    }

    [Fact]
    public void GradCheck_DetectsAWrongGradient()
    {
        using var x = Tensor.FromArray([0.3, -0.7]).RequiresGrad_();
        GradCheck.Check(i => i[0] * i[0], [x]);
        // d/dx of x*detach(x) is detach(x), not 2x: gradcheck must notice the missing term.
        Assert.Throws<GradCheckException>(() => GradCheck.Check(i => i[0] * i[0].Detach(), [x]));
    }
}
