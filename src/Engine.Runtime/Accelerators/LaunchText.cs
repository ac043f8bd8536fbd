using Engine.Runtime.Kernels;

namespace Engine.Runtime;

/// <summary>Short text for launch shapes in error messages: "(256, 1, 1)".</summary>
internal static class LaunchText
{
    /// <summary>"(x, y, z)".</summary>
    public static string Of(Dim3 d) => $"({d.X}, {d.Y}, {d.Z})";
}
