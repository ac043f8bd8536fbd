using System.Runtime.InteropServices;

namespace Engine.Tests;

/// <summary>
/// Which native backends this machine has, and the skip policy for their tests: a test of a
/// missing backend is skipped with the reason printed — unless ENGINE_REQUIRE_BACKENDS (a comma
/// list such as "opencl,nvrtc", set by CI for what it installs) names it, in which case the test
/// runs and fails, so CI cannot pass by skipping.
/// </summary>
public static class Backends
{
    private static readonly Dictionary<string, string?> Cache = new();

    /// <summary>Null when <paramref name="backend"/> is usable here, otherwise why not.</summary>
    public static string? MissingReason(string backend)
    {
        lock (Cache)
        {
            if (!Cache.TryGetValue(backend, out var reason))
                Cache[backend] = reason = Probe(backend);
            return reason;
        }
    }

    /// <summary>True when CI requires <paramref name="backend"/> (ENGINE_REQUIRE_BACKENDS).</summary>
    public static bool IsRequired(string backend)
        => (Environment.GetEnvironmentVariable("ENGINE_REQUIRE_BACKENDS") ?? "")
            .Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Contains(backend, StringComparer.OrdinalIgnoreCase);

    /// <summary>The skip reason for a test of <paramref name="backend"/>, or null to run it.</summary>
    public static string? SkipReason(string backend)
    {
        var missing = MissingReason(backend);
        if (missing is null || IsRequired(backend)) return null;
        return $"{backend} backend not available: {missing} (set ENGINE_REQUIRE_BACKENDS={backend} to make this a failure)";
    }

    private static string? Probe(string backend) => backend.ToLowerInvariant() switch
    {
        "opencl" => TryLoad(["libOpenCL.so.1", "libOpenCL.so"], "no OpenCL ICD loader (Debian: apt-get install ocl-icd-libopencl1 pocl-opencl-icd)")
                    ?? (Directory.Exists("/etc/OpenCL/vendors") && Directory.EnumerateFiles("/etc/OpenCL/vendors", "*.icd").Any()
                        ? Engine.Runtime.OpenCLDevices.MissingReason // a registered platform may still have no device
                        : "no OpenCL platform registered in /etc/OpenCL/vendors (Debian: apt-get install pocl-opencl-icd)"),
        "nvrtc" => TryLoad(["libnvrtc.so", "libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so.11.2"],
                    "no libnvrtc.so.* (Debian non-free: apt-get install libnvrtc11.2)"),
        "cuda" => TryLoad(["libcuda.so.1"], "no CUDA driver (libcuda.so.1); this machine has no NVIDIA GPU")
                  ?? Engine.Runtime.CudaDevices.MissingReason, // a driver without a usable device (cuInit: CUDA_ERROR_NO_DEVICE)
        // Not a backend but the same policy: the real-data tests need Debian's dataset-fashion-mnist.
        "fashion-mnist" => Engine.Data.FashionMnist.MissingReason(),
        _ => $"unknown backend '{backend}'",
    };

    private static string? TryLoad(string[] names, string reason)
    {
        foreach (var name in names)
            if (NativeLibrary.TryLoad(name, out var handle))
            {
                NativeLibrary.Free(handle);
                return null;
            }
        return reason;
    }
}

/// <summary>A fact that needs a native backend; skipped with the reason when the backend is missing and not required.</summary>
public sealed class BackendFactAttribute : FactAttribute
{
    /// <summary>Marks a test of <paramref name="backend"/> (opencl, nvrtc, cuda; or fashion-mnist for the installed data set).</summary>
    public BackendFactAttribute(string backend)
    {
        var reason = Backends.SkipReason(backend);
        if (reason is not null) Skip = reason;
    }
}

/// <summary>A theory that needs a native backend; skipped with the reason when the backend is missing and not required.</summary>
public sealed class BackendTheoryAttribute : TheoryAttribute
{
    /// <summary>Marks a test of <paramref name="backend"/> (opencl, nvrtc, cuda).</summary>
    public BackendTheoryAttribute(string backend)
    {
        var reason = Backends.SkipReason(backend);
        if (reason is not null) Skip = reason;
    }
}
