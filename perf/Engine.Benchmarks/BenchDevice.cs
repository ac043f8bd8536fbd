using System.Collections.Concurrent;
using System.Diagnostics;
using Engine.Runtime;
using Engine.Tensors;
using Engine.Tensors.Cpu;

namespace Engine.Benchmarks;

/// <summary>
/// The device a case runs on (<c>engine bench --device</c>), how one step on it is timed, and where its
/// memory peak is read.
/// <list type="bullet">
/// <item><c>cpu</c>: the host stopwatch around the step (the step's ops are synchronous).</item>
/// <item><c>cuda[:N]</c>: CUDA events recorded on the default stream (where every kernel is queued) before and
/// after the step, then cuEventSynchronize and cuEventElapsedTime: the GPU time from the first queued kernel's
/// start to the last one's end, including any gaps in which the GPU waited for the host to queue more.</item>
/// <item><c>opencl[:N]</c>: our OpenCL binding creates its queue without CL_QUEUE_PROFILING_ENABLE, so there are no
/// profiling events: the host stopwatch from clFinish (queue empty) to clFinish after the step (labelled
/// <c>host clock + clFinish</c>).</item>
/// <item><c>emulator</c>: the host stopwatch (the emulator runs each launch to completion before returning).</item>
/// </list>
/// </summary>
public sealed class BenchDevice
{
    private static readonly ConcurrentDictionary<Device, BenchDevice> s_opened = new();
    private readonly Accelerator? _accelerator;
    private CudaEvent? _start, _end;

    private BenchDevice(Device device)
    {
        Device = device;
        if (device.Type == DeviceType.Cpu) return;
        _accelerator = DeviceRegistry.Get(device);
        if (_accelerator is CudaAccelerator cuda)
        {
            _start = cuda.CreateEvent();
            _end = cuda.CreateEvent();
            CudaPeak = CudaDevicePeak.Query(device.Index);
            Name = cuda.Info.Name;
        }
        else if (_accelerator is OpenCLAccelerator cl) Name = cl.Info.Name;
        else Name = "kernel emulator";
    }

    /// <summary>The device.</summary>
    public Device Device { get; }

    /// <summary>True for the host CPU (CPU-native ops, no accelerator).</summary>
    public bool IsCpu => Device.Type == DeviceType.Cpu;

    /// <summary>The device's name as its driver reports it (<c>host CPU</c> for the CPU).</summary>
    public string Name { get; } = "host CPU";

    /// <summary>How a step is timed, as printed in the JSON's <c>timing</c> field.</summary>
    public string Timing => Device.Type switch
    {
        DeviceType.Cuda => "cuda events",
        DeviceType.OpenCL => "host clock + clFinish",
        DeviceType.Emulator => "host clock (emulator)",
        _ => "host clock",
    };

    /// <summary>The theoretical FP32 and DRAM peaks of a CUDA device (null on other devices).</summary>
    public CudaDevicePeak? CudaPeak { get; }

    /// <summary>The allocator whose peak the runner reports: the device's caching allocator, or the host's on the CPU.</summary>
    public CachingAllocator Allocator => _accelerator?.Allocator ?? CpuAllocator.Shared;

    /// <summary>
    /// The device named by <paramref name="name"/> (<c>cpu</c>, <c>emulator</c>, <c>opencl[:N]</c>, <c>cuda[:N]</c>), opened
    /// once per process.
    /// </summary>
    /// <exception cref="BenchDeviceException">The name is not a device, or the device is not available here (the message says why).</exception>
    public static BenchDevice Open(string name)
    {
        Device device;
        try { device = Device.Parse(name ?? "cpu"); }
        catch (FormatException e) { throw new BenchDeviceException($"bench: --device {name}: {e.Message}"); }
        if (device.Type != DeviceType.Cpu && DeviceRegistry.MissingReason(device) is { } reason)
            throw new BenchDeviceException($"bench: --device {name}: {device} is not available here ({reason}); `engine devices` lists what this machine has.");
        return s_opened.GetOrAdd(device, d => new BenchDevice(d));
    }

    /// <summary>
    /// <paramref name="cpu"/> on this device: the same tensor on the CPU, otherwise a copy on the device (the CPU
    /// tensor is disposed). Leaf flags are kept: a tensor that required gradients still does.
    /// </summary>
    public Tensor Place(Tensor cpu)
    {
        ArgumentNullException.ThrowIfNull(cpu);
        if (IsCpu) return cpu;
        bool grad = cpu.RequiresGrad;
        Tensor moved;
        using (Tensor.NoGrad()) moved = cpu.To(Device);
        cpu.Dispose();
        return grad ? moved.RequiresGrad_() : moved;
    }

    /// <summary>Waits for all work queued on the device (nothing on the CPU).</summary>
    public void Synchronize() => _accelerator?.Synchronize();

    /// <summary>Milliseconds of one <paramref name="step"/>, timed as <see cref="Timing"/> says.</summary>
    public double Time(Action step)
    {
        ArgumentNullException.ThrowIfNull(step);
        if (_start is not null && _end is not null)
        {
            // Queue empty first, so the start event is not stuck behind the previous step's kernels.
            Synchronize();
            _start.Record();
            step();
            _end.Record();
            _end.Synchronize();
            return _end.ElapsedMillisecondsSince(_start);
        }
        Synchronize();
        var clock = Stopwatch.StartNew();
        step();
        Synchronize();
        return clock.Elapsed.TotalMilliseconds;
    }
}

/// <summary>The device cannot be used: not a device name, not available here, or the case has no version for it.</summary>
public sealed class BenchDeviceException(string message) : Exception(message);

/// <summary>The case cannot run on this device today (e.g. an op without a kernel there); nothing was timed. The message says why.</summary>
public sealed class BenchSkippedException(string message) : Exception(message);
