using System.Collections.Concurrent;
using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace Engine.Benchmarks;

/// <summary>
/// The machine's measured copy bandwidth, the denominator of "% of copy" for memory-bound cases (the
/// same ceiling as <c>Engine.Perf bandwidth</c>): <c>threads</c> threads each copy one contiguous part of
/// a 256 MB float buffer into an already-touched one with non-temporal (streaming) stores; bytes counted
/// are read + write. The best of several rounds is kept (on a shared machine the best round is the least
/// disturbed one) and cached per thread count. A case's memory floor (<see cref="BenchRun.Bytes"/>) over
/// this bandwidth is the fastest the case could possibly run.
/// </summary>
public static unsafe class MachineBandwidth
{
    private static readonly ConcurrentDictionary<int, double> s_gbps = new();

    /// <summary>Measured copy GB/s (10^9 bytes/s) with <paramref name="threads"/> threads (cached); <paramref name="quick"/>: a small buffer, one round.</summary>
    public static double CopyGBps(int threads, bool quick = false)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(threads, 1);
        return s_gbps.GetOrAdd(2 * threads + (quick ? 1 : 0), key => Measure(key / 2, quick));
    }

    private static double Measure(int threads, bool quick)
    {
        long bytes = (quick ? 4L : 64L) << 22; // 16 MB or 256 MB: far beyond the last-level cache
        byte* src = (byte*)NativeMemory.AlignedAlloc((nuint)bytes, 64);
        byte* dst = (byte*)NativeMemory.AlignedAlloc((nuint)bytes, 64);
        try
        {
            NativeMemory.Fill(src, (nuint)bytes, 1);
            NativeMemory.Clear(dst, (nuint)bytes);
            long per = (bytes / threads + 63) / 64 * 64;
            var options = new ParallelOptions { MaxDegreeOfParallelism = threads };
            double best = 0;
            for (int round = 0; round < (quick ? 2 : 6); round++)
            {
                var sw = Stopwatch.StartNew();
                Parallel.For(0, threads, options, part =>
                {
                    long start = part * per, count = Math.Min(per, bytes - start);
                    if (count > 0) CopyStreaming(src + start, dst + start, count);
                });
                double seconds = sw.Elapsed.TotalSeconds;
                if (round > 0) best = Math.Max(best, 2.0 * bytes / seconds / 1e9); // round 0 warms up (JIT, pages)
            }
            if (dst[bytes - 1] != 1) throw new InvalidOperationException("copy bandwidth: the copy did not copy");
            return best;
        }
        finally
        {
            NativeMemory.AlignedFree(src);
            NativeMemory.AlignedFree(dst);
        }
    }

    private static void CopyStreaming(byte* from, byte* to, long count)
    {
        long i = 0;
        if (Vector512.IsHardwareAccelerated)
            for (; i + 64 <= count; i += 64) Vector512.StoreAlignedNonTemporal(Vector512.LoadAligned(from + i), to + i);
        else if (Vector256.IsHardwareAccelerated)
            for (; i + 32 <= count; i += 32) Vector256.StoreAlignedNonTemporal(Vector256.LoadAligned(from + i), to + i);
        for (; i < count; i++) to[i] = from[i];
    }
}
