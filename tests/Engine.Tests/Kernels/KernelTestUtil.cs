using Engine.Runtime;
using Engine.Runtime.Kernels;
using Engine.Tensors;

namespace Engine.Tests.Kernels;

/// <summary>
/// Shared helpers of the kernel tests: the emulator, device views of a tensor's whole storage (so a
/// kernel reads a non-contiguous view through its own offset and strides), and comparisons.
/// </summary>
internal static unsafe class KernelTestUtil
{
    /// <summary>The emulator every kernel test runs on (one OS thread per GPU thread: keep launches small).</summary>
    public static readonly EmulatorAccelerator Emulator = new();

    /// <summary>A view of all of <paramref name="t"/>'s storage (float32, CPU); the tensor's own offset/strides index it.</summary>
    public static ArrayView<float> StorageView(Tensor t)
    {
        Assert.Equal(DType.Float32, t.DType);
        var buffer = (CpuBuffer)t.Storage.Buffer;
        return new ArrayView<float>((float*)buffer.Pointer, buffer.Length / sizeof(float));
    }

    /// <summary>A copy of all of <paramref name="t"/>'s storage (what the device would hold).</summary>
    public static float[] StorageArray(Tensor t)
    {
        var view = StorageView(t);
        return new Span<float>(view.Pointer, checked((int)view.Length)).ToArray();
    }

    /// <summary>A view of a contiguous tensor's elements (kernel outputs are written through it).</summary>
    public static ArrayView<float> View(Tensor t)
    {
        Assert.True(t.IsContiguous && t.DType == DType.Float32);
        return new ArrayView<float>(t.Ptr<float>(), t.NumEl);
    }

    /// <summary>The float32 values of <paramref name="t"/> in row-major order, as doubles.</summary>
    public static double[] Doubles(Tensor t) => t.To(DType.Float64).ToArray<double>();

    /// <summary>Asserts |expected − actual| ≤ atol + rtol·|expected| elementwise (NaN matches NaN), naming the first mismatch.</summary>
    public static void Close(ReadOnlySpan<double> expected, ReadOnlySpan<float> actual, double atol, double rtol, string what)
    {
        Assert.True(expected.Length == actual.Length, $"{what}: {actual.Length} values, expected {expected.Length}");
        for (int i = 0; i < expected.Length; i++)
        {
            double e = expected[i], a = actual[i];
            if (double.IsNaN(e) && double.IsNaN(a)) continue;
            if (e == a) continue; // also equal infinities
            Assert.True(Math.Abs(e - a) <= atol + rtol * Math.Abs(e), $"{what}[{i}]: expected {e:R}, got {a:R} (atol {atol}, rtol {rtol})");
        }
    }

    /// <summary>As <see cref="Close(ReadOnlySpan{double}, ReadOnlySpan{float}, double, double, string)"/> against float values.</summary>
    public static void Close(float[] expected, float[] actual, double atol, double rtol, string what)
        => Close(expected.Select(v => (double)v).ToArray(), actual, atol, rtol, what);
}
