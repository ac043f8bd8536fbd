using Engine.Runtime;
using Xunit.Abstractions;

namespace Engine.Tests.Runtime;

/// <summary>NVRTC bindings, the ptxas report parser and the disk cache of cubins (CI: libnvrtc11.2, CUDA 11.8).</summary>
public sealed class NvrtcTests(ITestOutputHelper output) : IDisposable
{
    private readonly string _cacheDir = Path.Combine(Path.GetTempPath(), "engine-nvrtc-tests-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        if (Directory.Exists(_cacheDir)) Directory.Delete(_cacheDir, recursive: true);
    }

    private const string VectorAdd = """
        extern "C" __global__ void vector_add(const float* a, const float* b, float* y, int n)
        {
            int i = blockIdx.x * blockDim.x + threadIdx.x;
            if (i < n) y[i] = a[i] + b[i];
        }

        extern "C" __global__ void block_sum(const float* x, float* sums, int n)
        {
            __shared__ float scratch[256];
            int t = threadIdx.x, i = blockIdx.x * blockDim.x + t;
            scratch[t] = i < n ? x[i] : 0.0f;
            __syncthreads();
            for (int s = blockDim.x / 2; s > 0; s /= 2) { if (t < s) scratch[t] += scratch[t + s]; __syncthreads(); }
            if (t == 0) sums[blockIdx.x] = scratch[0];
        }
        """;

    /// <summary>A per-thread array indexed by run-time values cannot live in registers: it goes to the stack (local memory).</summary>
    private const string LocalArray = """
        extern "C" __global__ void local_array(float* y, const int* idx)
        {
            float a[256];
            for (int i = 0; i < 256; i++) a[i] = y[i] * i;
            y[threadIdx.x] = a[idx[threadIdx.x] & 255] + a[idx[threadIdx.x + 1] & 255];
        }
        """;

    /// <summary>64 live values under a 16-register cap: ptxas must spill.</summary>
    private const string Pressure = """
        extern "C" __global__ void pressure(float* y)
        {
            float v[64];
            #pragma unroll
            for (int i = 0; i < 64; i++) v[i] = y[i * blockDim.x + threadIdx.x];
            float s = 0.0f;
            #pragma unroll
            for (int i = 0; i < 64; i++) s += v[i] * v[63 - i] * v[(i * 7) & 63];
            #pragma unroll
            for (int i = 0; i < 64; i++) y[i * blockDim.x + threadIdx.x] = v[i] * s;
        }
        """;

    [BackendFact("nvrtc")]
    public void ReportsLibraryAndVersion()
    {
        output.WriteLine(Nvrtc.Description);
        Assert.Null(Nvrtc.MissingReason);
        Assert.StartsWith("libnvrtc.so", Nvrtc.LibraryName);
        var (major, minor) = Nvrtc.Version;
        Assert.InRange(major, 11, 13);
        Assert.InRange(minor, 0, 9);
        if (major > 11 || minor >= 8) // sm_90 arrived in CUDA 11.8
            Assert.Superset(new HashSet<int> { 70, 80, 90 }, Nvrtc.SupportedArchitectures.ToHashSet());
    }

    [BackendTheory("nvrtc")]
    [InlineData("sm_70")]
    [InlineData("sm_80")]
    [InlineData("sm_90")]
    public void CompilesToCubinWithARegisterReportAndNoSpills(string arch)
    {
        var module = Nvrtc.Compile(VectorAdd, arch);
        foreach (var k in module.Kernels) output.WriteLine(k.ToString());
        Assert.Equal(arch, module.Architecture);
        Assert.False(module.FromCache);
        Assert.True(module.Cubin.Length > 64);
        Assert.Equal(0x7F, module.Cubin[0]); // an ELF image
        Assert.Equal((byte)'E', module.Cubin[1]);
        Assert.Contains(".entry vector_add", module.Ptx);
        Assert.Equal(2, module.Kernels.Count);
        foreach (var kernel in module.Kernels)
        {
            Assert.Equal(arch, kernel.Architecture);
            Assert.InRange(kernel.Registers, 2, 255);
            Assert.Equal(0, kernel.SpillBytes);
            Assert.Equal(0, kernel.StackFrameBytes);
        }
        Assert.Equal(0, module.Kernel("vector_add").SharedMemoryBytes);
        Assert.Equal(256 * sizeof(float), module.Kernel("block_sum").SharedMemoryBytes);
    }

    [BackendFact("nvrtc")]
    public void ParserSeesStackFramesAndSpills()
    {
        var local = Nvrtc.Compile(LocalArray, "sm_80").Kernel("local_array");
        output.WriteLine(local.ToString());
        Assert.True(local.StackFrameBytes >= 256 * sizeof(float), local.ToString());

        var pressure = Nvrtc.Compile(Pressure, "sm_80", ["--maxrregcount=16"]).Kernel("pressure");
        output.WriteLine(pressure.ToString());
        Assert.True(pressure.SpillStoreBytes > 0 && pressure.SpillLoadBytes > 0, pressure.ToString());
    }

    [BackendFact("nvrtc")]
    public void ParsesAPtxasLogAsPrintedByNewerToolkits()
    {
        const string log = """
            ptxas info    : 0 bytes gmem
            ptxas info    : Compiling entry function '_Z3fooPf' for 'sm_90'
            ptxas info    : Function properties for _Z3fooPf
                16 bytes stack frame, 8 bytes spill stores, 4 bytes spill loads
            ptxas info    : Used 40 registers, used 1 barriers, 2048 bytes smem, 360 bytes cmem[0]
            """;
        var k = Assert.Single(PtxasReport.Parse(log));
        Assert.Equal(new KernelResourceUsage("_Z3fooPf", "sm_90", 40, 8, 4, 2048, 16, 360), k);
    }

    [BackendFact("nvrtc")]
    public void SyntaxErrorSurfacesTheLogWithTheLine()
    {
        const string broken = "extern \"C\" __global__ void k(float* y)\n{\n    y[0] = 1.0f\n}\n";
        var e = Assert.Throws<NvrtcException>(() => Nvrtc.Compile(broken, "sm_80", programName: "broken.cu"));
        output.WriteLine(e.Message);
        Assert.Equal("NVRTC_ERROR_COMPILATION", e.ErrorName);
        Assert.StartsWith("nvrtcCompileProgram", e.Call);
        Assert.Contains("broken.cu(4)", e.Log); // NVRTC reports the missing ';' where the next token is
        Assert.Contains("error", e.Message);
        Assert.Throws<ArgumentException>(() => Nvrtc.Compile(VectorAdd, "ampere"));
    }

    [BackendFact("nvrtc")]
    public void LineDirectivesPointErrorsAtTheCSharpSource()
    {
        // What the kernel compiler emits: #line maps the generated CUDA C back to the C# kernel.
        const string generated = "#line 42 \"kernels/Elementwise/Add.cs\"\nextern \"C\" __global__ void k(float* y) { y[0] = missing_name; }\n";
        var e = Assert.Throws<NvrtcException>(() => Nvrtc.Compile(generated, "sm_70"));
        output.WriteLine(e.Log);
        Assert.Contains("kernels/Elementwise/Add.cs(42)", e.Log);
        Assert.Contains("missing_name", e.Log);
    }

    [BackendFact("nvrtc")]
    public void ReportCoversEveryRequiredArchitecture()
    {
        var report = Nvrtc.Report(VectorAdd, cache: new KernelCache(_cacheDir));
        foreach (var k in report) output.WriteLine(k.ToString());
        Assert.Equal(["sm_70", "sm_70", "sm_80", "sm_80", "sm_90", "sm_90"], report.Select(k => k.Architecture));
        Assert.All(report, k => Assert.Equal(0, k.SpillBytes));
    }

    [BackendFact("nvrtc")]
    public void CompilesToPtxForAVirtualArchitecture()
    {
        string ptx = Nvrtc.CompileToPtx(VectorAdd, "compute_70");
        Assert.Contains(".target sm_70", ptx);
        Assert.Contains(".entry vector_add", ptx);
    }

    [BackendFact("nvrtc")]
    public void SecondCompileIsACacheHit()
    {
        var cache = new KernelCache(_cacheDir);
        var first = Nvrtc.Compile(VectorAdd, "sm_80", cache: cache);
        var second = Nvrtc.Compile(VectorAdd, "sm_80", cache: cache);
        Assert.False(first.FromCache);
        Assert.True(second.FromCache);
        Assert.Equal(first.Cubin, second.Cubin);
        Assert.Equal(first.Ptx, second.Ptx);
        Assert.Equal(first.Kernels, second.Kernels);
        Assert.Equal(1, cache.Hits);
        // A different architecture or option is a different entry.
        Assert.False(Nvrtc.Compile(VectorAdd, "sm_90", cache: cache).FromCache);
        Assert.False(Nvrtc.Compile(VectorAdd, "sm_80", ["-lineinfo"], cache: cache).FromCache);
        Assert.Equal(3, Directory.GetFiles(_cacheDir, "*.kbin").Length);
        Assert.Empty(Directory.GetFiles(_cacheDir, "*.tmp"));
    }

    [BackendFact("nvrtc")]
    public void CorruptCacheEntriesAreRecompiledNotTrusted()
    {
        var cache = new KernelCache(_cacheDir);
        var original = Nvrtc.Compile(VectorAdd, "sm_70", cache: cache);
        string path = Assert.Single(Directory.GetFiles(_cacheDir, "*.kbin"));

        // A flipped byte in the cubin: the payload hash no longer matches.
        var bytes = File.ReadAllBytes(path);
        bytes[^10] ^= 0x5A;
        File.WriteAllBytes(path, bytes);
        var afterFlip = Nvrtc.Compile(VectorAdd, "sm_70", cache: cache);
        Assert.False(afterFlip.FromCache);
        Assert.Equal(original.Cubin, afterFlip.Cubin);

        // A truncated file: the lengths no longer add up.
        File.WriteAllBytes(path, File.ReadAllBytes(path)[..100]);
        Assert.False(Nvrtc.Compile(VectorAdd, "sm_70", cache: cache).FromCache);
        Assert.Equal(2, cache.Rejected);

        // The rewritten entry is good again.
        Assert.True(Nvrtc.Compile(VectorAdd, "sm_70", cache: cache).FromCache);
    }

    [Fact]
    public void CacheDirectoryFollowsXdgAndTheOverride()
    {
        Assert.Equal("/tmp/x", new KernelCache("/tmp/x").Directory);
        Assert.Equal("/o", KernelCache.ResolveDirectory("/o", "/xdg", "/home/u"));
        Assert.Equal("/xdg/engine/kernels", KernelCache.ResolveDirectory(null, "/xdg", "/home/u"));
        Assert.Equal("/home/u/.cache/engine/kernels", KernelCache.ResolveDirectory("", "", "/home/u"));
        Assert.NotEqual(KernelCache.Key("a", [], "sm_80", "11.8"), KernelCache.Key("a", [], "sm_90", "11.8"));
        Assert.NotEqual(KernelCache.Key("a", [], "sm_80", "11.8"), KernelCache.Key("a", [], "sm_80", "12.0"));
        Assert.NotEqual(KernelCache.Key("a", ["-O3"], "sm_80", "11.8"), KernelCache.Key("a", [], "sm_80", "11.8"));
    }
}
