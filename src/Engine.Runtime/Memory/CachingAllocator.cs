namespace Engine.Runtime;

/// <summary>
/// The caching allocator every device shares (host memory, OpenCL cl_mem, CUDA device memory):
/// requests are rounded up to a size class (<see cref="SizeClass"/>) and freed blocks are kept in
/// a per-class cache for reuse, so a training loop that frees and reallocates the same shapes
/// stops calling the driver (device allocation is slow and often synchronizing). A backend
/// supplies only the raw block allocation and release. Thread-safe.
/// </summary>
/// <remarks>
/// A block is an opaque 64-bit handle: a host pointer, a CUdeviceptr or a cl_mem. Sizes are
/// counted by size class: <see cref="CurrentBytes"/> is the sum of the blocks behind live buffers.
/// </remarks>
public abstract class CachingAllocator
{
    private readonly Dictionary<long, Stack<ulong>> _free = new();
    private readonly Lock _lock = new();
    private long _current, _peak, _cached;
    private bool _closed;

    /// <summary>Smallest block (and the host alignment): one cache line, one AVX-512 vector.</summary>
    public const int MinBlockBytes = 64;

    /// <summary>What the allocator serves, for error messages (e.g. "CpuAllocator", "opencl:0").</summary>
    protected abstract string Name { get; }

    /// <summary>Most bytes kept in the cache; blocks freed beyond this go back to the system.</summary>
    public long CacheLimitBytes { get; set; } = 4L << 30;

    /// <summary>Bytes in live buffers (by size class).</summary>
    public long CurrentBytes { get { lock (_lock) return _current; } }

    /// <summary>Highest <see cref="CurrentBytes"/> since creation or the last <see cref="ResetPeak"/>.</summary>
    public long PeakBytes { get { lock (_lock) return _peak; } }

    /// <summary>Bytes held in the cache of freed blocks.</summary>
    public long CachedBytes { get { lock (_lock) return _cached; } }

    /// <summary>Sets <see cref="PeakBytes"/> to <see cref="CurrentBytes"/>.</summary>
    public void ResetPeak() { lock (_lock) _peak = _current; }

    /// <summary>Returns every cached block to the system.</summary>
    public void EmptyCache()
    {
        List<(ulong Handle, long Block)> release = [];
        lock (_lock)
        {
            foreach (var (block, stack) in _free)
                while (stack.TryPop(out var handle)) release.Add((handle, block));
            _cached = 0;
        }
        foreach (var (handle, block) in release) FreeBlock(handle, block);
    }

    /// <summary>
    /// Empties the cache and stops caching: blocks returned afterwards are freed at once (used when
    /// the owning accelerator is disposed while buffers are still alive).
    /// </summary>
    protected void Close()
    {
        lock (_lock) _closed = true;
        EmptyCache();
    }

    /// <summary>
    /// A block of at least <paramref name="bytes"/> bytes: a cached one of the same size class, or a
    /// new one. When the backend is out of memory the cache is emptied and the allocation retried once.
    /// </summary>
    /// <param name="bytes">The requested size.</param>
    /// <param name="block">The block's size (its size class); pass it back to <see cref="Return"/>.</param>
    /// <exception cref="OutOfMemoryException">The backend could not allocate even after emptying the cache.</exception>
    protected internal ulong Rent(long bytes, out long block)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(bytes);
        block = SizeClass(bytes);
        ulong handle = 0;
        lock (_lock)
        {
            if (_free.TryGetValue(block, out var stack) && stack.TryPop(out var cached))
            {
                handle = cached;
                _cached -= block;
            }
            _current += block;
            _peak = Math.Max(_peak, _current);
        }
        if (handle != 0) return handle;
        try
        {
            handle = AllocateBlock(block);
            if (handle == 0)
            {
                EmptyCache();
                handle = AllocateBlock(block);
            }
        }
        catch
        {
            lock (_lock) _current -= block;
            throw;
        }
        if (handle != 0) return handle;
        lock (_lock) _current -= block;
        throw new OutOfMemoryException($"{Name}: cannot allocate {bytes} bytes (block {block}); {CurrentBytes} bytes are live, the cache was emptied.");
    }

    /// <summary>Gives a block back: cached for reuse (up to <see cref="CacheLimitBytes"/>) or freed.</summary>
    protected internal void Return(ulong handle, long block)
    {
        lock (_lock)
        {
            _current -= block;
            if (!_closed && _cached + block <= CacheLimitBytes)
            {
                if (!_free.TryGetValue(block, out var stack)) _free[block] = stack = new Stack<ulong>();
                stack.Push(handle);
                _cached += block;
                return;
            }
        }
        FreeBlock(handle, block);
    }

    /// <summary>Allocates a raw block of exactly <paramref name="bytes"/> bytes; 0 when the backend is out of memory (other failures throw).</summary>
    protected abstract ulong AllocateBlock(long bytes);

    /// <summary>Releases a raw block made by <see cref="AllocateBlock"/>.</summary>
    protected abstract void FreeBlock(ulong handle, long bytes);

    /// <summary>
    /// Size classes: 64 bytes minimum, powers of two up to 1 MiB, then multiples of 1 MiB (so a
    /// cached block wastes at most half of a small request and at most 1 MiB of a large one).
    /// </summary>
    public static long SizeClass(long bytes)
    {
        const long MiB = 1 << 20;
        if (bytes <= MinBlockBytes) return MinBlockBytes;
        if (bytes <= MiB) return (long)System.Numerics.BitOperations.RoundUpToPowerOf2((ulong)bytes);
        return (bytes + MiB - 1) / MiB * MiB;
    }
}
