using System;
using System.Globalization;
using System.Linq;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using Microsoft.CodeAnalysis.CSharp.Syntax;

namespace Engine.KernelCompiler;

internal sealed partial class Translator
{
    /// <summary>
    /// An expression as C. Constants are folded to literals of their converted type; implicit
    /// numeric conversions become explicit casts, so C's usual arithmetic conversions never differ
    /// from C#'s (e.g. uint + int is long in C#).
    /// </summary>
    private string Expr(ExpressionSyntax e)
    {
        var info = _f.Model.GetTypeInfo(e);
        var type = info.Type is null ? null : Subst(info.Type);
        var converted = info.ConvertedType is null ? type : Subst(info.ConvertedType);
        if (e is InterpolatedStringExpressionSyntax || type?.SpecialType == SpecialType.System_String)
        {
            Report(Krn.Strings, e, e.ToString());
            return "0";
        }
        var constant = _f.Model.GetConstantValue(e);
        if (constant.HasValue && converted is not null)
            return Literal(constant.Value, converted, e);
        string raw = Raw(e);
        if (type is not null && converted is not null && !SymbolEqualityComparer.Default.Equals(type, converted)
            && Types.IsNumeric(converted) && (Types.IsNumeric(type) || type.TypeKind == TypeKind.Enum))
            return $"(({CType(converted, e)}){raw})";
        return raw;
    }

    private string Literal(object? value, ITypeSymbol type, SyntaxNode at)
    {
        if (value is null) { Report(Krn.Unsupported, at, "null", "there are no references on the device"); return "0"; }
        if (value is string) { Report(Krn.Strings, at, at.ToString()); return "0"; }
        if (type is INamedTypeSymbol { TypeKind: TypeKind.Enum, EnumUnderlyingType: { } u }) type = u;
        var inv = CultureInfo.InvariantCulture;
        bool cuda = target == Target.Cuda;
        switch (type.SpecialType)
        {
            case SpecialType.System_Boolean: return Convert.ToBoolean(value, inv) ? "true" : "false";
            case SpecialType.System_Single:
            {
                float f = Convert.ToSingle(value, inv);
                if (float.IsNaN(f)) return cuda ? "__int_as_float(0x7fc00000)" : "as_float(0x7fc00000u)";
                if (float.IsPositiveInfinity(f)) return cuda ? "__int_as_float(0x7f800000)" : "as_float(0x7f800000u)";
                if (float.IsNegativeInfinity(f)) return cuda ? "__int_as_float((int)0xff800000u)" : "as_float(0xff800000u)";
                string s = f.ToString("R", inv);
                if (s.IndexOfAny(['.', 'E']) < 0) s += ".0";
                return (f < 0 ? "(" + s + "f)" : s + "f");
            }
            case SpecialType.System_Double:
            {
                _usesDouble = true;
                double d = Convert.ToDouble(value, inv);
                if (double.IsNaN(d)) return cuda ? "__longlong_as_double(0x7ff8000000000000LL)" : "as_double(0x7ff8000000000000UL)";
                if (double.IsPositiveInfinity(d)) return cuda ? "__longlong_as_double(0x7ff0000000000000LL)" : "as_double(0x7ff0000000000000UL)";
                if (double.IsNegativeInfinity(d)) return cuda ? "__longlong_as_double((long long)0xfff0000000000000ULL)" : "as_double(0xfff0000000000000UL)";
                string s = d.ToString("R", inv);
                if (s.IndexOfAny(['.', 'E']) < 0) s += ".0";
                return d < 0 ? "(" + s + ")" : s;
            }
            case SpecialType.System_Int32:
            {
                int i = Convert.ToInt32(value, inv);
                return i == int.MinValue ? "(-2147483647 - 1)" : i < 0 ? $"({i})" : i.ToString(inv);
            }
            case SpecialType.System_UInt32: return Convert.ToUInt32(value, inv).ToString(inv) + "u";
            case SpecialType.System_Int64:
            {
                long l = Convert.ToInt64(value, inv);
                string suffix = cuda ? "LL" : "L";
                return l == long.MinValue ? $"(-9223372036854775807{suffix} - 1)" : l < 0 ? $"({l}{suffix})" : l.ToString(inv) + suffix;
            }
            case SpecialType.System_UInt64: return Convert.ToUInt64(value, inv).ToString(inv) + (cuda ? "ULL" : "UL");
            case SpecialType.System_Int16 or SpecialType.System_UInt16 or SpecialType.System_Byte or SpecialType.System_SByte:
                return $"(({CType(type, at)}){Convert.ToInt64(value, inv).ToString(inv)})";
            default:
                Report(Krn.UnsupportedType, at, type.ToDisplayString(), Types.WhyNot(type) ?? "no constant of this type on the device");
                return "0";
        }
    }

    private string Raw(ExpressionSyntax e)
    {
        switch (e)
        {
            case ParenthesizedExpressionSyntax p: return "(" + Expr(p.Expression) + ")";
            case IdentifierNameSyntax or MemberAccessExpressionSyntax: return Name(e);
            case ElementAccessExpressionSyntax ea when _f.Model.GetTypeInfo(ea.Expression).Type is { } receiver && Types.InlineArrayLength(Subst(receiver)) is not null:
                return $"{Expr(ea.Expression)}.e[{Expr(ea.ArgumentList.Arguments[0].Expression)}]";
            case ElementAccessExpressionSyntax ea:
            {
                var view = View(ea.Expression);
                if (view is null) return "0";
                if (ea.ArgumentList.Arguments.Count != 1) { Report(Krn.Unsupported, ea, ea.ToString(), "views have one index"); return "0"; }
                return $"{view.Pointer}[{Expr(ea.ArgumentList.Arguments[0].Expression)}]";
            }
            case InvocationExpressionSyntax inv: return Invocation(inv);
            case BinaryExpressionSyntax b: return Binary(b);
            case PrefixUnaryExpressionSyntax u: return u.OperatorToken.Text + "(" + Expr(u.Operand) + ")";
            case PostfixUnaryExpressionSyntax u when u.IsKind(SyntaxKind.SuppressNullableWarningExpression): return Expr(u.Operand);
            case PostfixUnaryExpressionSyntax u: return "(" + Expr(u.Operand) + ")" + u.OperatorToken.Text;
            case AssignmentExpressionSyntax a: return Assignment(a);
            case ConditionalExpressionSyntax c: return $"({Expr(c.Condition)} ? {Expr(c.WhenTrue)} : {Expr(c.WhenFalse)})";
            case CastExpressionSyntax c:
            {
                var to = _f.Model.GetTypeInfo(c.Type).Type ?? _f.Model.GetTypeInfo(c).Type;
                if (to is null) return Expr(c.Expression);
                to = Subst(to);
                var from = _f.Model.GetTypeInfo(c.Expression).Type;
                string ctype = CType(to, c.Type);
                // .NET converts float to integer saturating (NaN -> 0), as CUDA's cvt.rzi does; OpenCL's
                // plain cast is undefined out of range, its convert_T_sat is .NET's behaviour.
                if (target == Target.OpenCL && Types.IsFloating(from is null ? null : Subst(from)) && Types.IsNumeric(to) && !Types.IsFloating(to))
                    return $"convert_{ctype}_sat({Expr(c.Expression)})";
                return $"(({ctype})({Expr(c.Expression)}))";
            }
            case CheckedExpressionSyntax c: return Expr(c.Expression);
            case DefaultExpressionSyntax or LiteralExpressionSyntax when DefaultValue(e) is { } zero: return zero;
            case ObjectCreationExpressionSyntax or ImplicitObjectCreationExpressionSyntax:
            {
                var t = _f.Model.GetTypeInfo(e).Type;
                if (t is INamedTypeSymbol { TypeKind: TypeKind.Struct } st && !Types.IsArrayView(st))
                    return StructCreation((BaseObjectCreationExpressionSyntax)e, (INamedTypeSymbol)Subst(st));
                Report(Krn.Allocation, e, "'new " + (t?.ToDisplayString() ?? "object") + "'");
                return "0";
            }
            case ArrayCreationExpressionSyntax or ImplicitArrayCreationExpressionSyntax or StackAllocArrayCreationExpressionSyntax
                or ImplicitStackAllocArrayCreationExpressionSyntax or CollectionExpressionSyntax or InitializerExpressionSyntax
                or AnonymousObjectCreationExpressionSyntax:
                Report(Krn.Allocation, e, e is CollectionExpressionSyntax ? "collection expression" : "array or object creation");
                return "0";
            case LambdaExpressionSyntax or AnonymousMethodExpressionSyntax:
                Report(Krn.Lambda, e, "lambda");
                return "0";
            case QueryExpressionSyntax:
                Report(Krn.Linq, e, "query expression");
                return "0";
            case ThrowExpressionSyntax:
                Report(Krn.Exceptions, e, "throw expression");
                return "0";
            case InterpolatedStringExpressionSyntax:
                Report(Krn.Strings, e, e.ToString());
                return "0";
            default:
                Report(Krn.Unsupported, e, e.ToString(), "this expression has no GPU translation");
                return "0";
        }
    }

    private string Binary(BinaryExpressionSyntax b)
    {
        var kind = b.Kind();
        if (kind is SyntaxKind.CoalesceExpression or SyntaxKind.IsExpression or SyntaxKind.AsExpression)
        {
            Report(Krn.Unsupported, b, b.OperatorToken.Text, "there are no references or type tests on the device");
            return "0";
        }
        var type = _f.Model.GetTypeInfo(b).Type;
        string left = Expr(b.Left), right = Expr(b.Right);
        if (kind == SyntaxKind.ModuloExpression && Types.IsFloating(type))
            return $"{Math("Fmod", type!)}({left}, {right})";
        if (kind == SyntaxKind.UnsignedRightShiftExpression && type is not null)
        {
            string unsigned = type.SpecialType == SpecialType.System_Int64 ? (target == Target.Cuda ? "unsigned long long" : "ulong") : (target == Target.Cuda ? "unsigned int" : "uint");
            return $"(({CType(type, b)})(({unsigned}){left} >> {right}))";
        }
        if (kind is SyntaxKind.LeftShiftExpression or SyntaxKind.RightShiftExpression && type is not null
            && !_f.Model.GetConstantValue(b.Right).HasValue)
        {
            // C# masks the shift count (x << 33 is x << 1 for an int); in C it is undefined.
            int mask = type.SpecialType is SpecialType.System_Int64 or SpecialType.System_UInt64 ? 63 : 31;
            return $"({left} {b.OperatorToken.Text} ({right} & {mask}))";
        }
        return $"({left} {b.OperatorToken.Text} {right})";
    }

    private string Math(string function, ITypeSymbol type)
        => function == "Fmod" ? (type.SpecialType == SpecialType.System_Single && target == Target.Cuda ? "fmodf" : "fmod") : function;

    private string Assignment(AssignmentExpressionSyntax a)
    {
        var kind = a.Kind();
        if (kind is SyntaxKind.CoalesceAssignmentExpression or SyntaxKind.UnsignedRightShiftAssignmentExpression)
        {
            Report(Krn.Unsupported, a, a.OperatorToken.Text, "write the operation out: x = x op y");
            return "0";
        }
        if (a.Left is TupleExpressionSyntax) { Report(Krn.Unsupported, a.Left, a.Left.ToString(), "tuples are not supported"); return "0"; }
        var leftType = _f.Model.GetTypeInfo(a.Left).Type;
        if (Types.IsArrayView(leftType)) { Report(Krn.Unsupported, a, a.ToString(), "views cannot be reassigned; declare a new local"); return "0"; }
        if (kind == SyntaxKind.ModuloAssignmentExpression && Types.IsFloating(leftType))
        {
            string l = Expr(a.Left);
            return $"({l} = {Math("Fmod", leftType!)}({l}, {Expr(a.Right)}))";
        }
        return $"({Expr(a.Left)} {a.OperatorToken.Text} {Expr(a.Right)})";
    }

    /// <summary>Identifiers and member accesses: locals, parameters, struct fields, kernel indices, view lengths.</summary>
    private string Name(ExpressionSyntax e)
    {
        var symbol = _f.Model.GetSymbolInfo(e).Symbol;
        if (symbol?.ContainingType?.SpecialType == SpecialType.System_String)
        {
            Report(Krn.Strings, e, e.ToString());
            return "0";
        }
        switch (symbol)
        {
            case ILocalSymbol or IParameterSymbol:
                if (_f.Views.ContainsKey(symbol))
                {
                    Report(Krn.Unsupported, e, e.ToString(), "a view can be indexed, sliced with SubView, asked for Length or passed to a kernel function");
                    return "0";
                }
                return _f.Names.TryGetValue(symbol, out var n) ? n : symbol.Name;
            case IFieldSymbol field when !field.IsStatic && e is MemberAccessExpressionSyntax ma:
                return $"{Expr(ma.Expression)}.{(Types.IsFloat4(field.ContainingType) ? field.Name.ToLowerInvariant() : field.Name)}";
            case IFieldSymbol field:
                Report(Krn.StaticState, e, field.ContainingType.Name + "." + field.Name);
                return "0";
            case IPropertySymbol prop when prop.IsStatic && prop.ContainingNamespace?.ToDisplayString() == "Engine.Runtime.Kernels"
                                           && Intrinsics.Index(prop.ContainingType.Name + "." + prop.Name, target) is { } index:
                return index;
            case IPropertySymbol prop when prop.IsStatic && e is MemberAccessExpressionSyntax ma && GenericMathConstant(ma, prop) is { } constant:
                return constant;
            case IPropertySymbol { IsStatic: false } prop when e is MemberAccessExpressionSyntax ma && Types.IsAutoProperty(prop):
                return $"{Expr(ma.Expression)}.{prop.Name}";
            case IPropertySymbol prop when Types.IsArrayView(prop.ContainingType) && e is MemberAccessExpressionSyntax ma:
            {
                var view = View(ma.Expression);
                if (view is null) return "0";
                if (prop.Name == "Length") return view.Length;
                if (prop.Name == "IntLength") return $"((int){view.Length})";
                Report(Krn.Call, e, "ArrayView." + prop.Name, "host-only member");
                return "0";
            }
            case IPropertySymbol prop:
                Report(prop.IsStatic ? Krn.StaticState : Krn.Call, e, prop.ContainingType.Name + "." + prop.Name,
                    "property getters are method calls; use fields of blittable structs");
                return "0";
            case IMethodSymbol:
                Report(Krn.Lambda, e, "method group '" + e + "' (a delegate)");
                return "0";
            default:
                Report(Krn.Unsupported, e, e.ToString(), "unknown name in kernel code");
                return "0";
        }
    }

    /// <summary>The pointer/length of a view-typed expression: a parameter, a local, or a SubView.</summary>
    private ViewInfo? View(ExpressionSyntax e)
    {
        if (e is ParenthesizedExpressionSyntax p) return View(p.Expression);
        var symbol = _f.Model.GetSymbolInfo(e).Symbol;
        if (symbol is not null && _f.Views.TryGetValue(symbol, out var view)) return view;
        if (e is InvocationExpressionSyntax inv && symbol is IMethodSymbol { Name: "SubView" } m && Types.IsArrayView(m.ContainingType)
            && inv.Expression is MemberAccessExpressionSyntax ma && inv.ArgumentList.Arguments.Count == 2)
        {
            var source = View(ma.Expression);
            if (source is null) return null;
            string offset = Expr(inv.ArgumentList.Arguments[0].Expression), length = Expr(inv.ArgumentList.Arguments[1].Expression);
            return new ViewInfo($"({source.Pointer} + {offset})", $"(({Long}){length})", source.Space, source.Element);
        }
        if (SharedAllocation(e) is not null)
            Report(Krn.SharedMemory, e, "must initialize a local: var shared = SharedMemory.Allocate<T>(N);");
        else
            Report(Krn.Unsupported, e, e.ToString(), "views must be parameters, locals initialized from views, or SubView(...) of one");
        return null;
    }
}
