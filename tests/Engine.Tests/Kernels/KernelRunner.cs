using System.Reflection;
using Engine.Runtime;
using Engine.Runtime.Kernels;

namespace Engine.Tests.Kernels;

/// <summary>
/// ALL the host-side OpenCL plumbing of the kernel tests, in one place (to be switched to the common
/// launcher API when it lands): runs a translated kernel's OpenCL C on the first OpenCL device (PoCL
/// in CI) with host arrays. Each array becomes a device buffer (copied in, and back after the
/// launch); views pass as cl_mem + long length, as <see cref="KernelSource.Parameters"/> declares;
/// scalars and blittable structs pass by value.
/// </summary>
internal sealed class KernelRunner : IDisposable
{
    private static readonly Lazy<KernelRunner> SharedRunner = new(() => new KernelRunner());
    private static readonly MethodInfo ValueArg = typeof(KernelArg).GetMethod(nameof(KernelArg.Value))!;
    private readonly OpenCLAccelerator _cl = new();
    private readonly object _gate = new();

    /// <summary>One runner (one OpenCL context, with its program cache) for every test.</summary>
    public static KernelRunner OpenCL => SharedRunner.Value;

    /// <summary>Builds <paramref name="kernel"/>'s OpenCL C (throws with the build log on failure).</summary>
    public void Build(KernelSource kernel) => _cl.Build(kernel.OpenCLSource, KernelSource.OpenCLBuildOptions);

    /// <summary>
    /// Runs <paramref name="kernel"/> on <paramref name="grid"/> groups of <paramref name="group"/> threads.
    /// <paramref name="arguments"/> are in the C# parameter order: an array for each view (written back
    /// after the launch), a primitive or struct for each value.
    /// </summary>
    public void Run(KernelSource kernel, Dim3 grid, Dim3 group, params object[] arguments)
        => Run(kernel, grid, group, 0, arguments);

    /// <summary>As <see cref="Run(KernelSource, Dim3, Dim3, object[])"/>, with dynamic shared memory.</summary>
    public void Run(KernelSource kernel, Dim3 grid, Dim3 group, int dynamicSharedBytes, params object[] arguments)
    {
        if (arguments.Length != kernel.Parameters.Count)
            throw new ArgumentException($"{kernel.Name}: {arguments.Length} arguments for {kernel.Parameters.Count} parameters.");
        lock (_gate)
        {
            var args = new List<KernelArg>();
            var buffers = new List<(OpenCLBuffer Buffer, Array Host)>();
            try
            {
                for (int p = 0; p < arguments.Length; p++)
                {
                    var parameter = kernel.Parameters[p];
                    var value = arguments[p];
                    if (parameter.Kind == KernelParameterKind.View)
                    {
                        if (value is not Array array || array.GetType().GetElementType() != parameter.ClrType)
                            throw new ArgumentException($"{kernel.Name}: parameter {parameter.Name} is a view of {parameter.ClrType.Name}; pass a {parameter.ClrType.Name}[].");
                        var bytes = new byte[Buffer.ByteLength(array)];
                        Buffer.BlockCopy(array, 0, bytes, 0, bytes.Length);
                        var buffer = _cl.Allocate<byte>(bytes);
                        buffers.Add((buffer, array));
                        args.Add(KernelArg.Of(buffer));
                        args.Add((long)array.Length);
                    }
                    else
                    {
                        if (value.GetType() != parameter.ClrType)
                            throw new ArgumentException($"{kernel.Name}: parameter {parameter.Name} is a {parameter.ClrType.Name}, got {value.GetType().Name}.");
                        args.Add(value is bool b ? KernelArg.Value(b ? 1 : 0) : (KernelArg)ValueArg.MakeGenericMethod(parameter.ClrType).Invoke(null, [value])!);
                    }
                }
                if (kernel.UsesDynamicSharedMemory)
                {
                    args.Add(KernelArg.Local(Math.Max(1, dynamicSharedBytes)));
                    args.Add(dynamicSharedBytes);
                }
                var program = _cl.Build(kernel.OpenCLSource, KernelSource.OpenCLBuildOptions);
                _cl.Launch(program, kernel.EntryPoint, grid, group, args.ToArray());
                _cl.Synchronize();
                foreach (var (buffer, host) in buffers)
                {
                    var bytes = new byte[Buffer.ByteLength(host)];
                    _cl.CopyToHost<byte>(buffer, bytes);
                    Buffer.BlockCopy(bytes, 0, host, 0, bytes.Length);
                }
            }
            finally
            {
                foreach (var (buffer, _) in buffers) buffer.Dispose();
            }
        }
    }

    /// <summary>Releases the OpenCL context.</summary>
    public void Dispose() => _cl.Dispose();
}
