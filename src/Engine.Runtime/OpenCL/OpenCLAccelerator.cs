using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text;
using Engine.Runtime.Kernels;
using Engine.Runtime.Native.OpenCL;

namespace Engine.Runtime;

/// <summary>
/// An OpenCL device (PoCL on the CPU in CI, or any GPU driver): its context and one in-order
/// command queue, device buffers, host&lt;-&gt;device copies, programs built from OpenCL C source
/// (cached by a hash of source and options) and kernel launches. Copies block; launches are
/// queued and ordered, so a later read sees them; <see cref="Synchronize"/> waits for everything.
/// </summary>
public sealed unsafe partial class OpenCLAccelerator : Accelerator
{
    private readonly Dictionary<string, OpenCLProgram> _programs = new();
    private readonly OpenCLAllocator _memory;
    private readonly object _gate = new();
    private nint _context;
    private nint _queue;

    /// <summary>Opens device <paramref name="deviceIndex"/> of <see cref="OpenCLDevices.List"/> (all platforms, in order).</summary>
    /// <exception cref="OpenCLException">OpenCL is missing, or the device does not exist.</exception>
    public OpenCLAccelerator(int deviceIndex = 0)
    {
        var devices = OpenCLDevices.List();
        if (devices.Count == 0)
            throw new OpenCLException("OpenCLAccelerator: " + (OpenCLDevices.MissingReason ?? "no OpenCL device"));
        if (deviceIndex < 0 || deviceIndex >= devices.Count)
            throw new OpenCLException($"OpenCLAccelerator: device index {deviceIndex} is out of range; {devices.Count} device(s) found.");
        Info = devices[deviceIndex];
        Device = new Device(DeviceType.OpenCL, deviceIndex);
        nint device = Info.Handle;
        int code;
        _context = ClApi.CreateContext(null, 1, &device, 0, 0, &code);
        ClApi.Check(code, "clCreateContext");
        _queue = ClApi.CreateCommandQueue(_context, device, 0, &code);
        if (code != 0)
        {
            ClApi.ReleaseContext(_context);
            ClApi.Check(code, "clCreateCommandQueue");
        }
        _memory = new OpenCLAllocator(this);
    }

    /// <summary>Null when an OpenCL device is usable here, otherwise why not.</summary>
    public static string? MissingReason => OpenCLDevices.MissingReason;

    /// <summary>The device's description (name, compute units, limits).</summary>
    public OpenCLDeviceInfo Info { get; }

    /// <summary>The engine device this accelerator is (<c>opencl:N</c>).</summary>
    public override Device Device { get; }

    /// <summary>The caching allocator of this device's cl_mem blocks.</summary>
    public override CachingAllocator Allocator => _memory;

    internal OpenCLAllocator Memory => _memory;

    /// <summary>
    /// Allocates <paramref name="bytes"/> bytes of device memory (a cached block of the same size
    /// class when one is free; never zero-sized, which OpenCL rejects), zero-filled when <paramref name="zero"/>.
    /// </summary>
    public override OpenCLBuffer Allocate(long bytes, bool zero = false)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(bytes);
        ThrowIfDisposed();
        nint mem = (nint)_memory.Rent(bytes, out long block);
        var buffer = Register(new OpenCLBuffer(this, mem, bytes, block, Track()));
        if (zero) Memset(buffer, 0);
        return buffer;
    }

    /// <summary>Sets every byte of <paramref name="buffer"/> to <paramref name="value"/> (clEnqueueFillBuffer, queued in order).</summary>
    public void Memset(OpenCLBuffer buffer, byte value)
    {
        CheckRange(buffer, 0, buffer.Length, "Memset");
        if (buffer.Length == 0) return;
        // The pattern is copied at enqueue time, so a stack variable is fine.
        ClApi.Check(ClApi.EnqueueFillBuffer(_queue, buffer.Handle, &value, 1, 0, (nuint)buffer.Length, 0, null, null), "clEnqueueFillBuffer");
    }

    /// <summary>Allocates a buffer holding a copy of <paramref name="data"/>.</summary>
    public override OpenCLBuffer Allocate<T>(ReadOnlySpan<T> data) => (OpenCLBuffer)base.Allocate(data);

    /// <inheritdoc />
    public override void CopyFromHost<T>(DeviceBuffer destination, ReadOnlySpan<T> source, long offsetBytes = 0)
        => CopyToDevice(Mine(destination, "CopyFromHost"), source, offsetBytes);

    /// <summary>Copies <paramref name="source"/> into <paramref name="destination"/> at byte offset <paramref name="offsetBytes"/> (blocking).</summary>
    public void CopyToDevice<T>(OpenCLBuffer destination, ReadOnlySpan<T> source, long offsetBytes = 0) where T : unmanaged
    {
        long bytes = (long)source.Length * sizeof(T);
        CheckRange(destination, offsetBytes, bytes, "CopyToDevice");
        if (bytes == 0) return;
        fixed (T* p = source)
            ClApi.Check(ClApi.EnqueueWriteBuffer(_queue, destination.Handle, ClErrors.True, (nuint)offsetBytes, (nuint)bytes, p, 0, null, null), "clEnqueueWriteBuffer");
    }

    /// <summary>Copies from <paramref name="source"/> at byte offset <paramref name="offsetBytes"/> into <paramref name="destination"/> (blocking; waits for queued kernels).</summary>
    public override void CopyToHost<T>(DeviceBuffer source, Span<T> destination, long offsetBytes = 0)
    {
        long bytes = (long)destination.Length * sizeof(T);
        var buffer = Mine(source, "CopyToHost");
        CheckRange(buffer, offsetBytes, bytes, "CopyToHost");
        if (bytes == 0) return;
        fixed (T* p = destination)
            ClApi.Check(ClApi.EnqueueReadBuffer(_queue, buffer.Handle, ClErrors.True, (nuint)offsetBytes, (nuint)bytes, p, 0, null, null), "clEnqueueReadBuffer");
    }

    private OpenCLBuffer Mine(DeviceBuffer buffer, string op)
    {
        ArgumentNullException.ThrowIfNull(buffer);
        return buffer as OpenCLBuffer ?? throw new ArgumentException($"{op}: the buffer is {buffer.Device} memory, not memory of {Device}.", nameof(buffer));
    }

    /// <summary>
    /// Builds (or returns the cached build of) an OpenCL C program. A failed build throws an
    /// <see cref="OpenCLException"/> (CL_BUILD_PROGRAM_FAILURE) whose message and
    /// <see cref="OpenCLException.BuildLog"/> hold the compiler's log, with line numbers.
    /// </summary>
    public OpenCLProgram Build(string source, string options = "")
    {
        ArgumentNullException.ThrowIfNull(source);
        ThrowIfDisposed();
        string key = Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(options + "\0" + source)));
        lock (_gate)
        {
            if (_programs.TryGetValue(key, out var cached)) return cached;
            var program = BuildProgram(source, options);
            _programs[key] = program;
            return program;
        }
    }

    private OpenCLProgram BuildProgram(string source, string options)
    {
        byte[] text = Encoding.UTF8.GetBytes(source);
        byte[] opts = Encoding.UTF8.GetBytes(options + "\0");
        int code;
        nint program;
        fixed (byte* s = text)
        {
            byte* strings = s;
            nuint length = (nuint)text.Length;
            program = ClApi.CreateProgramWithSource(_context, 1, &strings, &length, &code);
        }
        ClApi.Check(code, "clCreateProgramWithSource");
        nint device = Info.Handle;
        fixed (byte* o = opts) code = ClApi.BuildProgram(program, 1, &device, o, 0, 0);
        if (code != 0)
        {
            string log = BuildLog(program, device);
            ClApi.ReleaseProgram(program);
            throw new OpenCLException(code, "clBuildProgram", log);
        }
        return new OpenCLProgram(this, program);
    }

    private static string BuildLog(nint program, nint device)
    {
        nuint size;
        if (ClApi.GetProgramBuildInfo(program, device, ClErrors.ProgramBuildLog, 0, null, &size) != 0) return "(no build log)";
        var bytes = new byte[(int)size];
        fixed (byte* p = bytes)
            if (ClApi.GetProgramBuildInfo(program, device, ClErrors.ProgramBuildLog, size, p, null) != 0) return "(no build log)";
        return Encoding.UTF8.GetString(bytes).TrimEnd('\0').Trim();
    }

    /// <summary>Builds <paramref name="source"/> (cached) and launches its kernel <paramref name="kernel"/>.</summary>
    public void Launch(string source, string kernel, Dim3 grid, Dim3 group, params ReadOnlySpan<KernelArg> args)
        => Launch(Build(source), kernel, grid, group, args);

    /// <summary>
    /// Queues kernel <paramref name="kernel"/> of <paramref name="program"/> over <paramref name="grid"/>
    /// groups of <paramref name="group"/> work-items (NDRange global = grid × group, local = group).
    /// Argument errors surface as <see cref="OpenCLException"/> naming the CL error and the argument index.
    /// </summary>
    public void Launch(OpenCLProgram program, string kernel, Dim3 grid, Dim3 group, params ReadOnlySpan<KernelArg> args)
    {
        ArgumentNullException.ThrowIfNull(program);
        ThrowIfDisposed();
        if (program.Owner != this) throw new ArgumentException("Launch: the program was built by another OpenCLAccelerator.", nameof(program));
        if (grid.X < 1 || grid.Y < 1 || grid.Z < 1 || group.X < 1 || group.Y < 1 || group.Z < 1)
            throw new ArgumentException($"Launch {kernel}: grid {LaunchText.Of(grid)} and group {LaunchText.Of(group)} must be positive in every dim.");
        lock (_gate) // set-args + enqueue on a shared cl_kernel must not interleave
        {
            nint handle = program.Kernel(kernel);
            for (int i = 0; i < args.Length; i++) SetArg(handle, kernel, i, args[i]);
            uint dims = group.Z > 1 || grid.Z > 1 ? 3u : group.Y > 1 || grid.Y > 1 ? 2u : 1u;
            nuint* global = stackalloc nuint[3] { (nuint)((long)grid.X * group.X), (nuint)((long)grid.Y * group.Y), (nuint)((long)grid.Z * group.Z) };
            nuint* local = stackalloc nuint[3] { (nuint)group.X, (nuint)group.Y, (nuint)group.Z };
            ClApi.Check(ClApi.EnqueueNDRangeKernel(_queue, handle, dims, null, global, local, 0, null, null),
                $"clEnqueueNDRangeKernel({kernel}, grid {LaunchText.Of(grid)}, group {LaunchText.Of(group)})");
        }
    }

    private void SetArg(nint kernel, string name, int index, in KernelArg arg)
    {
        string call = $"clSetKernelArg({name}, arg {index}: {arg})";
        switch (arg.Kind)
        {
            case KernelArgKind.Buffer:
                if (arg.Buffer is not OpenCLBuffer buffer || buffer.Owner != this)
                    throw new ArgumentException($"{call}: the buffer is not memory of this OpenCL device ({Device}).");
                ObjectDisposedException.ThrowIf(buffer.IsDisposed, buffer);
                nint mem = buffer.Handle;
                ClApi.Check(ClApi.SetKernelArg(kernel, (uint)index, (nuint)sizeof(nint), &mem), call);
                break;
            case KernelArgKind.LocalMemory:
                ClApi.Check(ClApi.SetKernelArg(kernel, (uint)index, (nuint)arg.LocalBytes, null), call);
                break;
            default:
                fixed (byte* p = arg.Bytes) ClApi.Check(ClApi.SetKernelArg(kernel, (uint)index, (nuint)arg.Bytes!.Length, p), call);
                break;
        }
    }

    /// <summary>Waits until every queued command has finished (clFinish).</summary>
    public override void Synchronize()
    {
        ThrowIfDisposed();
        ClApi.Check(ClApi.Finish(_queue), "clFinish");
    }

    private void CheckRange(OpenCLBuffer buffer, long offset, long bytes, string op)
    {
        ArgumentNullException.ThrowIfNull(buffer);
        ThrowIfDisposed();
        ObjectDisposedException.ThrowIf(buffer.IsDisposed, buffer);
        if (buffer.Owner != this) throw new ArgumentException($"{op}: the buffer belongs to another OpenCL accelerator.");
        if (offset < 0 || offset + bytes > buffer.Length)
            throw new ArgumentOutOfRangeException(nameof(offset), $"{op}: bytes [{offset}, {offset + bytes}) exceed the buffer's {buffer.Length} bytes.");
    }

    internal nint Context => _context;

    private void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(_queue == 0, this);

    /// <summary>Waits for queued work, then releases the programs, the queue and the context.</summary>
    public override void Dispose()
    {
        lock (_gate)
        {
            if (_queue == 0) return;
            ClApi.Finish(_queue);
            foreach (var program in _programs.Values) program.Release();
            _programs.Clear();
            _bySource.Clear();
            _memory.Shutdown();
            ClApi.ReleaseCommandQueue(_queue);
            ClApi.ReleaseContext(_context);
            _queue = 0;
            _context = 0;
        }
    }
}

/// <summary>A built OpenCL program and its kernels (created on first use, cached by name).</summary>
public sealed unsafe class OpenCLProgram
{
    private readonly Dictionary<string, nint> _kernels = new();
    private nint _handle;

    internal OpenCLProgram(OpenCLAccelerator owner, nint handle)
    {
        Owner = owner;
        _handle = handle;
    }

    /// <summary>The accelerator that built it.</summary>
    public OpenCLAccelerator Owner { get; }

    /// <summary>The cl_kernel for <paramref name="name"/>; CL_INVALID_KERNEL_NAME when the program has none.</summary>
    internal nint Kernel(string name)
    {
        if (_kernels.TryGetValue(name, out var kernel)) return kernel;
        var bytes = Encoding.UTF8.GetBytes(name + "\0");
        int code;
        fixed (byte* p = bytes) kernel = ClApi.CreateKernel(_handle, p, &code);
        ClApi.Check(code, $"clCreateKernel({name})");
        _kernels[name] = kernel;
        return kernel;
    }

    internal void Release()
    {
        foreach (var kernel in _kernels.Values) ClApi.ReleaseKernel(kernel);
        _kernels.Clear();
        if (_handle != 0) ClApi.ReleaseProgram(_handle);
        _handle = 0;
    }
}
