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
