using Engine.Runtime;

namespace Engine.Tests.Runtime;

/// <summary>
/// <see cref="CudaDevicePeak"/>'s arithmetic against data-sheet figures (no GPU needed: the attributes are the values
/// the driver reports for these boards), and the query on a real device.
/// </summary>
public class CudaDevicePeakTests
{
    [Fact]
    public void H100SxmGivesItsDataSheetPeaks()
    {
        // 132 SMs, 1980 MHz boost, HBM3 at 2619 MHz on a 5120-bit bus: 66.9 TFLOP/s FP32, 3.35 TB/s.
        var p = new CudaDevicePeak(9, 0, 132, 1_980_000, 2_619_000, 5120);
        Assert.Equal(128, p.Fp32LanesPerSm);
        Assert.Equal(66.9, p.Fp32Tflops!.Value, 1);
        Assert.Equal(3352.3, p.DramGBps!.Value, 1);
    }

    [Fact]
    public void A100AndV100UseSixtyFourLanesPerSm()
    {
        var a100 = new CudaDevicePeak(8, 0, 108, 1_410_000, 1_215_000, 5120);
        Assert.Equal(19.5, a100.Fp32Tflops!.Value, 1);
        Assert.Equal(1555.2, a100.DramGBps!.Value, 1);
        var v100 = new CudaDevicePeak(7, 0, 80, 1_530_000, 877_000, 4096);
        Assert.Equal(15.7, v100.Fp32Tflops!.Value, 1);
        Assert.Equal(898.0, v100.DramGBps!.Value, 0);
        Assert.Equal(128, new CudaDevicePeak(8, 6, 84, 1_695_000, 9_751_000, 384).Fp32LanesPerSm); // RTX 3090: 35.6 TFLOP/s
    }

    [Fact]
    public void UnknownArchitectureOrMissingAttributesGiveNoPeak()
    {
        Assert.Null(new CudaDevicePeak(3, 5, 15, 875_000, 3_004_000, 384).Fp32Tflops);
        Assert.Null(new CudaDevicePeak(9, 0, 132, 0, 2_619_000, 5120).Fp32Tflops);
        Assert.Null(new CudaDevicePeak(9, 0, 132, 1_980_000, 0, 5120).DramGBps);
    }

    [BackendFact("cuda")]
    public void QueryReadsTheDevice()
    {
        var p = CudaDevicePeak.Query(0);
        Assert.True(p.MultiprocessorCount > 0 && p.ClockKHz > 0 && p.MemoryBusWidthBits > 0, p.ToString());
    }
}
