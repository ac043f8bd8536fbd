using Engine.Runtime.Kernels;

namespace Engine.Runtime;

/// <summary>
/// What every accelerator (emulator, OpenCL, CUDA) offers through one API: memory from a caching
/// allocator, host copies, synchronization, and launching a translated kernel by its
/// <see cref="KernelSource"/> (so the generated <c>X.Launch.Kernel(accelerator, grid, group, ...)</c>
/// runs on any of them). Each backend keeps its own specific API besides.
/// </summary>
/// <example>
/// <code>
/// using Accelerator acc = new OpenCLAccelerator();        // or new EmulatorAccelerator(), new CudaAccelerator()
/// using var a = acc.Allocate&lt;float&gt;(hostA);
/// using var y = acc.Allocate(n * sizeof(float));
/// MyKernels.Launch.Scale(acc, grid, group, a.View&lt;float&gt;(), y.View&lt;float&gt;(), 2f);
/// acc.CopyToHost&lt;float&gt;(y, result);
/// </code>
/// </example>
public abstract class Accelerator : IKernelLauncher, IDisposable
{
    /// <summary>The engine device (<c>emulator</c>, <c>opencl:N</c>, <c>cuda:N</c>).</summary>
    public abstract Device Device { get; }

    /// <summary>The caching allocator behind <see cref="Allocate(long, bool)"/> (current, peak and cached bytes; EmptyCache).</summary>
    public abstract CachingAllocator Allocator { get; }

    /// <summary>
    /// Allocates <paramref name="bytes"/> bytes of device memory through <see cref="Allocator"/>
    /// (a freed block of the same size class is reused), zero-filled when <paramref name="zero"/>.
    /// </summary>
    public abstract DeviceBuffer Allocate(long bytes, bool zero = false);

    /// <summary>Allocates a buffer holding a copy of <paramref name="data"/>.</summary>
    public virtual unsafe DeviceBuffer Allocate<T>(ReadOnlySpan<T> data) where T : unmanaged
    {
        var buffer = Allocate((long)data.Length * sizeof(T));
        try
        {
            CopyFromHost(buffer, data);
        }
        catch
        {
            buffer.Dispose();
            throw;
        }
        return buffer;
    }

    /// <summary>Copies <paramref name="source"/> into <paramref name="destination"/> at byte <paramref name="offsetBytes"/> (blocking).</summary>
    public abstract void CopyFromHost<T>(DeviceBuffer destination, ReadOnlySpan<T> source, long offsetBytes = 0) where T : unmanaged;

    /// <summary>Copies from <paramref name="source"/> at byte <paramref name="offsetBytes"/> into <paramref name="destination"/> (blocking; waits for queued kernels).</summary>
    public abstract void CopyToHost<T>(DeviceBuffer source, Span<T> destination, long offsetBytes = 0) where T : unmanaged;

    /// <summary>Reads the whole buffer as an array of <typeparamref name="T"/>.</summary>
    public unsafe T[] ToArray<T>(DeviceBuffer source) where T : unmanaged
    {
        ArgumentNullException.ThrowIfNull(source);
        var result = new T[source.Length / sizeof(T)];
        CopyToHost<T>(source, result);
        return result;
    }

    /// <summary>Waits until every queued command (copies, launches) has finished.</summary>
    public abstract void Synchronize();

    /// <summary>
    /// Runs the translated kernel <paramref name="kernel"/> over <paramref name="grid"/> groups of
    /// <paramref name="group"/> threads, with <paramref name="dynamicSharedBytes"/> of dynamic shared
    /// memory. <paramref name="arguments"/> are the kernel's parameters in order: an
    /// <see cref="ArrayView{T}"/> of this accelerator's memory for a view, a value of exactly the
    /// parameter's type otherwise. A mismatch throws <see cref="ArgumentException"/> naming the
    /// kernel, the argument index and what was expected. Device launches are queued in order.
    /// </summary>
    public abstract void Launch(KernelSource kernel, Dim3 grid, Dim3 group, int dynamicSharedBytes, object[] arguments);

    /// <summary>Waits for queued work and releases the device's resources (cached memory included).</summary>
    public abstract void Dispose();

    /// <inheritdoc />
    public override string ToString() => Device.ToString();
}
