using Engine.Runtime.Kernels;

namespace Engine.Tensors.Kernels;

/// <summary>
/// Host side of ImplicitGemmKernels: the by-value layout of one convolution, the grids of the three
/// kernels and the split of backward-weight's reduction. Every element offset a kernel forms is
/// checked to fit its 32-bit indexing here (<see cref="Fits"/> false: the caller falls back).
/// </summary>
internal static class ImplicitGemmPlan
{
    /// <summary>The group of the three GEMM kernels: 16×16 threads, each 4×4 outputs of a 64×64 tile.</summary>
    public static Dim3 Group => new(ImplicitGemmKernels.Threads, ImplicitGemmKernels.Threads);

    /// <summary>
    /// Blocks backward-weight aims to launch (tiles × splits): enough to fill the SMs of a large GPU a few
    /// times over (an H100 has 132); the reduction is split no finer than <see cref="MinQPerSplit"/>.
    /// </summary>
    public const int TargetBlocks = 512;

    /// <summary>The shortest chunk of backward-weight's reduction (N·OH·OW) given to one block: 16 steps of TileK.</summary>
    public const int MinQPerSplit = 16 * ImplicitGemmKernels.TileK;

    /// <summary>
    /// The layout for x [N, C, H, W] (any strides), weight [Cout, Cpg, KH, KW], optional output gradient dy
    /// [N, Cout, OH, OW] (any strides) and bias (any 1-D view); splits of backward-weight chosen here unless
    /// <paramref name="qPerSplit"/> is given (rounded up to a multiple of TileK).
    /// </summary>
    public static ImplicitGemmLayout Create(Cpu.ConvKernels.Shape s, Tensor? x, Tensor? dy, Tensor? bias, int? qPerSplit = null)
    {
        var geo = s.Geo;
        var p = new ImplicitGemmLayout
        {
            N = (int)s.N, C = (int)s.Cin, H = (int)s.H, W = (int)s.W, Cout = (int)s.Cout, OH = (int)s.OH, OW = (int)s.OW,
            KH = geo.KH, KW = geo.KW, SH = geo.SH, SW = geo.SW, PH = geo.PH, PW = geo.PW, DH = geo.DH, DW = geo.DW,
            Groups = s.Groups, Cpg = (int)s.Cpg, CoutG = (int)s.CoutG,
            Splits = 1, QPerSplit = 0,
        };
        if (x is not null)
        {
            p.XOffset = (int)x.Offset;
            p.XStrideN = (int)x.Strides[0]; p.XStrideC = (int)x.Strides[1]; p.XStrideH = (int)x.Strides[2]; p.XStrideW = (int)x.Strides[3];
        }
        if (dy is not null)
        {
            p.DyOffset = (int)dy.Offset;
            p.DyStrideN = (int)dy.Strides[0]; p.DyStrideC = (int)dy.Strides[1]; p.DyStrideH = (int)dy.Strides[2]; p.DyStrideW = (int)dy.Strides[3];
        }
        if (bias is not null)
        {
            p.HasBias = 1;
            p.BiasOffset = (int)bias.Offset;
            p.BiasStride = (int)bias.Strides[0];
        }
        long q = s.N * s.L;
        long tiles = Ceil(s.CoutG, ImplicitGemmKernels.TileM) * Ceil(s.Kg, ImplicitGemmKernels.TileN) * s.Groups;
        long per;
        if (qPerSplit is int forced) per = Math.Max(1, forced);
        else
        {
            long splits = Math.Max(1, Math.Min(Ceil(TargetBlocks, Math.Max(1, tiles)), q / MinQPerSplit));
            per = Ceil(q, splits);
        }
        per = Ceil(Math.Max(per, 1), ImplicitGemmKernels.TileK) * ImplicitGemmKernels.TileK;
        p.QPerSplit = (int)Math.Min(per, int.MaxValue / 2);
        p.Splits = (int)Math.Max(1, Ceil(q, p.QPerSplit));
        return p;
    }

    /// <summary>
    /// Whether every size the kernels index for this convolution fits an int: x, y/dx, the weight and the
    /// largest backward-weight partials, with a tile of slack for indices formed before their bounds test,
    /// and the grid's z (groups × splits) fits CUDA's 65535. The strided operands are checked by <see cref="ReachFits"/>.
    /// </summary>
    public static bool Fits(Cpu.ConvKernels.Shape s)
    {
        const long max = int.MaxValue - 2 * ImplicitGemmKernels.TileM;
        long q = s.N * s.L;
        long y = s.N * s.Cout * s.L, xs = s.N * s.Cin * s.H * s.W;
        long w = (s.Cout + ImplicitGemmKernels.TileM) * (s.Kg + ImplicitGemmKernels.TileN);
        long splitsBound = Math.Min(Math.Max(1, q / MinQPerSplit), TargetBlocks) + 1; // Create never picks more
        if (s.IsDepthwise) splitsBound = 1; // the depthwise kernels write dW directly
        return y <= max && xs <= max && w <= max && s.Cout * s.Kg * splitsBound <= max && q <= max && s.Groups + TargetBlocks <= 65535;
    }

    /// <summary>Whether every element offset of a strided operand (offset + Σ (size − 1)·stride, plus a tile of slack) fits an int; strides ≥ 0.</summary>
    public static bool ReachFits(Tensor t)
    {
        if (t.NumEl == 0) return true;
        long reach = t.Offset;
        for (int d = 0; d < t.Rank; d++)
        {
            if (t.Strides[d] < 0) return false;
            reach += (t.Shape[d] - 1) * t.Strides[d];
        }
        return reach <= int.MaxValue - 2 * ImplicitGemmKernels.TileM;
    }

    /// <summary>Grid of ConvForward: columns N·L, rows CoutG, one z per group.</summary>
    public static Dim3 ForwardGrid(in ImplicitGemmLayout p)
        => Grid((long)p.N * p.OH * p.OW, p.CoutG, p.Groups);

    /// <summary>Grid of ConvBackwardData: columns N·H·W, rows Cpg, one z per group.</summary>
    public static Dim3 BackwardDataGrid(in ImplicitGemmLayout p)
        => Grid((long)p.N * p.H * p.W, p.Cpg, p.Groups);

    /// <summary>Grid of ConvBackwardWeight: columns Kg, rows CoutG, one z per (group, split).</summary>
    public static Dim3 BackwardWeightGrid(in ImplicitGemmLayout p)
        => Grid((long)p.Cpg * p.KH * p.KW, p.CoutG, (long)p.Groups * p.Splits);

    private static Dim3 Grid(long columns, long rows, long z)
        => columns == 0 || rows == 0 || z == 0
            ? new Dim3(0)
            : new Dim3((int)Ceil(columns, ImplicitGemmKernels.TileN), (int)Ceil(rows, ImplicitGemmKernels.TileM), (int)z);

    private static long Ceil(long a, long b) => (a + b - 1) / b;
}
