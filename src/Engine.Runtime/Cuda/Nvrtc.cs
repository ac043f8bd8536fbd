using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using Engine.Runtime.Native.Nvrtc;

namespace Engine.Runtime;

/// <summary>The result of compiling CUDA C with NVRTC for one architecture.</summary>
/// <param name="Architecture">The target, e.g. sm_80.</param>
/// <param name="Cubin">The device binary (what cuModuleLoadData takes).</param>
/// <param name="Ptx">The PTX NVRTC produced on the way (empty if it had none).</param>
/// <param name="Log">The full program log (warnings, ptxas report).</param>
/// <param name="Kernels">The ptxas report, one entry per kernel (registers, spills, shared memory, stack).</param>
/// <param name="FromCache">True when the cubin came from the disk cache rather than a compilation.</param>
public sealed record NvrtcModule(string Architecture, byte[] Cubin, string Ptx, string Log, IReadOnlyList<KernelResourceUsage> Kernels, bool FromCache)
{
    /// <summary>The report of kernel <paramref name="name"/>; throws listing the kernels when absent.</summary>
    public KernelResourceUsage Kernel(string name)
        => Kernels.FirstOrDefault(k => k.Kernel == name)
           ?? throw new KeyNotFoundException($"No kernel '{name}' in the ptxas report; found: {string.Join(", ", Kernels.Select(k => k.Kernel))}.");
}

/// <summary>
/// CUDA's run-time compiler through our own bindings (<see cref="NvrtcApi"/>): CUDA C to CUBIN for
/// a real architecture (sm_70, sm_80, sm_90, ...) with the ptxas report parsed, or to PTX for a
/// virtual one. Kernels should be <c>extern "C"</c> so their names are not mangled. Compilations can
/// go through a <see cref="KernelCache"/> keyed by source, options, architecture and NVRTC version.
/// </summary>
public static unsafe class Nvrtc
{
    /// <summary>Null when NVRTC is usable here, otherwise why not (e.g. "none of libnvrtc.so, ... found").</summary>
    public static string? MissingReason => NvrtcApi.MissingReason;

    /// <summary>True when NVRTC loaded.</summary>
    public static bool IsAvailable => MissingReason is null;

    /// <summary>The library file that loaded, e.g. libnvrtc.so.11.2.</summary>
    public static string LibraryName
    {
        get
        {
            NvrtcApi.EnsureLoaded();
            return NvrtcApi.LibraryName!;
        }
    }

    /// <summary>NVRTC's own version (nvrtcVersion), e.g. (11, 8) for Debian's libnvrtc11.2.</summary>
    public static (int Major, int Minor) Version
    {
        get
        {
            NvrtcApi.EnsureLoaded();
            int major, minor;
            NvrtcApi.Check(NvrtcApi.Version(&major, &minor), "nvrtcVersion");
            return (major, minor);
        }
    }

    /// <summary>"libnvrtc.so.11.2 (NVRTC 11.8)".</summary>
    public static string Description => $"{LibraryName} (NVRTC {Version.Major}.{Version.Minor})";

    /// <summary>The real architectures this NVRTC can target (e.g. 35..90), from nvrtcGetSupportedArchs (NVRTC 11.2+).</summary>
    public static IReadOnlyList<int> SupportedArchitectures
    {
        get
        {
            NvrtcApi.EnsureLoaded();
            if (NvrtcApi.GetNumSupportedArchs == null) return [];
            int count;
            NvrtcApi.Check(NvrtcApi.GetNumSupportedArchs(&count), "nvrtcGetNumSupportedArchs");
            var archs = new int[count];
            fixed (int* p = archs) NvrtcApi.Check(NvrtcApi.GetSupportedArchs(p), "nvrtcGetSupportedArchs");
            return archs;
        }
    }

    /// <summary>The architectures every kernel must compile for without spills (Volta, Ampere, Hopper).</summary>
    public static IReadOnlyList<string> RequiredArchitectures { get; } = ["sm_70", "sm_80", "sm_90"];

    /// <summary>
    /// The ptxas report of <paramref name="source"/> for each of <paramref name="architectures"/>
    /// (default <see cref="RequiredArchitectures"/>), in architecture order (what <c>engine kernels --report</c> prints).
    /// </summary>
    public static IReadOnlyList<KernelResourceUsage> Report(string source, IEnumerable<string>? architectures = null, IEnumerable<string>? options = null, KernelCache? cache = null)
    {
        var opts = (options ?? []).ToArray();
        return (architectures ?? RequiredArchitectures).SelectMany(arch => Compile(source, arch, opts, cache).Kernels).ToList();
    }

    /// <summary>
    /// Compiles <paramref name="source"/> to a cubin for <paramref name="architecture"/> ("sm_80" or
    /// "80"), with <c>--ptxas-options=-v</c> so the log carries the per-kernel resource report.
    /// With a <paramref name="cache"/>, a previous identical compilation is reused.
    /// </summary>
    /// <exception cref="NvrtcException">NVRTC is missing, or the source does not compile (the message holds the full log).</exception>
    public static NvrtcModule Compile(string source, string architecture, IEnumerable<string>? options = null, KernelCache? cache = null, string programName = "kernel.cu")
    {
        ArgumentNullException.ThrowIfNull(source);
        string arch = "sm_" + ArchNumber(architecture);
        var all = new List<string> { $"-arch={arch}", "--ptxas-options=-v" };
        all.AddRange(options ?? []);
        var version = Version;
        string? key = null;
        if (cache is not null)
        {
            key = KernelCache.Key(source, all, arch, $"nvrtc {version.Major}.{version.Minor}");
            if (cache.TryRead(key) is [var cubin, var ptx, var log])
            {
                string text = Encoding.UTF8.GetString(log);
                return new NvrtcModule(arch, cubin, Encoding.UTF8.GetString(ptx), text, PtxasReport.Parse(text), FromCache: true);
            }
        }
        var (cubinBytes, ptxText, logText) = Run(source, programName, all, wantCubin: true);
        if (cache is not null) cache.Write(key!, [cubinBytes, Encoding.UTF8.GetBytes(ptxText), Encoding.UTF8.GetBytes(logText)]);
        return new NvrtcModule(arch, cubinBytes, ptxText, logText, PtxasReport.Parse(logText), FromCache: false);
    }

    /// <summary>Compiles <paramref name="source"/> to PTX for the virtual architecture compute_XX of <paramref name="architecture"/>.</summary>
    public static string CompileToPtx(string source, string architecture, IEnumerable<string>? options = null, string programName = "kernel.cu")
    {
        ArgumentNullException.ThrowIfNull(source);
        var all = new List<string> { $"-arch=compute_{ArchNumber(architecture)}" };
        all.AddRange(options ?? []);
        return Run(source, programName, all, wantCubin: false).Ptx;
    }

    private static int ArchNumber(string architecture)
    {
        ArgumentNullException.ThrowIfNull(architecture);
        string digits = architecture.StartsWith("sm_", StringComparison.Ordinal) ? architecture[3..]
            : architecture.StartsWith("compute_", StringComparison.Ordinal) ? architecture[8..] : architecture;
        if (!int.TryParse(digits, NumberStyles.None, CultureInfo.InvariantCulture, out int number) || number < 10)
            throw new ArgumentException($"Nvrtc: bad architecture '{architecture}'; expected sm_XX, compute_XX or XX (e.g. sm_80).", nameof(architecture));
        return number;
    }

    private static (byte[] Cubin, string Ptx, string Log) Run(string source, string name, List<string> options, bool wantCubin)
    {
        NvrtcApi.EnsureLoaded();
        nint program;
        var src = Utf8(source);
        var programName = Utf8(name);
        fixed (byte* s = src, n = programName)
            NvrtcApi.Check(NvrtcApi.CreateProgram(&program, s, n, 0, null, null), "nvrtcCreateProgram");
        try
        {
            var handles = options.Select(o => Marshal.StringToCoTaskMemUTF8(o)).ToArray();
            int code;
            try
            {
                fixed (nint* p = handles) code = NvrtcApi.CompileProgram(program, handles.Length, (byte**)p);
            }
            finally
            {
                foreach (var h in handles) Marshal.FreeCoTaskMem(h);
            }
            string log = Log(program);
            NvrtcApi.Check(code, $"nvrtcCompileProgram({name}, {string.Join(' ', options)})", log);
            string ptx = "";
            nuint ptxSize;
            if (NvrtcApi.GetPTXSize(program, &ptxSize) == 0 && ptxSize > 0)
            {
                var bytes = new byte[(int)ptxSize];
                fixed (byte* p = bytes) NvrtcApi.Check(NvrtcApi.GetPTX(program, p), "nvrtcGetPTX");
                ptx = Encoding.UTF8.GetString(bytes).TrimEnd('\0');
            }
            byte[] cubin = [];
            if (wantCubin)
            {
                nuint size;
                NvrtcApi.Check(NvrtcApi.GetCUBINSize(program, &size), "nvrtcGetCUBINSize");
                cubin = new byte[(int)size];
                fixed (byte* p = cubin) NvrtcApi.Check(NvrtcApi.GetCUBIN(program, p), "nvrtcGetCUBIN");
            }
            return (cubin, ptx, log);
        }
        finally
        {
            NvrtcApi.DestroyProgram(&program);
        }
    }

    private static string Log(nint program)
    {
        nuint size;
        if (NvrtcApi.GetProgramLogSize(program, &size) != 0 || size <= 1) return "";
        var bytes = new byte[(int)size];
        fixed (byte* p = bytes)
            if (NvrtcApi.GetProgramLog(program, p) != 0) return "";
        return Encoding.UTF8.GetString(bytes).TrimEnd('\0').Trim();
    }

    private static byte[] Utf8(string text) => Encoding.UTF8.GetBytes(text + "\0");
}
