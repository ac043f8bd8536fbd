using Engine.Runtime.Kernels;

namespace Engine.Runtime;

/// <summary>Launching translated kernels (<see cref="KernelSource"/>) on CUDA.</summary>
public sealed partial class CudaAccelerator
{
    private readonly Dictionary<KernelSource, CudaModule> _bySource = new(ReferenceEqualityComparer.Instance);

    /// <summary>
    /// The module of <paramref name="kernel"/>'s CUDA C for this device's architecture: compiled once
    /// by <see cref="Nvrtc"/> through <see cref="Cache"/> (on disk, keyed by source, options,
    /// architecture and NVRTC version) and loaded once per accelerator.
    /// </summary>
    public CudaModule Load(KernelSource kernel)
    {
        ArgumentNullException.ThrowIfNull(kernel);
        lock (_gate)
            if (_bySource.TryGetValue(kernel, out var module)) return module;
        var loaded = Load(kernel.CudaSource);
        lock (_gate) _bySource[kernel] = loaded;
        return loaded;
    }

    /// <summary>
    /// Runs translated kernel <paramref name="kernel"/> on the default stream: each view becomes its
    /// device pointer and <c>long long</c> length, a value its C# bytes (a <c>bool</c> one byte), and a
    /// kernel using dynamic shared memory gets the byte count as a trailing <c>int</c>.
    /// </summary>
    public override void Launch(KernelSource kernel, Dim3 grid, Dim3 group, int dynamicSharedBytes, object[] arguments)
        => Launch(kernel, grid, group, dynamicSharedBytes, arguments, stream: null);

    /// <summary>As <see cref="Launch(KernelSource, Dim3, Dim3, int, object[])"/>, queued on <paramref name="stream"/> (null: the default stream).</summary>
    internal void Launch(KernelSource kernel, Dim3 grid, Dim3 group, int dynamicSharedBytes, object[] arguments, CudaStream? stream)
    {
        KernelArguments.Check(kernel, grid, group, dynamicSharedBytes, arguments);
        var module = Load(kernel);
        var args = new List<KernelArg>(arguments.Length * 2 + 1);
        for (int i = 0; i < arguments.Length; i++)
        {
            var p = kernel.Parameters[i];
            if (p.Kind == KernelParameterKind.View)
            {
                var view = (IArrayView)arguments[i];
                if ((view.Address >> 62) == 1)
                    throw new ArgumentException($"Launch {kernel.Name}: argument {i} ({p.Name}) is a view of OpenCL memory (fake address 0x{view.Address:x}); pass a view of a CudaBuffer of {Device}.");
                args.Add(KernelArg.Value(view.Address));
                args.Add(view.Length);
            }
            else
                args.Add(KernelArg.Raw(KernelArguments.Bytes(arguments[i], p.SizeInBytes)));
        }
        if (kernel.UsesDynamicSharedMemory) args.Add(dynamicSharedBytes);
        Launch(module, kernel.EntryPoint, grid, group, dynamicSharedBytes, stream, args.ToArray());
    }
}
