using System.Runtime.InteropServices;
using System.Text;

namespace Engine.Tests.KernelCompiler.TestShims;

/// <summary>
/// TEMPORARY, test-only: NVRTC compile of a CUDA C source to a cubin for one architecture, returning
/// the log (with the ptxas report). To be replaced by Engine.Runtime's NVRTC bindings
/// (Native/Nvrtc) when those are merged.
/// </summary>
internal static unsafe class NvrtcShim
{
    private const string Lib = "nvrtc";

    static NvrtcShim()
    {
        NativeLibrary.SetDllImportResolver(typeof(NvrtcShim).Assembly, (name, _, _) =>
        {
            if (name != Lib) return 0;
            foreach (var candidate in new[] { "libnvrtc.so", "libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so.11.2" })
                if (NativeLibrary.TryLoad(candidate, out var handle)) return handle;
            return 0;
        });
    }

    [DllImport(Lib)] private static extern int nvrtcCreateProgram(nint* program, byte* source, byte* name, int headers, byte** headerSources, byte** headerNames);
    [DllImport(Lib)] private static extern int nvrtcCompileProgram(nint program, int count, byte** options);
    [DllImport(Lib)] private static extern int nvrtcGetProgramLogSize(nint program, nuint* size);
    [DllImport(Lib)] private static extern int nvrtcGetProgramLog(nint program, byte* log);
    [DllImport(Lib)] private static extern int nvrtcGetCUBINSize(nint program, nuint* size);
    [DllImport(Lib)] private static extern int nvrtcDestroyProgram(nint* program);

    /// <summary>Compiles for sm_<paramref name="arch"/>; returns (ok, log, cubin bytes).</summary>
    public static (bool Ok, string Log, long CubinBytes) Compile(string source, string name, int arch)
    {
        nint program;
        var src = Encoding.UTF8.GetBytes(source + "\0");
        var file = Encoding.UTF8.GetBytes(name + ".cu\0");
        fixed (byte* s = src) fixed (byte* f = file)
            if (nvrtcCreateProgram(&program, s, f, 0, null, null) != 0) throw new InvalidOperationException("nvrtcCreateProgram failed");
        try
        {
            string[] options = [$"--gpu-architecture=sm_{arch}", "--ptxas-options=-v", "-default-device"];
            var encoded = options.Select(o => Encoding.UTF8.GetBytes(o + "\0")).ToArray();
            var handles = encoded.Select(e => GCHandle.Alloc(e, GCHandleType.Pinned)).ToArray();
            int result;
            try
            {
                byte** ptrs = stackalloc byte*[options.Length];
                for (int i = 0; i < options.Length; i++) ptrs[i] = (byte*)handles[i].AddrOfPinnedObject();
                result = nvrtcCompileProgram(program, options.Length, ptrs);
            }
            finally
            {
                foreach (var h in handles) h.Free();
            }
            nuint size;
            nvrtcGetProgramLogSize(program, &size);
            var log = new byte[(int)size];
            fixed (byte* l = log) nvrtcGetProgramLog(program, l);
            nuint cubin = 0;
            if (result == 0) nvrtcGetCUBINSize(program, &cubin);
            return (result == 0, Encoding.UTF8.GetString(log).TrimEnd('\0'), (long)cubin);
        }
        finally
        {
            nvrtcDestroyProgram(&program);
        }
    }
}
