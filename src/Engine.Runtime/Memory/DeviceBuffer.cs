using Engine.Runtime.Kernels;

namespace Engine.Runtime;

/// <summary>
/// A block of memory on one device. Disposing it returns the block to the allocator that made it;
/// the memory must not be used afterwards.
/// </summary>
public abstract class DeviceBuffer : IDisposable
{
    /// <summary>The device the memory lives on.</summary>
    public abstract Device Device { get; }

    /// <summary>Usable size in bytes (what was requested, not the rounded block size).</summary>
    public abstract long Length { get; }

    /// <summary>
    /// Where a kernel sees the memory: a host pointer (CPU, emulator), the CUdeviceptr (CUDA), or
    /// for OpenCL, which has no pointers, a fake address in a reserved range that the OpenCL
    /// launcher decodes back to (cl_mem, byte offset). Only kernels may dereference it.
    /// </summary>
    public abstract ulong Address { get; }

    /// <summary>
    /// The whole buffer as a view of <typeparamref name="T"/> (<see cref="Length"/> / sizeof(T)
    /// elements) at <see cref="Address"/>, to pass to a kernel launch; <see cref="ArrayView{T}.SubView"/>
    /// of it works on every backend. On a device the view must not be indexed from host code.
    /// </summary>
    public unsafe ArrayView<T> View<T>() where T : unmanaged
    {
        ObjectDisposedException.ThrowIf(IsDisposed, this);
        return new ArrayView<T>((T*)Address, Length / sizeof(T));
    }

    /// <summary>True once <see cref="Dispose()"/> has run.</summary>
    public bool IsDisposed { get; private set; }

    /// <summary>Releases the memory (to the allocator's cache or to the system).</summary>
    public void Dispose()
    {
        if (IsDisposed) return;
        IsDisposed = true;
        Release(disposing: true);
        GC.SuppressFinalize(this);
    }

    /// <summary>Frees or recycles the memory. Called once.</summary>
    /// <param name="disposing">False when called from a finalizer.</param>
    protected abstract void Release(bool disposing);
}
