using System.Globalization;
using System.Text.RegularExpressions;

namespace Engine.Runtime;

/// <summary>
/// What ptxas reported for one kernel (<c>--ptxas-options=-v</c>): registers per thread, spill
/// traffic, static shared memory, stack frame. Zero spill bytes is the project's bar for every kernel.
/// </summary>
/// <param name="Kernel">The entry function's (possibly mangled) name.</param>
/// <param name="Architecture">The target, e.g. sm_80.</param>
/// <param name="Registers">Registers per thread.</param>
/// <param name="SpillStoreBytes">Bytes of register spill stores.</param>
/// <param name="SpillLoadBytes">Bytes of register spill loads.</param>
/// <param name="SharedMemoryBytes">Static shared memory per block (smem).</param>
/// <param name="StackFrameBytes">Per-thread stack frame (local arrays, spills).</param>
/// <param name="ConstantMemoryBytes">Constant bank 0 bytes (kernel parameters), when reported.</param>
public sealed record KernelResourceUsage(
    string Kernel, string Architecture, int Registers, long SpillStoreBytes, long SpillLoadBytes,
    long SharedMemoryBytes, long StackFrameBytes, long ConstantMemoryBytes)
{
    /// <summary>Spill stores plus spill loads.</summary>
    public long SpillBytes => SpillStoreBytes + SpillLoadBytes;

    /// <inheritdoc />
    public override string ToString()
        => $"{Kernel} [{Architecture}]: {Registers} registers, {SharedMemoryBytes} B smem, {StackFrameBytes} B stack, " +
           $"spills {SpillStoreBytes} B stores / {SpillLoadBytes} B loads";
}

/// <summary>Parses ptxas' verbose output (as found in an NVRTC program log) into one <see cref="KernelResourceUsage"/> per entry function.</summary>
public static partial class PtxasReport
{
    // ptxas info    : Compiling entry function 'add' for 'sm_90'
    [GeneratedRegex(@"Compiling entry function '(?<name>[^']+)' for '(?<arch>[^']+)'")]
    private static partial Regex EntryLine();

    // ptxas info    : Function properties for add
    [GeneratedRegex(@"Function properties for (?<name>\S+)")]
    private static partial Regex PropertiesLine();

    // ptxas         .     0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
    [GeneratedRegex(@"(?<stack>\d+) bytes stack frame, (?<stores>\d+) bytes spill stores, (?<loads>\d+) bytes spill loads")]
    private static partial Regex FrameLine();

    // ptxas info    : Used 10 registers[, used 1 barriers][, 1024 bytes smem][, 380 bytes cmem[0]]
    [GeneratedRegex(@"Used (?<regs>\d+) registers")]
    private static partial Regex UsedLine();

    [GeneratedRegex(@"(?<n>\d+) bytes smem")]
    private static partial Regex Smem();

    [GeneratedRegex(@"(?<n>\d+) bytes cmem\[0\]")]
    private static partial Regex Cmem0();

    /// <summary>
    /// One report per entry function found in <paramref name="log"/>, in the order ptxas compiled
    /// them. Device functions that were not inlined have "Function properties" but no entry line;
    /// they are not reported (their frame shows up in the callers' stack).
    /// </summary>
    public static IReadOnlyList<KernelResourceUsage> Parse(string log)
    {
        ArgumentNullException.ThrowIfNull(log);
        var reports = new List<KernelResourceUsage>();
        var frames = new Dictionary<string, (long Stack, long Stores, long Loads)>();
        string? entry = null, arch = null, propertiesOf = null;
        int index = -1;
        foreach (var raw in log.Split('\n'))
        {
            string line = raw.TrimEnd('\r');
            Match m;
            if ((m = EntryLine().Match(line)).Success)
            {
                entry = m.Groups["name"].Value;
                arch = m.Groups["arch"].Value;
                reports.Add(new KernelResourceUsage(entry, arch, 0, 0, 0, 0, 0, 0));
                index = reports.Count - 1;
            }
            else if ((m = PropertiesLine().Match(line)).Success)
                propertiesOf = m.Groups["name"].Value;
            else if ((m = FrameLine().Match(line)).Success && propertiesOf is not null)
            {
                frames[propertiesOf] = (Long(m, "stack"), Long(m, "stores"), Long(m, "loads"));
                if (index >= 0 && propertiesOf == entry)
                    reports[index] = reports[index] with { StackFrameBytes = Long(m, "stack"), SpillStoreBytes = Long(m, "stores"), SpillLoadBytes = Long(m, "loads") };
                propertiesOf = null;
            }
            else if ((m = UsedLine().Match(line)).Success && index >= 0)
            {
                var smem = Smem().Match(line);
                var cmem = Cmem0().Match(line);
                reports[index] = reports[index] with
                {
                    Registers = int.Parse(m.Groups["regs"].Value, CultureInfo.InvariantCulture),
                    SharedMemoryBytes = smem.Success ? Long(smem, "n") : 0,
                    ConstantMemoryBytes = cmem.Success ? Long(cmem, "n") : 0,
                };
            }
        }
        return reports;
    }

    private static long Long(Match m, string group) => long.Parse(m.Groups[group].Value, CultureInfo.InvariantCulture);
}
