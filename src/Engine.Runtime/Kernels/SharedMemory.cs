namespace Engine.Runtime.Kernels;

/// <summary>Memory shared by the threads of one group (CUDA __shared__, OpenCL __local).</summary>
public static class SharedMemory
{
    /// <summary>
    /// A group-shared array of <paramref name="length"/> elements (a compile-time constant in kernels).
    /// Every thread of the group gets the same array for the same call site.
    /// </summary>
    public static ArrayView<T> Allocate<T>(int length) where T : unmanaged
        => KernelContext.Current.Group.SharedAllocation<T>(KernelContext.Current, length);

    /// <summary>The launch's dynamic shared memory, as elements of <typeparamref name="T"/>.</summary>
    public static ArrayView<T> GetDynamic<T>() where T : unmanaged
        => KernelContext.Current.Group.DynamicShared<T>();
}

/// <summary>Atomic read-modify-write on device memory; returns the old value.</summary>
public static class Atomic
{
    /// <summary>target += value.</summary>
    public static float Add(ref float target, float value)
    {
        float old, sum;
        do { old = Volatile.Read(ref target); sum = old + value; }
        while (Interlocked.CompareExchange(ref target, sum, old) != old && !float.IsNaN(old));
        return old;
    }

    /// <summary>target += value.</summary>
    public static int Add(ref int target, int value) => Interlocked.Add(ref target, value) - value;

    /// <summary>target = max(target, value).</summary>
    public static float Max(ref float target, float value)
    {
        float old;
        do { old = Volatile.Read(ref target); if (!(value > old)) return old; }
        while (Interlocked.CompareExchange(ref target, value, old) != old);
        return old;
    }

    /// <summary>target = max(target, value).</summary>
    public static int Max(ref int target, int value)
    {
        int old;
        do { old = Volatile.Read(ref target); if (value <= old) return old; }
        while (Interlocked.CompareExchange(ref target, value, old) != old);
        return old;
    }

    /// <summary>target = min(target, value).</summary>
    public static int Min(ref int target, int value)
    {
        int old;
        do { old = Volatile.Read(ref target); if (value >= old) return old; }
        while (Interlocked.CompareExchange(ref target, value, old) != old);
        return old;
    }

    /// <summary>If target == comparand then target = value.</summary>
    public static int CompareExchange(ref int target, int comparand, int value) => Interlocked.CompareExchange(ref target, value, comparand);
}
