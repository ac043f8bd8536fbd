// masked_select on a device, whose output size depends on the data: a count per block, an exclusive
// prefix sum of the counts (its last entry is the output size, the one number the host reads back),
// then each block writes its selected elements at its offset, in row-major order. The gradient's
// masked scatter runs the same plan backwards.
//
// Math      MaskedSelectWrite  y[k] = x[i_k], i_0 < i_1 < ... the positions where mask[i] ≠ 0 (torch.masked_select)
//           MaskedScatterWrite y[i_k] = src[k], y zero elsewhere (the host zero-fills y): the adjoint,
//                              so the gradient of masked_select is g scattered back (Ops/Indexing.cs).
//           CountBlocks        counts[b] = #{i in block b : mask[i] ≠ 0}
//           ScanBlocks         offsets[b] = Σ_{b' < b} counts[b'], offsets[blocks] = total (exclusive scan)
// Layout    x (or src), mask and y contiguous: the host expands x and the mask to their broadcast shape and
//           makes them contiguous (float32 values, bool bytes). Block b = elements [b·Block, (b+1)·Block),
//           Block = 4·GroupSize = 1024; thread t of a block owns the 4 consecutive elements at 4t, so a
//           block-wide inclusive scan of the per-thread counts (Hillis-Steele in shared memory, log2 256 = 8
//           steps) gives each thread its first output position: the order is row-major.
// Bytes     1 B (mask) read twice + 4 B read and 4 B written per selected element; the scan touches
//           4 B per block. ScanBlocks is one thread looping over the blocks (n/1024 of them: ~1 µs per
//           thousand blocks) — enough for the tensors masked_select sees; a tree scan would replace it at
//           10^8 elements.
// Indexing  int (32-bit) sizes; the host refuses 2^31 elements or more.
// Launch    CountBlocks, MaskedSelectWrite, MaskedScatterWrite: ⌈n/1024⌉ groups of GroupSize (256) threads
//           (exactly: the scan assumes it), static shared memory 256 ints (1 KiB). ScanBlocks: 1 group of 1.
using Engine.Runtime.Kernels;

namespace Engine.Tensors.Kernels;

/// <summary>Count, scan and compacting writes of masked_select and its gradient (see the file header).</summary>
internal static partial class SelectKernels
{
    /// <summary>Threads per group (the scans assume exactly this many).</summary>
    public const int GroupSize = 256;

    /// <summary>Elements per thread.</summary>
    public const int PerThread = 4;

    /// <summary>Elements per group (block).</summary>
    public const int Block = GroupSize * PerThread;

    /// <summary>How many of this thread's 4 elements are selected.</summary>
    [KernelFunction]
    private static int ThreadCount(ArrayView<byte> mask, int first, int n)
    {
        int c = 0;
        for (int k = 0; k < PerThread; k++)
            if (first + k < n && mask[first + k] != 0) c++;
        return c;
    }

    /// <summary>counts[b] = selected elements of block b.</summary>
    [Kernel]
    public static void CountBlocks(ArrayView<byte> mask, ArrayView<int> counts, int n)
    {
        var shared = SharedMemory.Allocate<int>(GroupSize);
        int t = Group.IdxX;
        shared[t] = ThreadCount(mask, Grid.IdxX * Block + t * PerThread, n);
        Group.Barrier();
        for (int stride = GroupSize / 2; stride > 0; stride /= 2)
        {
            if (t < stride) shared[t] += shared[t + stride];
            Group.Barrier();
        }
        if (t == 0) counts[Grid.IdxX] = shared[0];
    }

    /// <summary>offsets[b] = Σ counts[0..b), offsets[blocks] = the total; one thread.</summary>
    [Kernel]
    public static void ScanBlocks(ArrayView<int> counts, ArrayView<int> offsets, int blocks)
    {
        if (Grid.GlobalIndexX != 0) return;
        int sum = 0;
        for (int b = 0; b < blocks; b++)
        {
            offsets[b] = sum;
            sum += counts[b];
        }
        offsets[blocks] = sum;
    }

    /// <summary>
    /// The position in the compacted output of this thread's first selected element: its block's offset plus
    /// the selected elements of the threads before it (an inclusive scan through <paramref name="shared"/>).
    /// Every thread of the group must call it (barriers).
    /// </summary>
    [KernelFunction]
    private static int FirstPosition(ArrayView<int> shared, ArrayView<int> offsets, int count)
    {
        int t = Group.IdxX;
        shared[t] = count;
        Group.Barrier();
        for (int s = 1; s < GroupSize; s *= 2)
        {
            int v = t >= s ? shared[t - s] : 0;
            Group.Barrier();
            shared[t] += v;
            Group.Barrier();
        }
        return offsets[Grid.IdxX] + shared[t] - count;
    }

    /// <summary>y[k] = x[i_k] for the selected positions i_k, in order.</summary>
    [Kernel]
    public static void MaskedSelectWrite(ArrayView<float> x, ArrayView<byte> mask, ArrayView<int> offsets, ArrayView<float> y, int n)
    {
        var shared = SharedMemory.Allocate<int>(GroupSize);
        int first = Grid.IdxX * Block + Group.IdxX * PerThread;
        int count = ThreadCount(mask, first, n);
        int pos = FirstPosition(shared, offsets, count);
        for (int k = 0; k < PerThread; k++)
        {
            int i = first + k;
            if (i < n && mask[i] != 0)
            {
                y[pos] = x[i];
                pos++;
            }
        }
    }

    /// <summary>y[i_k] = src[k] for the selected positions i_k (y zero-filled by the host).</summary>
    [Kernel]
    public static void MaskedScatterWrite(ArrayView<float> src, ArrayView<byte> mask, ArrayView<int> offsets, ArrayView<float> y, int n)
    {
        var shared = SharedMemory.Allocate<int>(GroupSize);
        int first = Grid.IdxX * Block + Group.IdxX * PerThread;
        int count = ThreadCount(mask, first, n);
        int pos = FirstPosition(shared, offsets, count);
        for (int k = 0; k < PerThread; k++)
        {
            int i = first + k;
            if (i < n && mask[i] != 0)
            {
                y[i] = src[pos];
                pos++;
            }
        }
    }
}
