namespace Engine.Tensors.Cpu;

/// <summary>
/// A one-input elementwise op for fixed element types: the scalar form, and a vector form over two
/// contiguous spans (the default loops over the scalar form; ops override it with
/// <c>TensorPrimitives</c> or hand-written <c>Vector512</c> code).
/// </summary>
internal interface IUnaryOp<TSelf, TIn, TOut> where TSelf : IUnaryOp<TSelf, TIn, TOut>
{
    static abstract TOut Invoke(TIn x);

    static virtual void Invoke(ReadOnlySpan<TIn> x, Span<TOut> y)
    {
        for (int i = 0; i < x.Length; i++) y[i] = TSelf.Invoke(x[i]);
    }
}

/// <summary>A two-input elementwise op: scalar form and vector forms (span·span, span·scalar, scalar·span).</summary>
internal interface IBinaryOp<TSelf, TA, TB, TOut> where TSelf : IBinaryOp<TSelf, TA, TB, TOut>
{
    static abstract TOut Invoke(TA a, TB b);

    static virtual void Invoke(ReadOnlySpan<TA> a, ReadOnlySpan<TB> b, Span<TOut> y)
    {
        for (int i = 0; i < a.Length; i++) y[i] = TSelf.Invoke(a[i], b[i]);
    }

    static virtual void Invoke(ReadOnlySpan<TA> a, TB b, Span<TOut> y)
    {
        for (int i = 0; i < a.Length; i++) y[i] = TSelf.Invoke(a[i], b);
    }

    static virtual void Invoke(TA a, ReadOnlySpan<TB> b, Span<TOut> y)
    {
        for (int i = 0; i < b.Length; i++) y[i] = TSelf.Invoke(a, b[i]);
    }
}

/// <summary>A three-input elementwise op (scalar form only; used by <c>Where</c> and friends).</summary>
internal interface ITernaryOp<TA, TB, TC, TOut>
{
    static abstract TOut Invoke(TA a, TB b, TC c);
}
