using System.Numerics;
using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace Engine.Tensors.Cpu;

/// <summary>
/// CPU kernels of 2-D convolution (NCHW, float32 and float64): forward, backward-data and backward-weight.
/// <para>
/// Math, per image n and group g (Cpg = Cin/G input and Coutg = Cout/G output channels, Kg = Cpg·kH·kW,
/// L = outH·outW, cols = im2col of the group's input planes, a Kg×L matrix):
/// <list type="bullet">
/// <item>forward: y[n, g] (Coutg×L) = W[g] (Coutg×Kg) · cols + bias. 2·Coutg·Kg·L flops.</item>
/// <item>backward-data: dcols = W[g]ᵀ (Kg×Coutg) · dy[n, g] (Coutg×L), then dx[n, g] = col2im(dcols)
/// (each column added back into the patch it was read from). Same flops.</item>
/// <item>backward-weight: dW[g] = Σ_n dy[n, g] · colsᵀ (L×Kg), computed transposed (Σ_n cols·dyᵀ). Same flops.</item>
/// </list>
/// </para>
/// <para>
/// Paths, chosen by shape:
/// <list type="bullet">
/// <item>1×1, stride 1, no padding: cols is the input itself ([Cpg, H·W] rows), so the products read x and
/// write dx directly; nothing is unfolded.</item>
/// <item>depthwise (one input channel per group): a direct sliding-window loop per plane, vectorized
/// along the output row for stride 1 (a GEMM with K = kH·kW and M = channel multiplier would waste the
/// register tile).</item>
/// <item>otherwise implicit GEMM (<see cref="Gemm.MultiplyPacked"/>), one image at a time: im2col rows are
/// written straight into the GEMM's packed layout (forward: packed B, Kg×L; backward-weight: packed A),
/// so no unfolded matrix is stored and packed again; the weight (forward) is packed once per batch. One
/// image's packed block (e.g. 288×784 float32 = 900 KB for the 3×3, 32-channel, 28×28 case) stays in L2
/// between the packing and the GEMM, and the whole-batch unfolded tensor is never built.
/// backward-data multiplies into a per-image Kg×L buffer and adds it back with col2im.</item>
/// </list>
/// Bytes: each path reads x (or dy) once per pass and writes its output once; the im2col/col2im traffic
/// (Kg·L elements per image) stays in L2.
/// </para>
/// <para>
/// Threads: the batch is cut into chunks of consecutive images (16 per thread), taken dynamically by one
/// worker per thread, each worker with one scratch buffer, each GEMM on one thread; when the batch is too
/// small to occupy the threads, images run one after another with a parallel GEMM. Neither choice changes any result: a GEMM's sums do not depend on
/// its partition. backward-weight sums over images: each of a fixed number of chunks
/// (<see cref="WeightGradChunks"/>, independent of the thread count) accumulates its images in
/// order into its own partial dW (GEMM with accumulate), and the partials are added in chunk order, so
/// dW does not depend on the thread count either.
/// </para>
/// <para>
/// Numerics: the element type accumulates (float32 in float32, as the GEMM; see <c>Gemm.cs</c>), except the
/// depthwise weight gradient, whose per-segment dot products are summed in float64 (one sum runs over
/// N·outH segments).
/// </para>
/// </summary>
internal static unsafe class ConvKernels
{
    /// <summary>
    /// Chunks of the batch whose weight gradients are summed separately (then added in order): a constant,
    /// so dW does not depend on the thread count, and many more than threads, so a thread that the OS
    /// deschedules on a shared machine delays only a small share of the work (the others take the rest).
    /// Costs one Cout·Kg partial per chunk.
    /// </summary>
    internal const long WeightGradChunks = 32;

    /// <summary>Element strides of an output gradient over (image, channel, output position l = oy·OW + ox).</summary>
    internal readonly record struct GradStrides(long N, long C, long L);

    /// <summary>The layout of one convolution: sizes, window geometry and groups.</summary>
    internal readonly record struct Shape(long N, long Cin, long H, long W, long Cout, long OH, long OW, int Groups, ConvGeometry Geo)
    {
        public long Cpg => Cin / Groups;
        public long CoutG => Cout / Groups;
        public long Kg => Cpg * Geo.KH * Geo.KW;
        public long L => OH * OW;
        public bool IsPointwise => Geo is { KH: 1, KW: 1, SH: 1, SW: 1, PH: 0, PW: 0 };
        public bool IsDepthwise => Cpg == 1 && Groups == Cin && Groups > 1;

        /// <summary>Whether images are processed in parallel (else one at a time with a parallel GEMM).</summary>
        public bool ParallelOverImages => N >= 2 * Parallelism.MaxThreads || 2 * CoutG * Kg * L < Gemm.ParallelThreshold;

        public bool Parallel => 2 * N * Cout * Kg * L >= Gemm.ParallelThreshold;
    }

    /// <summary>y = conv2d(x, w) + bias; x [N, Cin, H, W], w [Cout, Cpg, kH, kW], y [N, Cout, OH, OW], all contiguous.</summary>
    public static void Forward<T>(in Shape s, T* x, T* w, T* bias, T* y) where T : unmanaged, INumber<T>
    {
        if (s.N == 0 || s.Cout == 0) return;
        if (s.IsDepthwise) DepthwiseForward(s, x, w, bias, y);
        else if (s.IsPointwise)
        {
            var sh = s;
            nint px = (nint)x, pw = (nint)w, py = (nint)y;
            ForImages<T>(s, 0, (n, _, parallelGemm) =>
            {
                for (int g = 0; g < sh.Groups; g++)
                    Gemm.Multiply(sh.CoutG, sh.L, sh.Kg, (T*)pw + g * sh.CoutG * sh.Kg, sh.Kg, 1, (T*)px + (n * sh.Cin + g * sh.Cpg) * sh.L, sh.L, 1,
                        (T*)py + (n * sh.Cout + g * sh.CoutG) * sh.L, sh.L, parallelGemm);
            });
        }
        else
        {
            // Implicit GEMM: the weight is packed once for the batch, and each image's im2col columns are
            // written straight into the GEMM's packed-B layout (no separate im2col matrix, no second copy).
            var sh = s;
            long aSize = Gemm.PackedASize(s.CoutG, s.Kg), bSize = Gemm.PackedBSize<T>(s.Kg, s.L);
            T* packedW = (T*)NativeMemory.AlignedAlloc((nuint)(s.Groups * aSize * sizeof(T)), 64);
            try
            {
                for (int g = 0; g < s.Groups; g++)
                    Gemm.PackAFull(s.CoutG, s.Kg, w + g * s.CoutG * s.Kg, s.Kg, 1, packedW + g * aSize);
                nint px = (nint)x, pa = (nint)packedW, py = (nint)y;
                ForImages<T>(s, bSize + s.L, (n, scratch, parallelGemm) =>
                {
                    T* packedCols = (T*)scratch, row = packedCols + bSize;
                    for (int g = 0; g < sh.Groups; g++)
                    {
                        Im2ColPackedB((T*)px + (n * sh.Cin + g * sh.Cpg) * sh.H * sh.W, sh, row, packedCols);
                        Gemm.MultiplyPacked(sh.CoutG, sh.L, sh.Kg, (T*)pa + g * aSize, packedCols,
                            (T*)py + (n * sh.Cout + g * sh.CoutG) * sh.L, sh.L, accumulate: false, parallelGemm);
                    }
                });
            }
            finally { NativeMemory.AlignedFree(packedW); }
        }
        if (bias is not null) AddBias(s, bias, y);
    }

    /// <summary>
    /// dx = the gradient of conv2d with respect to x for output gradient dy; dx is overwritten. dy element
    /// (n, c, l) is at dy[n·dySt.N + c·dySt.C + l·dySt.L] (l = oy·OW + ox), so an expanded gradient (the
    /// gradient of a sum: all strides 0) is read in place; the depthwise path needs dy contiguous.
    /// </summary>
    public static void BackwardData<T>(in Shape s, T* dy, in GradStrides dySt, T* w, T* dx) where T : unmanaged, INumber<T>
    {
        if (s.N == 0 || s.Cin == 0) return;
        if (s.Cout == 0 || s.IsDepthwise)
        {
            new Span<T>(dx, checked((int)(s.N * s.Cin * s.H * s.W))).Clear();
            if (s.Cout > 0) DepthwiseBackwardData(s, dy, w, dx);
            return;
        }
        var sh = s;
        var st = dySt;
        nint pdy = (nint)dy, pw = (nint)w, pdx = (nint)dx;
        ForImages<T>(s, s.IsPointwise ? 0 : s.Kg * s.L, (n, cols, parallelGemm) =>
        {
            // Each image's planes are cleared by the worker that fills them (in parallel, while in cache).
            if (!sh.IsPointwise) new Span<T>((T*)pdx + n * sh.Cin * sh.H * sh.W, checked((int)(sh.Cin * sh.H * sh.W))).Clear();
            for (int g = 0; g < sh.Groups; g++)
            {
                T* dxg = (T*)pdx + (n * sh.Cin + g * sh.Cpg) * sh.H * sh.W;
                T* c = sh.IsPointwise ? dxg : (T*)cols;
                // A = W[g]ᵀ: element (kg, co) at w[co·Kg + kg].
                Gemm.Multiply(sh.Kg, sh.L, sh.CoutG, (T*)pw + g * sh.CoutG * sh.Kg, 1, sh.Kg,
                    (T*)pdy + n * st.N + g * sh.CoutG * st.C, st.C, st.L, c, sh.L, parallelGemm);
                if (!sh.IsPointwise) Col2ImAdd((T*)cols, sh.Cpg, sh.H, sh.W, sh.OH, sh.OW, sh.Geo, dxg);
            }
        });
    }

    /// <summary>dw = the gradient of conv2d with respect to w for input x and output gradient dy (strides as in <see cref="BackwardData"/>); dw is overwritten.</summary>
    public static void BackwardWeight<T>(in Shape s, T* x, T* dy, in GradStrides dySt, T* dw) where T : unmanaged, INumber<T>
    {
        long wSize = s.Cout * s.Kg;
        new Span<T>(dw, checked((int)wSize)).Clear();
        if (s.N == 0 || wSize == 0) return;
        if (s.IsDepthwise)
        {
            DepthwiseBackwardWeight(s, x, dy, dw);
            return;
        }
        var sh = s;
        long chunks = Math.Min(s.N, WeightGradChunks);
        long per = (s.N + chunks - 1) / chunks;
        chunks = (s.N + per - 1) / per;
        // Each chunk accumulates dWᵀ (per group a Kg×Coutg block) = Σ_n cols·dyᵀ: im2col writes cols straight
        // into the packed-A layout, and only dyᵀ (Coutg·L elements, fewer than cols' Kg·L) goes through a
        // strided packing. The partials are added in chunk order, then transposed into dw.
        T* partials = (T*)NativeMemory.AlignedAlloc((nuint)(chunks * wSize * sizeof(T)), 64);
        long aSize = Gemm.PackedASize(s.Kg, s.L), bSize = Gemm.PackedBSize<T>(s.L, s.CoutG);
        nint px = (nint)x, pdy = (nint)dy, pp = (nint)partials;
        var st = dySt;
        bool overImages = s.ParallelOverImages;
        try
        {
            ForChunks<T>(chunks, overImages && s.Parallel, aSize + bSize + Gemm.MR * s.L, (chunk, scratch) =>
            {
                T* acc = (T*)pp + chunk * wSize;
                T* packedCols = (T*)scratch, packedDy = packedCols + aSize, rows = packedDy + bSize;
                long end = Math.Min(sh.N, (chunk + 1) * per);
                for (long n = chunk * per; n < end; n++)
                    for (int g = 0; g < sh.Groups; g++)
                    {
                        T* xg = (T*)px + (n * sh.Cin + g * sh.Cpg) * sh.H * sh.W;
                        if (sh.IsPointwise) Gemm.PackAFull(sh.Kg, sh.L, xg, sh.L, 1, packedCols);
                        else Im2ColPackedA(xg, sh, rows, packedCols);
                        // B = dyᵀ: element (l, co) at dy[n, g·Coutg + co, l].
                        Gemm.PackBFull(sh.L, sh.CoutG, (T*)pdy + n * st.N + g * sh.CoutG * st.C, st.L, st.C, packedDy);
                        Gemm.MultiplyPacked(sh.Kg, sh.CoutG, sh.L, packedCols, packedDy, acc + g * sh.CoutG * sh.Kg, sh.CoutG,
                            accumulate: n > chunk * per, parallel: !overImages);
                    }
            });
            var total = new Span<T>(partials, (int)wSize);
            for (long chunk = 1; chunk < chunks; chunk++)
                TensorPrimitives.Add(total, new ReadOnlySpan<T>(partials + chunk * wSize, (int)wSize), total);
            for (int g = 0; g < s.Groups; g++)
            {
                T* src = partials + g * s.CoutG * s.Kg, dst = dw + g * s.CoutG * s.Kg;
                for (long kg = 0; kg < s.Kg; kg++)
                    for (long co = 0; co < s.CoutG; co++)
                        dst[co * s.Kg + kg] = src[kg * s.CoutG + co];
            }
        }
        finally { NativeMemory.AlignedFree(partials); }
    }

    /// <summary>
    /// Runs <paramref name="body"/>(image, scratch, parallelGemm) for every image: in parallel over chunks of
    /// consecutive images (16 chunks per thread, taken dynamically, for balance on a shared machine) with one
    /// scratch buffer of <paramref name="scratchElements"/> per chunk, or, for a small batch, one image after
    /// another with a parallel GEMM.
    /// </summary>
    private static void ForImages<T>(in Shape s, long scratchElements, Action<long, nint, bool> body) where T : unmanaged
    {
        long n = s.N;
        bool overImages = s.ParallelOverImages;
        long chunks = overImages ? Math.Min(n, 16L * Parallelism.MaxThreads) : 1;
        long per = (n + chunks - 1) / chunks;
        chunks = (n + per - 1) / per;
        ForChunks<T>(chunks, overImages && s.Parallel, scratchElements, (chunk, scratch) =>
        {
            long end = Math.Min(n, (chunk + 1) * per);
            for (long i = chunk * per; i < end; i++) body(i, scratch, !overImages);
        });
    }

    /// <summary>
    /// Runs <paramref name="body"/>(chunk, scratch) for chunks 0..count-1 on up to <see cref="Parallelism.MaxThreads"/>
    /// workers. Each worker allocates one scratch buffer of <paramref name="scratchElements"/> (fresh pages fault
    /// in once per worker, not once per chunk) and takes the next chunk from a shared counter until none is left,
    /// so a worker the OS delays takes fewer chunks.
    /// </summary>
    private static void ForChunks<T>(long count, bool parallel, long scratchElements, Action<long, nint> body) where T : unmanaged
    {
        long workers = parallel ? Math.Min(count, Parallelism.MaxThreads) : 1;
        long next = -1;
        Parallelism.For(workers, workers > 1, _ =>
        {
            nint scratch = scratchElements > 0 ? (nint)NativeMemory.AlignedAlloc((nuint)(scratchElements * sizeof(T)), 64) : 0;
            try
            {
                long chunk;
                while ((chunk = Interlocked.Increment(ref next)) < count) body(chunk, scratch);
            }
            finally { if (scratch != 0) NativeMemory.AlignedFree((void*)scratch); }
        });
    }

    private static void AddBias<T>(in Shape s, T* bias, T* y) where T : unmanaged, INumber<T>
    {
        long l = s.L, cout = s.Cout;
        nint pb = (nint)bias, py = (nint)y;
        Parallelism.For(s.N, s.N * cout * l >= Parallelism.ElementwiseThreshold, n =>
        {
            for (long c = 0; c < cout; c++)
            {
                var row = new Span<T>((T*)py + (n * cout + c) * l, (int)l);
                TensorPrimitives.Add(row, ((T*)pb)[c], row);
            }
        });
    }

    /// <summary>
    /// The output columns [lo, hi) whose tap at offset <paramref name="offset"/> (= k·dilation − pad) reads
    /// inside an input of <paramref name="size"/>: 0 ≤ o·stride + offset &lt; size.
    /// </summary>
    private static (long Lo, long Hi) ValidRange(long offset, long stride, long size, long outSize)
    {
        long lo = offset >= 0 ? 0 : (-offset + stride - 1) / stride;
        long hi = size - 1 - offset < 0 ? 0 : (size - 1 - offset) / stride + 1;
        lo = Math.Min(lo, outSize);
        hi = Math.Clamp(hi, lo, outSize);
        return (lo, hi);
    }

    /// <summary>
    /// One im2col row: tap (i, j) of one h×w plane, as oh·ow values: entry oy·ow + ox holds
    /// plane[oy·sH − pH + i·dH, ox·sW − pW + j·dW] (0 outside). Stride-1 rows are copied as one contiguous
    /// run between the zero borders.
    /// </summary>
    private static void Im2ColRow<T>(T* plane, int i, int j, long h, long w, long oh, long ow, in ConvGeometry g, T* dst) where T : unmanaged, INumber<T>
    {
        long offX = (long)j * g.DW - g.PW;
        var (lo, hi) = ValidRange(offX, g.SW, w, ow);
        for (long oy = 0; oy < oh; oy++)
        {
            long iy = oy * g.SH - g.PH + (long)i * g.DH;
            T* row = dst + oy * ow;
            if (iy < 0 || iy >= h)
            {
                new Span<T>(row, (int)ow).Clear();
                continue;
            }
            for (long ox = 0; ox < lo; ox++) row[ox] = T.Zero;
            T* src = plane + iy * w + offX;
            if (g.SW == 1) CopyRow(row + lo, src + lo, hi - lo);
            else for (long ox = lo; ox < hi; ox++) row[ox] = src[ox * g.SW];
            for (long ox = hi; ox < ow; ox++) row[ox] = T.Zero;
        }
    }

    /// <summary>
    /// im2col of one group's Cpg planes (Kg×L) written in the GEMM's packed-B layout (<c>Gemm.PackBFull</c>):
    /// each row is built in <paramref name="row"/> (L elements, L1-resident) and copied NR columns at a time
    /// into its panels. Columns past L in the last panel are zeroed.
    /// </summary>
    private static void Im2ColPackedB<T>(T* x, in Shape s, T* row, T* packed) where T : unmanaged, INumber<T>
    {
        int nr = Gemm.PanelWidth<T>();
        long l = s.L, kg = s.Kg, panels = (l + nr - 1) / nr;
        int tail = (int)(l - (panels - 1) * nr);
        var g = s.Geo;
        long r = 0;
        for (long c = 0; c < s.Cpg; c++)
            for (int i = 0; i < g.KH; i++)
                for (int j = 0; j < g.KW; j++, r++)
                {
                    Im2ColRow(x + c * s.H * s.W, i, j, s.H, s.W, s.OH, s.OW, g, row);
                    T* dst = packed + r * nr;
                    for (long q = 0; q < panels - 1; q++) CopyRow(dst + q * kg * nr, row + q * nr, nr);
                    T* last = dst + (panels - 1) * kg * nr;
                    CopyRow(last, row + (panels - 1) * nr, tail);
                    if (tail < nr) new Span<T>(last + tail, nr - tail).Clear();
                }
    }

    /// <summary>
    /// im2col of one group's Cpg planes (Kg×L) written in the GEMM's packed-A layout (<c>Gemm.PackAFull</c>,
    /// K = L). The MR rows of one panel are built in <paramref name="rows"/> (MR·L elements) and then
    /// interleaved, so each packed cache line is written once, in order (row by row, every line would be
    /// written MR times, one element in MR each time). Rows past Kg are zero.
    /// </summary>
    private static void Im2ColPackedA<T>(T* x, in Shape s, T* rows, T* packed) where T : unmanaged, INumber<T>
    {
        int mr = Gemm.MR; // 6: the unrolled interleave below; the loop handles any other tile height
        long l = s.L, kg = s.Kg;
        var g = s.Geo;
        int kk = g.KH * g.KW;
        for (long r0 = 0; r0 < kg; r0 += mr)
        {
            for (int i = 0; i < mr; i++)
            {
                long r = r0 + i;
                if (r >= kg) new Span<T>(rows + i * l, (int)l).Clear();
                else Im2ColRow(x + r / kk * s.H * s.W, (int)(r % kk / g.KW), (int)(r % g.KW), s.H, s.W, s.OH, s.OW, g, rows + i * l);
            }
            T* d = packed + r0 / mr * l * mr;
            if (mr != 6)
            {
                for (long p = 0; p < l; p++)
                    for (int i = 0; i < mr; i++) d[p * mr + i] = rows[i * l + p];
                continue;
            }
            T* q0 = rows, q1 = rows + l, q2 = rows + 2 * l, q3 = rows + 3 * l, q4 = rows + 4 * l, q5 = rows + 5 * l;
            for (long p = 0; p < l; p++, d += mr)
            {
                d[0] = q0[p]; d[1] = q1[p]; d[2] = q2[p];
                d[3] = q3[p]; d[4] = q4[p]; d[5] = q5[p];
            }
        }
    }

    /// <summary>col2im: adds each entry of the (channels·kH·kW)×(oh·ow) matrix into the input position <see cref="Im2ColRow"/> read it from (padding dropped).</summary>
    internal static void Col2ImAdd<T>(T* cols, long channels, long h, long w, long oh, long ow, in ConvGeometry g, T* x) where T : unmanaged, INumber<T>
    {
        long l = oh * ow;
        for (long c = 0; c < channels; c++)
        {
            T* plane = x + c * h * w;
            for (int i = 0; i < g.KH; i++)
                for (int j = 0; j < g.KW; j++)
                {
                    T* src = cols + ((c * g.KH + i) * g.KW + j) * l;
                    long offX = (long)j * g.DW - g.PW;
                    var (lo, hi) = ValidRange(offX, g.SW, w, ow);
                    if (hi <= lo) continue;
                    for (long oy = 0; oy < oh; oy++)
                    {
                        long iy = oy * g.SH - g.PH + (long)i * g.DH;
                        if (iy < 0 || iy >= h) continue;
                        T* dst = plane + iy * w + offX;
                        T* row = src + oy * ow;
                        if (g.SW == 1) AddRow(dst + lo, row + lo, hi - lo);
                        else for (long ox = lo; ox < hi; ox++) dst[ox * g.SW] += row[ox];
                    }
                }
        }
    }

    /// <summary>dst[i] = src[i] for a short row (tens of elements: a plain vector loop, no call overhead).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void CopyRow<T>(T* dst, T* src, long count) where T : unmanaged, INumber<T>
    {
        long i = 0;
        if (Vector512.IsHardwareAccelerated)
            for (; i + Vector512<T>.Count <= count; i += Vector512<T>.Count)
                Vector512.Load(src + i).Store(dst + i);
        if (Vector256.IsHardwareAccelerated)
            for (; i + Vector256<T>.Count <= count; i += Vector256<T>.Count)
                Vector256.Load(src + i).Store(dst + i);
        for (; i < count; i++) dst[i] = src[i];
    }

    /// <summary>dst[i] += src[i] for a short row (an output row is tens of elements: a plain vector loop, no call overhead).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void AddRow<T>(T* dst, T* src, long count) where T : unmanaged, INumber<T>
    {
        long i = 0;
        if (Vector512.IsHardwareAccelerated)
            for (; i + Vector512<T>.Count <= count; i += Vector512<T>.Count)
                (Vector512.Load(dst + i) + Vector512.Load(src + i)).Store(dst + i);
        if (Vector256.IsHardwareAccelerated)
            for (; i + Vector256<T>.Count <= count; i += Vector256<T>.Count)
                (Vector256.Load(dst + i) + Vector256.Load(src + i)).Store(dst + i);
        for (; i < count; i++) dst[i] += src[i];
    }

    // ------------------------------------------------------------------ depthwise

    /// <summary>
    /// Depthwise forward: output channel co reads input channel co / mult (mult = Cout / Cin) through its own
    /// kH×kW taps. Per output row, each tap adds w·(input row segment) over the columns where it is in bounds.
    /// </summary>
    private static void DepthwiseForward<T>(in Shape s, T* x, T* w, T* bias, T* y) where T : unmanaged, INumber<T>
    {
        var sh = s;
        long mult = s.Cout / s.Cin, kk = (long)s.Geo.KH * s.Geo.KW;
        nint px = (nint)x, pw = (nint)w, py = (nint)y;
        Parallelism.For(s.N * s.Cout, s.Parallel, plane =>
        {
            long n = plane / sh.Cout, co = plane % sh.Cout, c = co / mult;
            var g = sh.Geo;
            T* src = (T*)px + (n * sh.Cin + c) * sh.H * sh.W;
            T* dst = (T*)py + plane * sh.L;
            T* taps = (T*)pw + co * kk;
            new Span<T>(dst, (int)sh.L).Clear();
            for (int i = 0; i < g.KH; i++)
                for (int j = 0; j < g.KW; j++)
                {
                    T tw = taps[i * g.KW + j];
                    long offX = (long)j * g.DW - g.PW;
                    var (lo, hi) = ValidRange(offX, g.SW, sh.W, sh.OW);
                    if (hi <= lo) continue;
                    for (long oy = 0; oy < sh.OH; oy++)
                    {
                        long iy = oy * g.SH - g.PH + (long)i * g.DH;
                        if (iy < 0 || iy >= sh.H) continue;
                        T* srow = src + iy * sh.W + offX;
                        T* drow = dst + oy * sh.OW;
                        if (g.SW == 1)
                        {
                            var d = new Span<T>(drow + lo, (int)(hi - lo));
                            TensorPrimitives.MultiplyAdd(new ReadOnlySpan<T>(srow + lo, (int)(hi - lo)), tw, d, d);
                        }
                        else for (long ox = lo; ox < hi; ox++) drow[ox] += tw * srow[ox * g.SW];
                    }
                }
        });
    }

    /// <summary>Depthwise backward-data: each input plane gathers w·dy from the mult output planes that read it (one thread per plane).</summary>
    private static void DepthwiseBackwardData<T>(in Shape s, T* dy, T* w, T* dx) where T : unmanaged, INumber<T>
    {
        var sh = s;
        long mult = s.Cout / s.Cin, kk = (long)s.Geo.KH * s.Geo.KW;
        nint pdy = (nint)dy, pw = (nint)w, pdx = (nint)dx;
        Parallelism.For(s.N * s.Cin, s.Parallel, plane =>
        {
            long n = plane / sh.Cin, c = plane % sh.Cin;
            var g = sh.Geo;
            T* dst = (T*)pdx + plane * sh.H * sh.W;
            for (long co = c * mult; co < (c + 1) * mult; co++)
            {
                T* src = (T*)pdy + (n * sh.Cout + co) * sh.L;
                T* taps = (T*)pw + co * kk;
                for (int i = 0; i < g.KH; i++)
                    for (int j = 0; j < g.KW; j++)
                    {
                        T tw = taps[i * g.KW + j];
                        long offX = (long)j * g.DW - g.PW;
                        var (lo, hi) = ValidRange(offX, g.SW, sh.W, sh.OW);
                        if (hi <= lo) continue;
                        for (long oy = 0; oy < sh.OH; oy++)
                        {
                            long iy = oy * g.SH - g.PH + (long)i * g.DH;
                            if (iy < 0 || iy >= sh.H) continue;
                            T* xrow = dst + iy * sh.W + offX;
                            T* grow = src + oy * sh.OW;
                            if (g.SW == 1)
                            {
                                var d = new Span<T>(xrow + lo, (int)(hi - lo));
                                TensorPrimitives.MultiplyAdd(new ReadOnlySpan<T>(grow + lo, (int)(hi - lo)), tw, d, d);
                            }
                            else for (long ox = lo; ox < hi; ox++) xrow[ox * g.SW] += tw * grow[ox];
                        }
                    }
            }
        });
    }

    /// <summary>
    /// Depthwise backward-weight: dw[co, tap] = Σ_n Σ_(oy, ox) dy[n, co, oy, ox]·x[n, c, tap's input position]; one
    /// thread per output channel, images in order, each row segment a dot product added into a float64 sum.
    /// </summary>
    private static void DepthwiseBackwardWeight<T>(in Shape s, T* x, T* dy, T* dw) where T : unmanaged, INumber<T>
    {
        var sh = s;
        long mult = s.Cout / s.Cin, kk = (long)s.Geo.KH * s.Geo.KW;
        nint px = (nint)x, pdy = (nint)dy, pdw = (nint)dw;
        Parallelism.For(s.Cout, s.Parallel, co =>
        {
            long c = co / mult;
            var g = sh.Geo;
            for (int i = 0; i < g.KH; i++)
                for (int j = 0; j < g.KW; j++)
                {
                    long offX = (long)j * g.DW - g.PW;
                    var (lo, hi) = ValidRange(offX, g.SW, sh.W, sh.OW);
                    double sum = 0;
                    if (hi > lo)
                        for (long n = 0; n < sh.N; n++)
                        {
                            T* src = (T*)px + (n * sh.Cin + c) * sh.H * sh.W;
                            T* grad = (T*)pdy + (n * sh.Cout + co) * sh.L;
                            for (long oy = 0; oy < sh.OH; oy++)
                            {
                                long iy = oy * g.SH - g.PH + (long)i * g.DH;
                                if (iy < 0 || iy >= sh.H) continue;
                                T* xrow = src + iy * sh.W + offX;
                                T* grow = grad + oy * sh.OW;
                                T dot = T.Zero;
                                if (g.SW == 1) dot = TensorPrimitives.Dot(new ReadOnlySpan<T>(grow + lo, (int)(hi - lo)), new ReadOnlySpan<T>(xrow + lo, (int)(hi - lo)));
                                else for (long ox = lo; ox < hi; ox++) dot += grow[ox] * xrow[ox * g.SW];
                                sum += double.CreateTruncating(dot);
                            }
                        }
                    ((T*)pdw)[co * kk + i * g.KW + j] = T.CreateTruncating(sum);
                }
        });
    }
}
