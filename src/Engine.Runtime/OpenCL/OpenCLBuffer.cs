using Engine.Runtime.Native.OpenCL;

namespace Engine.Runtime;

/// <summary>A block of memory on an OpenCL device (a cl_mem). Dispose releases it.</summary>
public sealed class OpenCLBuffer : DeviceBuffer
{
    internal OpenCLBuffer(OpenCLAccelerator owner, nint handle, long length)
    {
        Owner = owner;
        Handle = handle;
        _length = length;
    }

    private readonly long _length;

    /// <summary>The accelerator whose context owns the memory.</summary>
    public OpenCLAccelerator Owner { get; }

    /// <summary>The cl_mem handle.</summary>
    internal nint Handle { get; private set; }

    /// <inheritdoc />
    public override Device Device => Owner.Device;

    /// <inheritdoc />
    public override long Length => _length;

    /// <inheritdoc />
    protected override unsafe void Release(bool disposing)
    {
        // A cl_mem holds a reference on its context, so releasing it after the accelerator is fine.
        if (Handle != 0) ClApi.ReleaseMemObject(Handle);
        Handle = 0;
    }
}
