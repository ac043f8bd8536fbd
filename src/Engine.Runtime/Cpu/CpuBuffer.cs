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
/// (a fresh 256 MB block costs page faults on first touch; a reused one does not). Thread-safe.
/// </summary>
public sealed unsafe class CpuAllocator
{
    private const int Alignment = 64;
    private readonly Dictionary<long, Stack<nint>> _free = new();
    private readonly Lock _lock = new();
    private long _current, _peak, _cached;

    /// <summary>The process-wide host allocator.</summary>
    public static CpuAllocator Shared { get; } = new();

    /// <summary>Most bytes kept in the cache; blocks freed beyond this go back to the system.</summary>
    public long CacheLimitBytes { get; set; } = 4L << 30;

    /// <summary>Bytes in live buffers (by size class).</summary>
    public long CurrentBytes { get { lock (_lock) return _current; } }

    /// <summary>Highest <see cref="CurrentBytes"/> since the last <see cref="ResetPeak"/>.</summary>
    public long PeakBytes { get { lock (_lock) return _peak; } }

    /// <summary>Bytes held in the cache of freed blocks.</summary>
    public long CachedBytes { get { lock (_lock) return _cached; } }

    /// <summary>Sets <see cref="PeakBytes"/> to <see cref="CurrentBytes"/>.</summary>
    public void ResetPeak() { lock (_lock) _peak = _current; }

    /// <summary>Returns every cached block to the system.</summary>
    public void EmptyCache()
    {
        lock (_lock)
        {
            foreach (var stack in _free.Values)
                while (stack.TryPop(out var p)) NativeMemory.AlignedFree((void*)p);
            _cached = 0;
        }
    }

    /// <summary>Allocates <paramref name="bytes"/> bytes, zero-filled when <paramref name="zero"/>.</summary>
    public CpuBuffer Allocate(long bytes, bool zero = false)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(bytes);
        long block = SizeClass(bytes);
        void* p = null;
        lock (_lock)
        {
            if (_free.TryGetValue(block, out var stack) && stack.TryPop(out var cachedPtr))
            {
                p = (void*)cachedPtr;
                _cached -= block;
            }
            _current += block;
            _peak = Math.Max(_peak, _current);
        }
        if (p == null)
        {
            try { p = NativeMemory.AlignedAlloc((nuint)block, Alignment); }
            catch (OutOfMemoryException)
            {
                EmptyCache();
                try { p = NativeMemory.AlignedAlloc((nuint)block, Alignment); }
                catch (OutOfMemoryException)
                {
                    lock (_lock) _current -= block;
                    throw new OutOfMemoryException($"CpuAllocator: cannot allocate {bytes} bytes (block {block}); {CurrentBytes} bytes are live.");
                }
            }
        }
        if (zero) NativeMemory.Clear(p, (nuint)bytes);
        return new CpuBuffer(this, p, bytes, block);
    }

    internal void Return(void* p, long block)
    {
        lock (_lock)
        {
            _current -= block;
            if (_cached + block <= CacheLimitBytes)
            {
                if (!_free.TryGetValue(block, out var stack)) _free[block] = stack = new Stack<nint>();
                stack.Push((nint)p);
                _cached += block;
                return;
            }
        }
        NativeMemory.AlignedFree(p);
    }

    /// <summary>
    /// Size classes: powers of two up to 1 MiB, then multiples of 1 MiB (so a cached block wastes
    /// at most half of a small request and at most 1 MiB of a large one).
    /// </summary>
    internal static long SizeClass(long bytes)
    {
        const long MiB = 1 << 20;
        if (bytes <= Alignment) return Alignment;
        if (bytes <= MiB) return (long)System.Numerics.BitOperations.RoundUpToPowerOf2((ulong)bytes);
        return (bytes + MiB - 1) / MiB * MiB;
    }
}
