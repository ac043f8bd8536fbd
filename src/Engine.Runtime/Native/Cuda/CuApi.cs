using System.Runtime.InteropServices;

namespace Engine.Runtime.Native.Cuda;

/// <summary>
/// Hand-written bindings to the CUDA driver API in <c>libcuda.so.1</c> (cuda.h). Where cuda.h maps a
/// name to a versioned symbol (<c>#define cuMemAlloc cuMemAlloc_v2</c>), the versioned export is
/// bound, as a program compiled against cuda.h would. Types: CUresult / CUdevice = int,
/// CUdeviceptr = ulong (64-bit), size_t = nuint, every other handle (CUcontext, CUmodule,
/// CUfunction, CUstream, CUevent) = nint. <see cref="Check"/> turns a non-zero CUresult into a
/// <see cref="CudaException"/> with the driver's name for it (cuGetErrorName) and the call.
/// </summary>
internal static unsafe class CuApi
{
    /// <summary>The driver library (installed by the NVIDIA driver, not by the toolkit).</summary>
    public static readonly string[] LibraryNames = ["libcuda.so.1"];

    // Declared after LibraryNames: static fields initialize in text order.
    private static readonly LazyNativeLibrary Library = new(LibraryNames, Bind);

    public static delegate* unmanaged<uint, int> Init;
    public static delegate* unmanaged<int*, int> DriverGetVersion;
    public static delegate* unmanaged<int, byte**, int> GetErrorName;
    public static delegate* unmanaged<int, byte**, int> GetErrorString;
    public static delegate* unmanaged<int*, int> DeviceGetCount;
    public static delegate* unmanaged<int*, int, int> DeviceGet;
    public static delegate* unmanaged<byte*, int, int, int> DeviceGetName;
    public static delegate* unmanaged<int*, int, int, int> DeviceGetAttribute;
    public static delegate* unmanaged<nuint*, int, int> DeviceTotalMem;                // cuDeviceTotalMem_v2
    public static delegate* unmanaged<nint*, int, int> DevicePrimaryCtxRetain;
    public static delegate* unmanaged<int, int> DevicePrimaryCtxRelease;               // cuDevicePrimaryCtxRelease_v2
    public static delegate* unmanaged<nint, int> CtxSetCurrent;
    public static delegate* unmanaged<int> CtxSynchronize;
    public static delegate* unmanaged<nint*, void*, int> ModuleLoadData;
    public static delegate* unmanaged<nint, int> ModuleUnload;
    public static delegate* unmanaged<nint*, nint, byte*, int> ModuleGetFunction;
    public static delegate* unmanaged<nint, int, int, int> FuncSetAttribute;
    public static delegate* unmanaged<nint, uint, uint, uint, uint, uint, uint, uint, nint, void**, void**, int> LaunchKernel;
    public static delegate* unmanaged<ulong*, nuint, int> MemAlloc;                     // cuMemAlloc_v2
    public static delegate* unmanaged<ulong, int> MemFree;                              // cuMemFree_v2
    public static delegate* unmanaged<ulong, void*, nuint, int> MemcpyHtoD;             // cuMemcpyHtoD_v2
    public static delegate* unmanaged<void*, ulong, nuint, int> MemcpyDtoH;             // cuMemcpyDtoH_v2
    public static delegate* unmanaged<ulong, byte, nuint, int> MemsetD8;                // cuMemsetD8_v2
    public static delegate* unmanaged<nint*, uint, int> StreamCreate;
    public static delegate* unmanaged<nint, int> StreamDestroy;                         // cuStreamDestroy_v2
    public static delegate* unmanaged<nint, int> StreamSynchronize;
    public static delegate* unmanaged<nint*, uint, int> EventCreate;
    public static delegate* unmanaged<nint, int> EventDestroy;                          // cuEventDestroy_v2
    public static delegate* unmanaged<nint, nint, int> EventRecord;
    public static delegate* unmanaged<nint, int> EventSynchronize;
    public static delegate* unmanaged<float*, nint, nint, int> EventElapsedTime;

    // CUdevice_attribute values (cuda.h).
    public const int AttrMaxThreadsPerBlock = 1, AttrMaxSharedMemoryPerBlock = 8, AttrWarpSize = 10,
        AttrMultiprocessorCount = 16, AttrComputeCapabilityMajor = 75, AttrComputeCapabilityMinor = 76,
        AttrMaxSharedMemoryPerBlockOptin = 97;

    /// <summary>CU_DEVICE_ATTRIBUTE_CLOCK_RATE (peak SM clock, kHz), _MEMORY_CLOCK_RATE (peak memory clock, kHz) and _GLOBAL_MEMORY_BUS_WIDTH (bits).</summary>
    public const int AttrClockRate = 13, AttrMemoryClockRate = 36, AttrGlobalMemoryBusWidth = 37;

    /// <summary>CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES (opt in to more than 48 KiB of dynamic shared memory).</summary>
    public const int FuncAttrMaxDynamicSharedSizeBytes = 8;

    /// <summary>CUDA_ERROR_NO_DEVICE: cuInit found no CUDA-capable device.</summary>
    public const int ErrorNoDevice = 100;

    /// <summary>Null when the driver library loaded, otherwise why not ("libcuda.so.1 not found").</summary>
    public static string? MissingReason => Library.MissingReason;

    /// <summary>Loads the library once; throws <see cref="CudaException"/> with the reason when it is missing.</summary>
    public static void EnsureLoaded(bool throwIfMissing = true)
    {
        if (throwIfMissing && Library.MissingReason is { } missing)
            throw new CudaException($"CUDA is not available: {missing} (no NVIDIA driver on this machine)");
    }

    private static void Bind(NativeLibraryLoader lib)
    {
        Init = (delegate* unmanaged<uint, int>)lib.Get("cuInit");
        DriverGetVersion = (delegate* unmanaged<int*, int>)lib.Get("cuDriverGetVersion");
        GetErrorName = (delegate* unmanaged<int, byte**, int>)lib.Get("cuGetErrorName");
        GetErrorString = (delegate* unmanaged<int, byte**, int>)lib.Get("cuGetErrorString");
        DeviceGetCount = (delegate* unmanaged<int*, int>)lib.Get("cuDeviceGetCount");
        DeviceGet = (delegate* unmanaged<int*, int, int>)lib.Get("cuDeviceGet");
        DeviceGetName = (delegate* unmanaged<byte*, int, int, int>)lib.Get("cuDeviceGetName");
        DeviceGetAttribute = (delegate* unmanaged<int*, int, int, int>)lib.Get("cuDeviceGetAttribute");
        DeviceTotalMem = (delegate* unmanaged<nuint*, int, int>)lib.Get("cuDeviceTotalMem_v2");
        DevicePrimaryCtxRetain = (delegate* unmanaged<nint*, int, int>)lib.Get("cuDevicePrimaryCtxRetain");
        DevicePrimaryCtxRelease = (delegate* unmanaged<int, int>)lib.Get("cuDevicePrimaryCtxRelease_v2");
        CtxSetCurrent = (delegate* unmanaged<nint, int>)lib.Get("cuCtxSetCurrent");
        CtxSynchronize = (delegate* unmanaged<int>)lib.Get("cuCtxSynchronize");
        ModuleLoadData = (delegate* unmanaged<nint*, void*, int>)lib.Get("cuModuleLoadData");
        ModuleUnload = (delegate* unmanaged<nint, int>)lib.Get("cuModuleUnload");
        ModuleGetFunction = (delegate* unmanaged<nint*, nint, byte*, int>)lib.Get("cuModuleGetFunction");
        FuncSetAttribute = (delegate* unmanaged<nint, int, int, int>)lib.Get("cuFuncSetAttribute");
        LaunchKernel = (delegate* unmanaged<nint, uint, uint, uint, uint, uint, uint, uint, nint, void**, void**, int>)lib.Get("cuLaunchKernel");
        MemAlloc = (delegate* unmanaged<ulong*, nuint, int>)lib.Get("cuMemAlloc_v2");
        MemFree = (delegate* unmanaged<ulong, int>)lib.Get("cuMemFree_v2");
        MemcpyHtoD = (delegate* unmanaged<ulong, void*, nuint, int>)lib.Get("cuMemcpyHtoD_v2");
        MemcpyDtoH = (delegate* unmanaged<void*, ulong, nuint, int>)lib.Get("cuMemcpyDtoH_v2");
        MemsetD8 = (delegate* unmanaged<ulong, byte, nuint, int>)lib.Get("cuMemsetD8_v2");
        StreamCreate = (delegate* unmanaged<nint*, uint, int>)lib.Get("cuStreamCreate");
        StreamDestroy = (delegate* unmanaged<nint, int>)lib.Get("cuStreamDestroy_v2");
        StreamSynchronize = (delegate* unmanaged<nint, int>)lib.Get("cuStreamSynchronize");
        EventCreate = (delegate* unmanaged<nint*, uint, int>)lib.Get("cuEventCreate");
        EventDestroy = (delegate* unmanaged<nint, int>)lib.Get("cuEventDestroy_v2");
        EventRecord = (delegate* unmanaged<nint, nint, int>)lib.Get("cuEventRecord");
        EventSynchronize = (delegate* unmanaged<nint, int>)lib.Get("cuEventSynchronize");
        EventElapsedTime = (delegate* unmanaged<float*, nint, nint, int>)lib.Get("cuEventElapsedTime");
    }

    /// <summary>The driver's name for <paramref name="code"/> (cuGetErrorName), e.g. CUDA_ERROR_INVALID_VALUE.</summary>
    public static string ErrorName(int code)
    {
        byte* text = null;
        if (GetErrorName != null && GetErrorName(code, &text) == 0 && text != null)
            return Marshal.PtrToStringUTF8((nint)text) ?? $"CUDA_ERROR({code})";
        return $"CUDA_ERROR_UNKNOWN_CODE({code})";
    }

    /// <summary>The driver's description of <paramref name="code"/> (cuGetErrorString).</summary>
    public static string ErrorDescription(int code)
    {
        byte* text = null;
        if (GetErrorString != null && GetErrorString(code, &text) == 0 && text != null)
            return Marshal.PtrToStringUTF8((nint)text) ?? "";
        return "";
    }

    /// <summary>Throws <see cref="CudaException"/> naming <paramref name="call"/> when <paramref name="code"/> is not CUDA_SUCCESS.</summary>
    public static void Check(int code, string call)
    {
        if (code != 0) throw new CudaException(code, ErrorName(code), ErrorDescription(code), call);
    }
}
