using Engine.Runtime;
using Engine.Tensors;

namespace Engine.Tests.Core;

public class FactoryAndMemoryTests
{
    [Fact]
    public void Factories_FillShapeAndDType()
    {
        using var z = Tensor.Zeros([2, 3], DType.Int64);
        Assert.Equal(new long[6], z.ToArray<long>());
        using var f = Tensor.Full([3], 2.5, DType.Float64);
        Assert.Equal([2.5, 2.5, 2.5], f.ToArray<double>());
        using var s = Tensor.Scalar(4);
        Assert.Equal(0, s.Rank);
        Assert.Equal(1, s.NumEl);
        Assert.Equal(4f, s.Item<float>());
        using var a = Tensor.Arange(5);
        Assert.Equal([0L, 1, 2, 3, 4], a.ToArray<long>());
        using var e = Tensor.Zeros([0, 4]);
        Assert.Equal(0, e.NumEl);
        Assert.Empty(e.ToArray<float>());
    }

    [Fact]
    public void Factories_RejectBadInput()
    {
        Assert.Contains("Zeros", Assert.Throws<ArgumentException>(() => Tensor.Zeros([2, -1])).Message);
        Assert.Contains("FromArray", Assert.Throws<ArgumentException>(() => Tensor.FromArray(new float[5], 2, 3)).Message);
        using var t = Tensor.Zeros([2]);
        Assert.Contains("Item", Assert.Throws<InvalidOperationException>(() => t.Item<float>()).Message);
        Assert.Contains("float32", Assert.Throws<InvalidOperationException>(() => t.ToArray<double>()).Message);
        Assert.Throws<InvalidOperationException>(() => Tensor.Zeros([1], DType.Int32).RequiresGrad_());
    }

    [Fact]
    public void Casts_BetweenAllDTypes()
    {
        using var f = Tensor.FromArray([-1.7, 0.0, 2.9]);
        Assert.Equal([-1, 0, 2], f.To(DType.Int32).ToArray<int>());
        Assert.Equal([-1L, 0, 2], f.To(DType.Int64).ToArray<long>());
        Assert.Equal([true, false, true], f.To(DType.Bool).ToArray<bool>());
        Assert.Equal([1f, 0f, 1f], f.To(DType.Bool).To(DType.Float32).ToArray<float>());
        Assert.Equal([-1.7f, 0f, 2.9f], f.To(DType.Float32).ToArray<float>());
    }

    [Fact]
    public void Storage_IsFreedWhenLastViewIsDisposed()
    {
        var alloc = CpuAllocator.Shared;
        long before = alloc.CurrentBytes;
        var t = Tensor.Zeros([1 << 20]); // 4 MiB
        var view = t.Narrow(0, 10, 100);
        t.Dispose();
        Assert.True(alloc.CurrentBytes >= before + (4 << 20) || alloc.CurrentBytes > before);
        Assert.Equal(0f, view.ToArray<float>()[0]);
        view.Dispose();
        // Other tests run in parallel and allocate too; ours must at least be back in the cache.
        Assert.True(alloc.CachedBytes >= 4 << 20);
    }

    [Fact]
    public void Allocator_ReusesFreedBlocksAndTracksPeak()
    {
        var alloc = new CpuAllocator();
        var a = alloc.Allocate(3 << 20);
        Assert.Equal(3 << 20, alloc.CurrentBytes);
        a.Dispose();
        Assert.Equal(0, alloc.CurrentBytes);
        Assert.Equal(3 << 20, alloc.CachedBytes);
        var b = alloc.Allocate((3 << 20) - 100, zero: true);
        Assert.Equal(0, alloc.CachedBytes); // the cached block was reused
        Assert.Equal(3 << 20, alloc.PeakBytes);
        Assert.Equal(-1, b.AsSpan<byte>(0, (3 << 20) - 100).IndexOfAnyExcept((byte)0)); // all zero
        b.Dispose();
        alloc.EmptyCache();
        Assert.Equal(0, alloc.CachedBytes);
        Assert.Equal(64, CpuAllocator.SizeClass(1));
        Assert.Equal(1024, CpuAllocator.SizeClass(1000));
        Assert.Equal(2 << 20, CpuAllocator.SizeClass((1 << 20) + 1));
    }

    [Fact]
    public void Device_ParsesAndPrints()
    {
        Assert.Equal(Device.Cpu, Device.Parse("cpu"));
        Assert.Equal(new Device(DeviceType.Cuda, 1), Device.Parse("cuda:1"));
        Assert.Equal("opencl:0", Device.Parse("OpenCL").ToString());
        Assert.Throws<FormatException>(() => Device.Parse("tpu"));
        Assert.Throws<FormatException>(() => Device.Parse("cuda:-1"));
    }

    [Fact]
    public void ToString_ShowsValuesShapeAndGrad()
    {
        using var t = Tensor.FromArray([1.5f, 2f]).RequiresGrad_();
        Assert.Equal("Tensor([1.5, 2], shape=[2], dtype=float32, requires_grad=true)", t.ToString());
        using var y = t * 2.0;
        Assert.Contains("grad_fn=mul", y.ToString());
    }
}
