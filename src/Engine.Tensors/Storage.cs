using Engine.Runtime;

namespace Engine.Tensors;

/// <summary>
/// The memory behind one or more tensors. Views share a storage; each tensor holds one reference,
/// and the buffer is released when the last tensor using it is disposed (or collected).
/// </summary>
internal sealed class Storage
{
    private int _refs;

    /// <param name="buffer">The memory.</param>
    /// <param name="device">The device the tensors are on; defaults to the buffer's. It differs for the
    /// emulator, whose memory is host memory (a CpuBuffer) but whose tensors compute through kernels.</param>
    public Storage(DeviceBuffer buffer, Device? device = null)
    {
        Buffer = buffer;
        Device = device ?? buffer.Device;
    }

    public DeviceBuffer Buffer { get; }

    public Device Device { get; }

    /// <summary>Allocates host memory for <paramref name="count"/> elements of <paramref name="dtype"/>.</summary>
    public static Storage AllocateCpu(DType dtype, long count, bool zero)
        => new(CpuAllocator.Shared.Allocate(count * dtype.ElementSize(), zero));

    /// <summary>Allocates memory for <paramref name="count"/> elements on <paramref name="device"/> (through its accelerator unless it is the CPU).</summary>
    public static Storage Allocate(Device device, DType dtype, long count, bool zero)
    {
        if (device.Type == DeviceType.Cpu) return AllocateCpu(dtype, count, zero);
        var accelerator = DeviceRegistry.Get(device);
        return new(accelerator.Allocate(count * dtype.ElementSize(), zero), device);
    }

    public void AddRef() => Interlocked.Increment(ref _refs);

    /// <summary>True when more than one tensor references this storage.</summary>
    public bool IsShared => Volatile.Read(ref _refs) > 1;

    public void Release()
    {
        if (Interlocked.Decrement(ref _refs) == 0) Buffer.Dispose();
    }
}
