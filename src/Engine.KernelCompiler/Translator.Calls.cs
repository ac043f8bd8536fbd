using System.Collections.Generic;
using System.Linq;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using Microsoft.CodeAnalysis.CSharp.Syntax;

namespace Engine.KernelCompiler;

internal sealed partial class Translator
{
    private const string KernelsNamespace = "Engine.Runtime.Kernels";

    private string Invocation(InvocationExpressionSyntax inv)
    {
        if (_f.Model.GetSymbolInfo(inv).Symbol is not IMethodSymbol method)
        {
            Report(Krn.Call, inv, inv.Expression.ToString(), "the call does not bind to a single method");
            return "0";
        }
        var args = inv.ArgumentList.Arguments;
        if (method.ContainingType.SpecialType == SpecialType.System_String)
        {
            Report(Krn.Strings, inv, inv.ToString());
            return "0";
        }
        string typeName = method.ContainingType.OriginalDefinition.ToDisplayString();
        string ns = method.ContainingNamespace?.ToDisplayString() ?? "";

        if (ns == "System.Linq" || method.IsExtensionMethod && method.ContainingNamespace?.ToDisplayString().StartsWith("System.Linq") == true)
        {
            Report(Krn.Linq, inv, method.Name);
            return "0";
        }
        if (typeName == KernelsNamespace + ".Group" && method.Name == "Barrier") return Intrinsics.Barrier(target);
        if (typeName == KernelsNamespace + ".Group" && method.Name is "ReduceSum" or "ReduceMax") return Reduce(inv, method, group: true);
        if (typeName == KernelsNamespace + ".Warp" && method.Name is "ReduceSum" or "ReduceMax") return Reduce(inv, method, group: false);
        if (typeName == KernelsNamespace + ".Warp") return Shuffle(inv, method);
        if (typeName == KernelsNamespace + ".Atomic") return Atomic(inv, method);
        if (typeName == Types.Float4Name && method.Name is "Load" or "Store") return VectorAccess(inv, method);
        if (typeName == KernelsNamespace + ".Loop")
        {
            Report(Krn.Unsupported, inv, inv.ToString(), "Loop.Unroll() is a statement of its own, directly before a for, while or do loop");
            return "0";
        }
        if (typeName == KernelsNamespace + ".SharedMemory")
        {
            Report(Krn.SharedMemory, inv, $"and GetDynamic must initialize a local: var shared = SharedMemory.{method.Name}<T>(...);");
            return "0";
        }
        if (Types.IsArrayView(method.ContainingType))
        {
            Report(Krn.Unsupported, inv, inv.ToString(), "a SubView can initialize a local or be passed to a kernel function");
            return "0";
        }
        if (method.IsStatic && Intrinsics.IsMathType(typeName))
        {
            string operand = method.Parameters.Length > 0 ? Subst(method.Parameters[0].Type).ToDisplayString() : "";
            var fn = Intrinsics.MathFunction(method.Name, operand, target);
            if (fn is null)
            {
                Report(Krn.Call, inv, typeName + "." + method.Name + "(" + operand + ")", "it has no GPU mapping in the intrinsics table");
                return "0";
            }
            var operands = args.Select(a => Expr(a.Expression)).ToArray();
            if (method.Name is "Max" or "Min" && typeName is "System.MathF" or "System.Math" or "float" or "double" && Types.IsFloating(Subst(method.Parameters[0].Type)))
                return MinMaxPropagatingNaN(method.Name, operand, operands);
            return fn + "(" + string.Join(", ", operands) + ")";
        }
        // TOp.Apply(x): a static abstract interface member called through a type parameter.
        if (method.IsStatic && (method.IsAbstract || method.IsVirtual) && method.ContainingType.TypeKind == TypeKind.Interface)
        {
            if (PrimitiveReceiver((inv.Expression as MemberAccessExpressionSyntax)?.Expression) is { } primitive)
                return GenericMathCall(inv, method, primitive);
            var implementation = ResolveStaticAbstract(inv, method);
            return implementation is null ? "0" : Call(inv, implementation);
        }
        if (!method.IsStatic)
        {
            Report(Krn.Call, inv, method.ToDisplayString(),
                method.IsVirtual || method.IsAbstract || method.IsOverride || method.ContainingType.TypeKind == TypeKind.Interface
                    ? "virtual and interface calls have no GPU translation"
                    : "instance methods are not translated; write a static [KernelFunction] method");
            return "0";
        }
        bool implementsOperator = method.ContainingType.TypeKind == TypeKind.Struct && method.ContainingType.AllInterfaces.Any(i =>
            i.GetMembers(method.Name).Any(m => m.IsStatic && m.IsAbstract));
        if (!HasAttribute(method.OriginalDefinition, KernelFunctionAttribute) && !implementsOperator)
        {
            Report(Krn.Call, inv, method.ToDisplayString(), "only [KernelFunction] methods, XMath/MathF and the kernel API can be called; mark it [KernelFunction]");
            return "0";
        }
        return Call(inv, method);
    }

    /// <summary>A call to a translated kernel function; views pass as pointer + length.</summary>
    private string Call(InvocationExpressionSyntax inv, IMethodSymbol method)
    {
        if (method.IsGenericMethod)
            method = method.OriginalDefinition.Construct(method.TypeArguments.Select(Subst).ToArray());
        // Same definition on the stack is recursion, whatever the type arguments (a generic method
        // calling itself with other type arguments would otherwise instantiate forever).
        bool Same(IMethodSymbol m) => SymbolEqualityComparer.Default.Equals(m.OriginalDefinition, method.OriginalDefinition);
        if (_callStack.Any(Same))
        {
            var chain = _callStack.SkipWhile(m => !Same(m)).Select(m => m.Name).Concat([method.Name]);
            Report(Krn.Recursion, inv, method.Name, string.Join(" -> ", chain));
            return "0";
        }
        // Arguments by parameter (named arguments may reorder them; omitted optionals take their default).
        var perParameter = new string?[method.Parameters.Length];
        var spaces = new string[method.Parameters.Length];
        var args = inv.ArgumentList.Arguments;
        for (int a = 0; a < args.Count; a++)
        {
            var arg = args[a];
            int ordinal = arg.NameColon is { } nc ? method.Parameters.IndexOf(method.Parameters.FirstOrDefault(p => p.Name == nc.Name.Identifier.ValueText)!) : a;
            if (ordinal < 0 || ordinal >= perParameter.Length) { Report(Krn.Unsupported, arg, arg.ToString(), "params arrays are not translated"); continue; }
            if (arg.RefKindKeyword != default) { Report(Krn.RefParameter, arg, arg.ToString(), method.Name); continue; }
            if (Types.IsArrayView(_f.Model.GetTypeInfo(arg.Expression).Type))
            {
                var view = View(arg.Expression);
                if (view is null) continue;
                spaces[ordinal] = view.Space;
                perParameter[ordinal] = view.Pointer + ", " + view.Length;
            }
            else perParameter[ordinal] = Expr(arg.Expression);
        }
        for (int i = 0; i < perParameter.Length; i++)
            if (perParameter[i] is null && method.Parameters[i].HasExplicitDefaultValue)
                perParameter[i] = Literal(method.Parameters[i].ExplicitDefaultValue, Subst(method.Parameters[i].Type), inv);
        string name = Function(method, inv, spaces);
        return name + "(" + string.Join(", ", perParameter.Where(p => p is not null)) + ")";
    }

    /// <summary>The concrete struct method a static abstract call resolves to in this instance.</summary>
    private IMethodSymbol? ResolveStaticAbstract(InvocationExpressionSyntax inv, IMethodSymbol method)
    {
        ITypeSymbol? receiver = inv.Expression is MemberAccessExpressionSyntax ma ? _f.Model.GetTypeInfo(ma.Expression).Type : null;
        var concrete = receiver is null ? null : Subst(receiver);
        if (concrete is null || concrete.TypeKind == TypeKind.TypeParameter)
        {
            Report(Krn.Instance, inv, _f.Method.Name, $"cannot resolve '{inv.Expression}' to a concrete operator struct; declare the instance with [KernelInstance(typeof(...))]");
            return null;
        }
        var iface = method.ContainingType;
        var substitutedArgs = iface.TypeArguments.Select(Subst).ToArray();
        foreach (var candidate in concrete.AllInterfaces)
        {
            if (!SymbolEqualityComparer.Default.Equals(candidate.OriginalDefinition, iface.OriginalDefinition)) continue;
            if (!candidate.TypeArguments.Select(a => a.ToDisplayString()).SequenceEqual(substitutedArgs.Select(a => a.ToDisplayString()))) continue;
            var member = candidate.GetMembers(method.Name).OfType<IMethodSymbol>()
                .FirstOrDefault(m => SymbolEqualityComparer.Default.Equals(m.OriginalDefinition, method.OriginalDefinition));
            if (member is not null && concrete.FindImplementationForInterfaceMember(member) is IMethodSymbol impl)
                return method.IsGenericMethod ? impl.Construct(method.TypeArguments.Select(Subst).ToArray()) : impl;
        }
        Report(Krn.Instance, inv, _f.Method.Name, $"'{concrete.ToDisplayString()}' does not implement '{method.ToDisplayString()}'");
        return null;
    }

    private string Shuffle(InvocationExpressionSyntax inv, IMethodSymbol method)
    {
        var args = inv.ArgumentList.Arguments;
        if (method.Name is not ("ShuffleXor" or "ShuffleDown") || args.Count != 2)
        {
            Report(Krn.Call, inv, "Warp." + method.Name, "not translated");
            return "0";
        }
        string value = Expr(args[0].Expression), lane = Expr(args[1].Expression);
        bool isInt = method.Parameters[0].Type.SpecialType == SpecialType.System_Int32;
        if (target == Target.Cuda)
            return $"{(method.Name == "ShuffleXor" ? "__shfl_xor_sync" : "__shfl_down_sync")}(0xffffffffu, {value}, {lane})";
        if (!_f.IsKernel)
        {
            Report(Krn.ShuffleScope, inv, method.Name);
            return "0";
        }
        string hoisted = $"__local float {Intrinsics.ShuffleBuffer}[{Intrinsics.ShuffleBufferSize}];";
        if (!_f.Hoisted.Contains(hoisted)) _f.Hoisted.Add(hoisted);
        string fn = Helper(method.Name == "ShuffleXor" ? "shfl_xor" : "shfl_down");
        return isInt
            ? $"as_int({fn}({Intrinsics.ShuffleBuffer}, as_float({value}), {lane}))"
            : $"{fn}({Intrinsics.ShuffleBuffer}, {value}, {lane})";
    }

    /// <summary>
    /// Group.ReduceSum/ReduceMax (a shared-memory tree: a static __shared__ buffer in the CUDA helper,
    /// a kernel-scope __local buffer on OpenCL) and Warp.ReduceSum/ReduceMax (a butterfly of shuffles).
    /// On OpenCL both need a buffer declared at kernel scope, so they are allowed in kernel bodies only.
    /// </summary>
    private string Reduce(InvocationExpressionSyntax inv, IMethodSymbol method, bool group)
    {
        string value = Expr(inv.ArgumentList.Arguments[0].Expression);
        string name = (group ? "group_" : "warp_") + (method.Name == "ReduceSum" ? "sum" : "max");
        if (target == Target.Cuda) return $"{Helper(name)}({value})";
        if (!_f.IsKernel)
        {
            Report(Krn.ShuffleScope, inv, (group ? "Group." : "Warp.") + method.Name);
            return "0";
        }
        string buffer = group ? Intrinsics.ReduceBuffer : Intrinsics.ShuffleBuffer;
        string hoisted = $"__local float {buffer}[{Intrinsics.ShuffleBufferSize}];";
        if (!_f.Hoisted.Contains(hoisted)) _f.Hoisted.Add(hoisted);
        return $"{Helper(name)}({buffer}, {value})";
    }

    /// <summary>
    /// Float4.Load(view, i) / Float4.Store(view, i, v): one 16-byte access at view + i (CUDA: through a
    /// float4 pointer, which needs the 16-byte alignment the caller guarantees; OpenCL: vload4/vstore4).
    /// </summary>
    private string VectorAccess(InvocationExpressionSyntax inv, IMethodSymbol method)
    {
        var args = inv.ArgumentList.Arguments;
        var view = View(args[0].Expression);
        if (view is null) return "0";
        string address = $"({view.Pointer} + {Expr(args[1].Expression)})";
        if (method.Name == "Load")
            return target == Target.Cuda ? $"(*(const float4*){address})" : $"vload4(0, {address})";
        string value = Expr(args[2].Expression);
        return target == Target.Cuda ? $"(*(float4*){address} = {value})" : $"vstore4({value}, 0, {address})";
    }

    /// <summary>Atomic.Add/Max/Min/CompareExchange(ref view[i], ...): atomicAdd and co. / atomic_add and co.</summary>
    private string Atomic(InvocationExpressionSyntax inv, IMethodSymbol method)
    {
        var args = inv.ArgumentList.Arguments;
        if (args.Count < 2 || args[0].Expression is not ElementAccessExpressionSyntax target0)
        {
            Report(Krn.Unsupported, inv, inv.ToString(), "atomics take 'ref view[index]' as their first argument");
            return "0";
        }
        var view = View(target0.Expression);
        if (view is null) return "0";
        string address = $"&{view.Pointer}[{Expr(target0.ArgumentList.Arguments[0].Expression)}]";
        var rest = args.Skip(1).Select(a => Expr(a.Expression)).ToArray();
        bool isFloat = method.Parameters[0].Type.SpecialType == SpecialType.System_Single;
        string space = view.Space.Contains("__local") ? "l" : "g";
        if (target == Target.Cuda)
            return method.Name switch
            {
                "Add" => $"atomicAdd({address}, {rest[0]})",
                "Max" when isFloat => $"{Helper("atomic_max_f")}({address}, {rest[0]})",
                "Max" => $"atomicMax({address}, {rest[0]})",
                "Min" => $"atomicMin({address}, {rest[0]})",
                "CompareExchange" => $"atomicCAS({address}, {rest[0]}, {rest[1]})",
                _ => Unknown(),
            };
        return method.Name switch
        {
            "Add" when isFloat => $"{Helper("atomic_add_f_" + space)}({address}, {rest[0]})",
            "Add" => $"atomic_add({address}, {rest[0]})",
            "Max" when isFloat => $"{Helper("atomic_max_f_" + space)}({address}, {rest[0]})",
            "Max" => $"atomic_max({address}, {rest[0]})",
            "Min" => $"atomic_min({address}, {rest[0]})",
            "CompareExchange" => $"atomic_cmpxchg({address}, {rest[0]}, {rest[1]})",
            _ => Unknown(),
        };

        string Unknown()
        {
            Report(Krn.Call, inv, "Atomic." + method.Name, "not translated");
            return "0";
        }
    }
}
