using Engine.Runtime.Native.Cuda;

namespace Engine.Runtime;

/// <summary>
/// A CUDA device's theoretical float32 and DRAM peaks, from what the driver reports
/// (cuDeviceGetAttribute): the denominators of "% of peak" in <c>engine bench --device cuda</c>.
/// <para>
/// FP32 peak = 2 flops per FMA × SMs × FP32 lanes per SM × peak SM clock. The lanes per SM are not
/// an attribute; they come from the architecture (NVIDIA's tables): 64 on sm_60, sm_70, sm_75 and
/// sm_80 (A100), 128 on sm_50–53, sm_61/62, sm_86/87/89 and sm_90 and later (H100: 132 SMs × 128 ×
/// 2 × 1.98 GHz = 66.9 TFLOP/s). Unknown architectures give no FP32 peak rather than a guess.
/// </para>
/// <para>
/// DRAM peak = 2 transfers per clock (DDR) × peak memory clock × bus width / 8 (H100 SXM: 2 × 2.619
/// GHz × 5120 bits / 8 = 3352 GB/s; A100 40 GB: 2 × 1.215 GHz × 5120 / 8 = 1555 GB/s). The driver reports
/// the HBM/GDDR clock so that this DDR rule gives the data sheet's figure. GB = 10^9 bytes.
/// </para>
/// Both are ceilings no kernel reaches (boost clocks drop under load, DRAM efficiency tops out near 90 %).
/// </summary>
/// <param name="Major">Compute capability, major.</param>
/// <param name="Minor">Compute capability, minor.</param>
/// <param name="MultiprocessorCount">Number of SMs.</param>
/// <param name="ClockKHz">Peak SM clock, kHz (CU_DEVICE_ATTRIBUTE_CLOCK_RATE; 0 when the driver does not report it).</param>
/// <param name="MemoryClockKHz">Peak memory clock, kHz (CU_DEVICE_ATTRIBUTE_MEMORY_CLOCK_RATE; 0 when not reported).</param>
/// <param name="MemoryBusWidthBits">Global memory bus width, bits (CU_DEVICE_ATTRIBUTE_GLOBAL_MEMORY_BUS_WIDTH; 0 when not reported).</param>
public sealed record CudaDevicePeak(int Major, int Minor, int MultiprocessorCount, int ClockKHz, int MemoryClockKHz, int MemoryBusWidthBits)
{
    /// <summary>FP32 lanes (CUDA cores) per SM for the architecture; null when it is not in the table.</summary>
    public int? Fp32LanesPerSm => (Major, Minor) switch
    {
        (5, _) => 128,
        (6, 0) => 64,
        (6, 1) or (6, 2) => 128,
        (7, _) => 64,
        (8, 0) => 64,
        (8, 6) or (8, 7) or (8, 9) => 128,
        (>= 9, _) => 128,
        _ => null,
    };

    /// <summary>Theoretical float32 FMA peak in TFLOP/s (10^12 flops/s); null when the lanes or the clock are unknown.</summary>
    public double? Fp32Tflops => Fp32LanesPerSm is int lanes && ClockKHz > 0 && MultiprocessorCount > 0
        ? 2.0 * MultiprocessorCount * lanes * (ClockKHz * 1e3) / 1e12 : null;

    /// <summary>Theoretical DRAM bandwidth in GB/s (10^9 bytes/s); null when the clock or the bus width is unknown.</summary>
    public double? DramGBps => MemoryClockKHz > 0 && MemoryBusWidthBits > 0
        ? 2.0 * (MemoryClockKHz * 1e3) * MemoryBusWidthBits / 8 / 1e9 : null;

    /// <summary>Queries device <paramref name="ordinal"/>; attributes the driver refuses read as 0 (so the peak depending on them is null).</summary>
    /// <exception cref="CudaException">No driver, or no such device.</exception>
    public static unsafe CudaDevicePeak Query(int ordinal)
    {
        CudaDevices.EnsureInitialized();
        int device;
        CuApi.Check(CuApi.DeviceGet(&device, ordinal), $"cuDeviceGet({ordinal})");
        return new CudaDevicePeak(Attribute(device, CuApi.AttrComputeCapabilityMajor), Attribute(device, CuApi.AttrComputeCapabilityMinor),
            Attribute(device, CuApi.AttrMultiprocessorCount), Attribute(device, CuApi.AttrClockRate), Attribute(device, CuApi.AttrMemoryClockRate),
            Attribute(device, CuApi.AttrGlobalMemoryBusWidth));
    }

    private static unsafe int Attribute(int device, int attribute)
    {
        int value;
        return CuApi.DeviceGetAttribute(&value, attribute, device) == 0 ? value : 0;
    }
}
