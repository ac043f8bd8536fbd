using System.Collections.Generic;
using System.Linq;
using System.Text;
using Microsoft.CodeAnalysis;

namespace Engine.KernelCompiler;

/// <summary>The two C dialects the compiler emits.</summary>
internal enum Target { Cuda, OpenCL }

/// <summary>
/// C# types to C types. Integer types keep their exact width in both dialects (C# long is CUDA
/// <c>long long</c> and OpenCL <c>long</c>, both 64-bit). Blittable user structs become C structs
/// with the same fields in the same order (sequential layout).
/// </summary>
internal static class Types
{
    public const string ArrayViewName = "Engine.Runtime.Kernels.ArrayView<T>";

    public static bool IsArrayView(ITypeSymbol? type)
        => type is INamedTypeSymbol { IsGenericType: true } named && named.OriginalDefinition.ToDisplayString() == ArrayViewName;

    public const string Float4Name = "Engine.Runtime.Kernels.Float4";

    /// <summary>True for Engine.Runtime.Kernels.Float4, the native <c>float4</c> of both dialects.</summary>
    public static bool IsFloat4(ITypeSymbol? type) => type is INamedTypeSymbol { TypeKind: TypeKind.Struct } named && named.ToDisplayString() == Float4Name;

    public static ITypeSymbol ElementType(ITypeSymbol view) => ((INamedTypeSymbol)view).TypeArguments[0];

    /// <summary>The C name of a primitive, or null when <paramref name="type"/> is not one.</summary>
    public static string? Primitive(ITypeSymbol type, Target target) => type.SpecialType switch
    {
        SpecialType.System_Boolean => "bool",
        SpecialType.System_SByte => target == Target.Cuda ? "signed char" : "char",
        SpecialType.System_Byte => target == Target.Cuda ? "unsigned char" : "uchar",
        SpecialType.System_Int16 => "short",
        SpecialType.System_UInt16 => target == Target.Cuda ? "unsigned short" : "ushort",
        SpecialType.System_Int32 => "int",
        SpecialType.System_UInt32 => target == Target.Cuda ? "unsigned int" : "uint",
        SpecialType.System_Int64 => target == Target.Cuda ? "long long" : "long",
        SpecialType.System_UInt64 => target == Target.Cuda ? "unsigned long long" : "ulong",
        SpecialType.System_Single => "float",
        SpecialType.System_Double => "double",
        SpecialType.System_Void => "void",
        _ => null,
    };

    public static bool IsNumeric(ITypeSymbol? type) => type is not null && type.SpecialType switch
    {
        SpecialType.System_SByte or SpecialType.System_Byte or SpecialType.System_Int16 or SpecialType.System_UInt16
            or SpecialType.System_Int32 or SpecialType.System_UInt32 or SpecialType.System_Int64 or SpecialType.System_UInt64
            or SpecialType.System_Single or SpecialType.System_Double => true,
        _ => false,
    };

    public static bool IsFloating(ITypeSymbol? type)
        => type?.SpecialType is SpecialType.System_Single or SpecialType.System_Double;

    /// <summary>Null when <paramref name="type"/> may appear in kernel code, otherwise why not.</summary>
    public static string? WhyNot(ITypeSymbol type)
    {
        switch (type.SpecialType)
        {
            case SpecialType.System_String: return "strings are managed objects";
            case SpecialType.System_Object: return "object is a managed reference type";
            case SpecialType.System_Decimal: return "decimal has no GPU arithmetic";
            case SpecialType.System_Char: return "char is a UTF-16 string element; use ushort or int";
            case SpecialType.System_IntPtr or SpecialType.System_UIntPtr: return "native-sized integers differ between host and device; use int or long";
        }
        if (Primitive(type, Target.Cuda) is not null) return null;
        if (type is IArrayTypeSymbol) return "managed arrays live on the managed heap; use ArrayView<T>";
        if (type is IPointerTypeSymbol) return "raw pointers are not bounds-checked in the emulator; use ArrayView<T>";
        if (type.TypeKind == TypeKind.TypeParameter) return null; // substituted per instance
        if (IsArrayView(type)) return WhyNot(ElementType(type));
        if (type.IsReferenceType) return $"{type.TypeKind.ToString().ToLowerInvariant()} types are managed references; only primitives, blittable structs and ArrayView<T> are allowed";
        if (type.TypeKind == TypeKind.Enum) return null;
        if (type is INamedTypeSymbol { TypeKind: TypeKind.Struct } s)
        {
            if (s.IsTupleType) return "tuples are not supported; use a struct";
            if (s.ContainingNamespace?.ToDisplayString().StartsWith("System") == true) return "only primitives and your own blittable structs are allowed";
            foreach (var f in Fields(s))
                if (WhyNot(f.Type) is { } why) return $"field '{f.Name}' has type '{f.Type.ToDisplayString()}': {why}";
            return null;
        }
        return "not a primitive, blittable struct or ArrayView<T>";
    }

    /// <summary>N for an <c>[InlineArray(N)]</c> struct (a fixed-size array by value, e.g. shape/strides), else null.</summary>
    public static int? InlineArrayLength(ITypeSymbol type)
        => type.GetAttributes().FirstOrDefault(a => a.AttributeClass?.ToDisplayString() == "System.Runtime.CompilerServices.InlineArrayAttribute")
            ?.ConstructorArguments.FirstOrDefault().Value as int?;

    /// <summary>The C member name of a field: an auto-property's backing field takes the property's name.</summary>
    public static string FieldName(IFieldSymbol f) => f.AssociatedSymbol is IPropertySymbol p ? p.Name : f.Name;

    /// <summary>True for an auto-property (a field in C).</summary>
    public static bool IsAutoProperty(IPropertySymbol p)
        => p.ContainingType.GetMembers().OfType<IFieldSymbol>().Any(f => SymbolEqualityComparer.Default.Equals(f.AssociatedSymbol, p));

    public static IEnumerable<IFieldSymbol> Fields(INamedTypeSymbol s)
        => s.GetMembers().OfType<IFieldSymbol>().Where(f => !f.IsStatic && !f.IsConst);

    /// <summary>A C identifier for a type or member, built from its C# name (generic arguments included).</summary>
    public static string Mangle(ITypeSymbol type)
    {
        var sb = new StringBuilder();
        if (type.ContainingType is { } outer) sb.Append(Mangle(outer)).Append('_');
        sb.Append(type.Name);
        if (type is INamedTypeSymbol { IsGenericType: true } g)
            foreach (var a in g.TypeArguments) sb.Append("__").Append(Mangle(a));
        return sb.ToString();
    }

    /// <summary>Replaces type parameters by the instance's type arguments.</summary>
    public static ITypeSymbol Substitute(ITypeSymbol type, IReadOnlyDictionary<ITypeParameterSymbol, ITypeSymbol> map)
    {
        if (map.Count == 0) return type;
        if (type is ITypeParameterSymbol p)
            foreach (var kv in map)
                if (SymbolEqualityComparer.Default.Equals(kv.Key, p) || (kv.Key.Name == p.Name && kv.Key.Ordinal == p.Ordinal && kv.Key.TypeParameterKind == p.TypeParameterKind))
                    return kv.Value;
        if (type is INamedTypeSymbol { IsGenericType: true } named)
        {
            var args = named.TypeArguments.Select(a => Substitute(a, map)).ToArray();
            return named.OriginalDefinition.Construct(args);
        }
        return type;
    }

    /// <summary>C reserved words and builtins a C# identifier could collide with.</summary>
    public static readonly HashSet<string> Reserved = new(
    [
        "auto", "register", "restrict", "signed", "unsigned", "extern", "inline", "typedef", "union", "volatile", "sizeof",
        "goto", "enum", "struct", "char", "short", "long", "float", "double", "int", "void", "bool", "half", "uchar", "ushort",
        "uint", "ulong", "global", "local", "constant", "private", "kernel", "read_only", "write_only", "image2d_t", "sampler_t",
        "event_t", "size_t", "min", "max", "exp", "log", "sqrt", "abs", "fabs", "fma", "clamp", "mix", "sign", "step", "select",
        "dot", "length", "distance", "normalize", "cross", "barrier", "template", "class", "namespace", "new", "delete",
        "this", "operator", "friend", "virtual", "typename", "threadIdx", "blockIdx", "blockDim", "gridDim", "warpSize",
        "asm", "export", "mutable", "explicit", "register", "NULL", "INFINITY", "NAN",
    ]);
}
