using Engine.Runtime.Kernels;

namespace Engine.Tests.Runtime;

/// <summary>Kernels the common <see cref="Engine.Runtime.Accelerator"/> API is tested with, on every backend.</summary>
public static partial class AcceleratorKernels
{
    /// <summary>Group size of <see cref="GroupSum"/>.</summary>
    public const int SumGroup = 32;

    /// <summary>y = a + b.</summary>
    [Kernel]
    public static void Add(ArrayView<float> a, ArrayView<float> b, ArrayView<float> y)
    {
        int i = Grid.GlobalIndexX;
        if (i < y.Length) y[i] = a[i] + b[i];
    }

    /// <summary>One sum per group: a shared-memory tree reduction with barriers (groups of <see cref="SumGroup"/>).</summary>
    [Kernel]
    public static void GroupSum(ArrayView<double> x, ArrayView<double> sums)
    {
        var shared = SharedMemory.Allocate<double>(SumGroup);
        int t = Group.IdxX, i = Grid.GlobalIndexX;
        shared[t] = i < x.Length ? x[i] : 0.0;
        Group.Barrier();
        for (int stride = SumGroup / 2; stride > 0; stride /= 2)
        {
            if (t < stride) shared[t] += shared[t + stride];
            Group.Barrier();
        }
        if (t == 0) sums[Grid.IdxX] = shared[0];
    }

    /// <summary>y[i] = x[i] + (long)i, and the kernel slices a view too: the first element of <paramref name="x"/>'s second half is copied to <paramref name="marker"/>.</summary>
    [Kernel]
    public static void AddIndex(ArrayView<long> x, ArrayView<long> y, ArrayView<long> marker)
    {
        int i = Grid.GlobalIndexX;
        if (i < y.Length) y[i] = x[i] + i;
        var half = x.SubView(x.Length / 2, x.Length - x.Length / 2);
        if (i == 0 && half.Length > 0) marker[0] = half[0];
    }

    /// <summary>y = ±scale·x, the sign chosen by a bool parameter (4 bytes on OpenCL, 1 on CUDA).</summary>
    [Kernel]
    public static void ScaleSigned(ArrayView<int> x, ArrayView<int> y, int scale, bool negate, int offset)
    {
        int i = Grid.GlobalIndexX;
        if (i < y.Length) y[i] = (negate ? -scale : scale) * x[i] + offset;
    }

    /// <summary>Each group rotates its slice left by one through dynamic shared memory sized at launch.</summary>
    [Kernel]
    public static void RotateGroup(ArrayView<float> x, ArrayView<float> y)
    {
        var buffer = SharedMemory.GetDynamic<float>();
        int t = Group.IdxX, i = Grid.GlobalIndexX;
        buffer[t] = x[i];
        Group.Barrier();
        y[i] = buffer[(t + 1) % Group.DimX];
    }
}
