// Decoupled KD (DKD, mdistiller's math with the exact masked softmax; LogitLoss.Dkd): per row r with true class g,
// loss and student-logit gradient in one kernel (the caller's backward only rescales the gradient).
//
// Math      z = s/T (student), u = the teacher's scores (t/T for logits, t for log-probabilities, log t for
//           probabilities; T = T_r), q = softmax(z), p = softmax(u):
//             b_s = [q_g, 1 − q_g], b_t = [p_g, 1 − p_g]           q̂_j = q_j/(1 − q_g), p̂_j = p_j/(1 − p_g)  (j ≠ g)
//             TCKD = KL(b_t ‖ b_s)        NCKD = Σ_{j≠g} p̂_j (log p̂_j − log q̂_j)
//             rowLoss_r = c_r · (α·TCKD + β·NCKD),  c_r = scale · (T² if squareTemperature)   (scale: warm-up / divisor)
//             grad_rg   = c_r/T · α·(q_g − p_g)
//             grad_rj   = c_r/T · [ q̂_j·(α·(p_g − q_g) + β) − β·p̂_j ]                       (j ≠ g)
//           Every log comes from row statistics, never from an underflowed probability: with m the row's max and
//           S_O = Σ_{j≠g} exp((x_j − m)·invT) (the non-target sum), log(1 − q_g) = log S_O − log(S_O + e_g) and
//           log q̂_j = (x_j − m)·invT − log S_O, so nothing is lost when q_g → 1 (mdistiller's −1000 trick is not used).
//           Ignored rows (labels[r] == ignoreIndex) get rowLoss 0 and a zero gradient row.
// Passes    1. online max / Σ exp of the non-target classes of s and of the teacher (one read of both rows); the
//              target's own value is read once by every thread. Row max m = max(non-target max, target).
//           2. per class: p̂, q̂ → NCKD's term and the gradient (it needs only row statistics: written here).
// Layout    s, t, grad contiguous [rows, n]; labels int64 [rows] (required: the true class, in [0, n) unless
//           ignored; not checked on the device); temperatures [rows], [1] or empty (the scalar); rowLoss [rows].
//           Groups as DivergencePlan: DimX threads per row (a power of two ≤ n), DimY rows per group.
// Numerics  float32, sums in float (per-thread partials, then the pairwise tree of RowReducePair); exps of
//           (x − m)·invT ≤ 0, no overflow at |x| = 1e4 and T = 0.05. V = 1 gives 0 and a zero gradient (no
//           non-target classes: S_O = 0, b = [1, 0] for both). A −∞ logit is a masked class (p̂ or q̂ = 0; the
//           term is 0 where p̂ = 0 and +∞ where only q̂ = 0). A row whose non-target teacher classes are all −∞
//           has NCKD = 0 (as the CPU fused form). A row of all −∞ (or NaN / +∞) gives NaN unless ignored.
// Bytes     s and t read twice (statistics, then loss + gradient), grad written once: 20 B per class (8 B of DRAM
//           traffic + 4 B write when the row's 8·n bytes stay in L2).
// Flops     pass 1: 2 exps and ~6 flops per class; pass 2: 2 exps and ~14 flops. Memory bound on GPUs.
// Launch    DivergencePlan.For(rows, n): DimX = n rounded down to a power of two in [1, 256], DimY = 256 / DimX;
//           static shared memory 2·256 floats (2 KiB) for the paired trees.
using Engine.Runtime.Kernels;

namespace Engine.Tensors.Kernels;

/// <summary>Fused DKD loss + student-logit gradient (see the file header).</summary>
internal static partial class DkdKernels
{
    /// <summary>The teacher's score of a value: t for logits and log-probabilities (the temperature is applied by the caller's invT), log t for probabilities.</summary>
    [KernelFunction]
    public static float TeacherScore(float x, int teacherInput) => teacherInput == 2 ? XMath.Log(x) : x;

    /// <summary>DKD's row loss and gradient for every row (see the file header).</summary>
    /// <param name="student">Student logits s, [rows, n].</param>
    /// <param name="teacher">Teacher, [rows, n]: logits, log-probabilities or probabilities (<paramref name="teacherInput"/>).</param>
    /// <param name="temperatures">T per row, [rows] or [1]; empty: <paramref name="temperature"/>.</param>
    /// <param name="temperature">T of every row when <paramref name="temperatures"/> is empty.</param>
    /// <param name="labels">The true class of each row, [rows].</param>
    /// <param name="ignoreIndex">Rows whose label equals it get loss 0 and gradient 0.</param>
    /// <param name="rowLoss">Output: c_r·(α·TCKD + β·NCKD), [rows].</param>
    /// <param name="grad">Output: its gradient wrt s, [rows, n].</param>
    /// <param name="rows">Number of rows.</param>
    /// <param name="n">Classes per row (≥ 1).</param>
    /// <param name="alpha">α, the TCKD weight.</param>
    /// <param name="beta">β, the NCKD weight.</param>
    /// <param name="scale">Factor of every row (warm-up factor / the reduction's divisor).</param>
    /// <param name="squareTemperature">Also multiply row r by T_r².</param>
    /// <param name="teacherInput">0: logits (scores t/T); 1: log-probabilities (scores t); 2: probabilities (scores log t).</param>
    [Kernel]
    public static void Dkd(ArrayView<float> student, ArrayView<float> teacher, ArrayView<float> temperatures, float temperature,
        ArrayView<long> labels, long ignoreIndex, ArrayView<float> rowLoss, ArrayView<float> grad,
        int rows, int n, float alpha, float beta, float scale, bool squareTemperature, int teacherInput)
    {
        var shared = SharedMemory.Allocate<float>(2 * DivergenceKernels.MaxGroup);
        int row = Grid.IdxX * Group.DimY + Group.IdxY;
        bool active = row < rows;
        long label = active ? labels[row] : ignoreIndex;
        bool ignored = active && label == ignoreIndex;
        int count = active && !ignored ? n : 0;
        int g = count > 0 ? (int)label : 0;
        long start = (long)row * n;
        float t = active && temperatures.Length > 0 ? temperatures[temperatures.Length == 1 ? 0 : row] : temperature;
        float invT = 1f / t;
        float invTt = teacherInput == 0 ? invT : 1f;

        // Pass 1: non-target statistics of both rows.
        var ss = new FloatPair { A = float.NegativeInfinity, B = 0f };
        var ts = new FloatPair { A = float.NegativeInfinity, B = 0f };
        for (int j = Group.IdxX; j < count; j += Group.DimX)
        {
            if (j == g) continue;
            ss = DivergenceKernels.OnlineAdd(ss, student[start + j], invT);
            ts = DivergenceKernels.OnlineAdd(ts, TeacherScore(teacher[start + j], teacherInput), invTt);
        }
        FloatPair maxes = DivergenceKernels.RowReducePair<MaxReduce>(shared, ss.A, ts.A);
        float sg = count > 0 ? student[start + g] : 0f, tg = count > 0 ? TeacherScore(teacher[start + g], teacherInput) : 0f;
        float ms = MathF.Max(maxes.A, sg), mt = MathF.Max(maxes.B, tg); // the row maxima (NaN propagates)
        FloatPair sums = DivergenceKernels.RowReducePair<SumReduce>(shared,
            DivergenceKernels.Rescale(ss.B, ss.A, ms, invT), DivergenceKernels.Rescale(ts.B, ts.A, mt, invTt));
        float logOtherS = XMath.Log(sums.A), logOtherT = XMath.Log(sums.B); // log S_O (−∞ when no non-target mass)
        float targetS = (sg - ms) * invT, targetT = (tg - mt) * invTt;   // log e_g relative to the max
        float logAllS = DivergenceMath.LogAddExp(targetS, logOtherS), logAllT = DivergenceMath.LogAddExp(targetT, logOtherT);
        float logBs0 = targetS - logAllS, logBs1 = logOtherS - logAllS, logBt0 = targetT - logAllT, logBt1 = logOtherT - logAllT;
        float qg = XMath.Exp(logBs0), pg = XMath.Exp(logBt0), pRest = XMath.Exp(logBt1);
        float tckd = (pg > 0f ? pg * (logBt0 - logBs0) : 0f) + (pRest > 0f ? pRest * (logBt1 - logBs1) : 0f);

        float factor = squareTemperature ? scale * t * t : scale;
        float gradFactor = factor * invT;
        float qhatWeight = gradFactor * (alpha * (pg - qg) + beta), phatWeight = -gradFactor * beta;

        // Pass 2: NCKD's terms and the gradient.
        float nckd = 0f;
        for (int j = Group.IdxX; j < count; j += Group.DimX)
        {
            if (j == g)
            {
                grad[start + j] = gradFactor * alpha * (qg - pg);
                continue;
            }
            float x = student[start + j], y = TeacherScore(teacher[start + j], teacherInput);
            float logQh = x == float.NegativeInfinity ? x : (x - ms) * invT - logOtherS;
            float logPh = y == float.NegativeInfinity ? y : (y - mt) * invTt - logOtherT;
            float qh = XMath.Exp(logQh), ph = XMath.Exp(logPh);
            if (ph > 0f) nckd += ph * (logPh - logQh);
            grad[start + j] = qhatWeight * qh + phatWeight * ph;
        }
        FloatPair totals = DivergenceKernels.RowReducePair<SumReduce>(shared, nckd, 0f);

        if (ignored)
            for (int j = Group.IdxX; j < n; j += Group.DimX) grad[start + j] = 0f;
        if (active && Group.IdxX == 0) rowLoss[row] = ignored ? 0f : factor * (alpha * tckd + beta * totals.A);
    }
}
