namespace Engine.Runtime.Kernels;

/// <summary>
/// Marks a static method as a kernel entry point. The kernel compiler translates it (and the
/// <see cref="KernelFunctionAttribute"/> methods it calls) to CUDA C and OpenCL C; the emulator runs
/// the C# method itself, once per GPU thread. The method may use only the kernel language of
/// DESIGN.md: primitives, blittable structs, <see cref="ArrayView{T}"/>, locals, control flow,
/// <see cref="XMath"/>, <see cref="Grid"/>/<see cref="Group"/>/<see cref="Warp"/>, shared memory,
/// barriers and atomics.
/// </summary>
[AttributeUsage(AttributeTargets.Method, Inherited = false)]
public sealed class KernelAttribute : Attribute;

/// <summary>Marks a static method as callable from kernels (a device function).</summary>
[AttributeUsage(AttributeTargets.Method, Inherited = false)]
public sealed class KernelFunctionAttribute : Attribute;

/// <summary>
/// On a <see cref="KernelAttribute"/> method: CUDA <c>__launch_bounds__(maxThreadsPerGroup,
/// minGroupsPerMultiprocessor)</c>. NVRTC then limits the kernel's registers so that
/// <paramref name="minGroupsPerMultiprocessor"/> groups of <paramref name="maxThreadsPerGroup"/> threads fit
/// one SM (e.g. 256 and 2: at most 128 registers per thread), and a launch with a larger group fails
/// on CUDA. The plan must never launch more threads per group. OpenCL and the emulator ignore it.
/// </summary>
/// <param name="maxThreadsPerGroup">The most threads per group the kernel is launched with.</param>
/// <param name="minGroupsPerMultiprocessor">Groups that must fit one SM at once (register budget).</param>
[AttributeUsage(AttributeTargets.Method, Inherited = false)]
public sealed class LaunchBoundsAttribute(int maxThreadsPerGroup, int minGroupsPerMultiprocessor = 1) : Attribute
{
    /// <summary>The most threads per group.</summary>
    public int MaxThreadsPerGroup { get; } = maxThreadsPerGroup;

    /// <summary>Groups that must fit one SM at once.</summary>
    public int MinGroupsPerMultiprocessor { get; } = minGroupsPerMultiprocessor;
}
