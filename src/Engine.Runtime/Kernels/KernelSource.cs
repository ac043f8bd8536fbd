namespace Engine.Runtime.Kernels;

/// <summary>How a kernel parameter is passed to a device.</summary>
public enum KernelParameterKind
{
    /// <summary>A scalar or blittable struct, passed by value.</summary>
    Value,
    /// <summary>
    /// An <see cref="ArrayView{T}"/>. CUDA: two arguments, the device pointer and the length
    /// (<c>T* v, long long v_len</c>). OpenCL, which has no pointers: three, the buffer, the view's
    /// element offset into it and the length (<c>__global T* v_base, long v_offset, long v_len</c>;
    /// the kernel starts with <c>v = v_base + v_offset</c>); the launcher decodes (buffer, offset)
    /// from the view's fake address (see <see cref="Engine.Runtime.DeviceBuffer.Address"/>).
    /// </summary>
    View,
}

/// <summary>One parameter of a translated kernel, as the C entry point declares it.</summary>
/// <param name="Name">The C# parameter name.</param>
/// <param name="Kind">Value or view.</param>
/// <param name="ClrType">The C# type (the element type for a view).</param>
/// <param name="SizeInBytes">Bytes of the value (the element size for a view). CUDA receives a C# <c>bool</c> as one byte, OpenCL as a 4-byte int.</param>
public sealed record KernelParameter(string Name, KernelParameterKind Kind, Type ClrType, int SizeInBytes);

/// <summary>
/// A kernel translated by Engine.KernelCompiler: the C entry-point name and the complete,
/// self-contained CUDA C and OpenCL C sources (with <c>#line</c> directives naming the C# file).
/// </summary>
/// <param name="Name">The C# name (with type arguments for a generic instance, e.g. <c>Unary&lt;ExpOp&gt;</c>).</param>
/// <param name="EntryPoint">The C function name (mangled for generic instances).</param>
/// <param name="CudaSource">CUDA C for NVRTC (<c>extern "C" __global__</c>).</param>
/// <param name="OpenCLSource">OpenCL C (<c>__kernel</c>).</param>
/// <param name="Parameters">The C# parameters in order.</param>
public sealed record KernelSource(string Name, string EntryPoint, string CudaSource, string OpenCLSource, IReadOnlyList<KernelParameter> Parameters)
{
    /// <summary>
    /// OpenCL build options that keep C#'s float semantics: division and sqrt correctly rounded
    /// (OpenCL otherwise allows 2.5-3 ulp). NVRTC's defaults (prec-div, prec-sqrt) already do;
    /// do not add --use_fast_math. Both compilers may still contract a*b+c into an FMA.
    /// </summary>
    public const string OpenCLBuildOptions = "-cl-fp32-correctly-rounded-divide-sqrt";

    /// <summary>The declaring type's full name.</summary>
    public string DeclaringType { get; init; } = "";

    /// <summary>
    /// The kernel uses <see cref="SharedMemory.GetDynamic{T}"/>: after the parameters, the CUDA entry
    /// point takes the launch's dynamic shared bytes as an <c>int</c>; the OpenCL one takes a
    /// <c>__local</c> buffer of that size (clSetKernelArg(size, NULL)) and then the <c>int</c>.
    /// </summary>
    public bool UsesDynamicSharedMemory { get; init; }
}

/// <summary>
/// Launches translated kernels: every <see cref="Engine.Runtime.Accelerator"/> (emulator, OpenCL,
/// CUDA). Generated launchers call it with the kernel's <see cref="KernelSource"/> and the arguments
/// boxed in declaration order (<see cref="ArrayView{T}"/> values as they are; the launcher expands
/// them as <see cref="KernelParameterKind.View"/> says).
/// </summary>
public interface IKernelLauncher
{
    /// <summary>Runs <paramref name="kernel"/> on a grid of groups and waits or enqueues as the device does.</summary>
    void Launch(KernelSource kernel, Dim3 grid, Dim3 group, int dynamicSharedBytes, object[] arguments);
}

/// <summary>
/// Declares the instantiations of a generic kernel the compiler emits, one per attribute:
/// <c>[Kernel, KernelInstance(typeof(ExpOp))] static void Unary&lt;TOp&gt;(...)</c>.
/// </summary>
[AttributeUsage(AttributeTargets.Method, AllowMultiple = true, Inherited = false)]
public sealed class KernelInstanceAttribute(params Type[] typeArguments) : Attribute
{
    /// <summary>The type arguments, in the order of the method's type parameters.</summary>
    public Type[] TypeArguments { get; } = typeArguments;
}

/// <summary>Every kernel of the loaded assemblies; generated code registers its kernels at module load.</summary>
public static class KernelRegistry
{
    private static readonly List<KernelSource> Kernels = [];

    /// <summary>Adds kernels (called by generated module initializers).</summary>
    public static void Register(params KernelSource[] kernels)
    {
        lock (Kernels) Kernels.AddRange(kernels);
    }

    /// <summary>A snapshot of the registered kernels.</summary>
    public static IReadOnlyList<KernelSource> All
    {
        get { lock (Kernels) return Kernels.ToArray(); }
    }

    /// <summary>The kernels whose <see cref="KernelSource.Name"/> or entry point is <paramref name="name"/>.</summary>
    public static IReadOnlyList<KernelSource> Find(string name)
        => All.Where(k => k.Name == name || k.EntryPoint == name || $"{k.DeclaringType}.{k.Name}" == name).ToArray();
}
