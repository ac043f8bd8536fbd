// SGEMM: C[b] = A[b]·B[b], float32, two tilings behind one plan (GemmPlan.Run picks per launch).
//
// Math      C[b, i, j] = Σ_{k<K} A[b, i, k]·B[b, k, j] for i < M, j < N (with K = 0, C = 0).
// Numerics  float accumulation in the order k = 0, 1, ... in both kernels (c += a·b; NVRTC and
//           OpenCL may contract it to an fma, the emulator rounds the product): error ≲ K·ε·Σ_k |a||b|,
//           as the CPU op (Cpu/Gemm.cs, float32 accumulation). No gradient here: Tensor.MatMul's
//           backward is two more products (dA = g·Bᵀ, dB = Aᵀ·g), which these kernels run through strides.
// Layout    A and B are any strided views: element (b, i, k) of A is a[OffsetA + b·BatchStrideA +
//           i·RowStrideA + k·ColStrideA] (a transposed operand just swaps its two strides; a
//           broadcast batch has stride 0; GemmPlan sets the stride of a size-1 dim to 0). C is
//           contiguous [batch, M, N]. Indices are int (the host plan checks every reach fits).
//
// Sgemm128 (sm_70+; the default when M > 64 and N > 64)
//   Tiling  a group of 256 threads owns a 128×128 tile of C and walks K in steps of 8. Thread t
//           (tx = t % 16, ty = t / 16) keeps an 8×8 register tile of C (64 accumulators in an
//           [InlineArray] local that fully unrolled loops index with constants, so NVRTC keeps it in
//           registers): rows 4·ty + {0..3} and 64 + 4·ty + {0..3}, columns 4·tx + {0..3} and
//           64 + 4·tx + {0..3}. Per k it reads its 8 A values and 8 B values from shared memory as four
//           16-byte Float4 loads (LDS.128) and does 64 FMAs: 16 FMAs per shared-memory instruction
//           (the 64×64 kernel below: 2). The split 4 + 4 at 64 (not 8 consecutive) keeps a warp's
//           B reads on 16 distinct float4 (conflict-free per quarter warp) and its A reads a broadcast.
//   Why     128×128×8: 2·128·128·8 = 262144 flops per k-step against (128 + 128)·8·4 = 8 KiB staged,
//           i.e. 32 flops per byte loaded from L2/DRAM (the 64×64 kernel: 16). On an A100 (19.5 FP32
//           TFLOP/s, ~1.5 TB/s DRAM, more from L2) the kernel is compute-bound from ~1k×1k up, where
//           a 64-wide tile is at the edge. 8×8 per thread is the largest register tile that keeps
//           the thread ≤ 128 registers (64 accumulators + 16 fragments + 8 staged + addresses), i.e. 2
//           groups (16 warps) per SM: the classic sm_70 SGEMM shape (CUTLASS's 128×128×8 SIMT tile).
//           K step 8: one float4 of A and one of B per thread per step (256 threads × 4 = 128·8).
//   Staging double-buffered shared memory, one barrier per k-step: A as [k][m] and B as [k][n], two
//           buffers each of 8 rows of 132 floats (128 + 4 padding: keeps float4 alignment and makes
//           the transposing scalar stores conflict-free). Step s computes on buffer s % 2 while its
//           global loads for step s + 1 are already in flight into registers (issued before the
//           FMAs); after the FMAs it writes them to buffer (s + 1) % 2 and meets the one barrier. That
//           buffer was last read in step s − 1, which every thread finished before the barrier that
//           ended step s − 1, so no second barrier is needed.
//   Global  per operand and step each thread loads 4 elements. GemmPlan picks one of four modes per
//           operand (GemmKernels.AlongK ... VectorAlongOuter): the 4 elements lie along the
//           operand's contiguous dimension (K for a row-major A or a transposed B, M/N for a transposed
//           A or a row-major B), so consecutive threads read consecutive addresses (coalesced), and
//           they are one 16-byte Float4 load when that stride is 1 and the offset, batch stride and
//           other stride are multiples of 4 (the address is then 16-byte aligned: views start at an
//           allocation, ≥ 64-byte aligned). A vector that would cross the edge of M, N or K, a
//           misaligned or non-contiguous operand loads the same 4 elements with scalar loads (zero
//           outside the matrix), so any M, N, K works. C is written with Float4 stores when N % 4 == 0.
//   Flops   2·M·N·K. Bytes: 4·K·(M·⌈N/128⌉ + N·⌈M/128⌉) read, 4·M·N written.
//   Per k-step and thread: 512 FMAs, 32 LDS.128, 2 LDG (.128 or 4 scalar), 2 STS (.128 or 4
//           scalar), 1 barrier: ≥ 94% of issue slots are FMAs in the vector modes.
//   Launch  GemmPlan: group 256, grid (⌈N/128⌉, ⌈M/128⌉, batch); static shared memory
//           2·2·8·132·4 = 16896 bytes. [LaunchBounds(256, 2)] caps NVRTC at 128 registers so two
//           groups fit an SM (without it NVRTC took 142–145 and one group fit: 12.5%).
//           `engine kernels --report Sgemm128` (NVRTC, 2026-11-22):
//             sm_70  128 regs  16896 B smem  0 stack  0 spill  block 256  occupancy 25.0% (registers)
//             sm_80  128 regs  16896 B smem  0 stack  0 spill  block 256  occupancy 25.0% (registers)
//             sm_90  128 regs  16896 B smem  0 stack  0 spill  block 256  occupancy 25.0% (registers)
//           i.e. 2 groups = 16 warps per SM (4 per scheduler); shared memory (33 KiB per SM) is far
//           from the limit. 25% is the design point of this tile: each warp has 64 independent FMAs
//           per k, so 4 warps per scheduler cover the FMA latency, and the global loads of step s + 1
//           have a whole step of FMAs (≥ 2048 SM cycles) to arrive.
//   Expect  (reasoned, not measured: no GPU this session.) Per warp and k: 64 FFMA instructions =
//           2048 FMAs = 32 SM cycles on an A100 (64 FP32 lanes per SM), 16 on an H100 (128 lanes);
//           its shared reads are 2 broadcast LDS.128 of A (1 wavefront each) + 2 LDS.128 of B
//           (4 wavefronts each) = 10 cycles of the 128 B/clk shared pipe: 31% (A100) and 62% (H100) of
//           the FMA time, so the kernel stays FMA-bound (the 64×64 kernel needs 8 LDS.32 per 16 FFMA:
//           shared-bound at ≤ ~50% of peak). L2 traffic per SM: 16 KiB per 2·131072 FMAs ≈ 4 B/clk, a
//           fraction of L2 bandwidth. A GPU run on large square products (M = N = K = 4096, vector
//           modes) should show about 65–80% of FP32 peak: ~13–15 TFLOP/s on an A100 (19.5 peak), ~35–45
//           on an H100 SXM (67 peak; here 25% occupancy and the shared pipe at 62% bite more), and ≥
//           1.5× the 64×64 kernel. Well below that, profile with Nsight Compute:
//           l1tex__data_bank_conflicts_pipe_lsu_mem_shared (should be ~0), stall reasons (barrier /
//           long scoreboard mean the prefetch does not cover DRAM latency), and SASS (expect LDS.128,
//           LDG.E.128 in vector modes, and no LDL/STL). The scalar modes (misaligned or strided operands)
//           cost 4 loads instead of one per operand and step, still ≪ 512 FMAs.
//           Small or skinny products (few 128×128 tiles, e.g. 512×512 = 16 groups on 108–132 SMs)
//           leave SMs idle: split-K or a 64×64 vector kernel would be the next step there.
//
// Sgemm (64×64 tiles; the small path, M ≤ 64 or N ≤ 64, where a 128 tile would be at least half idle)
//   Tiling  a group of 16×16 threads owns a 64×64 tile of C; per step of 16 along K it stages a
//           64×16 tile of A (as [k][m], rows padded to 65 floats against bank conflicts) and a 16×64
//           tile of B in shared memory (out-of-range elements load as 0, so M, N, K are arbitrary),
//           and each thread accumulates the 4×4 outputs (ty + 16·r, tx + 16·c) in registers.
//           Consecutive threads load consecutive k of A and consecutive j of B: coalesced for
//           row-major operands. No double buffering, no vector loads.
//   Flops   2·M·N·K; 4·K·(M·⌈N/64⌉ + N·⌈M/64⌉) bytes read: 16 flops per float loaded, 8 from shared
//           memory per fma pair (a 4×4 register block reads 8 shared floats for 16 fmas).
//   Launch  GemmPlan: group (16, 16), grid (⌈N/64⌉, ⌈M/64⌉, batch). Static shared memory:
//           (16·65 + 16·64)·4 = 8256 bytes. 16 accumulators + 8 operands per thread: no spills.
using System.Runtime.CompilerServices;
using Engine.Runtime.Kernels;

namespace Engine.Tensors.Kernels;

/// <summary>Sizes and strides (in elements) of one SGEMM launch.</summary>
internal struct GemmLayout
{
    /// <summary>Rows of A and C.</summary>
    public int M;
    /// <summary>Columns of B and C.</summary>
    public int N;
    /// <summary>Columns of A, rows of B.</summary>
    public int K;
    /// <summary>Element offset of A[0, 0, 0].</summary>
    public int OffsetA;
    /// <summary>Step of A's batch index (0: broadcast).</summary>
    public int BatchStrideA;
    /// <summary>Step of A's row index i.</summary>
    public int RowStrideA;
    /// <summary>Step of A's column index k.</summary>
    public int ColStrideA;
    /// <summary>Element offset of B[0, 0, 0].</summary>
    public int OffsetB;
    /// <summary>Step of B's batch index (0: broadcast).</summary>
    public int BatchStrideB;
    /// <summary>Step of B's row index k.</summary>
    public int RowStrideB;
    /// <summary>Step of B's column index j.</summary>
    public int ColStrideB;
    /// <summary>How Sgemm128 stages A (<see cref="GemmKernels.AlongK"/> ... <see cref="GemmKernels.VectorAlongOuter"/>).</summary>
    public int ModeA;
    /// <summary>How Sgemm128 stages B (its outer dim is N).</summary>
    public int ModeB;
}

/// <summary>64 floats in registers: one thread's 8×8 block of C in Sgemm128.</summary>
[InlineArray(64)]
internal struct Registers64
{
    private float _element;
}

/// <summary>8 floats in registers: one thread's 8 values of A (or B) for one k in Sgemm128.</summary>
[InlineArray(8)]
internal struct Registers8
{
    private float _element;
}

/// <summary>Shared-memory SGEMM kernels with register tiles (see the file header).</summary>
internal static partial class GemmKernels
{
    /// <summary>Rows and columns of C per Sgemm128 group.</summary>
    public const int LargeTile = 128;
    /// <summary>Step along K of Sgemm128.</summary>
    public const int LargeTileK = 8;
    /// <summary>Threads per Sgemm128 group (1-D).</summary>
    public const int LargeThreads = 256;
    /// <summary>Row length of a staged Sgemm128 tile ([k][m] or [k][n]): 128 + 4 (float4-aligned, conflict-free transposing stores).</summary>
    public const int LargeStride = LargeTile + 4;
    /// <summary>Floats of one staging buffer of one operand.</summary>
    public const int StageFloats = LargeTileK * LargeStride;

    /// <summary>Staging mode: scalar loads, a thread's 4 elements consecutive in k.</summary>
    public const int AlongK = 0;
    /// <summary>Staging mode: scalar loads, a thread's 4 elements consecutive in the outer dim (M of A, N of B).</summary>
    public const int AlongOuter = 1;
    /// <summary>Staging mode: as <see cref="AlongK"/> with one Float4 load (k stride 1, 16-byte aligned).</summary>
    public const int VectorAlongK = 2;
    /// <summary>Staging mode: as <see cref="AlongOuter"/> with one Float4 load (outer stride 1, 16-byte aligned).</summary>
    public const int VectorAlongOuter = 3;

    /// <summary>
    /// Thread <paramref name="t"/>'s 4 elements of one 128×8 operand tile (outer dims
    /// <paramref name="outerBase"/>.., k <paramref name="k0"/>..): element (o, k) of the operand is
    /// x[<paramref name="at0"/> + o·<paramref name="strideOuter"/> + k·<paramref name="strideK"/>];
    /// elements outside <paramref name="outerLimit"/> × <paramref name="k"/> are 0.
    /// </summary>
    [KernelFunction]
    public static Float4 Stage(ArrayView<float> x, int at0, int strideOuter, int strideK, int outerBase, int outerLimit, int k0, int k, int mode, int t)
    {
        float e0 = 0f, e1 = 0f, e2 = 0f, e3 = 0f;
        if ((mode & 1) == 0)
        {
            // Along K: outer index t / 2, k = k0 + 4·(t % 2) .. +3 (two threads cover a row's 8 k).
            int o = outerBase + (t >> 1), kk = k0 + ((t & 1) << 2);
            if (o < outerLimit)
            {
                int at = at0 + o * strideOuter + kk * strideK;
                if (mode == VectorAlongK && kk + 3 < k) return Float4.Load(x, at);
                if (kk < k) e0 = x[at];
                if (kk + 1 < k) e1 = x[at + strideK];
                if (kk + 2 < k) e2 = x[at + 2 * strideK];
                if (kk + 3 < k) e3 = x[at + 3 * strideK];
            }
        }
        else
        {
            // Along the outer dim: k = k0 + t / 32, outer index 4·(t % 32) .. +3 (a warp covers 128).
            int o = outerBase + ((t & 31) << 2), kk = k0 + (t >> 5);
            if (kk < k)
            {
                int at = at0 + o * strideOuter + kk * strideK;
                if (mode == VectorAlongOuter && o + 3 < outerLimit) return Float4.Load(x, at);
                if (o < outerLimit) e0 = x[at];
                if (o + 1 < outerLimit) e1 = x[at + strideOuter];
                if (o + 2 < outerLimit) e2 = x[at + 2 * strideOuter];
                if (o + 3 < outerLimit) e3 = x[at + 3 * strideOuter];
            }
        }
        return new Float4 { X = e0, Y = e1, Z = e2, W = e3 };
    }

    /// <summary>Writes <see cref="Stage"/>'s 4 elements into a staging buffer ([k][outer], rows of <see cref="LargeStride"/>) at <paramref name="at0"/>.</summary>
    [KernelFunction]
    public static void Unstage(ArrayView<float> s, int at0, Float4 v, int mode, int t)
    {
        if ((mode & 1) == 0)
        {
            // Four rows k, one column: banks (4·kk + o) % 32 differ across the warp thanks to the padding.
            int at = at0 + ((t & 1) << 2) * LargeStride + (t >> 1);
            s[at] = v.X;
            s[at + LargeStride] = v.Y;
            s[at + 2 * LargeStride] = v.Z;
            s[at + 3 * LargeStride] = v.W;
        }
        else Float4.Store(s, at0 + (t >> 5) * LargeStride + ((t & 31) << 2), v);
    }

    /// <summary>C[b] = A[b]·B[b] for one 128×128 tile of C per group of 256 threads (see the file header).</summary>
    [Kernel, LaunchBounds(LargeThreads, 2)]
    public static void Sgemm128(ArrayView<float> a, ArrayView<float> b, ArrayView<float> c, GemmLayout p)
    {
        var sa = SharedMemory.Allocate<float>(2 * StageFloats);
        var sb = SharedMemory.Allocate<float>(2 * StageFloats);
        int t = Group.IdxX;
        int tx = t & 15, ty = t >> 4;
        int rowBase = Grid.IdxY * LargeTile, colBase = Grid.IdxX * LargeTile;
        int baseA = p.OffsetA + Grid.IdxZ * p.BatchStrideA;
        int baseB = p.OffsetB + Grid.IdxZ * p.BatchStrideB;
        Registers64 acc = default;
        Registers8 fa = default;
        Registers8 fb = default;
        int steps = (p.K + LargeTileK - 1) / LargeTileK;
        if (steps > 0)
        {
            Unstage(sa, 0, Stage(a, baseA, p.RowStrideA, p.ColStrideA, rowBase, p.M, 0, p.K, p.ModeA, t), p.ModeA, t);
            Unstage(sb, 0, Stage(b, baseB, p.ColStrideB, p.RowStrideB, colBase, p.N, 0, p.K, p.ModeB, t), p.ModeB, t);
            Group.Barrier();
        }
        for (int step = 0; step < steps; step++)
        {
            int current = (step & 1) * StageFloats;
            bool more = step + 1 < steps;
            // The next step's global loads go out before this step's FMAs (the registers wait for them).
            Float4 nextA = default, nextB = default;
            if (more)
            {
                int k0 = (step + 1) * LargeTileK;
                nextA = Stage(a, baseA, p.RowStrideA, p.ColStrideA, rowBase, p.M, k0, p.K, p.ModeA, t);
                nextB = Stage(b, baseB, p.ColStrideB, p.RowStrideB, colBase, p.N, k0, p.K, p.ModeB, t);
            }
            Loop.Unroll();
            for (int kk = 0; kk < LargeTileK; kk++)
            {
                int row = current + kk * LargeStride;
                Float4 a0 = Float4.Load(sa, row + 4 * ty), a1 = Float4.Load(sa, row + 64 + 4 * ty);
                Float4 b0 = Float4.Load(sb, row + 4 * tx), b1 = Float4.Load(sb, row + 64 + 4 * tx);
                fa[0] = a0.X; fa[1] = a0.Y; fa[2] = a0.Z; fa[3] = a0.W;
                fa[4] = a1.X; fa[5] = a1.Y; fa[6] = a1.Z; fa[7] = a1.W;
                fb[0] = b0.X; fb[1] = b0.Y; fb[2] = b0.Z; fb[3] = b0.W;
                fb[4] = b1.X; fb[5] = b1.Y; fb[6] = b1.Z; fb[7] = b1.W;
                Loop.Unroll();
                for (int i = 0; i < 8; i++)
                {
                    Loop.Unroll();
                    for (int j = 0; j < 8; j++) acc[i * 8 + j] += fa[i] * fb[j];
                }
            }
            if (more)
            {
                Unstage(sa, StageFloats - current, nextA, p.ModeA, t);
                Unstage(sb, StageFloats - current, nextB, p.ModeB, t);
                Group.Barrier();
            }
        }

        // Thread rows 4·ty + i (i < 4) and 64 + 4·ty + i − 4; columns 4·tx.. and 64 + 4·tx.. as float4 when N % 4 == 0.
        int baseC = Grid.IdxZ * p.M * p.N;
        bool vectorC = (p.N & 3) == 0;
        Loop.Unroll();
        for (int i = 0; i < 8; i++)
        {
            int r = rowBase + 4 * ty + (i < 4 ? i : 60 + i);
            if (r < p.M)
            {
                Loop.Unroll();
                for (int h = 0; h < 2; h++)
                {
                    int col = colBase + 64 * h + 4 * tx;
                    int at = baseC + r * p.N + col;
                    int e = i * 8 + 4 * h;
                    if (vectorC && col + 3 < p.N)
                        Float4.Store(c, at, new Float4 { X = acc[e], Y = acc[e + 1], Z = acc[e + 2], W = acc[e + 3] });
                    else
                    {
                        if (col < p.N) c[at] = acc[e];
                        if (col + 1 < p.N) c[at + 1] = acc[e + 1];
                        if (col + 2 < p.N) c[at + 2] = acc[e + 2];
                        if (col + 3 < p.N) c[at + 3] = acc[e + 3];
                    }
                }
            }
        }
    }

    /// <summary>Rows of C per Sgemm group.</summary>
    public const int TileM = 64;
    /// <summary>Columns of C per Sgemm group.</summary>
    public const int TileN = 64;
    /// <summary>Step along K staged in shared memory.</summary>
    public const int TileK = 16;
    /// <summary>Threads per group side (16×16 threads, each 4×4 outputs).</summary>
    public const int Threads = 16;
    /// <summary>Row length of the staged A tile ([k][m], padded by one float against bank conflicts).</summary>
    public const int PaddedM = TileM + 1;

    /// <summary>Writes one output if it lies inside C.</summary>
    [KernelFunction]
    public static void Store(ArrayView<float> c, int batchOffset, int row, int column, int m, int n, float value)
    {
        if (row < m && column < n) c[batchOffset + row * n + column] = value;
    }

    /// <summary>C[b] = A[b]·B[b] for one 64×64 tile of C per group of 16×16 threads (the small path; see the file header).</summary>
    [Kernel]
    public static void Sgemm(ArrayView<float> a, ArrayView<float> b, ArrayView<float> c, GemmLayout p)
    {
        var tileA = SharedMemory.Allocate<float>(TileK * PaddedM);
        var tileB = SharedMemory.Allocate<float>(TileK * TileN);
        int tx = Group.IdxX, ty = Group.IdxY;
        int t = ty * Threads + tx;
        int rowBase = Grid.IdxY * TileM, colBase = Grid.IdxX * TileN;
        int baseA = p.OffsetA + Grid.IdxZ * p.BatchStrideA;
        int baseB = p.OffsetB + Grid.IdxZ * p.BatchStrideB;
        float c00 = 0f, c01 = 0f, c02 = 0f, c03 = 0f;
        float c10 = 0f, c11 = 0f, c12 = 0f, c13 = 0f;
        float c20 = 0f, c21 = 0f, c22 = 0f, c23 = 0f;
        float c30 = 0f, c31 = 0f, c32 = 0f, c33 = 0f;
        for (int k0 = 0; k0 < p.K; k0 += TileK)
        {
            // Stage A[rowBase.., k0..] as [k][m] and B[k0.., colBase..] as [k][n]; 4 elements per thread each.
            for (int e = t; e < TileM * TileK; e += Threads * Threads)
            {
                int m = e / TileK, kk = e % TileK;
                int row = rowBase + m, k = k0 + kk;
                tileA[kk * PaddedM + m] = row < p.M && k < p.K ? a[baseA + row * p.RowStrideA + k * p.ColStrideA] : 0f;
            }
            for (int e = t; e < TileK * TileN; e += Threads * Threads)
            {
                int kk = e / TileN, nn = e % TileN;
                int k = k0 + kk, column = colBase + nn;
                tileB[kk * TileN + nn] = k < p.K && column < p.N ? b[baseB + k * p.RowStrideB + column * p.ColStrideB] : 0f;
            }
            Group.Barrier();
            for (int kk = 0; kk < TileK; kk++)
            {
                int ai = kk * PaddedM + ty, bi = kk * TileN + tx;
                float a0 = tileA[ai], a1 = tileA[ai + 16], a2 = tileA[ai + 32], a3 = tileA[ai + 48];
                float b0 = tileB[bi], b1 = tileB[bi + 16], b2 = tileB[bi + 32], b3 = tileB[bi + 48];
                c00 += a0 * b0; c01 += a0 * b1; c02 += a0 * b2; c03 += a0 * b3;
                c10 += a1 * b0; c11 += a1 * b1; c12 += a1 * b2; c13 += a1 * b3;
                c20 += a2 * b0; c21 += a2 * b1; c22 += a2 * b2; c23 += a2 * b3;
                c30 += a3 * b0; c31 += a3 * b1; c32 += a3 * b2; c33 += a3 * b3;
            }
            Group.Barrier();
        }
        int baseC = Grid.IdxZ * p.M * p.N;
        int r0 = rowBase + ty, j0 = colBase + tx;
        Store(c, baseC, r0, j0, p.M, p.N, c00); Store(c, baseC, r0, j0 + 16, p.M, p.N, c01);
        Store(c, baseC, r0, j0 + 32, p.M, p.N, c02); Store(c, baseC, r0, j0 + 48, p.M, p.N, c03);
        Store(c, baseC, r0 + 16, j0, p.M, p.N, c10); Store(c, baseC, r0 + 16, j0 + 16, p.M, p.N, c11);
        Store(c, baseC, r0 + 16, j0 + 32, p.M, p.N, c12); Store(c, baseC, r0 + 16, j0 + 48, p.M, p.N, c13);
        Store(c, baseC, r0 + 32, j0, p.M, p.N, c20); Store(c, baseC, r0 + 32, j0 + 16, p.M, p.N, c21);
        Store(c, baseC, r0 + 32, j0 + 32, p.M, p.N, c22); Store(c, baseC, r0 + 32, j0 + 48, p.M, p.N, c23);
        Store(c, baseC, r0 + 48, j0, p.M, p.N, c30); Store(c, baseC, r0 + 48, j0 + 16, p.M, p.N, c31);
        Store(c, baseC, r0 + 48, j0 + 32, p.M, p.N, c32); Store(c, baseC, r0 + 48, j0 + 48, p.M, p.N, c33);
    }
}
