using System.Text;
using Engine.Runtime.Native.Cuda;

namespace Engine.Runtime;

/// <summary>One CUDA device as the driver describes it.</summary>
/// <param name="Index">The device ordinal (the N of <c>cuda:N</c>).</param>
/// <param name="Name">The device name (cuDeviceGetName).</param>
/// <param name="Major">Compute capability, major.</param>
/// <param name="Minor">Compute capability, minor.</param>
/// <param name="MultiprocessorCount">Number of SMs.</param>
/// <param name="MaxThreadsPerBlock">Largest block.</param>
/// <param name="SharedMemoryPerBlock">Shared memory a block gets by default (48 KiB).</param>
/// <param name="SharedMemoryPerBlockOptIn">Shared memory a block may opt in to.</param>
/// <param name="WarpSize">Threads per warp.</param>
/// <param name="TotalMemoryBytes">Global memory.</param>
public sealed record CudaDeviceInfo(
    int Index, string Name, int Major, int Minor, int MultiprocessorCount, int MaxThreadsPerBlock,
    long SharedMemoryPerBlock, long SharedMemoryPerBlockOptIn, int WarpSize, long TotalMemoryBytes)
{
    /// <summary>The real architecture name of the device, e.g. sm_80.</summary>
    public string Architecture => $"sm_{Major}{Minor}";

    /// <summary>Compute capability as one number, e.g. 80.</summary>
    public int ArchitectureNumber => Major * 10 + Minor;

    /// <inheritdoc />
    public override string ToString()
        => $"cuda:{Index} {Name} ({Architecture}) {MultiprocessorCount} SMs, block <= {MaxThreadsPerBlock}, " +
           $"smem {SharedMemoryPerBlock / 1024} KiB (opt-in {SharedMemoryPerBlockOptIn / 1024} KiB), {TotalMemoryBytes >> 20} MiB";
}

/// <summary>Initializes the CUDA driver (once) and enumerates its devices.</summary>
public static unsafe class CudaDevices
{
    private static readonly object Gate = new();
    private static int _initResult = -1;

    /// <summary>
    /// Null when at least one CUDA device is usable; otherwise why not: "libcuda.so.1 not found"
    /// (no driver), the CUresult cuInit returned (e.g. CUDA_ERROR_NO_DEVICE), or no device.
    /// </summary>
    public static string? MissingReason
    {
        get
        {
            if (CuApi.MissingReason is { } missing) return missing;
            try
            {
                return Count == 0 ? "the CUDA driver reports no device" : null;
            }
            catch (CudaException e)
            {
                return e.ErrorCode == CuApi.ErrorNoDevice ? "no CUDA-capable device (cuInit: CUDA_ERROR_NO_DEVICE)" : e.Message;
            }
        }
    }

    /// <summary>The driver's CUDA version, e.g. 12040 for 12.4 (cuDriverGetVersion).</summary>
    public static int DriverVersion
    {
        get
        {
            EnsureInitialized();
            int version;
            CuApi.Check(CuApi.DriverGetVersion(&version), "cuDriverGetVersion");
            return version;
        }
    }

    /// <summary>Number of CUDA devices.</summary>
    public static int Count
    {
        get
        {
            EnsureInitialized();
            int count;
            CuApi.Check(CuApi.DeviceGetCount(&count), "cuDeviceGetCount");
            return count;
        }
    }

    /// <summary>Every device, by ordinal.</summary>
    public static IReadOnlyList<CudaDeviceInfo> List() => Enumerable.Range(0, Count).Select(Describe).ToList();

    /// <summary>Calls cuInit(0) once; later calls rethrow its failure.</summary>
    internal static void EnsureInitialized()
    {
        CuApi.EnsureLoaded();
        lock (Gate)
        {
            if (_initResult < 0) _initResult = CuApi.Init(0);
        }
        CuApi.Check(_initResult, "cuInit");
    }

    /// <summary>The description of device <paramref name="ordinal"/>.</summary>
    public static CudaDeviceInfo Describe(int ordinal)
    {
        EnsureInitialized();
        int device;
        CuApi.Check(CuApi.DeviceGet(&device, ordinal), $"cuDeviceGet({ordinal})");
        var name = new byte[256];
        fixed (byte* p = name) CuApi.Check(CuApi.DeviceGetName(p, name.Length, device), "cuDeviceGetName");
        nuint total;
        CuApi.Check(CuApi.DeviceTotalMem(&total, device), "cuDeviceTotalMem");
        return new CudaDeviceInfo(
            ordinal, Encoding.UTF8.GetString(name).TrimEnd('\0'),
            Attribute(device, CuApi.AttrComputeCapabilityMajor), Attribute(device, CuApi.AttrComputeCapabilityMinor),
            Attribute(device, CuApi.AttrMultiprocessorCount), Attribute(device, CuApi.AttrMaxThreadsPerBlock),
            Attribute(device, CuApi.AttrMaxSharedMemoryPerBlock), Attribute(device, CuApi.AttrMaxSharedMemoryPerBlockOptin),
            Attribute(device, CuApi.AttrWarpSize), (long)total);
    }

    private static int Attribute(int device, int attribute)
    {
        int value;
        CuApi.Check(CuApi.DeviceGetAttribute(&value, attribute, device), $"cuDeviceGetAttribute({attribute})");
        return value;
    }
}
