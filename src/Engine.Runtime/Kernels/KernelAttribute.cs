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
