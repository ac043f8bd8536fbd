using System.Runtime.CompilerServices;
using Engine.Runtime.Kernels;

namespace Engine.Runtime;

/// <summary>
/// Checks the boxed arguments of a <see cref="IKernelLauncher.Launch"/> call against the kernel's
/// <see cref="KernelSource.Parameters"/> and reads their bytes, for every backend.
/// </summary>
internal static class KernelArguments
{
    /// <summary>Throws <see cref="ArgumentException"/> naming the kernel, the argument and what was expected, unless the arguments match.</summary>
    public static void Check(KernelSource kernel, Dim3 grid, Dim3 group, int dynamicSharedBytes, object[] arguments)
    {
        ArgumentNullException.ThrowIfNull(kernel);
        ArgumentNullException.ThrowIfNull(arguments);
        if (grid.X < 1 || grid.Y < 1 || grid.Z < 1 || group.X < 1 || group.Y < 1 || group.Z < 1)
            throw new ArgumentException($"Launch {kernel.Name}: grid {LaunchText.Of(grid)} and group {LaunchText.Of(group)} must be positive in every dim.");
        if (dynamicSharedBytes < 0)
            throw new ArgumentOutOfRangeException(nameof(dynamicSharedBytes), $"Launch {kernel.Name}: dynamic shared memory of {dynamicSharedBytes} bytes; expected >= 0.");
        var ps = kernel.Parameters;
        if (arguments.Length != ps.Count)
            throw new ArgumentException($"Launch {kernel.Name}: {arguments.Length} argument(s) given; the kernel takes {ps.Count}: ({Signature(kernel)}).");
        for (int i = 0; i < ps.Count; i++)
        {
            var p = ps[i];
            object? a = arguments[i];
            if (p.Kind == KernelParameterKind.View)
            {
                if (a is not IArrayView view || view.ElementType != p.ClrType)
                    throw new ArgumentException($"Launch {kernel.Name}: argument {i} ({p.Name}) must be an ArrayView<{p.ClrType.Name}>; got {Describe(a)}.");
            }
            else if (a is null || a.GetType() != p.ClrType)
                throw new ArgumentException($"Launch {kernel.Name}: argument {i} ({p.Name}) must be a {p.ClrType.Name} value; got {Describe(a)}.");
        }
    }

    /// <summary>"ArrayView&lt;Single&gt; x, Int32 n".</summary>
    public static string Signature(KernelSource kernel)
        => string.Join(", ", kernel.Parameters.Select(p => p.Kind == KernelParameterKind.View ? $"ArrayView<{p.ClrType.Name}> {p.Name}" : $"{p.ClrType.Name} {p.Name}"));

    private static string Describe(object? a) => a switch
    {
        null => "null",
        IArrayView v => $"an ArrayView<{v.ElementType.Name}>",
        _ => $"a {a.GetType().Name} ({a})",
    };

    /// <summary>The bytes of a boxed unmanaged value (its C# layout), as a kernel receives it by value.</summary>
    public static unsafe byte[] Bytes(object boxed, int size)
    {
        // A boxed value's fields start right after the object header, as StrongBox<byte>.Value does.
        ref byte data = ref Unsafe.As<StrongBox<byte>>(boxed).Value!;
        var bytes = new byte[size];
        Unsafe.CopyBlockUnaligned(ref bytes[0], ref data, (uint)size);
        return bytes;
    }
}
