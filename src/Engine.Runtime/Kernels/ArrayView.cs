using System.Runtime.CompilerServices;

namespace Engine.Runtime.Kernels;

/// <summary>
/// A typed window on device memory: a pointer and a length, as kernels see buffers. In C# (the
/// emulator) every access is bounds-checked and a bad index is reported with the thread that made
/// it; translated to CUDA/OpenCL it becomes a plain pointer.
/// </summary>
/// <typeparam name="T">An unmanaged element type.</typeparam>
public readonly unsafe struct ArrayView<T> : IArrayView where T : unmanaged
{
    private readonly T* _pointer;

    /// <summary>Makes a view of <paramref name="length"/> elements at <paramref name="pointer"/>.</summary>
    public ArrayView(T* pointer, long length)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        _pointer = pointer;
        Length = length;
    }

    /// <summary>Number of elements.</summary>
    public long Length { get; }

    /// <summary>Length as an int (kernels index with int).</summary>
    public int IntLength => (int)Length;

    /// <summary>The element at <paramref name="index"/>, by reference (atomics take it).</summary>
    public ref T this[long index]
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get
        {
            if ((ulong)index >= (ulong)Length) KernelContext.ThrowOutOfBounds(index, Length, typeof(T));
            return ref _pointer[index];
        }
    }

    /// <summary>The element at <paramref name="index"/>, by reference.</summary>
    public ref T this[int index] => ref this[(long)index];

    /// <summary>Elements <paramref name="offset"/> .. <paramref name="offset"/>+<paramref name="length"/>-1.</summary>
    public ArrayView<T> SubView(long offset, long length)
    {
        if (offset < 0 || length < 0 || offset + length > Length)
            throw new ArgumentOutOfRangeException(nameof(offset), $"ArrayView.SubView: [{offset}, {offset + length}) is outside a view of {Length} elements.");
        return new ArrayView<T>(_pointer + offset, length);
    }

    /// <summary>The start of the memory (host code only).</summary>
    public T* Pointer => _pointer;

    ulong IArrayView.Address => (ulong)_pointer;
    Type IArrayView.ElementType => typeof(T);
    int IArrayView.ElementSize => sizeof(T);

    /// <inheritdoc />
    public override string ToString() => $"ArrayView<{typeof(T).Name}>(0x{(ulong)_pointer:x}, {Length})";
}

/// <summary>A boxed <see cref="ArrayView{T}"/> as launchers read it: address, length, element type.</summary>
internal interface IArrayView
{
    /// <summary>The address of element 0.</summary>
    ulong Address { get; }

    /// <summary>Number of elements.</summary>
    long Length { get; }

    /// <summary>The element type.</summary>
    Type ElementType { get; }

    /// <summary>sizeof(T).</summary>
    int ElementSize { get; }
}
