// Plackett–Luce distillation (PLD; LogitLoss.PlackettLuce): a confidence-weighted list-wise loss on the student logits
// for the teacher's ranking, loss and student-logit gradient in one kernel (the caller's backward only rescales the
// gradient).
//
// Math      Per row r with true class y, teacher confidences w = softmax(u/T) (u = t for logits, divided by T = T_r;
//           t for log-probabilities and log t for probabilities, T not applied), student logits s used as they are:
//             π   = (y, then the other classes by descending w; ties by ascending class index)
//             L_k = log Σ_{j ≥ k} exp(s_{π_j})                             (suffix log-sum-exp along the ranking)
//             rowLoss_r = −scale · Σ_k w_{π_k}·(s_{π_k} − L_k)              (terms with w = 0 are 0)
//             grad_{r,π_m} = scale · (exp(s_{π_m} + log A_m) − w_{π_m}),   log A_m = log Σ_{k ≤ m} w_{π_k}·exp(−L_k)
//           scale: the reduction's 1/divisor (no T²: PLD is not a divergence of tempered distributions). Ignored rows
//           (labels[r] == ignoreIndex) get rowLoss 0 and a zero gradient row.
// Ranking   On the device the ranking is a per-row bitonic sort of (key, class) pairs in global scratch, padded to
//           N = the next power of two ≥ n: key = the teacher's raw value t_j (softmax, division by T > 0 and log are
//           monotone, so t orders the classes exactly as w does, with the same ties as the CPU's float64 log w — no
//           rounding of w can reorder two classes), the label gets key +∞ and class −1 (first), padding key −∞ and
//           class int.MaxValue (last). Comparison: larger key first, equal keys by smaller class. O(N log² N)
//           compare-swaps per row in log2 N·(log2 N + 1)/2 barrier-separated stages (every stage reads and writes the
//           row's 8·N scratch bytes: L2-resident for classification vocabularies; for V in the tens of thousands the sort
//           dominates, ~120 stages of N/2 compare-swaps). No O(V²) work anywhere.
// Scans     Both scans run in log space with logaddexp (exact for −∞, no underflow whatever the logit spread, where the
//           CPU's linear suffix sums switch to log space): thread x owns the contiguous ranks [x·c, (x+1)·c),
//           c = ⌈n/DimX⌉; its chunk's total, an exclusive scan of the DimX totals in shared memory (Hillis–Steele,
//           log2 DimX barrier steps), then a walk through its chunk — right to left for L (stored over the sorted keys,
//           no longer needed), left to right for log A, the loss and the gradient (scattered to class π_m).
// Passes    1. teacher statistics (online max / Σ exp of the scores); 2. keys; 3. the sort; 4. the suffix scan;
//           5. the prefix scan with loss and gradient.
// Layout    s, t, grad contiguous [rows, n]; labels int64 [rows] (required: the true class in [0, n) unless ignored; not
//           checked on the device); temperatures [rows], [1] or empty; keys float and classes int32 scratch [rows, N];
//           rowLoss [rows]. Groups as DivergencePlan: DimX threads per row (a power of two ≤ n), DimY rows per group;
//           every thread joins every barrier (ignored and padding rows do no work).
// Numerics  float32. logaddexp(a, b) = max + log1p(exp(−|a − b|)); each walk step adds ~1 ulp of L_k. A student class at
//           −∞ ranked where w > 0 gives +∞. Loss terms summed per thread then by the pairwise tree.
// Bytes     s and t read ~3 times (statistics / keys / gathers), grad written once (scattered), scratch 8·N bytes written
//           and read per sort stage. Flops: per class ~4 exps/logs in the scans; the sort's compares dominate for large n.
// Launch    DivergencePlan.For(rows, n); static shared memory 2·256 floats (2 KiB); the dispatch launches row batches so
//           that the scratch stays ≤ 64 MiB.
using Engine.Runtime.Kernels;

namespace Engine.Tensors.Kernels;

/// <summary>Fused PLD loss + student-logit gradient with a per-row bitonic sort for the ranking (see the file header).</summary>
internal static partial class PlackettLuceKernels
{
    /// <summary>True when (keyA, classA) comes before (keyB, classB) in the ranking: larger key first, then smaller class.</summary>
    [KernelFunction]
    public static bool Before(float keyA, int classA, float keyB, int classB) => keyA > keyB || (keyA == keyB && classA < classB);

    /// <summary>
    /// Exclusive logaddexp scan of one value per thread over the DimX threads of each row (forward: threads before x;
    /// reverse: threads after x) through <paramref name="shared"/> (≥ 2·DimX·DimY floats). Every thread must call it.
    /// </summary>
    [KernelFunction]
    public static float RowScanExclusive(ArrayView<float> shared, float value, bool reverse)
    {
        int threads = Group.DimX * Group.DimY;
        int first = Group.IdxY * Group.DimX;
        int pos = reverse ? Group.DimX - 1 - Group.IdxX : Group.IdxX;
        shared[first + pos] = value;
        Group.Barrier();
        int src = 0;
        for (int stride = 1; stride < Group.DimX; stride *= 2)
        {
            float v = shared[src + first + pos];
            if (pos >= stride) v = DivergenceMath.LogAddExp(shared[src + first + pos - stride], v);
            shared[threads - src + first + pos] = v;
            Group.Barrier();
            src = threads - src;
        }
        float result = pos > 0 ? shared[src + first + pos - 1] : float.NegativeInfinity;
        Group.Barrier(); // the buffer is reused right after
        return result;
    }

    /// <summary>PLD's row loss and gradient for every row (see the file header).</summary>
    /// <param name="student">Student logits s, [rows, n].</param>
    /// <param name="teacher">Teacher, [rows, n]: logits, log-probabilities or probabilities (<paramref name="teacherInput"/>).</param>
    /// <param name="temperatures">T per row, [rows] or [1]; empty: <paramref name="temperature"/>.</param>
    /// <param name="temperature">T of every row when <paramref name="temperatures"/> is empty.</param>
    /// <param name="labels">The true class of each row, [rows].</param>
    /// <param name="ignoreIndex">Rows whose label equals it get loss 0 and gradient 0.</param>
    /// <param name="keys">Scratch, [rows, padded]: sort keys, then the suffix log-sum-exps L.</param>
    /// <param name="classes">Scratch, [rows, padded]: the classes in ranking order (−1: the label).</param>
    /// <param name="rowLoss">Output: scale·PLD, [rows].</param>
    /// <param name="grad">Output: its gradient wrt s, [rows, n].</param>
    /// <param name="rows">Number of rows.</param>
    /// <param name="n">Classes per row (≥ 1).</param>
    /// <param name="padded">N: a power of two ≥ n.</param>
    /// <param name="scale">Factor of every row (the reduction's 1/divisor).</param>
    /// <param name="teacherInput">0: logits (scores t/T); 1: log-probabilities (t); 2: probabilities (log t).</param>
    [Kernel]
    public static void PlackettLuce(ArrayView<float> student, ArrayView<float> teacher, ArrayView<float> temperatures, float temperature,
        ArrayView<long> labels, long ignoreIndex, ArrayView<float> keys, ArrayView<int> classes, ArrayView<float> rowLoss, ArrayView<float> grad,
        int rows, int n, int padded, float scale, int teacherInput)
    {
        var shared = SharedMemory.Allocate<float>(2 * DivergenceKernels.MaxGroup);
        int row = Grid.IdxX * Group.DimY + Group.IdxY;
        bool active = row < rows;
        long label = active ? labels[row] : ignoreIndex;
        bool ignored = active && label == ignoreIndex;
        bool counts = active && !ignored;
        int count = counts ? n : 0, slots = counts ? padded : 0;
        int y = counts ? (int)label : 0;
        long start = (long)row * n, sortStart = (long)row * padded;
        float t = active && temperatures.Length > 0 ? temperatures[temperatures.Length == 1 ? 0 : row] : temperature;
        float invTt = teacherInput == 0 ? 1f / t : 1f;

        // Pass 1: the teacher's statistics (for w).
        var ts = new FloatPair { A = float.NegativeInfinity, B = 0f };
        for (int j = Group.IdxX; j < count; j += Group.DimX)
            ts = DivergenceKernels.OnlineAdd(ts, DkdKernels.TeacherScore(teacher[start + j], teacherInput), invTt);
        FloatPair maxes = DivergenceKernels.RowReducePair<MaxReduce>(shared, ts.A, 0f);
        FloatPair sums = DivergenceKernels.RowReducePair<SumReduce>(shared, DivergenceKernels.Rescale(ts.B, ts.A, maxes.A, invTt), 0f);
        float maxT = maxes.A, logSumT = XMath.Log(sums.A);

        // Pass 2: the keys (label first, padding last).
        for (int j = Group.IdxX; j < slots; j += Group.DimX)
        {
            bool real = j < n;
            keys[sortStart + j] = !real ? float.NegativeInfinity : j == y ? float.PositiveInfinity : teacher[start + j];
            classes[sortStart + j] = !real ? int.MaxValue : j == y ? -1 : j;
        }
        Group.Barrier();

        // Pass 3: bitonic sort of the row's (key, class) pairs into ranking order.
        for (int size = 2; size <= padded; size *= 2)
        {
            for (int stride = size / 2; stride > 0; stride /= 2)
            {
                for (int i = Group.IdxX; i < slots / 2; i += Group.DimX)
                {
                    int a = 2 * stride * (i / stride) + i % stride, b = a + stride;
                    bool forward = (a & size) == 0;
                    float ka = keys[sortStart + a], kb = keys[sortStart + b];
                    int ca = classes[sortStart + a], cb = classes[sortStart + b];
                    if (Before(kb, cb, ka, ca) == forward)
                    {
                        keys[sortStart + a] = kb;
                        keys[sortStart + b] = ka;
                        classes[sortStart + a] = cb;
                        classes[sortStart + b] = ca;
                    }
                }
                Group.Barrier();
            }
        }

        // Pass 4: suffix log-sum-exps L_k (thread x owns ranks [lo, hi)), stored over the keys.
        int chunk = (n + Group.DimX - 1) / Group.DimX;
        int lo = counts ? Group.IdxX * chunk : 0;
        if (lo > n) lo = n;
        int hi = counts ? lo + chunk : 0;
        if (hi > n) hi = n;
        float own = float.NegativeInfinity;
        for (int k = lo; k < hi; k++)
        {
            int c = classes[sortStart + k];
            own = DivergenceMath.LogAddExp(own, student[start + (c < 0 ? y : c)]);
        }
        float running = RowScanExclusive(shared, own, true);
        for (int k = hi - 1; k >= lo; k--)
        {
            int c = classes[sortStart + k];
            running = DivergenceMath.LogAddExp(student[start + (c < 0 ? y : c)], running);
            keys[sortStart + k] = running;
        }

        // Pass 5: prefix log A_m, the loss and the gradient.
        own = float.NegativeInfinity;
        for (int k = lo; k < hi; k++)
        {
            int c = classes[sortStart + k];
            float score = DkdKernels.TeacherScore(teacher[start + (c < 0 ? y : c)], teacherInput);
            if (score != float.NegativeInfinity) own = DivergenceMath.LogAddExp(own, (score - maxT) * invTt - logSumT - keys[sortStart + k]);
        }
        float logA = RowScanExclusive(shared, own, false);
        float loss = 0f;
        for (int k = lo; k < hi; k++)
        {
            int c = classes[sortStart + k];
            int cls = c < 0 ? y : c;
            float s = student[start + cls], lk = keys[sortStart + k];
            float score = DkdKernels.TeacherScore(teacher[start + cls], teacherInput);
            float logW = score == float.NegativeInfinity ? score : (score - maxT) * invTt - logSumT;
            if (logW != float.NegativeInfinity) logA = DivergenceMath.LogAddExp(logA, logW - lk);
            float w = XMath.Exp(logW);
            if (w > 0f) loss -= w * (s - lk);
            grad[start + cls] = scale * ((logA == float.NegativeInfinity ? 0f : XMath.Exp(s + logA)) - w);
        }
        FloatPair totals = DivergenceKernels.RowReducePair<SumReduce>(shared, loss, 0f);

        if (ignored)
            for (int j = Group.IdxX; j < n; j += Group.DimX) grad[start + j] = 0f;
        if (active && Group.IdxX == 0) rowLoss[row] = ignored ? 0f : scale * totals.A;
    }
}
