// BatchNorm2d in training mode, fused, on a device: per-channel Welford statistics read straight
// from NCHW, the normalization in one pass, and the backward in two passes. float32.
//
// Math      Forward (per channel c over the M = N·H·W values x of that channel):
//             μ = mean(x), σ² = mean((x − μ)²) (biased), r = 1/√(σ² + eps),
//             y = ((x − μ)·r)·γ + β                       (the CPU composite's order of operations)
//           Backward, with x̂ = (x − μ)·r and g = ∂L/∂y:
//             ∂L/∂β = Σ g,  ∂L/∂γ = Σ g·x̂,
//             ∂L/∂x = γ·r·(g − Σg/M − x̂·Σ(g·x̂)/M)        (the gradient through μ and σ² included)
//           The op records this fused backward for first derivatives; under create_graph it uses the
//           same formula written with differentiable tensor ops (NN/BatchNorm2d via KernelDispatch.Norm).
// Layout    x, y, g, dx contiguous [N, C, H, W]; μ, σ², r, γ, β, Σg, Σg·x̂ contiguous [C]. Channel of
//           element i: (i / HW) mod C; element m of channel c: (m / HW)·C·HW + c·HW + m mod HW.
// Numerics  Statistics: Welford per thread in float, partial (count, mean, M2) merged pairwise by
//           Chan's formula (see NormKernels.cs): no Σx² − (Σx)²/M cancellation. The backward sums
//           are float partial sums reduced by a shared-memory tree. The CPU composite (float32 sums,
//           float64 two-pass variance) rounds differently: the tests bound the difference (~1e-6
//           relative on unit-scale data).
// Bytes     Stats: 4 B read per element. Forward: 8 B per element (+ 4 [C] vectors). Backward reduce:
//           8 B read per element; backward apply: 12 B per element. ~5 flops per element per pass:
//           memory bound. Compared with the composite (mean, var with a transposing copy, sub, add,
//           rsqrt, mul, mul, add and their backward), about 4× less traffic.
// Launch    Stats and backward reduce: one group per channel, group = M rounded up to a power of two
//           clamped to [32, 256] (BatchNormKernels.MaxGroup); static shared memory 3 KiB / 2 KiB.
//           Forward and backward apply: 1-D groups of 256, one thread per element.
// Indexing  int (32-bit): the host refuses inputs of 2^31 elements or more.
using Engine.Runtime.Kernels;

namespace Engine.Tensors.Kernels;

/// <summary>Fused BatchNorm2d training kernels (see the file header).</summary>
internal static partial class BatchNormKernels
{
    /// <summary>Largest reduction group (the size of the shared buffers).</summary>
    public const int MaxGroup = 256;

    /// <summary>Threads per group of the elementwise passes.</summary>
    public const int GroupSize = 256;

    /// <summary>mean[c], biased var[c] and invStd[c] = 1/√(var[c] + eps) of channel c = Grid.IdxX, by Welford.</summary>
    [Kernel]
    public static void Stats(ArrayView<float> x, ArrayView<float> mean, ArrayView<float> variance, ArrayView<float> invStd, int n, int c, int hw, float eps)
    {
        var sCount = SharedMemory.Allocate<int>(MaxGroup);
        var sMean = SharedMemory.Allocate<float>(MaxGroup);
        var sM2 = SharedMemory.Allocate<float>(MaxGroup);
        int t = Group.IdxX, ch = Grid.IdxX;
        int total = n * hw;
        int count = 0;
        float mu = 0f, m2 = 0f;
        for (int m = t; m < total; m += Group.DimX)
        {
            float v = x[(m / hw) * c * hw + ch * hw + m % hw];
            count += 1;
            float delta = v - mu;
            mu += delta / count;
            m2 += delta * (v - mu);
        }
        sCount[t] = count;
        sMean[t] = mu;
        sM2[t] = m2;
        Group.Barrier();
        for (int stride = Group.DimX / 2; stride > 0; stride /= 2)
        {
            if (t < stride)
            {
                int na = sCount[t], nb = sCount[t + stride];
                int sum = na + nb;
                if (nb > 0 && sum > 0)
                {
                    float ma = sMean[t];
                    float delta = sMean[t + stride] - ma;
                    float fb = (float)nb / sum;
                    sMean[t] = ma + delta * fb;
                    sM2[t] = sM2[t] + sM2[t + stride] + delta * delta * ((float)na * fb);
                    sCount[t] = sum;
                }
            }
            Group.Barrier();
        }
        if (t == 0)
        {
            float var = MathF.Max(0f, sM2[0]) / sCount[0];
            mean[ch] = sMean[0];
            variance[ch] = var;
            invStd[ch] = 1f / MathF.Sqrt(var + eps);
        }
    }

    /// <summary>y[i] = ((x[i] − mean[c])·invStd[c])·weight[c] + bias[c], c the channel of i; one thread per element.</summary>
    [Kernel]
    public static void Forward(ArrayView<float> x, ArrayView<float> mean, ArrayView<float> invStd, ArrayView<float> weight, ArrayView<float> bias,
        ArrayView<float> y, int c, int hw, int count)
    {
        int i = Grid.GlobalIndexX;
        if (i >= count) return;
        int ch = i / hw % c;
        y[i] = (x[i] - mean[ch]) * invStd[ch] * weight[ch] + bias[ch];
    }

    /// <summary>sumG[c] = Σ g and sumGX[c] = Σ g·x̂ over channel c = Grid.IdxX (x̂ = (x − mean)·invStd).</summary>
    [Kernel]
    public static void BackwardReduce(ArrayView<float> g, ArrayView<float> x, ArrayView<float> mean, ArrayView<float> invStd,
        ArrayView<float> sumG, ArrayView<float> sumGX, int n, int c, int hw)
    {
        var sG = SharedMemory.Allocate<float>(MaxGroup);
        var sGX = SharedMemory.Allocate<float>(MaxGroup);
        int t = Group.IdxX, ch = Grid.IdxX;
        int total = n * hw;
        float mu = mean[ch], r = invStd[ch];
        float accG = 0f, accGX = 0f;
        for (int m = t; m < total; m += Group.DimX)
        {
            int at = (m / hw) * c * hw + ch * hw + m % hw;
            float gv = g[at];
            accG += gv;
            accGX += gv * ((x[at] - mu) * r);
        }
        sG[t] = accG;
        sGX[t] = accGX;
        Group.Barrier();
        for (int stride = Group.DimX / 2; stride > 0; stride /= 2)
        {
            if (t < stride)
            {
                sG[t] = sG[t] + sG[t + stride];
                sGX[t] = sGX[t] + sGX[t + stride];
            }
            Group.Barrier();
        }
        if (t == 0)
        {
            sumG[ch] = sG[0];
            sumGX[ch] = sGX[0];
        }
    }

    /// <summary>dx[i] = weight[c]·invStd[c]·(g[i] − sumG[c]/M − x̂[i]·sumGX[c]/M); one thread per element.</summary>
    [Kernel]
    public static void BackwardInput(ArrayView<float> g, ArrayView<float> x, ArrayView<float> mean, ArrayView<float> invStd, ArrayView<float> weight,
        ArrayView<float> sumG, ArrayView<float> sumGX, ArrayView<float> dx, int c, int hw, int count, float invM)
    {
        int i = Grid.GlobalIndexX;
        if (i >= count) return;
        int ch = i / hw % c;
        float r = invStd[ch];
        float xhat = (x[i] - mean[ch]) * r;
        dx[i] = weight[ch] * r * (g[i] - sumG[ch] * invM - xhat * (sumGX[ch] * invM));
    }
}
