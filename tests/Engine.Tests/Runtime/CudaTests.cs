using Engine.Runtime;
using Xunit.Abstractions;

namespace Engine.Tests.Runtime;

/// <summary>
/// The CUDA driver bindings and <see cref="CudaAccelerator"/>, end to end (NVRTC → cubin → module →
/// launch). They run where a GPU and libcuda.so.1 exist and are skipped with the reason elsewhere.
/// </summary>
public sealed class CudaTests(ITestOutputHelper output) : IDisposable
{
    private readonly string _cacheDir = Path.Combine(Path.GetTempPath(), "engine-cuda-tests-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        if (Directory.Exists(_cacheDir)) Directory.Delete(_cacheDir, recursive: true);
    }

    private const string Source = """
        extern "C" __global__ void vector_add(const float* a, const float* b, float* y, int n)
        {
            int i = blockIdx.x * blockDim.x + threadIdx.x;
            if (i < n) y[i] = a[i] + b[i];
        }

        extern "C" __global__ void block_sum(const float* x, float* sums, int n, double scale)
        {
            extern __shared__ float scratch[];
            int t = threadIdx.x, i = blockIdx.x * blockDim.x + t;
            scratch[t] = i < n ? x[i] : 0.0f;
            __syncthreads();
            for (int s = blockDim.x / 2; s > 0; s /= 2) { if (t < s) scratch[t] += scratch[t + s]; __syncthreads(); }
            if (t == 0) sums[blockIdx.x] = (float)(scratch[0] * scale);
        }
        """;

    [Fact]
    public void MissingDriverIsReportedWithAClearReason()
    {
        string? reason = CudaAccelerator.MissingReason;
        output.WriteLine(reason ?? "CUDA available");
        if (reason is null)
        {
            Assert.True(CudaAccelerator.IsAvailable);
            return;
        }
        Assert.False(CudaAccelerator.IsAvailable);
        if (!System.Runtime.InteropServices.NativeLibrary.TryLoad("libcuda.so.1", out _))
            Assert.Equal("libcuda.so.1 not found", reason);
        var e = Assert.Throws<CudaException>(() => new CudaAccelerator());
        Assert.Contains(reason, e.Message);
    }

    [BackendFact("cuda")]
    public void ListsDevicesWithTheirAttributes()
    {
        var devices = CudaDevices.List();
        Assert.NotEmpty(devices);
        foreach (var d in devices) output.WriteLine(d.ToString());
        output.WriteLine($"driver {CudaDevices.DriverVersion}");
        var first = devices[0];
        Assert.False(string.IsNullOrWhiteSpace(first.Name));
        Assert.True(first.Major >= 3);
        Assert.True(first.MultiprocessorCount >= 1);
        Assert.True(first.SharedMemoryPerBlock >= 16 * 1024);
        Assert.Equal(32, first.WarpSize);
        Assert.True(first.TotalMemoryBytes > 0);
    }

    [BackendFact("cuda")]
    public void VectorAddRunsEndToEnd()
    {
        using var cuda = new CudaAccelerator(cache: new KernelCache(_cacheDir));
        var rng = new Random(3);
        foreach (int n in new[] { 1, 255, 256, 100_003 })
        {
            var a = Enumerable.Range(0, n).Select(_ => (float)rng.NextDouble()).ToArray();
            var b = Enumerable.Range(0, n).Select(_ => (float)rng.NextDouble()).ToArray();
            using var da = cuda.Allocate<float>(a);
            using var db = cuda.Allocate<float>(b);
            using var dy = cuda.Allocate(n * sizeof(float), zero: true);
            cuda.Launch(Source, "vector_add", (n + 255) / 256, 256, da, db, dy, n);
            var y = cuda.ToArray<float>(dy);
            for (int i = 0; i < n; i++) Assert.Equal(a[i] + b[i], y[i]);
        }
    }

    [BackendFact("cuda")]
    public void DynamicSharedMemoryReductionOnAStreamWithTiming()
    {
        using var cuda = new CudaAccelerator(cache: new KernelCache(_cacheDir));
        const int group = 128, n = 10_007;
        int groups = (n + group - 1) / group;
        var x = Enumerable.Range(0, n).Select(i => (float)(i % 17) / 17f).ToArray();
        using var dx = cuda.Allocate<float>(x);
        using var dsums = cuda.Allocate(groups * sizeof(float));
        using var stream = cuda.CreateStream();
        using var start = cuda.CreateEvent();
        using var stop = cuda.CreateEvent();
        var module = cuda.Load(Source);
        Assert.Same(module, cuda.Load(Source));
        start.Record(stream);
        cuda.Launch(module, "block_sum", groups, group, group * sizeof(float), stream, dx, dsums, n, 2.0);
        stop.Record(stream);
        stream.Synchronize();
        stop.Synchronize();
        float ms = stop.ElapsedMillisecondsSince(start);
        output.WriteLine($"block_sum: {ms:F3} ms");
        Assert.True(ms >= 0);
        var sums = cuda.ToArray<float>(dsums);
        for (int g = 0; g < groups; g++)
        {
            double reference = 0;
            for (int i = g * group; i < Math.Min(n, (g + 1) * group); i++) reference += x[i];
            Assert.Equal(reference * 2, sums[g], 1e-3);
        }
    }

    [BackendFact("cuda")]
    public void DriverErrorsCarryTheirNames()
    {
        using var cuda = new CudaAccelerator(cache: new KernelCache(_cacheDir));
        using var y = cuda.Allocate(16);
        // A block larger than any device allows: CUDA_ERROR_INVALID_VALUE from cuLaunchKernel.
        var e = Assert.Throws<CudaException>(() => cuda.Launch(Source, "vector_add", 1, 4096, y, y, y, 4));
        output.WriteLine(e.Message);
        Assert.StartsWith("CUDA_ERROR_", e.ErrorName);
        Assert.StartsWith("cuLaunchKernel", e.Call);
        var name = Assert.Throws<CudaException>(() => cuda.Launch(Source, "no_such_kernel", 1, 1));
        Assert.Equal("CUDA_ERROR_NOT_FOUND", name.ErrorName);
        Assert.Throws<ArgumentException>(() => cuda.Launch(Source, "vector_add", 1, 1, KernelArg.Local(16)));
    }
}
