// TAID (SakanaAI; LogitLoss.Taid): cross-entropy of the student against the target interpolated in logit space
// between the gradient-stopped student and the teacher; loss and student-logit gradient in one kernel (the
// caller's backward only rescales the gradient).
//
// Math      Per row, u ∈ [0, 1] the interpolation coefficient, y_j the teacher's score (t_j for logits and
//           log-probabilities, log t_j for probabilities; TAID has no temperature):
//             x_j = (1 − u)·s_j + u·y_j      (u = 0: s_j; u = 1: y_j — a zero factor drops its term, no 0·∞)
//             r = softmax(x) (a constant: stop-gradient)      q = softmax(s)
//             rowLoss_r = scale · Σ_{j: s_j finite} r_j · (−log q_j)
//             grad_rj   = scale · (R·q_j − r_j)   for finite s_j, 0 at masked (±∞) classes,  R = Σ_{j: s_j finite} r_j
//           (R = 1 unless u = 1 and a class masked in the student has teacher mass.) scale: 1/divisor of the
//           reduction. Ignored rows (labels given, labels[r] == ignoreIndex) get rowLoss 0 and a zero gradient.
// Passes    1. online max / Σ exp of s and of x in one read of both rows (RowReducePair's trees);
//           2. per class: r_j, −log q_j → the loss and R (row sums);
//           3. the gradient R·q − r (recomputing r_j and q_j: no global scratch).
// Layout    s, t, grad contiguous [rows, n]; labels int64 [rows] or empty (no row ignored); rowLoss [rows].
//           Groups as DivergencePlan: DimX threads per row (a power of two ≤ n), DimY rows per group.
// Numerics  float32, sums in float (per-thread partials, then the pairwise tree); exps of x − max ≤ 0.
//           −log q_j = log Σ − (s_j − max) from the row statistics (never the log of an underflowed q). A row
//           whose logits are all −∞ (or contain NaN / +∞) gives NaN unless ignored. V = 1: r = q = 1, loss 0.
// Bytes     s and t read three times (statistics, sums, gradient), grad written once: 28 B per class (8 B of
//           DRAM traffic + 4 B write when the row's 8·n bytes stay in L2).
// Flops     pass 1: 2 exps and ~8 flops per class; passes 2 and 3: 2 exps and ~8 flops each. Memory bound on GPUs.
// Launch    DivergencePlan.For(rows, n); static shared memory 2·256 floats (2 KiB).
using Engine.Runtime.Kernels;

namespace Engine.Tensors.Kernels;

/// <summary>Fused TAID loss + student-logit gradient (see the file header).</summary>
internal static partial class TaidKernels
{
    /// <summary>The interpolated logit x = (1 − u)·s + u·y (the side of a zero factor dropped, so 0·∞ never happens).</summary>
    [KernelFunction]
    public static float Mix(float s, float y, float u) => u <= 0f ? s : u >= 1f ? y : (1f - u) * s + u * y;

    /// <summary>TAID's row loss and gradient for every row (see the file header).</summary>
    /// <param name="student">Student logits s, [rows, n].</param>
    /// <param name="teacher">Teacher, [rows, n]: logits, log-probabilities or probabilities (<paramref name="teacherInput"/>).</param>
    /// <param name="labels">Per-row labels, [rows], or empty (no row ignored).</param>
    /// <param name="ignoreIndex">Rows whose label equals it get loss 0 and gradient 0.</param>
    /// <param name="rowLoss">Output: scale·Σ r·(−log q), [rows].</param>
    /// <param name="grad">Output: its gradient wrt s, [rows, n].</param>
    /// <param name="rows">Number of rows.</param>
    /// <param name="n">Classes per row (≥ 1).</param>
    /// <param name="interpolation">u ∈ [0, 1].</param>
    /// <param name="scale">Factor of every row (the reduction's 1/divisor).</param>
    /// <param name="teacherInput">0: logits, 1: log-probabilities (both used as scores), 2: probabilities (scores log t).</param>
    [Kernel]
    public static void Taid(ArrayView<float> student, ArrayView<float> teacher, ArrayView<long> labels, long ignoreIndex,
        ArrayView<float> rowLoss, ArrayView<float> grad, int rows, int n, float interpolation, float scale, int teacherInput)
    {
        var shared = SharedMemory.Allocate<float>(2 * DivergenceKernels.MaxGroup);
        int row = Grid.IdxX * Group.DimY + Group.IdxY;
        bool active = row < rows;
        bool ignored = active && labels.Length > 0 && labels[row] == ignoreIndex;
        int count = active && !ignored ? n : 0;
        long start = (long)row * n;

        // Pass 1: statistics of s and of the interpolated logits x.
        var ss = new FloatPair { A = float.NegativeInfinity, B = 0f };
        var xs = new FloatPair { A = float.NegativeInfinity, B = 0f };
        for (int j = Group.IdxX; j < count; j += Group.DimX)
        {
            float s = student[start + j];
            ss = DivergenceKernels.OnlineAdd(ss, s, 1f);
            xs = DivergenceKernels.OnlineAdd(xs, Mix(s, DkdKernels.TeacherScore(teacher[start + j], teacherInput), interpolation), 1f);
        }
        FloatPair maxes = DivergenceKernels.RowReducePair<MaxReduce>(shared, ss.A, xs.A);
        FloatPair sums = DivergenceKernels.RowReducePair<SumReduce>(shared,
            DivergenceKernels.Rescale(ss.B, ss.A, maxes.A, 1f), DivergenceKernels.Rescale(xs.B, xs.A, maxes.B, 1f));
        float logSumS = XMath.Log(sums.A), logSumX = XMath.Log(sums.B);

        // Pass 2: Σ r·(−log q) and R over the classes the student does not mask.
        float loss = 0f, mass = 0f;
        for (int j = Group.IdxX; j < count; j += Group.DimX)
        {
            float s = student[start + j];
            if (s == float.NegativeInfinity || s == float.PositiveInfinity) continue;
            float r = XMath.Exp(Mix(s, DkdKernels.TeacherScore(teacher[start + j], teacherInput), interpolation) - maxes.B - logSumX);
            mass += r;
            if (r > 0f) loss += r * (logSumS - (s - maxes.A));
        }
        FloatPair totals = DivergenceKernels.RowReducePair<SumReduce>(shared, loss, mass);

        // Pass 3: the gradient R·q − r (0 at masked classes).
        for (int j = Group.IdxX; j < count; j += Group.DimX)
        {
            float s = student[start + j];
            float g = 0f;
            if (s != float.NegativeInfinity && s != float.PositiveInfinity)
            {
                float r = XMath.Exp(Mix(s, DkdKernels.TeacherScore(teacher[start + j], teacherInput), interpolation) - maxes.B - logSumX);
                float q = XMath.Exp(s - maxes.A - logSumS);
                g = totals.B * q - r;
            }
            grad[start + j] = scale * g;
        }

        if (ignored)
            for (int j = Group.IdxX; j < n; j += Group.DimX) grad[start + j] = 0f;
        if (active && Group.IdxX == 0) rowLoss[row] = ignored ? 0f : scale * totals.A;
    }
}
