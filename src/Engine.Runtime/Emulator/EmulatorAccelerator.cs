using System.Runtime.ExceptionServices;
using Engine.Runtime.Kernels;

namespace Engine.Runtime;

/// <summary>
/// Runs C# kernels as a GPU would: every thread of a group is a real OS thread, barriers are real
/// barriers, shared memory is shared by the group, and every <see cref="ArrayView{T}"/> access is
/// bounds-checked. Slow by design — it checks a kernel's logic, not its speed. Groups run one after
/// another (a kernel may not rely on groups running concurrently, as on a GPU).
/// </summary>
public sealed class EmulatorAccelerator : Accelerator
{
    /// <summary>Largest group the emulator accepts (as CUDA's 1024 threads per block).</summary>
    public const int MaxGroupSize = 1024;

    /// <summary>The emulator device.</summary>
    public override Device Device { get; } = new(DeviceType.Emulator);

    /// <summary>The host allocator (<see cref="CpuAllocator.Shared"/>): the emulator's memory is host memory.</summary>
    public override CachingAllocator Allocator => CpuAllocator.Shared;

    /// <summary>Allocates device memory (host memory for the emulator), zero-filled unless <paramref name="zero"/> is false.</summary>
    public override CpuBuffer Allocate(long bytes, bool zero = true) => CpuAllocator.Shared.Allocate(bytes, zero);

    /// <inheritdoc />
    public override unsafe void CopyFromHost<T>(DeviceBuffer destination, ReadOnlySpan<T> source, long offsetBytes = 0)
        => source.CopyTo(Host<T>(destination, offsetBytes, source.Length, "CopyFromHost"));

    /// <inheritdoc />
    public override void CopyToHost<T>(DeviceBuffer source, Span<T> destination, long offsetBytes = 0)
        => Host<T>(source, offsetBytes, destination.Length, "CopyToHost").CopyTo(destination);

    private static unsafe Span<T> Host<T>(DeviceBuffer buffer, long offsetBytes, int count, string op) where T : unmanaged
    {
        ArgumentNullException.ThrowIfNull(buffer);
        if (buffer is not CpuBuffer cpu) throw new ArgumentException($"{op}: the buffer is {buffer.Device} memory, not host memory the emulator can use.", nameof(buffer));
        ObjectDisposedException.ThrowIf(cpu.IsDisposed, cpu);
        long bytes = (long)count * sizeof(T);
        if (offsetBytes < 0 || offsetBytes + bytes > cpu.Length)
            throw new ArgumentOutOfRangeException(nameof(offsetBytes), $"{op}: bytes [{offsetBytes}, {offsetBytes + bytes}) exceed the buffer's {cpu.Length} bytes.");
        return new Span<T>((byte*)cpu.Pointer + offsetBytes, count);
    }

    /// <summary>Nothing to wait for: emulator launches and copies are synchronous.</summary>
    public override void Synchronize() { }

    /// <summary>Nothing to release (memory belongs to <see cref="CpuAllocator.Shared"/>).</summary>
    public override void Dispose() { }

    /// <summary>
    /// Runs the C# body of translated kernel <paramref name="kernel"/> (bound by its generated
    /// <c>Launch</c> class) with <paramref name="arguments"/>, checked against its parameters.
    /// </summary>
    public override void Launch(KernelSource kernel, Dim3 grid, Dim3 group, int dynamicSharedBytes, object[] arguments)
    {
        KernelArguments.Check(kernel, grid, group, dynamicSharedBytes, arguments);
        for (int i = 0; i < arguments.Length; i++)
            if (arguments[i] is IArrayView { Address: var address } && (address >> 62) == 1)
                throw new ArgumentException($"Launch {kernel.Name}: argument {i} ({kernel.Parameters[i].Name}) is a view of OpenCL memory (fake address 0x{address:x}); the emulator needs host memory (EmulatorAccelerator.Allocate).");
        var run = KernelEmulation.Find(kernel);
        Launch(grid, group, () => run(arguments), dynamicSharedBytes);
    }

    /// <summary>
    /// Runs <paramref name="kernel"/> once per thread of a <paramref name="grid"/> of groups of
    /// <paramref name="group"/> threads, and waits for it. A fault in any thread (out-of-bounds access,
    /// divergent barrier, exception) stops the launch with a <see cref="KernelFaultException"/>
    /// naming the thread.
    /// </summary>
    public void Launch(Dim3 grid, Dim3 group, Action kernel, int dynamicSharedBytes = 0)
    {
        ArgumentNullException.ThrowIfNull(kernel);
        if (grid.X < 1 || grid.Y < 1 || grid.Z < 1 || group.X < 1 || group.Y < 1 || group.Z < 1)
            throw new ArgumentException($"Launch: grid {grid} and group {group} must be positive in every dim.");
        if (group.Size > MaxGroupSize)
            throw new ArgumentException($"Launch: a group of {group.Size} threads exceeds the limit of {MaxGroupSize}.");
        int threads = (int)group.Size;
        for (int gz = 0; gz < grid.Z; gz++)
        for (int gy = 0; gy < grid.Y; gy++)
        for (int gx = 0; gx < grid.X; gx++)
            RunGroup(grid, group, new Dim3(gx, gy, gz), threads, kernel, dynamicSharedBytes);
    }

    private static void RunGroup(Dim3 grid, Dim3 group, Dim3 groupIndex, int threads, Action kernel, int dynamicSharedBytes)
    {
        using var state = new GroupState(threads, dynamicSharedBytes);
        var errors = new Exception?[threads];
        var workers = new Thread[threads];
        for (int t = 0; t < threads; t++)
        {
            var index = new Dim3(t % group.X, t / group.X % group.Y, t / (group.X * group.Y));
            var context = new KernelContext { GridDim = grid, GroupDim = group, GroupIndex = groupIndex, ThreadIndex = index, Group = state };
            int slot = t;
            workers[t] = new Thread(() =>
            {
                KernelContext.Set(context);
                try
                {
                    kernel();
                    state.Barrier.Exit(context);
                    state.WarpBarriers[context.LinearThreadIndex / Warp.WarpSize].Exit(context);
                }
                catch (Exception e)
                {
                    errors[slot] = e;
                    var message = e is KernelFaultException ? e.Message : $"{context.Describe()} threw {e.GetType().Name}: {e.Message}";
                    state.Barrier.Fault(message);
                    foreach (var w in state.WarpBarriers) w.Fault(message);
                }
                finally
                {
                    KernelContext.Set(null);
                }
            }, maxStackSize: 256 * 1024) { IsBackground = true };
        }
        foreach (var w in workers) w.Start();
        foreach (var w in workers) w.Join();
        // Report the first real fault (the others are threads released because of it).
        var first = errors.FirstOrDefault(e => e is not null and not KernelFaultException) ?? errors.FirstOrDefault(e => e is not null);
        if (first is KernelFaultException) ExceptionDispatchInfo.Throw(first);
        if (first is not null) throw new KernelFaultException($"kernel fault in group ({groupIndex.X}, {groupIndex.Y}, {groupIndex.Z}): {first.Message}", first);
    }
}
