namespace Engine.Runtime;

/// <summary>
/// Per-SM resource limits of one CUDA compute capability, as the CUDA Occupancy Calculator
/// (<c>cuda_occupancy.h</c>) and the CUDA C Programming Guide's table "Technical Specifications per
/// Compute Capability" give them. Only what the theoretical-occupancy rules need.
/// </summary>
/// <param name="Architecture">The target name, e.g. sm_80.</param>
/// <param name="MaxThreadsPerSM">Resident threads per SM (2048 on sm_70, sm_80, sm_90).</param>
/// <param name="MaxBlocksPerSM">Resident blocks per SM (32 on sm_70, sm_80, sm_90).</param>
/// <param name="MaxThreadsPerBlock">Threads per block (1024).</param>
/// <param name="RegistersPerSM">32-bit registers per SM (65536).</param>
/// <param name="RegistersPerBlock">32-bit registers one block may use (65536).</param>
/// <param name="MaxRegistersPerThread">Registers per thread (255).</param>
/// <param name="RegisterAllocationUnit">Registers are allocated per warp in units of this many (256).</param>
/// <param name="WarpAllocationGranularity">
/// Warps per SM that one register budget serves are counted in groups of this many: the register file
/// is split into this many sub-partitions (4 on sm_70+), each holding whole warps.
/// </param>
/// <param name="SharedMemoryPerSM">Shared memory per SM at the largest carveout (sm_70 96 KiB, sm_80 164 KiB, sm_90 228 KiB).</param>
/// <param name="MaxSharedMemoryPerBlock">Shared memory one block may use with the opt-in attribute (sm_70 96 KiB, sm_80 163 KiB, sm_90 227 KiB).</param>
/// <param name="ReservedSharedMemoryPerBlock">Shared memory the system reserves per resident block (1 KiB on sm_80+, 0 on sm_70).</param>
/// <param name="SharedMemoryAllocationUnit">Shared memory is allocated per block in units of this many bytes (sm_70 256, sm_80+ 128).</param>
public sealed record GpuArchitectureLimits(
    string Architecture, int MaxThreadsPerSM, int MaxBlocksPerSM, int MaxThreadsPerBlock,
    int RegistersPerSM, int RegistersPerBlock, int MaxRegistersPerThread, int RegisterAllocationUnit, int WarpAllocationGranularity,
    long SharedMemoryPerSM, long MaxSharedMemoryPerBlock, long ReservedSharedMemoryPerBlock, int SharedMemoryAllocationUnit)
{
    /// <summary>Threads per warp (32 on every CUDA architecture).</summary>
    public const int WarpSize = 32;

    /// <summary>Resident warps per SM: <see cref="MaxThreadsPerSM"/> / 32 (64 on sm_70, sm_80, sm_90).</summary>
    public int MaxWarpsPerSM => MaxThreadsPerSM / WarpSize;

    /// <summary>Volta (V100, compute capability 7.0): 96 KiB shared memory per SM, no per-block reservation, 256-byte shared allocation unit.</summary>
    public static GpuArchitectureLimits Sm70 { get; } = new("sm_70", 2048, 32, 1024, 65536, 65536, 255, 256, 4, 96 * 1024, 96 * 1024, 0, 256);

    /// <summary>Ampere (A100, compute capability 8.0): 164 KiB shared memory per SM, 163 KiB per block opt-in, 1 KiB reserved per block, 128-byte unit.</summary>
    public static GpuArchitectureLimits Sm80 { get; } = new("sm_80", 2048, 32, 1024, 65536, 65536, 255, 256, 4, 164 * 1024, 163 * 1024, 1024, 128);

    /// <summary>Hopper (H100, compute capability 9.0): 228 KiB shared memory per SM, 227 KiB per block opt-in, 1 KiB reserved per block, 128-byte unit.</summary>
    public static GpuArchitectureLimits Sm90 { get; } = new("sm_90", 2048, 32, 1024, 65536, 65536, 255, 256, 4, 228 * 1024, 227 * 1024, 1024, 128);

    /// <summary>The limits of <paramref name="architecture"/> (sm_70, sm_80, sm_90; compute_XX accepted), or null when not tabulated.</summary>
    public static GpuArchitectureLimits? For(string architecture)
    {
        ArgumentNullException.ThrowIfNull(architecture);
        return architecture.Replace("compute_", "sm_", StringComparison.Ordinal) switch
        {
            "sm_70" => Sm70,
            "sm_80" => Sm80,
            "sm_90" or "sm_90a" => Sm90,
            _ => null,
        };
    }
}

/// <summary>Which resource bounds the number of resident blocks per SM (the first one in this order when several tie).</summary>
public enum OccupancyLimiter
{
    /// <summary>Resident warps (threads) per SM.</summary>
    Warps,
    /// <summary>Resident blocks per SM.</summary>
    Blocks,
    /// <summary>The register file.</summary>
    Registers,
    /// <summary>Shared memory.</summary>
    SharedMemory,
}

/// <summary>The theoretical occupancy of one kernel launch configuration on one architecture.</summary>
/// <param name="Limits">The architecture's limits used.</param>
/// <param name="ThreadsPerBlock">Threads per block of the launch.</param>
/// <param name="RegistersPerThread">Registers per thread (ptxas).</param>
/// <param name="SharedMemoryPerBlock">Static plus dynamic shared memory per block in bytes, before the system reservation.</param>
/// <param name="BlocksPerSM">Resident blocks per SM: the minimum of the four limits (0: the launch cannot run).</param>
/// <param name="BlocksByWarps">Blocks per SM allowed by resident warps.</param>
/// <param name="BlocksByBlockLimit">Blocks per SM allowed by the block-count limit.</param>
/// <param name="BlocksByRegisters">Blocks per SM allowed by the register file.</param>
/// <param name="BlocksBySharedMemory">Blocks per SM allowed by shared memory.</param>
/// <param name="Limiter">The resource that gives <see cref="BlocksPerSM"/>.</param>
public sealed record OccupancyResult(
    GpuArchitectureLimits Limits, int ThreadsPerBlock, int RegistersPerThread, long SharedMemoryPerBlock,
    int BlocksPerSM, int BlocksByWarps, int BlocksByBlockLimit, int BlocksByRegisters, int BlocksBySharedMemory, OccupancyLimiter Limiter)
{
    /// <summary>Warps of one block: ⌈threads / 32⌉ (a partial warp occupies a whole warp slot).</summary>
    public int WarpsPerBlock => (ThreadsPerBlock + GpuArchitectureLimits.WarpSize - 1) / GpuArchitectureLimits.WarpSize;

    /// <summary>Resident warps per SM: <see cref="BlocksPerSM"/> × <see cref="WarpsPerBlock"/>.</summary>
    public int ActiveWarpsPerSM => BlocksPerSM * WarpsPerBlock;

    /// <summary>Theoretical occupancy in [0, 1]: active warps per SM / max warps per SM.</summary>
    public double Occupancy => (double)ActiveWarpsPerSM / Limits.MaxWarpsPerSM;
}

/// <summary>
/// Theoretical occupancy from registers, shared memory and block size: the rules of NVIDIA's CUDA
/// Occupancy Calculator (<c>cuda_occupancy.h</c>, <c>cudaOccMaxActiveBlocksPerMultiprocessor</c>) for
/// sm_70 and later. Resident blocks per SM = the minimum of
/// <list type="number">
/// <item><b>warps</b>: ⌊max warps per SM / ⌈threads / 32⌉⌋ (64 warps = 2048 threads on sm_70/80/90);</item>
/// <item><b>blocks</b>: the max resident blocks per SM (32);</item>
/// <item><b>registers</b>: registers are allocated per warp, <c>regsPerWarp = roundUp(regs × 32, 256)</c>; the
///   65536-register file is split into 4 sub-partitions of 16384 that hold whole warps, so warps per SM =
///   ⌊16384 / regsPerWarp⌋ × 4 and blocks = ⌊that / warps per block⌋; a block needing more than
///   65536 registers cannot launch (0); a kernel reporting 0 registers is not register-limited;</item>
/// <item><b>shared memory</b>: per block <c>roundUp(static + dynamic + reserved, unit)</c> with 1 KiB reserved
///   and a 128-byte unit on sm_80+ (none and 256 bytes on sm_70); blocks = ⌊shared per SM / that⌋ with the
///   largest carveout (sm_70 96 KiB, sm_80 164 KiB, sm_90 228 KiB) — what the driver picks when the kernel
///   needs it; a block needing more than the per-block opt-in maximum cannot launch (0); no shared
///   memory at all is not shared-memory-limited.</item>
/// </list>
/// Occupancy = blocks × warps per block / max warps per SM. Theoretical: it ignores the tail of the
/// grid, scheduling and the L1/shared trade-off of a smaller carveout.
/// </summary>
public static class OccupancyCalculator
{
    /// <summary>The theoretical occupancy of a launch with these resources on <paramref name="limits"/>.</summary>
    /// <param name="limits">The architecture (<see cref="GpuArchitectureLimits.Sm80"/>, ...).</param>
    /// <param name="threadsPerBlock">Threads per block, 1 to <see cref="GpuArchitectureLimits.MaxThreadsPerBlock"/>.</param>
    /// <param name="registersPerThread">Registers per thread from ptxas, 0 to <see cref="GpuArchitectureLimits.MaxRegistersPerThread"/>.</param>
    /// <param name="sharedMemoryPerBlock">Static plus dynamic shared memory per block in bytes (≥ 0).</param>
    /// <exception cref="ArgumentOutOfRangeException">A value outside the ranges above, naming the value and the range.</exception>
    public static OccupancyResult Compute(GpuArchitectureLimits limits, int threadsPerBlock, int registersPerThread, long sharedMemoryPerBlock)
    {
        ArgumentNullException.ThrowIfNull(limits);
        if (threadsPerBlock < 1 || threadsPerBlock > limits.MaxThreadsPerBlock)
            throw new ArgumentOutOfRangeException(nameof(threadsPerBlock), threadsPerBlock, $"occupancy on {limits.Architecture}: threads per block must be in [1, {limits.MaxThreadsPerBlock}], got {threadsPerBlock}.");
        if (registersPerThread < 0 || registersPerThread > limits.MaxRegistersPerThread)
            throw new ArgumentOutOfRangeException(nameof(registersPerThread), registersPerThread, $"occupancy on {limits.Architecture}: registers per thread must be in [0, {limits.MaxRegistersPerThread}], got {registersPerThread}.");
        if (sharedMemoryPerBlock < 0)
            throw new ArgumentOutOfRangeException(nameof(sharedMemoryPerBlock), sharedMemoryPerBlock, $"occupancy on {limits.Architecture}: shared memory per block must be ≥ 0 bytes, got {sharedMemoryPerBlock}.");

        int warpsPerBlock = (threadsPerBlock + GpuArchitectureLimits.WarpSize - 1) / GpuArchitectureLimits.WarpSize;
        int byWarps = limits.MaxWarpsPerSM / warpsPerBlock;
        int byBlocks = limits.MaxBlocksPerSM;

        int byRegisters = int.MaxValue;
        if (registersPerThread > 0)
        {
            int regsPerWarp = RoundUp(registersPerThread * GpuArchitectureLimits.WarpSize, limits.RegisterAllocationUnit);
            if ((long)regsPerWarp * warpsPerBlock > limits.RegistersPerBlock) byRegisters = 0;
            else
            {
                int regsPerSubPartition = limits.RegistersPerSM / limits.WarpAllocationGranularity;
                int warpsPerSM = regsPerSubPartition / regsPerWarp * limits.WarpAllocationGranularity;
                byRegisters = warpsPerSM / warpsPerBlock;
            }
        }

        int bySharedMemory = int.MaxValue;
        if (sharedMemoryPerBlock > 0)
        {
            if (sharedMemoryPerBlock > limits.MaxSharedMemoryPerBlock) bySharedMemory = 0;
            else
            {
                long allocated = RoundUp(sharedMemoryPerBlock + limits.ReservedSharedMemoryPerBlock, limits.SharedMemoryAllocationUnit);
                bySharedMemory = (int)Math.Min(int.MaxValue, limits.SharedMemoryPerSM / allocated);
            }
        }

        int blocks = Math.Min(Math.Min(byWarps, byBlocks), Math.Min(byRegisters, bySharedMemory));
        var limiter = blocks == byWarps ? OccupancyLimiter.Warps
            : blocks == byBlocks ? OccupancyLimiter.Blocks
            : blocks == byRegisters ? OccupancyLimiter.Registers
            : OccupancyLimiter.SharedMemory;
        return new OccupancyResult(limits, threadsPerBlock, registersPerThread, sharedMemoryPerBlock, blocks,
            byWarps, byBlocks, byRegisters, bySharedMemory, limiter);
    }

    private static int RoundUp(int value, int unit) => (value + unit - 1) / unit * unit;

    private static long RoundUp(long value, long unit) => (value + unit - 1) / unit * unit;
}

/// <summary>How a <see cref="KernelLaunchShape"/> was found.</summary>
public enum LaunchShapeOrigin
{
    /// <summary>The kernel's plan always launches this many threads per block.</summary>
    Fixed,
    /// <summary>The plan picks the block size from the problem (e.g. the row length rounded up to a power of two); this is its maximum.</summary>
    PlanMaximum,
    /// <summary>Not known statically: <see cref="KernelLaunchShape.DefaultThreadsPerBlock"/> is assumed.</summary>
    AssumedDefault,
}

/// <summary>The block a kernel launches with, for the occupancy columns of <see cref="KernelReport"/>.</summary>
/// <param name="ThreadsPerBlock">Threads per block (all dimensions multiplied).</param>
/// <param name="DynamicSharedBytes">Dynamic shared memory per block the plan launches with (added to ptxas' static smem).</param>
/// <param name="Origin">Whether the block size is fixed, the plan's maximum, or an assumed default.</param>
public sealed record KernelLaunchShape(int ThreadsPerBlock, long DynamicSharedBytes, LaunchShapeOrigin Origin)
{
    /// <summary>The block size assumed for a kernel whose launch is not known statically: 256 threads.</summary>
    public const int DefaultThreadsPerBlock = 256;

    /// <summary>256 threads, no dynamic shared memory, marked <see cref="LaunchShapeOrigin.AssumedDefault"/>.</summary>
    public static KernelLaunchShape Assumed { get; } = new(DefaultThreadsPerBlock, 0, LaunchShapeOrigin.AssumedDefault);

    /// <summary>The block size as the report prints it: "256" fixed, "&lt;=256" the plan's maximum, "256*" assumed.</summary>
    public string Label => Origin switch
    {
        LaunchShapeOrigin.PlanMaximum => $"<={ThreadsPerBlock}",
        LaunchShapeOrigin.AssumedDefault => $"{ThreadsPerBlock}*",
        _ => $"{ThreadsPerBlock}",
    };
}
