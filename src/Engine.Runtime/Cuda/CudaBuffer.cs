using Engine.Runtime.Native.Cuda;

namespace Engine.Runtime;

/// <summary>A block of CUDA device memory from the accelerator's caching allocator. Dispose returns it to the cache.</summary>
public sealed class CudaBuffer : DeviceBuffer
{
    private readonly long _length;
    private readonly long _block;

    internal CudaBuffer(CudaAccelerator owner, ulong pointer, long length, long block)
    {
        Owner = owner;
        DevicePointer = pointer;
        _length = length;
        _block = block;
    }

    /// <summary>The accelerator whose context owns the memory.</summary>
    public CudaAccelerator Owner { get; }

    /// <summary>The CUdeviceptr.</summary>
    public ulong DevicePointer { get; private set; }

    /// <summary>Size of the underlying block (the allocator's size class).</summary>
    public long BlockBytes => _block;

    /// <inheritdoc />
    public override Device Device => Owner.Device;

    /// <inheritdoc />
    public override long Length => _length;

    /// <summary>The real device pointer: views of a CUDA buffer hold CUdeviceptr values.</summary>
    public override ulong Address => DevicePointer;

    /// <inheritdoc />
    protected override void Release(bool disposing)
    {
        if (DevicePointer != 0) Owner.Memory.Return(DevicePointer, _block);
        DevicePointer = 0;
    }
}

/// <summary>CUDA device memory through <see cref="CachingAllocator"/>: blocks are cuMemAlloc pointers in the accelerator's primary context.</summary>
internal sealed unsafe class CudaAllocator(CudaAccelerator owner) : CachingAllocator
{
    private const int ErrorOutOfMemory = 2; // CUDA_ERROR_OUT_OF_MEMORY

    protected override string Name => $"CUDA allocator ({owner.Device})";

    protected override ulong AllocateBlock(long bytes)
    {
        owner.MakeCurrent();
        ulong pointer = 0;
        int code = CuApi.MemAlloc(&pointer, (nuint)bytes);
        if (code == ErrorOutOfMemory) return 0;
        CuApi.Check(code, $"cuMemAlloc({bytes} bytes)");
        return pointer;
    }

    protected override void FreeBlock(ulong handle, long bytes)
    {
        if (owner.IsDisposed) return; // the context is gone, and its memory with it
        owner.MakeCurrent();
        CuApi.MemFree(handle); // a failure here has nothing left to report to
    }

    /// <summary>Frees the cache and frees later returns at once (the accelerator is going away).</summary>
    public void Shutdown() => Close();
}
