using System.Runtime.InteropServices;

namespace Engine.Runtime.Kernels;

/// <summary>
/// What an emulated GPU thread knows about itself: its indices, the launch's dims and its group's
/// shared state. The emulator sets one per OS thread; kernel code reaches it through
/// <see cref="Grid"/>, <see cref="Group"/>, <see cref="Warp"/> and <see cref="SharedMemory"/>.
/// </summary>
internal sealed class KernelContext
{
    [ThreadStatic] private static KernelContext? t_current;

    public required Dim3 GridDim { get; init; }
    public required Dim3 GroupDim { get; init; }
    public required Dim3 GroupIndex { get; init; }
    public required Dim3 ThreadIndex { get; init; }
    public required GroupState Group { get; init; }
    public int LinearThreadIndex => ThreadIndex.X + GroupDim.X * (ThreadIndex.Y + GroupDim.Y * ThreadIndex.Z);
    public int SharedCallIndex { get; set; }

    public static KernelContext Current => t_current ?? throw new InvalidOperationException(
        "Grid/Group/Warp/SharedMemory were used outside a kernel launch; call kernels through an accelerator.");

    /// <summary>The current thread's context, or null outside a launch.</summary>
    public static KernelContext? CurrentOrNull => t_current;

    public static void Set(KernelContext? context) => t_current = context;

    public string Describe() => $"group ({GroupIndex.X}, {GroupIndex.Y}, {GroupIndex.Z}) thread ({ThreadIndex.X}, {ThreadIndex.Y}, {ThreadIndex.Z})";

    public static void ThrowOutOfBounds(long index, long length, Type type)
    {
        var where = t_current is null ? "host code" : t_current.Describe();
        throw new KernelFaultException($"ArrayView<{type.Name}> index {index} is out of bounds for length {length} ({where}).");
    }
}

/// <summary>A kernel did something a GPU would not survive: an out-of-bounds access, a barrier some threads skipped, an exception.</summary>
public sealed class KernelFaultException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>State shared by the threads of one emulated group: barrier, shared memory, warp exchange.</summary>
internal sealed unsafe class GroupState : IDisposable
{
    private readonly List<(nint Pointer, int Bytes, Type Type)> _shared = [];
    private readonly nint _dynamic;
    private readonly int _dynamicBytes;
    private readonly float[] _exchange;
    private readonly float[] _reduce;

    public GroupState(int threads, int dynamicSharedBytes)
    {
        Barrier = new GroupBarrier(threads);
        WarpBarriers = new GroupBarrier[(threads + Warp.WarpSize - 1) / Warp.WarpSize];
        for (int w = 0; w < WarpBarriers.Length; w++)
            WarpBarriers[w] = new GroupBarrier(Math.Min(Warp.WarpSize, threads - w * Warp.WarpSize));
        _exchange = new float[threads];
        _reduce = new float[threads];
        _dynamicBytes = dynamicSharedBytes;
        _dynamic = dynamicSharedBytes > 0 ? (nint)NativeMemory.AllocZeroed((nuint)dynamicSharedBytes) : 0;
    }

    public GroupBarrier Barrier { get; }
    public GroupBarrier[] WarpBarriers { get; }

    public ArrayView<T> SharedAllocation<T>(KernelContext thread, int length) where T : unmanaged
    {
        int call = thread.SharedCallIndex++;
        lock (_shared)
        {
            while (_shared.Count <= call)
            {
                int bytes = checked(length * sizeof(T));
                _shared.Add(((nint)NativeMemory.AllocZeroed((nuint)Math.Max(bytes, 1)), bytes, typeof(T)));
            }
            var (p, b, type) = _shared[call];
            if (type != typeof(T) || b != length * sizeof(T))
                throw new KernelFaultException($"SharedMemory.Allocate call #{call} asked for {length} × {typeof(T).Name} in {thread.Describe()}, but another thread of the group asked for {b} bytes of {type.Name}: shared allocations must be the same in every thread.");
            return new ArrayView<T>((T*)p, length);
        }
    }

    public ArrayView<T> DynamicShared<T>() where T : unmanaged => new((T*)_dynamic, _dynamicBytes / sizeof(T));

    /// <summary>Every lane of the warp publishes its value, then reads lane <paramref name="source"/>'s.</summary>
    public float Shuffle(KernelContext thread, float value, int source)
    {
        int lane = thread.LinearThreadIndex % Warp.WarpSize, warp = thread.LinearThreadIndex / Warp.WarpSize;
        int baseIndex = warp * Warp.WarpSize;
        var barrier = WarpBarriers[warp];
        _exchange[baseIndex + lane] = value;
        barrier.Wait(thread);
        if (source < 0 || source >= barrier.Size)
            throw new KernelFaultException($"Warp shuffle from lane {source} in {thread.Describe()}: the warp has {barrier.Size} lanes.");
        float result = _exchange[baseIndex + source];
        barrier.Wait(thread);
        return result;
    }

    /// <summary>
    /// Group-wide reduction with the tree every backend uses: s[t] = v; then for stride = pow2ceil(n)/2
    /// down to 1: s[t] ⊕= s[t + stride] where t + stride &lt; n; the result is s[0].
    /// </summary>
    public float Reduce(KernelContext thread, float value, bool max)
    {
        int t = thread.LinearThreadIndex, n = Barrier.Size;
        _reduce[t] = value;
        Barrier.Wait(thread);
        int stride = 1;
        while (stride < n) stride *= 2;
        for (stride /= 2; stride > 0; stride /= 2)
        {
            if (t < stride && t + stride < n)
                _reduce[t] = max ? XMath.Max(_reduce[t], _reduce[t + stride]) : _reduce[t] + _reduce[t + stride];
            Barrier.Wait(thread);
        }
        float result = _reduce[0];
        Barrier.Wait(thread);
        return result;
    }

    public void Dispose()
    {
        foreach (var (p, _, _) in _shared) NativeMemory.Free((void*)p);
        _shared.Clear();
        if (_dynamic != 0) NativeMemory.Free((void*)_dynamic);
    }
}

/// <summary>
/// A barrier for the threads of a group that reports divergence instead of hanging: a thread that
/// returns while others wait at the barrier (or that faults) releases them with a fault.
/// </summary>
internal sealed class GroupBarrier(int size)
{
    private readonly object _gate = new();
    private int _arrived, _exited;
    private long _phase;
    private string? _fault;

    public int Size => size;

    public void Wait(KernelContext thread)
    {
        lock (_gate)
        {
            if (_fault is not null) throw new KernelFaultException(_fault);
            if (_exited > 0)
                throw Fault($"{thread.Describe()} reached a barrier that {_exited} thread(s) of its group had already returned past: barriers must be reached by every thread (divergent barrier).");
            if (++_arrived == size)
            {
                _arrived = 0;
                _phase++;
                Monitor.PulseAll(_gate);
                return;
            }
            long phase = _phase;
            while (phase == _phase && _fault is null) Monitor.Wait(_gate);
            if (_fault is not null && phase == _phase) throw new KernelFaultException(_fault);
        }
    }

    /// <summary>A thread has returned from the kernel.</summary>
    public void Exit(KernelContext thread)
    {
        lock (_gate)
        {
            _exited++;
            if (_arrived > 0 && _fault is null)
                Fault($"{thread.Describe()} returned while {_arrived} thread(s) of its group wait at a barrier (divergent barrier).");
        }
    }

    /// <summary>A thread faulted: release everyone.</summary>
    public KernelFaultException Fault(string message)
    {
        lock (_gate)
        {
            _fault ??= message;
            Monitor.PulseAll(_gate);
            return new KernelFaultException(message);
        }
    }
}
