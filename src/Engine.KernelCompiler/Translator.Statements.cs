using System.Collections.Generic;
using System.Linq;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using Microsoft.CodeAnalysis.CSharp.Syntax;

namespace Engine.KernelCompiler;

internal sealed partial class Translator
{
    private void Statement(StatementSyntax statement)
    {
        var w = _f.W;
        int line = LineOf(statement);
        switch (statement)
        {
            case BlockSyntax block:
                w.Line(line, "{");
                Body(block.Statements);
                w.Line("}");
                break;
            case LocalDeclarationStatementSyntax local:
                if (local.UsingKeyword != default) { Report(Krn.Unsupported, local, "using", "kernels own no disposable resources"); break; }
                foreach (var v in local.Declaration.Variables) LocalVariable(local, v, local.IsConst);
                break;
            case ExpressionStatementSyntax e when IsLoopUnroll(e.Expression):
                if (NextStatement(e) is ForStatementSyntax or WhileStatementSyntax or DoStatementSyntax) _f.PendingPragma = (line, "#pragma unroll");
                else Report(Krn.Unsupported, e, e.ToString(), "Loop.Unroll() must be the statement directly before a for, while or do loop");
                break;
            case ExpressionStatementSyntax e:
                w.Line(line, Expr(e.Expression) + ";");
                break;
            case IfStatementSyntax s:
                w.Line(line, $"if ({Expr(s.Condition)})");
                Nested(s.Statement);
                if (s.Else is not null)
                {
                    w.Line(LineOf(s.Else), "else");
                    Nested(s.Else.Statement);
                }
                break;
            case WhileStatementSyntax s:
                Pragma();
                w.Line(line, $"while ({Expr(s.Condition)})");
                Nested(s.Statement);
                break;
            case DoStatementSyntax s:
                Pragma();
                w.Line(line, "do");
                Nested(s.Statement);
                w.Line(LineOf(s.Condition), $"while ({Expr(s.Condition)});");
                break;
            case ForStatementSyntax s:
                For(s);
                break;
            case BreakStatementSyntax: w.Line(line, "break;"); break;
            case ContinueStatementSyntax: w.Line(line, "continue;"); break;
            case ReturnStatementSyntax r:
                w.Line(line, r.Expression is null ? "return;" : $"return {Expr(r.Expression)};");
                break;
            case EmptyStatementSyntax: w.Line(line, ";"); break;
            case CheckedStatementSyntax c:
                Statement(c.Block);
                break;
            case LocalFunctionStatementSyntax f:
                Report(Krn.Lambda, f.Identifier.Parent, "local function '" + f.Identifier.Text + "'");
                break;
            case GotoStatementSyntax or LabeledStatementSyntax:
                Report(Krn.Goto, statement);
                break;
            case ThrowStatementSyntax or TryStatementSyntax:
                Report(Krn.Exceptions, statement, statement is ThrowStatementSyntax ? "throw" : "try");
                break;
            case ForEachStatementSyntax:
                Report(Krn.Unsupported, statement, "foreach", "enumerators are objects; use a for loop over the index");
                break;
            case SwitchStatementSyntax sw:
                Switch(sw);
                break;
            default:
                Report(Krn.Unsupported, statement, statement.Kind().ToString(), "this statement has no GPU translation");
                break;
        }
    }

    /// <summary>
    /// Writes the pending loop pragma, mapped to the marker's C# line: when the loop starts on the next
    /// C# line (the usual layout), no <c>#line</c> directive separates <c>#pragma unroll</c> from its loop.
    /// </summary>
    private void Pragma()
    {
        if (_f.PendingPragma is not { } pragma) return;
        _f.W.Line(pragma.Line, pragma.Text);
        _f.PendingPragma = null;
    }

    private bool IsLoopUnroll(ExpressionSyntax e)
        => e is InvocationExpressionSyntax inv && _f.Model.GetSymbolInfo(inv).Symbol is IMethodSymbol { Name: "Unroll" } m
           && m.ContainingType.ToDisplayString() == KernelsNamespace + ".Loop";

    /// <summary>The statement after <paramref name="s"/> in its block or switch section, if any.</summary>
    private static StatementSyntax? NextStatement(StatementSyntax s)
    {
        var list = s.Parent switch { BlockSyntax b => b.Statements, SwitchSectionSyntax sec => sec.Statements, _ => default };
        int i = list.IndexOf(s);
        return i >= 0 && i + 1 < list.Count ? list[i + 1] : null;
    }

    private void Body(IEnumerable<StatementSyntax> statements)
    {
        _f.W.Indent++;
        foreach (var s in statements) Statement(s);
        _f.W.Indent--;
    }

    /// <summary>The body of if/for/while/do, always braced.</summary>
    private void Nested(StatementSyntax statement)
    {
        if (statement is BlockSyntax block)
        {
            _f.W.Line("{");
            Body(block.Statements);
            _f.W.Line("}");
            return;
        }
        _f.W.Line("{");
        Body([statement]);
        _f.W.Line("}");
    }

    /// <summary>A switch on an integer or enum with constant case labels (C# forbids fall-through, so C's switch means the same).</summary>
    private void Switch(SwitchStatementSyntax s)
    {
        var type = _f.Model.GetTypeInfo(s.Expression).Type;
        if (type is null || !(type.TypeKind == TypeKind.Enum || (Types.IsNumeric(type) && !Types.IsFloating(type))))
        {
            Report(Krn.Unsupported, s.Expression, "switch on " + (type?.ToDisplayString() ?? "?"), "only integer and enum switches are translated");
            return;
        }
        _f.W.Line(LineOf(s), $"switch ({Expr(s.Expression)})");
        _f.W.Line("{");
        foreach (var section in s.Sections)
        {
            foreach (var label in section.Labels)
            {
                switch (label)
                {
                    case CaseSwitchLabelSyntax c: _f.W.Line(LineOf(c), $"case {Expr(c.Value)}:"); break;
                    case DefaultSwitchLabelSyntax d: _f.W.Line(LineOf(d), "default:"); break;
                    default: Report(Krn.Unsupported, label, label.ToString(), "pattern case labels are not translated; use constants"); break;
                }
            }
            _f.W.Line("{");
            Body(section.Statements);
            _f.W.Line("}");
        }
        _f.W.Line("}");
    }

    private void For(ForStatementSyntax s)
    {
        var parts = new List<string>();
        if (s.Declaration is not null)
        {
            var decl = new List<string>();
            string? type = null;
            foreach (var v in s.Declaration.Variables)
            {
                if (_f.Model.GetDeclaredSymbol(v) is not ILocalSymbol symbol) continue;
                var t = Subst(symbol.Type);
                if (Types.IsArrayView(t)) { Report(Krn.Unsupported, v, "ArrayView loop variable", "declare views before the loop"); continue; }
                type ??= CType(t, s.Declaration.Type);
                string name = Declare(symbol, symbol.Name);
                decl.Add(v.Initializer is null ? name : $"{name} = {Expr(v.Initializer.Value)}");
            }
            parts.Add(type is null ? "" : type + " " + string.Join(", ", decl));
        }
        else parts.Add(string.Join(", ", s.Initializers.Select(Expr)));
        parts.Add(s.Condition is null ? "" : Expr(s.Condition));
        parts.Add(string.Join(", ", s.Incrementors.Select(Expr)));
        Pragma();
        _f.W.Line(LineOf(s), $"for ({parts[0]}; {parts[1]}; {parts[2]})");
        Nested(s.Statement);
    }

    private void LocalVariable(LocalDeclarationStatementSyntax local, VariableDeclaratorSyntax v, bool isConst)
    {
        if (_f.Model.GetDeclaredSymbol(v) is not ILocalSymbol symbol) return;
        var type = Subst(symbol.Type);
        int line = LineOf(v);
        if (Types.IsArrayView(type))
        {
            if (v.Initializer is null) { Report(Krn.Unsupported, v, "uninitialized ArrayView", "initialize a view where it is declared"); return; }
            var element = Types.ElementType(type);
            if (SharedAllocation(v.Initializer.Value) is { } shared)
            {
                string name = Declare(symbol, symbol.Name);
                string ctype = CType(element, v);
                var length = _f.Model.GetConstantValue(shared.ArgumentList.Arguments.FirstOrDefault()?.Expression ?? shared);
                if (!_f.IsKernel) { Report(Krn.SharedMemory, shared, "may only be called in a [Kernel] body (OpenCL declares __local arrays at kernel scope)"); return; }
                if (!length.HasValue || length.Value is not int n || n <= 0) { Report(Krn.SharedMemory, shared, "needs a positive compile-time constant length (a literal or a const)"); return; }
                if (target == Target.Cuda) _f.W.Line(line, $"__shared__ __align__(16) {ctype} {name}[{n}];"); // 16: Float4 access
                else _f.Hoisted.Add($"__local {ctype} {name}[{n}];");
                _f.W.Line(line, $"const {Long} {name}_len = {n};");
                _f.Views[symbol] = new ViewInfo(name, name + "_len", target == Target.OpenCL ? "__local " : "", element);
                return;
            }
            if (DynamicAllocation(v.Initializer.Value) is { } dynamic)
            {
                if (!_f.IsKernel) { Report(Krn.SharedMemory, dynamic, "GetDynamic may only be called in a [Kernel] body"); return; }
                UsesDynamicSharedMemory = true;
                string name = Declare(symbol, symbol.Name);
                string ctype = CType(element, v);
                if (target == Target.Cuda)
                {
                    string decl = $"extern __shared__ __align__(16) unsigned char {DynamicShared}[];";
                    if (!_f.Hoisted.Contains(decl)) _f.Hoisted.Add(decl);
                }
                string space = target == Target.OpenCL ? "__local " : "";
                _f.W.Line(line, $"{space}{ctype}* {name} = ({space}{ctype}*){DynamicShared};");
                _f.W.Line(line, $"const {Long} {name}_len = {DynamicSharedBytes} / ({Long})sizeof({ctype});");
                _f.Views[symbol] = new ViewInfo(name, name + "_len", space, element);
                return;
            }
            var view = View(v.Initializer.Value);
            if (view is null) return;
            string cName = Declare(symbol, symbol.Name);
            _f.W.Line(line, $"{view.Space}{CType(element, v)}* {cName} = {view.Pointer};");
            _f.W.Line(line, $"{Long} {cName}_len = {view.Length};");
            _f.Views[symbol] = new ViewInfo(cName, cName + "_len", view.Space, element);
            return;
        }
        string c = CType(type, local.Declaration.Type);
        string n2 = Declare(symbol, symbol.Name);
        string init = v.Initializer is null ? "" : " = " + Expr(v.Initializer.Value);
        _f.W.Line(line, $"{(isConst ? "const " : "")}{c} {n2}{init};");
    }

    /// <summary>The SharedMemory.GetDynamic call, when <paramref name="e"/> is one.</summary>
    private InvocationExpressionSyntax? DynamicAllocation(ExpressionSyntax e)
        => e is InvocationExpressionSyntax inv && _f.Model.GetSymbolInfo(inv).Symbol is IMethodSymbol m
           && m.ContainingType.ToDisplayString() == "Engine.Runtime.Kernels.SharedMemory" && m.Name == "GetDynamic" ? inv : null;

    /// <summary>The SharedMemory.Allocate call, when <paramref name="e"/> is one.</summary>
    private InvocationExpressionSyntax? SharedAllocation(ExpressionSyntax e)
        => e is InvocationExpressionSyntax inv && _f.Model.GetSymbolInfo(inv).Symbol is IMethodSymbol m
           && m.ContainingType.ToDisplayString() == "Engine.Runtime.Kernels.SharedMemory" && m.Name == "Allocate" ? inv : null;
}
