namespace Engine.Distillation.LanguageModel;

/// <summary>Where a student's training sequences come from.</summary>
public enum LmRegime
{
    /// <summary>A fixed set of <see cref="LmTestbedSettings.OfflineSequences"/> oracle samples drawn once; each step takes a batch from it (uniformly, with replacement).</summary>
    Offline,

    /// <summary>Fresh oracle samples every step (never seen twice).</summary>
    Online,
}

/// <summary>
/// Everything that defines one run of the language-model testbed (<see cref="LmTestbed.Run"/>). The defaults
/// are the sizes of <c>engine lm-testbed</c> (sized for a few minutes on 2 CPU cores; see docs in the command).
/// </summary>
public sealed record LmTestbedSettings
{
    /// <summary>The oracle's shape; InitStd 1/√d (larger than a trained model's 0.02) so attention and MLPs shape its distributions.</summary>
    public TransformerConfig Oracle { get; init; } = new(VocabSize: 64, ContextLength: 16, Width: 64, Layers: 2, Heads: 4, InitStd: 0.125);

    /// <summary>The oracle's mean next-token entropy on uniform prefixes, as a fraction of ln V (its temperature is calibrated to it).</summary>
    public double OracleEntropyFraction { get; init; } = 0.5;

    /// <summary>The teacher's shape (the oracle's vocabulary and context).</summary>
    public TransformerConfig Teacher { get; init; } = new(VocabSize: 64, ContextLength: 16, Width: 64, Layers: 2, Heads: 4);

    /// <summary>The students' shape (smaller width and depth than the teacher).</summary>
    public TransformerConfig Student { get; init; } = new(VocabSize: 64, ContextLength: 16, Width: 32, Layers: 1, Heads: 2);

    /// <summary>Teacher optimizer steps (cross-entropy on oracle samples).</summary>
    public int TeacherSteps { get; init; } = 600;

    /// <summary>Size of the fixed oracle sample the teacher trains on.</summary>
    public int TeacherSequences { get; init; } = 4096;

    /// <summary>Teacher peak learning rate (AdamW, warmup then cosine).</summary>
    public double TeacherLearningRate { get; init; } = 3e-3;

    /// <summary>Student optimizer steps per (method, regime, seed).</summary>
    public int Steps { get; init; } = 300;

    /// <summary>Sequences per step (teacher and students).</summary>
    public int BatchSize { get; init; } = 32;

    /// <summary>Size of the offline regime's fixed set.</summary>
    public int OfflineSequences { get; init; } = 256;

    /// <summary>Held-out oracle sequences the metrics are computed on.</summary>
    public int EvalSequences { get; init; } = 256;

    /// <summary>Evaluations during a student's training besides step 0 (evenly spaced, the last at the final step).</summary>
    public int EvalPoints { get; init; } = 4;

    /// <summary>Student seeds (init, offline set, batch order and online samples); the oracle and teacher are shared.</summary>
    public int Seeds { get; init; } = 2;

    /// <summary>Student peak learning rate (AdamW, warmup then cosine).</summary>
    public double LearningRate { get; init; } = 3e-3;

    /// <summary>AdamW's decoupled weight decay (teacher and students).</summary>
    public double WeightDecay { get; init; } = 0.01;

    /// <summary>Gradient-norm clip (teacher and students).</summary>
    public double ClipNorm { get; init; } = 1.0;

    /// <summary>The base seed every other seed derives from.</summary>
    public ulong Seed { get; init; } = 1;

    /// <summary>The methods run, in table order.</summary>
    public IReadOnlyList<LmMethod> Methods { get; init; } = Enum.GetValues<LmMethod>();

    /// <summary>The regimes run.</summary>
    public IReadOnlyList<LmRegime> Regimes { get; init; } = [LmRegime.Offline, LmRegime.Online];

    /// <summary>Loss hyper-parameters.</summary>
    public LmLossSettings Loss { get; init; } = new();

    /// <summary>Throws <see cref="ArgumentException"/> naming every inconsistent setting.</summary>
    public void Validate()
    {
        var problems = new List<string>();
        Oracle.Validate();
        Teacher.Validate();
        Student.Validate();
        foreach (var (name, c) in new[] { ("Teacher", Teacher), ("Student", Student) })
            if (c.VocabSize != Oracle.VocabSize || c.ContextLength != Oracle.ContextLength)
                problems.Add($"{name} has V={c.VocabSize}, ctx={c.ContextLength} but the oracle V={Oracle.VocabSize}, ctx={Oracle.ContextLength}");
        if (!(OracleEntropyFraction > 0 && OracleEntropyFraction < 1)) problems.Add($"OracleEntropyFraction = {OracleEntropyFraction} (need (0, 1))");
        if (TeacherSteps < 2) problems.Add($"TeacherSteps = {TeacherSteps} (need ≥ 2)");
        if (Steps < 2) problems.Add($"Steps = {Steps} (need ≥ 2)");
        if (TeacherSequences < 1 || OfflineSequences < 1 || EvalSequences < 1 || BatchSize < 1)
            problems.Add($"TeacherSequences = {TeacherSequences}, OfflineSequences = {OfflineSequences}, EvalSequences = {EvalSequences}, BatchSize = {BatchSize} (each ≥ 1)");
        if (EvalPoints < 1) problems.Add($"EvalPoints = {EvalPoints} (need ≥ 1)");
        if (Seeds < 1) problems.Add($"Seeds = {Seeds} (need ≥ 1)");
        if (!(LearningRate > 0) || !(TeacherLearningRate > 0)) problems.Add($"learning rates {TeacherLearningRate}, {LearningRate} (need > 0)");
        if (!(WeightDecay >= 0)) problems.Add($"WeightDecay = {WeightDecay} (need ≥ 0)");
        if (!(ClipNorm > 0)) problems.Add($"ClipNorm = {ClipNorm} (need > 0)");
        if (Methods.Count == 0 || Regimes.Count == 0) problems.Add("no methods or no regimes");
        if (Loss.TopK < 1 || Loss.TopK > Oracle.VocabSize) problems.Add($"TopK = {Loss.TopK} (need 1..V)");
        if (Methods.Contains(LmMethod.MiniLm))
        {
            if (Teacher.Layers < 1 || Student.Layers < 1) problems.Add($"minilm needs an attention layer in teacher and student; got Layers = {Teacher.Layers}, {Student.Layers}");
            if (Student.Width % Teacher.Heads != 0) problems.Add($"minilm gives the student the teacher's {Teacher.Heads} heads, which must divide the student's Width = {Student.Width}");
            if (!(Loss.MiniLmWeight >= 0) || !(Loss.MiniLmLogitWeight >= 0)) problems.Add($"MiniLmWeight = {Loss.MiniLmWeight}, MiniLmLogitWeight = {Loss.MiniLmLogitWeight} (need ≥ 0)");
        }
        if (problems.Count > 0) throw new ArgumentException($"LmTestbedSettings: {string.Join("; ", problems)}.");
    }
}
