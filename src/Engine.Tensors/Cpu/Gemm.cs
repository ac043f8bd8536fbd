using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;
using System.Runtime.Intrinsics.X86;

namespace Engine.Tensors.Cpu;

/// <summary>
/// General matrix multiply C = A·B for float and double on the CPU (SGEMM / DGEMM).
/// <para>
/// Math: C[i, j] = Σ_p A[i, p]·B[p, j] for A of M×K, B of K×N, C of M×N. 2·M·N·K flops.
/// A and B are read through arbitrary element strides (row stride, column stride), so a transposed
/// or sliced view is multiplied as it is: the strides only change how the panels are packed.
/// C is written with unit column stride and row stride <c>ldc</c> (the caller's contiguous output).
/// </para>
/// <para>
/// Blocking (the BLIS/GotoBLAS loop nest): for each NC-wide column block of B and each KC-deep slice
/// of K, B[pc.., jc..] is packed once into NR-wide micro-panels (k-major, zero-padded to NR); then
/// the MC-high row blocks of A are processed in parallel (one <see cref="Parallelism.For"/> item per
/// row block, a multiple of the thread count of them, picked up dynamically), each packing its
/// A[ic.., pc..] into MR-high micro-panels (zero-padded to MR), and the micro-kernel computes one
/// MR×NR tile of C per (micro-panel of A, micro-panel of B) pair. Sizes for this machine (AMD EPYC
/// Zen 5: 48 KB L1d and 1 MB L2 per core), float32 with Vector512: KC = 512 (a 64 KB B micro-panel,
/// streamed from L2; a deep KC halves the C tile traffic, measured faster than 128 and 256), MC = 256
/// (a 512 KB packed A block, half the L2), NC = 3072. K is cut into slices of equal depth. Each thread
/// writes its own rows of C and its own packing buffer, so no cache line is shared between writers.
/// </para>
/// <para>
/// Micro-kernel: MR = 6 rows × NR = 2 SIMD vectors (Vector512 where AVX-512 is accelerated, else
/// Vector256 with FMA, else Vector128, else scalar: <see cref="PreferredBits"/>): 12 vector accumulators,
/// per k step two vector loads of packed B, six broadcasts of packed A and twelve fused multiply-adds.
/// The register tile is its own method (<see cref="FullTile"/>) so the JIT keeps the accumulators in
/// registers. Edge tiles (M or N not a multiple of the tile) are computed in full on the zero-padded
/// panels into a small buffer and only their valid part is stored. Measured (one thread, CPU time,
/// 2048³ float32): ~78-80 % of the Vector512 FMA loop of perf/Engine.Benchmarks/Cases/MachinePeak.cs.
/// </para>
/// <para>
/// Pre-packed operands: <see cref="MultiplyPacked"/> multiplies operands the caller has already written in
/// the packed layouts over the full K (convolution writes im2col columns straight into them).
/// </para>
/// <para>
/// Numerics: accumulation is in the element type (float32 sums in float32, as every BLAS does); the
/// sum over K runs in KC-long chunks, each chunk in order p = 0..kc-1 with FMA (one rounding per step),
/// and the chunks are added to C in order. The error bound is the usual K·eps·Σ|A||B|. The chunks depend
/// on K and the vector width only, and threads split rows (or column panels), never K, so results do
/// not depend on the thread count.
/// </para>
/// </summary>
internal static unsafe class Gemm
{
    /// <summary>Rows of the register tile.</summary>
    internal const int MR = 6;

    /// <summary>
    /// Bytes of one packed B micro-panel (KC·NR elements): 64 KB, KC = 512 for both float32 (NR = 32) and
    /// float64 (NR = 16) with Vector512. That is more than a 48 KB L1 (Zen 5), but the panel is read
    /// sequentially (prefetched from L2) and a deep KC halves how often each C tile is loaded and stored:
    /// measured on the development machine (2048³, 2 threads, CPU time under load), KC = 512 ran ~8 %
    /// faster than KC = 128 and ~3 % faster than KC = 256.
    /// </summary>
    private const int L1PanelBytes = 64 * 1024;

    /// <summary>Bytes the packed A block (MC·KC) may take: half of a 1 MB L2 (Zen 4/5), MC = 256 float32 rows at KC = 512.</summary>
    private const int L2BlockBytes = 512 * 1024;

    /// <summary>Columns of B packed per outer block (the packed block lives in L3).</summary>
    private const int NC = 3072;

    /// <summary>Below this many multiply-adds a product runs on the calling thread.</summary>
    internal const long ParallelThreshold = 1 << 17;

    /// <summary>
    /// C (M×N, row stride <paramref name="ldc"/>, unit column stride) = A·B with A element (i, p) at
    /// <c>a[i*rsA + p*csA]</c> and B element (p, j) at <c>b[p*rsB + j*csB]</c>. K = 0 writes zeros.
    /// With <paramref name="accumulate"/>, C += A·B instead (the product is formed as without it, then
    /// added to C chunk by chunk; K = 0 leaves C unchanged).
    /// </summary>
    public static void Multiply<T>(long m, long n, long k, T* a, long rsA, long csA, T* b, long rsB, long csB, T* c, long ldc, bool parallel, bool accumulate = false)
        where T : unmanaged, INumber<T>
    {
        if (typeof(T) != typeof(float) && typeof(T) != typeof(double))
            throw new NotSupportedException($"internal: Gemm supports float and double, not {typeof(T).Name}.");
        if (m == 0 || n == 0) return;
        if (k == 0)
        {
            if (accumulate) return;
            for (long i = 0; i < m; i++) new Span<T>(c + i * ldc, checked((int)n)).Clear();
            return;
        }
        parallel &= m * n * k >= ParallelThreshold;
        if (n == 1 || m == 1)
        {
            // Matrix-vector shapes would waste all but one row or column of every register tile.
            if (n == 1) Gemv(m, k, a, rsA, csA, b, rsB, c, ldc, parallel, accumulate);
            else VecMat(n, k, a, csA, b, rsB, csB, c, accumulate);
            return;
        }
        MultiplyWith(PreferredBits, m, n, k, a, rsA, csA, b, rsB, csB, c, ldc, parallel, accumulate);
    }

    /// <summary>
    /// The micro-kernel's vector width on this machine: 512 where AVX-512 is accelerated, else 256 with FMA
    /// (AVX2), else 128 where any 128-bit SIMD is accelerated (SSE, NEON), else 0 (scalar).
    /// </summary>
    internal static int PreferredBits { get; } =
        Vector512.IsHardwareAccelerated && Avx512F.IsSupported ? 512 :
        Vector256.IsHardwareAccelerated && Fma.IsSupported ? 256 :
        Vector128.IsHardwareAccelerated ? 128 : 0;

    /// <summary>
    /// <see cref="Multiply"/> (after its matrix-vector and empty cases) with the micro-kernel of a chosen
    /// width: 512, 256, 128 or 0 (scalar). Tests run every width against the same reference.
    /// </summary>
    internal static void MultiplyWith<T>(int bits, long m, long n, long k, T* a, long rsA, long csA, T* b, long rsB, long csB, T* c, long ldc, bool parallel, bool accumulate)
        where T : unmanaged, INumber<T>
    {
        switch (bits)
        {
            case 512: Run<T, Vector512<T>, Simd512<T>>(m, n, k, a, rsA, csA, b, rsB, csB, c, ldc, parallel, accumulate); break;
            case 256: Run<T, Vector256<T>, Simd256<T>>(m, n, k, a, rsA, csA, b, rsB, csB, c, ldc, parallel, accumulate); break;
            case 128: Run<T, Vector128<T>, Simd128<T>>(m, n, k, a, rsA, csA, b, rsB, csB, c, ldc, parallel, accumulate); break;
            case 0: Run<T, T, SimdScalar<T>>(m, n, k, a, rsA, csA, b, rsB, csB, c, ldc, parallel, accumulate); break;
            default: throw new ArgumentOutOfRangeException(nameof(bits), bits, "internal: Gemm width must be 512, 256, 128 or 0.");
        }
    }

    /// <summary>c[i·ldc] = Σ_p A[i, p]·b[p] (N = 1): one dot product per row, SIMD when both are contiguous.</summary>
    private static void Gemv<T>(long m, long k, T* a, long rsA, long csA, T* b, long rsB, T* c, long ldc, bool parallel, bool accumulate)
        where T : unmanaged, INumber<T>
    {
        nint pa = (nint)a, pb = (nint)b, pc = (nint)c;
        Parallelism.For(m, parallel && m > 1, i =>
        {
            T* row = (T*)pa + i * rsA;
            T* x = (T*)pb;
            T sum = T.Zero;
            if (csA == 1 && rsB == 1 && k <= int.MaxValue)
                sum = System.Numerics.Tensors.TensorPrimitives.Dot(new ReadOnlySpan<T>(row, (int)k), new ReadOnlySpan<T>(x, (int)k));
            else
                for (long p = 0; p < k; p++) sum += row[p * csA] * x[p * rsB];
            if (accumulate) ((T*)pc)[i * ldc] += sum;
            else ((T*)pc)[i * ldc] = sum;
        });
    }

    /// <summary>c[j] = Σ_p a[p]·B[p, j] (M = 1): rows of B scaled and added in order p = 0..K-1 (SIMD for a row-major B).</summary>
    private static void VecMat<T>(long n, long k, T* a, long csA, T* b, long rsB, long csB, T* c, bool accumulate)
        where T : unmanaged, INumber<T>
    {
        var y = new Span<T>(c, checked((int)n));
        if (!accumulate) y.Clear();
        for (long p = 0; p < k; p++)
        {
            T s = a[p * csA];
            T* row = b + p * rsB;
            if (csB == 1) System.Numerics.Tensors.TensorPrimitives.MultiplyAdd(new ReadOnlySpan<T>(row, (int)n), s, y, y);
            else for (int j = 0; j < y.Length; j++) y[j] += s * row[j * csB];
        }
    }

    private static void Run<T, TVec, TS>(long m, long n, long k, T* a, long rsA, long csA, T* b, long rsB, long csB, T* c, long ldc, bool parallel, bool accumulateInto)
        where T : unmanaged, INumber<T> where TVec : unmanaged where TS : ISimd<T, TVec>
    {
        int nr = 2 * TS.Count;
        int kcMax = Math.Max(32, L1PanelBytes / (nr * sizeof(T)));
        int mcMax = Math.Max(MR, L2BlockBytes / (kcMax * sizeof(T)) / MR * MR);
        int ncMax = NC / nr * nr;
        // Row blocks: at most mcMax rows each, and a multiple of the thread count of them, so every
        // thread gets the same share (a block is at least one MR tile).
        int threads = parallel ? Parallelism.MaxThreads : 1;
        long blocks = (m + mcMax - 1) / mcMax;
        blocks = (blocks + threads - 1) / threads * threads;
        long rowsPerBlock = (m + blocks - 1) / blocks;
        int mc = (int)Math.Min(mcMax, Math.Max(MR, (rowsPerBlock + MR - 1) / MR * MR));
        long rowBlocks = (m + mc - 1) / mc;

        // K slices of equal depth (784 = 392 + 392 rather than 512 + 272); depends on K only, so the order
        // of the float sums does not change with the thread count.
        long kSlices = (k + kcMax - 1) / kcMax;
        int kcEven = (int)((k + kSlices - 1) / kSlices);
        long nPanelsMax = (Math.Min(ncMax, n) + nr - 1) / nr;
        T* bPack = (T*)NativeMemory.AlignedAlloc((nuint)(nPanelsMax * nr * kcEven * sizeof(T)), 64);
        try
        {
            for (long jc = 0; jc < n; jc += ncMax)
            {
                int nc = (int)Math.Min(ncMax, n - jc);
                for (long pc = 0; pc < k; pc += kcEven)
                {
                    int kc = (int)Math.Min(kcEven, k - pc);
                    bool accumulate = pc > 0 || accumulateInto;
                    PackB(kc, nc, nr, b + pc * rsB + jc * csB, rsB, csB, bPack, parallel);
                    nint pa = (nint)a, pbPack = (nint)bPack, pcOut = (nint)c;
                    long jcBlock = jc, pcBlock = pc;
                    Parallelism.For(rowBlocks, parallel && rowBlocks > 1, block =>
                    {
                        long ic = block * mc;
                        int mcb = (int)Math.Min(mc, m - ic);
                        int mPanels = (mcb + MR - 1) / MR;
                        T* aPack = (T*)NativeMemory.AlignedAlloc((nuint)(mPanels * MR * kc * sizeof(T)), 64);
                        try
                        {
                            PackA(mcb, kc, (T*)pa + ic * rsA + pcBlock * csA, rsA, csA, aPack);
                            T* cBlock = (T*)pcOut + ic * ldc + jcBlock;
                            for (int jr = 0; jr < nc; jr += nr)
                            {
                                T* bPanel = (T*)pbPack + (long)(jr / nr) * kc * nr;
                                for (int ir = 0; ir < mcb; ir += MR)
                                    Kernel<T, TVec, TS>(kc, aPack + (long)(ir / MR) * kc * MR, bPanel, cBlock + ir * ldc + jr, ldc,
                                        Math.Min(MR, mcb - ir), Math.Min(nr, nc - jr), accumulate);
                            }
                        }
                        finally { NativeMemory.AlignedFree(aPack); }
                    });
                }
            }
        }
        finally { NativeMemory.AlignedFree(bPack); }
    }

    // ------------------------------------------------------------------ pre-packed operands
    //
    // For callers that build an operand in the packed layout themselves (convolution writes its im2col
    // columns straight into it, and packs a weight once for a whole batch), over the full K:
    //   packed A (M×K): ⌈M/MR⌉ panels of K·MR; element (i, p) at (i/MR)·K·MR + p·MR + i%MR; rows past M zero.
    //   packed B (K×N): ⌈N/NR⌉ panels of K·NR; element (p, j) at (j/NR)·K·NR + p·NR + j%NR; columns past N zero.
    // A K slice of a panel is then contiguous (offset pc·MR or pc·NR), which is what the micro-kernel reads.
    // The K slices are those of Multiply (same KC), so both give the same sums.

    /// <summary>NR: columns of a packed B panel for the micro-kernel <see cref="MultiplyPacked"/> uses.</summary>
    internal static int PanelWidth<T>() where T : unmanaged => PreferredBits == 0 ? 2 : 2 * (PreferredBits / 8 / sizeof(T));

    /// <summary>Elements of a packed A of M×K (rows padded to a multiple of MR).</summary>
    internal static long PackedASize(long m, long k) => (m + MR - 1) / MR * MR * k;

    /// <summary>Elements of a packed B of K×N (columns padded to a multiple of NR).</summary>
    internal static long PackedBSize<T>(long k, long n) where T : unmanaged
    {
        int nr = PanelWidth<T>();
        return (n + nr - 1) / nr * nr * k;
    }

    /// <summary>Packs A (element (i, p) at a[i·rsA + p·csA]) into the packed-A layout over the full K.</summary>
    internal static void PackAFull<T>(long m, long k, T* a, long rsA, long csA, T* dst) where T : unmanaged, INumber<T>
        => PackA(checked((int)m), checked((int)k), a, rsA, csA, dst);

    /// <summary>Packs B (element (p, j) at b[p·rsB + j·csB]) into the packed-B layout over the full K.</summary>
    internal static void PackBFull<T>(long k, long n, T* b, long rsB, long csB, T* dst) where T : unmanaged, INumber<T>
        => PackB(checked((int)k), checked((int)n), PanelWidth<T>(), b, rsB, csB, dst, parallel: false);

    /// <summary>
    /// C (M×N, row stride ldc) = A·B, or C += A·B with <paramref name="accumulate"/>, from operands in the packed
    /// layouts above (K ≥ 1). With <paramref name="parallel"/> the NR panels of B are split among threads
    /// (each C element is still summed in the same order).
    /// </summary>
    internal static void MultiplyPacked<T>(long m, long n, long k, T* aPacked, T* bPacked, T* c, long ldc, bool accumulate, bool parallel)
        where T : unmanaged, INumber<T>
    {
        if (m == 0 || n == 0 || k == 0) return;
        switch (PreferredBits)
        {
            case 512: RunPacked<T, Vector512<T>, Simd512<T>>(m, n, k, aPacked, bPacked, c, ldc, accumulate, parallel); break;
            case 256: RunPacked<T, Vector256<T>, Simd256<T>>(m, n, k, aPacked, bPacked, c, ldc, accumulate, parallel); break;
            case 128: RunPacked<T, Vector128<T>, Simd128<T>>(m, n, k, aPacked, bPacked, c, ldc, accumulate, parallel); break;
            default: RunPacked<T, T, SimdScalar<T>>(m, n, k, aPacked, bPacked, c, ldc, accumulate, parallel); break;
        }
    }

    private static void RunPacked<T, TVec, TS>(long m, long n, long k, T* aPacked, T* bPacked, T* c, long ldc, bool accumulate, bool parallel)
        where T : unmanaged, INumber<T> where TVec : unmanaged where TS : ISimd<T, TVec>
    {
        int nr = 2 * TS.Count;
        int kcMax = Math.Max(32, L1PanelBytes / (nr * sizeof(T)));
        long kSlices = (k + kcMax - 1) / kcMax;
        int kcEven = (int)((k + kSlices - 1) / kSlices);
        int mc = Math.Max(MR, L2BlockBytes / (kcEven * sizeof(T)) / MR * MR);
        long panels = (n + nr - 1) / nr;
        long blocks = parallel ? Math.Min(panels, 4L * Parallelism.MaxThreads) : 1;
        long perBlock = (panels + blocks - 1) / blocks;
        blocks = (panels + perBlock - 1) / perBlock;
        nint pa = (nint)aPacked, pb = (nint)bPacked, pcOut = (nint)c;
        Parallelism.For(blocks, parallel && blocks > 1, block =>
        {
            long q0 = block * perBlock, q1 = Math.Min(panels, q0 + perBlock);
            for (long pc = 0; pc < k; pc += kcEven)
            {
                int kc = (int)Math.Min(kcEven, k - pc);
                bool acc = accumulate || pc > 0;
                for (long ic = 0; ic < m; ic += mc)
                {
                    long icEnd = Math.Min(m, ic + mc);
                    for (long q = q0; q < q1; q++)
                    {
                        T* bPanel = (T*)pb + q * k * nr + pc * nr;
                        long jr = q * nr;
                        int cols = (int)Math.Min(nr, n - jr);
                        for (long ir = ic; ir < icEnd; ir += MR)
                            Kernel<T, TVec, TS>(kc, (T*)pa + ir / MR * k * MR + pc * MR, bPanel, (T*)pcOut + ir * ldc + jr, ldc,
                                (int)Math.Min(MR, m - ir), cols, acc);
                    }
                }
            }
        });
    }

    /// <summary>
    /// Packs a kc×nc block of B into NR-wide micro-panels: panel q holds columns q·NR.. as kc rows of NR
    /// (row p at offset p·NR), zero-padded past nc.
    /// </summary>
    private static void PackB<T>(int kc, int nc, int nr, T* b, long rsB, long csB, T* dst, bool parallel) where T : unmanaged, INumber<T>
    {
        int panels = (nc + nr - 1) / nr;
        nint pb = (nint)b, pd = (nint)dst;
        Parallelism.For(panels, parallel && panels > 1 && (long)kc * nc >= Parallelism.Grain, q =>
        {
            T* src = (T*)pb + q * nr * csB;
            T* d = (T*)pd + q * kc * nr;
            int cols = (int)Math.Min(nr, nc - q * nr);
            if (csB == 1)
            {
                // Row-major B: each packed row is a contiguous run of the source row.
                for (int p = 0; p < kc; p++)
                {
                    new ReadOnlySpan<T>(src + p * rsB, cols).CopyTo(new Span<T>(d + p * nr, cols));
                    if (cols < nr) new Span<T>(d + p * nr + cols, nr - cols).Clear();
                }
            }
            else
            {
                // Column-major (transposed) or strided B: walk each source column down k.
                if (cols < nr) for (int p = 0; p < kc; p++) new Span<T>(d + p * nr + cols, nr - cols).Clear();
                for (int j = 0; j < cols; j++)
                {
                    T* s = src + j * csB;
                    for (int p = 0; p < kc; p++) d[p * nr + j] = s[p * rsB];
                }
            }
        });
    }

    /// <summary>
    /// Packs an mc×kc block of A into MR-high micro-panels: panel q holds rows q·MR.. as kc columns of
    /// MR (column p at offset p·MR), zero-padded past mc.
    /// </summary>
    private static void PackA<T>(int mc, int kc, T* a, long rsA, long csA, T* dst) where T : unmanaged, INumber<T>
    {
        for (int i0 = 0; i0 < mc; i0 += MR)
        {
            T* d = dst + (long)(i0 / MR) * kc * MR;
            int rows = Math.Min(MR, mc - i0);
            if (rsA == 1)
            {
                // Column-major (transposed) A: MR consecutive elements per column.
                for (int p = 0; p < kc; p++)
                {
                    T* s = a + i0 + p * csA;
                    for (int i = 0; i < rows; i++) d[p * MR + i] = s[i];
                    for (int i = rows; i < MR; i++) d[p * MR + i] = T.Zero;
                }
            }
            else if (rows == 6 && MR == 6)
            {
                // Six rows at once: each packed cache line is written once, in order.
                T* s0 = a + i0 * rsA, s1 = s0 + rsA, s2 = s1 + rsA, s3 = s2 + rsA, s4 = s3 + rsA, s5 = s4 + rsA;
                for (int p = 0; p < kc; p++, d += MR)
                {
                    long o = p * csA;
                    d[0] = s0[o]; d[1] = s1[o]; d[2] = s2[o];
                    d[3] = s3[o]; d[4] = s4[o]; d[5] = s5[o];
                }
            }
            else
            {
                for (int i = 0; i < rows; i++)
                {
                    T* s = a + (i0 + i) * rsA;
                    for (int p = 0; p < kc; p++) d[p * MR + i] = s[p * csA];
                }
                for (int i = rows; i < MR; i++)
                    for (int p = 0; p < kc; p++) d[p * MR + i] = T.Zero;
            }
        }
    }

    /// <summary>
    /// One MR×NR tile: C[0..mr, 0..nr] (+)= Σ_p a[p·MR + i]·b[p·NR + j]. Full tiles are stored straight
    /// from the registers; edge tiles are computed into a small buffer and their valid part copied.
    /// </summary>
    private static void Kernel<T, TVec, TS>(int kc, T* a, T* b, T* c, long ldc, int mr, int nr, bool accumulate)
        where T : unmanaged, INumber<T> where TVec : unmanaged where TS : ISimd<T, TVec>
    {
        int w = TS.Count;
        if (mr == MR && nr == 2 * w)
        {
            FullTile<T, TVec, TS>(kc, a, b, c, ldc, accumulate);
            return;
        }
        T* tile = stackalloc T[MR * 2 * 16 * 4 / sizeof(T)]; // MR rows of 2 vectors of at most 64 bytes
        int ld = 2 * w;
        FullTile<T, TVec, TS>(kc, a, b, tile, ld, accumulate: false);
        for (int i = 0; i < mr; i++)
        {
            T* row = c + i * ldc;
            T* src = tile + i * ld;
            if (accumulate) for (int j = 0; j < nr; j++) row[j] += src[j];
            else for (int j = 0; j < nr; j++) row[j] = src[j];
        }
    }

    /// <summary>
    /// The register tile: 12 vector accumulators live in registers through the k loop (this method holds
    /// nothing else, so the JIT keeps them there: with the edge-tile buffer in the same method it spilled
    /// every accumulator to the stack at every step).
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static void FullTile<T, TVec, TS>(int kc, T* a, T* b, T* c, long ldc, bool accumulate)
        where T : unmanaged, INumber<T> where TVec : unmanaged where TS : ISimd<T, TVec>
    {
        int w = TS.Count;
        TVec c00 = TS.Zero, c01 = TS.Zero, c10 = TS.Zero, c11 = TS.Zero, c20 = TS.Zero, c21 = TS.Zero;
        TVec c30 = TS.Zero, c31 = TS.Zero, c40 = TS.Zero, c41 = TS.Zero, c50 = TS.Zero, c51 = TS.Zero;
        for (int p = 0; p < kc; p++)
        {
            TVec b0 = TS.Load(b), b1 = TS.Load(b + w);
            TVec av = TS.Broadcast(a[0]);
            c00 = TS.Fma(av, b0, c00); c01 = TS.Fma(av, b1, c01);
            av = TS.Broadcast(a[1]);
            c10 = TS.Fma(av, b0, c10); c11 = TS.Fma(av, b1, c11);
            av = TS.Broadcast(a[2]);
            c20 = TS.Fma(av, b0, c20); c21 = TS.Fma(av, b1, c21);
            av = TS.Broadcast(a[3]);
            c30 = TS.Fma(av, b0, c30); c31 = TS.Fma(av, b1, c31);
            av = TS.Broadcast(a[4]);
            c40 = TS.Fma(av, b0, c40); c41 = TS.Fma(av, b1, c41);
            av = TS.Broadcast(a[5]);
            c50 = TS.Fma(av, b0, c50); c51 = TS.Fma(av, b1, c51);
            a += MR;
            b += 2 * w;
        }
        StoreRow<T, TVec, TS>(c, w, c00, c01, accumulate);
        StoreRow<T, TVec, TS>(c + ldc, w, c10, c11, accumulate);
        StoreRow<T, TVec, TS>(c + 2 * ldc, w, c20, c21, accumulate);
        StoreRow<T, TVec, TS>(c + 3 * ldc, w, c30, c31, accumulate);
        StoreRow<T, TVec, TS>(c + 4 * ldc, w, c40, c41, accumulate);
        StoreRow<T, TVec, TS>(c + 5 * ldc, w, c50, c51, accumulate);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreRow<T, TVec, TS>(T* c, int w, TVec v0, TVec v1, bool accumulate)
        where T : unmanaged where TVec : unmanaged where TS : ISimd<T, TVec>
    {
        if (accumulate)
        {
            v0 = TS.Add(v0, TS.Load(c));
            v1 = TS.Add(v1, TS.Load(c + w));
        }
        TS.Store(v0, c);
        TS.Store(v1, c + w);
    }
}

/// <summary>The vector operations the GEMM micro-kernel needs, for one vector width.</summary>
internal unsafe interface ISimd<T, TVec> where T : unmanaged where TVec : unmanaged
{
    static abstract int Count { get; }
    static abstract TVec Zero { get; }
    static abstract TVec Load(T* p);
    static abstract void Store(TVec v, T* p);
    static abstract TVec Broadcast(T x);

    /// <summary>a·b + c with one rounding.</summary>
    static abstract TVec Fma(TVec a, TVec b, TVec c);
    static abstract TVec Add(TVec a, TVec b);
}

internal readonly unsafe struct Simd512<T> : ISimd<T, Vector512<T>> where T : unmanaged
{
    public static int Count => Vector512<T>.Count;
    public static Vector512<T> Zero => Vector512<T>.Zero;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<T> Load(T* p) => Vector512.Load(p);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static void Store(Vector512<T> v, T* p) => v.Store(p);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<T> Broadcast(T x) => Vector512.Create(x);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<T> Add(Vector512<T> a, Vector512<T> b) => a + b;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<T> Fma(Vector512<T> a, Vector512<T> b, Vector512<T> c)
    {
        if (typeof(T) == typeof(float)) return Vector512.FusedMultiplyAdd(a.AsSingle(), b.AsSingle(), c.AsSingle()).As<float, T>();
        if (typeof(T) == typeof(double)) return Vector512.FusedMultiplyAdd(a.AsDouble(), b.AsDouble(), c.AsDouble()).As<double, T>();
        return a * b + c;
    }
}

internal readonly unsafe struct Simd256<T> : ISimd<T, Vector256<T>> where T : unmanaged
{
    public static int Count => Vector256<T>.Count;
    public static Vector256<T> Zero => Vector256<T>.Zero;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<T> Load(T* p) => Vector256.Load(p);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static void Store(Vector256<T> v, T* p) => v.Store(p);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<T> Broadcast(T x) => Vector256.Create(x);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<T> Add(Vector256<T> a, Vector256<T> b) => a + b;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<T> Fma(Vector256<T> a, Vector256<T> b, Vector256<T> c)
    {
        if (typeof(T) == typeof(float)) return Vector256.FusedMultiplyAdd(a.AsSingle(), b.AsSingle(), c.AsSingle()).As<float, T>();
        if (typeof(T) == typeof(double)) return Vector256.FusedMultiplyAdd(a.AsDouble(), b.AsDouble(), c.AsDouble()).As<double, T>();
        return a * b + c;
    }
}

/// <summary>128-bit fallback (Arm64 NEON, or x64 without AVX2/FMA: there a separate multiply and add).</summary>
internal readonly unsafe struct Simd128<T> : ISimd<T, Vector128<T>> where T : unmanaged
{
    public static int Count => Vector128<T>.Count;
    public static Vector128<T> Zero => Vector128<T>.Zero;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<T> Load(T* p) => Vector128.Load(p);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static void Store(Vector128<T> v, T* p) => v.Store(p);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<T> Broadcast(T x) => Vector128.Create(x);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<T> Add(Vector128<T> a, Vector128<T> b) => a + b;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<T> Fma(Vector128<T> a, Vector128<T> b, Vector128<T> c)
    {
        if (System.Runtime.Intrinsics.X86.Fma.IsSupported || AdvSimd.IsSupported)
        {
            if (typeof(T) == typeof(float)) return Vector128.FusedMultiplyAdd(a.AsSingle(), b.AsSingle(), c.AsSingle()).As<float, T>();
            if (typeof(T) == typeof(double)) return Vector128.FusedMultiplyAdd(a.AsDouble(), b.AsDouble(), c.AsDouble()).As<double, T>();
        }
        return a * b + c;
    }
}

/// <summary>Scalar fallback (no accelerated SIMD): a 6×2 register tile of single elements.</summary>
internal readonly unsafe struct SimdScalar<T> : ISimd<T, T> where T : unmanaged, INumber<T>
{
    public static int Count => 1;
    public static T Zero => T.Zero;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static T Load(T* p) => *p;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static void Store(T v, T* p) => *p = v;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static T Broadcast(T x) => x;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static T Add(T a, T b) => a + b;

    /// <summary>a·b + c with one rounding, as the vector paths (so every width gives the same sums).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static T Fma(T a, T b, T c)
    {
        if (typeof(T) == typeof(float)) return (T)(object)MathF.FusedMultiplyAdd((float)(object)a, (float)(object)b, (float)(object)c);
        if (typeof(T) == typeof(double)) return (T)(object)Math.FusedMultiplyAdd((double)(object)a, (double)(object)b, (double)(object)c);
        return a * b + c;
    }
}
