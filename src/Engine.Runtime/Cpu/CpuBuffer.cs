using System.Runtime.InteropServices;

namespace Engine.Runtime;

/// <summary>
/// Host memory from <see cref="CpuAllocator"/>: 64-byte aligned (one AVX-512 vector, one cache
/// line), so vector loads never split a line. A buffer that is never disposed is returned by its
/// finalizer; disposing is the deterministic path.
/// </summary>
public sealed unsafe class CpuBuffer : DeviceBuffer
{
    private readonly CpuAllocator _owner;
    private readonly long _length;

    internal CpuBuffer(CpuAllocator owner, void* pointer, long length, long blockBytes)
    {
        _owner = owner;
        Pointer = pointer;
        _length = length;
        BlockBytes = blockBytes;
    }

    /// <summary>Finalizer: returns memory that was never disposed.</summary>
    ~CpuBuffer() => Release(disposing: false);

    /// <inheritdoc />
    public override Device Device => Device.Cpu;

    /// <inheritdoc />
    public override long Length => _length;

    /// <summary>Size of the underlying block (the allocator's size class).</summary>
    public long BlockBytes { get; }

    /// <inheritdoc />
    public override ulong Address => (ulong)Pointer;

    /// <summary>Start of the memory.</summary>
    public void* Pointer { get; private set; }

    /// <summary>The memory as a span of <typeparamref name="T"/> (at most <see cref="int.MaxValue"/> elements).</summary>
    public Span<T> AsSpan<T>(long elementOffset, int count) where T : unmanaged
    {
        ObjectDisposedException.ThrowIf(IsDisposed, this);
        if (elementOffset < 0 || count < 0 || (elementOffset + count) * sizeof(T) > _length)
            throw new ArgumentOutOfRangeException(nameof(count),
                $"CpuBuffer.AsSpan: [{elementOffset}, {elementOffset + count}) of {typeof(T).Name} is outside a buffer of {_length} bytes.");
        return new Span<T>((T*)Pointer + elementOffset, count);
    }

    /// <inheritdoc />
    protected override void Release(bool disposing)
    {
        var p = Pointer;
        Pointer = null;
        if (p != null) _owner.Return(p, BlockBytes);
    }
}

/// <summary>
/// The host allocator: 64-byte aligned blocks in size classes, with freed blocks cached for reuse
/// (a fresh 256 MB block costs page faults on first touch; a reused one does not). The caching
/// logic is <see cref="CachingAllocator"/>'s, shared with the device allocators. Thread-safe.
/// </summary>
public sealed unsafe class CpuAllocator : CachingAllocator
{
    /// <summary>The process-wide host allocator.</summary>
    public static CpuAllocator Shared { get; } = new();

    /// <inheritdoc />
    protected override string Name => "CpuAllocator";

    /// <summary>Allocates <paramref name="bytes"/> bytes, zero-filled when <paramref name="zero"/>.</summary>
    /// <exception cref="OutOfMemoryException">The host is out of memory even after the cache was emptied.</exception>
    public CpuBuffer Allocate(long bytes, bool zero = false)
    {
        void* p = (void*)Rent(bytes, out long block);
        if (zero) NativeMemory.Clear(p, (nuint)bytes);
        return new CpuBuffer(this, p, bytes, block);
    }

    internal void Return(void* p, long block) => Return((ulong)p, block);

    /// <inheritdoc />
    protected override ulong AllocateBlock(long bytes)
    {
        try { return (ulong)NativeMemory.AlignedAlloc((nuint)bytes, MinBlockBytes); }
        catch (OutOfMemoryException) { return 0; }
    }

    /// <inheritdoc />
    protected override void FreeBlock(ulong handle, long bytes) => NativeMemory.AlignedFree((void*)handle);
}
