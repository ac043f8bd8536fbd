namespace Engine.Runtime.Native.OpenCL;

/// <summary>
/// Hand-written bindings to the OpenCL 1.2 C API in <c>libOpenCL.so.1</c> (the ICD loader, which
/// dispatches to PoCL, a GPU driver, ...). Function pointers resolved once; every call that returns
/// a <c>cl_int</c> goes through <see cref="Check"/>, which turns a non-zero code into an
/// <see cref="OpenCLException"/> naming the error and the call. Types: cl_int = int, cl_uint = uint,
/// size_t = nuint, cl_ulong / cl_bitfield = ulong, every handle = nint.
/// </summary>
internal static unsafe class ClApi
{
    public static delegate* unmanaged<uint, nint*, uint*, int> GetPlatformIDs;
    public static delegate* unmanaged<nint, uint, nuint, void*, nuint*, int> GetPlatformInfo;
    public static delegate* unmanaged<nint, ulong, uint, nint*, uint*, int> GetDeviceIDs;
    public static delegate* unmanaged<nint, uint, nuint, void*, nuint*, int> GetDeviceInfo;
    public static delegate* unmanaged<nint*, uint, nint*, nint, nint, int*, nint> CreateContext;
    public static delegate* unmanaged<nint, int> ReleaseContext;
    public static delegate* unmanaged<nint, nint, ulong, int*, nint> CreateCommandQueue;
    public static delegate* unmanaged<nint, int> ReleaseCommandQueue;
    public static delegate* unmanaged<nint, ulong, nuint, void*, int*, nint> CreateBuffer;
    public static delegate* unmanaged<nint, int> ReleaseMemObject;
    public static delegate* unmanaged<nint, nint, uint, nuint, nuint, void*, uint, nint*, nint*, int> EnqueueReadBuffer;
    public static delegate* unmanaged<nint, nint, uint, nuint, nuint, void*, uint, nint*, nint*, int> EnqueueWriteBuffer;
    public static delegate* unmanaged<nint, nint, void*, nuint, nuint, nuint, uint, nint*, nint*, int> EnqueueFillBuffer;
    public static delegate* unmanaged<nint, uint, byte**, nuint*, int*, nint> CreateProgramWithSource;
    public static delegate* unmanaged<nint, uint, nint*, byte*, nint, nint, int> BuildProgram;
    public static delegate* unmanaged<nint, nint, uint, nuint, void*, nuint*, int> GetProgramBuildInfo;
    public static delegate* unmanaged<nint, int> ReleaseProgram;
    public static delegate* unmanaged<nint, byte*, int*, nint> CreateKernel;
    public static delegate* unmanaged<nint, int> ReleaseKernel;
    public static delegate* unmanaged<nint, uint, nuint, void*, int> SetKernelArg;
    public static delegate* unmanaged<nint, nint, uint, nuint*, nuint*, nuint*, uint, nint*, nint*, int> EnqueueNDRangeKernel;
    public static delegate* unmanaged<nint, int> Finish;

    /// <summary>The library names tried, in order.</summary>
    public static readonly string[] LibraryNames = ["libOpenCL.so.1", "libOpenCL.so"];

    // Declared after LibraryNames: static fields initialize in text order.
    private static readonly LazyNativeLibrary Library = new(LibraryNames, Bind);

    /// <summary>Null when the OpenCL loader is usable, otherwise why not (e.g. "libOpenCL.so.1 not found").</summary>
    public static string? MissingReason => Library.MissingReason;

    /// <summary>Loads the library once; throws <see cref="OpenCLException"/> with the reason when it is missing.</summary>
    public static void EnsureLoaded(bool throwIfMissing = true)
    {
        if (throwIfMissing && Library.MissingReason is { } missing)
            throw new OpenCLException($"OpenCL is not available: {missing} (Debian: apt-get install ocl-icd-libopencl1 pocl-opencl-icd)");
    }

    private static void Bind(NativeLibraryLoader lib)
    {
        GetPlatformIDs = (delegate* unmanaged<uint, nint*, uint*, int>)lib.Get("clGetPlatformIDs");
        GetPlatformInfo = (delegate* unmanaged<nint, uint, nuint, void*, nuint*, int>)lib.Get("clGetPlatformInfo");
        GetDeviceIDs = (delegate* unmanaged<nint, ulong, uint, nint*, uint*, int>)lib.Get("clGetDeviceIDs");
        GetDeviceInfo = (delegate* unmanaged<nint, uint, nuint, void*, nuint*, int>)lib.Get("clGetDeviceInfo");
        CreateContext = (delegate* unmanaged<nint*, uint, nint*, nint, nint, int*, nint>)lib.Get("clCreateContext");
        ReleaseContext = (delegate* unmanaged<nint, int>)lib.Get("clReleaseContext");
        CreateCommandQueue = (delegate* unmanaged<nint, nint, ulong, int*, nint>)lib.Get("clCreateCommandQueue");
        ReleaseCommandQueue = (delegate* unmanaged<nint, int>)lib.Get("clReleaseCommandQueue");
        CreateBuffer = (delegate* unmanaged<nint, ulong, nuint, void*, int*, nint>)lib.Get("clCreateBuffer");
        ReleaseMemObject = (delegate* unmanaged<nint, int>)lib.Get("clReleaseMemObject");
        EnqueueReadBuffer = (delegate* unmanaged<nint, nint, uint, nuint, nuint, void*, uint, nint*, nint*, int>)lib.Get("clEnqueueReadBuffer");
        EnqueueWriteBuffer = (delegate* unmanaged<nint, nint, uint, nuint, nuint, void*, uint, nint*, nint*, int>)lib.Get("clEnqueueWriteBuffer");
        EnqueueFillBuffer = (delegate* unmanaged<nint, nint, void*, nuint, nuint, nuint, uint, nint*, nint*, int>)lib.Get("clEnqueueFillBuffer");
        CreateProgramWithSource = (delegate* unmanaged<nint, uint, byte**, nuint*, int*, nint>)lib.Get("clCreateProgramWithSource");
        BuildProgram = (delegate* unmanaged<nint, uint, nint*, byte*, nint, nint, int>)lib.Get("clBuildProgram");
        GetProgramBuildInfo = (delegate* unmanaged<nint, nint, uint, nuint, void*, nuint*, int>)lib.Get("clGetProgramBuildInfo");
        ReleaseProgram = (delegate* unmanaged<nint, int>)lib.Get("clReleaseProgram");
        CreateKernel = (delegate* unmanaged<nint, byte*, int*, nint>)lib.Get("clCreateKernel");
        ReleaseKernel = (delegate* unmanaged<nint, int>)lib.Get("clReleaseKernel");
        SetKernelArg = (delegate* unmanaged<nint, uint, nuint, void*, int>)lib.Get("clSetKernelArg");
        EnqueueNDRangeKernel = (delegate* unmanaged<nint, nint, uint, nuint*, nuint*, nuint*, uint, nint*, nint*, int>)lib.Get("clEnqueueNDRangeKernel");
        Finish = (delegate* unmanaged<nint, int>)lib.Get("clFinish");
    }

    /// <summary>Throws <see cref="OpenCLException"/> naming <paramref name="call"/> when <paramref name="code"/> is not CL_SUCCESS.</summary>
    public static void Check(int code, string call)
    {
        if (code != ClErrors.Success) throw new OpenCLException(code, call);
    }

    /// <summary>A string-valued platform or device property (info query returning char[]).</summary>
    public static string InfoString(delegate* unmanaged<nint, uint, nuint, void*, nuint*, int> query, nint handle, uint param, string call)
    {
        nuint size;
        Check(query(handle, param, 0, null, &size), call);
        var bytes = new byte[(int)size];
        fixed (byte* p = bytes) Check(query(handle, param, size, p, null), call);
        return System.Text.Encoding.UTF8.GetString(bytes).TrimEnd('\0').Trim();
    }

    /// <summary>A fixed-size unmanaged property (cl_uint, cl_ulong, size_t, cl_bool).</summary>
    public static T InfoValue<T>(delegate* unmanaged<nint, uint, nuint, void*, nuint*, int> query, nint handle, uint param, string call) where T : unmanaged
    {
        T value = default;
        Check(query(handle, param, (nuint)sizeof(T), &value, null), call);
        return value;
    }
}
