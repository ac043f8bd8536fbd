using System.Runtime.CompilerServices;
using Engine.Cli;
using Engine.Runtime;
using Engine.Runtime.Kernels;
using Engine.Tensors;
using Engine.Tensors.Kernels;

namespace Engine.Tests.Runtime;

/// <summary>
/// <see cref="OccupancyCalculator"/> against occupancies computed by hand with the CUDA Occupancy
/// Calculator's rules (each case's arithmetic is in its comment), the report's occupancy columns, and
/// the block sizes <c>engine kernels --report</c> assumes per kernel against the plans' constants.
/// Cross-checked once (2026-11-22) against NVIDIA's own <c>cuda_occupancy.h</c> (CUDA 13.0,
/// <c>cudaOccMaxActiveBlocksPerMultiprocessor</c>) on an H100 with its real sm_90 properties, and with
/// them patched to A100 / V100 values for sm_80 / sm_70: every case of <see cref="MatchesHandComputedCases"/>
/// and the report cases gave the same blocks per SM and occupancy.
/// </summary>
public sealed class OccupancyTests
{
    private static readonly GpuArchitectureLimits Sm70 = GpuArchitectureLimits.Sm70, Sm80 = GpuArchitectureLimits.Sm80, Sm90 = GpuArchitectureLimits.Sm90;

    [Theory]
    // 256 threads = 8 warps/block; 64 warps/SM → 8 blocks by warps.
    // 32 regs: 32·32 = 1024 regs/warp; 16384/1024 = 16 warps per sub-partition · 4 = 64 warps → 8 blocks. 8·8/64 = 100 %.
    [InlineData("sm_80", 256, 32, 0, 8, 100.0, OccupancyLimiter.Warps)]
    [InlineData("sm_90", 256, 32, 0, 8, 100.0, OccupancyLimiter.Warps)]
    [InlineData("sm_70", 256, 32, 0, 8, 100.0, OccupancyLimiter.Warps)]
    // 64 regs: 2048 regs/warp; 16384/2048 = 8 · 4 = 32 warps → 4 blocks → 32/64 = 50 %.
    [InlineData("sm_80", 256, 64, 0, 4, 50.0, OccupancyLimiter.Registers)]
    [InlineData("sm_90", 256, 64, 0, 4, 50.0, OccupancyLimiter.Registers)]
    // 128 regs: 4096 regs/warp; 16384/4096 = 4 · 4 = 16 warps → 2 blocks → 16/64 = 25 %.
    [InlineData("sm_80", 256, 128, 0, 2, 25.0, OccupancyLimiter.Registers)]
    // 33 regs: 1056 → rounded up to 1280 regs/warp (unit 256); 16384/1280 = 12 (12.8 floored) · 4 = 48 warps → 6 blocks → 75 %.
    [InlineData("sm_80", 256, 33, 0, 6, 75.0, OccupancyLimiter.Registers)]
    // 255 regs: 8160 → 8192 regs/warp; 16384/8192 = 2 · 4 = 8 warps → 1 block → 12.5 %.
    [InlineData("sm_90", 256, 255, 0, 1, 12.5, OccupancyLimiter.Registers)]
    // 40 regs, 128 threads (4 warps): 1280 regs/warp → 48 warps → 12 blocks; warps allow 16 → 48/64 = 75 %.
    [InlineData("sm_80", 128, 40, 0, 12, 75.0, OccupancyLimiter.Registers)]
    // 32 threads (1 warp), 16 regs: warps allow 64 blocks, the 32-blocks/SM limit binds → 32 warps = 50 %.
    [InlineData("sm_80", 32, 16, 0, 32, 50.0, OccupancyLimiter.Blocks)]
    // 96 threads (3 warps): ⌊64/3⌋ = 21 blocks → 63 warps = 98.4375 %.
    [InlineData("sm_90", 96, 32, 0, 21, 98.4375, OccupancyLimiter.Warps)]
    // 100 threads → 4 warps (a partial warp takes a whole slot) → 16 blocks → 100 %.
    [InlineData("sm_80", 100, 32, 0, 16, 100.0, OccupancyLimiter.Warps)]
    // 1024 threads (32 warps), 32 regs → 2 blocks → 100 %; 72 regs: 2304 regs/warp · 32 warps = 73728 > 65536 regs/block → cannot launch.
    [InlineData("sm_80", 1024, 32, 0, 2, 100.0, OccupancyLimiter.Warps)]
    [InlineData("sm_80", 1024, 72, 0, 0, 0.0, OccupancyLimiter.Registers)]
    // Shared memory, 256 threads, 32 regs, 48 KiB static:
    // sm_80: 49152 + 1024 reserved = 50176 (a multiple of 128); 167936/50176 = 3 blocks → 24 warps = 37.5 %.
    [InlineData("sm_80", 256, 32, 49152, 3, 37.5, OccupancyLimiter.SharedMemory)]
    // sm_90: 233472/50176 = 4 blocks → 32 warps = 50 %.
    [InlineData("sm_90", 256, 32, 49152, 4, 50.0, OccupancyLimiter.SharedMemory)]
    // sm_70: no reservation, 98304/49152 = 2 blocks → 16 warps = 25 %.
    [InlineData("sm_70", 256, 32, 49152, 2, 25.0, OccupancyLimiter.SharedMemory)]
    // Allocation unit and reservation: 20000 B on sm_80 → 21024 → rounded to 21120 (165·128); 167936/21120 = 7 blocks → 56 warps = 87.5 %.
    [InlineData("sm_80", 256, 32, 20000, 7, 87.5, OccupancyLimiter.SharedMemory)]
    // Same bytes on sm_70: rounded to 20224 (79·256); 98304/20224 = 4 blocks → 50 %.
    [InlineData("sm_70", 256, 32, 20000, 4, 50.0, OccupancyLimiter.SharedMemory)]
    // 4 KiB on sm_80 (+1 KiB = 5120): 32 blocks by smem, 8 by warps → 100 % (not smem-limited).
    [InlineData("sm_80", 256, 32, 4096, 8, 100.0, OccupancyLimiter.Warps)]
    // More than the per-block opt-in maximum (163 KiB on sm_80): cannot launch.
    [InlineData("sm_80", 256, 32, 163 * 1024 + 1, 0, 0.0, OccupancyLimiter.SharedMemory)]
    // 200 KiB fits an sm_90 block (227 KiB): 200·1024 + 1024 = 205824; 233472/205824 = 1 block → 12.5 %.
    [InlineData("sm_90", 256, 32, 200 * 1024, 1, 12.5, OccupancyLimiter.SharedMemory)]
    // 0 registers (ptxas reports none for a trivial kernel): not register-limited.
    [InlineData("sm_80", 256, 0, 0, 8, 100.0, OccupancyLimiter.Warps)]
    public void MatchesHandComputedCases(string arch, int threads, int regs, long smem, int blocks, double percent, OccupancyLimiter limiter)
    {
        var r = OccupancyCalculator.Compute(GpuArchitectureLimits.For(arch)!, threads, regs, smem);
        Assert.Equal(blocks, r.BlocksPerSM);
        Assert.Equal(percent, 100 * r.Occupancy, 10);
        Assert.Equal(limiter, r.Limiter);
        Assert.Equal(blocks * r.WarpsPerBlock, r.ActiveWarpsPerSM);
    }

    [Fact]
    public void ReportsEveryLimitSeparately()
    {
        // 256 threads, 64 regs, 48 KiB on sm_80: warps 8, blocks 32, registers 4, shared memory 3 → 3.
        var r = OccupancyCalculator.Compute(Sm80, 256, 64, 49152);
        Assert.Equal((8, 32, 4, 3, 3), (r.BlocksByWarps, r.BlocksByBlockLimit, r.BlocksByRegisters, r.BlocksBySharedMemory, r.BlocksPerSM));
        Assert.Equal(OccupancyLimiter.SharedMemory, r.Limiter);
        Assert.Equal(int.MaxValue, OccupancyCalculator.Compute(Sm80, 256, 32, 0).BlocksBySharedMemory);
    }

    [Fact]
    public void ArchitectureTableFollowsTheProgrammingGuide()
    {
        Assert.Equal((64, 32, 65536, 98304L, 0L), (Sm70.MaxWarpsPerSM, Sm70.MaxBlocksPerSM, Sm70.RegistersPerSM, Sm70.SharedMemoryPerSM, Sm70.ReservedSharedMemoryPerBlock));
        Assert.Equal((64, 32, 65536, 167936L, 1024L), (Sm80.MaxWarpsPerSM, Sm80.MaxBlocksPerSM, Sm80.RegistersPerSM, Sm80.SharedMemoryPerSM, Sm80.ReservedSharedMemoryPerBlock));
        Assert.Equal((64, 32, 65536, 233472L, 1024L), (Sm90.MaxWarpsPerSM, Sm90.MaxBlocksPerSM, Sm90.RegistersPerSM, Sm90.SharedMemoryPerSM, Sm90.ReservedSharedMemoryPerBlock));
        Assert.Equal((166912L, 232448L), (Sm80.MaxSharedMemoryPerBlock, Sm90.MaxSharedMemoryPerBlock));
        Assert.Same(Sm80, GpuArchitectureLimits.For("compute_80"));
        Assert.Null(GpuArchitectureLimits.For("sm_75"));
    }

    [Theory]
    [InlineData(0, 32, 0, "threads per block")]
    [InlineData(1025, 32, 0, "threads per block")]
    [InlineData(256, 256, 0, "registers per thread")]
    [InlineData(256, -1, 0, "registers per thread")]
    [InlineData(256, 32, -1, "shared memory per block")]
    public void RejectsOutOfRangeInputsNamingThem(int threads, int regs, long smem, string what)
    {
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => OccupancyCalculator.Compute(Sm90, threads, regs, smem));
        Assert.Contains("sm_90", e.Message);
        Assert.Contains(what, e.Message);
    }

    [Fact]
    public void ReportTableShowsBlockOccupancyAndLimiter()
    {
        var kernel = new KernelSource("K", "k", "", "", []) { DeclaringType = "Sample" };
        KernelResourceUsage Usage(string arch, int regs, long smem) => new("k", arch, regs, 0, 0, smem, 0, 0);
        KernelReportRow[] rows =
        [
            new(kernel, "sm_80", Usage("sm_80", 64, 0), null),
            new(kernel, "sm_90", Usage("sm_90", 32, 49152), null),
            new(kernel, "sm_75", Usage("sm_75", 32, 0), null), // no limits tabulated: no occupancy
            new(kernel, "sm_80", null, "error: x"),
        ];
        string assumed = KernelReport.Format(rows);
        Assert.Matches(@"Sample\.K +sm_80 +64 +0 +0 +0 +0 +256\* +50\.0 +registers\n", assumed);
        Assert.Matches(@"Sample\.K +sm_90 +32 +49152 +0 +0 +0 +256\* +50\.0 +shared memory\n", assumed);
        Assert.Matches(@"Sample\.K +sm_75 +32 +0 +0 +0 +0 +256\* +- +-\n", assumed);
        Assert.Contains("256 assumed", assumed);

        // The plan's block and dynamic shared memory: 128 threads, 64 regs → 32 warps → 8 blocks (16 by warps) = 50 %;
        // on sm_90, 48 KiB static + 16 KiB dynamic + 1 KiB = 66560 B → 3 blocks · 4 warps = 18.75 %.
        string planned = KernelReport.Format(rows, _ => new KernelLaunchShape(128, 16384, LaunchShapeOrigin.PlanMaximum));
        Assert.Matches(@"Sample\.K +sm_80 +64 +0 +0 +0 +0 +<=128 +50\.0 +registers\n", planned);
        Assert.Matches(@"Sample\.K +sm_90 +32 +49152 +0 +0 +0 +<=128 +18\.[78] +shared memory\n", planned);
        Assert.Equal(0.1875, KernelReport.Occupancy(rows[1], new KernelLaunchShape(128, 16384, LaunchShapeOrigin.Fixed))!.Occupancy);
        Assert.Null(KernelReport.Occupancy(rows[3], KernelLaunchShape.Assumed));
    }

    [Fact]
    public void EveryEngineTensorsKernelHasItsPlansBlockSize()
    {
        RuntimeHelpers.RunModuleConstructor(typeof(Tensor).Module.ModuleHandle);
        var kernels = KernelRegistry.All.Where(k => k.DeclaringType.StartsWith("Engine.Tensors.Kernels.", StringComparison.Ordinal)).ToList();
        Assert.NotEmpty(kernels);
        Assert.All(kernels, k => Assert.NotEqual(LaunchShapeOrigin.AssumedDefault, KernelsCommand.LaunchShape(k).Origin));
        Assert.All(kernels, k => Assert.Equal(0, KernelsCommand.LaunchShape(k).DynamicSharedBytes));
        Assert.All(kernels, k => Assert.False(k.UsesDynamicSharedMemory, $"{k.Name} uses dynamic shared memory: give LaunchShape its bytes"));

        KernelLaunchShape Of(string type, string name) => KernelsCommand.LaunchShape(kernels.First(k => k.DeclaringType == "Engine.Tensors.Kernels." + type && (k.Name == name || k.Name.StartsWith(name + "<", StringComparison.Ordinal))));
        Assert.Equal(new KernelLaunchShape(ElementwisePlan.GroupSize, 0, LaunchShapeOrigin.Fixed), Of("ElementwiseKernels", "Binary"));
        Assert.Equal(IndexingKernels.GroupSize, Of("IndexingKernels", "Gather").ThreadsPerBlock);
        Assert.Equal(OptimKernels.GroupSize, Of("OptimKernels", "AdamStep").ThreadsPerBlock);
        Assert.Equal(PoolKernels.GroupSize, Of("PoolKernels", "MaxPool2d").ThreadsPerBlock);
        Assert.Equal(ConvKernels.GroupSize, Of("ConvKernels", "Im2Col").ThreadsPerBlock);
        Assert.Equal(RandomKernels.GroupSize, Of("RandomKernels", "Bernoulli").ThreadsPerBlock);
        Assert.Equal(BatchNormKernels.GroupSize, Of("BatchNormKernels", "Forward").ThreadsPerBlock);
        Assert.Equal(new KernelLaunchShape(BatchNormKernels.MaxGroup, 0, LaunchShapeOrigin.PlanMaximum), Of("BatchNormKernels", "Stats"));
        Assert.Equal(GemmPlan.Group.X * GemmPlan.Group.Y * GemmPlan.Group.Z, Of("GemmKernels", "Sgemm").ThreadsPerBlock);
        Assert.Equal(GemmPlan.LargeGroup.X * GemmPlan.LargeGroup.Y * GemmPlan.LargeGroup.Z, Of("GemmKernels", "Sgemm128").ThreadsPerBlock);
        Assert.Equal(ReduceKernels.ColumnsX * ReduceKernels.ColumnsY, Of("ReduceKernels", "ReduceColumns").ThreadsPerBlock);
        Assert.Equal(new KernelLaunchShape(ReduceKernels.MaxRowGroup, 0, LaunchShapeOrigin.PlanMaximum), Of("ReduceKernels", "ReduceRows"));
        Assert.Equal(new KernelLaunchShape(SoftmaxKernels.MaxGroup, 0, LaunchShapeOrigin.PlanMaximum), Of("SoftmaxKernels", "SoftmaxForward"));
        Assert.Equal(new KernelLaunchShape(NormKernels.MaxGroup, 0, LaunchShapeOrigin.PlanMaximum), Of("NormKernels", "VarRows"));
        Assert.Equal(ElementwisePlan.GroupSize, Of("Float64Kernels", "Binary64").ThreadsPerBlock);
        Assert.Equal(ElementwisePlan.GroupSize, Of("MathKernels", "FloatBinary").ThreadsPerBlock);
        Assert.Equal(ReduceKernels.ColumnsX * ReduceKernels.ColumnsY, Of("Float64Kernels", "ReduceColumns64").ThreadsPerBlock);
        Assert.Equal(new KernelLaunchShape(ReduceKernels.MaxRowGroup, 0, LaunchShapeOrigin.PlanMaximum), Of("Float64Kernels", "ReduceRows64"));
        Assert.Equal(RowReduceKernels.GroupSize, Of("RowReduceKernels", "ArgMinRows").ThreadsPerBlock);
        Assert.Equal(new KernelLaunchShape(ReduceKernels.MaxRowGroup, 0, LaunchShapeOrigin.PlanMaximum), Of("RowReduceKernels", "LogSumExpRows"));
        Assert.Equal(SelectKernels.GroupSize, Of("SelectKernels", "CountBlocks").ThreadsPerBlock);
        Assert.Equal(1, Of("SelectKernels", "ScanBlocks").ThreadsPerBlock);
        Assert.Equal(FusedOptimKernels.GroupSize, Of("FusedOptimKernels", "AdamStepMulti").ThreadsPerBlock);
        // DivergencePlan: x·y = MaxGroup whatever the row length.
        foreach (long n in new long[] { 1, 7, 100, 50000 })
        {
            var (_, group) = DivergencePlan.For(10, n);
            Assert.Equal(Of("DivergenceKernels", "Divergence").ThreadsPerBlock, group.X * group.Y * group.Z);
        }
        foreach (long n in new long[] { 1, 1000 })
            Assert.True(SoftmaxPlan.For(4, n).Group.X <= Of("SoftmaxKernels", "LogSoftmaxBackward").ThreadsPerBlock);

        Assert.Equal(KernelLaunchShape.Assumed, KernelsCommand.LaunchShape(new KernelSource("X", "x", "", "", []) { DeclaringType = "Engine.Tests.Runtime.AcceleratorKernels" }));
    }

    [BackendFact("nvrtc")]
    public void KernelsReportCommandPrintsOccupancyAtThePlansBlock()
    {
        var (output, error) = (new StringWriter(), new StringWriter());
        int code = KernelsCommand.Report("Engine.Tensors.Kernels.GemmKernels.Sgemm", output, error);
        string text = output.ToString();
        Assert.True(code == 0, text + error);
        foreach (var arch in new[] { "sm_70", "sm_80", "sm_90" })
        {
            var m = System.Text.RegularExpressions.Regex.Match(text, $@"GemmKernels\.Sgemm +{arch} +(?<regs>\d+) +(?<smem>\d+) +0 +0 +0 +256 +(?<occ>\d+\.\d) +\w");
            Assert.True(m.Success, text);
            var expected = OccupancyCalculator.Compute(GpuArchitectureLimits.For(arch)!, 256, int.Parse(m.Groups["regs"].Value), long.Parse(m.Groups["smem"].Value));
            Assert.Equal((100 * expected.Occupancy).ToString("0.0", System.Globalization.CultureInfo.InvariantCulture), m.Groups["occ"].Value);
            Assert.True(expected.Occupancy > 0);
        }
        Assert.Contains("<=N: the plan's largest block", text);
    }
}
