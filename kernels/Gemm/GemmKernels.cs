// SGEMM: C[b] = A[b]·B[b], float32, tiled through shared memory with 4×4 outputs per thread.
//
// Math      C[b, i, j] = Σ_{k<K} A[b, i, k]·B[b, k, j] for i < M, j < N (with K = 0, C = 0).
// Numerics  float accumulation in the order k = 0, 1, ... (c += a·b; NVRTC and OpenCL may contract
//           it to an fma, the emulator rounds the product): error ≲ K·ε·Σ_k |a||b|, as the CPU
//           op (Cpu/Gemm.cs, float32 accumulation). No gradient here: Tensor.MatMul's backward is
//           two more products (dA = g·Bᵀ, dB = Aᵀ·g), which this kernel runs through strides.
// Layout    A and B are any strided views: element (b, i, k) of A is a[OffsetA + b·BatchStrideA +
//           i·RowStrideA + k·ColStrideA] (a transposed operand just swaps its two strides; a
//           broadcast batch has stride 0). C is contiguous [batch, M, N].
// Tiling    a group of 16×16 threads owns a 64×64 tile of C; per step of 16 along K it stages a
//           64×16 tile of A (as [k][m], rows padded to 65 floats against bank conflicts) and a 16×64
//           tile of B in shared memory (out-of-range elements load as 0, so M, N, K are arbitrary),
//           and each thread accumulates the 4×4 outputs (ty + 16·r, tx + 16·c) in registers.
//           Consecutive threads load consecutive k of A and consecutive j of B: coalesced for
//           row-major operands. Indices are int (the host plan checks every reach fits).
// Flops     2·M·N·K. Bytes: A and B each read once per tile of the other operand, i.e.
//           4·K·(M·⌈N/64⌉ + N·⌈M/64⌉) bytes, plus 4·M·N written: 64/4 = 16 flops per float loaded
//           from global memory (L2), 8 from shared memory per fma pair (a 4×4 register block reads
//           8 shared floats for 16 fmas). A first version: no double buffering, no vector loads.
// Launch    GemmPlan: group (16, 16), grid (⌈N/64⌉, ⌈M/64⌉, batch). Static shared memory:
//           (16·65 + 16·64)·4 = 8256 bytes. 16 accumulators + 8 operands per thread: no spills.
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
}

/// <summary>Tiled shared-memory SGEMM (see the file header).</summary>
internal static partial class GemmKernels
{
    /// <summary>Rows of C per group.</summary>
    public const int TileM = 64;
    /// <summary>Columns of C per group.</summary>
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

    /// <summary>C[b] = A[b]·B[b] for one 64×64 tile of C per group (see the file header).</summary>
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
