// Top-k sparse teacher KD (LogitLoss.TopKSparse): forward KL from a teacher stored as its k classes per row
// (indices, values), loss and student-logit gradient in one kernel; the dense teacher row is never built.
//
// Math      Per row r (T = T_r, q = softmax(s/T), K the row's k stored classes, distinct, in [0, n)):
//             Renormalize:  p_i = softmax over K of the scores y_i (v_i/T for logits, v_i for log-probabilities,
//                           log v_i for probabilities), p_j = 0 off K;                 P = Σ p = 1
//             Uniform:      p_i = v_i (probabilities) or exp(v_i) (log-probabilities) on K, p_j = ρ off K,
//                           ρ = max(0, 1 − Σ_K p_i)/(n − k) (0 when k = n);           P = Σ_K p_i + (n − k)·ρ
//             rowLoss_r = c_r · [ Σ_K p_i (log p_i − log q_i) + ρ · Σ_{j∉K} (log ρ − log q_j) ]
//             grad_rj   = c_r/T · (P·q_j − p_j)
//           c_r = scale · (T_r² if squareTemperature), scale the reduction's 1/divisor. The off-K sum is taken as
//           Σ_all (−log q_j) − Σ_K (−log q_i): two sums of non-negative terms (no cancellation of (n − k)·lse
//           against Σ z). Ignored rows (labels given, labels[r] == ignoreIndex) get rowLoss 0 and a zero gradient.
// Passes    1. the k stored values (Renormalize: online max / Σ exp of the scores; Uniform: Σ p_i) and the student
//              row's online max / Σ exp, combined by RowReducePair's trees;
//           2. dense: grad_j = c/T·(P·q_j − ρ) for every class (and Σ_all −log q_j when ρ > 0);
//           — a barrier (pass 3 overwrites the stored classes' gradient, written by other threads in pass 2) —
//           3. the k stored classes: their loss terms (and Σ_K −log q_i), grad_i = c/T·(P·q_i − p_i).
// Layout    s, grad contiguous [rows, n]; indices int64 and values contiguous [rows, k] (distinct indices per row,
//           in [0, n): checked on the host, not on the device); temperatures [rows], [1] or empty; labels int64
//           [rows] or empty; rowLoss [rows]. Groups as DivergencePlan.For(rows, n): DimX threads per row stride over
//           the n classes and over the k entries.
// Numerics  float32, sums in float (per-thread partials, pairwise tree). −log q from the row statistics
//           (log Σ − (s − max)/T), never from an underflowed q; Renormalize's log p_i likewise. A student class at −∞
//           where p > 0 gives +∞ (KL is infinite there); p_i = 0 contributes 0.
// Bytes     s read twice, grad written once (12 B per class), plus per stored entry an index and a value read
//           twice, one s gather and one grad scatter (~28 B per entry; k ≪ n). Flops: 2 exps per class (+1 log
//           when ρ > 0 is not needed: −log q is linear in s). Memory bound on GPUs.
// Launch    DivergencePlan.For(rows, n); static shared memory 2·256 floats (2 KiB).
using Engine.Runtime.Kernels;

namespace Engine.Tensors.Kernels;

/// <summary>Fused top-k sparse-teacher KD loss + student-logit gradient (see the file header).</summary>
internal static partial class TopKSparseKernels
{
    /// <summary>log p_i of a stored entry: Renormalize → (y − max)·invTt − log Σ; Uniform → log v (probabilities) or v (log-probabilities).</summary>
    [KernelFunction]
    public static float LogTarget(float value, bool uniform, int teacherInput, float max, float invTt, float logSum)
    {
        if (uniform) return teacherInput == 1 ? value : XMath.Log(value);
        float y = DkdKernels.TeacherScore(value, teacherInput);
        return y == float.NegativeInfinity ? y : (y - max) * invTt - logSum;
    }

    /// <summary>Top-k sparse KD's row loss and gradient for every row (see the file header).</summary>
    /// <param name="student">Student logits s, [rows, n].</param>
    /// <param name="indices">The teacher's stored classes, [rows, k].</param>
    /// <param name="values">The teacher's values at those classes, [rows, k]: logits, log-probabilities or probabilities.</param>
    /// <param name="temperatures">T per row, [rows] or [1]; empty: <paramref name="temperature"/>.</param>
    /// <param name="temperature">T of every row when <paramref name="temperatures"/> is empty.</param>
    /// <param name="labels">Per-row labels, [rows], or empty (no row ignored).</param>
    /// <param name="ignoreIndex">Rows whose label equals it get loss 0 and gradient 0.</param>
    /// <param name="rowLoss">Output: c_r·KL(p ‖ q), [rows].</param>
    /// <param name="grad">Output: its gradient wrt s, [rows, n].</param>
    /// <param name="rows">Number of rows.</param>
    /// <param name="n">Classes per row (≥ 1).</param>
    /// <param name="k">Stored classes per row (1 ≤ k ≤ n).</param>
    /// <param name="scale">Factor of every row (the reduction's 1/divisor).</param>
    /// <param name="squareTemperature">Also multiply row r by T_r².</param>
    /// <param name="teacherInput">0: logits (Renormalize only), 1: log-probabilities, 2: probabilities.</param>
    /// <param name="uniform">Uniform rest (ρ off K) instead of Renormalize.</param>
    [Kernel]
    public static void TopKSparse(ArrayView<float> student, ArrayView<long> indices, ArrayView<float> values, ArrayView<float> temperatures, float temperature,
        ArrayView<long> labels, long ignoreIndex, ArrayView<float> rowLoss, ArrayView<float> grad,
        int rows, int n, int k, float scale, bool squareTemperature, int teacherInput, bool uniform)
    {
        var shared = SharedMemory.Allocate<float>(2 * DivergenceKernels.MaxGroup);
        int row = Grid.IdxX * Group.DimY + Group.IdxY;
        bool active = row < rows;
        bool ignored = active && labels.Length > 0 && labels[row] == ignoreIndex;
        bool counts = active && !ignored;
        int count = counts ? n : 0, stored = counts ? k : 0;
        long start = (long)row * n, kStart = (long)row * k;
        float t = active && temperatures.Length > 0 ? temperatures[temperatures.Length == 1 ? 0 : row] : temperature;
        float invT = 1f / t;
        float invTt = teacherInput == 0 ? invT : 1f;

        // Pass 1: the stored values' statistics (or mass) and the student's.
        var ss = new FloatPair { A = float.NegativeInfinity, B = 0f };
        var ts = new FloatPair { A = float.NegativeInfinity, B = 0f };
        float mass = 0f;
        for (int i = Group.IdxX; i < stored; i += Group.DimX)
        {
            float v = values[kStart + i];
            if (uniform) mass += teacherInput == 1 ? XMath.Exp(v) : v;
            else ts = DivergenceKernels.OnlineAdd(ts, DkdKernels.TeacherScore(v, teacherInput), invTt);
        }
        for (int j = Group.IdxX; j < count; j += Group.DimX) ss = DivergenceKernels.OnlineAdd(ss, student[start + j], invT);
        FloatPair maxes = DivergenceKernels.RowReducePair<MaxReduce>(shared, ss.A, ts.A);
        FloatPair sums = DivergenceKernels.RowReducePair<SumReduce>(shared,
            DivergenceKernels.Rescale(ss.B, ss.A, maxes.A, invT), uniform ? mass : DivergenceKernels.Rescale(ts.B, ts.A, maxes.B, invTt));
        float logSumS = XMath.Log(sums.A), logSumT = uniform ? 0f : XMath.Log(sums.B);
        float rho = uniform && n > k ? XMath.Max(0f, 1f - sums.B) / (n - k) : 0f;
        float total = uniform ? sums.B + rho * (n - k) : 1f; // P = Σ_j p_j

        float factor = squareTemperature ? scale * t * t : scale;
        float gradFactor = factor * invT;

        // Pass 2: the dense gradient P·q − ρ (and Σ_all −log q when ρ > 0).
        float offK = 0f;
        for (int j = Group.IdxX; j < count; j += Group.DimX)
        {
            float nlq = logSumS - (student[start + j] - maxes.A) * invT; // −log q_j
            if (rho > 0f) offK += nlq;
            grad[start + j] = gradFactor * (total * XMath.Exp(-nlq) - rho);
        }
        Group.Barrier(); // pass 3 overwrites entries that other threads of the row wrote in pass 2

        // Pass 3: the stored classes.
        float loss = 0f;
        for (int i = Group.IdxX; i < stored; i += Group.DimX)
        {
            int j = (int)indices[kStart + i];
            float logP = LogTarget(values[kStart + i], uniform, teacherInput, maxes.B, invTt, logSumT);
            float p = XMath.Exp(logP);
            float nlq = logSumS - (student[start + j] - maxes.A) * invT;
            if (p > 0f) loss += p * (logP + nlq);
            if (rho > 0f) offK -= nlq;
            grad[start + j] = gradFactor * (total * XMath.Exp(-nlq) - p);
        }
        FloatPair totals = DivergenceKernels.RowReducePair<SumReduce>(shared, loss, offK);

        if (ignored)
            for (int j = Group.IdxX; j < n; j += Group.DimX) grad[start + j] = 0f;
        if (active && Group.IdxX == 0)
            rowLoss[row] = ignored ? 0f : factor * (totals.A + (rho > 0f ? rho * ((n - k) * XMath.Log(rho) + totals.B) : 0f));
    }
}
