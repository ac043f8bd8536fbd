using System.Numerics;
using System.Numerics.Tensors;

namespace Engine.Tensors.Cpu;

/// <summary>Copies between (possibly strided) tensors, with or without a dtype conversion.</summary>
internal static class Copy
{
    /// <summary>dst = src (src broadcast to dst's shape), converting the dtype if they differ.</summary>
    public static void Into(Tensor src, Tensor dst)
    {
        if (src.DType == dst.DType)
        {
            switch (src.DType.ElementSize())
            {
                case 1: Elementwise.Map<byte, byte, Identity<byte>>(src, dst); break;
                case 4: Elementwise.Map<int, int, Identity<int>>(src, dst); break;
                default: Elementwise.Map<long, long, Identity<long>>(src, dst); break;
            }
            return;
        }
        switch (src.DType)
        {
            case DType.Float32: From<float>(src, dst); break;
            case DType.Float64: From<double>(src, dst); break;
            case DType.Int32: From<int>(src, dst); break;
            case DType.Int64: From<long>(src, dst); break;
            case DType.Bool:
                switch (dst.DType)
                {
                    case DType.Float32: Elementwise.Map<bool, float, FromBool<float>>(src, dst); break;
                    case DType.Float64: Elementwise.Map<bool, double, FromBool<double>>(src, dst); break;
                    case DType.Int32: Elementwise.Map<bool, int, FromBool<int>>(src, dst); break;
                    case DType.Int64: Elementwise.Map<bool, long, FromBool<long>>(src, dst); break;
                }
                break;
        }
    }

    private static void From<TIn>(Tensor src, Tensor dst) where TIn : unmanaged, INumber<TIn>
    {
        switch (dst.DType)
        {
            case DType.Float32: Elementwise.Map<TIn, float, Convert<TIn, float>>(src, dst); break;
            case DType.Float64: Elementwise.Map<TIn, double, Convert<TIn, double>>(src, dst); break;
            case DType.Int32: Elementwise.Map<TIn, int, Convert<TIn, int>>(src, dst); break;
            case DType.Int64: Elementwise.Map<TIn, long, Convert<TIn, long>>(src, dst); break;
            case DType.Bool: Elementwise.Map<TIn, bool, ToBool<TIn>>(src, dst); break;
        }
    }

    private readonly struct Identity<T> : IUnaryOp<Identity<T>, T, T>
    {
        public static T Invoke(T x) => x;
        public static void Invoke(ReadOnlySpan<T> x, Span<T> y) => x.CopyTo(y);
    }

    /// <summary>Numeric conversion as C# casts do it: float to integer truncates toward zero (as PyTorch).</summary>
    private readonly struct Convert<TIn, TOut> : IUnaryOp<Convert<TIn, TOut>, TIn, TOut>
        where TIn : INumber<TIn> where TOut : INumber<TOut>
    {
        public static TOut Invoke(TIn x) => TOut.CreateTruncating(x);
        public static void Invoke(ReadOnlySpan<TIn> x, Span<TOut> y) => TensorPrimitives.ConvertTruncating(x, y);
    }

    private readonly struct ToBool<TIn> : IUnaryOp<ToBool<TIn>, TIn, bool> where TIn : INumber<TIn>
    {
        public static bool Invoke(TIn x) => x != TIn.Zero;
    }

    private readonly struct FromBool<TOut> : IUnaryOp<FromBool<TOut>, bool, TOut> where TOut : INumber<TOut>
    {
        public static TOut Invoke(bool x) => x ? TOut.One : TOut.Zero;
    }
}
