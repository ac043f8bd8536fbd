using System.Collections.Generic;
using System.Collections.Immutable;
using System.Linq;
using System.Text;
using System.Threading;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using Microsoft.CodeAnalysis.CSharp.Syntax;

namespace Engine.KernelCompiler;

/// <summary>A kernel parameter as the launcher sees it.</summary>
internal sealed record ParameterModel(string Name, bool IsView, string CsType, string ClrType);

/// <summary>One translated kernel (one instance of a generic kernel).</summary>
internal sealed record KernelModel(string Name, string EntryPoint, string Call, string Cuda, string OpenCL, EquatableArray<ParameterModel> Parameters, bool DynamicShared);

/// <summary>The type declaring kernels: where generated code goes.</summary>
internal sealed record ClassModel(string Namespace, string FullName, string Mangled, EquatableArray<string> Declarations, bool AllPartial);

/// <summary>Everything one [Kernel] method produced.</summary>
internal sealed record KernelResult(ClassModel Class, EquatableArray<KernelModel> Kernels, EquatableArray<DiagnosticInfo> Diagnostics);

/// <summary>
/// Finds [Kernel] methods, expands generic kernels into the instances their [KernelInstance]
/// attributes declare, and translates each to CUDA C and OpenCL C.
/// </summary>
internal static class Discovery
{
    public const string KernelInstanceAttribute = "Engine.Runtime.Kernels.KernelInstanceAttribute";

    public static KernelResult Translate(GeneratorAttributeSyntaxContext context, CancellationToken cancel)
    {
        try
        {
            return TranslateCore(context, cancel);
        }
        catch (System.Exception e) when (e is not System.OperationCanceledException)
        {
            // A translator bug must not surface as an opaque "generator failed" warning: report it
            // at the kernel, with the exception, so it can be worked around and fixed.
            var method = (IMethodSymbol)context.TargetSymbol;
            var syntax = (MethodDeclarationSyntax)context.TargetNode;
            return new KernelResult(ClassOf(method.ContainingType), new EquatableArray<KernelModel>(ImmutableArray<KernelModel>.Empty),
                new EquatableArray<DiagnosticInfo>(ImmutableArray.Create(new DiagnosticInfo(Krn.Internal, syntax.Identifier.GetLocation(), method.Name, e.GetType().Name + ": " + e.Message))));
        }
    }

    private static KernelResult TranslateCore(GeneratorAttributeSyntaxContext context, CancellationToken cancel)
    {
        var method = (IMethodSymbol)context.TargetSymbol;
        var syntax = (MethodDeclarationSyntax)context.TargetNode;
        var diagnostics = new List<DiagnosticInfo>();
        var kernels = new List<KernelModel>();
        var compilation = context.SemanticModel.Compilation;

        var instances = new List<IMethodSymbol>();
        if (!method.IsGenericMethod) instances.Add(method);
        else
        {
            foreach (var attribute in method.GetAttributes().Where(a => a.AttributeClass?.ToDisplayString() == KernelInstanceAttribute))
            {
                var typeArgs = attribute.ConstructorArguments.SelectMany(c => c.Kind == TypedConstantKind.Array ? c.Values : [c])
                    .Select(c => c.Value).OfType<ITypeSymbol>().ToArray();
                var at = attribute.ApplicationSyntaxReference?.GetSyntax(cancel);
                if (typeArgs.Length != method.TypeParameters.Length)
                    diagnostics.Add(new DiagnosticInfo(Krn.Instance, at?.GetLocation() ?? syntax.Identifier.GetLocation(), method.Name,
                        $"[KernelInstance] gives {typeArgs.Length} type argument(s) for {method.TypeParameters.Length} type parameter(s)"));
                else instances.Add(method.Construct(typeArgs));
            }
            if (instances.Count == 0 && diagnostics.Count == 0)
                diagnostics.Add(new DiagnosticInfo(Krn.Instance, syntax.Identifier.GetLocation(), method.Name,
                    "a generic kernel needs at least one [KernelInstance(typeof(...))] naming the type arguments to compile it for"));
        }

        foreach (var instance in instances)
        {
            cancel.ThrowIfCancellationRequested();
            string entry = instance.Name + string.Concat(instance.TypeArguments.Select(a => "__" + Types.Mangle(a)));
            var cuda = new Translator(compilation, Target.Cuda);
            string cudaSource = cuda.TranslateKernel(instance, syntax, entry);
            AddDistinct(diagnostics, cuda.Diagnostics);
            if (cuda.HasErrors) continue;
            var opencl = new Translator(compilation, Target.OpenCL);
            string openclSource = opencl.TranslateKernel(instance, syntax, entry);
            AddDistinct(diagnostics, opencl.Diagnostics);
            if (opencl.HasErrors) continue;

            var parameters = instance.Parameters.Select(p =>
            {
                bool isView = Types.IsArrayView(p.Type);
                var clr = isView ? Types.ElementType(p.Type) : p.Type;
                return new ParameterModel(p.Name, isView, p.Type.ToDisplayString(SymbolDisplayFormat.FullyQualifiedFormat),
                    clr.ToDisplayString(SymbolDisplayFormat.FullyQualifiedFormat));
            }).ToImmutableArray();
            string typeArguments = instance.IsGenericMethod
                ? "<" + string.Join(", ", instance.TypeArguments.Select(a => a.ToDisplayString(SymbolDisplayFormat.FullyQualifiedFormat))) + ">"
                : "";
            string display = instance.Name + (instance.IsGenericMethod
                ? "<" + string.Join(", ", instance.TypeArguments.Select(a => a.ToDisplayString(SymbolDisplayFormat.MinimallyQualifiedFormat))) + ">"
                : "");
            kernels.Add(new KernelModel(display, entry, instance.Name + typeArguments, cudaSource, openclSource,
                new EquatableArray<ParameterModel>(parameters), cuda.UsesDynamicSharedMemory));
        }
        return new KernelResult(ClassOf(method.ContainingType), new EquatableArray<KernelModel>(kernels.ToImmutableArray()),
            new EquatableArray<DiagnosticInfo>(diagnostics.ToImmutableArray()));
    }

    private static void AddDistinct(List<DiagnosticInfo> into, IEnumerable<DiagnosticInfo> from)
    {
        foreach (var d in from)
            if (!into.Contains(d)) into.Add(d);
    }

    private static ClassModel ClassOf(INamedTypeSymbol type)
    {
        var declarations = new List<string>();
        bool allPartial = true;
        for (var t = type; t is not null; t = t.ContainingType)
        {
            var decl = t.DeclaringSyntaxReferences.Select(r => r.GetSyntax()).OfType<TypeDeclarationSyntax>().FirstOrDefault();
            allPartial &= decl is not null && decl.Modifiers.Any(SyntaxKind.PartialKeyword);
            string keyword = decl switch
            {
                RecordDeclarationSyntax r => r.ClassOrStructKeyword.IsKind(SyntaxKind.StructKeyword) ? "record struct" : "record",
                StructDeclarationSyntax => "struct",
                _ => "class",
            };
            string typeParams = t.TypeParameters.Length == 0 ? "" : "<" + string.Join(", ", t.TypeParameters.Select(p => p.Name)) + ">";
            declarations.Insert(0, $"partial {keyword} {t.Name}{typeParams}");
        }
        string ns = type.ContainingNamespace is { IsGlobalNamespace: false } n ? n.ToDisplayString() : "";
        var mangled = new StringBuilder();
        foreach (char c in type.ToDisplayString()) mangled.Append(char.IsLetterOrDigit(c) ? c : '_');
        return new ClassModel(ns, type.ToDisplayString(SymbolDisplayFormat.FullyQualifiedFormat), mangled.ToString(),
            new EquatableArray<string>(declarations.ToImmutableArray()), allPartial);
    }
}
