namespace Engine.Tensors.Cpu;

/// <summary>How many threads the CPU-native ops use, and when they bother to use more than one.</summary>
public static class Parallelism
{
    private static int s_maxThreads = Environment.ProcessorCount;

    /// <summary>Most threads one op uses (default: the processor count). <c>--threads</c> sets it.</summary>
    public static int MaxThreads
    {
        get => s_maxThreads;
        set
        {
            ArgumentOutOfRangeException.ThrowIfLessThan(value, 1);
            s_maxThreads = value;
        }
    }

    /// <summary>Below this many elements an elementwise op runs on the calling thread.</summary>
    internal const long ElementwiseThreshold = 1 << 16;

    /// <summary>Elements per parallel work item (a few hundred KB: enough to hide scheduling cost).</summary>
    internal const long Grain = 1 << 15;

    /// <summary>Most tiles an elementwise op is cut into; past <see cref="Grain"/> × this, tiles grow instead.</summary>
    internal const long MaxTiles = 64;

    /// <summary>
    /// Elements per tile of an elementwise op of <paramref name="numEl"/> elements: <see cref="Grain"/>, or
    /// numEl / <see cref="MaxTiles"/> (rounded up to a multiple of 1024) when that is larger. Large tiles matter for
    /// memory-bound ops on big tensors: TensorPrimitives switches to non-temporal stores only for spans
    /// over 256 KB, which skips the read-for-ownership of the output (add of 64M float32 on 2 cores:
    /// ~75 % of a streaming copy's bandwidth with 128 KB tiles, ~100 % with 4 MB tiles; perf/RESULTS.md). 64 tiles still balance
    /// load across 16 threads. The size depends on the element count only, never on
    /// <see cref="MaxThreads"/>, so an op's results do not depend on the thread count.
    /// </summary>
    internal static long TileElements(long numEl) => Math.Max(Grain, ((numEl + MaxTiles - 1) / MaxTiles + 1023) / 1024 * 1024);

    /// <summary>
    /// How many parallel pieces a reduction aims for when its natural work items are too few (a
    /// constant, not <see cref="MaxThreads"/>: where float sums are split decides their rounding, and
    /// results must not change with the thread count).
    /// </summary>
    internal const long ReductionSplits = 8;

    /// <summary>Runs <paramref name="body"/> for 0..count-1, in parallel when <paramref name="parallel"/> and there is more than one item.</summary>
    internal static void For(long count, bool parallel, Action<long> body)
    {
        if (!parallel || count <= 1 || MaxThreads == 1)
        {
            for (long i = 0; i < count; i++) body(i);
            return;
        }
        Parallel.For(0L, count, new ParallelOptions { MaxDegreeOfParallelism = MaxThreads }, body);
    }
}
