using System.Text;

namespace Engine.KernelCompiler;

/// <summary>
/// Accumulates C code and keeps it mapped to C# lines: before a statement from C# line N it writes
/// <c>#line N "File.cs"</c> unless the output is already at that line, so NVRTC and OpenCL
/// compiler errors point at the C# source.
/// </summary>
internal sealed class CodeWriter(string file)
{
    private readonly StringBuilder _text = new();
    private int? _mapped;

    public int Indent { get; set; } = 1;

    /// <summary>A line that belongs to no particular C# line.</summary>
    public void Line(string text)
    {
        _text.Append(' ', Indent * 4).Append(text).Append('\n');
        if (_mapped is not null) _mapped++;
    }

    /// <summary>A line generated from C# line <paramref name="csLine"/> (1-based).</summary>
    public void Line(int csLine, string text)
    {
        if (_mapped != csLine) _text.Append("#line ").Append(csLine).Append(" \"").Append(Escape(file)).Append("\"\n");
        _mapped = csLine;
        Line(text);
    }

    public static string Escape(string path) => path.Replace("\\", "\\\\").Replace("\"", "\\\"");

    public override string ToString() => _text.ToString();
}
