using System.Collections.Concurrent;
using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Engine.Benchmarks.Cases;

/// <summary>
/// The machine's measured float32 FMA ceiling, the denominator of "% of peak" for compute-bound cases.
/// <para>
/// Each of <c>threads</c> threads runs a loop of fused multiply-adds on 16 independent vector
/// accumulators (the widest accelerated vector: Vector512 on AVX-512, else Vector256, else Vector128).
/// 16 chains exceed what any current core needs to keep its FMA pipes full (latency 4 × 2 pipes = 8
/// on Zen 4/5 and Skylake-X), so the loop is bound by FMA throughput alone, with no memory traffic.
/// Flops count 2 per lane per FMA. The best of several timed rounds is kept (the machine is shared;
/// the best round is the one least disturbed), and the result is cached per thread count.
/// </para>
/// </summary>
public static class MachinePeak
{
    private static readonly ConcurrentDictionary<int, double> s_gflops = new();

    /// <summary>Iterations of the 16-FMA loop body per thread per round (about 5 GFLOP per thread with Vector512).</summary>
    private const long Iterations = 10_000_000;

    /// <summary>
    /// Measured float32 FMA GFLOP/s with <paramref name="threads"/> threads busy at once (cached). With
    /// <paramref name="quick"/> (the benchmarks' <c>--quick</c> smoke test) one short round: a rough figure.
    /// </summary>
    public static double FmaGflops(int threads, bool quick = false)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(threads, 1);
        return s_gflops.GetOrAdd(2 * threads + (quick ? 1 : 0), key => Measure(key / 2, quick));
    }

    private static double Measure(int threads, bool quick)
    {
        Loop(1000); // JIT the loop before timing
        double best = 0;
        long iterations = quick ? Iterations / 20 : Iterations;
        for (int round = 0; round < (quick ? 1 : 5); round++)
        {
            using var start = new Barrier(threads + 1);
            var workers = new Thread[threads];
            for (int t = 0; t < threads; t++)
            {
                workers[t] = new Thread(() =>
                {
                    start.SignalAndWait();
                    Sink(Loop(iterations));
                }) { IsBackground = true };
                workers[t].Start();
            }
            start.SignalAndWait();
            var sw = Stopwatch.StartNew();
            foreach (var w in workers) w.Join();
            double seconds = sw.Elapsed.TotalSeconds;
            double flops = 2.0 * 16 * LanesOfFloat * iterations * threads;
            best = Math.Max(best, flops / seconds / 1e9);
        }
        return best;
    }

    private static int LanesOfFloat =>
        Vector512.IsHardwareAccelerated ? Vector512<float>.Count :
        Vector256.IsHardwareAccelerated ? Vector256<float>.Count : Vector128<float>.Count;

    private static float s_sink;

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void Sink(float x) => s_sink += x;

    private static float Loop(long iterations)
    {
        if (Vector512.IsHardwareAccelerated) return Loop512(iterations);
        if (Vector256.IsHardwareAccelerated) return Loop256(iterations);
        return Loop128(iterations);
    }

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static float Loop512(long iterations)
    {
        var m = Vector512.Create(0.9999999f);
        var a = Vector512.Create(1e-7f);
        Vector512<float> c0 = Vector512.Create(1f), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0, c6 = c0, c7 = c0;
        Vector512<float> c8 = c0, c9 = c0, c10 = c0, c11 = c0, c12 = c0, c13 = c0, c14 = c0, c15 = c0;
        for (long i = 0; i < iterations; i++)
        {
            c0 = Vector512.FusedMultiplyAdd(c0, m, a); c1 = Vector512.FusedMultiplyAdd(c1, m, a);
            c2 = Vector512.FusedMultiplyAdd(c2, m, a); c3 = Vector512.FusedMultiplyAdd(c3, m, a);
            c4 = Vector512.FusedMultiplyAdd(c4, m, a); c5 = Vector512.FusedMultiplyAdd(c5, m, a);
            c6 = Vector512.FusedMultiplyAdd(c6, m, a); c7 = Vector512.FusedMultiplyAdd(c7, m, a);
            c8 = Vector512.FusedMultiplyAdd(c8, m, a); c9 = Vector512.FusedMultiplyAdd(c9, m, a);
            c10 = Vector512.FusedMultiplyAdd(c10, m, a); c11 = Vector512.FusedMultiplyAdd(c11, m, a);
            c12 = Vector512.FusedMultiplyAdd(c12, m, a); c13 = Vector512.FusedMultiplyAdd(c13, m, a);
            c14 = Vector512.FusedMultiplyAdd(c14, m, a); c15 = Vector512.FusedMultiplyAdd(c15, m, a);
        }
        var s = ((c0 + c1) + (c2 + c3)) + ((c4 + c5) + (c6 + c7)) + ((c8 + c9) + (c10 + c11)) + ((c12 + c13) + (c14 + c15));
        return Vector512.Sum(s);
    }

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static float Loop256(long iterations)
    {
        var m = Vector256.Create(0.9999999f);
        var a = Vector256.Create(1e-7f);
        Vector256<float> c0 = Vector256.Create(1f), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0, c6 = c0, c7 = c0;
        Vector256<float> c8 = c0, c9 = c0, c10 = c0, c11 = c0, c12 = c0, c13 = c0, c14 = c0, c15 = c0;
        for (long i = 0; i < iterations; i++)
        {
            c0 = Vector256.FusedMultiplyAdd(c0, m, a); c1 = Vector256.FusedMultiplyAdd(c1, m, a);
            c2 = Vector256.FusedMultiplyAdd(c2, m, a); c3 = Vector256.FusedMultiplyAdd(c3, m, a);
            c4 = Vector256.FusedMultiplyAdd(c4, m, a); c5 = Vector256.FusedMultiplyAdd(c5, m, a);
            c6 = Vector256.FusedMultiplyAdd(c6, m, a); c7 = Vector256.FusedMultiplyAdd(c7, m, a);
            c8 = Vector256.FusedMultiplyAdd(c8, m, a); c9 = Vector256.FusedMultiplyAdd(c9, m, a);
            c10 = Vector256.FusedMultiplyAdd(c10, m, a); c11 = Vector256.FusedMultiplyAdd(c11, m, a);
            c12 = Vector256.FusedMultiplyAdd(c12, m, a); c13 = Vector256.FusedMultiplyAdd(c13, m, a);
            c14 = Vector256.FusedMultiplyAdd(c14, m, a); c15 = Vector256.FusedMultiplyAdd(c15, m, a);
        }
        var s = ((c0 + c1) + (c2 + c3)) + ((c4 + c5) + (c6 + c7)) + ((c8 + c9) + (c10 + c11)) + ((c12 + c13) + (c14 + c15));
        return Vector256.Sum(s);
    }

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static float Loop128(long iterations)
    {
        var m = Vector128.Create(0.9999999f);
        var a = Vector128.Create(1e-7f);
        Vector128<float> c0 = Vector128.Create(1f), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0, c6 = c0, c7 = c0;
        Vector128<float> c8 = c0, c9 = c0, c10 = c0, c11 = c0, c12 = c0, c13 = c0, c14 = c0, c15 = c0;
        for (long i = 0; i < iterations; i++)
        {
            c0 = Vector128.FusedMultiplyAdd(c0, m, a); c1 = Vector128.FusedMultiplyAdd(c1, m, a);
            c2 = Vector128.FusedMultiplyAdd(c2, m, a); c3 = Vector128.FusedMultiplyAdd(c3, m, a);
            c4 = Vector128.FusedMultiplyAdd(c4, m, a); c5 = Vector128.FusedMultiplyAdd(c5, m, a);
            c6 = Vector128.FusedMultiplyAdd(c6, m, a); c7 = Vector128.FusedMultiplyAdd(c7, m, a);
            c8 = Vector128.FusedMultiplyAdd(c8, m, a); c9 = Vector128.FusedMultiplyAdd(c9, m, a);
            c10 = Vector128.FusedMultiplyAdd(c10, m, a); c11 = Vector128.FusedMultiplyAdd(c11, m, a);
            c12 = Vector128.FusedMultiplyAdd(c12, m, a); c13 = Vector128.FusedMultiplyAdd(c13, m, a);
            c14 = Vector128.FusedMultiplyAdd(c14, m, a); c15 = Vector128.FusedMultiplyAdd(c15, m, a);
        }
        var s = ((c0 + c1) + (c2 + c3)) + ((c4 + c5) + (c6 + c7)) + ((c8 + c9) + (c10 + c11)) + ((c12 + c13) + (c14 + c15));
        return Vector128.Sum(s);
    }
}
