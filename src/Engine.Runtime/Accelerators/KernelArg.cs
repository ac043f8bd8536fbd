namespace Engine.Runtime;

/// <summary>What a <see cref="KernelArg"/> holds.</summary>
public enum KernelArgKind
{
    /// <summary>A device buffer (passed as cl_mem on OpenCL, as a CUdeviceptr on CUDA).</summary>
    Buffer,
    /// <summary>A scalar or blittable struct, passed by value (its bytes).</summary>
    Value,
    /// <summary>OpenCL <c>__local</c> memory of a size in bytes (CUDA takes dynamic shared memory as a launch parameter instead).</summary>
    LocalMemory,
}

/// <summary>
/// One argument of a kernel launch, backend-neutral: the accelerator turns it into
/// <c>clSetKernelArg</c> calls (OpenCL) or into the array of pointers <c>cuLaunchKernel</c> takes (CUDA).
/// Ints, longs, floats, doubles and buffers convert implicitly; structs go through <see cref="Value{T}"/>.
/// </summary>
public readonly struct KernelArg
{
    private KernelArg(KernelArgKind kind, byte[]? bytes, DeviceBuffer? buffer, long localBytes)
    {
        Kind = kind;
        Bytes = bytes;
        Buffer = buffer;
        LocalBytes = localBytes;
    }

    /// <summary>What this argument holds.</summary>
    public KernelArgKind Kind { get; }

    /// <summary>The value's bytes (for <see cref="KernelArgKind.Value"/>).</summary>
    public byte[]? Bytes { get; }

    /// <summary>The buffer (for <see cref="KernelArgKind.Buffer"/>).</summary>
    public DeviceBuffer? Buffer { get; }

    /// <summary>The local-memory size in bytes (for <see cref="KernelArgKind.LocalMemory"/>).</summary>
    public long LocalBytes { get; }

    /// <summary>A value argument: the bytes of <paramref name="value"/> (a primitive or blittable struct).</summary>
    public static unsafe KernelArg Value<T>(T value) where T : unmanaged
    {
        var bytes = new byte[sizeof(T)];
        fixed (byte* p = bytes) *(T*)p = value;
        return new KernelArg(KernelArgKind.Value, bytes, null, 0);
    }

    /// <summary>A value argument from its raw bytes (the C layout the kernel declares).</summary>
    public static KernelArg Raw(byte[] bytes)
    {
        ArgumentNullException.ThrowIfNull(bytes);
        return new KernelArg(KernelArgKind.Value, bytes, null, 0);
    }

    /// <summary>A buffer argument.</summary>
    public static KernelArg Of(DeviceBuffer buffer)
    {
        ArgumentNullException.ThrowIfNull(buffer);
        return new KernelArg(KernelArgKind.Buffer, null, buffer, 0);
    }

    /// <summary>OpenCL <c>__local</c> memory of <paramref name="bytes"/> bytes for a <c>__local T*</c> parameter.</summary>
    public static KernelArg Local(long bytes)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(bytes);
        return new KernelArg(KernelArgKind.LocalMemory, null, null, bytes);
    }

    /// <summary>An <c>int</c> argument.</summary>
    public static implicit operator KernelArg(int value) => Value(value);
    /// <summary>A <c>long</c> argument.</summary>
    public static implicit operator KernelArg(long value) => Value(value);
    /// <summary>A <c>float</c> argument.</summary>
    public static implicit operator KernelArg(float value) => Value(value);
    /// <summary>A <c>double</c> argument.</summary>
    public static implicit operator KernelArg(double value) => Value(value);
    /// <summary>A buffer argument.</summary>
    public static implicit operator KernelArg(DeviceBuffer buffer) => Of(buffer);

    /// <inheritdoc />
    public override string ToString() => Kind switch
    {
        KernelArgKind.Buffer => $"buffer({Buffer!.Length} bytes)",
        KernelArgKind.LocalMemory => $"local({LocalBytes} bytes)",
        _ => $"value({Bytes!.Length} bytes)",
    };
}
