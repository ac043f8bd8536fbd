using Engine.Data;
using Engine.Tensors;
using Engine.Tensors.NN;

namespace Engine.Distillation.Methods;

/// <summary>The accuracies of one model on clean and on attacked test images.</summary>
/// <param name="Clean">Accuracy on the clean images.</param>
/// <param name="Fgsm">Accuracy on FGSM images.</param>
/// <param name="Pgd">Accuracy on PGD images.</param>
/// <param name="Images">Number of test images.</param>
public sealed record RobustnessResult(double Clean, double Fgsm, double Pgd, int Images);

/// <summary>
/// L∞ adversarial attacks on image classifiers, for the robustness evaluation of defensive
/// distillation. Images are in pixel space [0, 1] (what the data loader gives before normalization);
/// the model sees <c>(x − mean) / std</c>; adversarial images are clipped to the ε-ball around the
/// original and to [0, 1]. The attacked loss is the cross-entropy of the logits at T = 1 (the
/// deployed model), and its input gradient comes from autograd (<c>x.RequiresGrad</c>); the model's
/// parameters receive no gradient. The model should be in eval mode.
/// </summary>
public static class Robustness
{
    /// <summary>
    /// The input gradient <c>∂ CE(model((x − mean)/std), y) / ∂x</c> (mean over the batch) at
    /// <paramref name="images"/>, and the loss.
    /// </summary>
    public static Tensor InputGradient(Module model, Tensor images, Tensor labels, double mean, double std)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(images);
        using var scope = Tensor.NewDisposeScope();
        var x = images.Detach().Contiguous().RequiresGrad_();
        var logits = model.Forward((x - mean) / std);
        var loss = Functional.CrossEntropy(logits, labels);
        return Autograd.Grad(loss, x).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Fast gradient sign method (Goodfellow et al. 2015): <c>x' = clip_[0,1](x + ε·sign(∇ₓ L))</c>.
    /// </summary>
    public static Tensor Fgsm(Module model, Tensor images, Tensor labels, double epsilon, double mean, double std)
    {
        if (!(epsilon >= 0)) throw new ArgumentOutOfRangeException(nameof(epsilon), epsilon, "fgsm: epsilon must be >= 0.");
        using var scope = Tensor.NewDisposeScope();
        var g = InputGradient(model, images, labels, mean, std);
        using (Tensor.NoGrad())
            return (images + g.Sign() * epsilon).Clamp(0.0, 1.0).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Projected gradient descent (Madry et al. 2018), L∞: from x₀ (plus a uniform start in the ε-ball when
    /// <paramref name="randomStart"/>), <paramref name="steps"/> times <c>x ← Π(x + α·sign(∇ₓ L))</c>, Π the
    /// projection onto the ε-ball around x₀ intersected with [0, 1].
    /// </summary>
    public static Tensor Pgd(Module model, Tensor images, Tensor labels, double epsilon, int steps, double stepSize, double mean, double std,
        bool randomStart = true, Generator? generator = null)
    {
        ArgumentNullException.ThrowIfNull(images);
        if (!(epsilon >= 0)) throw new ArgumentOutOfRangeException(nameof(epsilon), epsilon, "pgd: epsilon must be >= 0.");
        if (steps < 1) throw new ArgumentOutOfRangeException(nameof(steps), steps, "pgd: steps must be at least 1.");
        if (!(stepSize > 0)) throw new ArgumentOutOfRangeException(nameof(stepSize), stepSize, "pgd: step size must be positive.");
        using var scope = Tensor.NewDisposeScope();
        Tensor lo, hi, x;
        using (Tensor.NoGrad())
        {
            lo = (images - epsilon).Clamp(0.0, 1.0);
            hi = (images + epsilon).Clamp(0.0, 1.0);
            x = images.Detach();
            if (randomStart)
            {
                var u = Tensor.Rand(images.ShapeArray(), images.DType, generator);
                x = (images + (u * 2.0 - 1.0) * epsilon).Clamp(lo, hi);
            }
        }
        for (int i = 0; i < steps; i++)
        {
            var g = InputGradient(model, x, labels, mean, std);
            using (Tensor.NoGrad()) x = (x + g.Sign() * stepSize).Clamp(lo, hi);
        }
        return x.MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Accuracy of <paramref name="model"/> (eval mode) on <paramref name="test"/> clean, under FGSM and under
    /// PGD with the same ε (pixel units; <paramref name="mean"/>, <paramref name="std"/> the normalization).
    /// </summary>
    public static RobustnessResult Evaluate(Module model, ImageDataset test, double epsilon, int pgdSteps, double pgdStepSize,
        double mean, double std, int batchSize = 250, ulong seed = 0)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(test);
        model.Eval();
        var loader = new DataLoader(test, batchSize, shuffle: false);
        var generator = new Generator(seed);
        long clean = 0, fgsm = 0, pgd = 0;
        foreach (var batch in loader)
            using (batch)
            using (Tensor.NewDisposeScope())
            {
                using (Tensor.NoGrad()) clean += MethodTrainer.CountCorrect(model.Forward((batch.Images - mean) / std), batch.Labels);
                var xf = Fgsm(model, batch.Images, batch.Labels, epsilon, mean, std);
                using (Tensor.NoGrad()) fgsm += MethodTrainer.CountCorrect(model.Forward((xf - mean) / std), batch.Labels);
                var xp = Pgd(model, batch.Images, batch.Labels, epsilon, pgdSteps, pgdStepSize, mean, std, true, generator);
                using (Tensor.NoGrad()) pgd += MethodTrainer.CountCorrect(model.Forward((xp - mean) / std), batch.Labels);
            }
        double n = Math.Max(1, test.Count);
        return new RobustnessResult(clean / n, fgsm / n, pgd / n, test.Count);
    }
}
