using System.Collections.Concurrent;

namespace Engine.Benchmarks;

/// <summary>
/// The machine's measured copy bandwidth, the denominator of "% of copy" for memory-bound cases: the
/// ceiling of <c>Engine.Perf bandwidth</c>, from the same <see cref="Copier"/> (a 64M-float buffer copied by
/// <c>threads</c> threads with streaming stores; bytes counted are read + write). The best of several rounds
/// is kept (on a shared machine the best round is the least disturbed one) and cached per thread count. A
/// case's memory floor (<see cref="BenchRun.Bytes"/>) over this bandwidth is the fastest it could run.
/// </summary>
public static class MachineBandwidth
{
    private static readonly ConcurrentDictionary<int, double> s_gbps = new();

    /// <summary>Measured copy GB/s (10^9 bytes/s) with <paramref name="threads"/> threads (cached); <paramref name="quick"/>: a small buffer, two rounds.</summary>
    public static double CopyGBps(int threads, bool quick = false)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(threads, 1);
        return s_gbps.GetOrAdd(2 * threads + (quick ? 1 : 0), key => Measure(key / 2, quick));
    }

    private static double Measure(int threads, bool quick)
    {
        long n = quick ? 1L << 22 : 64L << 20; // 16 MB or 256 MB per buffer: far beyond the last-level cache
        using var copier = new Copier(n, threads);
        copier.TimeMs(nonTemporal: true); // warm-up (JIT)
        double bestMs = double.PositiveInfinity;
        for (int round = 0; round < (quick ? 2 : 5); round++) bestMs = Math.Min(bestMs, copier.TimeMs(nonTemporal: true));
        copier.Check();
        return 8.0 * n / (bestMs * 1e6);
    }
}
