// Implicit-GEMM 2-D convolution (NCHW, float32): forward, backward-data and backward-weight as tiled
// GEMMs whose column operand is the *virtual* im2col matrix — each group loads its slice of it straight
// from x (or dy) into shared memory, computing (c, r, s) and (n, oy, ox) from the GEMM indices, so the
// [C·KH·KW, N·OH·OW] column matrix is never written to memory (the Im2Col path writes and re-reads it).
//
// Notation  x [N, C, H, W], w [Cout, Cpg, KH, KW] (Cpg = C / G input channels per group, CoutG = Cout / G),
//           y and dy [N, Cout, OH, OW], L = OH·OW, KK = KH·KW, Kg = Cpg·KK. Group g of G = Grid.IdxZ.
//           Tap (r, s) of output (oy, ox) reads iy = oy·SH − PH + r·DH, ix = ox·SW − PW + s·DW (0 outside).
// Math      forward          y[n, g·CoutG + m, l] = Σ_{k<Kg} W[g·CoutG + m, k]·X̂g[k, (n, l)] (+ bias[co])
//                            M = CoutG, N = N·L (the batch is folded into the columns), K = Kg,
//                            X̂g[(c, r, s), (n, oy, ox)] = x[n, g·Cpg + c, iy, ix].
//           backward-data    dx[n, g·Cpg + c, iy, ix] = Σ_{k=(co, r, s)} W[g·CoutG + co, c, r, s]·dY[k, (n, iy, ix)]
//                            M = Cpg, N = N·H·W, K = CoutG·KK; dY[(co, r, s), (n, iy, ix)] = dy[n, g·CoutG + co,
//                            oy, ox] when iy + PH − r·DH = oy·SH and ix + PW − s·DW = ox·SW for some in-range
//                            (oy, ox), else 0. A gather: each dx element is written once, no atomics; with stride
//                            S only 1/(SH·SW) of the taps are non-zero (the zero products are still computed).
//           backward-weight  dW[g·CoutG + m, k] = Σ_{q=(n, oy, ox) < N·L} dy[n, g·CoutG + m, oy, ox]·X̂g[k, q]
//                            M = CoutG, N = Kg, K = N·L (reduction over the batch and the output plane), split
//                            into Splits chunks of QPerSplit along q (Grid.IdxZ = g·Splits + split), each chunk
//                            writing its own partial [Splits, Cout, Kg]; SumSplits adds them in split order.
//           The three are each other's adjoints; the op (KernelDispatch.Conv.cs) records them so that
//           gradients of any order are again one of these three kernels.
// Numerics  float accumulation in k (or q) order, one running sum per output (c += a·b; NVRTC and OpenCL
//           may contract to fma, the emulator rounds the product); backward-weight: ascending q inside a
//           split, splits added in order, so the result does not depend on the launch. Summation orders
//           differ from the CPU's (which sums over co first and then col2im's taps for dx, and per image
//           for dW): equal to it within K·ε·Σ|a||b|, not bitwise. Bias is added after the sum, as on the CPU.
// Layout    x and dy are any strided views (offset and four strides by value: a non-contiguous input or
//           the expanded gradient of a sum is read in place); w contiguous; y, dx contiguous [N, ·, ·, ·];
//           partials contiguous [Splits, Cout, Kg]; bias any 1-D view (offset, stride) or absent.
// Tiling    as kernels/Gemm Sgemm: a group of 16×16 threads owns a 64×64 output tile; per step of 16
//           along K it stages a 64×16 tile of A (as [k][m], rows padded to 65 floats) and a 16×64 tile of
//           the virtual B in shared memory (out of range → 0, so every size works), and each thread
//           accumulates 4×4 outputs (ty + 16·a, tx + 16·b) in registers. Each thread's B column (forward,
//           backward-data: the output position; backward-weight: the reduction index q) is fixed for the
//           launch or the step, so its (n, oy, ox) division is done once, not per element.
// Flops     2·M·N·K per kernel: 2·N·Cout·Kg·L for forward and backward-weight; backward-data does
//           2·N·C·H·W·CoutG·KK (SH·SW times the useful work for strided convolutions).
// Bytes     global reads: the A operand once per 64 columns of output, the virtual B once per 64 rows
//           (e.g. forward: 4·Kg·(CoutG·⌈N·L/64⌉ + N·L·⌈CoutG/64⌉) B per group, x itself re-read KK times,
//           mostly from L1/L2), plus 4 B written per output; 16 flops per float staged from L2 when both tile
//           sides are full. Compared with Im2Col + Sgemm it saves writing and re-reading 4·N·Kg·L·G bytes.
// Indexing  int (32-bit): ImplicitGemmPlan refuses shapes whose element offsets exceed 2^31 − 1.
// Launch    ImplicitGemmPlan: ConvForward, ConvBackwardData, ConvBackwardWeight (entry points named so they do not
//           clash with other families' Forward kernels) group (16, 16); grid (⌈cols/64⌉, ⌈rows/64⌉, G) (backward-weight: G·Splits).
//           Static shared memory (16·65 + 16·65)·4 = 8320 bytes; 16 accumulators per thread, no spills.
//           SumSplits: 1-D, group 256, one thread per element of dW.
using Engine.Runtime.Kernels;

namespace Engine.Tensors.Kernels;

/// <summary>One convolution as the implicit-GEMM kernels see it (sizes, window, strides of the strided operands; by value).</summary>
internal struct ImplicitGemmLayout
{
    /// <summary>Batch, input channels, input height and width.</summary>
    public int N, C, H, W;
    /// <summary>Output channels, output height and width.</summary>
    public int Cout, OH, OW;
    /// <summary>Kernel height and width.</summary>
    public int KH, KW;
    /// <summary>Strides.</summary>
    public int SH, SW;
    /// <summary>Zero paddings.</summary>
    public int PH, PW;
    /// <summary>Dilations.</summary>
    public int DH, DW;
    /// <summary>Groups, input channels per group (C / Groups), output channels per group (Cout / Groups).</summary>
    public int Groups, Cpg, CoutG;
    /// <summary>Element offset and strides (n, c, h, w) of x.</summary>
    public int XOffset, XStrideN, XStrideC, XStrideH, XStrideW;
    /// <summary>Element offset and strides (n, c, oy, ox) of dy.</summary>
    public int DyOffset, DyStrideN, DyStrideC, DyStrideH, DyStrideW;
    /// <summary>1 when the forward adds a bias (read at BiasOffset + co·BiasStride), else 0.</summary>
    public int HasBias, BiasOffset, BiasStride;
    /// <summary>backward-weight: chunks of the reduction over q = (n, oy, ox), and the length of each (a multiple of TileK).</summary>
    public int Splits, QPerSplit;
}

/// <summary>Implicit-GEMM convolution kernels (see the file header).</summary>
internal static partial class ImplicitGemmKernels
{
    /// <summary>Rows of the output tile per group.</summary>
    public const int TileM = 64;
    /// <summary>Columns of the output tile per group.</summary>
    public const int TileN = 64;
    /// <summary>Step along the reduction staged in shared memory.</summary>
    public const int TileK = 16;
    /// <summary>Threads per group side (16×16 threads, each 4×4 outputs).</summary>
    public const int Threads = 16;
    /// <summary>Row length of a staged tile ([k][m] or [k][n]), padded by one float against bank conflicts.</summary>
    public const int Padded = TileM + 1;
    /// <summary>Threads per group of SumSplits.</summary>
    public const int SumGroupSize = 256;

    /// <summary>Forward epilogue: y[n, co, l] = value (+ bias[co]) for output row (channel in group) <paramref name="row"/> and column j = n·L + l, if inside.</summary>
    [KernelFunction]
    public static void StoreForward(ArrayView<float> y, ArrayView<float> bias, int hasBias, int biasOffset, int biasStride,
        int coBase, int coutG, int cout, int l, int cols, int row, int j, float value)
    {
        if (row >= coutG || j >= cols) return;
        int co = coBase + row;
        int n = j / l;
        float v = value;
        if (hasBias != 0) v += bias[biasOffset + co * biasStride];
        y[(n * cout + co) * l + (j - n * l)] = v;
    }

    /// <summary>Backward-data epilogue: dx[n, c, hw] = value for input channel (in group) <paramref name="row"/> and column j = n·H·W + hw, if inside.</summary>
    [KernelFunction]
    public static void StoreData(ArrayView<float> dx, int cBase, int cpg, int cin, int hw, int cols, int row, int j, float value)
    {
        if (row >= cpg || j >= cols) return;
        int n = j / hw;
        dx[(n * cin + cBase + row) * hw + (j - n * hw)] = value;
    }

    /// <summary>Backward-weight epilogue: out[co, k] = value for output channel (in group) <paramref name="row"/> and column k, if inside.</summary>
    [KernelFunction]
    public static void StoreWeight(ArrayView<float> output, int baseIndex, int coutG, int kg, int row, int k, float value)
    {
        if (row < coutG && k < kg) output[baseIndex + row * kg + k] = value;
    }

    /// <summary>y = conv2d(x, w) (+ bias): one 64×64 tile of [CoutG, N·L] per group, group g = Grid.IdxZ (see the file header).</summary>
    [Kernel]
    public static void ConvForward(ArrayView<float> x, ArrayView<float> w, ArrayView<float> bias, ArrayView<float> y, ImplicitGemmLayout p)
    {
        var tileA = SharedMemory.Allocate<float>(TileK * Padded);
        var tileB = SharedMemory.Allocate<float>(TileK * Padded);
        int tx = Group.IdxX, ty = Group.IdxY;
        int t = ty * Threads + tx;
        int g = Grid.IdxZ;
        int rowBase = Grid.IdxY * TileM, colBase = Grid.IdxX * TileN;
        int kk2 = p.KH * p.KW;
        int kg = p.Cpg * kk2;
        int l = p.OH * p.OW;
        int cols = p.N * l;
        // A = W[g·CoutG + m, k]: this thread stages column aK of the tile, rows aRow + 16·i.
        int aK = t % TileK, aRow = t / TileK;
        int wBase = (g * p.CoutG + rowBase) * kg;
        // B = X̂g[k, j]: this thread stages column bCol (output position j, fixed for the launch), rows bRow + 4·i.
        int bCol = t % TileN, bRow = t / TileN;
        int j = colBase + bCol;
        bool colOk = j < cols;
        int n = colOk ? j / l : 0;
        int pos = j - n * l;
        int oy = colOk ? pos / p.OW : 0;
        int ox = pos - oy * p.OW;
        int xBase = p.XOffset + n * p.XStrideN + g * p.Cpg * p.XStrideC;
        int iy0 = oy * p.SH - p.PH, ix0 = ox * p.SW - p.PW;
        float c00 = 0f, c01 = 0f, c02 = 0f, c03 = 0f;
        float c10 = 0f, c11 = 0f, c12 = 0f, c13 = 0f;
        float c20 = 0f, c21 = 0f, c22 = 0f, c23 = 0f;
        float c30 = 0f, c31 = 0f, c32 = 0f, c33 = 0f;
        for (int k0 = 0; k0 < kg; k0 += TileK)
        {
            int ka = k0 + aK;
            for (int i = 0; i < 4; i++)
            {
                int m = aRow + 16 * i;
                tileA[aK * Padded + m] = rowBase + m < p.CoutG && ka < kg ? w[wBase + m * kg + ka] : 0f;
            }
            for (int i = 0; i < 4; i++)
            {
                int kk = bRow + 4 * i;
                int k = k0 + kk;
                float v = 0f;
                if (colOk && k < kg)
                {
                    int c = k / kk2;
                    int tap = k - c * kk2;
                    int r = tap / p.KW;
                    int iy = iy0 + r * p.DH, ix = ix0 + (tap - r * p.KW) * p.DW;
                    if (iy >= 0 && iy < p.H && ix >= 0 && ix < p.W) v = x[xBase + c * p.XStrideC + iy * p.XStrideH + ix * p.XStrideW];
                }
                tileB[kk * Padded + bCol] = v;
            }
            Group.Barrier();
            for (int kk = 0; kk < TileK; kk++)
            {
                int ai = kk * Padded + ty, bi = kk * Padded + tx;
                float a0 = tileA[ai], a1 = tileA[ai + 16], a2 = tileA[ai + 32], a3 = tileA[ai + 48];
                float b0 = tileB[bi], b1 = tileB[bi + 16], b2 = tileB[bi + 32], b3 = tileB[bi + 48];
                c00 += a0 * b0; c01 += a0 * b1; c02 += a0 * b2; c03 += a0 * b3;
                c10 += a1 * b0; c11 += a1 * b1; c12 += a1 * b2; c13 += a1 * b3;
                c20 += a2 * b0; c21 += a2 * b1; c22 += a2 * b2; c23 += a2 * b3;
                c30 += a3 * b0; c31 += a3 * b1; c32 += a3 * b2; c33 += a3 * b3;
            }
            Group.Barrier();
        }
        int coBase = g * p.CoutG;
        int r0 = rowBase + ty, j0 = colBase + tx;
        StoreForward(y, bias, p.HasBias, p.BiasOffset, p.BiasStride, coBase, p.CoutG, p.Cout, l, cols, r0, j0, c00);
        StoreForward(y, bias, p.HasBias, p.BiasOffset, p.BiasStride, coBase, p.CoutG, p.Cout, l, cols, r0, j0 + 16, c01);
        StoreForward(y, bias, p.HasBias, p.BiasOffset, p.BiasStride, coBase, p.CoutG, p.Cout, l, cols, r0, j0 + 32, c02);
        StoreForward(y, bias, p.HasBias, p.BiasOffset, p.BiasStride, coBase, p.CoutG, p.Cout, l, cols, r0, j0 + 48, c03);
        StoreForward(y, bias, p.HasBias, p.BiasOffset, p.BiasStride, coBase, p.CoutG, p.Cout, l, cols, r0 + 16, j0, c10);
        StoreForward(y, bias, p.HasBias, p.BiasOffset, p.BiasStride, coBase, p.CoutG, p.Cout, l, cols, r0 + 16, j0 + 16, c11);
        StoreForward(y, bias, p.HasBias, p.BiasOffset, p.BiasStride, coBase, p.CoutG, p.Cout, l, cols, r0 + 16, j0 + 32, c12);
        StoreForward(y, bias, p.HasBias, p.BiasOffset, p.BiasStride, coBase, p.CoutG, p.Cout, l, cols, r0 + 16, j0 + 48, c13);
        StoreForward(y, bias, p.HasBias, p.BiasOffset, p.BiasStride, coBase, p.CoutG, p.Cout, l, cols, r0 + 32, j0, c20);
        StoreForward(y, bias, p.HasBias, p.BiasOffset, p.BiasStride, coBase, p.CoutG, p.Cout, l, cols, r0 + 32, j0 + 16, c21);
        StoreForward(y, bias, p.HasBias, p.BiasOffset, p.BiasStride, coBase, p.CoutG, p.Cout, l, cols, r0 + 32, j0 + 32, c22);
        StoreForward(y, bias, p.HasBias, p.BiasOffset, p.BiasStride, coBase, p.CoutG, p.Cout, l, cols, r0 + 32, j0 + 48, c23);
        StoreForward(y, bias, p.HasBias, p.BiasOffset, p.BiasStride, coBase, p.CoutG, p.Cout, l, cols, r0 + 48, j0, c30);
        StoreForward(y, bias, p.HasBias, p.BiasOffset, p.BiasStride, coBase, p.CoutG, p.Cout, l, cols, r0 + 48, j0 + 16, c31);
        StoreForward(y, bias, p.HasBias, p.BiasOffset, p.BiasStride, coBase, p.CoutG, p.Cout, l, cols, r0 + 48, j0 + 32, c32);
        StoreForward(y, bias, p.HasBias, p.BiasOffset, p.BiasStride, coBase, p.CoutG, p.Cout, l, cols, r0 + 48, j0 + 48, c33);
    }

    /// <summary>dx = conv2d backward-data(dy, w): one 64×64 tile of [Cpg, N·H·W] per group, group g = Grid.IdxZ (see the file header).</summary>
    [Kernel]
    public static void ConvBackwardData(ArrayView<float> dy, ArrayView<float> w, ArrayView<float> dx, ImplicitGemmLayout p)
    {
        var tileA = SharedMemory.Allocate<float>(TileK * Padded);
        var tileB = SharedMemory.Allocate<float>(TileK * Padded);
        int tx = Group.IdxX, ty = Group.IdxY;
        int t = ty * Threads + tx;
        int g = Grid.IdxZ;
        int rowBase = Grid.IdxY * TileM, colBase = Grid.IdxX * TileN;
        int kk2 = p.KH * p.KW;
        int kTotal = p.CoutG * kk2;
        int hw = p.H * p.W;
        int cols = p.N * hw;
        // A[c, k = co·KK + tap] = W[g·CoutG + co, c, tap]: this thread stages column aK, rows aRow + 16·i.
        int aK = t % TileK, aRow = t / TileK;
        // B[k, j]: this thread stages column bCol (input position j = (n, iy, ix), fixed), rows bRow + 4·i.
        int bCol = t % TileN, bRow = t / TileN;
        int j = colBase + bCol;
        bool colOk = j < cols;
        int n = colOk ? j / hw : 0;
        int rest = j - n * hw;
        int iy = colOk ? rest / p.W : 0;
        int ix = rest - iy * p.W;
        int dyBase = p.DyOffset + n * p.DyStrideN + g * p.CoutG * p.DyStrideC;
        int ny0 = iy + p.PH, nx0 = ix + p.PW;
        float c00 = 0f, c01 = 0f, c02 = 0f, c03 = 0f;
        float c10 = 0f, c11 = 0f, c12 = 0f, c13 = 0f;
        float c20 = 0f, c21 = 0f, c22 = 0f, c23 = 0f;
        float c30 = 0f, c31 = 0f, c32 = 0f, c33 = 0f;
        for (int k0 = 0; k0 < kTotal; k0 += TileK)
        {
            int ka = k0 + aK;
            int coA = ka / kk2;
            int wBase = ((g * p.CoutG + coA) * p.Cpg + rowBase) * kk2 + (ka - coA * kk2);
            for (int i = 0; i < 4; i++)
            {
                int m = aRow + 16 * i;
                tileA[aK * Padded + m] = rowBase + m < p.Cpg && ka < kTotal ? w[wBase + m * kk2] : 0f;
            }
            for (int i = 0; i < 4; i++)
            {
                int kk = bRow + 4 * i;
                int k = k0 + kk;
                float v = 0f;
                if (colOk && k < kTotal)
                {
                    int co = k / kk2;
                    int tap = k - co * kk2;
                    int r = tap / p.KW;
                    int ny = ny0 - r * p.DH, nx = nx0 - (tap - r * p.KW) * p.DW; // = oy·SH, ox·SW when this tap reads (iy, ix)
                    if (ny >= 0 && nx >= 0)
                    {
                        int oy = ny / p.SH, ox = nx / p.SW;
                        if (oy * p.SH == ny && ox * p.SW == nx && oy < p.OH && ox < p.OW)
                            v = dy[dyBase + co * p.DyStrideC + oy * p.DyStrideH + ox * p.DyStrideW];
                    }
                }
                tileB[kk * Padded + bCol] = v;
            }
            Group.Barrier();
            for (int kk = 0; kk < TileK; kk++)
            {
                int ai = kk * Padded + ty, bi = kk * Padded + tx;
                float a0 = tileA[ai], a1 = tileA[ai + 16], a2 = tileA[ai + 32], a3 = tileA[ai + 48];
                float b0 = tileB[bi], b1 = tileB[bi + 16], b2 = tileB[bi + 32], b3 = tileB[bi + 48];
                c00 += a0 * b0; c01 += a0 * b1; c02 += a0 * b2; c03 += a0 * b3;
                c10 += a1 * b0; c11 += a1 * b1; c12 += a1 * b2; c13 += a1 * b3;
                c20 += a2 * b0; c21 += a2 * b1; c22 += a2 * b2; c23 += a2 * b3;
                c30 += a3 * b0; c31 += a3 * b1; c32 += a3 * b2; c33 += a3 * b3;
            }
            Group.Barrier();
        }
        int cBase = g * p.Cpg;
        int r0 = rowBase + ty, j0 = colBase + tx;
        StoreData(dx, cBase, p.Cpg, p.C, hw, cols, r0, j0, c00); StoreData(dx, cBase, p.Cpg, p.C, hw, cols, r0, j0 + 16, c01);
        StoreData(dx, cBase, p.Cpg, p.C, hw, cols, r0, j0 + 32, c02); StoreData(dx, cBase, p.Cpg, p.C, hw, cols, r0, j0 + 48, c03);
        StoreData(dx, cBase, p.Cpg, p.C, hw, cols, r0 + 16, j0, c10); StoreData(dx, cBase, p.Cpg, p.C, hw, cols, r0 + 16, j0 + 16, c11);
        StoreData(dx, cBase, p.Cpg, p.C, hw, cols, r0 + 16, j0 + 32, c12); StoreData(dx, cBase, p.Cpg, p.C, hw, cols, r0 + 16, j0 + 48, c13);
        StoreData(dx, cBase, p.Cpg, p.C, hw, cols, r0 + 32, j0, c20); StoreData(dx, cBase, p.Cpg, p.C, hw, cols, r0 + 32, j0 + 16, c21);
        StoreData(dx, cBase, p.Cpg, p.C, hw, cols, r0 + 32, j0 + 32, c22); StoreData(dx, cBase, p.Cpg, p.C, hw, cols, r0 + 32, j0 + 48, c23);
        StoreData(dx, cBase, p.Cpg, p.C, hw, cols, r0 + 48, j0, c30); StoreData(dx, cBase, p.Cpg, p.C, hw, cols, r0 + 48, j0 + 16, c31);
        StoreData(dx, cBase, p.Cpg, p.C, hw, cols, r0 + 48, j0 + 32, c32); StoreData(dx, cBase, p.Cpg, p.C, hw, cols, r0 + 48, j0 + 48, c33);
    }

    /// <summary>
    /// Partial dW of one split of the reduction: one 64×64 tile of [CoutG, Kg] per group, Grid.IdxZ = g·Splits + split;
    /// writes partials[split, g·CoutG + m, k] (see the file header).
    /// </summary>
    [Kernel]
    public static void ConvBackwardWeight(ArrayView<float> x, ArrayView<float> dy, ArrayView<float> partials, ImplicitGemmLayout p)
    {
        var tileA = SharedMemory.Allocate<float>(TileK * Padded);
        var tileB = SharedMemory.Allocate<float>(TileK * Padded);
        int tx = Group.IdxX, ty = Group.IdxY;
        int t = ty * Threads + tx;
        int g = Grid.IdxZ / p.Splits, split = Grid.IdxZ - g * p.Splits;
        int rowBase = Grid.IdxY * TileM, colBase = Grid.IdxX * TileN;
        int kk2 = p.KH * p.KW;
        int kg = p.Cpg * kk2;
        int l = p.OH * p.OW;
        int qEnd = p.N * l;
        int qBegin = split * p.QPerSplit;
        if (qBegin + p.QPerSplit < qEnd) qEnd = qBegin + p.QPerSplit;
        // Both staged tiles are [q][·]: this thread stages reduction index q = q0 + tq of both, rows (A) or columns (B) tr + 16·i.
        int tq = t % TileK, tr = t / TileK;
        int dyRows = p.DyOffset + (g * p.CoutG + rowBase) * p.DyStrideC;
        int xGroup = p.XOffset + g * p.Cpg * p.XStrideC;
        float c00 = 0f, c01 = 0f, c02 = 0f, c03 = 0f;
        float c10 = 0f, c11 = 0f, c12 = 0f, c13 = 0f;
        float c20 = 0f, c21 = 0f, c22 = 0f, c23 = 0f;
        float c30 = 0f, c31 = 0f, c32 = 0f, c33 = 0f;
        for (int q0 = qBegin; q0 < qEnd; q0 += TileK)
        {
            int q = q0 + tq;
            bool qOk = q < qEnd;
            int n = qOk ? q / l : 0;
            int pos = q - n * l;
            int oy = qOk ? pos / p.OW : 0;
            int ox = pos - oy * p.OW;
            int dyBase = dyRows + n * p.DyStrideN + oy * p.DyStrideH + ox * p.DyStrideW;
            int xBase = xGroup + n * p.XStrideN;
            int iy0 = oy * p.SH - p.PH, ix0 = ox * p.SW - p.PW;
            for (int i = 0; i < 4; i++)
            {
                int m = tr + 16 * i;
                tileA[tq * Padded + m] = qOk && rowBase + m < p.CoutG ? dy[dyBase + m * p.DyStrideC] : 0f;
            }
            for (int i = 0; i < 4; i++)
            {
                int nn = tr + 16 * i;
                int k = colBase + nn;
                float v = 0f;
                if (qOk && k < kg)
                {
                    int c = k / kk2;
                    int tap = k - c * kk2;
                    int r = tap / p.KW;
                    int iy = iy0 + r * p.DH, ix = ix0 + (tap - r * p.KW) * p.DW;
                    if (iy >= 0 && iy < p.H && ix >= 0 && ix < p.W) v = x[xBase + c * p.XStrideC + iy * p.XStrideH + ix * p.XStrideW];
                }
                tileB[tq * Padded + nn] = v;
            }
            Group.Barrier();
            for (int kk = 0; kk < TileK; kk++)
            {
                int ai = kk * Padded + ty, bi = kk * Padded + tx;
                float a0 = tileA[ai], a1 = tileA[ai + 16], a2 = tileA[ai + 32], a3 = tileA[ai + 48];
                float b0 = tileB[bi], b1 = tileB[bi + 16], b2 = tileB[bi + 32], b3 = tileB[bi + 48];
                c00 += a0 * b0; c01 += a0 * b1; c02 += a0 * b2; c03 += a0 * b3;
                c10 += a1 * b0; c11 += a1 * b1; c12 += a1 * b2; c13 += a1 * b3;
                c20 += a2 * b0; c21 += a2 * b1; c22 += a2 * b2; c23 += a2 * b3;
                c30 += a3 * b0; c31 += a3 * b1; c32 += a3 * b2; c33 += a3 * b3;
            }
            Group.Barrier();
        }
        int outBase = (split * p.Cout + g * p.CoutG) * kg;
        int r0 = rowBase + ty, k0c = colBase + tx;
        StoreWeight(partials, outBase, p.CoutG, kg, r0, k0c, c00); StoreWeight(partials, outBase, p.CoutG, kg, r0, k0c + 16, c01);
        StoreWeight(partials, outBase, p.CoutG, kg, r0, k0c + 32, c02); StoreWeight(partials, outBase, p.CoutG, kg, r0, k0c + 48, c03);
        StoreWeight(partials, outBase, p.CoutG, kg, r0 + 16, k0c, c10); StoreWeight(partials, outBase, p.CoutG, kg, r0 + 16, k0c + 16, c11);
        StoreWeight(partials, outBase, p.CoutG, kg, r0 + 16, k0c + 32, c12); StoreWeight(partials, outBase, p.CoutG, kg, r0 + 16, k0c + 48, c13);
        StoreWeight(partials, outBase, p.CoutG, kg, r0 + 32, k0c, c20); StoreWeight(partials, outBase, p.CoutG, kg, r0 + 32, k0c + 16, c21);
        StoreWeight(partials, outBase, p.CoutG, kg, r0 + 32, k0c + 32, c22); StoreWeight(partials, outBase, p.CoutG, kg, r0 + 32, k0c + 48, c23);
        StoreWeight(partials, outBase, p.CoutG, kg, r0 + 48, k0c, c30); StoreWeight(partials, outBase, p.CoutG, kg, r0 + 48, k0c + 16, c31);
        StoreWeight(partials, outBase, p.CoutG, kg, r0 + 48, k0c + 32, c32); StoreWeight(partials, outBase, p.CoutG, kg, r0 + 48, k0c + 48, c33);
    }

    /// <summary>dw[e] = Σ_{s &lt; splits} partials[s·count + e], in split order; one thread per element.</summary>
    [Kernel]
    public static void SumSplits(ArrayView<float> partials, ArrayView<float> dw, int count, int splits)
    {
        int e = Grid.GlobalIndexX;
        if (e >= count) return;
        float acc = 0f;
        for (int s = 0; s < splits; s++) acc += partials[s * count + e];
        dw[e] = acc;
    }
}
