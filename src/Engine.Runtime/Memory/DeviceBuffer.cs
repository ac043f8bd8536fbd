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
