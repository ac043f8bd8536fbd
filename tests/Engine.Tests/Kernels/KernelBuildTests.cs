using Engine.Runtime.Kernels;
using Engine.Runtime;

namespace Engine.Tests.Kernels;

/// <summary>
/// Engine.Tensors' kernels (kernels/) as built code: all registered, each CUDA source compiled by
/// NVRTC for sm_70/80/90 without a local-memory stack frame (spills are checked for every kernel by
/// KernelEndToEndTests; a stack frame means a by-value layout was copied to local memory).
/// </summary>
public class KernelBuildTests
{
    private static IReadOnlyList<KernelSource> TensorKernels()
    {
        System.Runtime.CompilerServices.RuntimeHelpers.RunModuleConstructor(typeof(Engine.Tensors.Tensor).Module.ModuleHandle);
        return KernelRegistry.All.Where(k => k.DeclaringType.StartsWith("Engine.Tensors.Kernels")).ToList();
    }

    [Fact]
    public void EveryFamily_IsRegistered()
    {
        var names = TensorKernels().Select(k => k.EntryPoint).ToHashSet();
        string[] expected =
        [
            "FloatUnary__Tensor_ExpOp", "FloatUnary__Tensor_LogOp", "FloatUnary__Tensor_TanhOp", "FloatUnary__Tensor_SigmoidOp",
            "NumericUnary__Tensor_ReluOp", "NumericUnary__NegOp",
            "DeviceUnary__DeviceAbsOp", "DeviceUnary__DeviceErfOp", "DeviceUnary__DeviceGeluOp", "DeviceUnary__DeviceGeluTanhOp",
            "Binary__Tensor_AddOp", "Binary__Tensor_SubOp", "Binary__Tensor_MulOp", "Binary__Tensor_DivOp",
            "ReduceRows__SumReduce", "ReduceRows__MaxReduce", "ReduceColumns__SumReduce", "ReduceColumns__MaxReduce",
            "SoftmaxForward", "LogSoftmaxForward", "SoftmaxBackward", "LogSoftmaxBackward", "Sgemm",
        ];
        foreach (var name in expected) Assert.Contains(name, names);
    }

    /// <summary>The architectures every kernel must compile for.</summary>
    public static TheoryData<int> Architectures => new() { 70, 80, 90 };

    [BackendTheory("nvrtc")]
    [MemberData(nameof(Architectures))]
    public void EveryKernel_CompilesWithNvrtc_WithoutStackFrame(int arch)
    {
        foreach (var kernel in TensorKernels())
        {
            NvrtcModule module;
            try { module = Nvrtc.Compile(kernel.CudaSource, $"sm_{arch}", programName: kernel.EntryPoint + ".cu"); }
            catch (NvrtcException e) { throw new Xunit.Sdk.XunitException($"{kernel.Name} failed for sm_{arch}:\n{e.Message}"); }
            var usage = Assert.Single(module.Kernels, k => k.Kernel == kernel.EntryPoint);
            Assert.True(usage.StackFrameBytes == 0 && usage.SpillBytes == 0, $"{kernel.Name} on sm_{arch}: {usage}");
        }
    }
}
