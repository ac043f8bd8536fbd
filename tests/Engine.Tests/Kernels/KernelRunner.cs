using System.Reflection;
using Engine.Runtime;
using Engine.Runtime.Kernels;

namespace Engine.Tests.Kernels;

/// <summary>
/// Runs a translated kernel on the first OpenCL device (PoCL in CI) through the common
/// <see cref="Accelerator"/> API, with host arrays: each array becomes a device buffer (copied in,
/// and back after the launch) passed as a view of that buffer; scalars and structs pass by value.
/// </summary>
internal sealed class KernelRunner : IDisposable
{
    private static readonly Lazy<KernelRunner> SharedRunner = new(() => new KernelRunner());
    private static readonly MethodInfo ViewOf = typeof(DeviceBuffer).GetMethod(nameof(DeviceBuffer.View))!;
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
            var args = new object[arguments.Length];
            var buffers = new List<(DeviceBuffer Buffer, Array Host)>();
            try
            {
                for (int p = 0; p < arguments.Length; p++)
                {
                    var parameter = kernel.Parameters[p];
                    if (parameter.Kind == KernelParameterKind.View && arguments[p] is Array array)
                    {
                        if (array.GetType().GetElementType() != parameter.ClrType)
                            throw new ArgumentException($"{kernel.Name}: parameter {parameter.Name} is a view of {parameter.ClrType.Name}; pass a {parameter.ClrType.Name}[].");
                        var bytes = new byte[Buffer.ByteLength(array)];
                        Buffer.BlockCopy(array, 0, bytes, 0, bytes.Length);
                        var buffer = _cl.Allocate<byte>(bytes);
                        buffers.Add((buffer, array));
                        args[p] = ViewOf.MakeGenericMethod(parameter.ClrType).Invoke(buffer, null)!;
                    }
                    else
                    {
                        args[p] = arguments[p]; // the accelerator checks kinds and types against the kernel's parameters
                    }
                }
                _cl.Launch(kernel, grid, group, dynamicSharedBytes, args);
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
