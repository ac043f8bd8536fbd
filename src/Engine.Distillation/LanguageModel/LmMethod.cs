using System.Globalization;
using Engine.Tensors;
using Engine.Tensors.NN;

namespace Engine.Distillation.LanguageModel;

/// <summary>How a student of the testbed is trained.</summary>
public enum LmMethod
{
    /// <summary>No teacher: cross-entropy on the sequences' own next tokens (the data baseline).</summary>
    CrossEntropy,

    /// <summary>Forward KL(teacher ‖ student) per token (<see cref="Divergences.ForwardKl"/>).</summary>
    ForwardKl,

    /// <summary>Reverse KL(student ‖ teacher) per token (<see cref="Divergences.ReverseKl"/>).</summary>
    ReverseKl,

    /// <summary>Generalized JSD_β per token (<see cref="Divergences.Jsd"/>), β = <see cref="LmLossSettings.JsdBeta"/>.</summary>
    Jsd,

    /// <summary>Skew KL(p ‖ λp + (1 − λ)q) per token (<see cref="Divergences.SkewKl"/>), λ = <see cref="LmLossSettings.SkewLambda"/>.</summary>
    SkewKl,

    /// <summary>TAID (<see cref="LogitLoss.Taid(Tensor, Tensor, TaidSchedule, Tensor?, long, Reduction, TeacherInput, LossImplementation)"/>) with its adaptive <see cref="TaidSchedule"/>.</summary>
    Taid,

    /// <summary>Forward KL from the teacher's top-k probabilities only (<see cref="LogitLoss.TopKSparse"/>; the rest of the mass as <see cref="LmLossSettings.TopKRest"/> says).</summary>
    TopK,

    /// <summary>
    /// MiniLM (<see cref="LanguageModel.MiniLm"/>): <see cref="LmLossSettings.MiniLmLogitWeight"/>·forward KL on the logits
    /// + <see cref="LmLossSettings.MiniLmWeight"/>·(L_AT + L_VR) on the last layer's self-attention distributions and
    /// value relations. The logit term is there because the testbed scores output distributions and MiniLM's terms alone
    /// never train the student's last MLP, final LayerNorm or head (MiniLM fine-tunes those afterwards); set its weight to 0
    /// for MiniLM alone. MiniLM matches heads one to one, so the testbed gives this student the teacher's number of heads
    /// (same width, parameters and initial values; only the split of d into heads differs).
    /// </summary>
    MiniLm,
}

/// <summary>Hyper-parameters of the testbed's losses (the literature's defaults).</summary>
/// <param name="JsdBeta">β of <see cref="LmMethod.Jsd"/> (0.5: the symmetric JSD).</param>
/// <param name="SkewLambda">λ of <see cref="LmMethod.SkewKl"/> (DistiLLM: 0.1).</param>
/// <param name="TaidStart">u at step 0 of <see cref="LmMethod.Taid"/> (the reference's default 0.4).</param>
/// <param name="TaidAlpha">α, TAID's adaptive step (the reference's default 5e-4).</param>
/// <param name="TopK">k of <see cref="LmMethod.TopK"/>: teacher classes kept per token.</param>
/// <param name="TopKRest">Where <see cref="LmMethod.TopK"/>'s missing teacher mass goes (dropped and renormalized, or spread uniformly).</param>
/// <param name="MiniLmWeight">Weight of MiniLM's L_AT + L_VR in <see cref="LmMethod.MiniLm"/> (the paper: 1).</param>
/// <param name="MiniLmLogitWeight">Weight of the forward-KL logit term in <see cref="LmMethod.MiniLm"/> (0: MiniLM alone).</param>
public sealed record LmLossSettings(double JsdBeta = 0.5, double SkewLambda = 0.1, double TaidStart = 0.4, double TaidAlpha = 5e-4, int TopK = 8,
    TopKRest TopKRest = TopKRest.Renormalize, double MiniLmWeight = 1.0, double MiniLmLogitWeight = 1.0);

/// <summary>
/// The per-step loss of one <see cref="LmMethod"/> for a batch, on student logits s [B, N, V], teacher logits
/// t [B, N, V] (ignored by <see cref="LmMethod.CrossEntropy"/>) and next tokens y [B, N]. Every method reduces
/// by the token mean (Σ over B·N positions / (B·N)); temperatures are 1. Holds the state a method carries
/// across steps (TAID's schedule): one instance per training run; call <see cref="AfterStep"/> after each
/// optimizer step.
/// </summary>
public sealed class LmDistillationLoss
{
    private static readonly DivergenceOptions TokenMean = new() { Reduction = Engine.Distillation.Reduction.TokenMean };

    /// <summary>A loss for <paramref name="method"/> over a run of <paramref name="totalSteps"/> steps.</summary>
    public LmDistillationLoss(LmMethod method, LmLossSettings settings, long totalSteps)
    {
        ArgumentNullException.ThrowIfNull(settings);
        if (settings.TopK < 1) throw new ArgumentOutOfRangeException(nameof(settings), settings.TopK, $"LmDistillationLoss: TopK must be ≥ 1; got {settings.TopK}.");
        Method = method;
        Settings = settings;
        if (method == LmMethod.Taid) Schedule = new TaidSchedule(totalSteps, start: settings.TaidStart, alpha: settings.TaidAlpha);
    }

    /// <summary>The method.</summary>
    public LmMethod Method { get; }

    /// <summary>The hyper-parameters.</summary>
    public LmLossSettings Settings { get; }

    /// <summary>TAID's schedule (null for the other methods).</summary>
    public TaidSchedule? Schedule { get; }

    /// <summary>Whether the method reads teacher logits.</summary>
    public bool NeedsTeacher => Method != LmMethod.CrossEntropy;

    /// <summary>Whether the method reads the last layer's attention relations of student and teacher (<see cref="LmMethod.MiniLm"/>).</summary>
    public bool NeedsAttention => Method == LmMethod.MiniLm;

    /// <summary>
    /// The batch loss of a method that reads attention (<see cref="LmMethod.MiniLm"/>; the other methods ignore the
    /// relations and return <see cref="Compute(Tensor, Tensor?, Tensor)"/>).
    /// </summary>
    /// <param name="student">Student logits [B, N, V].</param>
    /// <param name="teacher">Teacher logits [B, N, V] (no gradient).</param>
    /// <param name="targets">Next tokens, int64 [B, N].</param>
    /// <param name="studentAttention">The student's last-layer attention relations (<see cref="DecoderTransformer.ForwardWithLastAttention"/>).</param>
    /// <param name="teacherAttention">The teacher's (same number of heads).</param>
    public Tensor Compute(Tensor student, Tensor? teacher, Tensor targets, AttentionRelations? studentAttention, AttentionRelations? teacherAttention)
    {
        if (!NeedsAttention) return Compute(student, teacher, targets);
        ArgumentNullException.ThrowIfNull(student);
        if (teacher is null || studentAttention is null || teacherAttention is null)
            throw new ArgumentException($"LmDistillationLoss({Method}): this method needs the teacher's logits and both models' last-layer attention.");
        using var relations = MiniLm.Loss(studentAttention, teacherAttention, causal: true);
        if (Settings.MiniLmLogitWeight == 0) return relations.Mul(Settings.MiniLmWeight);
        using var weighted = relations.Mul(Settings.MiniLmWeight);
        using var kl = Divergences.ForwardKl(student, teacher, TokenMean);
        using var logit = kl.Mul(Settings.MiniLmLogitWeight);
        return logit.Add(weighted);
    }

    /// <summary>The batch loss (0-d, differentiable wrt the student logits).</summary>
    /// <param name="student">Student logits [B, N, V].</param>
    /// <param name="teacher">Teacher logits [B, N, V] (no gradient), or null for <see cref="LmMethod.CrossEntropy"/>.</param>
    /// <param name="targets">Next tokens, int64 [B, N].</param>
    public Tensor Compute(Tensor student, Tensor? teacher, Tensor targets)
    {
        ArgumentNullException.ThrowIfNull(student);
        ArgumentNullException.ThrowIfNull(targets);
        if (NeedsTeacher && teacher is null) throw new ArgumentException($"LmDistillationLoss({Method}): this method needs the teacher's logits.");
        switch (Method)
        {
            case LmMethod.CrossEntropy:
            {
                long v = student.Size(-1);
                using var flat = student.Reshape(-1, v);
                using var y = targets.Reshape(-1);
                return Functional.CrossEntropy(flat, y);
            }
            case LmMethod.ForwardKl: return Divergences.ForwardKl(student, teacher!, TokenMean);
            case LmMethod.ReverseKl: return Divergences.ReverseKl(student, teacher!, TokenMean);
            case LmMethod.Jsd: return Divergences.Jsd(student, teacher!, Settings.JsdBeta, TokenMean);
            case LmMethod.SkewKl: return Divergences.SkewKl(student, teacher!, Settings.SkewLambda, TokenMean);
            case LmMethod.Taid: return LogitLoss.Taid(student, teacher!, Schedule!);
            case LmMethod.TopK:
            {
                var (indices, values) = TopKProbabilities(teacher!, Settings.TopK);
                using (indices)
                using (values)
                    return LogitLoss.TopKSparse(student, indices, values, Settings.TopKRest);
            }
            case LmMethod.MiniLm:
                throw new ArgumentException("LmDistillationLoss(MiniLm): needs the attention relations; call the overload that takes them.");
            default: throw new ArgumentOutOfRangeException(nameof(Method), Method, "LmDistillationLoss: unknown method.");
        }
    }

    /// <summary>Advances the method's state with the loss value of the step just taken (TAID's schedule; a no-op otherwise).</summary>
    public void AfterStep(double loss, long step) => Schedule?.Update(loss, step);

    /// <summary>
    /// The k most probable classes of softmax(<paramref name="teacher"/>) per row (ties: lower index first) as
    /// int64 indices [..., k] and probabilities [..., k] in the teacher's dtype, in decreasing order (float64 softmax).
    /// </summary>
    public static (Tensor Indices, Tensor Values) TopKProbabilities(Tensor teacher, int k)
    {
        ArgumentNullException.ThrowIfNull(teacher);
        int v = (int)teacher.Size(-1);
        if (k < 1 || k > v) throw new ArgumentOutOfRangeException(nameof(k), k, $"TopKProbabilities: k must be in [1, V = {v}]; got {k}.");
        var logits = LmMath.ToDoubles(teacher);
        int rows = logits.Length / v;
        var idx = new long[rows * k];
        var val = new double[rows * k];
        var order = new int[v];
        for (int r = 0; r < rows; r++)
        {
            var row = logits.AsSpan(r * v, v);
            LmMath.SoftmaxInPlace(row);
            for (int j = 0; j < v; j++) order[j] = j;
            var p = row.ToArray();
            Array.Sort(order, (a, b) => p[b] != p[a] ? p[b].CompareTo(p[a]) : a.CompareTo(b));
            for (int i = 0; i < k; i++)
            {
                idx[r * k + i] = order[i];
                val[r * k + i] = p[order[i]];
            }
        }
        long[] shape = [.. teacher.Shape[..^1].ToArray(), k];
        var indices = Tensor.FromArray(idx, shape);
        using var values64 = Tensor.FromArray(val, shape);
        return (indices, values64.To(teacher.DType));
    }

    /// <summary>The method's name as the CLI and the tables write it (e.g. "forward-kl").</summary>
    public static string Name(LmMethod method) => method switch
    {
        LmMethod.CrossEntropy => "ce",
        LmMethod.ForwardKl => "forward-kl",
        LmMethod.ReverseKl => "reverse-kl",
        LmMethod.Jsd => "jsd",
        LmMethod.SkewKl => "skew-kl",
        LmMethod.Taid => "taid",
        LmMethod.TopK => "top-k",
        LmMethod.MiniLm => "minilm",
        _ => method.ToString().ToLower(CultureInfo.InvariantCulture),
    };

    /// <summary>Parses a name written by <see cref="Name"/> (case-insensitive).</summary>
    /// <exception cref="ArgumentException">An unknown name (the message lists the known ones).</exception>
    public static LmMethod Parse(string name)
    {
        foreach (var m in Enum.GetValues<LmMethod>())
            if (string.Equals(Name(m), name?.Trim(), StringComparison.OrdinalIgnoreCase)) return m;
        throw new ArgumentException($"Unknown method '{name}'; expected one of {string.Join(", ", Enum.GetValues<LmMethod>().Select(Name))}.");
    }
}
