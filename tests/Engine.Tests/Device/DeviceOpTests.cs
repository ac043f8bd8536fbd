using Device = Engine.Runtime.Device;

namespace Engine.Tests.DeviceTensors;

/// <summary>The training-step ops on the kernel emulator (always available): every check of <see cref="DeviceOpChecks"/>.</summary>
public class EmulatorOpTests
{
    private static readonly Device Emulator = Device.Parse("emulator");

    [Fact] public void UnfoldFoldMatchCpu() => DeviceOpChecks.UnfoldFold(Emulator);
    [Fact] public void Conv2dMatchesCpu() => DeviceOpChecks.Conv2d(Emulator);
    [Fact] public void MaxPoolMatchesCpu() => DeviceOpChecks.MaxPool(Emulator);
    [Fact] public void GatherScatterMatchCpu() => DeviceOpChecks.GatherScatter(Emulator);
    [Fact] public void IndexSelectCatOneHotMatchCpu() => DeviceOpChecks.IndexSelectCatOneHot(Emulator);
    [Fact] public void WhereMaskArgMaxMatchCpu() => DeviceOpChecks.WhereMaskArgMax(Emulator);
    [Fact] public void MasksAndConversionsMatchCpu() => DeviceOpChecks.MasksAndConversions(Emulator);
    [Fact] public void StatisticsMatchCpu() => DeviceOpChecks.Statistics(Emulator);
    [Fact] public void LayerNormAndAvgPoolMatchCpu() => DeviceOpChecks.LayerNormAndAvgPool(Emulator);
    [Fact] public void BatchNormMatchesCpu() => DeviceOpChecks.BatchNorm(Emulator);
    [Fact] public void DropoutMasksEqualCpu() => DeviceOpChecks.Dropout(Emulator);
    [Fact] public void LossesMatchCpu() => DeviceOpChecks.Losses(Emulator);
    [Fact] public void SgdEqualsCpu() => DeviceOpChecks.Sgd(Emulator);
    [Fact] public void StudentStepMatchesCpu() => DeviceOpChecks.StudentSteps(Emulator, batch: 2, steps: 1);
}

/// <summary>The training-step ops on OpenCL (PoCL in CI): every check of <see cref="DeviceOpChecks"/>.</summary>
public class OpenCLOpTests
{
    private static readonly Device OpenCL = Device.Parse("opencl:0");

    [BackendFact("opencl")] public void UnfoldFoldMatchCpu() => DeviceOpChecks.UnfoldFold(OpenCL);
    [BackendFact("opencl")] public void Conv2dMatchesCpu() => DeviceOpChecks.Conv2d(OpenCL);
    [BackendFact("opencl")] public void MaxPoolMatchesCpu() => DeviceOpChecks.MaxPool(OpenCL);
    [BackendFact("opencl")] public void GatherScatterMatchCpu() => DeviceOpChecks.GatherScatter(OpenCL);
    [BackendFact("opencl")] public void IndexSelectCatOneHotMatchCpu() => DeviceOpChecks.IndexSelectCatOneHot(OpenCL);
    [BackendFact("opencl")] public void WhereMaskArgMaxMatchCpu() => DeviceOpChecks.WhereMaskArgMax(OpenCL);
    [BackendFact("opencl")] public void MasksAndConversionsMatchCpu() => DeviceOpChecks.MasksAndConversions(OpenCL);
    [BackendFact("opencl")] public void StatisticsMatchCpu() => DeviceOpChecks.Statistics(OpenCL);
    [BackendFact("opencl")] public void LayerNormAndAvgPoolMatchCpu() => DeviceOpChecks.LayerNormAndAvgPool(OpenCL);
    [BackendFact("opencl")] public void BatchNormMatchesCpu() => DeviceOpChecks.BatchNorm(OpenCL);
    [BackendFact("opencl")] public void DropoutMasksEqualCpu() => DeviceOpChecks.Dropout(OpenCL);
    [BackendFact("opencl")] public void LossesMatchCpu() => DeviceOpChecks.Losses(OpenCL);
    [BackendFact("opencl")] public void SgdEqualsCpu() => DeviceOpChecks.Sgd(OpenCL);
    [BackendFact("opencl")] public void StudentStepsMatchCpu() => DeviceOpChecks.StudentSteps(OpenCL, batch: 8, steps: 3);
}

/// <summary>The training-step ops on a CUDA GPU (where one exists; skipped with the reason elsewhere).</summary>
public class CudaOpTests
{
    private static readonly Device Cuda = Device.Parse("cuda:0");

    [BackendFact("cuda")] public void UnfoldFoldMatchCpu() => DeviceOpChecks.UnfoldFold(Cuda);
    [BackendFact("cuda")] public void Conv2dMatchesCpu() => DeviceOpChecks.Conv2d(Cuda);
    [BackendFact("cuda")] public void MaxPoolMatchesCpu() => DeviceOpChecks.MaxPool(Cuda);
    [BackendFact("cuda")] public void GatherScatterMatchCpu() => DeviceOpChecks.GatherScatter(Cuda);
    [BackendFact("cuda")] public void IndexSelectCatOneHotMatchCpu() => DeviceOpChecks.IndexSelectCatOneHot(Cuda);
    [BackendFact("cuda")] public void WhereMaskArgMaxMatchCpu() => DeviceOpChecks.WhereMaskArgMax(Cuda);
    [BackendFact("cuda")] public void MasksAndConversionsMatchCpu() => DeviceOpChecks.MasksAndConversions(Cuda);
    [BackendFact("cuda")] public void StatisticsMatchCpu() => DeviceOpChecks.Statistics(Cuda);
    [BackendFact("cuda")] public void LayerNormAndAvgPoolMatchCpu() => DeviceOpChecks.LayerNormAndAvgPool(Cuda);
    [BackendFact("cuda")] public void BatchNormMatchesCpu() => DeviceOpChecks.BatchNorm(Cuda);
    [BackendFact("cuda")] public void DropoutMasksEqualCpu() => DeviceOpChecks.Dropout(Cuda);
    [BackendFact("cuda")] public void LossesMatchCpu() => DeviceOpChecks.Losses(Cuda);
    [BackendFact("cuda")] public void SgdEqualsCpu() => DeviceOpChecks.Sgd(Cuda);
    [BackendFact("cuda")] public void StudentStepsMatchCpu() => DeviceOpChecks.StudentSteps(Cuda, batch: 8, steps: 3);
}
