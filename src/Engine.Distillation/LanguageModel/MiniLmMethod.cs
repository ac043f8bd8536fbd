using Engine.Tensors;

namespace Engine.Distillation.LanguageModel;

/// <summary>
/// MiniLM as a method for decoder-only language models (<see cref="DecoderTransformer"/>): the per-batch loss
/// <code>
/// L = RelationWeight·(L_AT + L_VR)(last layer of student, last layer of teacher) + LogitWeight·KL(teacher ‖ student) (token mean)
/// </code>
/// with L_AT and L_VR as <see cref="MiniLm"/> defines them (causal). The paper's MiniLM is RelationWeight = 1,
/// LogitWeight = 0 (the defaults): its terms train the student's embeddings and last-layer Q, K, V but not its last
/// MLP, final LayerNorm or head, which MiniLM fine-tunes afterwards; the LM testbed's <see cref="LmMethod.MiniLm"/>
/// adds the logit term (weight 1) so its students can be scored on their output distributions.
/// <para>
/// This is its own class, not an <see cref="Methods.IDistillationMethod"/>: that interface is built for image
/// classifiers (batches of images and labels, logits [B, C] for the accuracy, a plan sized by classes), while
/// MiniLM needs token sequences and the models' attention. The student and the teacher (frozen by the caller, or
/// not: its tensors are computed without a graph here) are owned by the caller.
/// </para>
/// </summary>
public sealed class MiniLmMethod
{
    private static readonly DivergenceOptions TokenMean = new() { Reduction = Engine.Distillation.Reduction.TokenMean };

    /// <summary>MiniLM from <paramref name="teacher"/> to <paramref name="student"/>.</summary>
    /// <param name="student">The student (at least one block; the teacher's number of heads).</param>
    /// <param name="teacher">The teacher (same vocabulary; its last block is distilled).</param>
    /// <param name="relationWeight">Weight of L_AT + L_VR (≥ 0).</param>
    /// <param name="logitWeight">Weight of the forward KL on the logits (≥ 0; 0 is the paper's MiniLM).</param>
    /// <exception cref="ArgumentException">Models without blocks, different heads or vocabularies, or negative weights (the message names both shapes).</exception>
    public MiniLmMethod(DecoderTransformer student, DecoderTransformer teacher, double relationWeight = 1.0, double logitWeight = 0.0)
    {
        ArgumentNullException.ThrowIfNull(student);
        ArgumentNullException.ThrowIfNull(teacher);
        TransformerConfig s = student.Config, t = teacher.Config;
        if (s.Layers < 1 || t.Layers < 1 || s.Heads != t.Heads || s.VocabSize != t.VocabSize)
            throw new ArgumentException(
                $"MiniLmMethod: student and teacher need at least one block, the same number of heads (relations are matched head by head) and the same vocabulary; got student {s.Describe()} and teacher {t.Describe()}.");
        if (!(relationWeight >= 0) || !(logitWeight >= 0) || double.IsInfinity(relationWeight) || double.IsInfinity(logitWeight))
            throw new ArgumentException($"MiniLmMethod: the weights must be finite and ≥ 0; got relationWeight = {relationWeight}, logitWeight = {logitWeight}.");
        Student = student;
        Teacher = teacher;
        RelationWeight = relationWeight;
        LogitWeight = logitWeight;
    }

    /// <summary>The method's name ("minilm").</summary>
    public string Name => "minilm";

    /// <summary>The student.</summary>
    public DecoderTransformer Student { get; }

    /// <summary>The teacher.</summary>
    public DecoderTransformer Teacher { get; }

    /// <summary>Weight of L_AT + L_VR.</summary>
    public double RelationWeight { get; }

    /// <summary>Weight of the logit forward KL.</summary>
    public double LogitWeight { get; }

    /// <summary>
    /// The loss (0-d, differentiable wrt the student's parameters) on token ids [B, N] (int64 or int32): both models run
    /// forward on them (the teacher without a graph), the last layers' relations are compared.
    /// </summary>
    /// <exception cref="ArgumentException">Ids the models reject.</exception>
    public Tensor Loss(Tensor inputs)
    {
        ArgumentNullException.ThrowIfNull(inputs);
        using var scope = Tensor.NewDisposeScope();
        Tensor teacherLogits;
        AttentionRelations teacherAttention;
        using (Tensor.NoGrad()) (teacherLogits, teacherAttention) = Teacher.ForwardWithLastAttention(inputs);
        var (studentLogits, studentAttention) = Student.ForwardWithLastAttention(inputs);
        var loss = MiniLm.Loss(studentAttention, teacherAttention, causal: true).Mul(RelationWeight);
        if (LogitWeight != 0)
            loss = loss.Add(Divergences.ForwardKl(studentLogits, teacherLogits, TokenMean).Mul(LogitWeight));
        return loss.MoveToOuterDisposeScope();
    }
}
