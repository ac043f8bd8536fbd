// Multi-tensor optimizer steps: ONE launch updates every parameter of a device (PyTorch's
// multi_tensor_apply / fused=True), instead of one launch per parameter (OptimKernels.SgdStep/AdamStep).
//
// Math      Per element exactly OptimKernels.SgdElement / AdamElement (the same [KernelFunction]s, so the
//           same instructions: results are bitwise those of the per-parameter kernels on every backend).
//           Per parameter e (an entry of the step's table): SGD lr_e, wd_e and the flags decay_e, first_e;
//           Adam decayFactor_e, l2_e, stepSize_e, bc2_e (the bias corrections depend on the parameter's own
//           step count) and the flags decoupled_e, coupled_e. Group-wide: momentum, 1 − dampening,
//           Nesterov; β1, β2, eps, amsgrad.
// Layout    The kernel language has no pointers, and OpenCL 1.2 (PoCL) has no device addresses, so a
//           table of (param, grad, state) pointers is not expressible. Instead the optimizer lays every
//           float32 parameter of a device out in one flat buffer (the parameters become views of it), their
//           gradients in a second flat buffer (autograd writes each leaf's gradient into its slot there)
//           and each state kind (momentum buffer; exp_avg, exp_avg_sq, max_exp_avg_sq) in one flat buffer
//           each, all with the same element offsets (Optim/FlatParameters.cs). The step's table then needs
//           only integers:
//             table[4e + 0] = firstChunk_e   (prefix sum of ⌈length/ChunkElements⌉ over the entries before e)
//             table[4e + 1] = offset_e       (element offset of parameter e in every flat buffer)
//             table[4e + 2] = length_e       (elements)
//             table[4e + 3] = flags_e        (bit 0: decay / decoupled, bit 1: first / coupled)
//           and scalars[2e..2e+1] (SGD: lr, wd) or scalars[4e..4e+3] (Adam: decayFactor, l2, stepSize, bc2).
//           Parameters without a gradient this step are simply not in the table (they and their state are
//           untouched, as PyTorch skips them). Offsets are multiples of FlatAlignment (32 elements, 128 B):
//           every chunk starts on a 128-byte boundary.
// Mapping   Group b finds its entry by a binary search of firstChunk (log2 entries reads of a table that
//           stays in cache), then strides its 256 threads over elements [c·Chunk, min((c+1)·Chunk, length))
//           of the entry, c = b − firstChunk_e: coalesced, every thread of a group on one parameter.
// Bytes     As the per-parameter kernels (SGD 12 B/element, 20 B with momentum; Adam 28 B, 36 B with
//           AMSGrad) plus 16 B of table per entry per group: memory bound. The gain is launches: one per
//           step instead of one per parameter (models have hundreds of small parameters; a launch costs
//           ~3-5 µs on CUDA, more than updating a bias of a few thousand elements).
// Launch    grid = Σ_e ⌈length_e / ChunkElements⌉ groups of GroupSize (256) threads, 1-D; no shared memory,
//           no barriers. Flat buffers up to int.MaxValue elements (the host checks).
using Engine.Runtime.Kernels;

namespace Engine.Tensors.Kernels;

/// <summary>SGD and Adam/AdamW steps over all parameters of a device in one launch (see the file header).</summary>
internal static partial class FusedOptimKernels
{
    /// <summary>Threads per group.</summary>
    public const int GroupSize = 256;

    /// <summary>Elements one group updates (8 per thread).</summary>
    public const int ChunkElements = 2048;

    /// <summary>Ints per table entry.</summary>
    public const int TableStride = 4;

    /// <summary>Every parameter's offset in the flat buffers is a multiple of this many elements (128 bytes).</summary>
    public const int FlatAlignment = 32;

    /// <summary>The entry whose chunks include group <paramref name="chunk"/>: the last e with table[4e] ≤ chunk.</summary>
    [KernelFunction]
    public static int FindEntry(ArrayView<int> table, int entries, int chunk)
    {
        int lo = 0, hi = entries - 1;
        while (lo < hi)
        {
            int mid = (lo + hi + 1) / 2;
            if (table[mid * TableStride] <= chunk) lo = mid;
            else hi = mid - 1;
        }
        return lo;
    }

    /// <summary>One SGD step of every parameter in <paramref name="table"/> (torch.optim.SGD, maximize = False).</summary>
    /// <param name="parameters">Flat parameters, updated in place.</param>
    /// <param name="grads">Flat gradients (same offsets).</param>
    /// <param name="buffers">Flat momentum buffers, updated in place (empty without momentum).</param>
    /// <param name="table">4 ints per entry: first chunk, offset, length, flags (bit 0 decay, bit 1 first step of the buffer).</param>
    /// <param name="scalars">2 floats per entry: lr, weight decay.</param>
    /// <param name="entries">Entries in the table (≥ 1).</param>
    /// <param name="momentum">Momentum factor.</param>
    /// <param name="keep">1 − dampening.</param>
    /// <param name="useMomentum">Whether momentum is non-zero.</param>
    /// <param name="nesterov">Nesterov momentum.</param>
    [Kernel]
    public static void SgdStepMulti(ArrayView<float> parameters, ArrayView<float> grads, ArrayView<float> buffers,
        ArrayView<int> table, ArrayView<float> scalars, int entries, float momentum, float keep, bool useMomentum, bool nesterov)
    {
        int chunk = Grid.IdxX;
        int e = FindEntry(table, entries, chunk);
        int offset = table[e * TableStride + 1];
        int length = table[e * TableStride + 2];
        int flags = table[e * TableStride + 3];
        float lr = scalars[e * 2], weightDecay = scalars[e * 2 + 1];
        bool decay = (flags & 1) != 0, first = (flags & 2) != 0;
        int start = (chunk - table[e * TableStride]) * ChunkElements;
        int end = length - start < ChunkElements ? length : start + ChunkElements;
        for (int j = start + Group.IdxX; j < end; j += Group.DimX)
            OptimKernels.SgdElement(parameters, grads, buffers, offset + j, lr, weightDecay, momentum, keep, decay, useMomentum, first, nesterov);
    }

    /// <summary>One Adam / AdamW step of every parameter in <paramref name="table"/> (torch.optim.Adam / AdamW, maximize = False).</summary>
    /// <param name="parameters">Flat parameters, updated in place.</param>
    /// <param name="grads">Flat gradients.</param>
    /// <param name="expAvg">Flat first moments m, updated in place.</param>
    /// <param name="expAvgSq">Flat second moments v, updated in place.</param>
    /// <param name="maxExpAvgSq">Flat AMSGrad maxima of v, updated in place; empty when amsgrad is off.</param>
    /// <param name="table">4 ints per entry: first chunk, offset, length, flags (bit 0 decoupled, bit 1 coupled).</param>
    /// <param name="scalars">4 floats per entry: decayFactor (1 − lr·wd), l2, stepSize (lr/(1 − β1^t)), bc2 (sqrt(1 − β2^t)).</param>
    /// <param name="entries">Entries in the table (≥ 1).</param>
    /// <param name="oneMinusBeta1">1 − β1.</param>
    /// <param name="beta2">β2.</param>
    /// <param name="oneMinusBeta2">1 − β2.</param>
    /// <param name="eps">Added to the denominator after the bias correction.</param>
    [Kernel]
    public static void AdamStepMulti(ArrayView<float> parameters, ArrayView<float> grads, ArrayView<float> expAvg, ArrayView<float> expAvgSq,
        ArrayView<float> maxExpAvgSq, ArrayView<int> table, ArrayView<float> scalars, int entries,
        float oneMinusBeta1, float beta2, float oneMinusBeta2, float eps)
    {
        int chunk = Grid.IdxX;
        int e = FindEntry(table, entries, chunk);
        int offset = table[e * TableStride + 1];
        int length = table[e * TableStride + 2];
        int flags = table[e * TableStride + 3];
        float decayFactor = scalars[e * 4], l2 = scalars[e * 4 + 1], stepSize = scalars[e * 4 + 2], bc2 = scalars[e * 4 + 3];
        bool decoupled = (flags & 1) != 0, coupled = (flags & 2) != 0, amsgrad = maxExpAvgSq.Length > 0;
        int start = (chunk - table[e * TableStride]) * ChunkElements;
        int end = length - start < ChunkElements ? length : start + ChunkElements;
        for (int j = start + Group.IdxX; j < end; j += Group.DimX)
            OptimKernels.AdamElement(parameters, grads, expAvg, expAvgSq, maxExpAvgSq, offset + j, decayFactor, l2, oneMinusBeta1, beta2, oneMinusBeta2,
                stepSize, bc2, eps, decoupled, coupled, amsgrad);
    }
}
