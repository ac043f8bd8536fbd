using Engine.Runtime;

namespace Engine.Tensors;

/// <summary>
/// The memory behind one or more tensors. Views share a storage; each tensor holds one reference,
/// and the buffer is released when the last tensor using it is disposed (or collected).
/// </summary>
internal sealed class Storage
{
    private int _refs;

    public Storage(DeviceBuffer buffer) => Buffer = buffer;

    public DeviceBuffer Buffer { get; }

    public Device Device => Buffer.Device;

    /// <summary>Allocates host memory for <paramref name="count"/> elements of <paramref name="dtype"/>.</summary>
    public static Storage AllocateCpu(DType dtype, long count, bool zero)
        => new(CpuAllocator.Shared.Allocate(count * dtype.ElementSize(), zero));

    public void AddRef() => Interlocked.Increment(ref _refs);

    public void Release()
    {
        if (Interlocked.Decrement(ref _refs) == 0) Buffer.Dispose();
    }
}
