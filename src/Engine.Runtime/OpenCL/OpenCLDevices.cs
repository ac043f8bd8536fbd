using Engine.Runtime.Native.OpenCL;

namespace Engine.Runtime;

/// <summary>One OpenCL device as the driver describes it.</summary>
/// <param name="Index">Index among all devices of all platforms (the N of <c>opencl:N</c>).</param>
/// <param name="PlatformName">The platform (e.g. "Portable Computing Language").</param>
/// <param name="PlatformVersion">The platform's OpenCL version string.</param>
/// <param name="Name">The device name.</param>
/// <param name="Vendor">The device vendor.</param>
/// <param name="Version">The device's OpenCL version string.</param>
/// <param name="ComputeUnits">CL_DEVICE_MAX_COMPUTE_UNITS.</param>
/// <param name="MaxWorkGroupSize">CL_DEVICE_MAX_WORK_GROUP_SIZE (threads per group).</param>
/// <param name="LocalMemBytes">CL_DEVICE_LOCAL_MEM_SIZE (shared memory per group).</param>
/// <param name="GlobalMemBytes">CL_DEVICE_GLOBAL_MEM_SIZE.</param>
/// <param name="SupportsDouble">Whether the device has double-precision support.</param>
public sealed record OpenCLDeviceInfo(
    int Index, string PlatformName, string PlatformVersion, string Name, string Vendor, string Version,
    int ComputeUnits, long MaxWorkGroupSize, long LocalMemBytes, long GlobalMemBytes, bool SupportsDouble)
{
    /// <summary>The platform handle (cl_platform_id).</summary>
    internal nint Platform { get; init; }

    /// <summary>The device handle (cl_device_id).</summary>
    internal nint Handle { get; init; }

    /// <inheritdoc />
    public override string ToString()
        => $"opencl:{Index} {Name} ({Vendor}; {PlatformName}; {Version}) {ComputeUnits} CUs, group <= {MaxWorkGroupSize}, " +
           $"local {LocalMemBytes / 1024} KiB, global {GlobalMemBytes >> 20} MiB";
}

/// <summary>Enumerates OpenCL platforms and devices through <see cref="ClApi"/>.</summary>
public static unsafe class OpenCLDevices
{
    /// <summary>
    /// Null when at least one OpenCL device is usable; otherwise why not: the loader library is
    /// missing, no platform is registered (CL_PLATFORM_NOT_FOUND_KHR), or the platforms have no device.
    /// </summary>
    public static string? MissingReason
    {
        get
        {
            if (ClApi.MissingReason is { } missing) return missing;
            try
            {
                return List().Count == 0 ? "OpenCL platforms found but they report no device" : null;
            }
            catch (OpenCLException e) when (e.ErrorCode == ClErrors.PlatformNotFoundKhr)
            {
                return "no OpenCL platform registered (CL_PLATFORM_NOT_FOUND_KHR; Debian: apt-get install pocl-opencl-icd)";
            }
            catch (OpenCLException e)
            {
                return e.Message;
            }
        }
    }

    /// <summary>Every device of every platform, in platform order. Throws <see cref="OpenCLException"/> when OpenCL is missing.</summary>
    public static IReadOnlyList<OpenCLDeviceInfo> List()
    {
        ClApi.EnsureLoaded();
        uint platformCount;
        int code = ClApi.GetPlatformIDs(0, null, &platformCount);
        if (code == ClErrors.PlatformNotFoundKhr) return [];
        ClApi.Check(code, "clGetPlatformIDs");
        var platforms = new nint[platformCount];
        fixed (nint* p = platforms) ClApi.Check(ClApi.GetPlatformIDs(platformCount, p, null), "clGetPlatformIDs");

        var devices = new List<OpenCLDeviceInfo>();
        foreach (var platform in platforms)
        {
            string platformName = ClApi.InfoString(ClApi.GetPlatformInfo, platform, ClErrors.PlatformName, "clGetPlatformInfo");
            string platformVersion = ClApi.InfoString(ClApi.GetPlatformInfo, platform, ClErrors.PlatformVersion, "clGetPlatformInfo");
            uint deviceCount;
            code = ClApi.GetDeviceIDs(platform, ClErrors.DeviceTypeAll, 0, null, &deviceCount);
            if (code == -1) continue; // CL_DEVICE_NOT_FOUND: a platform with no device
            ClApi.Check(code, "clGetDeviceIDs");
            var handles = new nint[deviceCount];
            fixed (nint* p = handles) ClApi.Check(ClApi.GetDeviceIDs(platform, ClErrors.DeviceTypeAll, deviceCount, p, null), "clGetDeviceIDs");
            foreach (var device in handles)
                devices.Add(Describe(devices.Count, platform, platformName, platformVersion, device));
        }
        return devices;
    }

    private static OpenCLDeviceInfo Describe(int index, nint platform, string platformName, string platformVersion, nint device)
    {
        const string call = "clGetDeviceInfo";
        var q = ClApi.GetDeviceInfo;
        return new OpenCLDeviceInfo(
            index, platformName, platformVersion,
            ClApi.InfoString(q, device, ClErrors.DeviceName, call),
            ClApi.InfoString(q, device, ClErrors.DeviceVendor, call),
            ClApi.InfoString(q, device, ClErrors.DeviceVersion, call),
            (int)ClApi.InfoValue<uint>(q, device, ClErrors.DeviceMaxComputeUnits, call),
            (long)ClApi.InfoValue<nuint>(q, device, ClErrors.DeviceMaxWorkGroupSize, call),
            (long)ClApi.InfoValue<ulong>(q, device, ClErrors.DeviceLocalMemSize, call),
            (long)ClApi.InfoValue<ulong>(q, device, ClErrors.DeviceGlobalMemSize, call),
            ClApi.InfoValue<ulong>(q, device, ClErrors.DeviceDoubleFpConfig, call) != 0)
        {
            Platform = platform,
            Handle = device,
        };
    }
}
