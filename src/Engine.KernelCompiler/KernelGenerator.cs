using System.Linq;
using Microsoft.CodeAnalysis;

namespace Engine.KernelCompiler;

/// <summary>
/// The kernel compiler: an incremental source generator that translates every [Kernel] method
/// (and the [KernelFunction]s it calls) to CUDA C and OpenCL C, reports KRN diagnostics for what
/// the kernel language does not allow, and generates per declaring type the kernels' sources
/// (registered in KernelRegistry at module load) and typed launchers.
/// </summary>
[Generator(LanguageNames.CSharp)]
public sealed class KernelGenerator : IIncrementalGenerator
{
    /// <summary>Name of the translation step, for incremental-caching tests.</summary>
    public const string TrackingName = "TranslateKernels";

    /// <inheritdoc />
    public void Initialize(IncrementalGeneratorInitializationContext context)
    {
        var kernels = context.SyntaxProvider.ForAttributeWithMetadataName(
            Translator.KernelAttribute,
            static (node, _) => node is Microsoft.CodeAnalysis.CSharp.Syntax.MethodDeclarationSyntax,
            static (ctx, cancel) => Discovery.Translate(ctx, cancel)).WithTrackingName(TrackingName);

        context.RegisterSourceOutput(kernels.Collect(), static (spc, results) =>
        {
            foreach (var d in results.SelectMany(r => r.Diagnostics).Distinct())
                spc.ReportDiagnostic(d.ToDiagnostic());
            foreach (var group in results.GroupBy(r => r.Class.FullName))
            {
                var cls = group.First().Class;
                var list = group.SelectMany(r => r.Kernels).ToList();
                if (list.Count == 0) continue;
                if (!cls.AllPartial)
                    spc.ReportDiagnostic(Diagnostic.Create(Krn.NoLauncher, null, cls.FullName));
                spc.AddSource(cls.Mangled + ".Kernels.g.cs", Emit.Launchers(cls, list));
            }
        });
    }
}
