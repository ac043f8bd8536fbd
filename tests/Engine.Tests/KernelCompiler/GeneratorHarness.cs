using System.Collections.Immutable;
using Engine.KernelCompiler;
using Engine.Runtime.Kernels;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using Microsoft.CodeAnalysis.CSharp.Syntax;

namespace Engine.Tests.KernelCompiler;

/// <summary>Runs the kernel compiler in-process on a C# source string (CSharpGeneratorDriver).</summary>
internal static class GeneratorHarness
{
    public const string FilePath = "Kernels/Test.cs";

    public static readonly Lazy<MetadataReference[]> References = new(() =>
    {
        var paths = ((string)AppContext.GetData("TRUSTED_PLATFORM_ASSEMBLIES")!).Split(Path.PathSeparator).ToList();
        paths.Add(typeof(KernelAttribute).Assembly.Location);
        return paths.Distinct().Select(p => (MetadataReference)MetadataReference.CreateFromFile(p)).ToArray();
    });

    /// <summary>The outcome: generator + compiler diagnostics and each kernel's CUDA/OpenCL text by entry point.</summary>
    public sealed record Result(string Source, ImmutableArray<Diagnostic> Diagnostics, IReadOnlyDictionary<string, (string Cuda, string OpenCL)> Kernels, string GeneratedCSharp)
    {
        public string Cuda(string entry) => Kernels[entry].Cuda;
        public string OpenCL(string entry) => Kernels[entry].OpenCL;
        public IEnumerable<Diagnostic> Krn => Diagnostics.Where(d => d.Id.StartsWith("KRN") && d.Severity == DiagnosticSeverity.Error);
    }

    /// <summary>Compiles <paramref name="body"/> (members of a partial static class K in namespace T) with the generator.</summary>
    public static Result RunClass(string body, string extraTypes = "")
        => Run($"using System;\nusing Engine.Runtime.Kernels;\nnamespace T;\n{extraTypes}\npublic static partial class K\n{{\n{body}\n}}\n");

    public static Result Run(string source)
    {
        var parseOptions = new CSharpParseOptions(LanguageVersion.Preview);
        var tree = CSharpSyntaxTree.ParseText(source, parseOptions, FilePath);
        var compilation = CSharpCompilation.Create("KernelTest", [tree], References.Value,
            new CSharpCompilationOptions(OutputKind.DynamicallyLinkedLibrary, allowUnsafe: true));
        GeneratorDriver driver = CSharpGeneratorDriver.Create([new KernelGenerator().AsSourceGenerator()], parseOptions: parseOptions);
        driver = driver.RunGeneratorsAndUpdateCompilation(compilation, out var output, out var generatorDiagnostics);
        var run = driver.GetRunResult();
        var kernels = new Dictionary<string, (string, string)>();
        var generated = string.Join("\n", run.GeneratedTrees.Select(t => t.ToString()));
        foreach (var gtree in run.GeneratedTrees)
            foreach (var field in gtree.GetRoot().DescendantNodes().OfType<VariableDeclaratorSyntax>())
                if (field.Initializer?.Value is ImplicitObjectCreationExpressionSyntax creation && creation.ArgumentList.Arguments.Count == 5)
                {
                    string Text(int i) => ((LiteralExpressionSyntax)creation.ArgumentList.Arguments[i].Expression).Token.ValueText;
                    kernels[Text(1)] = (Text(2), Text(3));
                }
        var all = generatorDiagnostics.AddRange(output.GetDiagnostics().Where(d => d.Severity == DiagnosticSeverity.Error));
        return new Result(source, all, kernels, generated);
    }

    /// <summary>The 1-based line of a diagnostic.</summary>
    public static int Line(Diagnostic d) => d.Location.GetLineSpan().StartLinePosition.Line + 1;
}
