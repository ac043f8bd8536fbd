using Engine.Tensors;

namespace Engine.Tests.Core;

/// <summary>Higher-order gradients through a whole network, as dataset distillation needs them.</summary>
public class SecondOrderMlpTests
{
    private static Tensor Mlp(Tensor x, Tensor w1, Tensor b1, Tensor w2, Tensor b2)
        => x.MatMul(w1).Add(b1).Tanh().MatMul(w2).Add(b2);

    [Fact]
    public void TanhMlp_HessianVectorProduct_MatchesFiniteDifferences()
    {
        var rng = new Random(11);
        using var x = TestUtil.Random(rng, [5, 3], DType.Float64);
        using var y = TestUtil.Random(rng, [5, 2], DType.Float64);
        using var w1 = TestUtil.Random(rng, [3, 4], DType.Float64).RequiresGrad_();
        using var b1 = TestUtil.Random(rng, [4], DType.Float64).RequiresGrad_();
        using var w2 = TestUtil.Random(rng, [4, 2], DType.Float64).RequiresGrad_();
        using var b2 = TestUtil.Random(rng, [2], DType.Float64).RequiresGrad_();
        // Loss = mean squared error of the MLP: second derivatives flow through tanh, matmul,
        // broadcasting adds, pow and mean.
        GradCheck.Check(p => (Mlp(x, p[0], p[1], p[2], p[3]) - y).Pow(2).Mean(), [w1, b1, w2, b2]);
        GradCheck.CheckSecondOrder(p => (Mlp(x, p[0], p[1], p[2], p[3]) - y).Pow(2).Mean(), [w1, b1, w2, b2]);
    }

    [Fact]
    public void GradientOfGradientNorm_WrtInput_MatchesFiniteDifferences()
    {
        // d/dx ||d loss/d w||^2: the quantity gradient matching (dataset distillation) differentiates.
        var rng = new Random(12);
        using var x = TestUtil.Random(rng, [4, 3], DType.Float64).RequiresGrad_();
        using var w = TestUtil.Random(rng, [3, 2], DType.Float64).RequiresGrad_();
        double Objective(out Tensor? gradX)
        {
            using var loss = x.MatMul(w).Tanh().Pow(2).Sum();
            var gw = Autograd.Grad(loss, w, createGraph: true);
            using var norm = gw.Pow(2).Sum();
            gradX = Autograd.Grad(norm, x);
            return norm.ToDouble();
        }
        Objective(out var analytic);
        var a = analytic!.ToArray<double>();
        const double eps = 1e-6;
        for (long i = 0; i < x.NumEl; i++)
        {
            double orig = x.GetFlat(i);
            x.SetFlat(i, orig + eps);
            double plus = Objective(out _);
            x.SetFlat(i, orig - eps);
            double minus = Objective(out _);
            x.SetFlat(i, orig);
            double numeric = (plus - minus) / (2 * eps);
            Assert.True(Math.Abs(numeric - a[i]) <= 1e-6 + 1e-4 * Math.Abs(numeric), $"element {i}: analytic {a[i]}, numeric {numeric}");
        }
    }
}
