using Engine.Runtime.Native.Cuda;

namespace Engine.Runtime;

/// <summary>A block of CUDA device memory (cuMemAlloc). Dispose frees it.</summary>
public sealed class CudaBuffer : DeviceBuffer
{
    private readonly long _length;

    internal CudaBuffer(CudaAccelerator owner, ulong pointer, long length)
    {
        Owner = owner;
        DevicePointer = pointer;
        _length = length;
    }

    /// <summary>The accelerator whose context owns the memory.</summary>
    public CudaAccelerator Owner { get; }

    /// <summary>The CUdeviceptr.</summary>
    public ulong DevicePointer { get; private set; }

    /// <inheritdoc />
    public override Device Device => Owner.Device;

    /// <inheritdoc />
    public override long Length => _length;

    /// <inheritdoc />
    protected override unsafe void Release(bool disposing)
    {
        if (DevicePointer != 0 && !Owner.IsDisposed)
        {
            Owner.MakeCurrent();
            CuApi.MemFree(DevicePointer); // a failure here has nothing left to report to
        }
        DevicePointer = 0;
    }
}
