using System.Collections.Generic;
using System.Linq;
using System.Text;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using Microsoft.CodeAnalysis.CSharp.Syntax;

namespace Engine.KernelCompiler;

/// <summary>
/// Struct values: <c>new S { X = a }</c>, <c>new S()</c> and <c>default(S)</c> become a call to a
/// generated maker function taking every field in order (unset fields are zero), which is valid
/// in both C (OpenCL) and C++ (CUDA) without designated initializers.
/// </summary>
internal sealed partial class Translator
{
    private readonly HashSet<string> _makers = new();

    private string StructCreation(BaseObjectCreationExpressionSyntax e, INamedTypeSymbol type)
    {
        if (e.ArgumentList is { Arguments.Count: > 0 })
        {
            Report(Krn.Unsupported, e, e.ToString(), "constructors with arguments are not translated; use an object initializer: new S { X = ... }");
            return "0";
        }
        if (_f.Model.GetSymbolInfo(e).Symbol is IMethodSymbol { IsImplicitlyDeclared: false })
        {
            Report(Krn.Unsupported, e, e.ToString(), "a declared parameterless constructor is not translated; use an object initializer");
            return "0";
        }
        var values = new Dictionary<string, string>();
        foreach (var expression in e.Initializer?.Expressions ?? default)
        {
            var member = expression is AssignmentExpressionSyntax { Left: IdentifierNameSyntax } a0 && a0.IsKind(SyntaxKind.SimpleAssignmentExpression)
                ? _f.Model.GetSymbolInfo(a0.Left).Symbol : null;
            if (member is IFieldSymbol or IPropertySymbol { IsStatic: false } && (member is not IPropertySymbol p || Types.IsAutoProperty(p)))
                values[member.Name] = Expr(((AssignmentExpressionSyntax)expression).Right);
            else
                Report(Krn.Unsupported, expression, expression.ToString(), "struct initializers may only assign fields");
        }
        return StructValue(type, values, e);
    }

    private string StructValue(INamedTypeSymbol type, Dictionary<string, string> values, SyntaxNode at)
    {
        string cName = CType(type, at);
        if (Types.IsFloat4(type))
        {
            var xyzw = new[] { "X", "Y", "Z", "W" }.Select(c => values.TryGetValue(c, out var v) ? v : "0.0f");
            return target == Target.Cuda ? $"make_float4({string.Join(", ", xyzw)})" : $"((float4)({string.Join(", ", xyzw)}))";
        }
        if (Types.InlineArrayLength(type) is { } length) return InlineArrayZero(type, cName, length, at);
        string maker = StructMaker(type, cName, at);
        var args = Types.Fields(type).Select(f => values.TryGetValue(Types.FieldName(f), out var v) ? v : Zero(Subst(f.Type), at));
        return $"{maker}({string.Join(", ", args)})";
    }

    private string Zero(ITypeSymbol type, SyntaxNode at)
        => type is INamedTypeSymbol { TypeKind: TypeKind.Struct } s && Types.Primitive(s, target) is null
            ? StructValue(s, new Dictionary<string, string>(), at)
            : Literal(0, type, at);

    private string StructMaker(INamedTypeSymbol type, string cName, SyntaxNode at)
    {
        string name = "__engine_make_" + cName;
        if (!_makers.Add(name)) return name;
        var fields = Types.Fields(type).ToList();
        var sb = new StringBuilder(target == Target.Cuda ? "static __device__ " : "static ");
        sb.Append(cName).Append(' ').Append(name).Append('(')
          .Append(string.Join(", ", fields.Select((f, i) => $"{CType(f.Type, at)} f{i}"))).Append(")\n{\n")
          .Append("    ").Append(cName).Append(" s;\n");
        for (int i = 0; i < fields.Count; i++) sb.Append($"    s.{Types.FieldName(fields[i])} = f{i};\n");
        sb.Append("    return s;\n}\n");
        _structs.Add(sb.ToString());
        return name;
    }

    private string InlineArrayZero(INamedTypeSymbol type, string cName, int length, SyntaxNode at)
    {
        string name = "__engine_zero_" + cName;
        if (!_makers.Add(name)) return name + "()";
        var element = Subst(Types.Fields(type).First().Type);
        _structs.Add($"{(target == Target.Cuda ? "static __device__ " : "static ")}{cName} {name}()\n{{\n    {cName} s;\n" +
                     $"    for (int i = 0; i < {length}; i++) s.e[i] = {Zero(element, at)};\n    return s;\n}}\n");
        return name + "()";
    }

    /// <summary><c>default</c> / <c>default(S)</c> of a struct (numeric defaults are constants and folded before).</summary>
    private string? DefaultValue(ExpressionSyntax e)
    {
        var type = _f.Model.GetTypeInfo(e).ConvertedType ?? _f.Model.GetTypeInfo(e).Type;
        if (type is null) return null;
        type = Subst(type);
        return type is INamedTypeSymbol { TypeKind: TypeKind.Struct } s && Types.Primitive(s, target) is null && !Types.IsArrayView(s)
            ? StructValue(s, new Dictionary<string, string>(), e)
            : null;
    }
}
