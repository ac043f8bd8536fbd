using System.Runtime.InteropServices;

namespace Engine.Runtime.Native.Nvrtc;

/// <summary>
/// Hand-written bindings to NVRTC, CUDA's run-time compiler (<c>libnvrtc.so.*</c>, CUDA 11.2 to 13).
/// The first library of <see cref="LibraryNames"/> that loads is used. Every call returning an
/// <c>nvrtcResult</c> goes through <see cref="Check"/>, which throws <see cref="NvrtcException"/>
/// with the result's name (nvrtcGetErrorString gives "NVRTC_ERROR_COMPILATION", ...).
/// nvrtcProgram is a pointer (nint); size_t is nuint.
/// </summary>
internal static unsafe class NvrtcApi
{
    /// <summary>Candidate names, in order: the unversioned dev link, then CUDA 13, 12 and 11.2+ (Debian's libnvrtc11.2 ships CUDA 11.8 under .so.11.2).</summary>
    public static readonly string[] LibraryNames = ["libnvrtc.so", "libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so.11.2"];

    // Declared after LibraryNames: static fields initialize in text order.
    private static readonly LazyNativeLibrary Library = new(LibraryNames, Bind);

    public static delegate* unmanaged<int, byte*> GetErrorString;
    public static delegate* unmanaged<int*, int*, int> Version;
    public static delegate* unmanaged<int*, int> GetNumSupportedArchs; // 11.2+
    public static delegate* unmanaged<int*, int> GetSupportedArchs;    // 11.2+
    public static delegate* unmanaged<nint*, byte*, byte*, int, byte**, byte**, int> CreateProgram;
    public static delegate* unmanaged<nint*, int> DestroyProgram;
    public static delegate* unmanaged<nint, int, byte**, int> CompileProgram;
    public static delegate* unmanaged<nint, nuint*, int> GetPTXSize;
    public static delegate* unmanaged<nint, byte*, int> GetPTX;
    public static delegate* unmanaged<nint, nuint*, int> GetCUBINSize; // 11.1+
    public static delegate* unmanaged<nint, byte*, int> GetCUBIN;
    public static delegate* unmanaged<nint, nuint*, int> GetProgramLogSize;
    public static delegate* unmanaged<nint, byte*, int> GetProgramLog;

    /// <summary>The library file that loaded (null when none).</summary>
    public static string? LibraryName => Library.LoadedName;

    /// <summary>Null when NVRTC is usable, otherwise why not.</summary>
    public static string? MissingReason => Library.MissingReason;

    /// <summary>Loads the library once; throws <see cref="NvrtcException"/> with the reason when it is missing.</summary>
    public static void EnsureLoaded(bool throwIfMissing = true)
    {
        if (throwIfMissing && Library.MissingReason is { } missing)
            throw new NvrtcException($"NVRTC is not available: {missing} (Debian non-free: apt-get install libnvrtc11.2)");
    }

    private static void Bind(NativeLibraryLoader lib)
    {
        GetErrorString = (delegate* unmanaged<int, byte*>)lib.Get("nvrtcGetErrorString");
        Version = (delegate* unmanaged<int*, int*, int>)lib.Get("nvrtcVersion");
        GetNumSupportedArchs = (delegate* unmanaged<int*, int>)lib.GetOptional("nvrtcGetNumSupportedArchs");
        GetSupportedArchs = (delegate* unmanaged<int*, int>)lib.GetOptional("nvrtcGetSupportedArchs");
        CreateProgram = (delegate* unmanaged<nint*, byte*, byte*, int, byte**, byte**, int>)lib.Get("nvrtcCreateProgram");
        DestroyProgram = (delegate* unmanaged<nint*, int>)lib.Get("nvrtcDestroyProgram");
        CompileProgram = (delegate* unmanaged<nint, int, byte**, int>)lib.Get("nvrtcCompileProgram");
        GetPTXSize = (delegate* unmanaged<nint, nuint*, int>)lib.Get("nvrtcGetPTXSize");
        GetPTX = (delegate* unmanaged<nint, byte*, int>)lib.Get("nvrtcGetPTX");
        GetCUBINSize = (delegate* unmanaged<nint, nuint*, int>)lib.Get("nvrtcGetCUBINSize");
        GetCUBIN = (delegate* unmanaged<nint, byte*, int>)lib.Get("nvrtcGetCUBIN");
        GetProgramLogSize = (delegate* unmanaged<nint, nuint*, int>)lib.Get("nvrtcGetProgramLogSize");
        GetProgramLog = (delegate* unmanaged<nint, byte*, int>)lib.Get("nvrtcGetProgramLog");
    }

    /// <summary>The name of an nvrtcResult, from the library when loaded, else from the header's table.</summary>
    public static string ErrorName(int code)
    {
        if (GetErrorString != null)
        {
            var text = Marshal.PtrToStringUTF8((nint)GetErrorString(code));
            if (!string.IsNullOrEmpty(text)) return text;
        }
        return code switch
        {
            0 => "NVRTC_SUCCESS", 1 => "NVRTC_ERROR_OUT_OF_MEMORY", 2 => "NVRTC_ERROR_PROGRAM_CREATION_FAILURE",
            3 => "NVRTC_ERROR_INVALID_INPUT", 4 => "NVRTC_ERROR_INVALID_PROGRAM", 5 => "NVRTC_ERROR_INVALID_OPTION",
            6 => "NVRTC_ERROR_COMPILATION", 7 => "NVRTC_ERROR_BUILTIN_OPERATION_FAILURE",
            11 => "NVRTC_ERROR_INTERNAL_ERROR", _ => $"NVRTC_ERROR_UNKNOWN({code})",
        };
    }

    /// <summary>Throws <see cref="NvrtcException"/> naming <paramref name="call"/> when <paramref name="code"/> is not NVRTC_SUCCESS.</summary>
    public static void Check(int code, string call, string? log = null)
    {
        if (code != 0) throw new NvrtcException(code, ErrorName(code), call, log);
    }
}
