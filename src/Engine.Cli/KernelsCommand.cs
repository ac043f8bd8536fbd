using System.CommandLine;
using System.Reflection;
using System.Runtime.CompilerServices;
using Engine.Runtime.Kernels;

namespace Engine.Cli;

/// <summary>
/// <c>engine kernels</c>: lists the kernels the kernel compiler translated, and with
/// <c>--emit cuda|opencl NAME</c> prints one kernel's generated source.
/// </summary>
public static class KernelsCommand
{
    /// <summary>Builds the command.</summary>
    public static Command Create()
    {
        var emit = new Option<string?>("--emit") { Description = "Print the generated source: cuda or opencl." };
        emit.AcceptOnlyFromAmong("cuda", "opencl");
        var name = new Argument<string?>("NAME") { Description = "Kernel name (C# name, entry point or Type.Name).", Arity = ArgumentArity.ZeroOrOne };
        var command = new Command("kernels", "List the translated kernels, or print one's CUDA C / OpenCL C.") { emit, name };
        command.SetAction(result => Run(result.GetValue(emit), result.GetValue(name), Console.Out, Console.Error));
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
