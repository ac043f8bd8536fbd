using Engine.Runtime.Kernels;

namespace Engine.Tests.Kernels;

/// <summary>
/// The kernels of the training step (kernels/Conv, Pool, Indexing, Norm, Random) are registered; their
/// NVRTC compilation for sm_70/80/90 with no stack frame and no spills is checked, with every other
/// kernel of Engine.Tensors, by KernelBuildTests.EveryKernel_CompilesWithNvrtc_WithoutStackFrame; their
/// OpenCL sources are built by PoCL in the device tests (tests/Engine.Tests/Device/DeviceOpTests.cs).
/// </summary>
public class TrainingKernelBuildTests
{
    [Fact]
    public void TrainingKernels_AreRegistered()
    {
        System.Runtime.CompilerServices.RuntimeHelpers.RunModuleConstructor(typeof(Engine.Tensors.Tensor).Module.ModuleHandle);
        var names = KernelRegistry.All.Where(k => k.DeclaringType.StartsWith("Engine.Tensors.Kernels")).Select(k => k.EntryPoint).ToHashSet();
        string[] expected =
        [
            "Im2Col", "Col2Im", "MaxPool2d", "Gather", "ScatterAdd", "IndexSelect", "OneHot", "Where", "ArgMaxRows",
            "StridedCopy64", "StridedCopy32", "StridedCopy8", "VarRows", "NormUnary__Tensor_SqrtOp", "NormUnary__Tensor_RsqrtOp", "Bernoulli",
            "Stats", "Forward", "BackwardReduce", "BackwardInput", "Compare__Tensor_GtOp", "Compare__Tensor_EqOp", "LongToFloat", "IntToFloat", "BoolToFloat", "FloatToBool",
        ];
        foreach (var name in expected) Assert.Contains(name, names);
    }
}
