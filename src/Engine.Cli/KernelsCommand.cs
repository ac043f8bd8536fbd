using System.CommandLine;
using System.Reflection;
using System.Runtime.CompilerServices;
using Engine.Runtime.Kernels;

namespace Engine.Cli;

/// <summary>
/// <c>engine kernels</c>: lists the kernels the kernel compiler translated; with
/// <c>--emit cuda|opencl NAME</c> prints one kernel's generated source; with <c>--report [NAME]</c>
/// compiles every kernel (or the named ones) with NVRTC for sm_70, sm_80 and sm_90 and prints
/// registers, shared memory, stack frame and spill bytes per kernel and architecture, and the
/// theoretical occupancy at the block size the kernel's plan launches with (<see cref="LaunchShape"/>).
/// </summary>
public static class KernelsCommand
{
    /// <summary>Builds the command.</summary>
    public static Command Create()
    {
        var emit = new Option<string?>("--emit") { Description = "Print the generated source: cuda or opencl." };
        emit.AcceptOnlyFromAmong("cuda", "opencl");
        var name = new Argument<string?>("NAME") { Description = "Kernel name (C# name, entry point or Type.Name).", Arity = ArgumentArity.ZeroOrOne };
        var report = new Option<bool>("--report") { Description = "Compile with NVRTC for sm_70/80/90 and print registers, shared memory, stack, spills and theoretical occupancy at the plan's block size." };
        var command = new Command("kernels", "List the translated kernels, print one's CUDA C / OpenCL C, or report their resource usage.") { emit, report, name };
        command.SetAction(result => result.GetValue(report)
            ? Report(result.GetValue(name), Console.Out, Console.Error)
            : Run(result.GetValue(emit), result.GetValue(name), Console.Out, Console.Error));
        return command;
    }

    /// <summary>Runs the command; returns the exit code.</summary>
    public static int Run(string? emit, string? name, TextWriter output, TextWriter error)
    {
        LoadKernelAssemblies();
        if (emit is null)
        {
            var all = name is null ? KernelRegistry.All : KernelRegistry.Find(name);
            foreach (var k in all.OrderBy(k => k.DeclaringType).ThenBy(k => k.Name))
                output.WriteLine($"{k.DeclaringType}.{k.Name}\t{k.EntryPoint}\t({string.Join(", ", k.Parameters.Select(p => p.Kind == KernelParameterKind.View ? $"ArrayView<{Keyword(p.ClrType)}> {p.Name}" : $"{Keyword(p.ClrType)} {p.Name}"))})");
            if (all.Count == 0) error.WriteLine(name is null ? "no kernels are registered" : $"no kernel named '{name}'");
            return all.Count == 0 && name is not null ? 1 : 0;
        }
        if (name is null)
        {
            error.WriteLine("kernels --emit: name the kernel to print (engine kernels lists them)");
            return 2;
        }
        var matches = KernelRegistry.Find(name);
        if (matches.Count != 1)
        {
            error.WriteLine(matches.Count == 0
                ? $"kernels --emit: no kernel named '{name}' (engine kernels lists them)"
                : $"kernels --emit: '{name}' is ambiguous: {string.Join(", ", matches.Select(k => k.DeclaringType + "." + k.Name))}");
            return 1;
        }
        output.Write(emit == "cuda" ? matches[0].CudaSource : matches[0].OpenCLSource);
        return 0;
    }

    /// <summary>
    /// <c>--report</c>: the resource table of every registered kernel (or those named
    /// <paramref name="name"/>); exit code 1 when a kernel fails to compile or spills, 2 when NVRTC is missing.
    /// </summary>
    public static int Report(string? name, TextWriter output, TextWriter error)
    {
        LoadKernelAssemblies();
        var kernels = (name is null ? KernelRegistry.All : KernelRegistry.Find(name)).OrderBy(k => k.DeclaringType).ThenBy(k => k.Name).ToList();
        if (kernels.Count == 0)
        {
            error.WriteLine(name is null ? "kernels --report: no kernels are registered" : $"kernels --report: no kernel named '{name}'");
            return 1;
        }
        if (Engine.Runtime.Nvrtc.MissingReason is { } missing)
        {
            error.WriteLine($"kernels --report: NVRTC is not available: {missing}");
            return 2;
        }
        var rows = Engine.Runtime.KernelReport.Run(kernels, cache: Engine.Runtime.KernelCache.Shared);
        output.Write(Engine.Runtime.KernelReport.Format(rows, LaunchShape));
        foreach (var failed in rows.Where(r => r.Error is not null))
            error.WriteLine($"{failed.Kernel.DeclaringType}.{failed.Kernel.Name} [{failed.Architecture}]: {failed.Error}");
        return rows.All(r => r.Ok) ? 0 : 1;
    }

    /// <summary>
    /// The block the kernels/ plans launch <paramref name="kernel"/> with (its threads per block, all
    /// dimensions multiplied), for the occupancy columns of <c>--report</c>. The kernel classes and plans are
    /// internal to Engine.Tensors, so the numbers are written here with the constant each comes from;
    /// KernelLaunchShapeTests checks them against those constants and that every Engine.Tensors kernel
    /// is listed. No kernel of kernels/ uses dynamic shared memory (<c>SharedMemory.GetDynamic</c>), so the
    /// dynamic bytes are 0 everywhere. Kernels not listed (tests' sample kernels, new families) get
    /// <see cref="Engine.Runtime.KernelLaunchShape.Assumed"/>: 256 threads, marked <c>256*</c>.
    /// </summary>
    public static Engine.Runtime.KernelLaunchShape LaunchShape(KernelSource kernel)
    {
        ArgumentNullException.ThrowIfNull(kernel);
        const string ns = "Engine.Tensors.Kernels.";
        if (!kernel.DeclaringType.StartsWith(ns, StringComparison.Ordinal)) return Engine.Runtime.KernelLaunchShape.Assumed;
        string type = kernel.DeclaringType[ns.Length..];
        int angle = kernel.Name.IndexOf('<', StringComparison.Ordinal);
        string method = angle < 0 ? kernel.Name : kernel.Name[..angle];
        return (type, method) switch
        {
            // 1-D, one thread per element: ElementwisePlan.GroupSize, IndexingKernels.GroupSize, OptimKernels.GroupSize,
            // PoolKernels.GroupSize, ConvKernels.GroupSize, RandomKernels.GroupSize, BatchNormKernels.GroupSize (all 256).
            ("ElementwiseKernels", _) or ("MaskKernels", _) or ("IndexingKernels", _) or ("OptimKernels", _)
                or ("PoolKernels", _) or ("ConvKernels", _) or ("RandomKernels", _) or ("NormKernels", "NormUnary")
                or ("BatchNormKernels", "Forward" or "BackwardInput") => Fixed(256),
            // GemmPlan.Group: GemmKernels.Threads × GemmKernels.Threads = 16 × 16.
            ("GemmKernels", "Sgemm") => Fixed(16 * 16),
            // ImplicitGemmPlan.Group: ImplicitGemmKernels.Threads × Threads = 16 × 16; SumSplits: ImplicitGemmKernels.SumGroupSize = 256.
            ("ImplicitGemmKernels", "SumSplits") => Fixed(256),
            ("ImplicitGemmKernels", _) => Fixed(16 * 16),
            // DepthwiseConvKernels.GroupSize = 256 (all three).
            ("DepthwiseConvKernels", _) => Fixed(256),
            // GemmPlan.LargeGroup: GemmKernels.LargeThreads = 256.
            ("GemmKernels", "Sgemm128") => Fixed(256),
            // ReducePlan: columns (ReduceKernels.ColumnsX, ColumnsY) = (32, 8); rows n → power of two in [32, MaxRowGroup = 256].
            ("ReduceKernels", "ReduceColumns") => Fixed(32 * 8),
            ("ReduceKernels", "ReduceRows") => UpTo(256),
            // DivergencePlan.For: (x, y) with x·y = DivergenceKernels.MaxGroup = 256 for every row length.
            ("DivergenceKernels", "Divergence") => Fixed(256),
            // The logit losses' kernels launch with DivergencePlan.For too.
            ("DkdKernels" or "TaidKernels" or "MultiTeacherKernels" or "TopKSparseKernels" or "PlackettLuceKernels", _) => Fixed(256),
            // SoftmaxPlan.For / VarRows / BatchNorm Stats, BackwardReduce: row or channel length → power of two in [32, 256].
            ("SoftmaxKernels", _) or ("NormKernels", "VarRows") or ("BatchNormKernels", "Stats" or "BackwardReduce") => UpTo(256),
            // AttentionPlan.ForwardGroup: AttentionKernels.Lanes × ForwardWarps = 32 × 8; AttentionPlan.Group: Lanes × Warps = 32 × 4.
            ("AttentionKernels", "Forward") => Fixed(32 * 8),
            ("AttentionKernels", _) => Fixed(32 * 4),
            // Float64Kernels: elementwise as ElementwisePlan (256); reductions as ReduceKernels (rows 32..256, columns 32 × 8).
            ("Float64Kernels", "ReduceColumns64") => Fixed(32 * 8),
            ("Float64Kernels", "ReduceRows64") => UpTo(256),
            ("Float64Kernels", _) or ("MathKernels", _) => Fixed(256),
            // RowReduceKernels: ArgMinRows one thread per row in groups of GroupSize = 256; LogSumExpRows ReducePlan's row shape.
            ("RowReduceKernels", "ArgMinRows") => Fixed(256),
            ("RowReduceKernels", "LogSumExpRows") => UpTo(256),
            // SelectKernels: GroupSize = 256 threads (exactly: the scan assumes it); ScanBlocks is one group of one thread.
            ("SelectKernels", "ScanBlocks") => Fixed(1),
            ("SelectKernels", _) => Fixed(256),
            // FusedOptimKernels.GroupSize = 256.
            ("FusedOptimKernels", _) => Fixed(256),
            _ => Engine.Runtime.KernelLaunchShape.Assumed,
        };

        static Engine.Runtime.KernelLaunchShape Fixed(int threads) => new(threads, 0, Engine.Runtime.LaunchShapeOrigin.Fixed);
        static Engine.Runtime.KernelLaunchShape UpTo(int threads) => new(threads, 0, Engine.Runtime.LaunchShapeOrigin.PlanMaximum);
    }

    private static string Keyword(Type t) => Type.GetTypeCode(t) switch
    {
        TypeCode.Single => "float", TypeCode.Double => "double", TypeCode.Int32 => "int", TypeCode.Int64 => "long",
        TypeCode.UInt32 => "uint", TypeCode.UInt64 => "ulong", TypeCode.Boolean => "bool", TypeCode.Int16 => "short",
        TypeCode.UInt16 => "ushort", TypeCode.Byte => "byte", TypeCode.SByte => "sbyte", _ => t.Name,
    };

    /// <summary>Generated code registers kernels in module initializers: run those of the Engine assemblies next to the command.</summary>
    private static void LoadKernelAssemblies()
    {
        foreach (var path in Directory.EnumerateFiles(AppContext.BaseDirectory, "*.dll"))
        {
            var file = Path.GetFileNameWithoutExtension(path);
            if (!file.StartsWith("Engine", StringComparison.Ordinal) && !file.Contains("Kernels", StringComparison.Ordinal)) continue;
            try
            {
                var assembly = Assembly.LoadFrom(path);
                RuntimeHelpers.RunModuleConstructor(assembly.ManifestModule.ModuleHandle);
            }
            catch (BadImageFormatException)
            {
                // not a managed assembly
            }
        }
    }
}
