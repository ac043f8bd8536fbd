using System.Reflection;
using System.Runtime.CompilerServices;

namespace Engine.Runtime.Kernels;

/// <summary>
/// The C# body of each translated kernel, for the emulator's <see cref="IKernelLauncher"/> path:
/// generated <c>Launch</c> classes bind a delegate that unboxes the arguments and calls the
/// kernel method (which may be private to its declaring type).
/// </summary>
public static class KernelEmulation
{
    private static readonly ConditionalWeakTable<KernelSource, Action<object[]>> Table = new();

    /// <summary>Binds <paramref name="run"/> (called with the launch's boxed arguments) to <paramref name="kernel"/> (generated code).</summary>
    public static void Bind(KernelSource kernel, Action<object[]> run)
    {
        ArgumentNullException.ThrowIfNull(kernel);
        ArgumentNullException.ThrowIfNull(run);
        Table.AddOrUpdate(kernel, run);
    }

    /// <summary>The bound C# body of <paramref name="kernel"/>, running its declaring type's generated <c>Launch</c> class constructor first if needed.</summary>
    /// <exception cref="InvalidOperationException">No body is bound (the declaring type is not partial, so it has no Launch class).</exception>
    public static Action<object[]> Find(KernelSource kernel)
    {
        ArgumentNullException.ThrowIfNull(kernel);
        if (Table.TryGetValue(kernel, out var run)) return run;
        if (LaunchClass(kernel.DeclaringType) is { } launch) RuntimeHelpers.RunClassConstructor(launch.TypeHandle);
        if (Table.TryGetValue(kernel, out run)) return run;
        throw new InvalidOperationException(
            $"Emulator launch of {kernel.Name}: no C# body is bound; its declaring type {kernel.DeclaringType} must be partial so the kernel compiler generates its Launch class (KRN100).");
    }

    private static Type? LaunchClass(string declaringType)
    {
        if (declaringType.Length == 0) return null;
        // Nested types are "Outer.Inner" in KernelSource and "Outer+Inner" to reflection: try each split.
        var candidates = new List<string> { declaringType };
        var chars = declaringType.ToCharArray();
        for (int i = chars.Length - 1; i >= 0; i--)
            if (chars[i] == '.')
            {
                chars[i] = '+';
                candidates.Add(new string(chars));
            }
        foreach (var assembly in AppDomain.CurrentDomain.GetAssemblies())
            foreach (var name in candidates)
                if (assembly.GetType(name, throwOnError: false) is { } type)
                    return type.GetNestedType("Launch", BindingFlags.Public | BindingFlags.NonPublic);
        return null;
    }
}
