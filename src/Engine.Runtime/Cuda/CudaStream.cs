using Engine.Runtime.Kernels;
using Engine.Runtime.Native.Cuda;

namespace Engine.Runtime;

/// <summary>
/// A CUDA stream: work queued on it runs in order. Dispose destroys it (after its work). A stream is
/// also a kernel launcher: the generated <c>Launch.Kernel(stream, grid, group, ...)</c> queues the
/// kernel on it and returns without waiting.
/// </summary>
public sealed unsafe class CudaStream : IKernelLauncher, IDisposable
{
    private readonly CudaAccelerator _owner;

    internal CudaStream(CudaAccelerator owner)
    {
        _owner = owner;
        owner.MakeCurrent();
        nint stream;
        CuApi.Check(CuApi.StreamCreate(&stream, 0), "cuStreamCreate");
        Handle = stream;
    }

    /// <summary>The CUstream.</summary>
    internal nint Handle { get; private set; }

    /// <summary>Queues translated kernel <paramref name="kernel"/> on this stream (see <see cref="CudaAccelerator.Launch(KernelSource, Dim3, Dim3, int, object[])"/>).</summary>
    public void Launch(KernelSource kernel, Dim3 grid, Dim3 group, int dynamicSharedBytes, object[] arguments)
    {
        ObjectDisposedException.ThrowIf(Handle == 0, this);
        _owner.Launch(kernel, grid, group, dynamicSharedBytes, arguments, this);
    }

    /// <summary>Waits until all work queued on the stream has finished.</summary>
    public void Synchronize()
    {
        ObjectDisposedException.ThrowIf(Handle == 0, this);
        _owner.MakeCurrent();
        CuApi.Check(CuApi.StreamSynchronize(Handle), "cuStreamSynchronize");
    }

    /// <summary>Destroys the stream (its queued work still completes).</summary>
    public void Dispose()
    {
        if (Handle == 0 || _owner.IsDisposed) return;
        _owner.MakeCurrent();
        CuApi.StreamDestroy(Handle);
        Handle = 0;
    }
}

/// <summary>A CUDA event: a point in a stream, used to wait on work or to time it.</summary>
public sealed unsafe class CudaEvent : IDisposable
{
    private readonly CudaAccelerator _owner;

    internal CudaEvent(CudaAccelerator owner)
    {
        _owner = owner;
        owner.MakeCurrent();
        nint e;
        CuApi.Check(CuApi.EventCreate(&e, 0), "cuEventCreate"); // CU_EVENT_DEFAULT: timing enabled
        Handle = e;
    }

    internal nint Handle { get; private set; }

    /// <summary>Records the event on <paramref name="stream"/> (null: the default stream).</summary>
    public void Record(CudaStream? stream = null)
    {
        ObjectDisposedException.ThrowIf(Handle == 0, this);
        _owner.MakeCurrent();
        CuApi.Check(CuApi.EventRecord(Handle, stream?.Handle ?? 0), "cuEventRecord");
    }

    /// <summary>Waits until the work before the recorded point has finished.</summary>
    public void Synchronize()
    {
        ObjectDisposedException.ThrowIf(Handle == 0, this);
        _owner.MakeCurrent();
        CuApi.Check(CuApi.EventSynchronize(Handle), "cuEventSynchronize");
    }

    /// <summary>Milliseconds between <paramref name="start"/> and this event (both recorded and completed).</summary>
    public float ElapsedMillisecondsSince(CudaEvent start)
    {
        ArgumentNullException.ThrowIfNull(start);
        _owner.MakeCurrent();
        float ms;
        CuApi.Check(CuApi.EventElapsedTime(&ms, start.Handle, Handle), "cuEventElapsedTime");
        return ms;
    }

    /// <summary>Destroys the event.</summary>
    public void Dispose()
    {
        if (Handle == 0 || _owner.IsDisposed) return;
        _owner.MakeCurrent();
        CuApi.EventDestroy(Handle);
        Handle = 0;
    }
}
