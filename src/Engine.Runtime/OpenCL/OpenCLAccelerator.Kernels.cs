using Engine.Runtime.Kernels;

namespace Engine.Runtime;

/// <summary>Translated kernels on OpenCL: the fake address space of views, and launching a <see cref="KernelSource"/>.</summary>
public sealed partial class OpenCLAccelerator
{
    private static readonly object IdGate = new();
    private static readonly HashSet<uint> LiveIds = [];
    private static uint _nextId;
    private readonly Dictionary<uint, OpenCLBuffer> _live = new();
    private readonly Dictionary<KernelSource, OpenCLProgram> _bySource = new(ReferenceEqualityComparer.Instance);

    /// <summary>A fresh buffer id (unique among the live OpenCL buffers of the process, so a view of another accelerator's buffer is recognized).</summary>
    private static uint Track()
    {
        lock (IdGate)
        {
            if (LiveIds.Count >= OpenCLBuffer.IdCount - 1)
                throw new InvalidOperationException($"OpenCL: more than {OpenCLBuffer.IdCount - 1} live buffers; the fake address space of views is full.");
            do _nextId = (_nextId + 1) % OpenCLBuffer.IdCount; while (_nextId == 0 || LiveIds.Contains(_nextId));
            LiveIds.Add(_nextId);
            return _nextId;
        }
    }

    /// <summary>Called by <see cref="OpenCLBuffer"/> when it is released: its id and address range are free again.</summary>
    internal void Forget(OpenCLBuffer buffer)
    {
        lock (IdGate)
        {
            LiveIds.Remove(buffer.Id);
            _live.Remove(buffer.Id);
        }
    }

    /// <summary>Registers a new buffer under its id (after construction).</summary>
    private OpenCLBuffer Register(OpenCLBuffer buffer)
    {
        lock (IdGate) _live[buffer.Id] = buffer;
        return buffer;
    }

    /// <summary>
    /// The buffer and byte offset a view's fake address designates. A view of no memory (address 0,
    /// length 0) is (null, 0). Throws <see cref="ArgumentException"/> naming the kernel and argument when
    /// the view is not memory of this accelerator or runs past its buffer.
    /// </summary>
    internal (OpenCLBuffer? Buffer, long OffsetBytes) Resolve(ulong address, long length, int elementSize, string kernel, int index, string name)
    {
        string what = $"Launch {kernel}: argument {index} ({name})";
        if (address == 0 && length == 0) return (null, 0);
        if ((address >> 62) != 1)
            throw new ArgumentException($"{what} is a view at 0x{address:x}, which is not OpenCL memory (a host or CUDA pointer?); pass a view of an OpenCLBuffer of {Device} (buffer.View<T>()).");
        uint id = (uint)((address >> OpenCLBuffer.OffsetBits) & (OpenCLBuffer.IdCount - 1));
        long offset = (long)(address & ((1UL << OpenCLBuffer.OffsetBits) - 1));
        OpenCLBuffer? buffer;
        lock (IdGate) _live.TryGetValue(id, out buffer);
        if (buffer is null || buffer.IsDisposed)
            throw new ArgumentException($"{what} is a view of no live OpenCL buffer of {Device} (disposed, or another accelerator's memory).");
        if (offset % elementSize != 0 || offset + length * elementSize > buffer.Length)
            throw new ArgumentException($"{what}: the view's bytes [{offset}, {offset + length * elementSize}) exceed its buffer's {buffer.Length} bytes.");
        return (buffer, offset);
    }

    /// <summary>
    /// Runs translated kernel <paramref name="kernel"/>: its OpenCL C is built once per
    /// <see cref="KernelSource"/> (with <see cref="KernelSource.OpenCLBuildOptions"/>); each view becomes
    /// (cl_mem, element offset, length), a <c>bool</c> a 4-byte int, and a kernel using dynamic shared
    /// memory gets a <c>__local</c> buffer of <paramref name="dynamicSharedBytes"/> and the byte count.
    /// </summary>
    public override void Launch(KernelSource kernel, Dim3 grid, Dim3 group, int dynamicSharedBytes, object[] arguments)
    {
        KernelArguments.Check(kernel, grid, group, dynamicSharedBytes, arguments);
        ThrowIfDisposed();
        OpenCLProgram? program;
        lock (_gate) _bySource.TryGetValue(kernel, out program);
        if (program is null)
        {
            program = Build(kernel.OpenCLSource, KernelSource.OpenCLBuildOptions);
            lock (_gate) _bySource[kernel] = program;
        }
        var args = new List<KernelArg>(arguments.Length * 3 + 2);
        for (int i = 0; i < arguments.Length; i++)
        {
            var p = kernel.Parameters[i];
            if (p.Kind == KernelParameterKind.View)
            {
                var view = (IArrayView)arguments[i];
                var (buffer, offset) = Resolve(view.Address, view.Length, view.ElementSize, kernel.Name, i, p.Name);
                args.Add(buffer is null ? KernelArg.Value<nint>(0) : KernelArg.Of(buffer)); // a NULL cl_mem for an empty view
                args.Add(offset / view.ElementSize);
                args.Add(view.Length);
            }
            else if (p.ClrType == typeof(bool))
                args.Add((bool)arguments[i] ? 1 : 0); // OpenCL kernels cannot take bool: the translator declares int
            else
                args.Add(KernelArg.Raw(KernelArguments.Bytes(arguments[i], p.SizeInBytes)));
        }
        if (kernel.UsesDynamicSharedMemory)
        {
            args.Add(KernelArg.Local(Math.Max(dynamicSharedBytes, 1))); // OpenCL rejects a zero-sized __local argument
            args.Add(dynamicSharedBytes);
        }
        Launch(program, kernel.EntryPoint, grid, group, args.ToArray());
    }
}
