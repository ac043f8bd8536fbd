// Multi-teacher distillation (MEAL V2 / per-teacher weights and temperatures; LogitLoss.MultiTeacher): the student
// against the weighted average of K teachers' distributions, loss and student-logit gradient in one kernel (the
// caller's backward only rescales the gradient).
//
// Math      Per row r (T = T_r the student's temperature; teacher k with weight ŵ_k (Σ ŵ = 1) and temperature T_k,
//           default T_r; y_kj the teacher's score: t for logits (divided by T_k) and log-probabilities, log t for
//           probabilities, each teacher renormalized by its own softmax):
//             p̄_j = Σ_k ŵ_k · softmax(y_k / T_k)_j          q = softmax(s/T)
//             KL:  rowLoss_r = c_r · Σ_j p̄_j (log p̄_j − log q_j)       CE: rowLoss_r = c_r · Σ_j −p̄_j log q_j
//             grad_rj = c_r/T · (q_j − p̄_j)                             (both losses: Σ p̄ = 1)
//           c_r = scale · (T_r² if squareTemperature), scale the reduction's 1/divisor. Terms with p̄_j = 0 are 0.
//           Ignored rows (labels given, labels[r] == ignoreIndex) get rowLoss 0 and a zero gradient row.
// Passes    1. online max / Σ exp of s and of teacher 0 in one read, then of each further teacher (one read each);
//              each teacher's (max, log Σ) goes to the global scratch `stats` [rows, K, 2] (written by thread x = 0
//              of the row, read by all after a barrier: K may be any size, no per-thread arrays);
//           2. per class: p̄_j from the K teachers, log q_j → the loss term and the gradient (Σ(−p̄) = −1 is a
//              constant, so no third pass).
// Layout    s, grad contiguous [rows, n]; teachers contiguous [K, rows, n] (the dispatch stacks the K tensors: one
//           extra copy of the teachers); weights [K] (normalized); teacherTemperatures [K] or empty (T_r for all);
//           temperatures [rows], [1] or empty (the scalar); labels int64 [rows] or empty; rowLoss [rows].
//           Groups as DivergencePlan: DimX threads per row (a power of two ≤ n), DimY rows per group.
// Numerics  float32, sums in float (per-thread partials, pairwise tree); exps of (x − max)·invT ≤ 0. p̄_j sums K
//           float terms; log p̄_j = log of that sum (so a class whose averaged mass underflows to 0 contributes 0,
//           as 0·log 0). A −∞ logit is a masked class; a student class at −∞ where p̄ > 0 gives +∞. A teacher row
//           of all −∞ (or NaN / +∞) gives NaN unless the row is ignored.
// Bytes     s read twice, each teacher twice (statistics, then loss + gradient), grad written once:
//           (8 + 8K + 4) B per class (DRAM: 4 + 4K + 4 when a row's bytes stay in L2), plus the dispatch's copy
//           of the teachers (8K B per class).
// Flops     pass 1: (1 + K) exps per class; pass 2: (1 + K) exps, 1 log and ~(6 + 3K) flops. Memory bound on GPUs.
// Launch    DivergencePlan.For(rows, n); static shared memory 2·256 floats (2 KiB).
using Engine.Runtime.Kernels;

namespace Engine.Tensors.Kernels;

/// <summary>Fused multi-teacher loss + student-logit gradient (see the file header).</summary>
internal static partial class MultiTeacherKernels
{
    /// <summary>Multi-teacher row loss and gradient for every row (see the file header).</summary>
    /// <param name="student">Student logits s, [rows, n].</param>
    /// <param name="teachers">The K teachers, [K, rows, n].</param>
    /// <param name="weights">Normalized teacher weights ŵ, [K].</param>
    /// <param name="teacherTemperatures">T_k, [K], or empty: every teacher uses the row's T.</param>
    /// <param name="temperatures">The student's T per row, [rows] or [1]; empty: <paramref name="temperature"/>.</param>
    /// <param name="temperature">T of every row when <paramref name="temperatures"/> is empty.</param>
    /// <param name="labels">Per-row labels, [rows], or empty (no row ignored).</param>
    /// <param name="ignoreIndex">Rows whose label equals it get loss 0 and gradient 0.</param>
    /// <param name="stats">Scratch, [rows, K, 2]: each teacher's row max and log Σ exp.</param>
    /// <param name="rowLoss">Output: c_r·(KL or CE), [rows].</param>
    /// <param name="grad">Output: its gradient wrt s, [rows, n].</param>
    /// <param name="rows">Number of rows.</param>
    /// <param name="n">Classes per row (≥ 1).</param>
    /// <param name="teacherCount">K ≥ 1.</param>
    /// <param name="scale">Factor of every row (the reduction's 1/divisor).</param>
    /// <param name="squareTemperature">Also multiply row r by T_r².</param>
    /// <param name="teacherInput">0: logits (scores t/T_k); 1: log-probabilities (t); 2: probabilities (log t).</param>
    /// <param name="crossEntropy">Soft-target cross-entropy −Σ p̄ log q instead of KL(p̄ ‖ q).</param>
    [Kernel]
    public static void MultiTeacher(ArrayView<float> student, ArrayView<float> teachers, ArrayView<float> weights, ArrayView<float> teacherTemperatures,
        ArrayView<float> temperatures, float temperature, ArrayView<long> labels, long ignoreIndex, ArrayView<float> stats,
        ArrayView<float> rowLoss, ArrayView<float> grad, int rows, int n, int teacherCount, float scale, bool squareTemperature, int teacherInput, bool crossEntropy)
    {
        var shared = SharedMemory.Allocate<float>(2 * DivergenceKernels.MaxGroup);
        int row = Grid.IdxX * Group.DimY + Group.IdxY;
        bool active = row < rows;
        bool ignored = active && labels.Length > 0 && labels[row] == ignoreIndex;
        int count = active && !ignored ? n : 0;
        long start = (long)row * n;
        long plane = (long)rows * n; // elements per teacher
        float t = active && temperatures.Length > 0 ? temperatures[temperatures.Length == 1 ? 0 : row] : temperature;
        float invT = 1f / t;

        // Pass 1: the student's statistics (with teacher 0's) and each teacher's; teachers' go to `stats`.
        float maxS = 0f, logSumS = 0f;
        for (int k = 0; k < teacherCount; k++)
        {
            float invTk = teacherInput != 0 ? 1f : teacherTemperatures.Length > 0 ? 1f / teacherTemperatures[k] : invT;
            long offset = k * plane + start;
            var ss = new FloatPair { A = float.NegativeInfinity, B = 0f };
            var ts = new FloatPair { A = float.NegativeInfinity, B = 0f };
            for (int j = Group.IdxX; j < count; j += Group.DimX)
            {
                if (k == 0) ss = DivergenceKernels.OnlineAdd(ss, student[start + j], invT);
                ts = DivergenceKernels.OnlineAdd(ts, DkdKernels.TeacherScore(teachers[offset + j], teacherInput), invTk);
            }
            FloatPair maxes = DivergenceKernels.RowReducePair<MaxReduce>(shared, ss.A, ts.A);
            FloatPair sums = DivergenceKernels.RowReducePair<SumReduce>(shared,
                DivergenceKernels.Rescale(ss.B, ss.A, maxes.A, invT), DivergenceKernels.Rescale(ts.B, ts.A, maxes.B, invTk));
            if (k == 0)
            {
                maxS = maxes.A;
                logSumS = XMath.Log(sums.A);
            }
            if (count > 0 && Group.IdxX == 0)
            {
                stats[((long)row * teacherCount + k) * 2] = maxes.B;
                stats[((long)row * teacherCount + k) * 2 + 1] = XMath.Log(sums.B);
            }
        }
        Group.Barrier(); // the statistics written by thread x = 0 are read by the whole row

        float factor = squareTemperature ? scale * t * t : scale;
        float gradFactor = factor * invT;

        // Pass 2: p̄_j, the loss term and the gradient.
        float loss = 0f;
        for (int j = Group.IdxX; j < count; j += Group.DimX)
        {
            float pbar = 0f;
            for (int k = 0; k < teacherCount; k++)
            {
                float invTk = teacherInput != 0 ? 1f : teacherTemperatures.Length > 0 ? 1f / teacherTemperatures[k] : invT;
                float y = DkdKernels.TeacherScore(teachers[k * plane + start + j], teacherInput);
                long at = ((long)row * teacherCount + k) * 2;
                if (y != float.NegativeInfinity) pbar += weights[k] * XMath.Exp((y - stats[at]) * invTk - stats[at + 1]);
            }
            float logQ = (student[start + j] - maxS) * invT - logSumS;
            if (pbar > 0f) loss += crossEntropy ? -pbar * logQ : pbar * (XMath.Log(pbar) - logQ);
            grad[start + j] = gradFactor * (XMath.Exp(logQ) - pbar);
        }
        FloatPair totals = DivergenceKernels.RowReducePair<SumReduce>(shared, loss, 0f);

        if (ignored)
            for (int j = Group.IdxX; j < n; j += Group.DimX) grad[start + j] = 0f;
        if (active && Group.IdxX == 0) rowLoss[row] = ignored ? 0f : factor * totals.A;
    }
}
