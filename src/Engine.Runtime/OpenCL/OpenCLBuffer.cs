using Engine.Runtime.Native.OpenCL;

namespace Engine.Runtime;

/// <summary>
/// A block of memory on an OpenCL device (a cl_mem from the accelerator's caching allocator).
/// Dispose returns the block to the cache. OpenCL has no device pointers, so the buffer is given a
/// unique fake address range (<see cref="Address"/>): views made from it carry (buffer, offset)
/// through <see cref="Kernels.ArrayView{T}.SubView"/> arithmetic, and the OpenCL launcher decodes them.
/// </summary>
public sealed class OpenCLBuffer : DeviceBuffer
{
    /// <summary>Bit 62 set: the reserved range of fake OpenCL addresses (never a host or CUDA pointer in practice).</summary>
    internal const ulong AddressBase = 1UL << 62;

    /// <summary>Bits of byte offset inside one buffer's range (1 TiB).</summary>
    internal const int OffsetBits = 40;

    /// <summary>Number of distinct buffer ids (22 bits between the offset and the range marker).</summary>
    internal const uint IdCount = 1u << 22;

    private readonly long _length;
    private readonly long _block;

    internal OpenCLBuffer(OpenCLAccelerator owner, nint handle, long length, long block, uint id)
    {
        Owner = owner;
        Handle = handle;
        _length = length;
        _block = block;
        Id = id;
    }

    /// <summary>The accelerator whose context owns the memory.</summary>
    public OpenCLAccelerator Owner { get; }

    /// <summary>The cl_mem handle.</summary>
    internal nint Handle { get; private set; }

    /// <summary>The buffer's id in the fake address space (unique among live buffers of the process).</summary>
    internal uint Id { get; }

    /// <summary>Size of the underlying block (the allocator's size class).</summary>
    public long BlockBytes => _block;

    /// <inheritdoc />
    public override Device Device => Owner.Device;

    /// <inheritdoc />
    public override long Length => _length;

    /// <summary>The fake address of byte 0: <c>2^62 | id &lt;&lt; 40</c>; see <see cref="DeviceBuffer.Address"/>.</summary>
    public override ulong Address => AddressBase | ((ulong)Id << OffsetBits);

    /// <inheritdoc />
    protected override void Release(bool disposing)
    {
        if (Handle == 0) return;
        Owner.Forget(this);
        Owner.Memory.Return((ulong)Handle, _block);
        Handle = 0;
    }
}

/// <summary>OpenCL device memory through <see cref="CachingAllocator"/>: blocks are cl_mem objects of the accelerator's context.</summary>
internal sealed unsafe class OpenCLAllocator(OpenCLAccelerator owner) : CachingAllocator
{
    protected override string Name => $"OpenCL allocator ({owner.Device})";

    protected override ulong AllocateBlock(long bytes)
    {
        int code;
        nint mem = ClApi.CreateBuffer(owner.Context, ClErrors.MemReadWrite, (nuint)bytes, null, &code);
        // CL_MEM_OBJECT_ALLOCATION_FAILURE, CL_OUT_OF_RESOURCES, CL_OUT_OF_HOST_MEMORY: out of memory, retried after emptying the cache.
        if (code is -4 or -5 or -6) return 0;
        ClApi.Check(code, $"clCreateBuffer({bytes} bytes)");
        return (ulong)mem;
    }

    // A cl_mem holds a reference on its context, so releasing it after the accelerator is fine.
    protected override void FreeBlock(ulong handle, long bytes) => ClApi.ReleaseMemObject((nint)handle);

    /// <summary>Frees the cache and frees later returns at once (the accelerator is going away).</summary>
    public void Shutdown() => Close();
}
