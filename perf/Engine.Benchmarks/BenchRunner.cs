using System.Diagnostics;
using System.Globalization;
using System.Reflection;
using System.Text.Encodings.Web;
using System.Text.Json;
using Engine.Runtime;
using Engine.Tensors.Cpu;

namespace Engine.Benchmarks;

/// <summary>The measured result of one case.</summary>
/// <param name="Name">Case name.</param>
/// <param name="Shape">The case's shape.</param>
/// <param name="Threads">CPU threads used.</param>
/// <param name="Runs">Timed runs.</param>
/// <param name="MedianMs">Median time of one step.</param>
/// <param name="MinMs">Fastest step.</param>
/// <param name="PeakBytes">Peak bytes held by Engine's host allocator while the case was prepared and run, above what was held before.</param>
/// <param name="PeakRssMb">The process's peak resident set (VmHWM), MiB: comparable with torch_bench.py's <c>peak_rss_mb</c> only roughly (different runtimes).</param>
/// <param name="Gflops">GFLOP/s from the median, when the case counts flops.</param>
/// <param name="GBps">GB/s (10^9 bytes/s) of the case's memory floor from the median, when the case counts bytes.</param>
/// <param name="Extra">Case-specific fields.</param>
/// <param name="Device">The device the case ran on (<c>cpu</c>, <c>emulator:0</c>, <c>opencl:0</c>, <c>cuda:0</c>).</param>
/// <param name="Timing">How each run was timed (<see cref="BenchDevice.Timing"/>).</param>
public sealed record BenchResult(string Name, IReadOnlyList<long> Shape, int Threads, int Runs, double MedianMs, double MinMs,
    long PeakBytes, double PeakRssMb, double? Gflops, double? GBps, IReadOnlyDictionary<string, object> Extra,
    string Device = "cpu", string Timing = "host clock")
{
    /// <summary>One JSON object (snake_case keys, as torch_bench.py prints).</summary>
    public string ToJson()
    {
        var o = new Dictionary<string, object?>
        {
            ["name"] = Name,
            ["engine"] = "engine " + Device,
            ["device"] = Device,
            ["timing"] = Timing,
            ["threads"] = Threads,
            ["shape"] = Shape,
            ["median_ms"] = Math.Round(MedianMs, 4),
            ["min_ms"] = Math.Round(MinMs, 4),
            ["runs"] = Runs,
            ["peak_bytes"] = PeakBytes,
            ["peak_rss_mb"] = Math.Round(PeakRssMb),
        };
        if (Gflops is { } g)
        {
            o["gflops"] = Math.Round(g, 2);
            if (Device != "cpu") o["tflops"] = Math.Round(g / 1000, 4);
        }
        if (GBps is { } b) o["gb_per_s"] = Math.Round(b, 2);
        foreach (var (k, v) in Extra) o[k] = v;
        return JsonSerializer.Serialize(o, new JsonSerializerOptions { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping });
    }
}

/// <summary>Finds cases and runs them: validate, warm up, time, report.</summary>
public static class BenchRunner
{
    private static readonly Lazy<IReadOnlyList<BenchCase>> s_cases = new(() =>
        typeof(BenchCase).Assembly.GetTypes()
            .Where(t => !t.IsAbstract && typeof(BenchCase).IsAssignableFrom(t) && t.GetConstructor(Type.EmptyTypes) is not null)
            .Select(t => (BenchCase)Activator.CreateInstance(t)!)
            .OrderBy(c => c.Name, StringComparer.Ordinal)
            .ToArray());

    /// <summary>Every case, by name.</summary>
    public static IReadOnlyList<BenchCase> Cases => s_cases.Value;

    /// <summary>The case called <paramref name="name"/>.</summary>
    /// <exception cref="ArgumentException">No such case (the message lists the known ones).</exception>
    public static BenchCase Find(string name)
        => Cases.FirstOrDefault(c => c.Name == name)
           ?? throw new ArgumentException($"bench: unknown case '{name}'; known: {string.Join(", ", Cases.Select(c => c.Name))}.");

    /// <summary>
    /// Prepares (and so validates) the case, warms up for at least one second and three steps (tiered
    /// JIT recompiles hot methods ~100 ms after their 30th call), then times <see cref="BenchOptions.Runs"/> steps.
    /// </summary>
    public static BenchResult Run(BenchCase benchCase, BenchOptions options, Action<string>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(benchCase);
        ArgumentNullException.ThrowIfNull(options);
        if (options.Threads < 1 || options.Runs < 1)
            throw new ArgumentOutOfRangeException(nameof(options), $"bench: threads and runs must be positive; got threads {options.Threads}, runs {options.Runs}.");
        var device = options.Target;
        if (!device.IsCpu && !benchCase.RunsOnDevices)
            throw new BenchDeviceException($"bench {benchCase.Name}: this case runs on the CPU only (it has no device version); run it without --device, or with --device cpu.");
        int savedThreads = Parallelism.MaxThreads;
        Parallelism.MaxThreads = options.Threads;
        try
        {
            // The peak of the allocator the case's tensors live in: the host's on the CPU, the device's otherwise.
            var allocator = device.Allocator;
            long baseline = allocator.CurrentBytes;
            allocator.ResetPeak();
            progress?.Invoke($"{benchCase.Name}: preparing and validating on {device.Device}");
            using var run = benchCase.Prepare(options);
            progress?.Invoke($"{benchCase.Name}: warming up");
            var warm = Stopwatch.StartNew();
            for (int i = 0; i < run.WarmupSteps || warm.ElapsedMilliseconds < 1000; i++)
            {
                run.Step();
                if (options.Quick) break;
            }
            device.Synchronize();
            var times = new double[options.Runs];
            for (int i = 0; i < times.Length; i++)
            {
                progress?.Invoke($"{benchCase.Name}: run {i + 1}/{times.Length}");
                times[i] = device.Time(run.Step);
            }
            Array.Sort(times);
            double median = times.Length % 2 == 1 ? times[times.Length / 2] : (times[times.Length / 2 - 1] + times[times.Length / 2]) / 2;
            long peak = allocator.PeakBytes - baseline;
            if (!device.IsCpu)
            {
                run.Extra["device_name"] = device.Name;
                if (device.CudaPeak is { } cp)
                {
                    // Theoretical ceilings from the driver's attributes (CudaDevicePeak): "% of peak" = achieved / ceiling.
                    if (cp.Fp32Tflops is { } tf)
                    {
                        run.Extra["peak_fp32_tflops"] = Math.Round(tf, 2);
                        if (run.Flops is { } fl) run.Extra["percent_of_peak_flops"] = Math.Round(100 * fl / (median * 1e9) / tf, 1);
                    }
                    if (cp.DramGBps is { } bw)
                    {
                        run.Extra["peak_dram_gb_per_s"] = Math.Round(bw, 1);
                        if (run.Bytes is { } by) run.Extra["percent_of_peak_bandwidth"] = Math.Round(100 * by / (median * 1e6) / bw, 1);
                    }
                    run.Extra["sm_count"] = cp.MultiprocessorCount;
                    run.Extra["sm_clock_mhz"] = cp.ClockKHz / 1000;
                }
            }
            else if (run.Bytes is { } floor)
            {
                // The memory floor at the machine's copy bandwidth, measured now (after the timed runs, so it
                // does not warm the case's caches): "% of copy" = achieved GB/s over the copy's GB/s.
                double copy = MachineBandwidth.CopyGBps(options.Threads, options.Quick);
                run.Extra["copy_gb_per_s"] = Math.Round(copy, 2);
                run.Extra["floor_ms"] = Math.Round(floor / (copy * 1e6), 3);
                run.Extra["percent_of_copy"] = Math.Round(100 * floor / (median * 1e6) / copy, 1);
            }
            return new BenchResult(benchCase.Name, run.Shape, options.Threads, options.Runs, median, times[0], peak, PeakRssMb(),
                run.Flops is { } f ? f / (median * 1e6) : null,
                run.Bytes is { } b ? b / (median * 1e6) : null,
                new Dictionary<string, object>(run.Extra), device.Device.ToString(), device.Timing);
        }
        finally
        {
            Parallelism.MaxThreads = savedThreads;
        }
    }

    /// <summary>The process's peak resident set size (VmHWM from /proc/self/status), MiB; 0 where unavailable.</summary>
    public static double PeakRssMb()
    {
        try
        {
            foreach (var line in File.ReadLines("/proc/self/status"))
                if (line.StartsWith("VmHWM:", StringComparison.Ordinal))
                    return double.Parse(line[6..].Trim().Split(' ')[0], CultureInfo.InvariantCulture) / 1024.0;
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        return 0;
    }
}
