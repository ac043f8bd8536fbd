using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using Engine.Benchmarks;

namespace Engine.Cli;

/// <summary>
/// <c>engine bench NAME...|--all [--device D] [--json] [--threads N] [--runs N] [--quick] [--peer]</c>: runs benchmark
/// cases (perf/Engine.Benchmarks/Cases), each validated against a reference before it is timed. With
/// <c>--peer</c> each case is followed by the same case of <c>../shared/peers/torch_bench.py</c> in a fresh
/// process, and the two are printed side by side with the speed-up and the peak-memory ratio.
/// </summary>
public static class BenchCommand
{
    /// <summary>Builds the command.</summary>
    public static Command Create()
    {
        var names = new Argument<string[]>("NAME") { Description = "Case names (engine bench --list shows them).", Arity = ArgumentArity.ZeroOrMore };
        var json = new Option<bool>("--json") { Description = "Print one JSON object per case (and per peer run) instead of a table." };
        var threads = new Option<int>("--threads") { Description = "CPU threads for Engine and the peer.", DefaultValueFactory = _ => Environment.ProcessorCount };
        var runs = new Option<int>("--runs") { Description = "Timed runs; the median is reported.", DefaultValueFactory = _ => 5 };
        var quick = new Option<bool>("--quick") { Description = "Small shapes (a smoke test: numbers not comparable with the peer)." };
        var peer = new Option<bool>("--peer") { Description = "Also run torch_bench.py's case of the same name (needs python3-torch) and print the ratios." };
        var peerScript = new Option<string?>("--peer-script") { Description = "Path to torch_bench.py (default: $ENGINE_PEER_SCRIPT or ../shared/peers/torch_bench.py)." };
        var device = new Option<string>("--device") { Description = "Device for cases that support one: cpu, emulator, opencl, cuda.", DefaultValueFactory = _ => "cpu" };
        var list = new Option<bool>("--list") { Description = "List the cases and their targets." };
        var all = new Option<bool>("--all") { Description = "Run every case (with --device: every case that runs on devices; the others print a skip line)." };
        var command = new Command("bench", "Run benchmark cases (validated before timing), optionally side by side with PyTorch.")
        { names, json, threads, runs, quick, peer, peerScript, device, list, all };
        command.SetAction(r =>
        {
            var output = r.InvocationConfiguration.Output;
            var error = r.InvocationConfiguration.Error;
            bool everyCase = r.GetValue(all);
            if (r.GetValue(list) || (!everyCase && (r.GetValue(names) ?? []).Length == 0))
            {
                foreach (var c in BenchRunner.Cases)
                    output.WriteLine($"{c.Name,-18} {c.Description}{(c.RunsOnDevices ? "  (cpu and devices)" : "  (cpu only)")}{(c.Target.Length > 0 ? $"  [{c.Target}]" : "")}");
                return 0;
            }
            if (everyCase && (r.GetValue(names) ?? []).Length > 0)
            {
                error.WriteLine("bench: give case names or --all, not both.");
                return 2;
            }
            var selected = everyCase ? BenchRunner.Cases.Select(c => c.Name).ToArray() : r.GetValue(names)!;
            return Run(selected, new BenchOptions(r.GetValue(threads), r.GetValue(runs), r.GetValue(quick), r.GetValue(device) ?? "cpu"),
                r.GetValue(json), r.GetValue(peer), r.GetValue(peerScript), output, error, skipCpuOnly: everyCase);
        });
        return command;
    }

    /// <summary>
    /// Runs the named cases; returns the exit code (1 on a validation failure, 2 on bad arguments: an unknown case,
    /// a device that is not available, or a CPU-only case named with a device). With <paramref name="skipCpuOnly"/>
    /// (<c>--all</c>), CPU-only cases on a device are skipped with a line saying so instead. A case that cannot run on
    /// the device today (<see cref="BenchSkippedException"/>, e.g. an op without a kernel there) prints a skip line
    /// with the reason (JSON: <c>{"name", "device", "skipped"}</c>) and does not fail the run.
    /// </summary>
    public static int Run(IReadOnlyList<string> names, BenchOptions options, bool json, bool peer, string? peerScript, TextWriter output, TextWriter error,
        bool skipCpuOnly = false)
    {
        ArgumentNullException.ThrowIfNull(options);
        BenchCase[] cases;
        string? script = null;
        BenchDevice device;
        try
        {
            cases = names.Select(BenchRunner.Find).ToArray();
            device = options.Target;
            if (peer && !device.IsCpu) throw new ArgumentException("bench: --peer compares with PyTorch on the CPU; it cannot be combined with --device " + options.Device + ".");
            if (peer) script = PeerRunner.FindScript(peerScript);
            if (!device.IsCpu && !skipCpuOnly && cases.FirstOrDefault(c => !c.RunsOnDevices) is { } cpuOnly)
                throw new ArgumentException($"bench {cpuOnly.Name}: this case runs on the CPU only (it has no device version); cases that run on devices: " +
                    $"{string.Join(", ", BenchRunner.Cases.Where(c => c.RunsOnDevices).Select(c => c.Name))}.");
        }
        catch (Exception e) when (e is ArgumentException or FileNotFoundException or BenchDeviceException)
        {
            error.WriteLine(e.Message);
            return 2;
        }
        if (!json)
            output.WriteLine($"{"case",-18} {"shape",-24} {"engine ms",10} {"peak MB",9}{(peer ? $" {"torch ms",10} {"torch RSS MB",13} {"speed-up",9}" : "")}  notes");
        int rc = 0;
        foreach (var c in cases)
        {
            BenchResult result;
            string? skipped = !device.IsCpu && !c.RunsOnDevices ? $"this case runs on the CPU only (it has no device version)" : null;
            if (skipped is null)
            {
                try
                {
                    result = BenchRunner.Run(c, options, json ? null : m => error.WriteLine(m));
                }
                catch (BenchValidationException e)
                {
                    error.WriteLine($"bench {c.Name}: validation failed, not timed: {e.Message}");
                    rc = 1;
                    continue;
                }
                catch (NotSupportedException e) when (!device.IsCpu)
                {
                    error.WriteLine($"bench {c.Name}: cannot run on {device.Device}: {e.Message}");
                    rc = 1;
                    continue;
                }
                catch (BenchSkippedException e)
                {
                    skipped = e.Message;
                    result = null!;
                }
            }
            else result = null!;
            if (skipped is not null)
            {
                if (json)
                    output.WriteLine(JsonSerializer.Serialize(new Dictionary<string, object> { ["name"] = c.Name, ["device"] = device.Device.ToString(), ["skipped"] = skipped }));
                else
                    output.WriteLine($"{c.Name,-18} skipped on {device.Device}: {skipped}");
                continue;
            }
            PeerResult? p = null;
            if (peer)
            {
                try { p = PeerRunner.Run(script!, c.Name, options.Threads, options.Runs); }
                catch (InvalidOperationException e) { error.WriteLine(e.Message); rc = 1; }
            }
            if (json)
            {
                output.WriteLine(result.ToJson());
                if (p is not null) output.WriteLine(p.Json);
                continue;
            }
            string notes = string.Join(", ", new[]
            {
                result.Gflops is { } g ? $"{g:0.0} GFLOP/s" : null,
                result.Gflops is { } g2 && result.Extra.TryGetValue("fma_peak_gflops", out var pk) && pk is double peak
                    ? $"{100 * g2 / peak:0}% of FMA peak {peak:0}" : null,
                result.Gflops is { } g3 && result.Extra.TryGetValue("percent_of_peak_flops", out var pf) && result.Extra.TryGetValue("peak_fp32_tflops", out var ptf)
                    ? $"{g3 / 1000:0.00} TFLOP/s = {pf}% of FP32 peak {ptf} TFLOP/s" : null,
                result.GBps is { } b ? $"{b:0.0} GB/s" : null,
                result.Extra.TryGetValue("percent_of_peak_bandwidth", out var pb) && result.Extra.TryGetValue("peak_dram_gb_per_s", out var pbw)
                    ? $"{pb}% of DRAM peak {pbw} GB/s" : null,
                device.IsCpu ? null : $"{result.Device}, {result.Timing}",
                result.Extra.TryGetValue("percent_of_copy", out var pc) && result.Extra.TryGetValue("copy_gb_per_s", out var cb)
                    ? $"{pc}% of copy BW {cb} GB/s (floor {result.Extra["floor_ms"]} ms)" : null,
            }.Where(s => s is not null));
            string shape = "[" + string.Join(",", result.Shape) + "]";
            output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{c.Name,-18} {shape,-24} {result.MedianMs,10:0.00} {result.PeakBytes / 1048576.0,9:0.0}{(p is null ? (peer ? $" {"-",10} {"-",13} {"-",9}" : "") : $" {p.MedianMs,10:0.00} {p.PeakRssMb,13:0} {p.MedianMs / result.MedianMs,8:0.00}x")}  {notes}"));
        }
        return rc;
    }
}
