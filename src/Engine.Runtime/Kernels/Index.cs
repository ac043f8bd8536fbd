namespace Engine.Runtime.Kernels;

/// <summary>The grid of groups a kernel was launched with (CUDA: blockIdx, gridDim).</summary>
public static class Grid
{
    /// <summary>Index of this thread's group in x.</summary>
    public static int IdxX => KernelContext.Current.GroupIndex.X;
    /// <summary>Index of this thread's group in y.</summary>
    public static int IdxY => KernelContext.Current.GroupIndex.Y;
    /// <summary>Index of this thread's group in z.</summary>
    public static int IdxZ => KernelContext.Current.GroupIndex.Z;
    /// <summary>Number of groups in x.</summary>
    public static int DimX => KernelContext.Current.GridDim.X;
    /// <summary>Number of groups in y.</summary>
    public static int DimY => KernelContext.Current.GridDim.Y;
    /// <summary>Number of groups in z.</summary>
    public static int DimZ => KernelContext.Current.GridDim.Z;
    /// <summary>Global thread index in x: <c>IdxX * Group.DimX + Group.IdxX</c>.</summary>
    public static int GlobalIndexX => IdxX * Group.DimX + Group.IdxX;
    /// <summary>Global thread index in y.</summary>
    public static int GlobalIndexY => IdxY * Group.DimY + Group.IdxY;
}

/// <summary>This thread's group (CUDA: threadIdx, blockDim, __syncthreads).</summary>
public static class Group
{
    /// <summary>Thread index within the group in x.</summary>
    public static int IdxX => KernelContext.Current.ThreadIndex.X;
    /// <summary>Thread index within the group in y.</summary>
    public static int IdxY => KernelContext.Current.ThreadIndex.Y;
    /// <summary>Thread index within the group in z.</summary>
    public static int IdxZ => KernelContext.Current.ThreadIndex.Z;
    /// <summary>Threads per group in x.</summary>
    public static int DimX => KernelContext.Current.GroupDim.X;
    /// <summary>Threads per group in y.</summary>
    public static int DimY => KernelContext.Current.GroupDim.Y;
    /// <summary>Threads per group in z.</summary>
    public static int DimZ => KernelContext.Current.GroupDim.Z;
    /// <summary>Linear thread index within the group.</summary>
    public static int LinearIndex => KernelContext.Current.LinearThreadIndex;

    /// <summary>Waits until every thread of the group reaches this barrier; shared-memory writes before it are visible after it.</summary>
    public static void Barrier() => KernelContext.Current.Group.Barrier.Wait(KernelContext.Current);

    /// <summary>
    /// The sum of <paramref name="value"/> over every thread of the group, returned to every thread.
    /// Every thread must call it (it contains barriers). Order: a shared-memory tree (s[t] += s[t + stride],
    /// stride halving from the next power of two), the same on every backend, so results are bitwise equal.
    /// Groups of at most 1024 threads.
    /// </summary>
    public static float ReduceSum(float value) => KernelContext.Current.Group.Reduce(KernelContext.Current, value, max: false);

    /// <summary>The maximum of <paramref name="value"/> over the group (NaN-propagating as fmaxf is not: NaN is ignored), to every thread.</summary>
    public static float ReduceMax(float value) => KernelContext.Current.Group.Reduce(KernelContext.Current, value, max: true);
}

/// <summary>This thread's warp: 32 lanes that execute together (CUDA warps; emulated on OpenCL).</summary>
public static class Warp
{
    /// <summary>Lanes per warp.</summary>
    public const int WarpSize = 32;

    /// <summary>Lane of this thread within its warp.</summary>
    public static int LaneIdx => KernelContext.Current.LinearThreadIndex % WarpSize;

    /// <summary>Index of this thread's warp within its group.</summary>
    public static int WarpIdx => KernelContext.Current.LinearThreadIndex / WarpSize;

    /// <summary>The value of <paramref name="value"/> held by lane <c>LaneIdx ^ laneMask</c> (every lane must call it).</summary>
    public static float ShuffleXor(float value, int laneMask) => KernelContext.Current.Group.Shuffle(KernelContext.Current, value, LaneIdx ^ laneMask);

    /// <summary>The value held by lane <c>LaneIdx ^ laneMask</c>.</summary>
    public static int ShuffleXor(int value, int laneMask) => BitConverter.SingleToInt32Bits(ShuffleXor(BitConverter.Int32BitsToSingle(value), laneMask));

    /// <summary>The value held by lane <c>LaneIdx + delta</c> (this lane's own value past the end of the warp).</summary>
    public static float ShuffleDown(float value, int delta)
    {
        int source = LaneIdx + delta;
        return KernelContext.Current.Group.Shuffle(KernelContext.Current, value, source < WarpSize ? source : LaneIdx);
    }

    /// <summary>The value held by lane <c>LaneIdx + delta</c>.</summary>
    public static int ShuffleDown(int value, int delta) => BitConverter.SingleToInt32Bits(ShuffleDown(BitConverter.Int32BitsToSingle(value), delta));

    /// <summary>
    /// The sum of <paramref name="value"/> over the 32 lanes of this warp, returned to every lane
    /// (butterfly: v += ShuffleXor(v, 16), 8, 4, 2, 1 — the same order on every backend). Every lane
    /// must call it; on OpenCL every thread of the group (see ShuffleXor). Full warps only.
    /// </summary>
    public static float ReduceSum(float value)
    {
        for (int mask = WarpSize / 2; mask > 0; mask /= 2) value += ShuffleXor(value, mask);
        return value;
    }

    /// <summary>The maximum of <paramref name="value"/> over the warp's lanes (fmaxf semantics: NaN ignored), to every lane.</summary>
    public static float ReduceMax(float value)
    {
        for (int mask = WarpSize / 2; mask > 0; mask /= 2) value = XMath.Max(value, ShuffleXor(value, mask));
        return value;
    }
}

/// <summary>Three sizes or indices.</summary>
/// <param name="X">x.</param>
/// <param name="Y">y.</param>
/// <param name="Z">z.</param>
public readonly record struct Dim3(int X, int Y = 1, int Z = 1)
{
    /// <summary>X·Y·Z.</summary>
    public long Size => (long)X * Y * Z;

    /// <summary>A 1-D size.</summary>
    public static implicit operator Dim3(int x) => new(x);
}
