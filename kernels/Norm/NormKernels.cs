// Normalization statistics on a device: variance (and standard deviation) of rows by Welford's
// algorithm, and the square-root maps that BatchNorm / LayerNorm use, float32.
//
// Math      VarRows   y[r] = M2_r / divisor (or its square root), M2_r = Σ_j (x[r, j] − mean_r)², with
//                     divisor = max(0, n − correction) chosen by the host (Tensor.Var/Std). n = 0 gives NaN.
//           NormUnary sqrt(x), 1/sqrt(x) (Tensor.SqrtOp, Tensor.RsqrtOp: the CPU's own op structs).
//           No gradient here: Var's backward is written with mean/sub/mul (Ops/Reductions.cs), and
//           BatchNorm2d is composed of mean, var, sub, rsqrt, mul and add (NN/BatchNorm2d.cs), so its
//           gradient flows through the batch statistics on every device.
// Layout    x contiguous [rows, n] (the host permutes the reduced dims last and copies when needed);
//           y contiguous [rows]. NormUnary: strided input, contiguous output (ElementwiseLayout).
// Numerics  Welford in float: thread t folds x[r, t], x[r, t+G], ... with the running update
//           (count += 1; δ = x − mean; mean += δ/count; M2 += δ·(x − mean)), then the partial
//           (count, mean, M2) triples are merged pairwise by Chan's formula
//           (δ = mean_b − mean_a; mean = mean_a + δ·n_b/n; M2 = M2_a + M2_b + δ²·n_a·n_b/n) over log2 G
//           levels. No catastrophic cancellation (Σx² − (Σx)²/n is never formed), so a large mean does
//           not destroy the variance; the CPU's two-pass float64 version is slightly more accurate and
//           the tests bound the difference. Counts are ints (exact).
// Bytes     VarRows: 4 B read per element, ~8 flops per element (one division): memory bound on GPUs.
//           NormUnary: 8 B per element.
// Launch    VarRows: one group per row, group = n rounded up to a power of two clamped to [32, 256]
//           (NormKernels.MaxGroup); static shared memory 3·256·4 B = 3 KiB. NormUnary: 1-D groups of
//           256, one thread per output element.
using Engine.Runtime.Kernels;
using Engine.Tensors.Cpu;

namespace Engine.Tensors.Kernels;

/// <summary>Welford variance and square-root maps (see the file header).</summary>
internal static partial class NormKernels
{
    /// <summary>Largest VarRows group (the size of its shared buffers).</summary>
    public const int MaxGroup = 256;

    /// <summary>y[r] = Σ (x[r, j] − mean)² / divisor, or its square root when <paramref name="takeSqrt"/>; one group per row.</summary>
    [Kernel]
    public static void VarRows(ArrayView<float> x, ArrayView<float> y, int n, float divisor, bool takeSqrt)
    {
        var sCount = SharedMemory.Allocate<int>(MaxGroup);
        var sMean = SharedMemory.Allocate<float>(MaxGroup);
        var sM2 = SharedMemory.Allocate<float>(MaxGroup);
        int t = Group.IdxX;
        long start = (long)Grid.IdxX * n;
        int count = 0;
        float mean = 0f, m2 = 0f;
        for (int j = t; j < n; j += Group.DimX)
        {
            float v = x[start + j];
            count += 1;
            float delta = v - mean;
            mean += delta / count;
            m2 += delta * (v - mean);
        }
        sCount[t] = count;
        sMean[t] = mean;
        sM2[t] = m2;
        Group.Barrier();
        for (int stride = Group.DimX / 2; stride > 0; stride /= 2)
        {
            if (t < stride)
            {
                int na = sCount[t], nb = sCount[t + stride];
                int total = na + nb;
                if (nb > 0 && total > 0)
                {
                    float ma = sMean[t], mb = sMean[t + stride];
                    float delta = mb - ma;
                    float fb = (float)nb / total;
                    sMean[t] = ma + delta * fb;
                    sM2[t] = sM2[t] + sM2[t + stride] + delta * delta * ((float)na * fb);
                    sCount[t] = total;
                }
            }
            Group.Barrier();
        }
        if (t == 0)
        {
            float result = sCount[0] == 0 ? float.NaN : MathF.Max(0f, sM2[0]) / divisor;
            y[Grid.IdxX] = takeSqrt ? MathF.Sqrt(result) : result;
        }
    }

    /// <summary>y[i] = TOp(x[offset(i)]) for sqrt and 1/sqrt (the CPU's op structs).</summary>
    [Kernel, KernelInstance(typeof(Tensor.SqrtOp)), KernelInstance(typeof(Tensor.RsqrtOp))]
    public static void NormUnary<TOp>(ArrayView<float> x, ArrayView<float> y, ElementwiseLayout layout) where TOp : IFloatUnary
    {
        int i = Grid.GlobalIndexX;
        if (i >= y.Length) return;
        int rest = i, ix = layout.OffsetA;
        for (int d = ElementwiseKernels.MaxRank - 1; d >= 0; d--)
        {
            if (d >= layout.Rank) continue;
            int c = rest % layout.Shape[d];
            rest /= layout.Shape[d];
            ix += c * layout.StrideA[d];
        }
        y[i] = TOp.Invoke(x[ix]);
    }
}
