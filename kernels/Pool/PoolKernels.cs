// Max pooling on a device: the maximum of each window and its position, float32 values, int64 indices.
//
// Math      y[p, oy, ox] = max over taps (i, j) of x[p, oy·SH − PH + i·DH, ox·SW − PW + j·DW] (taps in
//           the padding are skipped: −∞ padding); idx[p, oy, ox] = iy·W + ix of the winner. Ties: the
//           first tap in row-major window order wins; a NaN wins and ends the scan (PyTorch's rule, the
//           CPU loop's order: Ops/Pool.cs MaxPoolKernel). A window with no input element (dilation
//           spreading every tap into the padding) gives −∞ at index 0, as the CPU op.
//           Gradient (recorded by the op): g scatter-added at idx (kernels/Indexing ScatterAdd), whose
//           own gradient is a gather, so double backward works.
// Layout    x contiguous [planes, H, W]; y and idx contiguous [planes, OH, OW]; geometry in ConvLayout.
// Bytes     KH·KW·4 B read (mostly cache hits for overlapping windows), 4 + 8 B written per output.
//           Comparisons only: memory bound.
// Indexing  int (32-bit) element counts; the host refuses 2^31 elements or more.
// Launch    1-D, group PoolKernels.GroupSize (256), one thread per output element, grid = ceil(count / 256).
using Engine.Runtime.Kernels;

namespace Engine.Tensors.Kernels;

/// <summary>Max pooling (see the file header).</summary>
internal static partial class PoolKernels
{
    /// <summary>Threads per group.</summary>
    public const int GroupSize = 256;

    /// <summary>y = window max, idx = its flat position in the input plane; one thread per output element.</summary>
    [Kernel]
    public static void MaxPool2d(ArrayView<float> x, ArrayView<float> y, ArrayView<long> idx, ConvLayout g, int count)
    {
        int e = Grid.GlobalIndexX;
        if (e >= count) return;
        int ohw = g.OH * g.OW;
        int plane = e / ohw, pos = e % ohw;
        int oy = pos / g.OW, ox = pos % g.OW;
        int start = plane * g.H * g.W;
        int best = -1;
        float bestValue = 0f;
        bool done = false;
        for (int i = 0; i < g.KH && !done; i++)
        {
            int iy = oy * g.SH - g.PH + i * g.DH;
            if (iy < 0 || iy >= g.H) continue;
            for (int j = 0; j < g.KW && !done; j++)
            {
                int ix = ox * g.SW - g.PW + j * g.DW;
                if (ix < 0 || ix >= g.W) continue;
                float v = x[start + iy * g.W + ix];
                bool nan = float.IsNaN(v);
                if (best < 0 || v > bestValue || nan)
                {
                    best = iy * g.W + ix;
                    bestValue = v;
                    if (nan) done = true;
                }
            }
        }
        if (best < 0)
        {
            best = 0;
            bestValue = float.NegativeInfinity;
        }
        y[e] = bestValue;
        idx[e] = best;
    }
}
