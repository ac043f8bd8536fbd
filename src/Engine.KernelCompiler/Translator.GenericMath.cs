using System.Linq;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp.Syntax;

namespace Engine.KernelCompiler;

/// <summary>
/// .NET generic math on a type parameter that an instance makes a primitive (<c>T.Exp(x)</c>,
/// <c>T.One</c>, <c>T.CreateTruncating(v)</c> with T = float): the op structs shared with the CPU
/// path (Engine.Tensors' op families) are written this way. Calls go through the same math table
/// as XMath; operators on T need nothing, since they are C operators once T is substituted.
/// </summary>
internal sealed partial class Translator
{
    /// <summary>The primitive a generic-math receiver (<c>T</c> in <c>T.Exp</c>) stands for in this instance, or null.</summary>
    private ITypeSymbol? PrimitiveReceiver(ExpressionSyntax? receiver)
    {
        if (receiver is null) return null;
        var type = _f.Model.GetTypeInfo(receiver).Type;
        if (type is null || type.TypeKind != TypeKind.TypeParameter) return null;
        var concrete = Subst(type);
        return Types.IsNumeric(concrete) ? concrete : null;
    }

    /// <summary><c>T.Method(args)</c> with T a primitive: a cast for the Create* conversions, else the math table.</summary>
    private string GenericMathCall(InvocationExpressionSyntax inv, IMethodSymbol method, ITypeSymbol primitive)
    {
        var args = inv.ArgumentList.Arguments.Select(a => Expr(a.Expression)).ToArray();
        string keyword = primitive.ToDisplayString();
        if (method.Name is "CreateChecked" or "CreateTruncating" or "CreateSaturating" && args.Length == 1)
            return $"(({CType(primitive, inv)})({args[0]}))";
        if (method.Name is "Max" or "Min" && Types.IsFloating(primitive) && args.Length == 2)
            return MinMaxPropagatingNaN(method.Name, keyword, args);
        string name = method.Name switch { "MaxNumber" => "Max", "MinNumber" => "Min", "ReciprocalSqrtEstimate" => "Rsqrt", _ => method.Name };
        var fn = Intrinsics.MathFunction(name, keyword, target);
        if (fn is null)
        {
            Report(Krn.Call, inv, $"{keyword}.{method.Name}", "this generic-math member has no GPU mapping in the intrinsics table");
            return "0";
        }
        return fn + "(" + string.Join(", ", args) + ")";
    }

    /// <summary>
    /// .NET's Math.Max/Min and T.Max/Min on floats return NaN when either operand is NaN (IEEE
    /// 754-2019 maximum); C's fmax returns the other operand. A helper keeps the .NET result.
    /// (XMath.Max/Min are documented as fmaxf/fminf and map directly.)
    /// </summary>
    private string MinMaxPropagatingNaN(string name, string keyword, string[] args)
    {
        string helper = Helper($"{name.ToLowerInvariant()}_nan_{(keyword == "float" ? "f" : "d")}");
        return $"{helper}({args[0]}, {args[1]})";
    }

    /// <summary><c>T.Zero</c>, <c>T.One</c>, <c>T.NaN</c>, <c>T.MaxValue</c>... with T a primitive.</summary>
    private string? GenericMathConstant(MemberAccessExpressionSyntax e, IPropertySymbol property)
    {
        var primitive = PrimitiveReceiver(e.Expression);
        if (primitive is null) return null;
        switch (property.Name)
        {
            case "Zero" or "AdditiveIdentity": return Literal(0, primitive, e);
            case "One" or "MultiplicativeIdentity": return Literal(1, primitive, e);
            case "NegativeOne": return Literal(-1, primitive, e);
        }
        var field = primitive.GetMembers(property.Name).OfType<IFieldSymbol>().FirstOrDefault(f => f.IsConst);
        return field is null ? null : Literal(field.ConstantValue, primitive, e);
    }
}
