using Engine.Runtime;

namespace Engine.Tensors.Kernels;

/// <summary>Random draws on a device from the CPU's Philox stream (kernels/Random): the same seed gives the same values, bit for bit.</summary>
internal static partial class KernelDispatch
{
    /// <summary>
    /// Tensor.Bernoulli(shape, p) on <paramref name="device"/> (float32): 1 with probability p, else 0;
    /// reserves the generator's blocks exactly as the CPU draw (2 elements per block), so the mask
    /// equals the CPU's for the same generator state and the generator ends in the same state.
    /// </summary>
    public static Tensor Bernoulli(long[] shape, double p, DType dtype, Generator? generator, Device device)
    {
        const string op = "Bernoulli";
        if (dtype != DType.Float32)
            throw new NotSupportedException($"{op} has no kernel for {dtype.Name()} tensors on {device} yet (the kernels are float32).");
        if (!(p >= 0 && p <= 1))
            throw new ArgumentOutOfRangeException(nameof(p), $"{op}: probability {p} is outside [0, 1].");
        var y = Tensor.Allocate(shape, dtype, zero: false, op, device);
        long n = y.NumEl;
        if (n == 0) return y;
        long blocks = (n + 1) / 2;
        var (seed, offset) = (generator ?? Generator.Default).Reserve((ulong)blocks);
        // u = k·2^-53 < p  ⇔  k < p·2^53 (exact in float64)  ⇔  k < ⌈p·2^53⌉ for an integer k.
        ulong threshold = (ulong)Math.Ceiling(p * 9007199254740992.0);
        RandomKernels.Launch.Bernoulli(DeviceRegistry.Get(device), Groups(blocks, RandomKernels.GroupSize), RandomKernels.GroupSize,
            y.Storage.Buffer.View<float>(), seed, offset, threshold, n);
        return y;
    }
}
