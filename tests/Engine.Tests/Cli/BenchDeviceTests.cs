using System.Text.Json;
using Engine.Benchmarks;

namespace Engine.Tests.Cli;

/// <summary>
/// <c>engine bench NAME --device D --quick</c>: every case that runs on devices validates on the device against the
/// CPU reference and prints one JSON object naming the device and how it was timed; CPU-only cases, unknown devices
/// and <c>--peer</c> with a device are refused with clear messages.
/// </summary>
public class BenchDeviceTests
{
    private static (int Rc, string Output, string Error) Run(params string[] args)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        int rc = Engine.Cli.Program.Run(args, output, error);
        return (rc, output.ToString(), error.ToString());
    }

    public static TheoryData<string> DeviceCases()
    {
        var data = new TheoryData<string>();
        foreach (var c in BenchRunner.Cases.Where(c => c.RunsOnDevices)) data.Add(c.Name);
        return data;
    }

    /// <summary>The device cases on the emulator: fmnist-kd-epoch is left to OpenCL (its teacher's convolutions take minutes there).</summary>
    public static TheoryData<string> EmulatorCases()
    {
        var data = new TheoryData<string>();
        foreach (var c in BenchRunner.Cases.Where(c => c.RunsOnDevices && c.Name != "fmnist-kd-epoch")) data.Add(c.Name);
        return data;
    }

    /// <summary>Runs the case and checks the JSON; a skip line (attention before its kernels land on a device) must give a reason.</summary>
    private static void RunsOn(string device, string name, string timing)
    {
        var (rc, output, error) = Run("bench", name, "--device", device, "--quick", "--runs", "1", "--threads", "2", "--json");
        Assert.True(rc == 0, error);
        var json = JsonDocument.Parse(Assert.Single(output.Split('\n', StringSplitOptions.RemoveEmptyEntries))).RootElement;
        Assert.Equal(name, json.GetProperty("name").GetString());
        Assert.Equal(device + ":0", json.GetProperty("device").GetString());
        if (json.TryGetProperty("skipped", out var skipped))
        {
            Assert.Equal("attention", name); // the only case allowed to skip on a device
            Assert.Contains("ScaledDotProductAttention", skipped.GetString());
            return;
        }
        Assert.Equal("engine " + device + ":0", json.GetProperty("engine").GetString());
        Assert.Equal(timing, json.GetProperty("timing").GetString());
        Assert.True(json.GetProperty("median_ms").GetDouble() > 0);
        // The device allocator's peak above its level before the case; only its presence is checked: test classes run in
        // parallel and another one may hold (and free) emulator memory meanwhile, which moves that baseline.
        Assert.True(json.GetProperty("peak_bytes").TryGetInt64(out _), "the device allocator's peak");
        Assert.False(string.IsNullOrEmpty(json.GetProperty("device_name").GetString()));
        // A rate, except for fmnist-kd-epoch, whose number is the epoch's time (it counts neither flops nor bytes).
        if (name != "fmnist-kd-epoch")
            Assert.True(json.TryGetProperty("gflops", out _) || json.TryGetProperty("gb_per_s", out _), "a rate: GFLOP/s or GB/s");
        if (json.TryGetProperty("gflops", out _)) Assert.True(json.TryGetProperty("tflops", out _));
        Assert.False(json.TryGetProperty("fma_peak_gflops", out _), "the CPU's FMA peak is not a device's");
        Assert.False(json.TryGetProperty("percent_of_copy", out _), "the CPU's copy ceiling is not a device's");
        // Every device case validated against the CPU reference (the field's name varies by case).
        Assert.Contains(json.EnumerateObject(), p => p.Name.Contains("err", StringComparison.Ordinal) && p.Value.GetDouble() <= 1e-4);
    }

    [Theory]
    [MemberData(nameof(EmulatorCases))]
    public void DeviceCase_OnTheEmulator_ValidatesAndPrintsJson(string name) => RunsOn("emulator", name, "host clock (emulator)");

    [BackendTheory("opencl")]
    [MemberData(nameof(DeviceCases))]
    public void DeviceCase_OnOpenCL_ValidatesAndPrintsJson(string name) => RunsOn("opencl", name, "host clock + clFinish");

    [BackendFact("cuda")]
    public void Sgemm_OnCuda_IsTimedWithEventsAndComparedWithThePeak()
    {
        var (rc, output, error) = Run("bench", "sgemm", "--device", "cuda", "--quick", "--runs", "3", "--json");
        Assert.True(rc == 0, error);
        var json = JsonDocument.Parse(output.Trim()).RootElement;
        Assert.Equal("cuda events", json.GetProperty("timing").GetString());
        Assert.True(json.GetProperty("peak_fp32_tflops").GetDouble() > 1);
        Assert.True(json.GetProperty("percent_of_peak_flops").GetDouble() > 0);
        Assert.True(json.GetProperty("sm_count").GetInt32() > 0);
    }

    [Fact]
    public void CpuOnlyCaseWithADeviceIsRefusedNamingTheDeviceCases()
    {
        var (rc, _, error) = Run("bench", "fused-linear-jsd", "--device", "emulator", "--quick");
        Assert.Equal(2, rc);
        Assert.Contains("fused-linear-jsd: this case runs on the CPU only", error);
        Assert.Contains("kd-loss", error);
    }

    [Fact]
    public void UnknownOrMissingDevicesAndPeerWithADeviceAreRefused()
    {
        var (rc, _, error) = Run("bench", "kd-loss", "--device", "tpu");
        Assert.Equal(2, rc);
        Assert.Contains("unknown device 'tpu'", error);
        (rc, _, error) = Run("bench", "kd-loss", "--device", "emulator:3");
        Assert.Equal(2, rc);
        Assert.Contains("emulator:3 is not available here", error);
        (rc, _, error) = Run("bench", "kd-loss", "--device", "emulator", "--peer");
        Assert.Equal(2, rc);
        Assert.Contains("--peer compares with PyTorch on the CPU", error);
        (rc, _, error) = Run("bench", "kd-loss", "--all");
        Assert.Equal(2, rc);
        Assert.Contains("case names or --all, not both", error);
    }

    [Fact]
    public void ListSaysWhichCasesRunOnDevices()
    {
        var (rc, output, _) = Run("bench", "--list");
        Assert.Equal(0, rc);
        Assert.Contains(output.Split('\n'), l => l.StartsWith("sgemm", StringComparison.Ordinal) && l.Contains("(cpu and devices)", StringComparison.Ordinal));
        Assert.Contains(output.Split('\n'), l => l.StartsWith("fused-linear-jsd", StringComparison.Ordinal) && l.Contains("(cpu only)", StringComparison.Ordinal));
    }
}
