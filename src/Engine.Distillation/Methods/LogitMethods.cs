using Engine.Tensors;
using Engine.Tensors.NN;

namespace Engine.Distillation.Methods;

/// <summary>
/// Training from labels alone ("scratch"): <c>CE(z / T, y)</c>, T = 1 by default. With T &gt; 1 it is the
/// first network of defensive distillation (trained at temperature T, used at T = 1).
/// </summary>
public sealed class CrossEntropyMethod : DistillationMethod
{
    /// <summary>Trains <paramref name="student"/> by cross-entropy of its logits divided by <paramref name="temperature"/>.</summary>
    public CrossEntropyMethod(Module student, double temperature = 1, string name = "scratch") : base(name, student)
    {
        if (!(temperature > 0) || double.IsInfinity(temperature))
            throw new ArgumentOutOfRangeException(nameof(temperature), temperature, $"{name}: temperature must be positive and finite.");
        Temperature = temperature;
    }

    /// <summary>T.</summary>
    public double Temperature { get; }

    /// <inheritdoc/>
    public override MethodLoss Loss(DistillationBatch batch, int update)
    {
        ArgumentNullException.ThrowIfNull(batch);
        var logits = Student.Forward(batch.Images);
        if (Temperature == 1) return new MethodLoss(Functional.CrossEntropy(logits, batch.Labels), logits);
        using var scaled = logits.Div(Temperature);
        return new MethodLoss(Functional.CrossEntropy(scaled, batch.Labels), logits);
    }
}

/// <summary>
/// Hinton KD from one frozen teacher: <c>(1 − α)·CE(s, y) + α·T²·KL(softmax(t/T) ‖ softmax(s/T))</c>,
/// batchmean (<see cref="Losses.KnowledgeDistillation"/>); T = 4, α = 0.9 by default (mdistiller).
/// </summary>
public class KnowledgeDistillationMethod : LogitDistillationMethod
{
    /// <summary>KD of <paramref name="student"/> from <paramref name="teacher"/>.</summary>
    public KnowledgeDistillationMethod(Module student, Module teacher, double temperature = 4, double alpha = 0.9, string name = "kd")
        : base(name, student, [teacher])
    {
        if (!(temperature > 0) || double.IsInfinity(temperature))
            throw new ArgumentOutOfRangeException(nameof(temperature), temperature, $"{name}: temperature must be positive and finite.");
        if (!(alpha >= 0 && alpha <= 1))
            throw new ArgumentOutOfRangeException(nameof(alpha), alpha, $"{name}: alpha must be in [0, 1].");
        Temperature = temperature;
        Alpha = alpha;
    }

    /// <summary>T.</summary>
    public double Temperature { get; }

    /// <summary>α, the weight of the KD term.</summary>
    public double Alpha { get; }

    /// <inheritdoc/>
    protected override Tensor LogitLoss(Tensor studentLogits, IReadOnlyList<Tensor> teacherLogits, Tensor labels, DistillationBatch batch)
        => Losses.KnowledgeDistillation(studentLogits, teacherLogits[0], labels, Temperature, Alpha);
}

/// <summary>
/// One generation of born-again networks (Furlanello et al. 2018): a student of the teacher's own
/// architecture trained to match the previous generation. As in the paper the default loss is the
/// cross-entropy to the teacher's distribution only (KD with T = 1, α = 1: KL(p_t ‖ p_s), which has the
/// same gradient); α &lt; 1 mixes in the labels. <see cref="BornAgain"/> chains the generations.
/// </summary>
public sealed class BornAgainMethod : KnowledgeDistillationMethod
{
    /// <summary>Generation k+1 (<paramref name="student"/>) from generation k (<paramref name="previousGeneration"/>).</summary>
    public BornAgainMethod(Module student, Module previousGeneration, double temperature = 1, double alpha = 1)
        : base(student, previousGeneration, temperature, alpha, "ban")
    {
        if (student.GetType() != previousGeneration.GetType() || student.ParameterCount() != previousGeneration.ParameterCount())
            throw new ArgumentException($"ban: a born-again student has its teacher's architecture; got {student.GetType().Name} ({student.ParameterCount()} parameters) and {previousGeneration.GetType().Name} ({previousGeneration.ParameterCount()}).");
    }
}

/// <summary>
/// The student of defensive distillation (Papernot et al. 2016): trained on the soft labels
/// <c>softmax(t / T)</c> of a teacher that was itself trained at temperature T
/// (<see cref="CrossEntropyMethod"/> with that T), by <c>−(1/B)·Σ softmax(t/T)·log_softmax(s/T)</c>
/// (no hard labels), and then used at T = 1. Robustness is measured with <see cref="Robustness"/>.
/// </summary>
public sealed class DefensiveDistillationMethod : LogitDistillationMethod
{
    /// <summary>Distils <paramref name="student"/> from <paramref name="teacher"/> at <paramref name="temperature"/> (the paper uses T up to 100; 20 here by default).</summary>
    public DefensiveDistillationMethod(Module student, Module teacher, double temperature = 20) : base("defensive", student, [teacher])
    {
        if (!(temperature > 0) || double.IsInfinity(temperature))
            throw new ArgumentOutOfRangeException(nameof(temperature), temperature, "defensive: temperature must be positive and finite.");
        Temperature = temperature;
    }

    /// <summary>T of training (evaluation uses T = 1).</summary>
    public double Temperature { get; }

    /// <inheritdoc/>
    protected override Tensor LogitLoss(Tensor studentLogits, IReadOnlyList<Tensor> teacherLogits, Tensor labels, DistillationBatch batch)
    {
        using var soft = teacherLogits[0].Softmax(1, Temperature);
        return FeatureLosses.SoftCrossEntropy(studentLogits, soft, Temperature);
    }
}
