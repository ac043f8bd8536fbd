using System.Globalization;

namespace Engine.Distillation.Methods;

/// <summary>Small helpers of the methods (shape formatting for error messages).</summary>
internal static class Util
{
    /// <summary>"[2, 3, 4]".</summary>
    public static string Format(ReadOnlySpan<long> shape)
    {
        var parts = new string[shape.Length];
        for (int i = 0; i < shape.Length; i++) parts[i] = shape[i].ToString(CultureInfo.InvariantCulture);
        return "[" + string.Join(", ", parts) + "]";
    }
}
