using System.Runtime.InteropServices;
using System.Text;

namespace Engine.Tests.KernelCompiler.TestShims;

/// <summary>
/// TEMPORARY, test-only: the few libOpenCL calls the kernel-compiler tests need to build and run
/// translated kernels on PoCL. To be replaced by Engine.Runtime's OpenCL bindings (Native/OpenCL)
/// when those are merged. Views are passed as float[]/int[] (copied in and back) plus their length.
/// </summary>
internal sealed record LocalMemory(int Bytes);

/// <summary>TEMPORARY test shim (see the file header).</summary>
internal sealed unsafe class OpenClShim : IDisposable
{
    private const string Lib = "libOpenCL.so.1";
    [DllImport(Lib)] private static extern int clGetPlatformIDs(uint n, nint* platforms, uint* count);
    [DllImport(Lib)] private static extern int clGetDeviceIDs(nint platform, ulong type, uint n, nint* devices, uint* count);
    [DllImport(Lib)] private static extern nint clCreateContext(nint props, uint n, nint* devices, nint callback, nint user, int* err);
    [DllImport(Lib)] private static extern nint clCreateCommandQueue(nint context, nint device, ulong props, int* err);
    [DllImport(Lib)] private static extern nint clCreateProgramWithSource(nint context, uint count, byte** strings, nuint* lengths, int* err);
    [DllImport(Lib)] private static extern int clBuildProgram(nint program, uint n, nint* devices, byte* options, nint callback, nint user);
    [DllImport(Lib)] private static extern int clGetProgramBuildInfo(nint program, nint device, uint name, nuint size, byte* value, nuint* ret);
    [DllImport(Lib)] private static extern nint clCreateKernel(nint program, byte* name, int* err);
    [DllImport(Lib)] private static extern nint clCreateBuffer(nint context, ulong flags, nuint size, void* host, int* err);
    [DllImport(Lib)] private static extern int clSetKernelArg(nint kernel, uint index, nuint size, void* value);
    [DllImport(Lib)] private static extern int clEnqueueNDRangeKernel(nint queue, nint kernel, uint dims, nuint* offset, nuint* global, nuint* local, uint n, nint* waits, nint* ev);
    [DllImport(Lib)] private static extern int clEnqueueReadBuffer(nint queue, nint buffer, uint blocking, nuint offset, nuint size, void* ptr, uint n, nint* waits, nint* ev);
    [DllImport(Lib)] private static extern int clFinish(nint queue);
    [DllImport(Lib)] private static extern int clReleaseMemObject(nint o);
    [DllImport(Lib)] private static extern int clReleaseKernel(nint o);
    [DllImport(Lib)] private static extern int clReleaseProgram(nint o);
    [DllImport(Lib)] private static extern int clReleaseCommandQueue(nint o);
    [DllImport(Lib)] private static extern int clReleaseContext(nint o);

    private readonly nint _device, _context, _queue;

    public OpenClShim()
    {
        nint platform, device;
        uint count;
        Check(clGetPlatformIDs(1, &platform, &count), "clGetPlatformIDs");
        Check(clGetDeviceIDs(platform, 0xFFFFFFFF, 1, &device, &count), "clGetDeviceIDs");
        _device = device;
        int err;
        _context = clCreateContext(0, 1, &device, 0, 0, &err);
        Check(err, "clCreateContext");
        _queue = clCreateCommandQueue(_context, _device, 0, &err);
        Check(err, "clCreateCommandQueue");
    }

    private static void Check(int code, string what)
    {
        if (code != 0) throw new InvalidOperationException($"{what} failed with OpenCL error {code}");
    }

    /// <summary>Builds <paramref name="source"/>; throws with the build log on failure.</summary>
    public nint Build(string source, string options = Engine.Runtime.Kernels.KernelSource.OpenCLBuildOptions)
    {
        var bytes = Encoding.UTF8.GetBytes(source);
        var opts = Encoding.UTF8.GetBytes(options + "\0");
        int err;
        nint program;
        fixed (byte* p = bytes)
        {
            byte* ptr = p;
            nuint length = (nuint)bytes.Length;
            program = clCreateProgramWithSource(_context, 1, &ptr, &length, &err);
        }
        Check(err, "clCreateProgramWithSource");
        nint device = _device;
        int build;
        fixed (byte* o = opts) build = clBuildProgram(program, 1, &device, o, 0, 0);
        if (build != 0)
        {
            nuint size;
            clGetProgramBuildInfo(program, _device, 0x1183, 0, null, &size);
            var log = new byte[(int)size];
            fixed (byte* l = log) clGetProgramBuildInfo(program, _device, 0x1183, size, l, null);
            clReleaseProgram(program);
            throw new InvalidOperationException($"OpenCL build failed ({build}):\n{Encoding.UTF8.GetString(log).TrimEnd('\0')}\n--- source ---\n{source}");
        }
        return program;
    }

    /// <summary>Runs <paramref name="entry"/>: arrays become (buffer, long length) and are read back; scalars pass by value.</summary>
    public void Run(string source, string entry, (int X, int Y) grid, (int X, int Y) group, params object[] args)
    {
        nint program = Build(source);
        int err;
        nint kernel;
        fixed (byte* name = Encoding.UTF8.GetBytes(entry + "\0")) kernel = clCreateKernel(program, name, &err);
        Check(err, "clCreateKernel " + entry);
        var buffers = new List<(nint Buffer, Array Host)>();
        try
        {
            uint index = 0;
            foreach (var arg in args)
            {
                switch (arg)
                {
                    case Array array:
                    {
                        var handle = GCHandle.Alloc(array, GCHandleType.Pinned);
                        nuint bytes = (nuint)(Buffer.ByteLength(array));
                        nint buffer = clCreateBuffer(_context, 1 | (1 << 5), bytes == 0 ? 4 : bytes, bytes == 0 ? null : (void*)handle.AddrOfPinnedObject(), &err);
                        handle.Free();
                        Check(err, "clCreateBuffer");
                        buffers.Add((buffer, array));
                        Check(clSetKernelArg(kernel, index++, (nuint)sizeof(nint), &buffer), "clSetKernelArg");
                        long length = array.Length;
                        Check(clSetKernelArg(kernel, index++, 8, &length), "clSetKernelArg");
                        break;
                    }
                    case LocalMemory shared: Check(clSetKernelArg(kernel, index++, (nuint)shared.Bytes, null), "clSetKernelArg(local)"); break;
                    case int i: Check(clSetKernelArg(kernel, index++, 4, &i), "clSetKernelArg"); break;
                    case float f: Check(clSetKernelArg(kernel, index++, 4, &f), "clSetKernelArg"); break;
                    case long l: Check(clSetKernelArg(kernel, index++, 8, &l), "clSetKernelArg"); break;
                    case bool b: { int v = b ? 1 : 0; Check(clSetKernelArg(kernel, index++, 4, &v), "clSetKernelArg"); break; }
                    case ValueType value when !value.GetType().IsPrimitive:
                    {
                        // a blittable struct, passed by value with its C# layout
                        var handle = GCHandle.Alloc(value, GCHandleType.Pinned);
                        try { Check(clSetKernelArg(kernel, index++, (nuint)System.Runtime.CompilerServices.RuntimeHelpers.SizeOf(value.GetType().TypeHandle), (void*)handle.AddrOfPinnedObject()), "clSetKernelArg(struct)"); }
                        finally { handle.Free(); }
                        break;
                    }
                    default: throw new ArgumentException($"unsupported argument {arg}");
                }
            }
            nuint* global = stackalloc nuint[] { (nuint)(grid.X * group.X), (nuint)(grid.Y * group.Y) };
            nuint* local = stackalloc nuint[] { (nuint)group.X, (nuint)group.Y };
            Check(clEnqueueNDRangeKernel(_queue, kernel, 2, null, global, local, 0, null, null), "clEnqueueNDRangeKernel");
            Check(clFinish(_queue), "clFinish");
            foreach (var (buffer, host) in buffers)
            {
                if (host.Length == 0) continue;
                var handle = GCHandle.Alloc(host, GCHandleType.Pinned);
                try { Check(clEnqueueReadBuffer(_queue, buffer, 1, 0, (nuint)Buffer.ByteLength(host), (void*)handle.AddrOfPinnedObject(), 0, null, null), "clEnqueueReadBuffer"); }
                finally { handle.Free(); }
            }
        }
        finally
        {
            foreach (var (buffer, _) in buffers) clReleaseMemObject(buffer);
            clReleaseKernel(kernel);
            clReleaseProgram(program);
        }
    }

    public void Dispose()
    {
        clReleaseCommandQueue(_queue);
        clReleaseContext(_context);
    }
}
