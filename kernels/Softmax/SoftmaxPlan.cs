using Engine.Runtime.Kernels;

namespace Engine.Tensors.Kernels;

/// <summary>Host side of SoftmaxKernels: one group per row, the group a power of two sized to the row.</summary>
internal static class SoftmaxPlan
{
    /// <summary>
    /// Grid and group for <paramref name="rows"/> rows of length <paramref name="n"/> (grid x is 0 when
    /// there is nothing to do); <paramref name="maxGroup"/> (a power of two, 32 to 256) caps the group.
    /// </summary>
    public static (Dim3 Grid, Dim3 Group) For(long rows, long n, int maxGroup = SoftmaxKernels.MaxGroup)
    {
        if (maxGroup < 32 || maxGroup > SoftmaxKernels.MaxGroup || !System.Numerics.BitOperations.IsPow2(maxGroup))
            throw new ArgumentOutOfRangeException(nameof(maxGroup), $"softmax kernel: the group cap must be a power of two in [32, {SoftmaxKernels.MaxGroup}], got {maxGroup}.");
        if (n > int.MaxValue || rows > int.MaxValue)
            throw new ArgumentException($"softmax kernel: {rows} rows of {n} exceed the kernels' 32-bit sizes.");
        int group = (int)Math.Clamp(System.Numerics.BitOperations.RoundUpToPowerOf2((ulong)Math.Max(n, 1)), 32UL, (ulong)maxGroup);
        return (new Dim3(n == 0 ? 0 : (int)rows), new Dim3(group));
    }

    /// <summary>The factor the kernels multiply by: (float)(1/T), as the CPU op; T must be positive and finite.</summary>
    public static float InverseTemperature(double temperature)
    {
        if (!(temperature > 0) || !double.IsFinite(temperature))
            throw new ArgumentOutOfRangeException(nameof(temperature), $"softmax kernel: temperature must be positive and finite, got {temperature}.");
        return (float)(1.0 / temperature);
    }
}
