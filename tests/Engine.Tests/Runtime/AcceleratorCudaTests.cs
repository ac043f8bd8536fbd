using Engine.Runtime;

namespace Engine.Tests.Runtime;

/// <summary>
/// The common <see cref="Accelerator"/> scenarios on CUDA (the generated CUDA C through NVRTC and the
/// disk kernel cache, launched with real device pointers), compared with the emulator. They run where
/// a GPU and libcuda.so.1 exist and are skipped with the reason elsewhere.
/// </summary>
public sealed class AcceleratorCudaTests : IDisposable
{
    private static readonly EmulatorAccelerator Emulator = new();
    private readonly string _cacheDir = Path.Combine(Path.GetTempPath(), "engine-accel-cuda-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        if (Directory.Exists(_cacheDir)) Directory.Delete(_cacheDir, recursive: true);
    }

    private void OnEmulatorAndCuda<T>(Func<Accelerator, T[]> scenario)
    {
        var emulated = scenario(Emulator);
        using var cuda = new CudaAccelerator(cache: new KernelCache(_cacheDir));
        var device = scenario(cuda);
        Assert.Equal(emulated.Length, device.Length);
        // CUDA may contract a*b+c into an FMA, so floats are compared by the scenario's reference, not bitwise.
        if (typeof(T) != typeof(float) && typeof(T) != typeof(double)) Assert.Equal(emulated, device);
    }

    [BackendFact("cuda")]
    public void VectorAdd_OnCuda() => OnEmulatorAndCuda(AcceleratorScenarios.VectorAdd);

    [BackendFact("cuda")]
    public void TypedLauncher_OnAStream_QueuesAndCompletesOnSynchronize()
    {
        const int n = 5000, group = 128;
        var rng = new Random(9);
        float[] a = Enumerable.Range(0, n).Select(_ => (float)rng.NextDouble()).ToArray(), b = a.Reverse().ToArray();
        using var cuda = new CudaAccelerator(cache: new KernelCache(_cacheDir));
        using var stream = cuda.CreateStream();
        using var da = cuda.Allocate<float>(a);
        using var db = cuda.Allocate<float>(b);
        using var dy = cuda.Allocate(n * sizeof(float), zero: true);
        using var start = cuda.CreateEvent();
        using var end = cuda.CreateEvent();
        start.Record(stream);
        AcceleratorKernels.Launch.Add(stream, (n + group - 1) / group, group, da.View<float>(), db.View<float>(), dy.View<float>());
        end.Record(stream);
        stream.Synchronize();
        Assert.True(end.ElapsedMillisecondsSince(start) >= 0);
        var y = cuda.ToArray<float>(dy);
        for (int i = 0; i < n; i++) Assert.Equal(a[i] + b[i], y[i]);
    }

    [BackendFact("cuda")]
    public void SharedMemoryReduction_OnCuda() => OnEmulatorAndCuda(AcceleratorScenarios.GroupSum);

    [BackendFact("cuda")]
    public void SubViewOffsets_OnCuda() => OnEmulatorAndCuda(AcceleratorScenarios.SubViews);

    [BackendFact("cuda")]
    public void BoolParameter_OnCuda() => OnEmulatorAndCuda(AcceleratorScenarios.BoolParameter);

    [BackendFact("cuda")]
    public void DynamicSharedMemory_OnCuda() => OnEmulatorAndCuda(AcceleratorScenarios.DynamicShared);

    [BackendFact("cuda")]
    public void MismatchedArguments_OnCuda()
    {
        using var cuda = new CudaAccelerator(cache: new KernelCache(_cacheDir));
        AcceleratorScenarios.ArgumentErrors(cuda);
    }

    [BackendFact("cuda")]
    public void CudaAllocator_ReusesFreedBlocks_AndViewsAreDevicePointers()
    {
        using var cuda = new CudaAccelerator(cache: new KernelCache(_cacheDir));
        var memory = cuda.Allocator;
        var a = cuda.Allocate(5000);
        Assert.Equal(8192, memory.CurrentBytes);
        ulong pointer = a.DevicePointer;
        Assert.Equal(pointer, a.Address);
        Assert.Equal(pointer + 16, (ulong)a.View<float>().SubView(4, 10).Address());
        a.Dispose();
        Assert.Equal(8192, memory.CachedBytes);
        using var b = cuda.Allocate(4097);
        Assert.Equal(pointer, b.DevicePointer);
        Assert.Equal(0, memory.CachedBytes);
        Assert.Equal(8192, memory.PeakBytes);
        memory.EmptyCache();
    }
}
