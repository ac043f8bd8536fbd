// Fused divergence losses: per row, the divergence D(p, q) between the teacher's p = softmax(t/T) and
// the student's q = softmax(s/T) and its gradient with respect to the student logits s, in one kernel
// (the gradient is written in the forward pass; the caller's backward only rescales it).
//
// Math      Per row r (T = T_r, a = s/T, b = t/T):
//             log q_j = (s_j − max s)·(1/T) − log Σ_k exp((s_k − max s)/T)     (log p_j the same from t)
//             rowLoss_r = c_r · Σ_j ℓ_j                                         c_r = scale · (T² if squareTemperature)
//             grad_rj   = c_r · (u_j − q_j · Σ_k u_k) / T                       (= c_r · ∂D/∂s_j)
//           with ℓ_j and u_j = ∂D/∂log q_j from the op TOp (DivergenceOps.cs: forward KL, reverse KL,
//           JSD_β, total variation, skew KL, skew reverse KL, α-divergence, BD-KD's balanced KL whose weight
//           w_r comes per row from `parameters`). No gradient for the
//           teacher (it is frozen in distillation). The caller reduces rowLoss (sum / mean / ...)
//           and folds its factor into `scale` so that grad is already the final gradient.
//           The teacher may instead be given as log-probabilities log p (used as given) or
//           probabilities p (log p = log t): then T applies to the student only.
//           Ignored rows (labels[r] == ignoreIndex) get rowLoss 0 and a zero gradient row.
// Passes    1. online softmax statistics of s and t (t only when it holds logits) in one read: each thread keeps a running max m
//              and Σ exp((x − m)/T) for both, rescaling its sum when the max grows; then the group
//              combines them: max first, each thread rescales its sum to the row max, then the sum.
//           2. per class: log p, log q, p, q → ℓ_j, u_j; row sums Σℓ and Σu. For ops whose Σu is a
//              constant (forward KL: −1) the gradient is written here and pass 3 is skipped.
//           3. (other ops) the gradient, recomputing u_j from s and t (no extra global buffer).
// Layout    s, t, grad contiguous [rows, n] (row-major, the class dim last); rowLoss [rows];
//           temperatures [rows], [1] (broadcast) or empty (then the scalar `temperature` for every
//           row); labels int64 [rows] or empty (no row ignored); parameters [rows] or empty (the scalar `parameter`). A group (DimX, DimY) works on DimY rows, DimX
//           threads per row striding over its n classes (coalesced: adjacent threads, adjacent
//           classes). Rows past `rows` in the last group take part in the barriers only.
// Numerics  As the softmax kernels: (x − m)·(1/T) in float (the largest term is exactly exp(0) = 1,
//           no overflow at |x| = 1e4 and T = 0.05), sums in float, each thread folding ⌈n/DimX⌉
//           terms then a pairwise tree over DimX threads: relative error ≲ (n/DimX + log2 DimX)·ε per
//           sum. log q uses log of the row sum (never the log of an underflowed q), so the loss of
//           a class with vanishing probability is exact to float rounding. A −∞ logit is a masked
//           class (probability 0; a class masked on both sides is skipped: all its terms are 0). Classes
//           whose probabilities merely underflow are not skipped (the α-divergence's p^α q^(1−α)
//           can be large there for α ∉ [0, 1]). A row whose logits are all −∞ (or contain NaN or
//           +∞) gives NaN, as softmax does — such rows must be ignored via labels.
// Bytes     Forward KL: s and t read twice (statistics, then loss + gradient) + grad written once:
//           20 B per class (8 B of DRAM traffic + 4 B write when a row's 8·n bytes stay in L2).
//           Other ops: s and t read three times + grad written: 28 B per class from L2. A teacher given
//           as log-probabilities or probabilities needs no statistics: 4 B per class less.
//           Registers (NVRTC, sm_70/80/90): 32 (forward KL) to 40 (α), no stack, no spills.
//           Measured (indicative only, no GPU here): [512, 32000], T = 2 on PoCL, 2 shared CPU cores at
//           load ~46: forward KL 2.3 s, JSD 10.2 s per launch (PoCL's scalar code; not a GPU estimate).
// Flops     pass 1: 2 exps (+ rare rescales) and ~6 flops; pass 2: 2 exps + the op (LogMix: 1 expm1
//           + 1 log1p; α: 1 exp) and ~15 flops; pass 3 repeats pass 2's math. Memory bound on GPUs
//           for forward KL; the others are near balance (transcendentals on the SFU).
// Launch    DivergencePlan: DimX = n rounded down to a power of two, clamped to [1, MaxGroup];
//           DimY = MaxGroup / DimX rows per group (so small vocabularies fill a group); grid x =
//           ⌈rows / DimY⌉. Static shared memory: 2·MaxGroup floats (2 KiB) for the paired trees.
using Engine.Runtime.Kernels;

namespace Engine.Tensors.Kernels;

/// <summary>Two floats reduced together by one shared-memory tree.</summary>
internal struct FloatPair
{
    /// <summary>The first value.</summary>
    public float A;

    /// <summary>The second value.</summary>
    public float B;
}

/// <summary>Fused divergence loss + student-logit gradient, one op struct per divergence (see the file header).</summary>
internal static partial class DivergenceKernels
{
    /// <summary>Largest group (threads); the shared trees hold 2·MaxGroup floats.</summary>
    public const int MaxGroup = 256;

    /// <summary>
    /// Folds (a, b) with TOp over the DimX threads of each row of the group (thread y·DimX + x works on
    /// the group's row y) through <paramref name="shared"/> (≥ 2·DimX·DimY floats; DimX a power of two).
    /// Every thread gets its row's pair. Every thread of the group must call it (barriers).
    /// </summary>
    [KernelFunction]
    public static FloatPair RowReducePair<TOp>(ArrayView<float> shared, float a, float b) where TOp : IReduceOp
    {
        int threads = Group.DimX * Group.DimY;
        int first = Group.IdxY * Group.DimX;
        int t = first + Group.IdxX;
        shared[t] = a;
        shared[threads + t] = b;
        Group.Barrier();
        for (int stride = Group.DimX / 2; stride > 0; stride /= 2)
        {
            if (Group.IdxX < stride)
            {
                shared[t] = TOp.Combine(shared[t], shared[t + stride]);
                shared[threads + t] = TOp.Combine(shared[threads + t], shared[threads + t + stride]);
            }
            Group.Barrier();
        }
        var result = new FloatPair { A = shared[first], B = shared[threads + first] };
        Group.Barrier(); // the buffer is reused right after
        return result;
    }

    /// <summary>
    /// Online max and Σ exp((x − max)·invT) of a running (max, sum) after one more element x. The sum
    /// is rescaled when the max grows; −∞ elements are skipped (probability 0), NaN propagates.
    /// </summary>
    [KernelFunction]
    public static FloatPair OnlineAdd(FloatPair stats, float x, float invT)
    {
        if (x > stats.A) return new FloatPair { A = x, B = stats.B * XMath.Exp((stats.A - x) * invT) + 1f };
        if (x == float.NegativeInfinity) return stats;
        return new FloatPair { A = stats.A, B = stats.B + XMath.Exp((x - stats.A) * invT) };
    }

    /// <summary>
    /// log p_j of the teacher's value x: from logits ((x − max)·invT − log Σ, <paramref name="input"/> 0),
    /// given log-probabilities (x itself, 1) or given probabilities (log x, 2; 0 gives −∞, a masked class).
    /// </summary>
    [KernelFunction]
    public static float TeacherLogProbability(float x, float max, float invT, float logSum, int input)
        => input == 0 ? (x - max) * invT - logSum : input == 1 ? x : XMath.Log(x);

    /// <summary>A thread's partial sum rescaled from its own max to the row max (0 when it saw no finite element).</summary>
    [KernelFunction]
    public static float Rescale(float sum, float ownMax, float rowMax, float invT)
        => sum > 0f ? sum * XMath.Exp((ownMax - rowMax) * invT) : sum;

    /// <summary>Loss and gradient of one divergence for every row (see the file header for the math and layout).</summary>
    /// <param name="student">Student logits s, [rows, n].</param>
    /// <param name="teacher">Teacher t, [rows, n]: logits, log-probabilities or probabilities (<paramref name="teacherInput"/>).</param>
    /// <param name="temperatures">T per row, [rows], or [1] for all rows; empty: <paramref name="temperature"/> for all rows.</param>
    /// <param name="temperature">T of every row when <paramref name="temperatures"/> is empty.</param>
    /// <param name="labels">Per-row labels, [rows]; empty: no row is ignored.</param>
    /// <param name="ignoreIndex">Rows whose label equals it get loss 0 and gradient 0.</param>
    /// <param name="rowLoss">Output: c_r·D_r, [rows].</param>
    /// <param name="grad">Output: c_r·∂D_r/∂s, [rows, n].</param>
    /// <param name="rows">Number of rows.</param>
    /// <param name="n">Classes per row (≥ 1).</param>
    /// <param name="parameter">The op's parameter (β, λ or α; unused by KL and TV) when <paramref name="parameters"/> is empty.</param>
    /// <param name="parameters">Per-row parameters, [rows] (BD-KD's weight w_r), or empty: <paramref name="parameter"/> for every row.</param>
    /// <param name="scale">Factor of every row's loss and gradient.</param>
    /// <param name="squareTemperature">Also multiply row r by T_r².</param>
    /// <param name="teacherInput">0: t are logits (p = softmax(t/T)); 1: t are log p (used as given: no temperature, no
    /// normalization); 2: t are p (log p = log t).</param>
    [Kernel, KernelInstance(typeof(ForwardKLOp)), KernelInstance(typeof(ReverseKLOp)), KernelInstance(typeof(JensenShannonOp)),
     KernelInstance(typeof(TotalVariationOp)), KernelInstance(typeof(SkewKLOp)), KernelInstance(typeof(SkewReverseKLOp)), KernelInstance(typeof(AlphaOp)),
     KernelInstance(typeof(BalancedKLOp))]
    public static void Divergence<TOp>(ArrayView<float> student, ArrayView<float> teacher, ArrayView<float> temperatures, float temperature,
        ArrayView<long> labels, long ignoreIndex, ArrayView<float> rowLoss, ArrayView<float> grad,
        int rows, int n, float parameter, ArrayView<float> parameters, float scale, bool squareTemperature, int teacherInput) where TOp : IDivergenceOp
    {
        var shared = SharedMemory.Allocate<float>(2 * MaxGroup);
        int row = Grid.IdxX * Group.DimY + Group.IdxY;
        bool active = row < rows;
        bool ignored = active && labels.Length > 0 && labels[row] == ignoreIndex;
        int count = active && !ignored ? n : 0; // inactive and ignored rows only join the barriers
        long start = (long)row * n;
        float t = active && temperatures.Length > 0 ? temperatures[temperatures.Length == 1 ? 0 : row] : temperature;
        float invT = 1f / t;
        float param = active && parameters.Length > 0 ? parameters[row] : parameter;

        // Pass 1: online max / sum of exponentials of both rows in one read.
        var ss = new FloatPair { A = float.NegativeInfinity, B = 0f };
        var ts = new FloatPair { A = float.NegativeInfinity, B = 0f };
        bool teacherLogits = teacherInput == 0; // otherwise the teacher needs no statistics
        for (int j = Group.IdxX; j < count; j += Group.DimX)
        {
            ss = OnlineAdd(ss, student[start + j], invT);
            if (teacherLogits) ts = OnlineAdd(ts, teacher[start + j], invT);
        }
        FloatPair maxes = RowReducePair<MaxReduce>(shared, ss.A, ts.A);
        FloatPair sums = RowReducePair<SumReduce>(shared, Rescale(ss.B, ss.A, maxes.A, invT), Rescale(ts.B, ts.A, maxes.B, invT));
        float logSumS = XMath.Log(sums.A), logSumT = XMath.Log(sums.B);

        float factor = squareTemperature ? scale * t * t : scale;
        float gradFactor = factor * invT;

        // Pass 2: loss terms and weight sum (and the gradient, when the weight sum is a constant).
        bool fixedSum = TOp.HasFixedWeightSum();
        float fixedWeightSum = TOp.WeightSum();
        float loss = 0f, weights = 0f;
        for (int j = Group.IdxX; j < count; j += Group.DimX)
        {
            float logQ = (student[start + j] - maxes.A) * invT - logSumS;
            float logP = TeacherLogProbability(teacher[start + j], maxes.B, invT, logSumT, teacherInput);
            float q = XMath.Exp(logQ), p = XMath.Exp(logP);
            float g = 0f;
            if (logP != float.NegativeInfinity || logQ != float.NegativeInfinity)
            {
                DivergenceTerm term = TOp.Term(logP, logQ, p, q, param);
                loss += term.Loss;
                weights += term.Weight;
                g = term.Weight - q * fixedWeightSum;
            }
            if (fixedSum) grad[start + j] = gradFactor * g;
        }
        FloatPair totals = RowReducePair<SumReduce>(shared, loss, weights);

        // Pass 3: the gradient u_j − q_j·Σu, recomputing u_j.
        if (!fixedSum)
        {
            for (int j = Group.IdxX; j < count; j += Group.DimX)
            {
                float logQ = (student[start + j] - maxes.A) * invT - logSumS;
                float logP = TeacherLogProbability(teacher[start + j], maxes.B, invT, logSumT, teacherInput);
                float q = XMath.Exp(logQ), p = XMath.Exp(logP);
                float g = 0f;
                if (logP != float.NegativeInfinity || logQ != float.NegativeInfinity) g = TOp.Term(logP, logQ, p, q, param).Weight - q * totals.B;
                grad[start + j] = gradFactor * g;
            }
        }

        if (ignored)
            for (int j = Group.IdxX; j < n; j += Group.DimX) grad[start + j] = 0f;
        if (active && Group.IdxX == 0) rowLoss[row] = ignored ? 0f : factor * totals.A;
    }
}
