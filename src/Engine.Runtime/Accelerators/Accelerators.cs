using System.Text;

namespace Engine.Runtime;

/// <summary>One usable accelerator.</summary>
/// <param name="Device">The engine device (<c>cuda:0</c>, <c>opencl:1</c>, ...).</param>
/// <param name="Name">The device name.</param>
/// <param name="Details">Limits and versions, one line.</param>
public sealed record AcceleratorEntry(Device Device, string Name, string Details);

/// <summary>A backend and whether it works here.</summary>
/// <param name="Backend">cpu, emulator, opencl, cuda or nvrtc.</param>
/// <param name="Available">True when it is usable.</param>
/// <param name="Detail">When available, its library and version; otherwise why not (library not found, no platform, no device).</param>
public sealed record BackendStatus(string Backend, bool Available, string Detail);

/// <summary>What <see cref="Accelerators.Discover"/> found.</summary>
/// <param name="Devices">Every usable accelerator, CPU first.</param>
/// <param name="Backends">Every backend, with its version or the reason it is missing.</param>
public sealed record AcceleratorReport(IReadOnlyList<AcceleratorEntry> Devices, IReadOnlyList<BackendStatus> Backends)
{
    /// <summary>The report as text (what <c>engine devices</c> prints).</summary>
    public string Format()
    {
        var text = new StringBuilder("Devices:\n");
        foreach (var d in Devices) text.Append($"  {d.Device,-10} {d.Name}  {d.Details}\n");
        text.Append("Backends:\n");
        foreach (var b in Backends) text.Append($"  {b.Backend,-10} {(b.Available ? "ok     " : "missing")}  {b.Detail}\n");
        return text.ToString();
    }
}

/// <summary>
/// Finds every accelerator this machine has, and for each backend that is missing says why
/// ("libcuda.so.1 not found", "no OpenCL platform registered", "no CUDA-capable device", ...).
/// Never throws: a probe that fails becomes a reason.
/// </summary>
public static class Accelerators
{
    private static string SimdWidth() =>
        System.Runtime.Intrinsics.Vector512.IsHardwareAccelerated ? "512-bit (AVX-512)"
        : System.Runtime.Intrinsics.Vector256.IsHardwareAccelerated ? "256-bit (AVX2)"
        : System.Runtime.Intrinsics.Vector128.IsHardwareAccelerated ? "128-bit" : "none";

    /// <summary>Probes every backend.</summary>
    public static AcceleratorReport Discover()
    {
        var devices = new List<AcceleratorEntry>
        {
            new(Device.Cpu, "host CPU", $"{Environment.ProcessorCount} logical cores, SIMD {SimdWidth()}"),
            new(new Device(DeviceType.Emulator), "kernel emulator", $"one OS thread per GPU thread, groups <= {EmulatorAccelerator.MaxGroupSize}"),
        };
        var backends = new List<BackendStatus>
        {
            new("cpu", true, "CPU-native kernels"),
            new("emulator", true, "C# kernels run as GPU threads on the CPU"),
        };
        backends.Add(Probe("opencl", () => OpenCLDevices.MissingReason, () =>
        {
            var list = OpenCLDevices.List();
            foreach (var d in list)
                devices.Add(new(new Device(DeviceType.OpenCL, d.Index), d.Name,
                    $"{d.Vendor}; {d.PlatformName}; {d.Version}; {d.ComputeUnits} CUs; group <= {d.MaxWorkGroupSize}; local {d.LocalMemBytes / 1024} KiB; {d.GlobalMemBytes >> 20} MiB"));
            return $"{list.Count} device(s) on {string.Join(", ", list.Select(d => d.PlatformName).Distinct())}";
        }));
        backends.Add(Probe("cuda", () => CudaDevices.MissingReason, () =>
        {
            var list = CudaDevices.List();
            foreach (var d in list)
                devices.Add(new(new Device(DeviceType.Cuda, d.Index), d.Name,
                    $"{d.Architecture}; {d.MultiprocessorCount} SMs; smem {d.SharedMemoryPerBlock / 1024} KiB/block (opt-in {d.SharedMemoryPerBlockOptIn / 1024} KiB); {d.TotalMemoryBytes >> 20} MiB"));
            int v = CudaDevices.DriverVersion;
            return $"{list.Count} device(s), driver CUDA {v / 1000}.{v % 1000 / 10}";
        }));
        backends.Add(Probe("nvrtc", () => Nvrtc.MissingReason, () =>
        {
            var archs = Nvrtc.SupportedArchitectures;
            return Nvrtc.Description + (archs.Count > 0 ? $", targets sm_{archs.Min()}..sm_{archs.Max()}" : "");
        }));
        return new AcceleratorReport(devices, backends);
    }

    private static BackendStatus Probe(string backend, Func<string?> missing, Func<string> describe)
    {
        try
        {
            if (missing() is { } reason) return new BackendStatus(backend, false, reason);
            return new BackendStatus(backend, true, describe());
        }
        catch (Exception e) when (e is OpenCLException or CudaException or NvrtcException or EntryPointNotFoundException or DllNotFoundException)
        {
            return new BackendStatus(backend, false, e.Message);
        }
    }
}
