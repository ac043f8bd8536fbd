using Engine.Runtime;
using Engine.Tensors;

namespace Engine.Distillation.LanguageModel;

/// <summary>
/// What MiniLM distills from one self-attention layer: the attention probabilities A = softmax(Q·Kᵀ/√d_k + mask)
/// [B, H, N, N] and the values V [B, H, N, d_k] (heads split, the layout of
/// <see cref="Tensor.ScaledDotProductAttentionWithProbabilities"/>'s inputs). Disposing it disposes both tensors.
/// </summary>
/// <param name="Probabilities">A [B, H, N, N]: row (b, h, i) is query i's distribution over the keys.</param>
/// <param name="Values">V [B, H, N, d_k] (d_k = the layer's head dim).</param>
public sealed record AttentionRelations(Tensor Probabilities, Tensor Values) : IDisposable
{
    /// <summary>Disposes <see cref="Probabilities"/> and <see cref="Values"/>.</summary>
    public void Dispose()
    {
        Probabilities.Dispose();
        Values.Dispose();
    }
}

/// <summary>
/// MiniLM's deep self-attention distillation (Wang et al. 2020, "MiniLM: Deep Self-Attention Distillation for
/// Task-Agnostic Compression of Pre-Trained Transformers"), on the last layer of a student and a teacher:
/// <code>
/// L_AT = 1/(B·H·N) · Σ_(b,h,i) KL(A_t[b,h,i,:] ‖ A_s[b,h,i,:])                 attention distributions
/// VR   = softmax(V·Vᵀ/√d_k + mask)   (per head; d_k the model's own head dim)  value relation [B, H, N, N]
/// L_VR = 1/(B·H·N) · Σ_(b,h,i) KL(VR_t[b,h,i,:] ‖ VR_s[b,h,i,:])
/// L    = L_AT + L_VR
/// </code>
/// with KL(p ‖ q) = Σ_j p_j·(log p_j − log q_j) over the key positions j the mask keeps. Student and teacher may
/// have different hidden sizes (d_k differs: VR is N×N either way) but must have the same number of heads H, batch
/// B and length N; the relations of head h of the student are matched to head h of the teacher (MiniLM v1; v2's
/// re-split relation heads are not implemented).
/// <para>
/// <b>Argument order</b>: student first, teacher second (as <see cref="Divergences"/>); the KL is
/// KL(teacher ‖ student). The loss is differentiable wrt every input; the teacher's tensors are normally computed
/// without a graph, so only the student's receive gradients.
/// </para>
/// <para>
/// <b>Masking</b>: with <c>causal</c> (default, the decoder's attention) key j is visible to query i only when
/// j ≤ i; without it every key is visible. Hidden positions contribute exactly 0 to the value and the gradient, never
/// NaN: the attention probabilities there are ignored whatever they hold (0 for a causal attention), and the value
/// relation's scores there are −∞ before the softmax. Every row keeps key 0, so no row is empty. Under the 0·log 0 = 0
/// convention a visible key with A_t = 0 contributes 0 (and gives A_s no gradient). A visible key with A_t &gt; 0
/// and A_s = 0 (float underflow of the student's softmax) gives +∞, as the exact KL does; no clamp is applied.
/// </para>
/// <para>
/// <b>Gradient</b> (M = B·H·N, sums over visible keys): ∂L_AT/∂A_s[b,h,i,j] = −A_t/(M·A_s) (0 where A_t = 0), which
/// through the student's softmax is (A_s − A_t)/M on its scores when A_t's visible row sums to 1;
/// ∂L_VR/∂z_s = (VR_s − VR_t)/M on the student's relation scores z_s = V_s·V_sᵀ/√d_k, hence
/// ∂L_VR/∂V_s = (G + Gᵀ)·V_s/√d_k with G = (VR_s − VR_t)/M (zero on hidden positions).
/// </para>
/// <para>
/// Numerics: computed from differentiable tensor ops in the inputs' dtype (float32 or float64), composite (so
/// createGraph works); log A_s is the log of the given probabilities; the value relations use a stable
/// log-softmax. Memory is O(B·H·N²), like the attention probabilities themselves.
/// </para>
/// </summary>
public static class MiniLm
{
    /// <summary>L = L_AT + L_VR of the class (0-d, the inputs' dtype) for the student's and teacher's last-layer relations.</summary>
    /// <param name="student">The student's attention probabilities [B, H, N, N] and values [B, H, N, d_s].</param>
    /// <param name="teacher">The teacher's attention probabilities [B, H, N, N] and values [B, H, N, d_t].</param>
    /// <param name="causal">Whether key j &gt; i is hidden from query i (true for a decoder).</param>
    /// <exception cref="ArgumentException">Shapes or dtypes that do not match (the message names both shapes).</exception>
    public static Tensor Loss(AttentionRelations student, AttentionRelations teacher, bool causal = true)
    {
        ArgumentNullException.ThrowIfNull(student);
        ArgumentNullException.ThrowIfNull(teacher);
        CheckValues("MiniLm.Loss", student.Values, teacher.Values);
        if (student.Probabilities.Rank == 4 && student.Probabilities.Size(2) != student.Values.Size(2))
            throw new ArgumentException(
                $"MiniLm.Loss: the attention [B, H, N, N] and the values [B, H, N, d] must have the same B, H and N; got student attention {LogitLossCore.Fmt(student.Probabilities.Shape)} and values {LogitLossCore.Fmt(student.Values.Shape)}.");
        using var at = AttentionLoss(student.Probabilities, teacher.Probabilities, causal);
        using var vr = ValueRelationLoss(student.Values, teacher.Values, causal);
        return at.Add(vr);
    }

    /// <summary>
    /// L_AT = 1/(B·H·N)·Σ KL(A_t ‖ A_s) over the rows of the attention probabilities (0-d). See the class for the
    /// masking and the gradient.
    /// </summary>
    /// <param name="studentProbabilities">A_s [B, H, N, N].</param>
    /// <param name="teacherProbabilities">A_t [B, H, N, N] (same shape and dtype).</param>
    /// <param name="causal">Whether key j &gt; i is hidden from query i.</param>
    /// <exception cref="ArgumentException">Shapes or dtypes that differ or are not [B, H, N, N].</exception>
    public static Tensor AttentionLoss(Tensor studentProbabilities, Tensor teacherProbabilities, bool causal = true)
    {
        const string op = "MiniLm.AttentionLoss";
        ArgumentNullException.ThrowIfNull(studentProbabilities);
        ArgumentNullException.ThrowIfNull(teacherProbabilities);
        CheckFloat(op, studentProbabilities, teacherProbabilities, "attention");
        var s = studentProbabilities.Shape;
        if (studentProbabilities.Rank != 4 || s[2] != s[3] || !s.SequenceEqual(teacherProbabilities.Shape))
            throw new ArgumentException(
                $"{op}: the student's and the teacher's attention probabilities must both be [B, H, N, N] with the same B, H (heads) and N; got student {LogitLossCore.Fmt(s)} and teacher {LogitLossCore.Fmt(teacherProbabilities.Shape)}.");
        long rows = s[0] * s[1] * s[2];
        if (rows == 0) return Tensor.Zeros([], studentProbabilities.DType);
        using var scope = Tensor.NewDisposeScope();
        // w: the visible keys where the teacher has mass. Elsewhere both logs read 1 (log = 0) and the weight is 0, so
        // the term is exactly 0 and no 0/0 or 0·∞ reaches the backward (∂/∂A_s = −A_t·g/A_s with A_s replaced by 1).
        var w = (causal ? Tensor.Where(CausalKeep(s[2], teacherProbabilities.Device), teacherProbabilities, 0.0) : teacherProbabilities).Gt(0.0);
        var pt = Tensor.Where(w, teacherProbabilities, 0.0);
        var logPt = Tensor.Where(w, teacherProbabilities, 1.0).Log();
        var logPs = Tensor.Where(w, studentProbabilities, 1.0).Log();
        var kl = pt.Mul(logPt.Sub(logPs)).Sum();
        return kl.Div((double)rows).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// L_VR = 1/(B·H·N)·Σ KL(VR_t ‖ VR_s), VR = softmax(V·Vᵀ/√d + mask) per head (0-d), d the tensor's own last dim.
    /// See the class for the masking and the gradient.
    /// </summary>
    /// <param name="studentValues">V_s [B, H, N, d_s].</param>
    /// <param name="teacherValues">V_t [B, H, N, d_t] (same B, H, N and dtype; d_t may differ from d_s).</param>
    /// <param name="causal">Whether position j &gt; i is hidden from position i.</param>
    /// <exception cref="ArgumentException">Shapes or dtypes that do not match.</exception>
    public static Tensor ValueRelationLoss(Tensor studentValues, Tensor teacherValues, bool causal = true)
    {
        ArgumentNullException.ThrowIfNull(studentValues);
        ArgumentNullException.ThrowIfNull(teacherValues);
        CheckValues("MiniLm.ValueRelationLoss", studentValues, teacherValues);
        var s = studentValues.Shape;
        long rows = s[0] * s[1] * s[2];
        if (rows == 0) return Tensor.Zeros([], studentValues.DType);
        using var scope = Tensor.NewDisposeScope();
        var keep = causal ? CausalKeep(s[2], studentValues.Device) : null;
        var logRt = LogRelation(teacherValues, keep);
        var logRs = LogRelation(studentValues, keep);
        // Hidden entries: log VR = 0 in both (replaced below), weight VR_t = 0 → the term is exactly 0.
        var rt = keep is null ? logRt.Exp() : Tensor.Where(keep, logRt.Exp(), 0.0);
        var kl = rt.Mul(logRt.Sub(logRs)).Sum();
        return kl.Div((double)rows).MoveToOuterDisposeScope();
    }

    /// <summary>log softmax(V·Vᵀ/√d + mask) [B, H, N, N], with 0 (not −∞) on the hidden entries.</summary>
    private static Tensor LogRelation(Tensor values, Tensor? keep)
    {
        long d = values.Size(-1);
        double scale = d == 0 ? 1.0 : 1.0 / Math.Sqrt(d);
        var vt = values.Transpose(-1, -2);
        var scores = values.MatMul(vt).Mul(scale);
        if (keep is null) return scores.LogSoftmax(-1);
        // −∞ on hidden keys: exp gives exactly 0 there; key 0 is always visible, so every row's max is finite.
        var logR = Tensor.Where(keep, scores, double.NegativeInfinity).LogSoftmax(-1);
        return Tensor.Where(keep, logR, 0.0);
    }

    /// <summary>The causal visibility [N, N] (bool): key j visible to query i when j ≤ i.</summary>
    private static Tensor CausalKeep(long n, Device device)
    {
        var i = Tensor.Arange(n).Reshape(n, 1);
        var j = Tensor.Arange(n).Reshape(1, n);
        var keep = j.Le(i);
        return device == default ? keep : keep.To(device);
    }

    private static void CheckFloat(string op, Tensor student, Tensor teacher, string what)
    {
        if (student.DType is not (DType.Float32 or DType.Float64) || teacher.DType != student.DType)
            throw new ArgumentException(
                $"{op}: the student's and the teacher's {what} must be both float32 or both float64; got student {student.DType.Name()} {LogitLossCore.Fmt(student.Shape)} and teacher {teacher.DType.Name()} {LogitLossCore.Fmt(teacher.Shape)}.");
    }

    private static void CheckValues(string op, Tensor student, Tensor teacher)
    {
        CheckFloat(op, student, teacher, "values");
        if (student.Rank != 4 || teacher.Rank != 4 || student.Size(0) != teacher.Size(0) || student.Size(1) != teacher.Size(1) || student.Size(2) != teacher.Size(2))
            throw new ArgumentException(
                $"{op}: the student's values [B, H, N, d_s] and the teacher's [B, H, N, d_t] must have the same B, H (heads) and N (d may differ); got student {LogitLossCore.Fmt(student.Shape)} and teacher {LogitLossCore.Fmt(teacher.Shape)}.");
    }
}
