namespace Engine.Runtime.Kernels;

/// <summary>
/// Four floats moved as one 16-byte access: CUDA <c>float4</c> (one LDG.128 / LDS.128 / STS.128
/// instead of four scalar instructions), OpenCL <c>float4</c> (<c>vload4</c> / <c>vstore4</c>). In
/// kernels it is a value in registers: read and write <see cref="X"/>..<see cref="W"/>, create it with
/// <c>new Float4 { X = .., Y = .., Z = .., W = .. }</c> (unset components are 0).
/// </summary>
public struct Float4
{
    /// <summary>Element 0 (CUDA/OpenCL <c>.x</c>).</summary>
    public float X;
    /// <summary>Element 1 (<c>.y</c>).</summary>
    public float Y;
    /// <summary>Element 2 (<c>.z</c>).</summary>
    public float Z;
    /// <summary>Element 3 (<c>.w</c>).</summary>
    public float W;

    /// <summary>
    /// Elements <paramref name="index"/> .. <paramref name="index"/>+3 of <paramref name="view"/> in one
    /// 16-byte load. The address must be 16-byte aligned (CUDA faults otherwise): the view must start
    /// 16-byte aligned (device allocations and whole-buffer views do; shared arrays are declared
    /// <c>__align__(16)</c>) and <paramref name="index"/> be a multiple of 4 from there. The emulator
    /// checks the bounds of all four elements and the alignment of the address, so a misaligned
    /// vector access fails in tests before it reaches a GPU.
    /// </summary>
    public static unsafe Float4 Load(ArrayView<float> view, int index)
    {
        CheckVector(view, index);
        float* p = view.Pointer + index;
        return new Float4 { X = p[0], Y = p[1], Z = p[2], W = p[3] };
    }

    /// <summary>Writes <paramref name="value"/> to elements <paramref name="index"/> .. <paramref name="index"/>+3 in one 16-byte store (alignment as <see cref="Load"/>).</summary>
    public static unsafe void Store(ArrayView<float> view, int index, Float4 value)
    {
        CheckVector(view, index);
        float* p = view.Pointer + index;
        p[0] = value.X;
        p[1] = value.Y;
        p[2] = value.Z;
        p[3] = value.W;
    }

    private static unsafe void CheckVector(ArrayView<float> view, int index)
    {
        if (index < 0 || (long)index + 4 > view.Length) KernelContext.ThrowOutOfBounds(index < 0 ? index : (long)index + 3, view.Length, typeof(float));
        ulong address = (ulong)(view.Pointer + index);
        if ((address & 15) != 0)
        {
            var where = KernelContext.CurrentOrNull?.Describe() ?? "host code";
            throw new KernelFaultException($"Float4 access at element {index} of a view at 0x{(ulong)view.Pointer:x} is not 16-byte aligned (address 0x{address:x}, {where}); CUDA faults on it.");
        }
    }
}

/// <summary>Loop hints for the device compilers (no effect in C#).</summary>
public static class Loop
{
    /// <summary>
    /// As a statement directly before a <c>for</c>, <c>while</c> or <c>do</c> loop: <c>#pragma unroll</c>
    /// (unroll completely; the trip count should be a compile-time constant). Fully unrolled loops index
    /// <c>[InlineArray]</c> locals with constants, so NVRTC keeps those arrays in registers instead
    /// of a local-memory stack frame.
    /// </summary>
    public static void Unroll() { }
}
