using System.Text;
using Engine.Runtime.Kernels;

namespace Engine.Runtime;

/// <summary>One kernel compiled for one architecture: ptxas' resource usage, or why it failed.</summary>
/// <param name="Kernel">The translated kernel.</param>
/// <param name="Architecture">The target, e.g. sm_80.</param>
/// <param name="Usage">Registers, shared memory, spills and stack frame; null when the compilation failed.</param>
/// <param name="Error">The NVRTC error (with its log) when the compilation failed.</param>
public sealed record KernelReportRow(KernelSource Kernel, string Architecture, KernelResourceUsage? Usage, string? Error)
{
    /// <summary>True when the kernel compiled without spilling registers.</summary>
    public bool Ok => Usage is { SpillBytes: 0 } && Error is null;
}

/// <summary>
/// Compiles translated kernels with <see cref="Nvrtc"/> for several architectures (default
/// <see cref="Nvrtc.RequiredArchitectures"/>: sm_70, sm_80, sm_90) and tabulates ptxas' report:
/// what <c>engine kernels --report</c> prints, with each row's theoretical occupancy
/// (<see cref="OccupancyCalculator"/>) at the block size the kernel launches with.
/// </summary>
public static class KernelReport
{
    /// <summary>One row per kernel and architecture, in the given kernel order, architectures inner.</summary>
    /// <param name="kernels">The kernels (e.g. <see cref="KernelRegistry.All"/>).</param>
    /// <param name="architectures">Targets; default sm_70, sm_80, sm_90.</param>
    /// <param name="cache">Where compiled cubins and logs are cached; null compiles every time.</param>
    /// <exception cref="NvrtcException">NVRTC is missing (its reason in the message).</exception>
    public static IReadOnlyList<KernelReportRow> Run(IEnumerable<KernelSource> kernels, IEnumerable<string>? architectures = null, KernelCache? cache = null)
    {
        ArgumentNullException.ThrowIfNull(kernels);
        if (Nvrtc.MissingReason is { } missing) throw new NvrtcException($"kernels --report: {missing}");
        var archs = (architectures ?? Nvrtc.RequiredArchitectures).ToList();
        var rows = new List<KernelReportRow>();
        foreach (var kernel in kernels)
            foreach (var arch in archs)
            {
                try
                {
                    var module = Nvrtc.Compile(kernel.CudaSource, arch, cache: cache, programName: kernel.EntryPoint + ".cu");
                    var usage = module.Kernels.FirstOrDefault(k => k.Kernel == kernel.EntryPoint);
                    rows.Add(usage is null
                        ? new KernelReportRow(kernel, module.Architecture, null, $"no ptxas report for entry point {kernel.EntryPoint}")
                        : new KernelReportRow(kernel, module.Architecture, usage, null));
                }
                catch (NvrtcException e)
                {
                    rows.Add(new KernelReportRow(kernel, arch, null, e.Message));
                }
            }
        return rows;
    }

    /// <summary>The compiler's first error line (NVRTC logs "file(line): error: ..."), else the message's first line.</summary>
    private static string ErrorLine(string error)
    {
        var lines = error.Split('\n', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
        return lines.FirstOrDefault(l => l.Contains("error", StringComparison.OrdinalIgnoreCase) && !l.Contains("NVRTC_ERROR", StringComparison.Ordinal))
               ?? (lines.Length > 0 ? lines[0] : "");
    }

    /// <summary>
    /// The theoretical occupancy of <paramref name="row"/> launched as <paramref name="shape"/>: ptxas'
    /// registers, its static shared memory plus the shape's dynamic bytes, the shape's block size. Null
    /// when the row failed or its architecture has no <see cref="GpuArchitectureLimits"/>.
    /// </summary>
    public static OccupancyResult? Occupancy(KernelReportRow row, KernelLaunchShape shape)
    {
        ArgumentNullException.ThrowIfNull(row);
        ArgumentNullException.ThrowIfNull(shape);
        if (row.Usage is not { } u || GpuArchitectureLimits.For(row.Architecture) is not { } limits) return null;
        return OccupancyCalculator.Compute(limits, shape.ThreadsPerBlock, u.Registers, u.SharedMemoryBytes + shape.DynamicSharedBytes);
    }

    /// <summary>
    /// The rows as an aligned text table (failures show the error's first line), then a summary line.
    /// The last columns are the block size (<see cref="KernelLaunchShape.Label"/>), the theoretical
    /// occupancy in percent and the resource that limits it, then a legend of the block-size marks.
    /// </summary>
    /// <param name="rows">What <see cref="Run"/> returned.</param>
    /// <param name="launchShape">The block each kernel launches with; null (or a null answer) assumes <see cref="KernelLaunchShape.Assumed"/>.</param>
    public static string Format(IReadOnlyList<KernelReportRow> rows, Func<KernelSource, KernelLaunchShape?>? launchShape = null)
    {
        ArgumentNullException.ThrowIfNull(rows);
        string[] header = ["kernel", "arch", "regs", "smem B", "stack B", "spill st B", "spill ld B", "block", "occ %", "limited by"];
        var table = new List<string[]> { header };
        foreach (var r in rows)
        {
            string name = $"{r.Kernel.DeclaringType}.{r.Kernel.Name}";
            var shape = launchShape?.Invoke(r.Kernel) ?? KernelLaunchShape.Assumed;
            var occupancy = Occupancy(r, shape);
            string[] occ = occupancy is null
                ? [shape.Label, "-", "-"]
                : [shape.Label, (100 * occupancy.Occupancy).ToString("0.0", System.Globalization.CultureInfo.InvariantCulture), LimiterName(occupancy.Limiter)];
            table.Add(r.Usage is { } u
                ? [name, r.Architecture, $"{u.Registers}", $"{u.SharedMemoryBytes}", $"{u.StackFrameBytes}", $"{u.SpillStoreBytes}", $"{u.SpillLoadBytes}", .. occ]
                : [name, r.Architecture, "FAILED: " + ErrorLine(r.Error ?? ""), "", "", "", "", "", "", ""]);
        }
        var widths = Enumerable.Range(0, header.Length).Select(c => table.Where(t => !t[2].StartsWith("FAILED", StringComparison.Ordinal) || c < 2).Max(t => t[c].Length)).ToArray();
        var text = new StringBuilder();
        foreach (var t in table)
        {
            for (int c = 0; c < t.Length; c++)
            {
                if (c == 2 && t[2].StartsWith("FAILED", StringComparison.Ordinal)) { text.Append(t[2]); break; }
                if (c == t.Length - 1) { text.Append(t[c]); break; } // the limiter, left-aligned, no trailing blanks
                text.Append(c < 2 ? t[c].PadRight(widths[c]) : t[c].PadLeft(widths[c]));
                if (c < t.Length - 1) text.Append("  ");
            }
            text.Append('\n');
        }
        int failed = rows.Count(r => r.Error is not null), spilling = rows.Count(r => r.Usage is { SpillBytes: > 0 });
        text.Append($"{rows.Select(r => r.Kernel).Distinct().Count()} kernel(s), {rows.Count} compilation(s): {failed} failed, {spilling} with spills\n");
        text.Append("occ %: theoretical occupancy (active warps / max warps per SM) from regs, smem (static + the plan's dynamic bytes) and block; ")
            .Append("block N: fixed by the kernel's plan, <=N: the plan's largest block (it shrinks with the problem), ")
            .Append($"N*: not known statically, {KernelLaunchShape.DefaultThreadsPerBlock} assumed with no dynamic shared memory\n");
        return text.ToString();
    }

    private static string LimiterName(OccupancyLimiter limiter) => limiter switch
    {
        OccupancyLimiter.Warps => "warps",
        OccupancyLimiter.Blocks => "blocks/SM",
        OccupancyLimiter.Registers => "registers",
        _ => "shared memory",
    };
}
