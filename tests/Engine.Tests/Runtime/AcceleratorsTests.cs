using Engine.Runtime;
using Xunit.Abstractions;

namespace Engine.Tests.Runtime;

/// <summary><see cref="Accelerators.Discover"/>: every device found, and a reason for every missing backend.</summary>
public class AcceleratorsTests(ITestOutputHelper output)
{
    [Fact]
    public void ListsEveryBackendWithADeviceOrAReason()
    {
        var report = Accelerators.Discover();
        output.WriteLine(report.Format());
        Assert.Equal(["cpu", "emulator", "opencl", "cuda", "nvrtc"], report.Backends.Select(b => b.Backend));
        Assert.All(report.Backends, b => Assert.False(string.IsNullOrWhiteSpace(b.Detail)));
        Assert.Equal(Device.Cpu, report.Devices[0].Device);
        foreach (var (backend, type) in new[] { ("opencl", DeviceType.OpenCL), ("cuda", DeviceType.Cuda) })
        {
            var status = report.Backends.Single(b => b.Backend == backend);
            Assert.Equal(status.Available, report.Devices.Any(d => d.Device.Type == type));
        }
        // Agrees with the test suite's own probe of what is installed.
        foreach (var backend in new[] { "opencl", "nvrtc", "cuda" })
            Assert.Equal(Backends.MissingReason(backend) is null, report.Backends.Single(b => b.Backend == backend).Available);
    }

    [BackendFact("opencl")]
    public void ListsOpenCLDevices()
    {
        var report = Accelerators.Discover();
        Assert.Contains(report.Devices, d => d.Device == new Device(DeviceType.OpenCL, 0));
        Assert.Contains("opencl:0", report.Format());
    }

    [BackendFact("nvrtc")]
    public void ReportsTheNvrtcVersion()
    {
        var nvrtc = Accelerators.Discover().Backends.Single(b => b.Backend == "nvrtc");
        Assert.True(nvrtc.Available);
        Assert.Contains("NVRTC", nvrtc.Detail);
    }
}
