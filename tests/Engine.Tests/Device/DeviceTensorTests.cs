using Engine.Runtime;
using Device = Engine.Runtime.Device;

namespace Engine.Tests.DeviceTensors;

/// <summary>Tensors on the kernel emulator (always available): every check of <see cref="DeviceChecks"/>.</summary>
public class EmulatorTensorTests
{
    private static readonly Device Emulator = Device.Parse("emulator");

    [Fact] public void ToRoundTrips() => DeviceChecks.RoundTrip(Emulator);
    [Fact] public void ToRecordsItsBackward() => DeviceChecks.RoundTripGradient(Emulator);
    [Fact] public void BinaryOpsMatchCpu() => DeviceChecks.Binary(Emulator);
    [Fact] public void UnaryOpsMatchCpu() => DeviceChecks.Unary(Emulator);
    [Fact] public void CopiesMatchCpu() => DeviceChecks.Copies(Emulator);
    [Fact] public void ReductionsMatchCpu() => DeviceChecks.Reductions(Emulator);
    [Fact] public void SoftmaxMatchesCpu() => DeviceChecks.Softmax(Emulator);
    [Fact] public void MatMulMatchesCpu() => DeviceChecks.MatMul(Emulator);
    [Fact] public void MlpForwardBackwardMatchesCpu() => DeviceChecks.Mlp(Emulator);
    [Fact] public void OpWithoutKernelThrows() => DeviceChecks.Unsupported(Emulator);
    [Fact] public void MixedDevicesThrow() => DeviceChecks.MixedDevices(Emulator);

    [Fact]
    public void RegistryKeepsOneAcceleratorPerDevice()
    {
        Assert.Same(DeviceRegistry.Get(Emulator), DeviceRegistry.Get(Emulator));
        Assert.Equal(Emulator, DeviceRegistry.Get(Emulator).Device);
        Assert.Throws<ArgumentException>(() => DeviceRegistry.Get(Device.Cpu));
    }

    [Fact]
    public void MissingBackendSaysWhy()
    {
        var missing = Device.Parse("opencl:99");
        var reason = DeviceRegistry.MissingReason(missing);
        Assert.NotNull(reason);
        var e = Assert.Throws<NotSupportedException>(() => Engine.Tensors.Tensor.Zeros([2], Engine.Tensors.DType.Float32, missing));
        Assert.Contains("opencl:99", e.Message);
        Assert.Contains(reason!, e.Message);
    }
}

/// <summary>Tensors on OpenCL (PoCL in CI): every check of <see cref="DeviceChecks"/>.</summary>
public class OpenCLTensorTests
{
    private static readonly Device OpenCL = Device.Parse("opencl:0");

    [BackendFact("opencl")] public void ToRoundTrips() => DeviceChecks.RoundTrip(OpenCL);
    [BackendFact("opencl")] public void ToRecordsItsBackward() => DeviceChecks.RoundTripGradient(OpenCL);
    [BackendFact("opencl")] public void BinaryOpsMatchCpu() => DeviceChecks.Binary(OpenCL);
    [BackendFact("opencl")] public void UnaryOpsMatchCpu() => DeviceChecks.Unary(OpenCL);
    [BackendFact("opencl")] public void CopiesMatchCpu() => DeviceChecks.Copies(OpenCL);
    [BackendFact("opencl")] public void ReductionsMatchCpu() => DeviceChecks.Reductions(OpenCL);
    [BackendFact("opencl")] public void SoftmaxMatchesCpu() => DeviceChecks.Softmax(OpenCL);
    [BackendFact("opencl")] public void MatMulMatchesCpu() => DeviceChecks.MatMul(OpenCL);
    [BackendFact("opencl")] public void MlpForwardBackwardMatchesCpu() => DeviceChecks.Mlp(OpenCL);
    [BackendFact("opencl")] public void OpWithoutKernelThrows() => DeviceChecks.Unsupported(OpenCL);
    [BackendFact("opencl")] public void MixedDevicesThrow() => DeviceChecks.MixedDevices(OpenCL);

    [BackendFact("opencl")]
    public void MovesBetweenDevices()
    {
        using var x = Engine.Tensors.Tensor.FromArray(new float[] { 1, 2, 3, 4, 5 }, 5).RequiresGrad_();
        using var onEmulator = x.To(Device.Parse("emulator"));
        using var onOpenCL = onEmulator.To(OpenCL);
        Assert.Equal(OpenCL, onOpenCL.Device);
        Assert.Equal(x.ToArray<float>(), onOpenCL.ToArray<float>());
        using var s = onOpenCL.Sum();
        s.Backward();
        Assert.All(x.Grad!.ToArray<float>(), v => Assert.Equal(1f, v));
    }
}

/// <summary>Tensors on a CUDA GPU (where one exists; skipped with the reason elsewhere): every check of <see cref="DeviceChecks"/>.</summary>
public class CudaTensorTests
{
    private static readonly Device Cuda = Device.Parse("cuda:0");

    [BackendFact("cuda")] public void ToRoundTrips() => DeviceChecks.RoundTrip(Cuda);
    [BackendFact("cuda")] public void ToRecordsItsBackward() => DeviceChecks.RoundTripGradient(Cuda);
    [BackendFact("cuda")] public void BinaryOpsMatchCpu() => DeviceChecks.Binary(Cuda);
    [BackendFact("cuda")] public void UnaryOpsMatchCpu() => DeviceChecks.Unary(Cuda);
    [BackendFact("cuda")] public void CopiesMatchCpu() => DeviceChecks.Copies(Cuda);
    [BackendFact("cuda")] public void ReductionsMatchCpu() => DeviceChecks.Reductions(Cuda);
    [BackendFact("cuda")] public void SoftmaxMatchesCpu() => DeviceChecks.Softmax(Cuda);
    [BackendFact("cuda")] public void MatMulMatchesCpu() => DeviceChecks.MatMul(Cuda);
    [BackendFact("cuda")] public void MlpForwardBackwardMatchesCpu() => DeviceChecks.Mlp(Cuda);
    [BackendFact("cuda")] public void OpWithoutKernelThrows() => DeviceChecks.Unsupported(Cuda);
    [BackendFact("cuda")] public void MixedDevicesThrow() => DeviceChecks.MixedDevices(Cuda);
}
