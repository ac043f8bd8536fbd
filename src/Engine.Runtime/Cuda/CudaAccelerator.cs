using System.Runtime.InteropServices;
using System.Text;
using Engine.Runtime.Kernels;
using Engine.Runtime.Native.Cuda;

namespace Engine.Runtime;

/// <summary>
/// A CUDA device through our own driver-API bindings: its primary context, device memory,
/// host&lt;-&gt;device copies, modules compiled from CUDA C by <see cref="Nvrtc"/> (through the disk
/// <see cref="KernelCache"/>), and kernel launches on streams. When this NVRTC cannot target the
/// device's architecture (a newer GPU than the toolkit), the module is loaded from PTX for the
/// newest architecture NVRTC knows and the driver JIT-compiles it.
/// </summary>
public sealed unsafe partial class CudaAccelerator : Accelerator
{
    private readonly Dictionary<string, CudaModule> _modules = new();
    private readonly CudaAllocator _memory;
    private readonly object _gate = new();
    private readonly int _device;
    private nint _context;

    /// <summary>Opens CUDA device <paramref name="deviceIndex"/>; compiled kernels go through <paramref name="cache"/> (default: <see cref="KernelCache.Shared"/>).</summary>
    /// <exception cref="CudaException">The driver is missing (the message says so), or the device does not exist.</exception>
    public CudaAccelerator(int deviceIndex = 0, KernelCache? cache = null)
    {
        if (MissingReason is { } missing) throw new CudaException($"CudaAccelerator: {missing}");
        int count = CudaDevices.Count;
        if (deviceIndex < 0 || deviceIndex >= count)
            throw new CudaException($"CudaAccelerator: device index {deviceIndex} is out of range; {count} device(s) found.");
        Info = CudaDevices.Describe(deviceIndex);
        Device = new Device(DeviceType.Cuda, deviceIndex);
        Cache = cache ?? KernelCache.Shared;
        int device;
        CuApi.Check(CuApi.DeviceGet(&device, deviceIndex), "cuDeviceGet");
        _device = device;
        nint context;
        CuApi.Check(CuApi.DevicePrimaryCtxRetain(&context, device), "cuDevicePrimaryCtxRetain");
        _context = context;
        _memory = new CudaAllocator(this);
        MakeCurrent();
    }

    /// <summary>Null when a CUDA device is usable here; otherwise why not (e.g. "libcuda.so.1 not found").</summary>
    public static string? MissingReason => CudaDevices.MissingReason;

    /// <summary>True when a CUDA device is usable here.</summary>
    public static bool IsAvailable => MissingReason is null;

    /// <summary>The device's description (name, compute capability, SMs, limits).</summary>
    public CudaDeviceInfo Info { get; }

    /// <summary>The engine device (<c>cuda:N</c>).</summary>
    public override Device Device { get; }

    /// <summary>The caching allocator of this device's memory.</summary>
    public override CachingAllocator Allocator => _memory;

    internal CudaAllocator Memory => _memory;

    /// <summary>Where compiled cubins are cached.</summary>
    public KernelCache Cache { get; }

    /// <summary>True once disposed.</summary>
    public bool IsDisposed => _context == 0;

    /// <summary>Makes this device's primary context current on the calling thread (every method does this first).</summary>
    internal void MakeCurrent()
    {
        ObjectDisposedException.ThrowIf(_context == 0, this);
        CuApi.Check(CuApi.CtxSetCurrent(_context), "cuCtxSetCurrent");
    }

    /// <summary>Allocates <paramref name="bytes"/> bytes of device memory, zero-filled when <paramref name="zero"/>.</summary>
    public override CudaBuffer Allocate(long bytes, bool zero = false)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(bytes);
        MakeCurrent();
        ulong pointer = _memory.Rent(bytes, out long block);
        if (zero && bytes > 0) CuApi.Check(CuApi.MemsetD8(pointer, 0, (nuint)bytes), "cuMemsetD8");
        return new CudaBuffer(this, pointer, bytes, block);
    }

    /// <summary>Allocates a buffer holding a copy of <paramref name="data"/>.</summary>
    public override CudaBuffer Allocate<T>(ReadOnlySpan<T> data) => (CudaBuffer)base.Allocate(data);

    /// <inheritdoc />
    public override void CopyFromHost<T>(DeviceBuffer destination, ReadOnlySpan<T> source, long offsetBytes = 0)
        => CopyToDevice(Mine(destination, "CopyFromHost"), source, offsetBytes);

    private CudaBuffer Mine(DeviceBuffer buffer, string op)
    {
        ArgumentNullException.ThrowIfNull(buffer);
        return buffer as CudaBuffer ?? throw new ArgumentException($"{op}: the buffer is {buffer.Device} memory, not memory of {Device}.", nameof(buffer));
    }

    /// <summary>Copies <paramref name="source"/> into <paramref name="destination"/> at byte <paramref name="offsetBytes"/> (synchronous).</summary>
    public void CopyToDevice<T>(CudaBuffer destination, ReadOnlySpan<T> source, long offsetBytes = 0) where T : unmanaged
    {
        long bytes = (long)source.Length * sizeof(T);
        CheckRange(destination, offsetBytes, bytes, "CopyToDevice");
        if (bytes == 0) return;
        MakeCurrent();
        fixed (T* p = source) CuApi.Check(CuApi.MemcpyHtoD(destination.DevicePointer + (ulong)offsetBytes, p, (nuint)bytes), "cuMemcpyHtoD");
    }

    /// <summary>Copies from <paramref name="source"/> at byte <paramref name="offsetBytes"/> into <paramref name="destination"/> (waits for prior work).</summary>
    public override void CopyToHost<T>(DeviceBuffer source, Span<T> destination, long offsetBytes = 0)
    {
        long bytes = (long)destination.Length * sizeof(T);
        var buffer = Mine(source, "CopyToHost");
        CheckRange(buffer, offsetBytes, bytes, "CopyToHost");
        if (bytes == 0) return;
        MakeCurrent();
        fixed (T* p = destination) CuApi.Check(CuApi.MemcpyDtoH(p, buffer.DevicePointer + (ulong)offsetBytes, (nuint)bytes), "cuMemcpyDtoH");
    }

    /// <summary>Sets every byte of <paramref name="buffer"/> to <paramref name="value"/> (cuMemsetD8).</summary>
    public void Memset(CudaBuffer buffer, byte value)
    {
        CheckRange(buffer, 0, buffer.Length, "Memset");
        if (buffer.Length == 0) return;
        MakeCurrent();
        CuApi.Check(CuApi.MemsetD8(buffer.DevicePointer, value, (nuint)buffer.Length), "cuMemsetD8");
    }

    /// <summary>Creates a stream.</summary>
    public CudaStream CreateStream() => new(this);

    /// <summary>Creates an event (timing enabled).</summary>
    public CudaEvent CreateEvent() => new(this);

    /// <summary>Waits for all work on the device (cuCtxSynchronize).</summary>
    public override void Synchronize()
    {
        MakeCurrent();
        CuApi.Check(CuApi.CtxSynchronize(), "cuCtxSynchronize");
    }

    /// <summary>
    /// Compiles <paramref name="source"/> for this device (through the disk cache) and loads it,
    /// or returns the module already loaded from the same source and options.
    /// </summary>
    public CudaModule Load(string source, IEnumerable<string>? options = null)
    {
        ArgumentNullException.ThrowIfNull(source);
        var opts = (options ?? []).ToArray();
        string key = KernelCache.Key(source, opts, Info.Architecture, "module");
        lock (_gate)
        {
            if (_modules.TryGetValue(key, out var loaded)) return loaded;
            MakeCurrent();
            var supported = Nvrtc.SupportedArchitectures;
            byte[] image;
            if (supported.Count == 0 || supported.Contains(Info.ArchitectureNumber))
                image = Nvrtc.Compile(source, Info.Architecture, opts, Cache).Cubin;
            else
            {
                int newest = supported.Where(a => a <= Info.ArchitectureNumber).DefaultIfEmpty(supported.Max()).Max();
                image = Encoding.UTF8.GetBytes(Nvrtc.CompileToPtx(source, $"compute_{newest}", opts) + "\0");
            }
            nint module;
            fixed (byte* p = image) CuApi.Check(CuApi.ModuleLoadData(&module, p), "cuModuleLoadData");
            var result = new CudaModule(this, module);
            _modules[key] = result;
            return result;
        }
    }

    /// <summary>Compiles and loads <paramref name="source"/> (cached), then launches its kernel <paramref name="kernel"/>.</summary>
    public void Launch(string source, string kernel, Dim3 grid, Dim3 group, params ReadOnlySpan<KernelArg> args)
        => Launch(Load(source), kernel, grid, group, 0, null, args);

    /// <summary>
    /// Queues <c>extern "C"</c> kernel <paramref name="kernel"/> of <paramref name="module"/> over
    /// <paramref name="grid"/> blocks of <paramref name="group"/> threads, with
    /// <paramref name="dynamicSharedBytes"/> of dynamic shared memory, on <paramref name="stream"/>
    /// (null: the default stream). Arguments are passed as cuLaunchKernel's array of pointers.
    /// </summary>
    public void Launch(CudaModule module, string kernel, Dim3 grid, Dim3 group, int dynamicSharedBytes, CudaStream? stream, params ReadOnlySpan<KernelArg> args)
    {
        ArgumentNullException.ThrowIfNull(module);
        if (module.Owner != this) throw new ArgumentException("Launch: the module was loaded by another CudaAccelerator.", nameof(module));
        if (grid.X < 1 || grid.Y < 1 || grid.Z < 1 || group.X < 1 || group.Y < 1 || group.Z < 1)
            throw new ArgumentException($"Launch {kernel}: grid {LaunchText.Of(grid)} and group {LaunchText.Of(group)} must be positive in every dim.");
        ArgumentOutOfRangeException.ThrowIfNegative(dynamicSharedBytes);
        MakeCurrent();
        nint function = module.Function(kernel, dynamicSharedBytes);

        // Each argument's bytes in one block (8-byte aligned slots); cuLaunchKernel reads them at the call.
        long total = 0;
        for (int i = 0; i < args.Length; i++) total += (Size(args[i], kernel, i) + 7) & ~7L;
        byte* values = (byte*)NativeMemory.AlignedAlloc((nuint)Math.Max(total, 8), 16);
        void** pointers = (void**)NativeMemory.Alloc((nuint)Math.Max(args.Length, 1), (nuint)sizeof(void*));
        try
        {
            long at = 0;
            for (int i = 0; i < args.Length; i++)
            {
                pointers[i] = values + at;
                if (args[i].Kind == KernelArgKind.Buffer)
                    *(ulong*)(values + at) = ((CudaBuffer)args[i].Buffer!).DevicePointer;
                else
                    args[i].Bytes.AsSpan().CopyTo(new Span<byte>(values + at, args[i].Bytes!.Length));
                at += (Size(args[i], kernel, i) + 7) & ~7L;
            }
            CuApi.Check(CuApi.LaunchKernel(function, (uint)grid.X, (uint)grid.Y, (uint)grid.Z, (uint)group.X, (uint)group.Y, (uint)group.Z,
                (uint)dynamicSharedBytes, stream?.Handle ?? 0, pointers, null), $"cuLaunchKernel({kernel}, grid {LaunchText.Of(grid)}, block {LaunchText.Of(group)}, smem {dynamicSharedBytes})");
        }
        finally
        {
            NativeMemory.AlignedFree(values);
            NativeMemory.Free(pointers);
        }
    }

    private long Size(in KernelArg arg, string kernel, int index)
    {
        switch (arg.Kind)
        {
            case KernelArgKind.Buffer:
                if (arg.Buffer is not CudaBuffer buffer || buffer.Owner != this)
                    throw new ArgumentException($"Launch {kernel}: argument {index} is not memory of this CUDA device ({Device}).");
                ObjectDisposedException.ThrowIf(buffer.IsDisposed, buffer);
                return sizeof(ulong);
            case KernelArgKind.LocalMemory:
                throw new ArgumentException($"Launch {kernel}: argument {index} is OpenCL local memory; on CUDA pass dynamic shared memory as dynamicSharedBytes.");
            default:
                return arg.Bytes!.Length;
        }
    }

    private void CheckRange(CudaBuffer buffer, long offset, long bytes, string op)
    {
        ArgumentNullException.ThrowIfNull(buffer);
        ObjectDisposedException.ThrowIf(buffer.IsDisposed, buffer);
        if (buffer.Owner != this) throw new ArgumentException($"{op}: the buffer belongs to another CUDA accelerator.");
        if (offset < 0 || offset + bytes > buffer.Length)
            throw new ArgumentOutOfRangeException(nameof(offset), $"{op}: bytes [{offset}, {offset + bytes}) exceed the buffer's {buffer.Length} bytes.");
    }

    /// <summary>Waits for the device, unloads the modules and releases the primary context.</summary>
    public override void Dispose()
    {
        lock (_gate)
        {
            if (_context == 0) return;
            CuApi.CtxSetCurrent(_context);
            CuApi.CtxSynchronize();
            foreach (var module in _modules.Values) CuApi.ModuleUnload(module.Handle);
            _modules.Clear();
            _bySource.Clear();
            _memory.Shutdown();
            CuApi.DevicePrimaryCtxRelease(_device);
            _context = 0;
        }
    }
}

/// <summary>A loaded CUDA module (cubin or PTX) and its functions, looked up by name once.</summary>
public sealed unsafe class CudaModule
{
    private readonly Dictionary<string, nint> _functions = new();

    internal CudaModule(CudaAccelerator owner, nint handle)
    {
        Owner = owner;
        Handle = handle;
    }

    /// <summary>The accelerator that loaded it.</summary>
    public CudaAccelerator Owner { get; }

    internal nint Handle { get; }

    /// <summary>The CUfunction of <paramref name="name"/>; opts in to more than 48 KiB of dynamic shared memory when asked.</summary>
    internal nint Function(string name, int dynamicSharedBytes)
    {
        lock (_functions)
        {
            if (!_functions.TryGetValue(name, out var function))
            {
                var bytes = Encoding.UTF8.GetBytes(name + "\0");
                fixed (byte* p = bytes) CuApi.Check(CuApi.ModuleGetFunction(&function, Handle, p), $"cuModuleGetFunction({name})");
                _functions[name] = function;
            }
            if (dynamicSharedBytes > 48 * 1024)
                CuApi.Check(CuApi.FuncSetAttribute(function, CuApi.FuncAttrMaxDynamicSharedSizeBytes, dynamicSharedBytes),
                    $"cuFuncSetAttribute({name}, MAX_DYNAMIC_SHARED_SIZE_BYTES, {dynamicSharedBytes})");
            return function;
        }
    }
}
