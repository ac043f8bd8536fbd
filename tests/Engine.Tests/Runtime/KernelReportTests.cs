using Engine.Runtime;
using Engine.Runtime.Kernels;
using Xunit.Abstractions;

namespace Engine.Tests.Runtime;

/// <summary><see cref="KernelReport"/> (what <c>engine kernels --report</c> prints), compiled with NVRTC.</summary>
public sealed class KernelReportTests(ITestOutputHelper output) : IDisposable
{
    private readonly string _cacheDir = Path.Combine(Path.GetTempPath(), "engine-report-tests-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        if (Directory.Exists(_cacheDir)) Directory.Delete(_cacheDir, recursive: true);
    }

    [BackendFact("nvrtc")]
    public void ReportsEveryKernelForSm70To90_AndFailuresAsRows()
    {
        var kernels = KernelRegistry.All.Where(k => k.DeclaringType == typeof(AcceleratorKernels).FullName).OrderBy(k => k.Name).ToList();
        Assert.Equal(5, kernels.Count);
        var broken = kernels[0] with { Name = "Broken", CudaSource = kernels[0].CudaSource.Replace("y[i] =", "y[i] = undefined_name +") };
        var cache = new KernelCache(_cacheDir);
        var rows = KernelReport.Run([.. kernels, broken], cache: cache);
        string table = KernelReport.Format(rows);
        output.WriteLine(table);

        Assert.Equal(6 * 3, rows.Count);
        Assert.Equal(["sm_70", "sm_80", "sm_90"], rows.Take(3).Select(r => r.Architecture));
        Assert.All(rows.Where(r => r.Kernel != broken), r =>
        {
            Assert.True(r.Ok, $"{r.Kernel.Name} [{r.Architecture}]: {r.Usage?.ToString() ?? r.Error}");
            Assert.True(r.Usage!.Registers > 0);
        });
        Assert.All(rows.Where(r => r.Kernel.Name == "GroupSum"), r => Assert.Equal(AcceleratorKernels.SumGroup * sizeof(double), r.Usage!.SharedMemoryBytes));
        Assert.All(rows.Where(r => r.Kernel == broken), r =>
        {
            Assert.False(r.Ok);
            Assert.Contains("undefined_name", r.Error);
        });
        Assert.Contains("regs", table);
        Assert.Contains("spill st B", table);
        Assert.Matches(@"Engine\.Tests\.Runtime\.AcceleratorKernels\.GroupSum +sm_90 +\d+ +256 +0 +0 +0 +256\* +\d+\.\d +\w", table); // test kernels: block size assumed
        Assert.All(rows.Where(r => r.Kernel.Name == "GroupSum" && r.Architecture != "sm_70"), r => Assert.True(KernelReport.Occupancy(r, KernelLaunchShape.Assumed)!.Occupancy > 0));
        Assert.Matches(@"Broken +sm_70 +FAILED: .*undefined_name", table); // the compiler's error line, not just "failed"
        Assert.Contains("FAILED", table);
        Assert.Contains("6 kernel(s), 18 compilation(s): 3 failed, 0 with spills", table);

        long hits = cache.Hits;
        KernelReport.Run(kernels.Take(1), ["sm_80"], cache);
        Assert.Equal(hits + 1, cache.Hits); // the second report is served from the disk cache
    }
}
