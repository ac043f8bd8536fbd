// Depthwise 2-D convolution (groups = C, one input channel per group, channel multiplier M = Cout / C),
// NCHW float32: forward, backward-data and backward-weight as direct sliding-window kernels. In GEMM terms
// each group is a 1-row product (M = multiplier, K = KH·KW), which would leave 63 of the 64 rows of an
// implicit-GEMM tile idle (ImplicitGemmKernels computes it correctly, but wastes the register tile), so
// depthwise convolutions take these kernels instead.
//
// Math      forward          y[n, co, oy, ox] = Σ_{r, s} w[co, 0, r, s]·x[n, co / M, iy, ix] (+ bias[co]),
//                            iy = oy·SH − PH + r·DH, ix = ox·SW − PW + s·DW (taps outside the input skipped).
//           backward-data    dx[n, c, iy, ix] = Σ_{m < M} Σ_{r, s} w[c·M + m, 0, r, s]·dy[n, c·M + m, oy, ox] over
//                            the taps with iy + PH − r·DH = oy·SH, ix + PW − s·DW = ox·SW in range: a gather,
//                            one thread per dx element, no atomics.
//           backward-weight  dw[co, 0, r, s] = Σ_{q = (n, oy, ox)} dy[n, co, oy, ox]·x[n, co / M, iy, ix]:
//                            one group per (co, tap), threads stride over q, then a shared-memory tree
//                            (ReduceKernels.GroupReduce, the same order on every backend).
//           The op records each one's gradients as another of the three (KernelDispatch.Conv.cs).
// Numerics  float accumulation; forward and backward-data in tap order (r, s) (and m outer), bias added
//           last; backward-weight: per-thread strided sums, then the tree. The CPU's depthwise path sums
//           dw's segments in float64: results agree within N·L·ε·Σ|dy||x|, not bitwise.
// Layout    x and dy any strided views (ImplicitGemmLayout offsets/strides); w contiguous [Cout, 1, KH, KW];
//           y, dx, dw contiguous.
// Bytes     forward: KH·KW reads of x per output (overlapping windows: mostly L1/L2 hits) + KH·KW weight
//           reads (cached) + 4 B written; backward-data: M·KH·KW (dy, w) reads per dx element, of which a
//           1/(SH·SW) share is in range; backward-weight: 2 reads per (q, tap). 2·KH·KW flops per output:
//           memory bound, as depthwise convolution is on every GPU.
// Launch    DepthwiseForward / DepthwiseBackwardData: 1-D, group GroupSize (256), one thread per output /
//           input element. DepthwiseBackwardWeight: group GroupSize, one group per (co, tap): grid Cout·KH·KW;
//           256 floats of static shared memory.
using Engine.Runtime.Kernels;

namespace Engine.Tensors.Kernels;

/// <summary>Depthwise convolution kernels (see the file header).</summary>
internal static partial class DepthwiseConvKernels
{
    /// <summary>Threads per group of all three kernels (a power of two: backward-weight's tree halves it).</summary>
    public const int GroupSize = 256;

    /// <summary>y = depthwise conv2d(x, w) (+ bias); one thread per element of y.</summary>
    [Kernel]
    public static void DepthwiseForward(ArrayView<float> x, ArrayView<float> w, ArrayView<float> bias, ArrayView<float> y, ImplicitGemmLayout p, int count)
    {
        int e = Grid.GlobalIndexX;
        if (e >= count) return;
        int ox = e % p.OW;
        int rest = e / p.OW;
        int oy = rest % p.OH;
        rest /= p.OH;
        int co = rest % p.Cout, n = rest / p.Cout;
        int c = co / p.CoutG;
        int xBase = p.XOffset + n * p.XStrideN + c * p.XStrideC;
        int wBase = co * p.KH * p.KW;
        float acc = 0f;
        for (int r = 0; r < p.KH; r++)
        {
            int iy = oy * p.SH - p.PH + r * p.DH;
            if (iy < 0 || iy >= p.H) continue;
            for (int s = 0; s < p.KW; s++)
            {
                int ix = ox * p.SW - p.PW + s * p.DW;
                if (ix >= 0 && ix < p.W) acc += w[wBase + r * p.KW + s] * x[xBase + iy * p.XStrideH + ix * p.XStrideW];
            }
        }
        if (p.HasBias != 0) acc += bias[p.BiasOffset + co * p.BiasStride];
        y[e] = acc;
    }

    /// <summary>dx = depthwise conv2d backward-data(dy, w); one thread per element of dx.</summary>
    [Kernel]
    public static void DepthwiseBackwardData(ArrayView<float> dy, ArrayView<float> w, ArrayView<float> dx, ImplicitGemmLayout p, int count)
    {
        int e = Grid.GlobalIndexX;
        if (e >= count) return;
        int ix = e % p.W;
        int rest = e / p.W;
        int iy = rest % p.H;
        rest /= p.H;
        int c = rest % p.C, n = rest / p.C;
        int kk = p.KH * p.KW;
        float acc = 0f;
        for (int m = 0; m < p.CoutG; m++)
        {
            int co = c * p.CoutG + m;
            int dyBase = p.DyOffset + n * p.DyStrideN + co * p.DyStrideC;
            for (int r = 0; r < p.KH; r++)
            {
                int ny = iy + p.PH - r * p.DH; // = oy·SH when this tap reads row iy
                if (ny < 0) continue;
                int oy = ny / p.SH;
                if (oy * p.SH != ny || oy >= p.OH) continue;
                for (int s = 0; s < p.KW; s++)
                {
                    int nx = ix + p.PW - s * p.DW;
                    if (nx < 0) continue;
                    int ox = nx / p.SW;
                    if (ox * p.SW != nx || ox >= p.OW) continue;
                    acc += w[co * kk + r * p.KW + s] * dy[dyBase + oy * p.DyStrideH + ox * p.DyStrideW];
                }
            }
        }
        dx[e] = acc;
    }

    /// <summary>dw[co, 0, r, s] = Σ over (n, oy, ox) of dy·x at that tap; one group per (co, tap) = Grid.IdxX.</summary>
    [Kernel]
    public static void DepthwiseBackwardWeight(ArrayView<float> x, ArrayView<float> dy, ArrayView<float> dw, ImplicitGemmLayout p)
    {
        var shared = SharedMemory.Allocate<float>(GroupSize);
        int kk = p.KH * p.KW;
        int co = Grid.IdxX / kk, tap = Grid.IdxX - co * kk;
        int r = tap / p.KW, s = tap - r * p.KW;
        int c = co / p.CoutG;
        int l = p.OH * p.OW;
        int q = p.N * l;
        int dyBase = p.DyOffset + co * p.DyStrideC;
        int xBase = p.XOffset + c * p.XStrideC;
        int dr = r * p.DH - p.PH, ds = s * p.DW - p.PW;
        float acc = 0f;
        for (int j = Group.IdxX; j < q; j += GroupSize)
        {
            int n = j / l;
            int pos = j - n * l;
            int oy = pos / p.OW, ox = pos - oy * p.OW;
            int iy = oy * p.SH + dr, ix = ox * p.SW + ds;
            if (iy >= 0 && iy < p.H && ix >= 0 && ix < p.W)
                acc += dy[dyBase + n * p.DyStrideN + oy * p.DyStrideH + ox * p.DyStrideW] * x[xBase + n * p.XStrideN + iy * p.XStrideH + ix * p.XStrideW];
        }
        acc = ReduceKernels.GroupReduce<SumReduce>(shared, acc);
        if (Group.IdxX == 0) dw[Grid.IdxX] = acc;
    }
}
