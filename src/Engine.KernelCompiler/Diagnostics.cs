using System;
using Microsoft.CodeAnalysis;

namespace Engine.KernelCompiler;

/// <summary>
/// The KRN diagnostics: everything a [Kernel] or [KernelFunction] method may not contain
/// (DESIGN.md, "Kernel language"). Each is reported at the offending syntax.
/// </summary>
internal static class Krn
{
    private const string Category = "Engine.KernelCompiler";

    private static DiagnosticDescriptor Error(string id, string title, string format)
        => new(id, title, format, Category, DiagnosticSeverity.Error, isEnabledByDefault: true);

    public static readonly DiagnosticDescriptor Allocation = Error("KRN001", "Allocation in a kernel",
        "Kernel code cannot allocate ({0}): a GPU thread has no managed heap; use ArrayView parameters or SharedMemory.Allocate");
    public static readonly DiagnosticDescriptor Strings = Error("KRN002", "String in a kernel",
        "Kernel code cannot use strings or string interpolation ({0})");
    public static readonly DiagnosticDescriptor Call = Error("KRN003", "Call not allowed in a kernel",
        "Kernel code cannot call '{0}': {1}");
    public static readonly DiagnosticDescriptor Exceptions = Error("KRN004", "Exception handling in a kernel",
        "Kernel code cannot throw or catch exceptions ({0})");
    public static readonly DiagnosticDescriptor Lambda = Error("KRN005", "Lambda or local function in a kernel",
        "Kernel code cannot use lambdas, anonymous methods or local functions ({0}); write a static [KernelFunction] method");
    public static readonly DiagnosticDescriptor Linq = Error("KRN006", "LINQ in a kernel",
        "Kernel code cannot use LINQ ({0})");
    public static readonly DiagnosticDescriptor Recursion = Error("KRN007", "Recursion in a kernel",
        "'{0}' is recursive (call chain: {1}); GPU code has no call stack for recursion");
    public static readonly DiagnosticDescriptor UnsupportedType = Error("KRN008", "Type not allowed in a kernel",
        "Type '{0}' cannot be used in kernel code: {1}");
    public static readonly DiagnosticDescriptor NotStatic = Error("KRN009", "Kernel is not static",
        "'{0}' must be static to be a kernel or kernel function");
    public static readonly DiagnosticDescriptor RefParameter = Error("KRN010", "ref/out/in parameter",
        "Parameter '{0}' of '{1}' is passed by reference; kernel parameters are passed by value (use an ArrayView to return data)");
    public static readonly DiagnosticDescriptor Goto = Error("KRN011", "goto in a kernel",
        "Kernel code cannot use goto or labels; use structured control flow");
    public static readonly DiagnosticDescriptor Unsupported = Error("KRN012", "Unsupported construct",
        "'{0}' is not part of the kernel language: {1}");
    public static readonly DiagnosticDescriptor SharedMemory = Error("KRN013", "Bad shared-memory allocation",
        "SharedMemory.Allocate {0}");
    public static readonly DiagnosticDescriptor StaticState = Error("KRN014", "Captured state",
        "Kernel code cannot read or write '{0}': only constants, parameters and locals are visible on the device");
    public static readonly DiagnosticDescriptor NotVoid = Error("KRN015", "Kernel returns a value",
        "Kernel '{0}' must return void; write results to an ArrayView parameter");
    public static readonly DiagnosticDescriptor Instance = Error("KRN016", "Bad generic kernel instance",
        "Generic kernel '{0}': {1}");
    public static readonly DiagnosticDescriptor ShuffleScope = Error("KRN017", "Warp shuffle outside a kernel body",
        "Warp.{0} may only be called in a [Kernel] method body: on OpenCL it is lowered through a group-local exchange buffer declared at kernel scope");

    public static readonly DiagnosticDescriptor Internal = Error("KRN099", "Kernel compiler internal error",
        "The kernel compiler failed on '{0}' ({1}); this is a compiler bug, please report it with the kernel");

    public static readonly DiagnosticDescriptor NoLauncher = new("KRN100", "No typed launcher",
        "'{0}' is not partial (or is nested in a type that is not), so no typed launcher class is generated for its kernels; their sources are still registered",
        Category, DiagnosticSeverity.Info, isEnabledByDefault: true);
}

/// <summary>A diagnostic to report, kept as data so the incremental pipeline can compare it.</summary>
internal sealed class DiagnosticInfo : IEquatable<DiagnosticInfo>
{
    public DiagnosticInfo(DiagnosticDescriptor descriptor, Location? location, params string[] args)
    {
        Descriptor = descriptor;
        Location = location;
        Args = args;
    }

    public DiagnosticDescriptor Descriptor { get; }
    public Location? Location { get; }
    public string[] Args { get; }

    public Diagnostic ToDiagnostic() => Diagnostic.Create(Descriptor, Location, Args);

    public bool Equals(DiagnosticInfo? other)
        => other is not null && other.Descriptor.Id == Descriptor.Id && Equals(other.Location, Location)
           && string.Join("\u0001", other.Args) == string.Join("\u0001", Args);

    public override bool Equals(object? obj) => Equals(obj as DiagnosticInfo);
    public override int GetHashCode() => Descriptor.Id.GetHashCode() ^ (Location?.GetHashCode() ?? 0);
}
