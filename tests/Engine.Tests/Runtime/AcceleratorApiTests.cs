using Engine.Runtime;
using Engine.Runtime.Kernels;

namespace Engine.Tests.Runtime;

/// <summary>
/// The common <see cref="Accelerator"/> API: the same translated kernels (AcceleratorKernels.cs), launched
/// through their generated <c>Launch.X(accelerator, ...)</c>, on the emulator and on OpenCL (PoCL),
/// compared with a reference and with each other; on CUDA where a GPU exists (AcceleratorCudaTests).
/// </summary>
public sealed class AcceleratorApiTests
{
    private static readonly EmulatorAccelerator Emulator = new();

    /// <summary>Runs <paramref name="scenario"/> on the emulator and on OpenCL; both results must be equal.</summary>
    private static void OnEmulatorAndOpenCL<T>(Func<Accelerator, T[]> scenario)
    {
        var emulated = scenario(Emulator);
        using var cl = new OpenCLAccelerator();
        var opencl = scenario(cl);
        Assert.Equal(emulated, opencl);
    }

    [BackendFact("opencl")]
    public void VectorAdd_SameOnEmulatorAndOpenCL() => OnEmulatorAndOpenCL(AcceleratorScenarios.VectorAdd);

    [BackendFact("opencl")]
    public void SharedMemoryReduction_SameOnEmulatorAndOpenCL() => OnEmulatorAndOpenCL(AcceleratorScenarios.GroupSum);

    [BackendFact("opencl")]
    public void SubViewOffsets_HostAndKernelSide_SameOnEmulatorAndOpenCL() => OnEmulatorAndOpenCL(AcceleratorScenarios.SubViews);

    [BackendFact("opencl")]
    public void BoolParameter_SameOnEmulatorAndOpenCL() => OnEmulatorAndOpenCL(AcceleratorScenarios.BoolParameter);

    [BackendFact("opencl")]
    public void DynamicSharedMemory_SameOnEmulatorAndOpenCL() => OnEmulatorAndOpenCL(AcceleratorScenarios.DynamicShared);

    [Fact]
    public void MismatchedArguments_NameTheKernelTheIndexAndTheExpectation() => AcceleratorScenarios.ArgumentErrors(Emulator);

    [BackendFact("opencl")]
    public void MismatchedArguments_OnOpenCL()
    {
        using var cl = new OpenCLAccelerator();
        AcceleratorScenarios.ArgumentErrors(cl);
    }

    [BackendFact("opencl")]
    public void OpenCLViews_OfForeignOrDisposedMemory_AreRejected()
    {
        using var cl = new OpenCLAccelerator();
        using var other = new OpenCLAccelerator();
        using var a = cl.Allocate(64 * sizeof(float), zero: true);
        using var y = cl.Allocate(64 * sizeof(float));
        using var host = Emulator.Allocate(64 * sizeof(float));
        using var foreign = other.Allocate(64 * sizeof(float));
        var av = a.View<float>();

        var e = Assert.Throws<ArgumentException>(() => AcceleratorKernels.Launch.Add(cl, 1, 64, host.View<float>(), av, y.View<float>()));
        Assert.Contains("argument 0 (a)", e.Message);
        Assert.Contains("not OpenCL memory", e.Message);

        e = Assert.Throws<ArgumentException>(() => AcceleratorKernels.Launch.Add(cl, 1, 64, av, foreign.View<float>(), y.View<float>()));
        Assert.Contains("argument 1 (b)", e.Message);
        Assert.Contains("no live OpenCL buffer", e.Message);

        var stale = cl.Allocate(64 * sizeof(float));
        var staleView = stale.View<float>();
        stale.Dispose();
        using var reused = cl.Allocate(64 * sizeof(float)); // same cached cl_mem, new address range
        Assert.NotEqual(staleView.Address(), reused.View<float>().Address());
        e = Assert.Throws<ArgumentException>(() => AcceleratorKernels.Launch.Add(cl, 1, 64, av, av, staleView));
        Assert.Contains("argument 2 (y)", e.Message);

        unsafe
        {
            var tooLong = new ArrayView<float>(av.Pointer + 8, 60); // past the end of a 64-float buffer
            e = Assert.Throws<ArgumentException>(() => AcceleratorKernels.Launch.Add(cl, 1, 64, tooLong, av, y.View<float>()));
            Assert.Contains("exceed", e.Message);
        }

        // (The typed emulator overload runs the C# directly and cannot check; the Accelerator path does.)
        e = Assert.Throws<ArgumentException>(() => AcceleratorKernels.Launch.Add((Accelerator)Emulator, 1, 64, av, av, av));
        Assert.Contains("OpenCL memory", e.Message);
    }

    [BackendFact("opencl")]
    public void OpenCLAllocator_ReusesFreedBlocksAndTracksPeak()
    {
        using var cl = new OpenCLAccelerator();
        var memory = cl.Allocator;
        Assert.Equal(0, memory.CurrentBytes);
        var a = cl.Allocate(1000);
        var b = cl.Allocate(3 << 20);
        Assert.Equal(1024 + (3 << 20), memory.CurrentBytes);
        Assert.NotEqual(a.Address, b.Address);
        nint handle = a.Handle;
        a.Dispose();
        Assert.Equal(3 << 20, memory.CurrentBytes);
        Assert.Equal(1024, memory.CachedBytes);
        using (var c = cl.Allocate(900, zero: true)) // same size class: the cached cl_mem comes back, zeroed
        {
            Assert.Equal(handle, c.Handle);
            Assert.Equal(0, memory.CachedBytes);
            Assert.All(cl.ToArray<byte>(c), v => Assert.Equal(0, v));
        }
        Assert.Equal(1024 + (3 << 20), memory.PeakBytes);
        b.Dispose();
        Assert.Equal(0, memory.CurrentBytes);
        Assert.Equal(1024 + (3 << 20), memory.CachedBytes);
        memory.ResetPeak();
        Assert.Equal(0, memory.PeakBytes);
        memory.EmptyCache();
        Assert.Equal(0, memory.CachedBytes);
        using var empty = cl.Allocate(0); // OpenCL has no zero-sized buffers: backed by the smallest block
        Assert.Equal(CachingAllocator.MinBlockBytes, memory.CurrentBytes);
        Assert.Empty(cl.ToArray<float>(empty));
    }

    [Fact]
    public void EmulatorLaunch_OfAKernelWithoutACSharpBody_SaysWhy()
    {
        var orphan = new KernelSource("Orphan", "Orphan", "", "", []) { DeclaringType = "Nowhere.NotPartial" };
        var e = Assert.Throws<InvalidOperationException>(() => Emulator.Launch(orphan, 1, 1, 0, []));
        Assert.Contains("Orphan", e.Message);
        Assert.Contains("partial", e.Message);
    }

    [Fact]
    public void EmulatorAccelerator_CopiesThroughTheCommonApi()
    {
        Accelerator acc = Emulator;
        using var buffer = acc.Allocate<int>([1, 2, 3, 4]);
        acc.CopyFromHost<int>(buffer, [9], offsetBytes: 4);
        Assert.Equal([1, 9, 3, 4], acc.ToArray<int>(buffer));
        var part = new int[2];
        acc.CopyToHost<int>(buffer, part, offsetBytes: 8);
        Assert.Equal([3, 4], part);
        Assert.Throws<ArgumentOutOfRangeException>(() => acc.CopyToHost<int>(buffer, new int[2], offsetBytes: 12));
        Assert.Same(CpuAllocator.Shared, acc.Allocator);
        acc.Synchronize();
    }
}

/// <summary><see cref="ArrayView{T}"/> helpers for the tests.</summary>
internal static class ViewTestExtensions
{
    /// <summary>The view's address as a number.</summary>
    public static unsafe ulong Address<T>(this ArrayView<T> view) where T : unmanaged => (ulong)view.Pointer;
}
