using Engine.Runtime;
using Engine.Runtime.Kernels;

namespace Engine.Tests.Runtime;

public unsafe class EmulatorTests
{
    private static readonly EmulatorAccelerator Emulator = new();

    [Kernel]
    private static void AddKernel(ArrayView<float> a, ArrayView<float> b, ArrayView<float> y, int n)
    {
        int i = Grid.GlobalIndexX;
        if (i < n) y[i] = a[i] + b[i];
    }

    /// <summary>Sum of each group's slice: shared-memory tree reduction with barriers.</summary>
    [Kernel]
    private static void BlockSumKernel(ArrayView<float> x, ArrayView<float> sums, int n)
    {
        var shared = SharedMemory.Allocate<float>(64);
        int t = Group.IdxX, i = Grid.GlobalIndexX;
        shared[t] = i < n ? x[i] : 0f;
        Group.Barrier();
        for (int stride = Group.DimX / 2; stride > 0; stride /= 2)
        {
            if (t < stride) shared[t] += shared[t + stride];
            Group.Barrier();
        }
        if (t == 0) sums[Grid.IdxX] = shared[0];
    }

    [Kernel]
    private static void WarpSumKernel(ArrayView<float> x, ArrayView<float> y)
    {
        float v = x[Group.IdxX];
        for (int mask = Warp.WarpSize / 2; mask > 0; mask /= 2) v += Warp.ShuffleXor(v, mask);
        y[Group.IdxX] = v;
    }

    private static (CpuBuffer Buffer, ArrayView<float> View) Buffer(float[] values)
    {
        var buffer = Emulator.Allocate(values.Length * sizeof(float));
        var view = new ArrayView<float>((float*)buffer.Pointer, values.Length);
        values.AsSpan().CopyTo(new Span<float>(buffer.Pointer, values.Length));
        return (buffer, view);
    }

    [Fact]
    public void VectorAdd_SizeNotAMultipleOfTheGroup()
    {
        const int n = 77;
        var rng = new Random(1);
        var a = Enumerable.Range(0, n).Select(_ => (float)rng.NextDouble()).ToArray();
        var b = Enumerable.Range(0, n).Select(_ => (float)rng.NextDouble()).ToArray();
        var (ba, va) = Buffer(a);
        var (bb, vb) = Buffer(b);
        var (by, vy) = Buffer(new float[n]);
        Emulator.Launch((n + 31) / 32, 32, () => AddKernel(va, vb, vy, n));
        for (int i = 0; i < n; i++) Assert.Equal(a[i] + b[i], vy[i]);
        ba.Dispose(); bb.Dispose(); by.Dispose();
    }

    [Fact]
    public void SharedMemoryReduction_WithBarriers()
    {
        const int n = 200;
        var x = Enumerable.Range(0, n).Select(i => (float)i).ToArray();
        var (bx, vx) = Buffer(x);
        var (bs, vs) = Buffer(new float[4]);
        Emulator.Launch(4, 64, () => BlockSumKernel(vx, vs, n));
        for (int g = 0; g < 4; g++)
            Assert.Equal(x.Skip(g * 64).Take(64).Sum(), vs[g]);
        bx.Dispose(); bs.Dispose();
    }

    [Fact]
    public void WarpShuffle_ButterflySum()
    {
        var x = Enumerable.Range(0, 64).Select(i => (float)i).ToArray();
        var (bx, vx) = Buffer(x);
        var (by, vy) = Buffer(new float[64]);
        Emulator.Launch(1, 64, () => WarpSumKernel(vx, vy));
        for (int i = 0; i < 64; i++) Assert.Equal(i < 32 ? 496f : 1520f, vy[i]);
        bx.Dispose(); by.Dispose();
    }

    [Fact]
    public void OutOfBoundsAccess_IsReportedWithTheThread()
    {
        var (bx, vx) = Buffer(new float[10]);
        var ex = Assert.Throws<KernelFaultException>(() => Emulator.Launch(1, 16, () => { vx[Group.IdxX] = 1f; }));
        Assert.Contains("out of bounds", ex.Message);
        Assert.Contains("thread (1", ex.Message); // threads 10..15 fault; the message names one of them
        bx.Dispose();
    }

    [Fact]
    public void DivergentBarrier_IsAFaultNotAHang()
    {
        var ex = Assert.Throws<KernelFaultException>(() => Emulator.Launch(1, 8, () =>
        {
            if (Group.IdxX == 3) return;
            Group.Barrier();
        }));
        Assert.Contains("barrier", ex.Message);
    }

    [Fact]
    public void Atomics_FromEveryThread()
    {
        var (bs, vs) = Buffer(new float[2]);
        Emulator.Launch(4, 64, () =>
        {
            Atomic.Add(ref vs[0], 1f);
            Atomic.Max(ref vs[1], Grid.GlobalIndexX);
        });
        Assert.Equal(256f, vs[0]);
        Assert.Equal(255f, vs[1]);
        bs.Dispose();
    }

    [Fact]
    public void BadLaunch_AndUseOutsideAKernel_AreClearErrors()
    {
        Assert.Contains("exceeds", Assert.Throws<ArgumentException>(() => Emulator.Launch(1, 2048, () => { })).Message);
        Assert.Contains("outside a kernel", Assert.Throws<InvalidOperationException>(() => Group.IdxX).Message);
    }
}
