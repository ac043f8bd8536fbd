namespace Engine.Tensors.Cpu;

/// <summary>
/// The elementwise loops every CPU-native elementwise op runs on. Inputs are read through
/// (broadcast) strides, so they may be non-contiguous views; the output may be any view too.
/// Contiguous inner rows go to the op's vector form, strided ones to its scalar form.
/// </summary>
internal static unsafe class Elementwise
{
    /// <summary>y = op(x), x broadcast to y's shape.</summary>
    public static void Map<TIn, TOut, TOp>(Tensor x, Tensor y)
        where TIn : unmanaged where TOut : unmanaged where TOp : IUnaryOp<TOp, TIn, TOut>
    {
        var plan = new LoopPlan(y.Shape, ShapeUtil.BroadcastStrides(x, y.Shape), y.StridesInternal);
        if (plan.NumEl == 0) return;
        nint px = (nint)x.Ptr<TIn>(), py = (nint)y.Ptr<TOut>();
        long sx = plan.InnerStrides[0], sy = plan.InnerStrides[1];
        LoopPlan.SegmentAction segment = (offsets, count) =>
        {
            TIn* a = (TIn*)px + offsets[0];
            TOut* b = (TOut*)py + offsets[1];
            int n = (int)count;
            if (sx == 1 && sy == 1) TOp.Invoke(new ReadOnlySpan<TIn>(a, n), new Span<TOut>(b, n));
            else if (sx == 0 && sy == 1) new Span<TOut>(b, n).Fill(TOp.Invoke(*a));
            else for (long i = 0; i < count; i++) b[i * sy] = TOp.Invoke(a[i * sx]);
        };
        Run(plan, 2, segment);
    }

    /// <summary>y = op(a, b), a and b broadcast to y's shape.</summary>
    public static void Map<TA, TB, TOut, TOp>(Tensor a, Tensor b, Tensor y)
        where TA : unmanaged where TB : unmanaged where TOut : unmanaged where TOp : IBinaryOp<TOp, TA, TB, TOut>
    {
        var plan = new LoopPlan(y.Shape, ShapeUtil.BroadcastStrides(a, y.Shape), ShapeUtil.BroadcastStrides(b, y.Shape), y.StridesInternal);
        if (plan.NumEl == 0) return;
        nint pa = (nint)a.Ptr<TA>(), pb = (nint)b.Ptr<TB>(), py = (nint)y.Ptr<TOut>();
        long sa = plan.InnerStrides[0], sb = plan.InnerStrides[1], sy = plan.InnerStrides[2];
        LoopPlan.SegmentAction segment = (offsets, count) =>
        {
            TA* x0 = (TA*)pa + offsets[0];
            TB* x1 = (TB*)pb + offsets[1];
            TOut* o = (TOut*)py + offsets[2];
            int n = (int)count;
            if (sy == 1 && sa == 1 && sb == 1) TOp.Invoke(new ReadOnlySpan<TA>(x0, n), new ReadOnlySpan<TB>(x1, n), new Span<TOut>(o, n));
            else if (sy == 1 && sa == 1 && sb == 0) TOp.Invoke(new ReadOnlySpan<TA>(x0, n), *x1, new Span<TOut>(o, n));
            else if (sy == 1 && sa == 0 && sb == 1) TOp.Invoke(*x0, new ReadOnlySpan<TB>(x1, n), new Span<TOut>(o, n));
            else for (long i = 0; i < count; i++) o[i * sy] = TOp.Invoke(x0[i * sa], x1[i * sb]);
        };
        Run(plan, 3, segment);
    }

    /// <summary>y = op(a, b, c), all broadcast to y's shape.</summary>
    public static void Map<TA, TB, TC, TOut, TOp>(Tensor a, Tensor b, Tensor c, Tensor y)
        where TA : unmanaged where TB : unmanaged where TC : unmanaged where TOut : unmanaged
        where TOp : ITernaryOp<TA, TB, TC, TOut>
    {
        var plan = new LoopPlan(y.Shape, ShapeUtil.BroadcastStrides(a, y.Shape), ShapeUtil.BroadcastStrides(b, y.Shape),
            ShapeUtil.BroadcastStrides(c, y.Shape), y.StridesInternal);
        if (plan.NumEl == 0) return;
        nint pa = (nint)a.Ptr<TA>(), pb = (nint)b.Ptr<TB>(), pc = (nint)c.Ptr<TC>(), py = (nint)y.Ptr<TOut>();
        long sa = plan.InnerStrides[0], sb = plan.InnerStrides[1], sc = plan.InnerStrides[2], sy = plan.InnerStrides[3];
        LoopPlan.SegmentAction segment = (offsets, count) =>
        {
            TA* x0 = (TA*)pa + offsets[0];
            TB* x1 = (TB*)pb + offsets[1];
            TC* x2 = (TC*)pc + offsets[2];
            TOut* o = (TOut*)py + offsets[3];
            for (long i = 0; i < count; i++) o[i * sy] = TOp.Invoke(x0[i * sa], x1[i * sb], x2[i * sc]);
        };
        Run(plan, 4, segment);
    }

    private static void Run(LoopPlan plan, int operands, LoopPlan.SegmentAction segment)
    {
        Parallelism.For(plan.Tiles, plan.Parallel, tile =>
        {
            Span<long> offsets = stackalloc long[operands];
            plan.ForEachSegment(tile, offsets, segment);
        });
    }
}
