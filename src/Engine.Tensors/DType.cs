namespace Engine.Tensors;

/// <summary>Element type of a tensor.</summary>
public enum DType
{
    /// <summary>32-bit IEEE float (the working type).</summary>
    Float32,
    /// <summary>64-bit IEEE float (references and gradcheck).</summary>
    Float64,
    /// <summary>32-bit signed integer.</summary>
    Int32,
    /// <summary>64-bit signed integer (indices).</summary>
    Int64,
    /// <summary>Boolean, one byte per element.</summary>
    Bool,
}

/// <summary>Facts about <see cref="DType"/> values.</summary>
public static class DTypes
{
    /// <summary>Bytes per element.</summary>
    public static int ElementSize(this DType dtype) => dtype switch
    {
        DType.Float32 or DType.Int32 => 4,
        DType.Float64 or DType.Int64 => 8,
        DType.Bool => 1,
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "unknown dtype"),
    };

    /// <summary>True for <see cref="DType.Float32"/> and <see cref="DType.Float64"/>.</summary>
    public static bool IsFloatingPoint(this DType dtype) => dtype is DType.Float32 or DType.Float64;

    /// <summary>Lower-case name as PyTorch prints it (<c>float32</c>, <c>int64</c>, <c>bool</c>).</summary>
    public static string Name(this DType dtype) => dtype.ToString().ToLowerInvariant();

    /// <summary>The dtype of CLR type <typeparamref name="T"/>.</summary>
    /// <exception cref="NotSupportedException"><typeparamref name="T"/> is not a tensor element type.</exception>
    public static DType Of<T>() where T : unmanaged
    {
        if (typeof(T) == typeof(float)) return DType.Float32;
        if (typeof(T) == typeof(double)) return DType.Float64;
        if (typeof(T) == typeof(int)) return DType.Int32;
        if (typeof(T) == typeof(long)) return DType.Int64;
        if (typeof(T) == typeof(bool)) return DType.Bool;
        throw new NotSupportedException($"{typeof(T).Name} is not a tensor element type; expected float, double, int, long or bool.");
    }

    /// <summary>
    /// The common dtype of a binary op, as PyTorch promotes tensor operands:
    /// bool &lt; int32 &lt; int64 &lt; float32 &lt; float64.
    /// </summary>
    public static DType Promote(DType a, DType b) => FromRank(Math.Max(Rank(a), Rank(b)));

    private static int Rank(DType d) => d switch
    {
        DType.Bool => 0,
        DType.Int32 => 1,
        DType.Int64 => 2,
        DType.Float32 => 3,
        DType.Float64 => 4,
        _ => throw new ArgumentOutOfRangeException(nameof(d)),
    };

    private static DType FromRank(int r) => r switch
    {
        0 => DType.Bool,
        1 => DType.Int32,
        2 => DType.Int64,
        3 => DType.Float32,
        _ => DType.Float64,
    };
}
