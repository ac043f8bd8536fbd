// Engine.Perf: microbenchmarks of the CPU-native tensor ops against this machine's measured ceiling.
//
//   dotnet run -c Release --project perf/Engine.Perf -- bandwidth [--threads N] [--size 64M] [--runs 10] [--json]
//
// "bandwidth" measures the copy ceiling first (bytes read + bytes written by a parallel copy: the
// faster of a plain memcpy and a copy with streaming stores), then
// times memory-bound Engine ops and reports each one's achieved GB/s from the bytes it must move:
//   add  y = a + b   float32: read a, read b, write y   = 12 bytes per element
//   sum  s = Σ x     float32: read x                    =  4 bytes per element
// Write-allocate traffic (a cache line of y read before it is written, when stores are not
// non-temporal) is real traffic but not counted: the count is what the op needs, not what it does.
// Every op is checked against a scalar reference before it is timed. Each timing is the median of
// --runs runs after a one-second warm-up (tiered JIT); each op run is paired with a run of the ceiling
// copy and "% copy" compares the two medians (the bandwidth a virtual machine gets drifts). Outputs are
// disposed each run so the caching allocator hands the same block back (no page faults in the timed region).

using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Text.Encodings.Web;
using System.Text.Json;
using Engine.Tensors;
using Engine.Benchmarks;
using Engine.Tensors.Cpu;

return Cli.Run(args);

internal static class Cli
{
    public static int Run(string[] args)
    {
        if (args.Length == 0 || args[0] is "-h" or "--help")
        {
            Console.WriteLine("usage: Engine.Perf bandwidth [--threads N] [--size 64M] [--runs 10] [--json]");
            return args.Length == 0 ? 1 : 0;
        }
        try
        {
            return args[0] switch
            {
                "bandwidth" => BandwidthBenchmark.Run(Options.Parse(args[1..])),
                _ => throw new ArgumentException($"unknown benchmark '{args[0]}'; expected: bandwidth"),
            };
        }
        catch (ArgumentException e)
        {
            Console.Error.WriteLine($"error: {e.Message}");
            return 2;
        }
    }
}

internal sealed record Options(int Threads, long Size, int Runs, bool Json)
{
    public static Options Parse(string[] args)
    {
        var o = new Options(Environment.ProcessorCount, 64L << 20, 10, false);
        for (int i = 0; i < args.Length; i++)
        {
            string Value() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{args[i]} needs a value");
            o = args[i] switch
            {
                "--threads" => o with { Threads = int.Parse(Value(), CultureInfo.InvariantCulture) },
                "--size" => o with { Size = ParseSize(Value()) },
                "--runs" => o with { Runs = int.Parse(Value(), CultureInfo.InvariantCulture) },
                "--json" => o with { Json = true },
                _ => throw new ArgumentException($"unknown option '{args[i]}'"),
            };
        }
        if (o.Threads < 1 || o.Size < 1 || o.Runs < 1) throw new ArgumentException("--threads, --size and --runs must be positive");
        return o;
    }

    /// <summary>An element count: a number with an optional K/M/G suffix (powers of 1024): 64M = 67,108,864.</summary>
    private static long ParseSize(string s)
    {
        long unit = char.ToUpperInvariant(s[^1]) switch { 'K' => 1L << 10, 'M' => 1L << 20, 'G' => 1L << 30, _ => 1 };
        var digits = unit == 1 ? s : s[..^1];
        return long.Parse(digits, CultureInfo.InvariantCulture) * unit;
    }
}

internal sealed record Result(string Name, string What, double BytesPerElement, double MedianMs, double MinMs, double GBps, double CopyGBps, double PercentOfCopy);

internal static unsafe class BandwidthBenchmark
{
    public static int Run(Options o)
    {
        Parallelism.MaxThreads = o.Threads;
        long n = o.Size;
        var results = new List<Result>();
        using var copier = new Copier(n, o.Threads);

        // The ceiling: the faster of a plain memcpy and a copy with non-temporal (streaming) stores,
        // which skip reading the destination's cache lines before writing them.
        var plain = Median(o.Runs, () => copier.TimeMs(nonTemporal: false));
        var stream = Median(o.Runs, () => copier.TimeMs(nonTemporal: true));
        bool nt = stream.Median < plain.Median;
        double copyGBps = 8.0 * n / (Math.Min(plain.Median, stream.Median) * 1e6);
        results.Add(Row("copy", "parallel memcpy (read + write)", 8, n, plain, copyGBps));
        results.Add(Row("copynt", "parallel copy, streaming stores", 8, n, stream, copyGBps));
        copier.Check();

        using var a = Tensor.Rand([n], generator: new Generator(1));
        using var b = Tensor.Rand([n], generator: new Generator(2));

        ValidateAdd(a, b);
        results.Add(Time("add", "y = a + b, float32", 12, n, o, copier, nt, () => a.Add(b)));

        ValidateSum(a);
        results.Add(Time("sum", "s = sum(x), float32", 4, n, o, copier, nt, () => a.Sum()));

        if (o.Json)
        {
            var report = new
            {
                benchmark = "bandwidth",
                machine = CpuModel(),
                cores = Environment.ProcessorCount,
                threads = o.Threads,
                elements = n,
                runs = o.Runs,
                date = DateTime.UtcNow.ToString("yyyy-MM-ddTHH:mm:ssZ", CultureInfo.InvariantCulture),
                results = results.Select(r => new { name = r.Name, what = r.What, bytes_per_element = r.BytesPerElement, median_ms = r.MedianMs, min_ms = r.MinMs, gb_per_s = r.GBps, copy_gb_per_s = r.CopyGBps, percent_of_copy = r.PercentOfCopy }),
            };
            Console.WriteLine(JsonSerializer.Serialize(report, new JsonSerializerOptions { WriteIndented = true, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping }));
        }
        else
        {
            Console.WriteLine($"machine: {CpuModel()}, {Environment.ProcessorCount} cores; threads {o.Threads}; {n:N0} elements; median of {o.Runs} runs");
            Console.WriteLine($"{"op",-6} {"what",-32} {"B/elem",7} {"median_ms",10} {"min_ms",9} {"GB/s",8} {"copy GB/s",10} {"% copy",7}");
            foreach (var r in results)
                Console.WriteLine($"{r.Name,-6} {r.What,-32} {r.BytesPerElement,7:0} {r.MedianMs,10:0.00} {r.MinMs,9:0.00} {r.GBps,8:0.00} {r.CopyGBps,10:0.00} {r.PercentOfCopy,6:0}%");
        }
        return 0;
    }

    private static Result Row(string name, string what, double bytesPerElement, long n, (double Median, double Min) t, double copyGBps)
    {
        double gbps = bytesPerElement * n / (t.Median * 1e6);
        return new Result(name, what, bytesPerElement, t.Median, t.Min, gbps, copyGBps, 100 * gbps / copyGBps);
    }

    /// <summary>
    /// Times <paramref name="op"/> with each run paired with a run of the ceiling copy, so the
    /// percentage compares the op with the bandwidth the machine gave during the same seconds (on a
    /// shared or virtual machine it drifts by tens of percent from minute to minute).
    /// </summary>
    private static Result Time(string name, string what, double bytesPerElement, long n, Options o, Copier copier, bool nt, Func<Tensor> op)
    {
        var copyTimes = new List<double>();
        var t = Median(o.Runs, () =>
        {
            copyTimes.Add(copier.TimeMs(nt));
            var sw = Stopwatch.StartNew();
            var y = op();
            double ms = sw.Elapsed.TotalMilliseconds;
            y.Dispose();
            return ms;
        });
        var timed = copyTimes.Skip(copyTimes.Count - o.Runs).Order().ToArray();
        double copyMedian = o.Runs % 2 == 1 ? timed[o.Runs / 2] : (timed[o.Runs / 2 - 1] + timed[o.Runs / 2]) / 2;
        return Row(name, what, bytesPerElement, n, t, 8.0 * n / (copyMedian * 1e6));
    }

    /// <summary>
    /// Warm-up runs for at least one second (and at least three runs), then the median and minimum of
    /// <paramref name="runs"/> timed runs (ms). The long warm-up is for tiered compilation: a method
    /// starts unoptimized and is recompiled optimized in the background some 100 ms after it has been
    /// called 30 times; two warm-up runs measured TensorPrimitives.Sum's unoptimized code (3× slower).
    /// </summary>
    private static (double Median, double Min) Median(int runs, Func<double> timedRun)
    {
        var warmup = Stopwatch.StartNew();
        for (int i = 0; i < 3 || warmup.ElapsedMilliseconds < 1000; i++) timedRun();
        var times = new double[runs];
        for (int i = 0; i < runs; i++) times[i] = timedRun();
        Array.Sort(times);
        double median = runs % 2 == 1 ? times[runs / 2] : (times[runs / 2 - 1] + times[runs / 2]) / 2;
        return (median, times[0]);
    }

    /// <summary>Add against the scalar float32 sum at 100,000 random positions and both ends (float addition is exact to compare).</summary>
    private static void ValidateAdd(Tensor a, Tensor b)
    {
        using var y = a.Add(b);
        float* pa = a.Ptr<float>(), pb = b.Ptr<float>(), py = y.Ptr<float>();
        var rng = new Random(3);
        long n = a.NumEl;
        for (int k = 0; k < 100_002; k++)
        {
            long i = k switch { 0 => 0, 1 => n - 1, _ => rng.NextInt64(n) };
            if (py[i] != pa[i] + pb[i])
                throw new InvalidOperationException($"add: element {i}: expected {pa[i] + pb[i]}, got {py[i]}");
        }
    }

    /// <summary>Sum against a float64 sum of every element (relative error of a float32 blocked sum stays far below 1e-5 here).</summary>
    private static void ValidateSum(Tensor x)
    {
        using var s = x.Sum();
        float* p = x.Ptr<float>();
        double reference = 0;
        for (long i = 0; i < x.NumEl; i++) reference += p[i];
        double got = s.Item<float>();
        if (Math.Abs(got - reference) > 1e-5 * Math.Abs(reference) + 1e-3)
            throw new InvalidOperationException($"sum: expected {reference}, got {got}");
    }

    private static string CpuModel()
    {
        try
        {
            foreach (var line in File.ReadLines("/proc/cpuinfo"))
                if (line.StartsWith("model name", StringComparison.Ordinal)) return line[(line.IndexOf(':') + 1)..].Trim();
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        return RuntimeInformation.ProcessArchitecture.ToString();
    }
}
