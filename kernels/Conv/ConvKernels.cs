// Convolution building blocks on a device: im2col (Unfold) and its adjoint col2im (Fold), float32.
// Conv2d on a device runs the implicit-GEMM kernels (ImplicitGemmKernels.cs, DepthwiseConvKernels.cs);
// its fallback (Tensor.ConvComposite, when KernelDispatch.ImplicitGemmConv2d declines: 32-bit index
// overflow or ENGINE_CONV=im2col) is Unfold + the device GEMM (kernels/Gemm) + a broadcast bias add, whose
// input, weight and bias gradients are Fold, GEMM and a sum.
//
// Math      Unfold: y[p, t, l] = x[p, oy·SH − PH + i·DH, ox·SW − PW + j·DW] (0 outside the input), for
//           plane p = n·C + c, tap t = i·KW + j, output position l = oy·OW + ox.
//           Fold:   x[p, iy, ix] = Σ_{t, l : Unfold reads (iy, ix) at (t, l)} cols[p, t, l]: the adjoint
//           of Unfold (overlapping windows add up). Gradient of Unfold is Fold and vice versa (recorded
//           by the ops, so double backward works).
// Layout    x contiguous [planes, H, W]; cols contiguous [planes, KH·KW, OH·OW] (= [N, C·KH·KW, L]).
//           Geometry travels by value in ConvLayout.
// Numerics  Unfold copies. Fold is a gather, not a scatter: one thread per input element walks the
//           taps in order t = 0, 1, ... and adds the (at most one per tap) column entry that reads it,
//           starting from 0 — the same terms in the same order as the CPU loop (Ops/Conv.cs FoldKernel),
//           so the results are bitwise equal and no atomics are needed.
// Bytes     Unfold: 4 B written per output element, ≤ 4 B read (the input is re-read KH·KW times,
//           mostly from cache). Fold: ≤ KH·KW·4 B read + 4 B written per input element. 0 flops /
//           KH·KW adds per element: memory bound.
// Indexing  int (32-bit): the host refuses tensors of 2^31 elements or more.
// Launch    1-D, group ConvKernels.GroupSize (256), one thread per output element (Unfold) or per
//           input element (Fold), grid = ceil(count / 256). No shared memory, no barriers.
using Engine.Runtime.Kernels;

namespace Engine.Tensors.Kernels;

/// <summary>The geometry of a 2-D sliding window over [planes, H, W] (kernel, stride, padding, dilation; all by value).</summary>
internal struct ConvLayout
{
    /// <summary>N·C: the number of input planes.</summary>
    public int Planes;
    /// <summary>Input height and width.</summary>
    public int H, W;
    /// <summary>Output height and width.</summary>
    public int OH, OW;
    /// <summary>Kernel height and width.</summary>
    public int KH, KW;
    /// <summary>Strides.</summary>
    public int SH, SW;
    /// <summary>Paddings (zeros for convolution, −∞ for max pooling).</summary>
    public int PH, PW;
    /// <summary>Dilations.</summary>
    public int DH, DW;
}

/// <summary>im2col and col2im (see the file header).</summary>
internal static partial class ConvKernels
{
    /// <summary>Threads per group.</summary>
    public const int GroupSize = 256;

    /// <summary>cols[p, t, l] = x[p, iy, ix] or 0 in the padding; one thread per element of cols.</summary>
    [Kernel]
    public static void Im2Col(ArrayView<float> x, ArrayView<float> cols, ConvLayout g, int count)
    {
        int e = Grid.GlobalIndexX;
        if (e >= count) return;
        int l = g.OH * g.OW, kk = g.KH * g.KW;
        int pos = e % l;
        int row = e / l;
        int tap = row % kk, plane = row / kk;
        int i = tap / g.KW, j = tap % g.KW;
        int oy = pos / g.OW, ox = pos % g.OW;
        int iy = oy * g.SH - g.PH + i * g.DH;
        int ix = ox * g.SW - g.PW + j * g.DW;
        float v = 0f;
        if (iy >= 0 && iy < g.H && ix >= 0 && ix < g.W) v = x[plane * g.H * g.W + iy * g.W + ix];
        cols[e] = v;
    }

    /// <summary>x[p, iy, ix] = Σ over taps (in order) of the column entry that Im2Col read from (iy, ix); one thread per element of x.</summary>
    [Kernel]
    public static void Col2Im(ArrayView<float> cols, ArrayView<float> x, ConvLayout g, int count)
    {
        int e = Grid.GlobalIndexX;
        if (e >= count) return;
        int hw = g.H * g.W;
        int plane = e / hw, rest = e % hw;
        int iy = rest / g.W, ix = rest % g.W;
        int l = g.OH * g.OW, kk = g.KH * g.KW;
        float acc = 0f;
        for (int tap = 0; tap < kk; tap++)
        {
            int i = tap / g.KW, j = tap % g.KW;
            int ny = iy + g.PH - i * g.DH; // = oy·SH
            int nx = ix + g.PW - j * g.DW; // = ox·SW
            if (ny < 0 || nx < 0 || ny % g.SH != 0 || nx % g.SW != 0) continue;
            int oy = ny / g.SH, ox = nx / g.SW;
            if (oy >= g.OH || ox >= g.OW) continue;
            acc += cols[(plane * kk + tap) * l + oy * g.OW + ox];
        }
        x[e] = acc;
    }
}
